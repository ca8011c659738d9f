//! Recorded streams from the real C encoder through the decoder and the
//! aggregator, and the live view: rendering on ratatui's TestBackend from
//! those streams, and the real binary in tmux.

use std::path::Path;
use std::process::Command;

use mpprof::live::view::{self, Action, LiveState, Pane, SortKey};
use mpprof::record::aggregate::{profile_from_stream, RunInfo};
use mpprof::wire::decode_all;
use mpprof_profile::Profile;
use ratatui::backend::TestBackend;
use ratatui::Terminal;

mod common;
use common::root;

fn stream(name: &str) -> Vec<u8> {
    std::fs::read(root().join("fixtures/streams").join(name)).unwrap()
}

fn profile(name: &str) -> Profile {
    profile_from_stream(&stream(name), &RunInfo::default())
}

#[test]
fn recorded_streams_decode_cleanly_into_their_profiles() {
    for name in [
        "bound_method.host.bin",
        "bound_method.qemu.bin",
        "fib.host.bin",
        "float.host.bin",
        "markers.host.bin",
    ] {
        let bytes = stream(name);
        let (events, stats) = decode_all(&bytes);
        assert!(events.len() > 10, "{name}");
        assert_eq!(
            stats.crc_errors + stats.bad_frames + stats.lost_frames + stats.skipped_bytes,
            0,
            "{name}: {stats:?}"
        );
        assert_eq!(stats.truncated_tail_bytes, 0);
        let p = profile(name);
        assert!(!p.meta.partial, "{name} ends with its END record");
        p.validate().unwrap();
    }
    let fib = profile("fib.host.bin");
    assert_eq!(fib.functions[fib.find_functions("fib")[0]].calls, 1973);
    // The board's stream says the same about the hot line as the host's.
    let (h, q) = (
        profile("bound_method.host.bin"),
        profile("bound_method.qemu.bin"),
    );
    assert_eq!(q.meta.target, "qemu");
    assert_eq!(q.meta.clock.name, "timer0");
    let bm = |p: &Profile| {
        p.alloc_sites
            .iter()
            .filter(|s| s.cause.as_str() == "bound_method")
            .map(|s| (s.line, s.count, s.bytes))
            .collect::<Vec<_>>()
    };
    assert_eq!(bm(&h), bm(&q));
    // A stream cut short still gives what it had, marked partial.
    let bytes = stream("fib.host.bin");
    let cut = profile_from_stream(&bytes[..bytes.len() / 2], &RunInfo::default());
    assert!(cut.meta.partial);
}

fn render(st: &LiveState, p: &Profile, w: u16, h: u16) -> String {
    let mut term = Terminal::new(TestBackend::new(w, h)).unwrap();
    term.draw(|f| view::draw(f, st, p)).unwrap();
    let buf = term.backend().buffer().clone();
    let mut out = String::new();
    for y in 0..h {
        for x in 0..w {
            out.push_str(buf[(x, y)].symbol());
        }
        out.push('\n');
    }
    out
}

#[test]
fn every_pane_shows_its_rows() {
    let p = profile("bound_method.host.bin");
    let mut st = LiveState::new("host", "fixtures/causes/bound_method.py", "bm.mpprof.json");
    st.push_output("hello from the script\n");
    st.note_allocs(p.gc.alloc_count);
    let screen = render(&st, &p, 160, 45);
    // Functions, sorted by exclusive time: Sensor.hot is the hottest.
    let f_row = screen.lines().find(|l| l.contains("calls")).unwrap();
    assert!(f_row.contains("function"));
    let first = screen
        .lines()
        .skip_while(|l| !l.contains("function"))
        .nth(1)
        .unwrap();
    assert!(first.contains("hot") && first.contains("1,311"), "{first}");
    // Allocating lines with cause and fix.
    let line = screen
        .lines()
        .find(|l| l.contains(":15") && l.contains("bound_method"))
        .expect("the hot line");
    assert!(line.contains("100"), "{line}");
    // Heap, opcode mix, output, status.
    assert!(screen.contains("Heap") && screen.contains("used of"));
    assert!(screen.contains("Opcode mix") && screen.contains("LOAD_FAST"));
    assert!(screen.contains("hello from the script"));
    assert!(screen.contains("bound_method.py on host") && screen.contains("dropped 0"));
}

