//! `mpprof export --format firefox`: the Firefox Profiler's processed
//! profile (version 57), checked against that format's rules as the
//! profiler's types and format changelog state them (the profiler itself is
//! not in the registries this project reaches, so it cannot be loaded):
//! every table's columns as long as its `length`, every index inside the
//! table it points into, stacks whose prefix comes first, samples and
//! counter samples in time order, markers of the documented phases whose
//! data follows the marker schema; and the figures against the script that
//! made them (three `gc.collect()` calls, two marks, one region).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use mpprof_profile::Profile;
use serde_json::Value;

mod common;

/// Where a marker schema may ask its markers to be shown, and the formats
/// of its fields (the profiler's `src/types/markers.ts` at version 57).
const DISPLAY_LOCATIONS: &[&str] = &[
    "marker-chart",
    "marker-table",
    "timeline-overview",
    "timeline-memory",
    "timeline-ipc",
    "timeline-fileio",
    "stack-chart",
];
const FIELD_FORMATS: &[&str] = &[
    "url",
    "file-path",
    "sanitized-string",
    "string",
    "unique-string",
    "flow-id",
    "terminating-flow-id",
    "duration",
    "time",
    "seconds",
    "milliseconds",
    "microseconds",
    "nanoseconds",
    "bytes",
    "percentage",
    "integer",
    "decimal",
    "pid",
    "tid",
];

fn arr<'a>(v: &'a Value, key: &str) -> &'a Vec<Value> {
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("`{key}` is an array in {}", short(v)))
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    s.chars().take(200).collect()
}

/// A table: an object whose every array column has `length` entries.
fn table(v: &Value, name: &str, columns: &[&str]) -> usize {
    let len = v["length"]
        .as_u64()
        .unwrap_or_else(|| panic!("{name}.length")) as usize;
    for c in columns {
        assert_eq!(arr(v, c).len(), len, "{name}.{c} has {name}.length entries");
    }
    len
}

fn index_in(v: &Value, len: usize, what: &str) -> usize {
    let i = v
        .as_u64()
        .unwrap_or_else(|| panic!("{what}: an index, not {v}")) as usize;
    assert!(i < len, "{what}: {i} is inside 0..{len}");
    i
}

fn in_time_order(times: &[Value], what: &str) {
    let t: Vec<f64> = times.iter().map(|t| t.as_f64().unwrap()).collect();
    assert!(t.windows(2).all(|w| w[0] <= w[1]), "{what} in time order");
}

