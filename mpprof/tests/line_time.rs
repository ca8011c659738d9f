//! Time per line (`mpprof run --line-time`), checked against an independent
//! truth. On the emulated board, where guest time is deterministic, each
//! line's exact ticks must match the same statement timed with timer0 on the
//! plain firmware (no profiler compiled in), and a function's lines must add
//! up to its exclusive time exactly. On the host, where line time is
//! sampled, the line calling a slow C function must come first, with its
//! samples, on every run.

use std::collections::BTreeMap;

use board_agent::qemu::QemuBoard;
use mpprof_profile::{LineTimeMode, Profile};

mod common;
use common::{mpprof, qemu_firmware, root};

const BOARD_SCRIPT: &str = "fixtures/timing/lines.py";
const HOST_SCRIPT: &str = "fixtures/timing/lines_host.py";

/// `line NAME TICKS` from the script's output on the plain firmware.
fn board_truth() -> BTreeMap<String, i64> {
    let firmware = qemu_firmware(&vm_instrumented::BuildOptions {
        flavour: vm_instrumented::Flavour::Plain,
        ..vm_instrumented::BuildOptions::default()
    });
    let source = std::fs::read(root().join(BOARD_SCRIPT)).unwrap();
    let (output, stderr) = QemuBoard {
        firmware,
        qemu: "qemu-system-arm".into(),
        icount_shift: 4,
    }
    .run_once(&source)
    .expect("the script runs on the plain firmware");
    assert!(stderr.is_empty(), "{}", String::from_utf8_lossy(&stderr));
    String::from_utf8_lossy(&output)
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next() == Some("line")).then_some(())?;
            Some((w.next()?.to_string(), w.next()?.parse().ok()?))
        })
        .collect()
}

fn run_line_time(script: &str, target: &str, name: &str) -> (Profile, String) {
    let out = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.json"));
    let o = mpprof(&[
        "run",
        "--line-time",
        "--target",
        target,
        "-o",
        out.to_str().unwrap(),
        root().join(script).to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    (
        Profile::from_json_file(&out).unwrap(),
        // The summary is on stderr (stdout is the script's own output).
        format!(
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
    )
}

/// The line of `work` whose source text is `text` (trimmed).
fn line_of(p: &Profile, text: &str) -> u32 {
    let work = &p.functions[p.find_functions("work")[0]];
    let src = p.files[work.file]
        .source
        .as_ref()
        .expect("the source is in the profile");
    let from = work.line as usize;
    let i = src[from..]
        .iter()
        .position(|l| l.trim() == text)
        .unwrap_or_else(|| panic!("no line `{text}` in work"));
    (from + i) as u32 + 1
}

#[test]
fn exact_line_ticks_on_the_board_match_the_statements_timed_without_the_profiler() {
    let truth = board_truth();
    let (p, summary) = run_line_time(BOARD_SCRIPT, "qemu", "line-time-board");
    let lt = p
        .meta
        .line_time
        .expect("the profile says how line time was taken");
    assert_eq!(lt.mode, LineTimeMode::Exact);
    let work = p.find_functions("work")[0];
    let file = p.functions[work].file;
    let statements = [
        ("int_add", "y = a + b"),
        ("float_mul", "z = f * g"),
        ("sorted", "s = sorted(xs)"),
        ("helper", "h = helper(30)"),
        ("collect", "gc.collect()"),
    ];
    let mut report = String::new();
    let mut failed = false;
    for (name, text) in statements {
        let l = p.line(file, line_of(&p, text)).expect("the line ran");
        let got = l.incl_ticks.expect("a line that ran has a time") as f64;
        let t = truth[name] as f64;
        let err = (got - t) / t;
        report.push_str(&format!(
            "{text}: truth {t}, mpprof {got}, {:+.2}%\n",
            err * 100.0
        ));
        failed |= err.abs() > 0.02;
    }
    eprint!("{report}");
    assert!(!failed, "{report}");
    // The call's exclusive part is the call itself, the helper's lines
    // its inclusive rest.
    let call = p.line(file, line_of(&p, "h = helper(30)")).unwrap();
    let helper = &p.functions[p.find_functions("helper")[0]];
    assert_eq!(
        call.incl_ticks.unwrap() - call.excl_ticks.unwrap(),
        helper.incl_ticks,
        "the helper's inclusive ticks are the difference"
    );
    // The function's lines add up to its exclusive time, to the tick.
    // Entering it is on its `def` line (no other code there: decorated).
    let first = p.functions[work].line;
    let last = line_of(&p, "return y, z, s, h");
    let sum: u64 = (first..=last)
        .filter_map(|n| p.line(file, n))
        .map(|l| l.excl_ticks.unwrap())
        .sum();
    assert_eq!(sum, p.functions[work].excl_ticks, "{report}");
    // Only lines that ran have a time: their opcodes, or entering a
    // function (its `def` line).
    let def_lines: Vec<(usize, u32)> = p.functions.iter().map(|f| (f.file, f.line)).collect();
    for l in &p.lines {
        assert!(
            l.excl_ticks.is_none() || l.opcodes > 0 || def_lines.contains(&(l.file, l.line)),
            "line {} has a time but never ran",
            l.line
        );
    }
    assert!(summary.contains("Top lines by time"), "{summary}");
}

#[test]
fn sampled_line_time_on_the_host_puts_the_slow_c_call_first() {
    let mut firsts = Vec::new();
    for run in 0..3 {
        let (p, summary) = run_line_time(HOST_SCRIPT, "host", &format!("line-time-host-{run}"));
        let lt = p
            .meta
            .line_time
            .expect("the profile says how line time was taken");
        assert_eq!(lt.mode, LineTimeMode::Sampled);
        assert!(lt.sample_period_ns.is_some_and(|ns| ns > 0));
        let top = p.lines_by_time()[0];
        let text = p
            .source_line(top.file, top.line)
            .unwrap()
            .trim()
            .to_string();
        let samples = top.excl_samples.expect("a sampled line says its samples");
        assert!(samples >= 10, "{text}: {samples} samples");
        assert!(lt.samples >= samples);
        assert!(
            summary.contains("sampled") && summary.contains(&format!("{samples} samples")),
            "the summary says the times are sampled, with the count: {summary}"
        );
        firsts.push(text);
    }
    assert!(
        firsts.iter().all(|t| t == "ys = sorted(xs)"),
        "the slow C call is the top line on every run: {firsts:?}"
    );
}
