//! The Firefox Profiler's processed-profile format, version 57 (what its
//! "Load a profile from file" opens, upgrading older versions, and what
//! CPython's sampling profiler writes; the types are the profiler's
//! `src/types/profile.ts` at that version):
//! the call tree as weighted samples on one thread (time) and another
//! (allocated bytes), collections, marks and regions as markers on the
//! time axis, and the heap used as a memory track.
//!
//! mpprof counts calls instead of sampling them, so there is one sample per
//! call-tree node, weighted by its exclusive time (`tracing-ms`) or its
//! allocated bytes (`bytes`); the samples sit where the Chrome-trace export
//! lays the nodes out (children side by side inside their parent). The
//! markers and the heap track are at their real times.

use mpprof_profile::Profile;
use serde_json::{json, Value};

use crate::export::node_layout;

/// The processed-profile version written (the profiler upgrades older
/// versions when it opens them), and the Gecko format version in `meta`.
pub const PROCESSED_PROFILE_VERSION: u32 = 57;
pub const GECKO_VERSION: u32 = 32;

/// Category indices in `meta.categories`.
const CATEGORY_PYTHON: usize = 1;
const CATEGORY_GC: usize = 2;
const CATEGORY_USER: usize = 4;

/// Interned strings shared by every thread (`shared.stringArray`).
#[derive(Default)]
struct Strings {
    list: Vec<String>,
    index: std::collections::HashMap<String, usize>,
}

impl Strings {
    fn get(&mut self, s: &str) -> usize {
        if let Some(&i) = self.index.get(s) {
            return i;
        }
        self.list.push(s.to_string());
        self.index.insert(s.to_string(), self.list.len() - 1);
        self.list.len() - 1
    }
}

/// The tables a thread's samples point into: one function and one frame
/// per profile function, one stack per call-tree node.
fn tables(p: &Profile, strings: &mut Strings) -> (Value, Value, Value, Value) {
    let n = p.functions.len();
    let mut names = Vec::with_capacity(n);
    let mut file_names = Vec::with_capacity(n);
    let mut lines = Vec::with_capacity(n);
    let mut resources = Vec::with_capacity(n);
    let mut resource_names = Vec::new();
    let mut resource_of_file: std::collections::HashMap<usize, usize> = Default::default();
    for f in &p.functions {
        names.push(strings.get(&f.qualname));
        let path = p.files.get(f.file).map(|s| s.path.as_str()).unwrap_or("");
        if path.is_empty() {
            file_names.push(Value::Null);
            resources.push(json!(-1));
        } else {
            file_names.push(json!(strings.get(path)));
            let next = resource_names.len();
            let r = *resource_of_file.entry(f.file).or_insert(next);
            if r == next {
                resource_names.push(strings.get(crate::format::short_path(path)));
            }
            resources.push(json!(r));
        }
        lines.push(if f.line > 0 {
            json!(f.line)
        } else {
            Value::Null
        });
    }
    let func_table = json!({
        "length": n,
        "name": names,
        "isJS": vec![true; n],
        "relevantForJS": vec![false; n],
        "resource": resources,
        "fileName": file_names,
        "lineNumber": lines,
        "columnNumber": vec![Value::Null; n],
    });
    let frame_table = json!({
        "length": n,
        "address": vec![-1; n],
        "inlineDepth": vec![0; n],
        "category": vec![CATEGORY_PYTHON; n],
        "subcategory": vec![0; n],
        "func": (0..n).collect::<Vec<_>>(),
        "nativeSymbol": vec![Value::Null; n],
        "innerWindowID": vec![Value::Null; n],
        "line": lines,
        "column": vec![Value::Null; n],
    });
    let m = p.call_tree.len();
    let prefix: Vec<Value> = p
        .call_tree
        .iter()
        .enumerate()
        .map(|(i, c)| match c.parent {
            Some(par) if par < i => json!(par),
            _ => Value::Null,
        })
        .collect();
    let stack_table = json!({
        "length": m,
        "frame": p.call_tree.iter().map(|c| c.function).collect::<Vec<_>>(),
        "prefix": prefix,
    });
    let k = resource_names.len();
    let resource_table = json!({
        "length": k,
        "lib": vec![Value::Null; k],
        "name": resource_names,
        "host": vec![Value::Null; k],
        "type": vec![1; k],
    });
    (func_table, frame_table, stack_table, resource_table)
}

