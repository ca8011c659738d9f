//! Exports for the viewers people already use: folded stacks, speedscope,
//! Chrome Trace Event JSON (Perfetto, chrome://tracing) and pprof.

use std::io::Write;

use mpprof_profile::Profile;
use serde_json::{json, Value};

use crate::flamegraph::{folded, frame_name, FlameError, Weight};

/// Folded stacks, one `a;b;c N` line per stack.
pub fn collapsed(p: &Profile, weight: Weight, mut out: impl Write) -> Result<(), FlameError> {
    for l in folded(p, weight) {
        writeln!(out, "{l}")?;
    }
    Ok(())
}

/// Each call-tree node's line split ([`Profile::node_line_ticks`]) when the
/// profile has line time, else nothing: exports then end the cycles stacks
/// in line frames.
fn line_splits(p: &Profile) -> Vec<Vec<(u32, u64)>> {
    if p.meta.line_time.is_none() {
        return vec![Vec::new(); p.call_tree.len()];
    }
    (0..p.call_tree.len())
        .map(|i| p.node_line_ticks(i))
        .collect()
}

/// speedscope's file format: one sampled profile per weight, sharing frames.
/// With line time, the cycles profile's stacks end in a frame per line
/// (`work:8`, with its file and line), as speedscope shows line-level
/// profiles.
pub fn speedscope(p: &Profile) -> Value {
    let mut frames: Vec<Value> = p
        .functions
        .iter()
        .map(|f| {
            let file = p
                .files
                .get(f.file)
                .map(|s| s.path.clone())
                .unwrap_or_default();
            json!({"name": f.qualname, "file": file, "line": f.line})
        })
        .collect();
    let stacks = p.stacks();
    let splits = line_splits(p);
    let mut line_frame: std::collections::HashMap<(usize, u32), usize> =
        std::collections::HashMap::new();
    for (i, split) in splits.iter().enumerate() {
        let fid = p.call_tree[i].function;
        for &(line, _) in split {
            line_frame.entry((fid, line)).or_insert_with(|| {
                let f = &p.functions[fid];
                let file = p
                    .files
                    .get(f.file)
                    .map(|s| s.path.clone())
                    .unwrap_or_default();
                frames.push(
                    json!({"name": format!("{}:{line}", f.qualname), "file": file, "line": line}),
                );
                frames.len() - 1
            });
        }
    }
    let cycles_unit = match p.meta.clock.unit.as_str() {
        "ns" => "nanoseconds",
        _ => "none",
    };
    let mut profiles = Vec::new();
    for (name, unit, pick) in [
        ("cycles", cycles_unit, 0usize),
        ("opcodes", "none", 1),
        ("alloc-bytes", "bytes", 2),
        ("alloc-count", "none", 3),
    ] {
        let mut samples = Vec::new();
        let mut weights = Vec::new();
        for (i, n) in p.call_tree.iter().enumerate() {
            let w = match pick {
                0 => n.excl_ticks,
                1 => n.opcodes,
                2 => n.alloc_bytes,
                _ => n.alloc_count,
            };
            if pick == 0 && !splits[i].is_empty() {
                for &(line, t) in &splits[i] {
                    let mut stack = stacks[i].0.clone();
                    stack.push(line_frame[&(n.function, line)]);
                    samples.push(json!(stack));
                    weights.push(t);
                }
                continue;
            }
            if w > 0 {
                samples.push(json!(stacks[i].0));
                weights.push(w);
            }
        }
        let total: u64 = weights.iter().sum();
        profiles.push(json!({
            "type": "sampled",
            "name": name,
            "unit": unit,
            "startValue": 0,
            "endValue": total,
            "samples": samples,
            "weights": weights,
        }));
    }
    json!({
        "$schema": "https://www.speedscope.app/file-format-schema.json",
        "name": p.meta.script,
        "exporter": format!("mpprof {}", p.meta.mpprof_version),
        "activeProfileIndex": 0,
        "shared": {"frames": frames},
        "profiles": profiles,
    })
}

