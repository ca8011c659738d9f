//! The emulated Cortex-M3 board (MicroPython's qemu port on MPS2-AN385,
//! built with our runtime): the script goes in through the raw REPL on a
//! serial pseudo-terminal, the profile comes back over RTT read through
//! qemu's gdbstub. The project installs the ARM toolchain and qemu with apt
//! when they are missing.

use std::path::Path;
use std::process::Command;

use mpprof_profile::Profile;

mod common;
use common::{allocations, default_qemu_firmware, host_vm, plain_host_vm, project_functions, root};

fn run(script: &str, target: &str, name: &str) -> Profile {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu");
    std::fs::create_dir_all(&d).unwrap();
    let out = d.join(format!("{name}-{target}.json"));
    let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "-q", "--target", target, "-o"])
        .arg(&out)
        .arg(root().join(script))
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{script} on {target}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    Profile::from_json_file(&out).unwrap()
}

#[test]
fn host_and_board_agree_on_lines_causes_and_sizes() {
    // Float objects differ by design (double on the unix port, single
    // precision on the Cortex-M3 build), so the float fixture is left out.
    for script in [
        "fixtures/causes/bound_method.py",
        "fixtures/causes/tuple.py",
        "fixtures/causes/list.py",
        "fixtures/causes/str.py",
        "fixtures/causes/generator.py",
        "fixtures/causes/instance.py",
        "fixtures/causes/growth.py",
    ] {
        let name = script.rsplit('/').next().unwrap();
        let host = run(script, "host", name);
        let board = run(script, "qemu", name);
        assert_eq!(board.meta.target, "qemu");
        assert_eq!(board.meta.word_bits, 32);
        let (a, b) = (allocations(&host, name), allocations(&board, name));
        assert!(!a.is_empty());
        assert_eq!(a, b, "{script}: host and board allocations differ");
        // And the same opcodes per line of every function.
        assert_eq!(
            line_opcodes(&host, name),
            line_opcodes(&board, name),
            "{script}: opcodes differ"
        );
    }
}

/// (line, opcodes) of every line of the script's functions.
fn line_opcodes(p: &Profile, script: &str) -> Vec<(u32, u64)> {
    let mut v: Vec<(u32, u64)> = p
        .lines
        .iter()
        .filter(|l| {
            p.files[l.file].path.ends_with(script) && p.functions[l.function].name != "<module>"
        })
        .map(|l| (l.line, l.opcodes))
        .collect();
    v.sort();
    v
}

#[test]
fn a_function_of_several_kib_of_bytecode_is_described_whole_on_the_board() {
    // 900 statements, each making a list: about 6 KiB of bytecode and a
    // 900-entry line table, far over the board's 1 KiB frames.
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu");
    std::fs::create_dir_all(&d).unwrap();
    let name = "long_function.py";
    let script = d.join(name);
    let mut src = String::from("def big(n):\n    a = None\n");
    for i in 0..900 {
        src.push_str(&format!("    a = [n, {i}]\n"));
    }
    src.push_str("    return a\n\nfor k in range(3):\n    big(k)\n");
    std::fs::write(&script, &src).unwrap();
    let script = script.to_str().unwrap();
    let host = run(script, "host", "long");
    let board = run(script, "qemu", "long");
    for p in [&host, &board] {
        let target = &p.meta.target;
        let big = p.find_functions("big")[0];
        let sites: Vec<_> = p.alloc_sites.iter().filter(|s| s.function == big).collect();
        assert!(sites.len() >= 900, "{target}: {} sites", sites.len());
        let unnamed = sites.iter().filter(|s| s.opcode_name.is_none()).count();
        assert_eq!(unnamed, 0, "{target}: allocation sites without an opcode");
        let sum = |it: &mut dyn Iterator<Item = u64>| it.sum::<u64>();
        let mix = sum(&mut p.opcode_mix.iter().map(|o| o.count));
        let functions = sum(&mut p.functions.iter().map(|f| f.opcodes));
        let lines = sum(&mut p.lines.iter().map(|l| l.opcodes));
        assert_eq!((mix, lines), (functions, functions), "{target}");
        assert!(
            p.opcode_mix
                .iter()
                .all(|o| o.opcode != mpprof_profile::UNKNOWN_OPCODE),
            "{target}: opcodes without a name in the mix"
        );
        // Every statement's line has its opcodes.
        let big_lines = line_opcodes(p, name);
        assert!(
            big_lines.len() >= 900,
            "{target}: {} lines",
            big_lines.len()
        );
    }
    assert_eq!(line_opcodes(&host, name), line_opcodes(&board, name));
    assert_eq!(allocations(&host, name), allocations(&board, name));
}