fn thread(
    name: &str,
    tid: u32,
    main: bool,
    tables: &(Value, Value, Value, Value),
    samples: Value,
    markers: Value,
) -> Value {
    json!({
        "name": name,
        "isMainThread": main,
        "processType": "default",
        "processName": "MicroPython",
        "processStartupTime": 0,
        "processShutdownTime": Value::Null,
        "registerTime": 0,
        "unregisterTime": Value::Null,
        "pausedRanges": [],
        // An imported profile's thread asks for its markers in the timeline.
        "showMarkersInTimeline": main,
        "pid": "1",
        "tid": tid,
        "samples": samples,
        "markers": markers,
        "funcTable": tables.0,
        "frameTable": tables.1,
        "stackTable": tables.2,
        "resourceTable": tables.3,
        "nativeSymbols": {"length": 0, "libIndex": [], "address": [], "name": [], "functionSize": []},
    })
}

/// One sample per call-tree node with a non-zero `weight`, in time order.
fn weighted_samples(
    p: &Profile,
    starts: &[u64],
    ms: &dyn Fn(u64) -> f64,
    weight: impl Fn(usize) -> f64,
    weight_type: &str,
) -> Value {
    let mut rows: Vec<(u64, usize, f64)> = (0..p.call_tree.len())
        .map(|i| (starts[i], i, weight(i)))
        .filter(|r| r.2 > 0.0)
        .collect();
    rows.sort_by_key(|r| (r.0, r.1));
    json!({
        "length": rows.len(),
        "stack": rows.iter().map(|r| r.1).collect::<Vec<_>>(),
        "time": rows.iter().map(|r| ms(r.0)).collect::<Vec<_>>(),
        "weight": rows.iter().map(|r| r.2).collect::<Vec<_>>(),
        "weightType": weight_type,
    })
}

/// The run's collections, marks and regions as markers.
fn markers(p: &Profile, strings: &mut Strings, ms: &dyn Fn(u64) -> f64) -> Value {
    let mut name = Vec::new();
    let mut start = Vec::new();
    let mut end = Vec::new();
    let mut phase = Vec::new();
    let mut category = Vec::new();
    let mut data = Vec::new();
    for c in &p.gc.collections {
        name.push(strings.get("GC collect"));
        start.push(json!(ms(c.at)));
        end.push(json!(ms(c.at + c.duration)));
        phase.push(1);
        category.push(CATEGORY_GC);
        data.push(json!({
            "type": "GCCollection",
            "blocksFreed": c.blocks_freed,
            "usedAfter": c.used_after,
            "freeAfter": c.free_after,
            "largestFreeAfter": c.largest_free_after,
        }));
    }
    for m in &p.markers {
        name.push(strings.get(&m.label));
        start.push(json!(ms(m.at)));
        end.push(Value::Null);
        phase.push(0);
        category.push(CATEGORY_USER);
        data.push(json!({
            "type": "Mark",
            "allocsBefore": m.allocs_before,
            "allocBytesBefore": m.alloc_bytes_before,
            "opcodesBefore": m.opcodes_before,
        }));
    }
    for r in &p.regions {
        name.push(strings.get(&r.label));
        start.push(json!(ms(r.start)));
        end.push(json!(ms(r
            .end
            .unwrap_or(p.meta.duration_ticks)
            .max(r.start))));
        phase.push(1);
        category.push(CATEGORY_USER);
        data.push(json!({
            "type": "Region",
            "entries": r.entries,
            "allocCount": r.alloc_count,
            "allocBytes": r.alloc_bytes,
            "opcodes": r.opcodes,
        }));
    }
    json!({
        "length": name.len(),
        "name": name,
        "startTime": start,
        "endTime": end,
        "phase": phase,
        "category": category,
        "data": data,
    })
}

/// How the profiler shows our marker types (its marker schema).
fn marker_schema() -> Value {
    let both = json!(["marker-chart", "marker-table", "timeline-memory"]);
    json!([
        {
            "name": "GCCollection",
            "display": both,
            "chartLabel": "GC",
            "tooltipLabel": "GC collect",
            "tableLabel": "GC collect: {marker.data.blocksFreed} blocks freed",
            "fields": [
                {"key": "blocksFreed", "label": "Blocks freed", "format": "integer"},
                {"key": "usedAfter", "label": "Used after", "format": "bytes"},
                {"key": "freeAfter", "label": "Free after", "format": "bytes"},
                {"key": "largestFreeAfter", "label": "Largest free block after", "format": "bytes"},
            ],
        },
        {
            "name": "Mark",
            "display": ["marker-chart", "marker-table", "timeline-overview"],
            "chartLabel": "{marker.name}",
            "tooltipLabel": "mark {marker.name}",
            "tableLabel": "mark {marker.name}",
            "fields": [
                {"key": "allocsBefore", "label": "Allocations before", "format": "integer"},
                {"key": "allocBytesBefore", "label": "Bytes allocated before", "format": "bytes"},
                {"key": "opcodesBefore", "label": "Opcodes before", "format": "integer"},
            ],
        },
        {
            "name": "Region",
            "display": ["marker-chart", "marker-table", "timeline-overview"],
            "chartLabel": "{marker.name}",
            "tooltipLabel": "region {marker.name}",
            "tableLabel": "region {marker.name}: {marker.data.allocCount} allocations",
            "fields": [
                {"key": "entries", "label": "Entries", "format": "integer"},
                {"key": "allocCount", "label": "Allocations", "format": "integer"},
                {"key": "allocBytes", "label": "Bytes allocated", "format": "bytes"},
                {"key": "opcodes", "label": "Opcodes", "format": "integer"},
            ],
        },
    ])
}