#[test]
fn keys_sort_focus_open_source_and_quit() {
    let p = profile("bound_method.host.bin");
    let mut st = LiveState::new("host", "s.py", "p.json");
    assert_eq!(view::handle_key(&mut st, &p, 's'), Action::None);
    assert_eq!(st.sort, SortKey::Inclusive);
    let by_calls = {
        view::handle_key(&mut st, &p, 's');
        view::sorted_functions(&p, st.sort)
    };
    assert_eq!(
        p.functions[by_calls[0]].calls, 100,
        "register is called most"
    );
    view::handle_key(&mut st, &p, '\n');
    let screen = render(&st, &p, 160, 45);
    assert!(
        screen.contains("(Esc: close)"),
        "the annotated source opens"
    );
    view::handle_key(&mut st, &p, '\u{1b}');
    view::handle_key(&mut st, &p, '\t');
    assert_eq!(st.focus, Pane::Lines);
    view::handle_key(&mut st, &p, '?');
    assert!(render(&st, &p, 160, 45).contains("quit (the profile is written)"));
    view::handle_key(&mut st, &p, 'x');
    assert!(!st.help);
    view::handle_key(&mut st, &p, 'p');
    assert!(st.paused);
    assert_eq!(view::handle_key(&mut st, &p, 'q'), Action::Quit);
}

#[test]
fn a_small_terminal_and_a_stopped_stream_are_said_plainly() {
    let p = profile("fib.host.bin");
    let mut st = LiveState::new("host", "fib.py", "fib.json");
    let small = render(&st, &p, 40, 10);
    assert!(small.contains("needs at"), "{small}");
    st.stream_ended = true;
    assert!(render(&st, &p, 160, 45).contains("the stream stopped"));
}

#[test]
fn live_needs_a_terminal() {
    let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "--live"])
        .arg(root().join("fixtures/misc/fib.py"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("drop --live"));
}

#[test]
fn the_live_view_runs_in_tmux_and_q_writes_the_profile() {
    let p = live_view_in_tmux(&[], "host", None);
    assert!(p.meta.partial, "the script was stopped");
    assert!(p.functions[p.find_functions("spin")[0]].opcodes > 0 || p.total_opcodes() > 0);
}

#[test]
fn the_live_view_watches_the_emulated_board() {
    // The board runs the script from a thread of its own; the view follows
    // its RTT stream; `q` sends Ctrl-C and the profile so far is written.
    common::default_qemu_firmware();
    let p = live_view_in_tmux(&["--target", "qemu"], "qemu", None);
    assert_eq!(p.meta.target, "qemu");
    assert!(p.meta.partial, "the script was stopped");
    assert!(p.functions[p.find_functions("spin")[0]].opcodes > 10_000);
}

#[test]
fn the_live_view_on_the_host_honours_bits64_timeout_and_save_stream() {
    // The live view records through the same path as a plain run: the
    // 64-bit build runs, the timeout ends the script (the view stays until
    // q), and the saved stream decodes into the profile the view wrote.
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("live");
    std::fs::create_dir_all(&dir).unwrap();
    let stream = dir.join("forever-timeout.stream");
    let _ = std::fs::remove_file(&stream);
    common::host_vm_64();
    let p = live_view_in_tmux(
        &[
            "--bits64",
            "--timeout",
            "2s",
            "--save-stream",
            stream.to_str().unwrap(),
        ],
        "timeout",
        Some("timeout after 2s"),
    );
    assert_eq!(p.meta.exit.reason, mpprof_profile::ExitReason::Timeout);
    assert_eq!(p.meta.word_bits, 64);
    let saved = profile_from_stream(&std::fs::read(&stream).unwrap(), &RunInfo::default());
    let spin = |p: &Profile| p.functions[p.find_functions("spin")[0]].opcodes;
    assert!(spin(&p) > 10_000);
    assert_eq!(spin(&saved), spin(&p));
    assert_eq!(saved.gc.alloc_count, p.gc.alloc_count);
}

/// `mpprof run --live ARGS forever.py` in a tmux pane: wait for the view to
/// show the spinning function, sort (or, with `quit_after`, wait for that
/// text on the screen), quit; the profile it wrote.
fn live_view_in_tmux(args: &[&str], name: &str, quit_after: Option<&str>) -> Profile {
    common::tmux_installed();
    // Built before the view starts, so the view's first screen is the run.
    common::host_vm();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("live");
    std::fs::create_dir_all(&dir).unwrap();
    let out = dir.join(format!("forever-{name}.json"));
    let _ = std::fs::remove_file(&out);
    let session = format!("mpprof-live-{name}-{}", std::process::id());
    let cmd = format!(
        "{} run --live {} -o {} {}; sleep 5",
        env!("CARGO_BIN_EXE_mpprof"),
        args.join(" "),
        out.display(),
        root().join("fixtures/misc/forever.py").display()
    );
    let tmux = |args: &[&str]| Command::new("tmux").args(args).output().unwrap();
    assert!(tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "150",
        "-y",
        "45",
        &cmd
    ])
    .status
    .success());
    let capture = || {
        String::from_utf8_lossy(&tmux(&["capture-pane", "-t", &session, "-p"]).stdout).into_owned()
    };
    let mut screen = String::new();
    // Polled up to a guard far beyond any plausible start.
    for _ in 0..3000 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        screen = capture();
        if screen.contains("spin") {
            break;
        }
    }
    assert!(
        screen.contains("Functions") && screen.contains("spin"),
        "{screen}"
    );
    let wait_for = |text: &str| {
        for _ in 0..3000 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            if capture().contains(text) {
                return true;
            }
        }
        false
    };
    match quit_after {
        None => {
            assert!(screen.contains("running"));
            tmux(&["send-keys", "-t", &session, "s"]);
            assert!(wait_for("sorted by inclusive"), "{}", capture());
        }
        Some(text) => assert!(wait_for(text), "{}", capture()),
    }
    tmux(&["send-keys", "-t", &session, "q"]);
    for _ in 0..3000 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if out.exists() {
            break;
        }
    }
    let _ = tmux(&["kill-session", "-t", &session]);
    Profile::from_json_file(&out).expect("q wrote the profile")
}

