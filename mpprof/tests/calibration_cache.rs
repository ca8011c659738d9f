//! The host runtime's calibration kept between runs (docs/time.md §2): the
//! first three runs of a binary measure the profiler's own cost and each
//! keeps its figures; later runs take their median instead of measuring.
//! Checked through `mpprof run` on the real instrumented VM, with the cost
//! file each run reads and writes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use mpprof_profile::{Profile, ProfilerCost};

struct Scratch(PathBuf);

impl Scratch {
    fn new(tag: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("mpprof-costs-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The costs a run measures: per opcode, call, allocation, typed
/// allocation, native call, an allocation record's own part of an
/// allocation's cost (its type looked up, its type told), what a SITE
/// record and a call off the recent node add, and per viper call.
const COSTS: usize = 10;

/// One line of the cost file: the counter rate, then ticks per opcode,
/// call, allocation, typed allocation, native call, guessed and direct
/// record, what a SITE record adds to one and what a call adds when its
/// node is not the caller's most recent callee, and per viper call, in 16.16
/// fixed point. The profile has the first five and the last (the records'
/// parts are within the allocations').
#[derive(Debug, Clone, Copy)]
struct Line {
    hz: u64,
    q16: [u64; COSTS],
}

fn lines(costs: &Path) -> Vec<Line> {
    std::fs::read_to_string(costs)
        .unwrap()
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            assert_eq!(
                f.len(),
                2 + COSTS,
                "a cost line is a tag, the rate and the costs: {l:?}"
            );
            assert_eq!(f[0], "mpprof-costs-6");
            let n: Vec<u64> = f[1..].iter().map(|x| x.parse().unwrap()).collect();
            Line {
                hz: n[0],
                q16: std::array::from_fn(|k| n[1 + k]),
            }
        })
        .collect()
}

/// `mpprof run` of a fixture with MPPROF_COSTS_FILE set: the profile's
/// costs.
fn run(costs: &Path, out: &Path) -> ProfilerCost {
    let script = common::root().join("fixtures/causes/float.py");
    let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "-q", "-o"])
        .arg(out)
        .arg(&script)
        .env("MPPROF_COSTS_FILE", costs)
        .env_remove("MPPROF_CLOCK")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    Profile::from_json_file(out)
        .unwrap()
        .meta
        .profiler_cost
        .expect("the profile says what the profiler costs")
}

/// The profile's costs (ns on the host's wire) against a line's (counter
/// ticks, 16.16): equal once scaled by the line's rate, within the rate's
/// run-to-run difference (the runtime accepts lines within 0.5%).
fn assert_same(c: &ProfilerCost, ticks_q16: [u64; COSTS], hz: u64) {
    let got = [
        (c.opcode_ticks, 0),
        (c.call_ticks, 1),
        (c.alloc_ticks, 2),
        (c.typed_alloc_ticks, 3),
        (c.native_call_ticks, 4),
        (c.viper_call_ticks, 9),
    ];
    for (k, &(g, line_index)) in got.iter().enumerate() {
        let q = ticks_q16[line_index];
        let want = q as f64 / 65536.0 * 1e9 / hz as f64;
        assert!(
            (g - want).abs() <= want * 0.006 + 1e-4,
            "cost {k}: the profile has {g} ns, the file {want} ns"
        );
    }
}

fn median(mut v: [u64; 3]) -> u64 {
    v.sort_unstable();
    v[1]
}

#[test]
fn three_runs_calibrate_and_later_runs_take_their_median() {
    let dir = Scratch::new("median");
    let costs = dir.0.join("vm.costs");
    for i in 0..3 {
        let c = run(&costs, &dir.0.join(format!("p{i}.json")));
        let l = lines(&costs);
        assert_eq!(c.from_runs, 0, "run {i} measured its own costs");
        assert_eq!(l.len(), i + 1, "run {i} kept its figures");
        assert_same(&c, l[i].q16, l[i].hz);
    }
    let l = lines(&costs);
    let want: [u64; COSTS] =
        std::array::from_fn(|k| median([l[0].q16[k], l[1].q16[k], l[2].q16[k]]));
    for i in 3..5 {
        let c = run(&costs, &dir.0.join(format!("p{i}.json")));
        assert_eq!(c.from_runs, 3, "run {i} took the median of three runs");
        assert_eq!(lines(&costs).len(), 3, "run {i} measured nothing to keep");
        assert_same(&c, want, l[0].hz);
    }
}

#[test]
fn figures_of_another_clock_rate_are_not_used() {
    let dir = Scratch::new("rate");
    let costs = dir.0.join("vm.costs");
    // A first run finds the clock's rate; three lines at twice that rate
    // (another CPU) must then be passed over.
    run(&costs, &dir.0.join("probe.json"));
    let real = lines(&costs)[0];
    let other = real.hz * 2;
    let foreign: String = (0..3)
        .map(|k| {
            format!(
                "mpprof-costs-6 {other} {} {} {} {} {} {} {} {} {} {}\n",
                100 + k,
                200 + k,
                300 + k,
                400 + k,
                500 + k,
                60 + k,
                50 + k,
                20 + k,
                10 + k,
                700 + k
            )
        })
        .collect();
    std::fs::write(&costs, foreign).unwrap();
    let c = run(&costs, &dir.0.join("p.json"));
    assert_eq!(
        c.from_runs, 0,
        "lines of another rate are not this machine's"
    );
    let l = lines(&costs);
    assert_eq!(l.len(), 4, "the run kept its own figures beside them");
    assert!(l[3].hz.abs_diff(real.hz) <= real.hz / 200);
    assert_same(&c, l[3].q16, l[3].hz);
}