/// The heap used as a memory counter: each sample is the change since the
/// previous one (the profiler's memory track adds them up), the first one
/// the heap used then.
fn heap_counter(p: &Profile, ms: &dyn Fn(u64) -> f64) -> Value {
    let mut points: Vec<(u64, u64)> = p.gc.heap_samples.iter().map(|h| (h.at, h.used)).collect();
    points.extend(
        p.gc.collections
            .iter()
            .map(|c| (c.at + c.duration, c.used_after)),
    );
    points.sort_unstable();
    let mut before = 0i64;
    let mut count = Vec::with_capacity(points.len());
    for &(_, used) in &points {
        let used = used as i64;
        count.push(used - before);
        before = used;
    }
    json!({
        "name": "Heap used",
        "category": "Memory",
        "description": "MicroPython GC heap in use (bytes)",
        "pid": "1",
        "mainThreadIndex": 0,
        "samples": {
            "length": points.len(),
            "time": points.iter().map(|p| ms(p.0)).collect::<Vec<_>>(),
            "count": count,
        },
    })
}

/// The profile in the Firefox Profiler's processed format.
pub fn firefox(p: &Profile) -> Value {
    let hz = p.meta.clock.hz.max(1) as f64;
    let ms = move |t: u64| t as f64 * 1e3 / hz;
    let mut strings = Strings::default();
    let t = tables(p, &mut strings);
    let starts = node_layout(p);
    let time_samples = weighted_samples(
        p,
        &starts,
        &ms,
        |i| ms(p.call_tree[i].excl_ticks),
        "tracing-ms",
    );
    let byte_samples = weighted_samples(
        p,
        &starts,
        &ms,
        |i| p.call_tree[i].alloc_bytes as f64,
        "bytes",
    );
    let markers = markers(p, &mut strings, &ms);
    let empty_markers = json!({"length": 0, "name": [], "startTime": [], "endTime": [], "phase": [], "category": [], "data": []});
    let threads = vec![
        thread("time", 0, true, &t, time_samples, markers),
        thread("allocated bytes", 1, false, &t, byte_samples, empty_markers),
    ];
    let script = crate::format::short_path(&p.meta.script).to_string();
    json!({
        "meta": {
            "version": GECKO_VERSION,
            "preprocessedProfileVersion": PROCESSED_PROFILE_VERSION,
            "interval": 1,
            "startTime": 0,
            "processType": 0,
            "product": format!("MicroPython {} — {script}", p.meta.micropython_version),
            "importedFrom": format!("mpprof {}", p.meta.mpprof_version),
            "platform": p.meta.platform,
            "oscpu": p.meta.target,
            "abi": format!("{}-bit", p.meta.word_bits),
            "misc": "",
            "toolkit": "",
            "appBuildID": "",
            "stackwalk": 0,
            "symbolicated": true,
            "physicalCPUs": 1,
            "logicalCPUs": 1,
            "CPUName": "",
            "categories": [
                {"name": "Other", "color": "grey", "subcategories": ["Other"]},
                {"name": "MicroPython", "color": "yellow", "subcategories": ["Other"]},
                {"name": "GC / CC", "color": "orange", "subcategories": ["Other"]},
                {"name": "Memory", "color": "purple", "subcategories": ["Other"]},
                {"name": "User", "color": "green", "subcategories": ["Other"]},
            ],
            "markerSchema": marker_schema(),
            "extensions": {"length": 0, "id": [], "name": [], "baseURL": []},
        },
        "libs": [],
        "pages": [],
        "counters": [heap_counter(p, &ms)],
        "threads": threads,
        "shared": {
            "stringArray": strings.list,
            "sources": {"length": 0, "uuid": [], "filename": []},
        },
    })
}