#[test]
fn board_cycles_are_deterministic() {
    let a = run("fixtures/misc/fib.py", "qemu", "fib-a");
    let b = run("fixtures/misc/fib.py", "qemu", "fib-b");
    let fib = |p: &Profile| {
        let f = &p.functions[p.find_functions("fib")[0]];
        (f.calls, f.incl_ticks, f.excl_ticks, f.opcodes)
    };
    assert_eq!(fib(&a).0, 1973);
    assert!(fib(&a).1 > 0);
    assert_eq!(
        fib(&a),
        fib(&b),
        "guest-instruction ticks repeat exactly under -icount"
    );
    assert_eq!(a.meta.clock.name, "timer0");
}

#[test]
fn cycle_budgets_are_allowed_on_the_board() {
    let fib = run("fixtures/misc/fib.py", "qemu", "fib-budget");
    let ticks = fib.functions[fib.find_functions("fib")[0]].incl_ticks;
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu");
    let f = d.join("budget.toml");
    std::fs::write(
        &f,
        format!(
            "[[script]]\npath = \"{}\"\ntarget = \"qemu\"\n[[script.budget]]\nfunction = \"fib\"\ncycles = \"={ticks}\"\n",
            root().join("fixtures/misc/fib.py").display()
        ),
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["check", "--budgets"])
        .arg(&f)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn an_uncaught_exception_on_the_board_keeps_the_profile() {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu");
    std::fs::create_dir_all(&d).unwrap();
    let out = d.join("uncaught.json");
    let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "-q", "--target", "qemu", "-o"])
        .arg(&out)
        .arg(root().join("fixtures/misc/uncaught.py"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("ValueError"));
    let p = Profile::from_json_file(&out).unwrap();
    assert!(p.functions[p.find_functions("work")[0]].opcodes > 1000);
}

#[test]
fn the_real_boards_cortex_m_port_layer_runs_on_the_emulated_board() {
    // mpprof_port_cortexm.c is what a Pico (Cortex-M0+) runs: SysTick from
    // the CPU clock, 24 bits, extended in software. Built into the qemu
    // firmware instead of the qemu port layer, on the same 25 MHz clock as
    // timer0, it must give the same profile as timer0, across many turns of
    // its 24-bit counter (one turn is 0.67 s of guest time).
    let opts = vm_instrumented::BuildOptions {
        qemu_clock: vm_instrumented::QemuClock::CortexMSysTick,
        ..vm_instrumented::BuildOptions::default()
    };
    let firmware = vm_instrumented::build_qemu(&opts, &mut |_| {})
        .expect("building the SysTick firmware")
        .firmware;
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu");
    std::fs::create_dir_all(&d).unwrap();
    let script = d.join("long_loop.py");
    std::fs::write(
        &script,
        "def work(n):\n    t = 0\n    for i in range(n):\n        t += i & 7\n    return t\n\n\nprint(work(400000))\n",
    )
    .unwrap();
    let run_with = |firmware: Option<&Path>, name: &str| -> Profile {
        let out = d.join(format!("{name}.json"));
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_mpprof"));
        cmd.args(["run", "-q", "--target", "qemu", "-o"]).arg(&out);
        if let Some(f) = firmware {
            cmd.arg("--elf").arg(f);
        }
        let o = cmd.arg(&script).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "1400000");
        Profile::from_json_file(&out).unwrap()
    };
    let systick = run_with(Some(&firmware), "systick");
    let timer0 = run_with(None, "timer0");
    assert_eq!(systick.meta.clock.name, "systick");
    assert_eq!(timer0.meta.clock.name, "timer0");
    assert_eq!(systick.meta.target, "cortex-m");
    let work = |p: &Profile| p.functions[p.find_functions("work")[0]].clone();
    let (s, t) = (work(&systick), work(&timer0));
    assert_eq!((s.calls, s.opcodes), (t.calls, t.opcodes));
    assert!(
        t.incl_ticks > 3 * (1 << 24),
        "the loop spans several SysTick turns: {}",
        t.incl_ticks
    );
    // The same clock, counted two ways: equal within a tick per frame
    // boundary and the timer0 build's alignment.
    let diff = s.incl_ticks.abs_diff(t.incl_ticks);
    assert!(
        diff * 1000 < t.incl_ticks,
        "systick {} vs timer0 {}",
        s.incl_ticks,
        t.incl_ticks
    );
}