/// The format's rules; per thread, the weight each function's frames carry.
fn validate(ff: &Value) -> Vec<(String, BTreeMap<String, f64>)> {
    let meta = &ff["meta"];
    assert!(meta["version"].as_u64().is_some_and(|v| v >= 24));
    assert_eq!(meta["preprocessedProfileVersion"], 57);
    for key in [
        "startTime",
        "processType",
        "product",
        "stackwalk",
        "markerSchema",
    ] {
        assert!(meta.get(key).is_some(), "meta.{key}");
    }
    assert!(ff["libs"].is_array());
    assert!(meta["interval"].as_f64().is_some_and(|v| v > 0.0));
    let categories = arr(meta, "categories");
    for c in categories {
        assert!(c["name"].is_string() && c["color"].is_string());
        assert!(!arr(c, "subcategories").is_empty());
    }
    let check_category = |cat: &Value, sub: &Value, what: &str| {
        let c = index_in(cat, categories.len(), what);
        index_in(sub, arr(&categories[c], "subcategories").len(), what);
    };
    let strings = arr(&ff["shared"], "stringArray");
    assert!(strings.iter().all(|s| s.is_string()));
    let schema: BTreeMap<String, &Value> = arr(meta, "markerSchema")
        .iter()
        .map(|s| (s["name"].as_str().unwrap().to_string(), s))
        .collect();
    for s in schema.values() {
        assert!(!arr(s, "display").is_empty());
        for d in arr(s, "display") {
            assert!(
                DISPLAY_LOCATIONS.contains(&d.as_str().unwrap()),
                "display {d}"
            );
        }
        for f in arr(s, "fields") {
            assert!(f["key"].is_string(), "every field has a key (version 55)");
            assert!(
                FIELD_FORMATS.contains(&f["format"].as_str().unwrap()),
                "format {f}"
            );
            assert!(
                f.get("searchable").is_none(),
                "searchable is gone (version 57)"
            );
        }
    }
    let threads = arr(ff, "threads");
    let mut weights = Vec::new();
    for th in threads {
        for key in [
            "processType",
            "processStartupTime",
            "registerTime",
            "pausedRanges",
            "name",
            "isMainThread",
            "pid",
            "tid",
        ] {
            assert!(th.get(key).is_some(), "thread.{key}");
        }
        assert!(th["pid"].is_string(), "pids are strings since version 47");
        let resources = table(
            &th["resourceTable"],
            "resourceTable",
            &["lib", "name", "host", "type"],
        );
        for n in arr(&th["resourceTable"], "name") {
            index_in(n, strings.len(), "resourceTable.name");
        }
        let ft = &th["funcTable"];
        let funcs = table(
            ft,
            "funcTable",
            &[
                "name",
                "isJS",
                "relevantForJS",
                "resource",
                "fileName",
                "lineNumber",
                "columnNumber",
            ],
        );
        for i in 0..funcs {
            index_in(&ft["name"][i], strings.len(), "funcTable.name");
            if !ft["fileName"][i].is_null() {
                index_in(&ft["fileName"][i], strings.len(), "funcTable.fileName");
            }
            let r = ft["resource"][i].as_i64().unwrap();
            assert!(r == -1 || (r as usize) < resources, "funcTable.resource");
        }
        let fr = &th["frameTable"];
        let frames = table(
            fr,
            "frameTable",
            &[
                "address",
                "inlineDepth",
                "category",
                "subcategory",
                "func",
                "nativeSymbol",
                "innerWindowID",
                "line",
                "column",
            ],
        );
        for i in 0..frames {
            index_in(&fr["func"][i], funcs, "frameTable.func");
            check_category(
                &fr["category"][i],
                &fr["subcategory"][i],
                "frameTable.category",
            );
        }
        let st = &th["stackTable"];
        let stacks = table(st, "stackTable", &["frame", "prefix"]);
        for i in 0..stacks {
            index_in(&st["frame"][i], frames, "stackTable.frame");
            if !st["prefix"][i].is_null() {
                index_in(&st["prefix"][i], i, "stackTable.prefix (before its stack)");
            }
        }
        let sm = &th["samples"];
        let n = table(sm, "samples", &["stack", "time", "weight"]);
        let weight_type = sm["weightType"].as_str().unwrap();
        assert!(["samples", "tracing-ms", "bytes"].contains(&weight_type));
        in_time_order(arr(sm, "time"), "samples");
        // Each function's weight, counted once per sample whose stack
        // holds it anywhere (its inclusive weight).
        let mut per_function: BTreeMap<String, f64> = BTreeMap::new();
        for i in 0..n {
            let w = sm["weight"][i].as_f64().unwrap();
            assert!(w > 0.0);
            let mut s = Some(index_in(&sm["stack"][i], stacks, "samples.stack"));
            let mut seen = HashSet::new();
            while let Some(si) = s {
                let f = st["frame"][si].as_u64().unwrap() as usize;
                let func = fr["func"][f].as_u64().unwrap() as usize;
                let name = strings[ft["name"][func].as_u64().unwrap() as usize]
                    .as_str()
                    .unwrap()
                    .to_string();
                if seen.insert(name.clone()) {
                    *per_function.entry(name).or_default() += w;
                }
                s = st["prefix"][si].as_u64().map(|p| p as usize);
            }
        }
        let mk = &th["markers"];
        let markers = table(
            mk,
            "markers",
            &["name", "startTime", "endTime", "phase", "category", "data"],
        );
        for i in 0..markers {
            index_in(&mk["name"][i], strings.len(), "markers.name");
            index_in(&mk["category"][i], categories.len(), "markers.category");
            let start = mk["startTime"][i].as_f64().expect("markers.startTime");
            match mk["phase"][i].as_u64() {
                Some(0) => assert!(mk["endTime"][i].is_null(), "an instant has no end"),
                Some(1) => assert!(mk["endTime"][i].as_f64().unwrap() >= start),
                other => panic!("marker phase {other:?}: 0 (instant) or 1 (interval) here"),
            }
            let data = &mk["data"][i];
            let s = schema
                .get(data["type"].as_str().unwrap())
                .unwrap_or_else(|| panic!("a schema for {data}"));
            for f in arr(s, "fields") {
                assert!(
                    data.get(f["key"].as_str().unwrap()).is_some(),
                    "{data} has {}",
                    f["key"]
                );
            }
        }
        weights.push((th["name"].as_str().unwrap().to_string(), per_function));
    }
    for c in arr(ff, "counters") {
        assert!(c["name"].is_string() && c["category"].is_string() && c["description"].is_string());
        assert!(c["pid"].is_string(), "pids are strings since version 47");
        index_in(
            &c["mainThreadIndex"],
            threads.len(),
            "counter.mainThreadIndex",
        );
        let n = table(&c["samples"], "counter.samples", &["time", "count"]);
        in_time_order(arr(&c["samples"], "time"), "counter samples");
        let mut total = 0i64;
        for i in 0..n {
            total += c["samples"]["count"][i].as_i64().unwrap();
            assert!(total >= 0, "the heap never goes below nothing");
        }
    }
    weights
}