#[test]
fn the_live_view_attaches_to_a_running_target() {
    common::tmux_installed();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("attach");
    std::fs::create_dir_all(&dir).unwrap();
    let fifo = dir.join("stream.fifo");
    let out = dir.join("attached.json");
    let _ = std::fs::remove_file(&fifo);
    let _ = std::fs::remove_file(&out);
    assert!(Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let build = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .arg("build")
        .output()
        .unwrap();
    assert!(build.status.success());
    let micropython = String::from_utf8_lossy(&build.stdout).trim().to_string();
    let sock = format!("mpprof-attach-{}", std::process::id());
    let tmux = |args: &[&str]| {
        Command::new("tmux")
            .arg("-L")
            .arg(&sock)
            .args(args)
            .output()
            .unwrap()
    };
    let script = root().join("fixtures/misc/forever.py");
    let cmd = format!(
        "{} live {} -o {} --script {}; sleep 5",
        env!("CARGO_BIN_EXE_mpprof"),
        fifo.display(),
        out.display(),
        script.display()
    );
    assert!(tmux(&[
        "new-session",
        "-d",
        "-s",
        "a",
        "-x",
        "150",
        "-y",
        "45",
        &cmd
    ])
    .status
    .success());
    // The target, started on its own, streams into the FIFO.
    let mut target = Command::new(&micropython)
        .arg(&script)
        .env("MPPROF_PATH", &fifo)
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut screen = String::new();
    for _ in 0..3000 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        screen =
            String::from_utf8_lossy(&tmux(&["capture-pane", "-t", "a", "-p"]).stdout).into_owned();
        if screen.contains("spin") {
            break;
        }
    }
    assert!(
        screen.contains("spin") && screen.contains("attached"),
        "{screen}"
    );
    tmux(&["send-keys", "-t", "a", "q"]);
    for _ in 0..3000 {
        std::thread::sleep(std::time::Duration::from_millis(200));
        if out.exists() {
            break;
        }
    }
    let _ = target.kill();
    let _ = target.wait();
    let _ = tmux(&["kill-server"]);
    let p = Profile::from_json_file(&out).expect("closing the view wrote the profile");
    assert!(p.meta.partial, "the target was still running");
    assert!(p.functions[p.find_functions("spin")[0]].opcodes > 10_000);
}

/// A recorded profile with every count made large, as a long run gives:
/// 100 allocations on the hot line become 1,600,000.
fn large_profile() -> Profile {
    let mut p = profile("bound_method.host.bin");
    const K: u64 = 16_000;
    for f in &mut p.functions {
        f.calls *= K;
        f.opcodes *= K;
        f.alloc_count *= K;
    }
    for o in &mut p.opcode_mix {
        o.count *= K;
    }
    for s in &mut p.alloc_sites {
        s.count *= K;
        s.bytes *= K;
    }
    for l in &mut p.lines {
        l.opcodes *= K;
        l.alloc_count *= K;
        l.alloc_bytes *= K;
        l.executions = l.executions.map(|n| n * K);
        for c in &mut l.causes {
            c.count *= K;
        }
    }
    p.gc.alloc_count *= K;
    p.gc.alloc_bytes *= K;
    p
}

/// The numbers on a screen written as counts: with thousands separators or
/// abbreviated with a unit (`1.6M`).
fn count_tokens(screen: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = screen.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let starts = chars[i].is_ascii_digit() && (i == 0 || !chars[i - 1].is_alphanumeric());
        if !starts {
            i += 1;
            continue;
        }
        let mut j = i;
        while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == ',' || chars[j] == '.') {
            j += 1;
        }
        if j < chars.len() && "kMGT".contains(chars[j]) {
            j += 1;
        }
        let tok: String = chars[i..j].iter().collect();
        let tok = tok.trim_end_matches([',', '.']).to_string();
        if tok.contains(',') || tok.ends_with(['k', 'M', 'G', 'T']) {
            out.push(tok);
        }
        i = j.max(i + 1);
    }
    out
}