/// Chrome Trace Event JSON. The call tree is aggregated (calls are counted,
/// not recorded one by one), so each node is laid out as one slice as long
/// as its inclusive time, children side by side inside it; GC pauses, marks,
/// regions and the heap counter are at their real times.
pub fn chrome_trace(p: &Profile) -> Value {
    let hz = p.meta.clock.hz.max(1) as f64;
    let us = |t: u64| t as f64 * 1e6 / hz;
    let mut events = vec![
        json!({"ph": "M", "pid": 1, "tid": 1, "name": "thread_name", "args": {"name": "calls (aggregated)"}}),
        json!({"ph": "M", "pid": 1, "tid": 2, "name": "thread_name", "args": {"name": "gc and markers"}}),
    ];
    let starts = node_layout(p);
    for (i, n) in p.call_tree.iter().enumerate() {
        events.push(json!({
            "ph": "X", "pid": 1, "tid": 1, "name": p.function_label(n.function),
            "ts": us(starts[i]), "dur": us(n.incl_ticks),
            "args": {"calls": n.calls, "opcodes": n.opcodes, "alloc_count": n.alloc_count, "alloc_bytes": n.alloc_bytes},
        }));
    }
    for g in &p.gc.collections {
        events.push(json!({
            "ph": "X", "pid": 1, "tid": 2, "name": "gc collect", "ts": us(g.at), "dur": us(g.duration),
            "args": {"blocks_freed": g.blocks_freed, "used_after": g.used_after, "largest_free_after": g.largest_free_after},
        }));
    }
    for h in &p.gc.heap_samples {
        events.push(json!({"ph": "C", "pid": 1, "tid": 2, "name": "heap used", "ts": us(h.at), "args": {"bytes": h.used}}));
    }
    for m in &p.markers {
        events.push(
            json!({"ph": "i", "s": "g", "pid": 1, "tid": 2, "name": m.label, "ts": us(m.at)}),
        );
    }
    for r in &p.regions {
        let end = r.end.unwrap_or(p.meta.duration_ticks);
        events.push(json!({
            "ph": "X", "pid": 1, "tid": 2, "name": format!("region {}", r.label), "ts": us(r.start), "dur": us(end.saturating_sub(r.start)),
            "args": {"alloc_count": r.alloc_count, "alloc_bytes": r.alloc_bytes, "opcodes": r.opcodes},
        }));
    }
    json!({"traceEvents": events, "displayTimeUnit": "ms", "otherData": {"script": p.meta.script, "clock": p.meta.clock.name}})
}

/// Where each call-tree node starts when the aggregated tree is laid out
/// on a time axis: roots one after another, each node as long as its
/// inclusive time, its children side by side from its start.
pub fn node_layout(p: &Profile) -> Vec<u64> {
    let mut children: Vec<Vec<usize>> = vec![Vec::new(); p.call_tree.len()];
    let mut roots = Vec::new();
    for (i, n) in p.call_tree.iter().enumerate() {
        match n.parent {
            Some(par) if par < i => children[par].push(i),
            _ => roots.push(i),
        }
    }
    let mut starts = vec![0u64; p.call_tree.len()];
    let mut stack: Vec<(usize, u64)> = Vec::new();
    let mut t = 0u64;
    for &r in &roots {
        stack.push((r, t));
        t = t.saturating_add(p.call_tree[r].incl_ticks);
    }
    while let Some((i, start)) = stack.pop() {
        starts[i] = start;
        let mut c = start;
        for &ch in &children[i] {
            stack.push((ch, c));
            c = c.saturating_add(p.call_tree[ch].incl_ticks);
        }
    }
    starts
}

/// A minimal protobuf writer for the pprof message.
#[derive(Default)]
struct Pb(Vec<u8>);

