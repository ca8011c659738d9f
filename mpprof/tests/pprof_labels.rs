//! Labels in the pprof export, as continuous profilers index them: read
//! back with a small protobuf reader, and with Google's pprof tool.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use mpprof_profile::Profile;

mod common;
use common::{mpprof, protobuf_varint as varint, root};

fn tmp(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pprof-labels");
    std::fs::create_dir_all(&d).unwrap();
    d.join(name)
}

/// A real run of a fixture on the host, exported with two labels.
fn export(name: &str) -> (Profile, PathBuf) {
    let json = tmp(&format!("{name}.json"));
    let o = mpprof(&[
        "run",
        "-q",
        "-o",
        json.to_str().unwrap(),
        root().join("fixtures/causes/float.py").to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let pb = tmp(&format!("{name}.pb.gz"));
    let o = mpprof(&[
        "export",
        json.to_str().unwrap(),
        "--format",
        "pprof",
        "--label",
        "board=pico_w",
        "--label",
        "commit=0123abc",
        "-o",
        pb.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (Profile::from_json_file(&json).unwrap(), pb)
}

/// The fields of a protobuf message: (field, varint value or bytes).
fn fields(m: &[u8]) -> Vec<(u64, Result<u64, &[u8]>)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < m.len() {
        let key = varint(m, &mut i);
        match key & 7 {
            0 => out.push((key >> 3, Ok(varint(m, &mut i)))),
            2 => {
                let len = varint(m, &mut i) as usize;
                out.push((key >> 3, Err(&m[i..i + len])));
                i += len;
            }
            w => panic!("wire type {w} is not written by the exporter"),
        }
    }
    out
}

fn packed(b: &[u8]) -> Vec<u64> {
    let mut i = 0;
    let mut v = Vec::new();
    while i < b.len() {
        v.push(varint(b, &mut i));
    }
    v
}

/// Each sample's labels (key, value) and the profile's comments.
fn read_pprof(path: &Path) -> (Vec<Vec<(String, String)>>, Vec<String>) {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    let top = fields(&raw);
    let strings: Vec<String> = top
        .iter()
        .filter(|(f, _)| *f == 6)
        .map(|(_, v)| String::from_utf8(v.unwrap_err().to_vec()).unwrap())
        .collect();
    assert_eq!(
        strings[0], "",
        "the string table starts with the empty string"
    );
    let s = |i: u64| strings[i as usize].clone();
    let samples = top
        .iter()
        .filter(|(f, _)| *f == 2)
        .map(|(_, v)| {
            fields(v.unwrap_err())
                .into_iter()
                .filter(|(f, _)| *f == 3)
                .map(|(_, l)| {
                    let lf = fields(l.unwrap_err());
                    let get = |n| lf.iter().find(|(f, _)| *f == n).map(|(_, v)| v.unwrap());
                    (s(get(1).unwrap()), s(get(2).unwrap()))
                })
                .collect()
        })
        .collect();
    let comments = top
        .iter()
        .filter(|(f, _)| *f == 13)
        .flat_map(|(_, v)| match v {
            Ok(i) => vec![*i],
            Err(b) => packed(b),
        })
        .map(s)
        .collect();
    (samples, comments)
}

fn expected(p: &Profile) -> Vec<(String, String)> {
    let script = p.meta.script.rsplit('/').next().unwrap().to_string();
    assert_eq!(script, "float.py");
    [
        ("target", p.meta.target.clone()),
        ("micropython_version", p.meta.micropython_version.clone()),
        ("script", script),
        ("board", "pico_w".to_string()),
        ("commit", "0123abc".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

#[test]
fn every_sample_carries_the_runs_facts_and_the_given_labels() {
    let (p, pb) = export("decode");
    assert_eq!(p.meta.target, "host");
    assert!(!p.meta.micropython_version.is_empty());
    let want = expected(&p);
    let (samples, comments) = read_pprof(&pb);
    assert!(!samples.is_empty());
    for labels in &samples {
        assert_eq!(labels, &want);
    }
    let want_comments: Vec<String> = want.iter().map(|(k, v)| format!("{k}={v}")).collect();
    assert_eq!(comments, want_comments);
}

#[test]
fn bad_labels_are_refused() {
    let (_, _) = export("bad");
    let json = tmp("bad.json");
    for bad in ["noequals", "9key=v", "a-b=v", "k="] {
        let o = mpprof(&[
            "export",
            json.to_str().unwrap(),
            "--format",
            "pprof",
            "--label",
            bad,
            "-o",
            tmp("bad-out.pb.gz").to_str().unwrap(),
        ]);
        assert_eq!(o.status.code(), Some(2), "{bad}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(bad),
            "{bad}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn googles_pprof_tool_reads_the_labels() {
    let tool = common::pprof_tool();
    let (p, pb) = export("tool");
    let o = Command::new(&tool).arg("-tags").arg(&pb).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    // `key: Total …` then `… (100%): value` for a label on every sample.
    for (k, v) in expected(&p) {
        let block: Vec<&str> = out
            .lines()
            .skip_while(|l| !l.trim_start().starts_with(&format!("{k}: Total")))
            .take(2)
            .collect();
        assert_eq!(block.len(), 2, "{k} in\n{out}");
        assert!(
            block[1].contains("(  100%)") && block[1].trim_end().ends_with(&format!(": {v}")),
            "{k}={v} in\n{out}"
        );
    }
    let o = Command::new(&tool)
        .arg("-comments")
        .arg(&pb)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("board=pico_w") && out.contains("target=host"),
        "{out}"
    );
}

/// `pprof -top` for one sample type: its total and each function's own
/// value, by the name pprof shows.
fn pprof_top(
    tool: &std::path::Path,
    pb: &std::path::Path,
    sample: &str,
) -> (u64, Vec<(String, u64)>) {
    let o = Command::new(tool)
        .args([
            "-top",
            "-nodecount=1000",
            &format!("-sample_index={sample}"),
        ])
        .arg(pb)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    // `Showing nodes accounting for N, 100% of TOTAL total`
    let total = out
        .lines()
        .find_map(|l| l.split(" of ").nth(1)?.strip_suffix(" total")?.parse().ok())
        .unwrap_or_else(|| panic!("no total in\n{out}"));
    let rows = out
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("flat"))
        .skip(1)
        .filter_map(|l| {
            let w: Vec<&str> = l.split_whitespace().collect();
            Some((w.get(5..)?.join(" "), w.first()?.parse().ok()?))
        })
        .collect();
    (total, rows)
}

#[test]
fn pprof_top_shows_mpprofs_totals_and_function_names() {
    let tool = common::pprof_tool();
    let (p, pb) = export("top");
    let shown = |name: &str| name.replace('<', "\u{2039}").replace('>', "\u{203a}");
    for (sample, own, total) in [
        (
            "opcodes",
            (|f: &mpprof_profile::Function| f.opcodes) as fn(&mpprof_profile::Function) -> u64,
            p.functions.iter().map(|f| f.opcodes).sum::<u64>(),
        ),
        (
            "alloc_count",
            |f: &mpprof_profile::Function| f.alloc_count,
            p.alloc_sites.iter().map(|s| s.count).sum::<u64>(),
        ),
    ] {
        let (pprof_total, rows) = pprof_top(&tool, &pb, sample);
        assert_eq!(pprof_total, total, "{sample} total");
        assert!(!rows.is_empty());
        for (name, flat) in rows {
            let f = p
                .functions
                .iter()
                .find(|f| shown(&f.qualname) == name)
                .unwrap_or_else(|| panic!("pprof shows {name:?}, not a function of the profile"));
            assert_eq!(flat, own(f), "{sample} of {name}");
        }
    }
}