#[test]
fn the_firefox_export_follows_the_processed_profile_format() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("firefox");
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("phases.py");
    std::fs::write(
        &script,
        "import gc\nimport mpprof\n\n\ndef churn(n):\n    out = []\n    for i in range(n):\n        out.append(str(i))\n    return out\n\n\nmpprof.mark(\"start\")\nwith mpprof.region(\"work\"):\n    for k in range(3):\n        churn(200)\n        gc.collect()\nmpprof.mark(\"end\")\n",
    )
    .unwrap();
    let profile = dir.join("phases.mpprof.json");
    let out = dir.join("phases.firefox.json");
    common::record(&script, &profile);
    let o = common::mpprof(&[
        "export",
        profile.to_str().unwrap(),
        "--format",
        "firefox",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = Profile::from_json_file(&profile).unwrap();
    let ff: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let weights = validate(&ff);

    // The script's own events, as markers on the main thread.
    let strings = arr(&ff["shared"], "stringArray");
    let main = &arr(&ff, "threads")[0];
    assert_eq!(main["isMainThread"], true);
    let mk = &main["markers"];
    let names: Vec<&str> = arr(mk, "name")
        .iter()
        .map(|n| strings[n.as_u64().unwrap() as usize].as_str().unwrap())
        .collect();
    let types: Vec<&str> = arr(mk, "data")
        .iter()
        .map(|d| d["type"].as_str().unwrap())
        .collect();
    let gcs = types.iter().filter(|t| **t == "GCCollection").count();
    assert!(gcs >= 3, "three gc.collect() calls at least: {gcs}");
    assert_eq!(gcs, p.gc.collections.len());
    let marks: Vec<&str> = names
        .iter()
        .zip(&types)
        .filter(|(_, t)| **t == "Mark")
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(marks, ["start", "end"]);
    let regions: Vec<&str> = names
        .iter()
        .zip(&types)
        .filter(|(_, t)| **t == "Region")
        .map(|(n, _)| *n)
        .collect();
    assert_eq!(regions, ["work"]);
    // The region spans the collections, between the marks.
    let at = |name: &str| {
        let i = names.iter().position(|n| *n == name).unwrap();
        mk["startTime"][i].as_f64().unwrap()
    };
    let gc_times: Vec<f64> = types
        .iter()
        .enumerate()
        .filter(|(_, t)| **t == "GCCollection")
        .map(|(i, _)| mk["startTime"][i].as_f64().unwrap())
        .collect();
    assert!(gc_times.iter().all(|&t| t >= at("start") && t <= at("end")));
    assert!(at("work") >= at("start"));

    // The time thread carries every function's inclusive time, the bytes
    // thread its allocated bytes; the heap track ends where the heap did.
    let ms = |t: u64| t as f64 * 1e3 / p.meta.clock.hz as f64;
    let (time_name, time) = &weights[0];
    let (bytes_name, bytes) = &weights[1];
    assert_eq!(
        (time_name.as_str(), bytes_name.as_str()),
        ("time", "allocated bytes")
    );
    for f in p.functions.iter().filter(|f| f.incl_ticks > 0) {
        let got = time.get(&f.qualname).copied().unwrap_or(0.0);
        assert!(
            (got - ms(f.incl_ticks)).abs() < 1e-6 * ms(f.incl_ticks).max(1.0),
            "{}: {got} ms",
            f.qualname
        );
    }
    // churn's bytes, counted line by line in the profile.
    let churn_bytes: u64 = p
        .lines
        .iter()
        .filter(|l| p.functions[l.function].name == "churn")
        .map(|l| l.alloc_bytes)
        .sum();
    assert!(churn_bytes > 0);
    assert_eq!(bytes["churn"], churn_bytes as f64);
    let counter = &arr(&ff, "counters")[0];
    assert_eq!(counter["category"], "Memory");
    let end: i64 = arr(&counter["samples"], "count")
        .iter()
        .map(|c| c.as_i64().unwrap())
        .sum();
    let last =
        p.gc.heap_samples
            .iter()
            .map(|h| (h.at, h.used))
            .chain(
                p.gc.collections
                    .iter()
                    .map(|c| (c.at + c.duration, c.used_after)),
            )
            .max()
            .unwrap();
    assert_eq!(end, last.1 as i64);
}