impl Pb {
    fn varint(&mut self, mut v: u64) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    fn key(&mut self, field: u32, wire: u8) {
        self.varint(((field as u64) << 3) | wire as u64);
    }
    fn uint(&mut self, field: u32, v: u64) {
        if v != 0 {
            self.key(field, 0);
            self.varint(v);
        }
    }
    fn int(&mut self, field: u32, v: i64) {
        if v != 0 {
            self.key(field, 0);
            self.varint(v as u64);
        }
    }
    fn bytes(&mut self, field: u32, b: &[u8]) {
        self.key(field, 2);
        self.varint(b.len() as u64);
        self.0.extend_from_slice(b);
    }
    fn packed(&mut self, field: u32, vals: &[u64]) {
        let mut inner = Pb::default();
        for &v in vals {
            inner.varint(v);
        }
        self.bytes(field, &inner.0);
    }
}

/// The labels a pprof export carries: the profile's own facts (`target`,
/// `micropython_version`, `script`), then `extra` (`board`, `commit`, …;
/// an extra label with a fact's key replaces the fact).
pub fn pprof_labels(p: &Profile, extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut labels: Vec<(String, String)> = [
        ("target", p.meta.target.as_str()),
        ("micropython_version", p.meta.micropython_version.as_str()),
        ("script", crate::format::short_path(&p.meta.script)),
    ]
    .into_iter()
    .filter(|(_, v)| !v.is_empty())
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        labels.retain(|(have, _)| have != k);
        labels.push((k.clone(), v.clone()));
    }
    labels
}

/// pprof (gzipped protobuf) with sample types cycles, opcodes, alloc_count
/// and alloc_bytes; one sample per call-tree node.
pub fn pprof(p: &Profile, out: impl Write) -> Result<(), FlameError> {
    pprof_with_labels(p, &[], out)
}

/// A function name as pprof shows it whole: pprof shortens names by
/// dropping what is in angle brackets (C++ template arguments), which would
/// leave `<module>`, `<listcomp>` or `<compile x.py>` as nothing, shown as
/// `<unknown>`; single guillemets keep them readable.
fn pprof_name(name: &str) -> String {
    frame_name(name)
        .replace('<', "\u{2039}")
        .replace('>', "\u{203a}")
}