fn well_grouped(tok: &str) -> bool {
    let groups: Vec<&str> = tok.split(',').collect();
    (1..=3).contains(&groups[0].len())
        && groups[1..].iter().all(|g| g.len() == 3)
        && groups.iter().all(|g| g.chars().all(|c| c.is_ascii_digit()))
}

/// `n` whole or abbreviated, as one token of `line`.
fn shows(line: &str, n: u64) -> bool {
    let tokens = count_tokens(line);
    let plain: Vec<&str> = line
        .split(|c: char| !(c.is_ascii_digit() || c == ','))
        .collect();
    tokens.contains(&reports::format::count(n))
        || tokens.contains(&reports::format::count_short(n))
        || (n < 1000 && plain.contains(&n.to_string().as_str()))
}

#[test]
fn no_number_is_cut_off_at_any_width() {
    let p = large_profile();
    let mut st = LiveState::new("host", "fixtures/causes/bound_method.py", "bm.mpprof.json");
    st.note_allocs(p.gc.alloc_count);
    // Every count the view can show, whole and abbreviated.
    let mut known: Vec<u64> = Vec::new();
    known.extend(
        p.functions
            .iter()
            .flat_map(|f| [f.calls, f.opcodes, f.alloc_count]),
    );
    known.extend(p.opcode_mix.iter().map(|o| o.count));
    known.extend(p.alloc_sites.iter().map(|s| s.count));
    known.extend(
        reports::summary::alloc_line_rows(&p, 100)
            .iter()
            .flat_map(|r| [Some(r.count), r.executions])
            .flatten(),
    );
    known.push(p.gc.alloc_count);
    let forms: Vec<String> = known
        .iter()
        .flat_map(|&n| [reports::format::count(n), reports::format::count_short(n)])
        .collect();
    let hot = p
        .alloc_sites
        .iter()
        .filter(|s| s.cause.as_str() == "bound_method")
        .map(|s| s.count)
        .sum::<u64>();
    assert_eq!(hot, 1_600_000);
    let top = &p.functions[view::sorted_functions(&p, SortKey::Exclusive)[0]];
    for (w, h) in [(150, 45), (100, 30), (60, 20)] {
        let screen = render(&st, &p, w, h);
        for tok in count_tokens(&screen) {
            assert!(
                well_grouped(&tok) || !tok.contains(','),
                "{w}x{h}: `{tok}` cut:\n{screen}"
            );
            assert!(
                forms.contains(&tok),
                "{w}x{h}: `{tok}` is no count of the profile:\n{screen}"
            );
        }
        // The hot line's count, whole or abbreviated, on its row.
        let line = screen
            .lines()
            .find(|l| l.contains(":15") && l.contains("bound_method"))
            .unwrap_or_else(|| panic!("{w}x{h}: the hot line\n{screen}"));
        assert!(shows(line, hot), "{w}x{h}: {line}");
        // The hottest function's row: its counts in the columns shown.
        let header = screen.lines().find(|l| l.contains("function")).unwrap();
        let row = screen
            .lines()
            .skip_while(|l| !l.contains("function"))
            .nth(1)
            .unwrap();
        assert!(row.contains(&top.qualname), "{w}x{h}: {row}");
        for (col, n) in [
            ("calls", top.calls),
            ("opcodes", top.opcodes),
            ("allocs", top.alloc_count),
        ] {
            if header.contains(col) {
                assert!(shows(row, n), "{w}x{h}: {col} {n} in {row}");
            }
        }
        // Every opcode shown in the mix has its count on its row.
        for o in &p.opcode_mix {
            if let Some(l) = screen
                .lines()
                .find(|l| l.contains(&format!(" {} ", o.opcode)))
            {
                assert!(
                    shows(l, o.count),
                    "{w}x{h}: {} {} in {l}",
                    o.opcode,
                    o.count
                );
            }
        }
        // The heap's text, whole.
        assert!(screen.contains("allocated"), "{w}x{h}:\n{screen}");
        if let Some(b) = p.gc.largest_free_after_last() {
            assert!(
                screen.contains(&format!("largest free {}", reports::format::bytes(b))),
                "{w}x{h}:\n{screen}"
            );
        }
    }
    // At 150 columns every count is whole.
    let wide = render(&st, &p, 150, 45);
    assert!(
        count_tokens(&wide)
            .iter()
            .all(|t| !t.ends_with(['k', 'M', 'G', 'T'])),
        "{wide}"
    );
    assert!(wide.contains("1,600,000"), "{wide}");
}