#[test]
fn the_scripts_output_is_the_same_byte_for_byte_on_every_target() {
    host_vm();
    default_qemu_firmware();
    let plain = plain_host_vm();
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu");
    std::fs::create_dir_all(&d).unwrap();
    let script = d.join("output.py");
    std::fs::write(
        &script,
        "import sys\n\
         print('plain text')\n\
         print('non-ASCII: h\u{e9}llo w\u{f6}rld \u{2713} \u{1f600}')\n\
         print('tab\\there', 1, 2.5, end='')\n\
         print()\n\
         sys.stdout.write('its own CR\\r\\n')\n\
         print('no newline at the end', end='')\n\
         def fail():\n    raise ValueError('boom \u{e9}')\n\
         fail()\n",
    )
    .unwrap();
    let upstream = Command::new(&plain).arg(&script).output().unwrap();
    assert_eq!(upstream.status.code(), Some(1));
    let expected = "plain text\nnon-ASCII: h\u{e9}llo w\u{f6}rld \u{2713} \u{1f600}\ntab\there 1 2.5\nits own CR\r\nno newline at the end";
    let (upstream_text, upstream_err) = common::split_traceback(&upstream);
    assert_eq!(upstream_text, expected);
    assert!(
        upstream_err.ends_with("ValueError: boom \u{e9}\n"),
        "{upstream_err}"
    );
    for target in ["host", "qemu"] {
        let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
            .args(["run", "-q", "--target", target, "-o"])
            .arg(d.join(format!("output-{target}.json")))
            .arg(&script)
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(1), "{target}");
        // The host runs upstream's own binary: its output is upstream's
        // on both streams, the traceback where that version puts it. The
        // board's raw REPL keeps the traceback apart from the output:
        // mpprof writes it on stderr.
        let (text, err) = if target == "host" {
            assert_eq!(o.stdout, upstream.stdout, "{target}: stdout differs");
            common::split_traceback(&o)
        } else {
            let err = String::from_utf8_lossy(&o.stderr).into_owned();
            (String::from_utf8_lossy(&o.stdout).into_owned(), err)
        };
        assert_eq!(
            text, upstream_text,
            "{target}: the output before the traceback differs"
        );
        // The traceback is upstream's to the byte: LF line ends, and the
        // script's file named as given (a board compiles the script it got
        // through the REPL as `<stdin>`: mpprof names it back).
        assert!(!err.contains('\r'), "{target}: {err:?}");
        let tb = &err[err.find("Traceback").expect("a traceback")..];
        assert_eq!(tb, upstream_err, "{target}");
    }
}