/// [`pprof`] with labels (see [`pprof_labels`]) on every sample, where
/// `pprof -tags` shows them and continuous profilers index them, and as
/// `key=value` comments in the file.
pub fn pprof_with_labels(
    p: &Profile,
    extra: &[(String, String)],
    out: impl Write,
) -> Result<(), FlameError> {
    let mut strings: Vec<String> = vec![String::new()];
    let mut index: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    let mut intern = |s: &str, strings: &mut Vec<String>| -> i64 {
        if let Some(&i) = index.get(s) {
            return i;
        }
        strings.push(s.to_string());
        let i = (strings.len() - 1) as i64;
        index.insert(s.to_string(), i);
        i
    };
    let mut m = Pb::default();
    let cycles_unit = if p.meta.clock.unit == "ns" {
        "nanoseconds"
    } else {
        "count"
    };
    for (t, u) in [
        ("cycles", cycles_unit),
        ("opcodes", "count"),
        ("alloc_count", "count"),
        ("alloc_bytes", "bytes"),
    ] {
        let mut vt = Pb::default();
        vt.int(1, intern(t, &mut strings));
        vt.int(2, intern(u, &mut strings));
        m.bytes(1, &vt.0);
    }
    let labels: Vec<(i64, i64)> = pprof_labels(p, extra)
        .iter()
        .map(|(k, v)| (intern(k, &mut strings), intern(v, &mut strings)))
        .collect();
    let comments: Vec<i64> = pprof_labels(p, extra)
        .iter()
        .map(|(k, v)| intern(&format!("{k}={v}"), &mut strings))
        .collect();
    let stacks = p.stacks();
    // With line time, a node's cycles go to samples whose leaf location is
    // one of its lines (ids after the functions' own, one per function and
    // line), the other values stay on the node's own sample.
    let splits = line_splits(p);
    let mut line_locs: Vec<(usize, u32)> = Vec::new();
    let mut line_loc_id: std::collections::HashMap<(usize, u32), u64> =
        std::collections::HashMap::new();
    let mut samples: Vec<(Vec<u64>, [u64; 4])> = Vec::new();
    for (i, n) in p.call_tree.iter().enumerate() {
        // Locations are one per function (id = function id + 1), leaf first.
        let locs: Vec<u64> = stacks[i].0.iter().rev().map(|&f| f as u64 + 1).collect();
        let mut ticks_left = n.excl_ticks;
        for &(line, t) in &splits[i] {
            let id = *line_loc_id.entry((n.function, line)).or_insert_with(|| {
                line_locs.push((n.function, line));
                (p.functions.len() + line_locs.len()) as u64
            });
            let mut l = vec![id];
            l.extend_from_slice(&locs);
            samples.push((l, [t, 0, 0, 0]));
            ticks_left = ticks_left.saturating_sub(t);
        }
        samples.push((locs, [ticks_left, n.opcodes, n.alloc_count, n.alloc_bytes]));
    }
    // What was allocated outside every bytecode frame (the main script's
    // compile, the runtime) is the `<runtime>` function's, as in the
    // summary, so pprof's totals are the profile's.
    let outside = p
        .alloc_sites
        .iter()
        .filter(|a| a.node.is_none())
        .fold((0u64, 0u64), |t, a| (t.0 + a.count, t.1 + a.bytes));
    if let Some(runtime) = p.functions.iter().position(|f| f.name == "<runtime>") {
        samples.push((vec![runtime as u64 + 1], [0, 0, outside.0, outside.1]));
    }
    for (locs, vals) in samples {
        if vals.iter().all(|&v| v == 0) {
            continue;
        }
        let mut s = Pb::default();
        s.packed(1, &locs);
        s.packed(2, &vals);
        for &(k, v) in &labels {
            let mut l = Pb::default();
            l.int(1, k);
            l.int(2, v);
            s.bytes(3, &l.0);
        }
        m.bytes(2, &s.0);
    }
    for (fid, f) in p.functions.iter().enumerate() {
        let mut line = Pb::default();
        line.uint(1, fid as u64 + 1);
        line.int(2, f.line as i64);
        let mut loc = Pb::default();
        loc.uint(1, fid as u64 + 1);
        loc.bytes(4, &line.0);
        m.bytes(4, &loc.0);
    }
    for (k, &(fid, line_no)) in line_locs.iter().enumerate() {
        let mut line = Pb::default();
        line.uint(1, fid as u64 + 1);
        line.int(2, line_no as i64);
        let mut loc = Pb::default();
        loc.uint(1, (p.functions.len() + k + 1) as u64);
        loc.bytes(4, &line.0);
        m.bytes(4, &loc.0);
    }
    for (fid, f) in p.functions.iter().enumerate() {
        let file = p
            .files
            .get(f.file)
            .map(|s| s.path.clone())
            .unwrap_or_default();
        let mut func = Pb::default();
        func.uint(1, fid as u64 + 1);
        func.int(2, intern(&pprof_name(&f.qualname), &mut strings));
        func.int(3, intern(&pprof_name(&f.name), &mut strings));
        func.int(4, intern(&file, &mut strings));
        func.int(5, f.line as i64);
        m.bytes(5, &func.0);
    }
    for s in &strings {
        m.bytes(6, s.as_bytes());
    }
    // Profile.comment (field 13): packed string indices.
    if !comments.is_empty() {
        let c: Vec<u64> = comments.iter().map(|&i| i as u64).collect();
        m.packed(13, &c);
    }
    let mut gz = flate2::write::GzEncoder::new(out, flate2::Compression::default());
    gz.write_all(&m.0)?;
    gz.finish()?;
    Ok(())
}
