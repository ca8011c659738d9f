//! `mpprof run` on the fixtures, end to end: the real instrumented MicroPython
//! (built from the pinned source on first use), the real stream, the real
//! decoder and aggregator. Expectations are the fixtures' own markers.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mpprof_profile::{Cause, ExitReason, Profile};

mod common;
use common::root;

fn out_dir(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("run-fixtures")
        .join(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Run `mpprof run` with `args` on `script`; returns the output and the profile.
fn mpprof_run(script: &Path, args: &[&str], name: &str) -> (Output, PathBuf) {
    let profile = out_dir(name).join("profile.json");
    let _ = std::fs::remove_file(&profile);
    let out = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .arg("run")
        .arg("-q")
        .arg("-o")
        .arg(&profile)
        .args(args)
        .arg(script)
        .output()
        .expect("mpprof runs");
    (out, profile)
}

fn profile_of(script: &Path, name: &str) -> Profile {
    let (out, path) = mpprof_run(script, &[], name);
    assert!(
        out.status.success(),
        "mpprof run {} failed: {}",
        script.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Profile::from_json_file(&path).unwrap()
}

fn file_id(p: &Profile, name: &str) -> usize {
    p.files
        .iter()
        .position(|f| f.path.ends_with(name))
        .unwrap_or_else(|| panic!("{name} not in profile"))
}

#[test]
fn every_cause_fixture_is_found_on_its_line() {
    let dir = root().join("fixtures/causes");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    for (script, e) in expected.as_object().unwrap() {
        let Some(line) = e.get("line").and_then(|l| l.as_u64()) else {
            continue;
        };
        let cause = e["cause"].as_str().unwrap();
        let min = e["min_count"].as_u64().unwrap();
        let p = profile_of(&dir.join(script), script);
        let f = file_id(&p, script);
        let l = p
            .line(f, line as u32)
            .unwrap_or_else(|| panic!("{script}:{line} has no record"));
        let top = l
            .causes
            .first()
            .unwrap_or_else(|| panic!("{script}:{line} does not allocate"));
        assert_eq!(
            top.cause.as_str(),
            cause,
            "{script}:{line}: causes {:?}",
            l.causes
        );
        assert!(top.count >= min, "{script}:{line}: {} < {min}", top.count);
        // And the marked line is the one that allocates most in the script.
        let worst = p
            .allocating_lines()
            .into_iter()
            .find(|l| l.file == f)
            .unwrap();
        assert_eq!(worst.line, line as u32, "{script}");
    }
}

#[test]
fn a_quiet_loop_shows_no_allocation() {
    let dir = root().join("fixtures/causes");
    let p = profile_of(&dir.join("quiet_loop.py"), "quiet");
    let f = file_id(&p, "quiet_loop.py");
    let expected: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expected.json")).unwrap()).unwrap();
    let quiet: Vec<u32> = expected["quiet_loop.py"]["quiet_lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    assert!(!quiet.is_empty());
    for line in quiet {
        let l = p.line(f, line).expect("the loop's lines ran");
        assert!(l.opcodes >= 10_000, "line {line} ran {} opcodes", l.opcodes);
        assert_eq!(
            l.alloc_count, 0,
            "line {line} must not allocate: {:?}",
            l.causes
        );
    }
    let hot = p.find_functions("hot")[0];
    assert!(p.functions[hot].opcodes >= 50_000);
}

#[test]
fn fib_15_is_exactly_1973_calls_and_runs_are_deterministic() {
    let script = root().join("fixtures/misc/fib.py");
    let a = profile_of(&script, "fib-a");
    let b = profile_of(&script, "fib-b");
    let fib = a.find_functions("fib")[0];
    assert_eq!(a.functions[fib].calls, 1973);
    assert_eq!(a.functions[fib].alloc_count, 0);
    // Opcode and allocation figures are identical run to run.
    let figures = |p: &Profile| {
        let mut v: Vec<(u32, u64, u64, u64)> = p
            .lines
            .iter()
            .map(|l| (l.line, l.opcodes, l.alloc_count, l.alloc_bytes))
            .collect();
        v.sort();
        v
    };
    assert_eq!(figures(&a), figures(&b));
    let script = root().join("fixtures/causes/bound_method.py");
    assert_eq!(
        figures(&profile_of(&script, "bm-a")),
        figures(&profile_of(&script, "bm-b"))
    );
}

#[test]
fn the_five_blinks_get_cheaper_and_none_allocates_in_its_loop() {
    let dir = root().join("fixtures/blink");
    let scripts = [
        "blink1_globals.py",
        "blink2_locals.py",
        "blink3_unrolled.py",
        "blink4_native.py",
        "blink5_viper.py",
    ];
    let mut per_toggle = Vec::new();
    for s in scripts {
        let p = profile_of(&dir.join(s), s);
        // Opcodes of blink and everything it calls (the pin's methods).
        let f = file_id(&p, s);
        let blink_ops: u64 = p
            .lines
            .iter()
            .filter(|l| l.file == f && l.line >= 9)
            .map(|l| l.opcodes)
            .sum();
        let pin_ops: u64 = p
            .functions
            .iter()
            .filter(|f| f.qualname == "Pin.on" || f.qualname == "Pin.off")
            .map(|f| f.opcodes)
            .sum();
        per_toggle.push((blink_ops + pin_ops) as f64 / 1000.0);
        // No line of blink's loop allocates (caching bound methods happens
        // once, before the loop).
        let loop_start = p.files[f]
            .source
            .as_ref()
            .unwrap()
            .iter()
            .position(|l| l.contains("for i in range"))
            .unwrap() as u32
            + 1;
        for l in p
            .lines
            .iter()
            .filter(|l| l.file == f && l.line >= loop_start)
        {
            if l.line < loop_start + 20
                && p.source_line(f, l.line)
                    .is_some_and(|s| s.starts_with("    "))
            {
                assert_eq!(l.alloc_count, 0, "{s}:{} allocates: {:?}", l.line, l.causes);
            }
        }
    }
    for w in per_toggle.windows(2) {
        assert!(w[1] < w[0], "opcodes per toggle must fall: {per_toggle:?}");
    }
}

#[test]
fn markers_and_regions_are_in_the_profile() {
    let p = profile_of(&root().join("fixtures/misc/markers.py"), "markers");
    let labels: Vec<&str> = p.markers.iter().map(|m| m.label.as_str()).collect();
    assert_eq!(labels, ["setup done", "finished"]);
    assert_eq!(p.regions.len(), 1);
    let r = &p.regions[0];
    assert_eq!(r.label, "hot");
    assert!(r.end.is_some_and(|e| e > r.start));
    // fill(100) in the region boxes 100 floats.
    assert!(r.alloc_count >= 100, "{r:?}");
    assert!(r.opcodes >= 100 * 5);
    assert!(p.markers[0].at <= r.start && r.end.unwrap() <= p.markers[1].at);
}

#[test]
fn paths_with_spaces_and_unicode() {
    let script = root().join("fixtures/misc/names/dir with space/ünïcode.py");
    let p = profile_of(&script, "unicode");
    assert!(!p.find_functions("héllo").is_empty());
    assert!(p.files.iter().any(|f| f.path.ends_with("ünïcode.py")));
}

#[test]
fn bad_scripts_are_clear_errors_and_failed_runs_keep_their_profile() {
    // Missing script and a directory: mpprof's own error, exit 2.
    let (out, _) = mpprof_run(Path::new("/no/such/script.py"), &[], "missing");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("does not exist"));
    let (out, _) = mpprof_run(&root().join("fixtures"), &[], "dir");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not a file"));

    // MicroPython's own report of an uncaught exception: on stderr up to
    // v1.26, on stdout from v1.27 (the unix port's REPL and file runner
    // became upstream's shared pyexec, which prints to stdout).
    let report = |out: &Output| {
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    };

    // A syntax error: MicroPython's message with its line; exit 1; profile written.
    let (out, path) = mpprof_run(&root().join("fixtures/misc/syntax_error.py"), &[], "syntax");
    assert_eq!(out.status.code(), Some(1));
    let err = report(&out);
    assert!(
        err.contains("SyntaxError") && err.contains("line 4"),
        "{err}"
    );
    assert!(Profile::from_json_file(&path).is_ok());

    // An uncaught exception: the traceback, exit 1, the profile with the work done.
    let (out, path) = mpprof_run(&root().join("fixtures/misc/uncaught.py"), &[], "uncaught");
    assert_eq!(out.status.code(), Some(1));
    assert!(report(&out).contains("ValueError: bad reading"));
    let p = Profile::from_json_file(&path).unwrap();
    assert_eq!(p.meta.exit.reason, ExitReason::Exception);
    assert!(!p.meta.partial);
    let work = p.find_functions("work")[0];
    assert!(p.functions[work].opcodes > 1000);

    // MemoryError in a small heap: reported, with where it happened.
    let (out, path) = mpprof_run(
        &root().join("fixtures/misc/memory_error.py"),
        &["--heap", "32k"],
        "memerr",
    );
    assert_eq!(out.status.code(), Some(1));
    let p = Profile::from_json_file(&path).unwrap();
    assert_eq!(p.meta.exit.reason, ExitReason::MemoryError);
    assert!(!p.gc.failures.is_empty());
    assert!(!p.gc.collections.is_empty());
    // The heap asked for, less the GC's own allocation table.
    assert!(p.meta.heap_bytes <= 32 * 1024 && p.meta.heap_bytes > 28 * 1024);

    // Deep recursion: RuntimeError, profile written.
    let (out, path) = mpprof_run(
        &root().join("fixtures/misc/deep_recursion.py"),
        &[],
        "recursion",
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(report(&out).contains("RuntimeError"));
    let p = Profile::from_json_file(&path).unwrap();
    let down = p.find_functions("down")[0];
    assert!(p.functions[down].calls > 10);

    // A script that never ends: --timeout stops it; the partial profile is kept.
    let (out, path) = mpprof_run(
        &root().join("fixtures/misc/forever.py"),
        &["--timeout", "1s"],
        "forever",
    );
    assert_eq!(out.status.code(), Some(1));
    let p = Profile::from_json_file(&path).unwrap();
    assert!(p.meta.partial);
    assert_eq!(p.meta.exit.reason, ExitReason::Timeout);
    let spin = p.find_functions("spin")[0];
    assert!(p.functions[spin].opcodes > 0 || p.lines.iter().any(|l| l.opcodes > 0));
}

#[test]
fn a_vm_that_crashes_is_reported_as_crashed_and_its_profile_kept() {
    // A real SIGSEGV in the interpreter (uctypes reads address 0), with the
    // summary on: the crash is named, exit 1, the profile so far written.
    let profile = out_dir("crash").join("profile.json");
    let _ = std::fs::remove_file(&profile);
    let out = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .arg("run")
        .arg("-o")
        .arg(&profile)
        .arg(root().join("fixtures/misc/crash.py"))
        .output()
        .expect("mpprof runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("the instrumented VM crashed (SIGSEGV) after ")
            && err.contains(" events; the profile so far is written"),
        "{err}"
    );
    assert!(!err.contains("no line of the script allocated"), "{err}");
    let p = Profile::from_json_file(&profile).unwrap();
    assert_eq!(p.meta.exit.reason, ExitReason::Crashed);
    assert_eq!(p.meta.exit.signal.as_deref(), Some("SIGSEGV"));
    assert!(p.meta.partial);
    assert!(p.meta.exit.events.is_some_and(|n| n > 0));
    // What ran before the crash is there: work()'s 50 lists.
    let f = file_id(&p, "crash.py");
    let line = p.line(f, 10).expect("crash.py:10 ran");
    assert!(line.alloc_count >= 50, "{:?}", line.causes);
}

#[test]
fn the_64bit_build_profiles_a_fixture() {
    // The cause fixture's marked line, found the same way on a 64-bit VM.
    let script = root().join("fixtures/causes/bound_method.py");
    let (out, path) = mpprof_run(&script, &["--bits64"], "bits64");
    assert!(
        out.status.success(),
        "mpprof run --bits64 failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let p = Profile::from_json_file(&path).unwrap();
    assert_eq!(p.meta.word_bits, 64);
    assert_eq!(p.meta.exit.reason, ExitReason::Finished);
    let f = file_id(&p, "bound_method.py");
    let line = p.line(f, 15).expect("bound_method.py:15 ran");
    let top = line.causes.first().expect("bound_method.py:15 allocates");
    assert_eq!(top.cause.as_str(), "bound_method");
    assert!(top.count >= 100);
}

#[test]
fn report_refuses_files_that_are_not_profiles() {
    let dir = out_dir("report");
    let not_ours = dir.join("other.json");
    std::fs::write(&not_ours, r#"{"hello": 1}"#).unwrap();
    let newer = dir.join("newer.json");
    std::fs::write(&newer, r#"{"format": "mpprof-profile", "version": 99}"#).unwrap();
    for (f, msg) in [
        (&not_ours, "not an mpprof profile"),
        (&newer, "newer than this mpprof"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_mpprof"))
            .arg("report")
            .arg(f)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(msg),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn report_annotates_the_source_with_causes() {
    let script = root().join("fixtures/causes/float.py");
    let (_, path) = mpprof_run(&script, &[], "report-float");
    let out = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["report", "--function", "hot"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("x = x + 0.5"))
        .expect("the line is listed");
    assert!(line.contains("100"), "{line}");
    assert!(text.contains("allocates: float"));
    assert!(!text.contains("hot()\n") || text.contains("def hot"));
    let out = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["report", "--function", "nope"])
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hot"));
    let _ = Cause::Float;
}

/// `mpprof run` (summary on) of `source`: the output and the profile.
fn run_source(name: &str, source: &str, args: &[&str]) -> (Output, Profile) {
    let dir = out_dir(name);
    let script = dir.join(format!("{name}.py"));
    std::fs::write(&script, source).unwrap();
    let profile = dir.join("profile.json");
    let _ = std::fs::remove_file(&profile);
    let out = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .arg("run")
        .arg("-o")
        .arg(&profile)
        .args(args)
        .arg(&script)
        .output()
        .expect("mpprof runs");
    (out, Profile::from_json_file(&profile).unwrap())
}

#[test]
fn a_script_that_does_not_compile_is_named_so() {
    common::host_vm();
    let (out, p) = run_source("syntax_error", "print('never')\ndef f(:\n    pass\n", &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(p.meta.exit.reason, ExitReason::SyntaxError);
    assert_eq!(p.meta.exit.status, Some(1));
    let msg = p.meta.exit.message.as_deref().unwrap_or("");
    assert!(msg.contains("SyntaxError: invalid syntax"), "{msg}");
    // The summary's header (mpprof's own text goes to stderr).
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("did not compile (SyntaxError)"), "{stderr}");
    // Nothing of the script ran, and the traceback still reaches the
    // user, where upstream's unix port prints it (stderr up to v1.26,
    // stdout from v1.27).
    let (output, traceback) = common::split_traceback(&out);
    assert_eq!(output, "", "nothing of the script ran");
    assert!(
        traceback.contains("SyntaxError: invalid syntax\n"),
        "{traceback}"
    );
    let json = std::fs::read_to_string(out_dir("syntax_error").join("profile.json")).unwrap();
    assert!(json.contains("\"reason\": \"syntax_error\""));

    // An IndentationError is one too; a SyntaxError raised while the
    // script runs (compiling a string) is an exception like any other.
    let (_, p) = run_source("indentation", "if 1:\npass\n", &[]);
    assert_eq!(p.meta.exit.reason, ExitReason::SyntaxError);
    let (_, p) = run_source("runtime_syntax", "exec('def f(:')\n", &[]);
    assert_eq!(p.meta.exit.reason, ExitReason::Exception);
}

#[test]
fn a_memory_error_while_compiling_is_named_so() {
    common::host_vm();
    let source: String = (0..3000)
        .map(|i| format!("x{i} = [{i}, {}, 'some text of the line {i}']\n", i + 1))
        .collect();
    let (out, p) = run_source("compile_memory", &source, &["--heap", "16k"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(p.meta.exit.reason, ExitReason::MemoryError);
    let msg = p.meta.exit.message.as_deref().unwrap_or("");
    assert!(
        msg.starts_with("while compiling the script: MemoryError"),
        "{msg}"
    );
    // No line of the script ran.
    assert!(p.functions.iter().all(|f| f.calls == 0));
}

/// (name, calls, opcodes) of the fixture's own coroutines.
fn coroutines(p: &Profile) -> Vec<(String, u64, u64)> {
    let mut v: Vec<(String, u64, u64)> = ["producer", "consumer", "timer", "main"]
        .iter()
        .map(|name| {
            let f = &p.functions[p.find_functions(name)[0]];
            (name.to_string(), f.calls, f.opcodes)
        })
        .collect();
    v.sort();
    v
}

#[test]
fn asyncio_is_frozen_in_and_the_scripts_coroutines_are_profiled() {
    let plain = common::plain_host_vm();
    common::host_vm();
    let script = root().join("fixtures/misc/asyncio_tasks.py");
    let upstream = Command::new(&plain).arg(&script).output().unwrap();
    assert!(upstream.status.success(), "{upstream:?}");
    let (out, path) = mpprof_run(&script, &[], "asyncio");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&upstream.stdout)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("sum 140\n"));
    let p = Profile::from_json_file(&path).unwrap();
    // Every function of the script, coroutines and <module> alike: its
    // calls in the profile (an entry per frame start, each resume of a
    // coroutine one) equal the 'call' events upstream's sys.settrace fires
    // for it (one per frame start, each resume one too), and the program
    // prints the same under the tracer.
    let (oracle, traced_stdout) = common::settrace_calls(&script, &out_dir("asyncio-settrace"));
    assert_eq!(traced_stdout, upstream.stdout);
    assert!(oracle.len() >= 5, "{oracle:?}");
    assert_eq!(common::profile_calls(&p, &script), oracle);
    // asyncio itself is frozen bytecode: it runs unprofiled, so none of its
    // functions appear; the script's coroutines do, each resume an entry
    // (the consumer waits for the event 8 times, then returns: 9 entries).
    assert!(p.files.iter().all(|f| !f.path.contains("asyncio/")));
    let c = coroutines(&p);
    let consumer = c.iter().find(|c| c.0 == "consumer").unwrap();
    assert_eq!(consumer.1, 9, "{c:?}");
    assert!(c.iter().all(|c| c.1 > 1 && c.2 > 0), "{c:?}");
    // The tasks: the three top-level coroutines; timer is awaited inside
    // main, so it is main's (its resumes go through main's).
    let a = p.asyncio.as_ref().expect("the program's tasks");
    let task = |name: &str| {
        a.tasks
            .iter()
            .find(|t| p.functions[t.function].name == name)
            .unwrap_or_else(|| panic!("no task {name}"))
    };
    assert_eq!(a.tasks.len(), 3, "{:?}", a.tasks);
    assert_eq!(task("consumer").resumes, 9);
    let f = |name: &str| &p.functions[p.find_functions(name)[0]];
    assert_eq!(task("main").opcodes, f("main").opcodes + f("timer").opcodes);
    assert_eq!(task("producer").alloc_count, f("producer").alloc_count);
    // The loop's frame is the script's module level, which called asyncio.run.
    assert_eq!(a.loop_nodes.len(), 1);
    assert_eq!(
        p.functions[p.call_tree[a.loop_nodes[0]].function].name,
        "<module>"
    );
    let summary = reports::summary::render(&p, &reports::summary::SummaryOptions::default());
    assert!(summary.contains("Tasks (asyncio"), "{summary}");
    // A task's resumes in the summary are its top-level coroutine's frame
    // starts, which settrace sees as that coroutine's 'call' events (main's
    // resumes also resume timer inside it, each a 'call' of timer's own).
    let task_resumes = common::summary_task_resumes(&summary);
    assert_eq!(task_resumes.len(), 3, "{summary}");
    for (task, resumes) in &task_resumes {
        assert_eq!(Some(resumes), oracle.get(task), "{task:?}");
    }
    assert!(summary.contains("event loop and waiting"), "{summary}");
    // `import asyncio` compiles nothing (the target told the import ran
    // frozen bytecode): no advice to precompile it.
    let import = p
        .alloc_sites
        .iter()
        .find(|s| s.line == 7 && p.files[s.file].path.ends_with("asyncio_tasks.py"))
        .expect("the import's allocations");
    assert_eq!(import.what, "running frozen asyncio at import");
    assert!(
        import.fix.contains("asyncio/__init__.py is frozen") && !import.fix.contains("mpy-cross"),
        "{}",
        import.fix
    );
    // `asyncio.Event` is asyncio's lazily: its first use imports the
    // frozen asyncio/event.py (asyncio's __getattr__). What that line
    // allocated is told as that import, not as the Event: on the plain
    // build the submodule is absent before the line and loaded after it.
    let lazy_probe = out_dir("asyncio-lazy").join("lazy.py");
    std::fs::write(
        &lazy_probe,
        "import sys\nimport asyncio\nprint('asyncio.event' in sys.modules)\nasyncio.Event()\nprint('asyncio.event' in sys.modules)\n",
    )
    .unwrap();
    let lazy = Command::new(&plain).arg(&lazy_probe).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&lazy.stdout),
        "False\nTrue\n",
        "{lazy:?}"
    );
    let line_of = |text: &str| {
        std::fs::read_to_string(&script)
            .unwrap()
            .lines()
            .position(|l| l.contains(text))
            .map(|i| i as u32 + 1)
            .unwrap()
    };
    // The script's line holding `text`, as the profile has it.
    let profile_line = |text: &str| {
        let n = line_of(text);
        p.lines
            .iter()
            .find(|l| l.line == n && p.files[l.file].path.ends_with("asyncio_tasks.py"))
            .unwrap_or_else(|| panic!("`{text}` allocates"))
    };
    let event = profile_line("asyncio.Event()");
    assert_eq!(event.scope, mpprof_profile::Scope::Import, "{event:?}");
    assert_eq!(
        event.what.as_deref(),
        Some("importing frozen asyncio/event.py on first use")
    );
    let event_fix = event.fix.as_deref().unwrap_or("");
    assert!(
        event_fix.contains("the first `asyncio.Event` imported asyncio/event.py")
            && !event_fix.contains("mpy-cross"),
        "{event_fix}"
    );
    // `asyncio.run(main())` ran once, but the event loop inside it (frozen,
    // unprofiled, so charged to that call) allocates as it runs the tasks:
    // a heap frame each time it polls, at least once per task resume
    // (settrace's 'call' events of the three tasks count those).
    let run = profile_line("asyncio.run(main())");
    let run_line = run.line;
    assert!(run.event_loop, "{run:?}");
    assert_eq!(run.scope, mpprof_profile::Scope::PerPass, "{run:?}");
    assert!(
        run.fix
            .as_deref()
            .unwrap_or("")
            .contains("asyncio's event loop"),
        "{:?}",
        run.fix
    );
    let frame_site = p
        .alloc_sites
        .iter()
        .find(|s| s.line == run_line && s.what == "heap frame")
        .expect("the loop's heap frames");
    assert!(frame_site.event_loop && frame_site.executions == 1);
    assert!(
        frame_site
            .fix
            .contains("`IOQueue.wait_io_event` takes a heap frame"),
        "{}",
        frame_site.fix
    );
    let resumes: u64 = oracle
        .iter()
        .filter(|((_, name), _)| ["main", "producer", "consumer"].contains(&name.as_str()))
        .map(|(_, &n)| n)
        .sum();
    let frames: u64 = p
        .alloc_sites
        .iter()
        .filter(|s| s.line == run_line && s.what == "heap frame")
        .map(|s| s.count)
        .sum();
    eprintln!("the event loop: {frames} heap frames, {resumes} task resumes");
    assert!(
        resumes > 10 && frames >= resumes,
        "{frames} heap frames, {resumes} resumes"
    );
    assert!(summary.contains("asyncio's event loop:"), "{summary}");
    // And the same again: resumes are exact.
    let (_, path) = mpprof_run(&script, &[], "asyncio-again");
    assert_eq!(coroutines(&Profile::from_json_file(&path).unwrap()), c);
}