#[test]
fn a_project_of_several_files_runs_on_the_board_as_on_the_host() {
    let (programs, script, lib, upstream) = common::project_on_plain_micropython();
    host_vm();
    default_qemu_firmware();
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu");
    std::fs::create_dir_all(&d).unwrap();
    let mut functions = Vec::new();
    for target in ["host", "qemu"] {
        let out = d.join(format!("project-{target}.json"));
        let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
            .args(["run", "--target", target, "--path"])
            .arg(&lib)
            .arg("-o")
            .arg(&out)
            .arg(&script)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{target}: {stderr}");
        // The package, the module beside the script, the module inside the
        // package and the one from --path all imported: the output is plain
        // MicroPython's.
        assert_eq!(o.stdout, upstream.stdout, "{target}");
        let p = Profile::from_json_file(&out).unwrap();
        p.validate().unwrap();
        if target == "qemu" {
            assert_eq!(
                p.meta.copied_to_board,
                [
                    "drivers/__init__.py",
                    "drivers/sensor.py",
                    "units.py",
                    "lib/smoothing.py"
                ]
            );
            assert!(
                stderr.contains(
                    "copied to the board's /rom before the run: drivers/__init__.py, drivers/sensor.py, units.py, lib/smoothing.py"
                ),
                "{stderr}"
            );
        } else {
            assert!(p.meta.copied_to_board.is_empty());
        }
        functions.push(project_functions(&p, &programs));
    }
    // Every function of every file, named by its real file, with the same
    // calls, opcodes and allocations on both.
    assert_eq!(functions[0], functions[1]);
    let files: std::collections::BTreeSet<&str> =
        functions[0].iter().map(|f| f.0.as_str()).collect();
    assert_eq!(
        files.into_iter().collect::<Vec<_>>(),
        [
            "project/drivers/__init__.py",
            "project/drivers/sensor.py",
            "project/main.py",
            "project/units.py",
            "project_lib/smoothing.py"
        ]
    );
    let read = functions[0].iter().find(|f| f.1 == "Sensor.read").unwrap();
    assert_eq!((read.2, read.4 > 0), (50, true), "{read:?}");
    let add = functions[0].iter().find(|f| f.1 == "Average.add").unwrap();
    assert_eq!(add.2, 50, "{add:?}");
}

#[test]
fn a_traceback_from_a_copied_module_names_the_hosts_files() {
    default_qemu_firmware();
    let plain = plain_host_vm();
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu-traceback");
    std::fs::create_dir_all(d.join("pkg")).unwrap();
    std::fs::write(
        d.join("pkg/__init__.py"),
        "def boom(x):\n    return 1 // x\n",
    )
    .unwrap();
    std::fs::write(d.join("main.py"), "import pkg\n\npkg.boom(0)\n").unwrap();
    let upstream = Command::new(&plain)
        .arg(d.join("main.py"))
        .output()
        .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "-q", "--target", "qemu", "-o"])
        .arg(d.join("p.json"))
        .arg(d.join("main.py"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    // The same traceback as plain MicroPython's on the host, file names
    // and all (on stderr: the board's raw REPL keeps it apart from the
    // output, wherever the host's version prints it).
    assert_eq!(
        String::from_utf8_lossy(&o.stderr),
        common::split_traceback(&upstream).1
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("pkg/__init__.py\", line 2, in boom"));
}

#[test]
fn a_script_that_does_not_compile_on_the_board_is_named_so() {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu");
    std::fs::create_dir_all(&d).unwrap();
    let script = d.join("syntax_error.py");
    std::fs::write(&script, "print('never')\ndef f(:\n    pass\n").unwrap();
    let out = d.join("syntax_error.json");
    let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "--target", "qemu", "-o"])
        .arg(&out)
        .arg(&script)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let p = Profile::from_json_file(&out).unwrap();
    assert_eq!(p.meta.exit.reason, mpprof_profile::ExitReason::SyntaxError);
    // The summary's header (mpprof's own text goes to stderr).
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(stderr.contains("did not compile (SyntaxError)"), "{stderr}");
    assert!(o.stdout.is_empty(), "nothing of the script ran");
    assert!(String::from_utf8_lossy(&o.stderr).contains("SyntaxError: invalid syntax\n"));
}

