//! Flame graphs, diffs and exports of real profiles, each checked against
//! its format's rules by reading it back.

use std::io::Read;
use std::path::{Path, PathBuf};

use mpprof_profile::Profile;

mod common;
use common::{mpprof, root};

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("views");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

fn profile(script: &str, name: &str) -> (PathBuf, Profile) {
    let out = tmp(&format!("{name}.json"));
    let o = mpprof(&[
        "run",
        "-q",
        "-o",
        out.to_str().unwrap(),
        root().join(script).to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = Profile::from_json_file(&out).unwrap();
    (out, p)
}

/// (title count, rect width) of every frame in an inferno SVG.
fn frames(svg: &str) -> Vec<(String, u64, f64)> {
    let mut out = Vec::new();
    for g in svg.split("<g>").skip(1) {
        let Some(t0) = g.find("<title>") else {
            continue;
        };
        let Some(t1) = g.find("</title>") else {
            continue;
        };
        let title = &g[t0 + 7..t1];
        // "name (1,234 unit, 5.6%)"
        let Some(open) = title.rfind(" (") else {
            continue;
        };
        let n: u64 = title[open + 2..]
            .split(' ')
            .next()
            .unwrap()
            .replace(',', "")
            .parse()
            .unwrap();
        let w = g
            .split("width=\"")
            .nth(1)
            .and_then(|r| r.split('"').next())
            .and_then(|v| v.trim_end_matches('%').parse::<f64>().ok())
            .unwrap();
        out.push((title[..open].to_string(), n, w));
    }
    out
}

#[test]
fn frame_widths_are_exactly_their_share_of_the_weight() {
    let (path, p) = profile("fixtures/causes/bound_method.py", "fg");
    for (weight, total) in [
        (
            "cycles",
            p.call_tree.iter().map(|n| n.excl_ticks).sum::<u64>(),
        ),
        (
            "opcodes",
            p.call_tree.iter().map(|n| n.opcodes).sum::<u64>(),
        ),
        (
            "alloc-count",
            p.alloc_sites.iter().map(|s| s.count).sum::<u64>(),
        ),
        (
            "alloc-bytes",
            p.alloc_sites.iter().map(|s| s.bytes).sum::<u64>(),
        ),
    ] {
        let svg_path = tmp(&format!("fg-{weight}.svg"));
        let o = mpprof(&[
            "flamegraph",
            path.to_str().unwrap(),
            "-o",
            svg_path.to_str().unwrap(),
            "--weight",
            weight,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let svg = std::fs::read_to_string(&svg_path).unwrap();
        let fr = frames(&svg);
        let all = fr.iter().find(|f| f.0 == "all").expect("the root frame");
        assert_eq!(
            all.1, total,
            "{weight}: the whole graph is the profile's total"
        );
        for (name, n, w) in &fr {
            let share = *n as f64 / all.1 as f64;
            // inferno writes widths in percent with four decimals.
            assert!(
                (w / all.2 - share).abs() < 1e-4,
                "{weight}: {name} is {w} wide for {n} of {}",
                all.1
            );
        }
        if weight.starts_with("alloc") {
            // Allocation graphs end in the cause, coloured by it.
            let bm = fr
                .iter()
                .find(|f| f.0 == "[bound_method]")
                .expect("a cause frame");
            // A bound method is three words: 12 bytes on the 32-bit build.
            assert!(
                bm.1 >= if weight == "alloc-count" {
                    100
                } else {
                    100 * 12
                }
            );
            assert!(svg.contains("rgb(168,198,134)"), "bound_method's colour");
        }
    }
    // The icicle view is the same data, inverted.
    let ic = tmp("fg-icicle.svg");
    assert!(mpprof(&[
        "flamegraph",
        path.to_str().unwrap(),
        "-o",
        ic.to_str().unwrap(),
        "--icicle"
    ])
    .status
    .success());
    assert_eq!(
        frames(&std::fs::read_to_string(ic).unwrap()).len(),
        frames(&std::fs::read_to_string(tmp("fg-cycles.svg")).unwrap()).len()
    );
}

#[test]
fn allocation_graphs_name_the_allocating_line_above_the_cause() {
    let (path, p) = profile("fixtures/causes/bound_method.py", "fg-lines");
    for weight in ["alloc-count", "alloc-bytes"] {
        let f = tmp(&format!("fg-lines-{weight}.folded"));
        let o = mpprof(&[
            "export",
            path.to_str().unwrap(),
            "--format",
            "collapsed",
            "--weight",
            weight,
            "-o",
            f.to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let folded = std::fs::read_to_string(&f).unwrap();
        // Each site with a source line: its function, then `function:line`,
        // then the cause, and the weight summed over the sites there.
        for s in p.alloc_sites.iter().filter(|s| s.line > 0) {
            let fun = &p.functions[s.function];
            let tail = format!(";{}:{};[{}] ", fun.name, s.line, s.cause.label());
            let lines: Vec<&str> = folded.lines().filter(|l| l.contains(&tail)).collect();
            assert!(!lines.is_empty(), "{weight}: no `{tail}` in\n{folded}");
            for l in &lines {
                let frames: Vec<&str> = l.rsplit_once(' ').unwrap().0.split(';').collect();
                let n = frames.len();
                assert!(n >= 3, "{l}");
                assert!(
                    frames[n - 3].starts_with(&fun.qualname),
                    "the function frame is right above the line: {l}"
                );
            }
            let sum: u64 = lines
                .iter()
                .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
                .sum();
            let want: u64 = p
                .alloc_sites
                .iter()
                .filter(|t| t.function == s.function && t.line == s.line && t.cause == s.cause)
                .map(|t| {
                    if weight == "alloc-count" {
                        t.count
                    } else {
                        t.bytes
                    }
                })
                .sum();
            assert_eq!(sum, want, "{weight}: {tail}");
        }
        // The hot line of the fixture, as a frame in the SVG too.
        let hot = p
            .alloc_sites
            .iter()
            .find(|s| s.cause.as_str() == "bound_method")
            .unwrap();
        let svg_path = tmp(&format!("fg-lines-{weight}.svg"));
        let o = mpprof(&[
            "flamegraph",
            path.to_str().unwrap(),
            "-o",
            svg_path.to_str().unwrap(),
            "--weight",
            weight,
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let name = format!("{}:{}", p.functions[hot.function].name, hot.line);
        assert!(
            frames(&std::fs::read_to_string(&svg_path).unwrap())
                .iter()
                .any(|f| f.0 == name),
            "{weight}: a `{name}` frame"
        );
    }
}

#[test]
fn bad_flamegraph_requests_are_clear_and_leave_no_file() {
    let (path, _) = profile("fixtures/causes/quiet_loop.py", "quiet");
    let out = tmp("never.svg");
    let o = mpprof(&[
        "flamegraph",
        path.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--weight",
        "watts",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("unknown weight `watts`"));
    assert!(!out.exists());
    // A profile with nothing to draw for the weight.
    let (path, p) = profile("fixtures/blink/blink5_viper.py", "viper");
    assert!(p.call_tree.iter().map(|n| n.opcodes).sum::<u64>() > 0);
    let empty = tmp("empty.json");
    let mut e = p.clone();
    for n in &mut e.call_tree {
        n.opcodes = 0;
    }
    e.to_json_writer(std::fs::File::create(&empty).unwrap())
        .unwrap();
    let o = mpprof(&[
        "flamegraph",
        empty.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--weight",
        "opcodes",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no opcodes to draw"));
    assert!(!out.exists());
    let _ = path;
}

#[test]
fn non_ascii_names_reach_the_graph() {
    let (path, _) = profile("fixtures/misc/names/dir with space/ünïcode.py", "uni");
    let svg = tmp("uni.svg");
    assert!(mpprof(&[
        "flamegraph",
        path.to_str().unwrap(),
        "-o",
        svg.to_str().unwrap(),
        "--weight",
        "opcodes"
    ])
    .status
    .success());
    assert!(std::fs::read_to_string(svg).unwrap().contains("héllo"));
}

#[test]
fn diff_shows_what_an_optimisation_bought() {
    let (a, pa) = profile("fixtures/blink/blink1_globals.py", "diff-a");
    let (b, pb) = profile("fixtures/blink/blink3_unrolled.py", "diff-b");
    let svg = tmp("diff.svg");
    let o = mpprof(&[
        "diff",
        a.to_str().unwrap(),
        b.to_str().unwrap(),
        "--flamegraph",
        svg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let text = String::from_utf8_lossy(&o.stdout);
    let blink = |p: &Profile| p.functions[p.find_functions("blink")[0]].opcodes;
    let row = text
        .lines()
        .find(|l| l.trim_start().starts_with("blink (script)"))
        .expect("blink compared");
    assert!(
        row.contains(&format!("-{}", blink(&pa) - blink(&pb))),
        "{row}"
    );
    let svg = std::fs::read_to_string(svg).unwrap();
    assert!(svg.contains("<svg") && svg.contains("blink"));
}

#[test]
fn exports_read_back_with_the_profiles_totals() {
    let (path, p) = profile("fixtures/causes/float.py", "export");
    let excl: u64 = p.call_tree.iter().map(|n| n.excl_ticks).sum();
    let ops: u64 = p.call_tree.iter().map(|n| n.opcodes).sum();

    // Folded stacks.
    let f = tmp("export.folded");
    assert!(mpprof(&[
        "export",
        path.to_str().unwrap(),
        "--format",
        "collapsed",
        "--weight",
        "opcodes",
        "-o",
        f.to_str().unwrap()
    ])
    .status
    .success());
    let sum: u64 = std::fs::read_to_string(&f)
        .unwrap()
        .lines()
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(sum, ops);

    // speedscope.
    let f = tmp("export.speedscope.json");
    assert!(mpprof(&[
        "export",
        path.to_str().unwrap(),
        "--format",
        "speedscope",
        "-o",
        f.to_str().unwrap()
    ])
    .status
    .success());
    let s: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
    assert_eq!(
        s["shared"]["frames"].as_array().unwrap().len(),
        p.functions.len()
    );
    let profiles = s["profiles"].as_array().unwrap();
    assert_eq!(profiles[0]["type"], "sampled");
    let w: u64 = profiles[0]["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(w, excl);
    assert_eq!(profiles[0]["endValue"].as_u64().unwrap(), excl);
    for pr in profiles {
        assert_eq!(
            pr["samples"].as_array().unwrap().len(),
            pr["weights"].as_array().unwrap().len()
        );
        for sample in pr["samples"].as_array().unwrap() {
            for fr in sample.as_array().unwrap() {
                assert!((fr.as_u64().unwrap() as usize) < p.functions.len());
            }
        }
    }

    // Chrome trace.
    let f = tmp("export.trace.json");
    assert!(mpprof(&[
        "export",
        path.to_str().unwrap(),
        "--format",
        "chrome-trace",
        "-o",
        f.to_str().unwrap()
    ])
    .status
    .success());
    let t: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap()).unwrap();
    let events = t["traceEvents"].as_array().unwrap();
    let slices = events
        .iter()
        .filter(|e| e["ph"] == "X" && e["tid"] == 1)
        .count();
    assert_eq!(slices, p.call_tree.len());
    assert!(events
        .iter()
        .all(|e| e["ph"].is_string() && e["pid"].is_number()));
    assert!(events
        .iter()
        .filter(|e| e["ph"] == "X")
        .all(|e| e["dur"].as_f64().unwrap() >= 0.0));

    // pprof: gzip, then the protobuf's samples.
    let f = tmp("export.pb.gz");
    assert!(mpprof(&[
        "export",
        path.to_str().unwrap(),
        "--format",
        "pprof",
        "-o",
        f.to_str().unwrap()
    ])
    .status
    .success());
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&f).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    let totals = pprof_totals(&raw);
    assert_eq!(
        totals,
        vec![
            excl,
            ops,
            // Every allocation, those outside any frame (`<runtime>`) too.
            p.alloc_sites.iter().map(|s| s.count).sum(),
            p.alloc_sites.iter().map(|s| s.bytes).sum()
        ]
    );
}

/// Sum each sample type's values in a pprof Profile message.
fn pprof_totals(m: &[u8]) -> Vec<u64> {
    use common::protobuf_varint as varint;
    let mut totals = Vec::new();
    let mut n_types = 0;
    let mut i = 0;
    while i < m.len() {
        let key = varint(m, &mut i);
        let (field, wire) = (key >> 3, key & 7);
        assert_eq!(wire, 2, "every top-level field here is length-delimited");
        let len = varint(m, &mut i) as usize;
        let body = &m[i..i + len];
        i += len;
        match field {
            1 => n_types += 1,
            2 => {
                totals.resize(n_types, 0);
                let mut j = 0;
                while j < body.len() {
                    let k = varint(body, &mut j);
                    let l = varint(body, &mut j) as usize;
                    let inner = &body[j..j + l];
                    j += l;
                    if k >> 3 == 2 {
                        let mut x = 0;
                        let mut t = 0;
                        while x < inner.len() {
                            totals[t] += varint(inner, &mut x);
                            t += 1;
                        }
                    }
                }
            }
            _ => {}
        }
    }
    totals
}