/// The asyncio program's own count of each coroutine's resumes, from the
/// line it prints last (`resumes [('heartbeat', 4), ...]`).
fn printed_resumes(stdout: &str) -> Vec<(String, u64)> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("resumes "))
        .expect("the program's resume counts");
    line.trim_matches(|c| c == '[' || c == ']')
        .split("), (")
        .map(|pair| {
            let pair = pair.trim_matches(|c| c == '(' || c == ')');
            let (name, n) = pair.split_once(", ").unwrap();
            (name.trim_matches('\'').to_string(), n.parse().unwrap())
        })
        .collect()
}

/// (function, line) -> allocations, in the functions of the program (not
/// its module level or class bodies).
/// A new chunk of the qstr pool: a raw buffer of the port's first chunk
/// size (MICROPY_ALLOC_QSTR_CHUNK_INIT, 128 bytes on both), made when a
/// string being interned no longer fits the last chunk. Where that happens
/// depends on everything interned before (the ports' own module names, the
/// paths on `sys.path`, whether the runtime calibrated in this run), so the
/// line that pays for it differs between the host and the board although
/// the program does the same.
fn is_qstr_chunk(s: &mpprof_profile::AllocSite) -> bool {
    s.type_name.is_none() && s.count == 1 && s.bytes == 128 && s.what == "raw buffer"
}

/// Whether the allocation site `s` is in task `t`'s frames (its nodes and
/// what they called).
fn task_runs(p: &Profile, t: &mpprof_profile::Task, s: &mpprof_profile::AllocSite) -> bool {
    let mut at = s.node;
    while let Some(n) = at {
        if t.nodes.contains(&n) {
            return true;
        }
        at = p.call_tree[n].parent;
    }
    false
}

fn function_line_allocations(p: &Profile) -> std::collections::BTreeMap<(String, u32), u64> {
    let mut m = std::collections::BTreeMap::new();
    for s in &p.alloc_sites {
        let f = &p.functions[s.function];
        if f.name.starts_with('<') || f.name.starts_with(char::is_uppercase) || is_qstr_chunk(s) {
            continue;
        }
        *m.entry((f.qualname.clone(), s.line)).or_insert(0) += s.count;
    }
    m
}

/// The program with the simple statement at `line` (1-based) run under
/// `micropython.heap_lock()` on the plain build: whether it raised
/// MemoryError there (the program stops at the first one).
fn allocates_under_heap_lock(plain: &Path, program: &Path, line: usize, dir: &Path) -> bool {
    const HIT: &str = "MPPROF-HEAP-LOCK-HIT";
    let text = std::fs::read_to_string(program).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    // Line 1 is a comment: the probe's import takes its place, so no line
    // moves.
    assert!(lines[0].starts_with('#'));
    lines[0] = "import micropython as _mpprof_mp".into();
    let stmt = lines[line - 1].clone();
    let pad: String = stmt.chars().take_while(|c| *c == ' ').collect();
    let wrapped = [
        format!("{pad}_mpprof_mp.heap_lock()"),
        format!("{pad}try:"),
        format!("    {stmt}"),
        format!("{pad}except MemoryError:"),
        format!("{pad}    _mpprof_mp.heap_unlock()"),
        format!("{pad}    print('{HIT}')"),
        format!("{pad}    raise SystemExit(0)"),
        format!("{pad}finally:"),
        format!("{pad}    _mpprof_mp.heap_unlock()"),
    ];
    lines.splice(line - 1..line, wrapped);
    let probe = dir.join(format!("heap-lock-{line}.py"));
    std::fs::write(&probe, lines.join("\n") + "\n").unwrap();
    let out = Command::new(plain).arg(&probe).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "line {line}: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout.contains(HIT)
}

#[test]
fn an_asyncio_main_loop_profiles_alike_on_the_host_and_the_board() {
    let plain = plain_host_vm();
    host_vm();
    default_qemu_firmware();
    let script = "fixtures/programs/asyncio_app.py";
    let program = root().join(script);
    let upstream = Command::new(&plain).arg(&program).output().unwrap();
    assert!(upstream.status.success(), "{upstream:?}");
    let upstream_out = String::from_utf8_lossy(&upstream.stdout).into_owned();
    let own_resumes = printed_resumes(&upstream_out);
    assert_eq!(own_resumes.len(), 4);
    // The settrace oracle: each function's 'call' events (a frame start:
    // a call, or a coroutine's first entry or a resume), from upstream's
    // sys.settrace on a plain build of the same source.
    let (oracle, traced_stdout) = common::settrace_calls(
        &program,
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu-asyncio"),
    );
    assert_eq!(String::from_utf8_lossy(&traced_stdout), upstream_out);
    assert!(oracle.len() >= 8, "{oracle:?}");
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu-asyncio");
    std::fs::create_dir_all(&d).unwrap();
    let mut profiles = Vec::new();
    for target in ["host", "qemu"] {
        let out = d.join(format!("{target}.json"));
        let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
            .args(["run", "-q", "--target", target, "-o"])
            .arg(&out)
            .arg(&program)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{target}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        // The same output as plain MicroPython's, frames and counts alike.
        assert_eq!(String::from_utf8_lossy(&o.stdout), upstream_out, "{target}");
        let p = Profile::from_json_file(&out).unwrap();
        p.validate().unwrap();
        // Every function's calls are the oracle's 'call' events (the
        // profile counts an entry per frame start, as settrace does), and
        // each task's resumes in the summary its coroutine's.
        assert_eq!(common::profile_calls(&p, &program), oracle, "{target}");
        let summary = reports::summary::render(&p, &reports::summary::SummaryOptions::default());
        let task_resumes = common::summary_task_resumes(&summary);
        assert_eq!(task_resumes.len(), 4, "{target}: {summary}");
        for (task, resumes) in &task_resumes {
            assert_eq!(Some(resumes), oracle.get(task), "{target}: {task:?}");
        }
        // Each coroutine's entries are the resumes the program counted
        // itself (every await in it suspends).
        for (name, n) in &own_resumes {
            let wanted = if name == "main" {
                "main".to_string()
            } else {
                format!("{name}_task")
            };
            let f = &p.functions[p.find_functions(&wanted)[0]];
            assert_eq!(f.calls, *n, "{target}: {wanted}");
        }
        // The tasks: the three the loop runs and main, from asyncio.run.
        let a = p.asyncio.as_ref().expect("tasks");
        let mut tasks: Vec<(String, u64)> = a
            .tasks
            .iter()
            .map(|t| (p.functions[t.function].name.clone(), t.resumes))
            .collect();
        tasks.sort();
        assert_eq!(
            tasks,
            [
                ("heartbeat_task".to_string(), 4),
                ("main".to_string(), 2),
                ("protocol_task".to_string(), 14),
                ("sensor_task".to_string(), 13)
            ],
            "{target}"
        );
        profiles.push(p);
    }
    let (host, board) = (&profiles[0], &profiles[1]);
    // Every function's calls and opcodes, and every task's figures but
    // time, are the same on both.
    let figures = |p: &Profile| {
        let mut v: Vec<(String, u64, u64)> = p
            .functions
            .iter()
            .filter(|f| !f.name.starts_with("<runtime"))
            .map(|f| (f.qualname.clone(), f.calls, f.opcodes))
            .collect();
        v.sort();
        v
    };
    assert_eq!(figures(host), figures(board));
    let task_figures = |p: &Profile| {
        let mut v: Vec<(String, u64, u64, u64, u64)> = p
            .asyncio
            .as_ref()
            .unwrap()
            .tasks
            .iter()
            .map(|t| {
                // Less a qstr chunk made in the task (is_qstr_chunk()).
                let chunks: Vec<_> = p
                    .alloc_sites
                    .iter()
                    .filter(|s| is_qstr_chunk(s) && task_runs(p, t, s))
                    .collect();
                let name = p.functions[t.function].qualname.clone();
                (
                    name,
                    t.resumes,
                    t.opcodes,
                    t.alloc_count - chunks.len() as u64,
                    t.alloc_bytes - chunks.iter().map(|s| s.bytes).sum::<u64>(),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(task_figures(host), task_figures(board));
    // Allocations per line of every function, the same on both...
    let allocs = function_line_allocations(host);
    assert_eq!(allocs, function_line_allocations(board));
    // ... and each simple statement of the coroutines and their helpers
    // allocates under heap_lock on plain MicroPython exactly when the
    // profile says it allocates.
    let source = std::fs::read_to_string(&program).unwrap();
    let source: Vec<&str> = source.lines().collect();
    let mut checked = 0;
    for l in host.lines.iter().filter(|l| l.opcodes > 0) {
        let f = &host.functions[l.function];
        if !host.files[l.file].path.ends_with("asyncio_app.py")
            || f.name.starts_with('<')
            || f.name.starts_with(char::is_uppercase)
        {
            continue;
        }
        let code = source[l.line as usize - 1].trim();
        let simple = !code.ends_with(':')
            && !code.starts_with("return")
            && !code.starts_with("def ")
            && !code.starts_with("async def ")
            && !code.contains("await ");
        if !simple {
            continue;
        }
        let profiled = allocs
            .get(&(f.qualname.clone(), l.line))
            .copied()
            .unwrap_or(0);
        assert_eq!(
            allocates_under_heap_lock(&plain, &program, l.line as usize, &d),
            profiled > 0,
            "line {} `{code}`: {profiled} allocations in the profile",
            l.line
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} lines checked");
}

#[test]
fn the_boards_clock_gives_time_and_asyncio_what_they_need() {
    default_qemu_firmware();
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("qemu-clock");
    std::fs::create_dir_all(&d).unwrap();
    let script = d.join("clock.py");
    // The guest's own clock (SysTick under -icount): sleep_ms never returns
    // early by its own clock, ticks_us never goes back and agrees with
    // ticks_ms, and the ticks arithmetic works on its values. From v1.27
    // the port's own delay counts whole millisecond ticks, so a sleep that
    // starts inside one may end up to a tick early by ticks_us (upstream's
    // own behaviour, the same with profiling stopped: 29,815-29,968 us for
    // sleep_ms(30) on 1.28.0); v1.25's and v1.26's clock (ours) waits out
    // the whole 30 ms.
    std::fs::write(
        &script,
        "import time\n\
         t0 = time.ticks_ms()\n\
         u0 = time.ticks_us()\n\
         time.sleep_ms(30)\n\
         dt = time.ticks_diff(time.ticks_ms(), t0)\n\
         du = time.ticks_diff(time.ticks_us(), u0)\n\
         print('slept', dt >= 30, du > 29000, abs(du // 1000 - dt) <= 1)\n\
         back = 0\n\
         last = time.ticks_us()\n\
         for _ in range(2000):\n\
         \x20   now = time.ticks_us()\n\
         \x20   if time.ticks_diff(now, last) < 0:\n\
         \x20       back += 1\n\
         \x20   last = now\n\
         print('backwards', back)\n\
         print('add', time.ticks_diff(time.ticks_add(t0, 5), t0))\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "-q", "--target", "qemu", "-o"])
        .arg(d.join("clock.json"))
        .arg(&script)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "slept True True True\nbackwards 0\nadd 5\n"
    );
}
