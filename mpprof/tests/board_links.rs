//! Boards without a probe: the emulated board's firmware built with the
//! framed-UART transport sends its frames on the REPL's own serial link. The
//! board is driven exactly as a real one on `--device /dev/ttyACM0` would be:
//! qemu's UART is a pseudo-terminal, and `mpprof run --device` opens it
//! through serialport. Faults are real too: the emulator killed mid-run, and
//! bytes flipped on the link by a proxy between the board and mpprof.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use board_agent::qemu::{QemuBoard, QemuProcess};
use board_agent::uart;
use mpprof::wire::{Decoder, Event};
use mpprof_profile::Profile;

mod common;
use common::{
    allocations, default_qemu_firmware, mpprof, process_running_with, project_functions, root,
    uart_qemu_firmware as uart_firmware,
};
use serialport::SerialPort;

/// Far beyond any plausible run: only a hang reaches it.
const HANG_GUARD: Duration = Duration::from_secs(20 * 60);

fn out_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("board-links");
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn boot_uart_board() -> QemuProcess {
    QemuBoard {
        firmware: uart_firmware(),
        qemu: "qemu-system-arm".into(),
        icount_shift: 4,
    }
    .spawn()
    .expect("starting qemu")
}

fn opcodes_per_line(p: &Profile, script: &str) -> Vec<(u32, u64)> {
    let mut v: Vec<(u32, u64)> = p
        .lines
        .iter()
        .filter(|l| p.files[l.file].path.ends_with(script))
        .map(|l| (l.line, l.opcodes))
        .collect();
    v.sort();
    v
}

#[test]
fn a_board_on_a_serial_device_streams_over_its_repl_link() {
    let script = "fixtures/causes/bound_method.py";
    let mut board = boot_uart_board();
    let out = out_dir().join("device.json");
    let o = mpprof(&[
        "run",
        "-q",
        "--device",
        &board.pty,
        "-o",
        out.to_str().unwrap(),
        root().join(script).to_str().unwrap(),
    ]);
    board.kill();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let on_device = Profile::from_json_file(&out).unwrap();
    assert!(!on_device.meta.partial);
    assert_eq!(on_device.meta.dropped.total(), 0);
    assert_eq!(on_device.meta.dropped.lost_allocs, 0);
    assert_eq!(on_device.meta.target, "qemu");

    // The same script, RTT through the gdbstub: the transport changes
    // nothing the profile says about the script.
    let rtt_out = out_dir().join("rtt.json");
    let o = mpprof(&[
        "run",
        "-q",
        "--target",
        "qemu",
        "-o",
        rtt_out.to_str().unwrap(),
        root().join(script).to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let over_rtt = Profile::from_json_file(&rtt_out).unwrap();
    let name = "bound_method.py";
    assert!(!allocations(&on_device, name).is_empty());
    assert_eq!(allocations(&on_device, name), allocations(&over_rtt, name));
    assert_eq!(
        opcodes_per_line(&on_device, name),
        opcodes_per_line(&over_rtt, name)
    );
    let calls = |p: &Profile| -> Vec<(String, u64)> {
        let mut v: Vec<_> = p
            .functions
            .iter()
            .map(|f| (f.qualname.clone(), f.calls))
            .collect();
        v.sort();
        v
    };
    assert_eq!(calls(&on_device), calls(&over_rtt));
}

#[test]
fn the_script_output_passes_through_the_framed_link() {
    let dir = out_dir();
    let script = dir.join("printing.py");
    // Text with bytes of every kind a frame holds, and the raw REPL's own
    // control characters, printed while frames go out between the lines.
    std::fs::write(
        &script,
        "for i in range(40):\n    print('line', i, 'ünï §\\\\ ' + str([i] * 3))\n",
    )
    .unwrap();
    let out = dir.join("printing.json");
    let o = mpprof(&[
        "run",
        "-q",
        "--target",
        "qemu",
        "--transport",
        "uart",
        "-o",
        out.to_str().unwrap(),
        script.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let stdout = String::from_utf8(o.stdout).unwrap();
    // As on the host: the REPL's CRLF back to LF.
    let want: String = (0..40)
        .map(|i| format!("line {i} ünï §\\ [{i}, {i}, {i}]\n"))
        .collect();
    assert_eq!(stdout, want);
    let p = Profile::from_json_file(&out).unwrap();
    assert_eq!(p.meta.dropped.total(), 0);
    assert!(p.alloc_sites.iter().map(|s| s.count).sum::<u64>() >= 40);
}

#[test]
fn killing_the_board_mid_run_keeps_the_profile_so_far() {
    let mut board = boot_uart_board();
    let out = out_dir().join("killed.json");
    let child = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "-q", "--device", &board.pty, "-o"])
        .arg(&out)
        .arg(root().join("fixtures/misc/flood.py"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Let it run a while, then pull the plug.
    std::thread::sleep(Duration::from_secs(4));
    board.kill();
    let o = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("the board run failed"), "{stderr}");
    let p = Profile::from_json_file(&out).unwrap();
    assert!(p.meta.partial, "no END record came: the profile is partial");
    let flood = &p.functions[p.find_functions("flood")[0]];
    assert!(flood.opcodes > 10_000, "{}", flood.opcodes);
    let floats: u64 = p
        .alloc_sites
        .iter()
        .filter(|s| s.function == p.find_functions("flood")[0])
        .map(|s| s.count)
        .sum();
    assert!(floats > 1000, "{floats}");
    assert!(p.meta.exit.message.is_some());
}

/// Forwards bytes between the board's pseudo-terminal and a second one that
/// mpprof opens, flipping one bit in every fifth frame of the script's run.
/// Frames holding HELLO or END are left alone (they delimit the run), and so
/// is everything before the host starts sending the script.
struct FlippingProxy {
    flipped: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    slave_name: String,
    _slave: serialport::TTYPort,
}

impl FlippingProxy {
    fn start(board_pty: &str) -> FlippingProxy {
        let board = serialport::new(board_pty, 115_200)
            .timeout(Duration::from_millis(20))
            .open_native()
            .unwrap();
        let (mut master, slave) = serialport::TTYPort::pair().unwrap();
        master.set_timeout(Duration::from_millis(20)).unwrap();
        let slave_name = slave.name().unwrap();
        let flipped = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let script_started = Arc::new(AtomicBool::new(false));
        let mut to_board = board.try_clone_native().unwrap();
        let mut from_host = master.try_clone_native().unwrap();
        let up = {
            let (stop, started) = (stop.clone(), script_started.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 1024];
                while !stop.load(Ordering::SeqCst) {
                    if let Ok(n) = from_host.read(&mut buf) {
                        if buf[..n].iter().any(|&b| b >= b' ') && n > 1 {
                            started.store(true, Ordering::SeqCst);
                        }
                        write_fully(&mut to_board, &buf[..n], &stop);
                    }
                }
            })
        };
        let down = {
            let (stop, started, flipped) = (stop.clone(), script_started, flipped.clone());
            let mut from_board = board;
            let mut to_host = master;
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut envelope: Option<Vec<u8>> = None;
                let mut frames_seen = 0u64;
                let mut run_over = false;
                while !stop.load(Ordering::SeqCst) {
                    let n = match from_board.read(&mut buf) {
                        Ok(n) => n,
                        Err(_) => continue,
                    };
                    let mut out = Vec::new();
                    for &b in &buf[..n] {
                        match (&mut envelope, b) {
                            (None, uart::START) => envelope = Some(Vec::new()),
                            (None, _) => out.push(b),
                            (Some(e), uart::END) => {
                                let frame = unescape(e);
                                envelope = None;
                                let (hello, end) = kinds(&frame);
                                run_over |= end && started.load(Ordering::SeqCst);
                                let mut frame = frame;
                                if started.load(Ordering::SeqCst) && !run_over && !hello && !end {
                                    frames_seen += 1;
                                    if frames_seen.is_multiple_of(5) && frame.len() > 12 {
                                        let i = frame.len() / 2;
                                        frame[i] ^= 0x10;
                                        flipped.fetch_add(1, Ordering::SeqCst);
                                    }
                                }
                                uart::envelope(&frame, &mut out);
                            }
                            (Some(e), _) => e.push(b),
                        }
                    }
                    write_fully(&mut to_host, &out, &stop);
                }
            })
        };
        FlippingProxy {
            flipped,
            stop,
            threads: vec![up, down],
            slave_name,
            _slave: slave,
        }
    }

    fn finish(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        self.flipped.load(Ordering::SeqCst)
    }
}

/// A pseudo-terminal's buffer is small and the ports time out after 20 ms:
/// retry, so the proxy loses nothing but what it flips.
fn write_fully(port: &mut serialport::TTYPort, mut bytes: &[u8], stop: &AtomicBool) {
    while !bytes.is_empty() && !stop.load(Ordering::SeqCst) {
        match port.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    }
}

fn unescape(e: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut esc = false;
    for &b in e {
        if b == uart::ESCAPE {
            esc = true;
        } else {
            out.push(if std::mem::take(&mut esc) {
                b ^ 0x20
            } else {
                b
            });
        }
    }
    out
}

/// Whether a frame holds HELLO, END.
fn kinds(frame: &[u8]) -> (bool, bool) {
    let (mut hello, mut end) = (false, false);
    let mut d = Decoder::new();
    d.feed(frame, &mut |e| match e {
        Event::Hello(_) => hello = true,
        Event::End(_) => end = true,
        _ => {}
    });
    (hello, end)
}

#[test]
fn bytes_flipped_on_the_link_are_counted_exactly() {
    let mut board = boot_uart_board();
    let proxy = FlippingProxy::start(&board.pty);
    let out = out_dir().join("flipped.json");
    // Tens of thousands of float allocations: a few dozen frames.
    let script = out_dir().join("floats.py");
    std::fs::write(
        &script,
        "def floats(n):\n    x = 0.0\n    for i in range(n):\n        x = x + 0.5\n    return x\n\n\nprint(floats(40000))\n",
    )
    .unwrap();
    let started = Instant::now();
    let mut child = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "--device", &proxy.slave_name, "-o"])
        .arg(&out)
        .arg(&script)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // A hang is a failure with what mpprof said, not a stuck test: the
    // guard is far beyond any plausible run (the firmware is built already).
    let mut ended = false;
    while started.elapsed() < HANG_GUARD {
        if child.try_wait().unwrap().is_some() {
            ended = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let o = child.wait_with_output().unwrap();
    let flipped = proxy.finish();
    board.kill();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(ended, "mpprof never ended: {stderr}");
    let p = Profile::from_json_file(&out).unwrap_or_else(|e| panic!("{e}: {stderr}"));
    assert!(flipped >= 3, "the proxy flipped only {flipped} frames");
    assert!(o.status.success(), "{stderr}");
    assert!(!p.meta.partial, "END came through: {stderr}");
    let d = p.meta.dropped;
    assert_eq!(d.crc_errors, flipped, "{d:?}");
    assert_eq!(
        d.frames, flipped,
        "each damaged frame is one missing sequence number"
    );
    assert_eq!(d.records, 0);
    // And the summary says so.
    assert!(
        stderr.contains(&format!(
            "{flipped} frames failed their CRC (damaged on the link)"
        )),
        "{stderr}"
    );
}

/// `mpprof run --target qemu --timeout 2s [--elf FIRMWARE] SCRIPT`: a
/// failed run (exit 1) ended by the timeout; what it said, and its profile.
fn timed_out_on_qemu(script: &Path, name: &str, firmware: Option<&Path>) -> (String, Profile) {
    let firmware = firmware.map_or_else(default_qemu_firmware, Path::to_path_buf);
    let out = out_dir().join(format!("{name}.json"));
    let o = mpprof(&[
        "run",
        "-q",
        "--target",
        "qemu",
        "--timeout",
        "2s",
        "--elf",
        firmware.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        script.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    let p = Profile::from_json_file(&out).unwrap();
    assert_eq!(p.meta.exit.reason, mpprof_profile::ExitReason::Timeout);
    (stderr, p)
}

#[test]
fn a_timeout_on_the_emulated_board_interrupts_the_script() {
    // The qemu port reads its UART only when it waits for input; the
    // runtime looks for Ctrl-C on its loop tick, so the script gets its
    // KeyboardInterrupt and the board ends the session normally.
    let (stderr, p) = timed_out_on_qemu(&root().join("fixtures/misc/forever.py"), "timeout", None);
    assert!(stderr.contains("KeyboardInterrupt"), "{stderr}");
    assert!(!stderr.contains("did not stop"), "{stderr}");
    assert_eq!(p.meta.dropped.total(), 0);
    let spin = &p.functions[p.find_functions("spin")[0]];
    assert!(spin.opcodes > 100_000, "{}", spin.opcodes);
}

#[test]
fn a_board_that_ignores_ctrl_c_is_given_up_on_with_the_profile_so_far() {
    // Frames started after `mpprof.stop()` run unhooked, so nothing on the
    // emulated board looks for Ctrl-C (as on a board busy in C code): mpprof
    // waits its grace period, stops the emulator and keeps what came.
    let script = out_dir().join("deaf.py");
    std::fs::write(
        &script,
        "import mpprof\n\n\ndef work():\n    t = 0\n    for i in range(20000):\n        t += i\n    return t\n\n\ndef deaf():\n    while True:\n        pass\n\n\nwork()\nmpprof.stop()\ndeaf()\n",
    )
    .unwrap();
    // The firmware under a name no other run uses, so this run's emulator
    // can be looked for afterwards.
    let firmware = out_dir().join(format!("deaf-{}.elf", std::process::id()));
    std::fs::copy(default_qemu_firmware(), &firmware).unwrap();
    let (stderr, p) = timed_out_on_qemu(&script, "deaf", Some(&firmware));
    assert!(stderr.contains("did not stop"), "{stderr}");
    assert!(
        !process_running_with(firmware.to_str().unwrap()),
        "the emulator was stopped"
    );
    assert!(p.meta.partial);
    let work = &p.functions[p.find_functions("work")[0]];
    assert_eq!(work.calls, 1);
    assert!(work.opcodes > 100_000, "{}", work.opcodes);
}

#[test]
fn an_overrun_rtt_buffer_is_counted_and_the_missing_allocations_reported() {
    // Read the board's 64 KiB RTT buffer only every 1.5 s while a script
    // makes a few hundred thousand allocations: the target drops whole
    // frames, counts the records in them, and says so in its END record.
    let script = out_dir().join("many_floats.py");
    std::fs::write(
        &script,
        "def floats(n):\n    x = 0.0\n    for i in range(n):\n        x = x + 0.5\n    return x\n\n\nprint(floats(300000))\n",
    )
    .unwrap();
    let out = out_dir().join("overrun.json");
    let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["run", "--target", "qemu", "-o"])
        .arg(&out)
        .arg(&script)
        .env("MPPROF_RTT_POLL_MS", "1500")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    let p = Profile::from_json_file(&out).unwrap();
    assert!(!p.meta.partial, "{stderr}");
    let d = p.meta.dropped;
    assert!(d.records > 0, "{d:?}");
    assert_eq!((d.crc_errors, d.bad_frames), (0, 0), "{d:?}");
    // The profile's allocations and the lost ones add up to the target's
    // own count: 300,000 floats plus what the module and range made.
    let floats_fn = p.find_functions("floats")[0];
    let counted: u64 = p
        .alloc_sites
        .iter()
        .filter(|s| s.function == floats_fn)
        .map(|s| s.count)
        .sum();
    assert!(counted < 300_000, "{counted}");
    assert!(d.lost_allocs > 0);
    assert!(
        p.gc.alloc_count + d.lost_allocs >= 300_000,
        "{} + {}",
        p.gc.alloc_count,
        d.lost_allocs
    );
    assert!(stderr.contains("records dropped on the target"), "{stderr}");
    assert!(stderr.contains("allocations"), "{stderr}");
}

#[test]
fn probe_rs_finds_the_control_block_where_our_reader_does() {
    // The hardware path looks `_SEGGER_RTT` up in the firmware's ELF; check
    // our lookup against probe-rs's own on the emulated board's firmware.
    let fw = default_qemu_firmware();
    let ours = board_agent::rtt::elf_symbol(&fw, "_SEGGER_RTT").unwrap();
    let theirs =
        probe_rs::rtt::find_rtt_control_block_in_raw_file(&std::fs::read(&fw).unwrap()).unwrap();
    assert_eq!(theirs, Some(u64::from(ours)));
    // The UART build has no control block, and says why.
    let err = board_agent::rtt::elf_symbol(&uart_firmware(), "_SEGGER_RTT").unwrap_err();
    assert!(err.contains("RTT transport"), "{err}");
}

#[test]
fn probe_mistakes_are_clear_errors_before_any_board_is_touched() {
    let script = root().join("fixtures/misc/fib.py");
    let script = script.to_str().unwrap();
    let cases: &[(&[&str], &str)] = &[
        (&["--probe", "--chip", "RP2040"], "--device PORT"),
        (
            &[
                "--probe",
                "zz:1",
                "--chip",
                "RP2040",
                "--device",
                "/dev/null",
            ],
            "VID:PID",
        ),
        (&["--probe", "--device", "/dev/null"], "--chip NAME"),
        (
            &["--target", "qemu", "--device", "/dev/null"],
            "cannot be used with",
        ),
        (&["--device", "/dev/mpprof-no-such-port"], "mpprof devices"),
    ];
    for (args, says) in cases {
        let mut all = vec!["run"];
        all.extend_from_slice(args);
        all.push(script);
        let o = mpprof(&all);
        let stderr = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    // Without a probe attached (as on these machines), the attach fails with
    // what to do, not a hang.
    assert!(
        board_agent::probe::list_probes().is_empty(),
        "this test expects no debug probe attached"
    );
    let o = mpprof(&[
        "run",
        "--probe",
        "--chip",
        "RP2040",
        "--device",
        "/dev/null",
        script,
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no debug probe found"), "{stderr}");
}

/// A serial link that keeps a copy of every byte it reads, as a terminal
/// program logging a board's output would.
struct Recording<L> {
    link: L,
    log: Vec<u8>,
}

impl<L: Read> Read for Recording<L> {
    fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
        let n = self.link.read(out)?;
        self.log.extend_from_slice(&out[..n]);
        Ok(n)
    }
}

impl<L: Write> Write for Recording<L> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.link.write(b)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.link.flush()
    }
}

#[test]
fn a_captured_serial_log_decodes_into_the_same_profile() {
    // Drive the board by hand through the raw REPL, logging everything it
    // sends (boot banner, REPL text, two soft resets, the run), then decode
    // the log with `mpprof decode --uart`.
    let script = "fixtures/causes/bound_method.py";
    let mut board = boot_uart_board();
    let port = serialport::new(&board.pty, 115_200)
        .timeout(Duration::from_millis(50))
        .open()
        .unwrap();
    let (tx, _rx) = std::sync::mpsc::channel();
    let recording = Recording {
        link: port,
        log: Vec::new(),
    };
    let mut repl =
        board_agent::raw_repl::RawRepl::new(board_agent::uart::DemuxLink::new(recording, tx));
    let t = Duration::from_secs(20);
    repl.enter(t).unwrap();
    repl.soft_reset(t).unwrap();
    let source = std::fs::read(root().join(script)).unwrap();
    let out = repl.run(&source, t, &mut |_| {}).unwrap();
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    repl.soft_reset(t).unwrap();
    board.kill();
    let log = repl.into_inner().into_inner().log;
    let capture = out_dir().join("capture.log");
    std::fs::write(&capture, &log).unwrap();

    let decoded = out_dir().join("capture.json");
    let o = mpprof(&[
        "decode",
        "--uart",
        capture.to_str().unwrap(),
        "--script",
        root().join(script).to_str().unwrap(),
        "-o",
        decoded.to_str().unwrap(),
    ]);
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // Boot, the run, and the session the last reset began.
    assert!(stderr.contains(" session(s) of "), "{stderr}");
    let from_log = Profile::from_json_file(&decoded).unwrap();
    assert!(!from_log.meta.partial);

    let live = out_dir().join("capture-live.json");
    let mut board = boot_uart_board();
    let o = mpprof(&[
        "run",
        "-q",
        "--device",
        &board.pty,
        "-o",
        live.to_str().unwrap(),
        root().join(script).to_str().unwrap(),
    ]);
    board.kill();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let run = Profile::from_json_file(&live).unwrap();
    let name = "bound_method.py";
    assert!(!allocations(&from_log, name).is_empty());
    assert_eq!(allocations(&from_log, name), allocations(&run, name));
    assert_eq!(
        opcodes_per_line(&from_log, name),
        opcodes_per_line(&run, name)
    );

    // A log without envelopes says what it is not.
    let o = mpprof(&[
        "decode",
        "--uart",
        root().join("fixtures/misc/fib.py").to_str().unwrap(),
        "-o",
        decoded.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no frame envelopes"));
}

#[test]
fn the_shared_ram_fast_path_reads_what_the_gdbstub_reads() {
    // The same firmware and RTT buffer, read two ways: through the gdbstub
    // (the guest stops for each read, as a probe would halt nothing but
    // still takes turns) and from the board's RAM mapped from a file (the
    // guest never stops). Guest time runs on instructions, so even the
    // ticks agree exactly.
    let run = |transport: &str| -> Profile {
        let out = out_dir().join(format!("fib-{transport}.json"));
        let o = mpprof(&[
            "run",
            "-q",
            "--target",
            "qemu",
            "--transport",
            transport,
            "-o",
            out.to_str().unwrap(),
            root().join("fixtures/misc/fib.py").to_str().unwrap(),
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        Profile::from_json_file(&out).unwrap()
    };
    let (gdb, shm) = (run("rtt"), run("shared-ram"));
    let fib = |p: &Profile| {
        let f = &p.functions[p.find_functions("fib")[0]];
        (f.calls, f.incl_ticks, f.excl_ticks, f.opcodes)
    };
    assert_eq!(fib(&gdb).0, 1973);
    assert_eq!(fib(&gdb), fib(&shm));
    assert_eq!(shm.meta.dropped.total(), 0);
    assert_eq!(gdb.gc.alloc_count, shm.gc.alloc_count);
}

#[test]
fn a_board_whose_frames_do_not_come_on_the_link_is_said_plainly() {
    // The RTT firmware on `--device` without a probe: the script runs, but
    // its frames stay in the board's RAM.
    let firmware = default_qemu_firmware();
    let mut board = QemuBoard {
        firmware,
        qemu: "qemu-system-arm".into(),
        icount_shift: 4,
    }
    .spawn()
    .unwrap();
    let out = out_dir().join("no-frames.json");
    let o = mpprof(&[
        "run",
        "--device",
        &board.pty,
        "-o",
        out.to_str().unwrap(),
        root().join("fixtures/misc/fib.py").to_str().unwrap(),
    ]);
    board.kill();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no profile frames came from the board"),
        "{stderr}"
    );
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "610");
}

#[test]
fn budgets_run_on_a_board_on_a_serial_device() {
    // Hardware-in-the-loop CI: a budget file names the board's port through
    // an environment variable; the same budgets as on the host hold.
    let mut board = boot_uart_board();
    let dir = out_dir();
    let budgets = dir.join("device-budgets.toml");
    let script = root().join("fixtures/causes/quiet_loop.py");
    let write = |opcodes: &str| {
        std::fs::write(
            &budgets,
            format!(
                "[[script]]\npath = \"{}\"\ntarget = \"device\"\ndevice = \"$MPPROF_TEST_BOARD\"\n\n[[script.budget]]\nfunction = \"hot\"\nallocs = 2\nopcodes = \"{opcodes}\"\n",
                script.display()
            ),
        )
        .unwrap();
    };
    let check = || {
        Command::new(env!("CARGO_BIN_EXE_mpprof"))
            .args(["check", "--budgets"])
            .arg(&budgets)
            .env("MPPROF_TEST_BOARD", &board.pty)
            .output()
            .unwrap()
    };
    write("=220017");
    let o = check();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(o.status.success(), "{text}");
    // One opcode under the measured count fails, and says where.
    write("220016");
    let o = check();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(out.contains("hot"), "{out}");
    // Without the variable, the error says what to set.
    let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(["check", "--budgets"])
        .arg(&budgets)
        .env_remove("MPPROF_TEST_BOARD")
        .output()
        .unwrap();
    board.kill();
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("MPPROF_TEST_BOARD is not set"));
}

#[test]
fn a_project_of_several_files_runs_on_a_device_as_on_the_emulated_board() {
    // The emulated board driven as a real one (`--device` on its serial
    // pseudo-terminal): our firmware there keeps the modules in its RAM
    // ROMFS, as a board with a filesystem keeps them in its files
    // (board_agent::board_fs).
    let (programs, script, lib, upstream) = common::project_on_plain_micropython();
    default_qemu_firmware();
    let mut board = boot_uart_board();
    let on_device = out_dir().join("project-device.json");
    let o = mpprof(&[
        "run",
        "--device",
        &board.pty,
        "--path",
        lib.to_str().unwrap(),
        "-o",
        on_device.to_str().unwrap(),
        script.to_str().unwrap(),
    ]);
    board.kill();
    let stderr = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "{stderr}");
    // Plain MicroPython's output, byte for byte.
    assert_eq!(o.stdout, upstream.stdout);
    let copied = [
        "drivers/__init__.py",
        "drivers/sensor.py",
        "units.py",
        "lib/smoothing.py",
    ];
    assert!(
        stderr.contains(&format!(
            "copied to the board's /rom before the run: {}",
            copied.join(", ")
        )),
        "{stderr}"
    );
    let device = Profile::from_json_file(&on_device).unwrap();
    device.validate().unwrap();
    assert_eq!(device.meta.copied_to_board, copied);

    let on_qemu = out_dir().join("project-qemu.json");
    let o = mpprof(&[
        "run",
        "-q",
        "--target",
        "qemu",
        "--path",
        lib.to_str().unwrap(),
        "-o",
        on_qemu.to_str().unwrap(),
        script.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let qemu = Profile::from_json_file(&on_qemu).unwrap();
    // The same calls, opcodes and allocations per function of every file,
    // each named by its host file.
    let figures = project_functions(&device, &programs);
    assert_eq!(figures, project_functions(&qemu, &programs));
    let files: std::collections::BTreeSet<&str> = figures.iter().map(|f| f.0.as_str()).collect();
    assert_eq!(files.len(), 5, "{files:?}");
}

#[test]
fn the_programs_that_copy_modules_into_a_boards_filesystem_do_so_on_micropython() {
    // A board with a filesystem gets the modules through these raw-REPL
    // programs (board_agent::board_fs). There is no such board here: they
    // run on plain unix MicroPython instead, in a directory of their own,
    // and the files they leave are checked on disk.
    use board_agent::board_fs as fs;
    let plain = common::plain_host_vm();
    let d = out_dir().join("board-fs");
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    let run = |program: &str| -> String {
        let o = Command::new(&plain)
            .arg("-c")
            .arg(program)
            .current_dir(&d)
            .output()
            .unwrap();
        assert!(
            o.status.success(),
            "{program}\n{}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8(o.stdout).unwrap()
    };
    let cwd = d.canonicalize().unwrap().display().to_string();
    // The unix port's `lib` on sys.path is ~/.micropython/lib.
    match fs::parse_probe(&run(fs::PROBE)) {
        Ok(fs::FilesHome::Filesystem { cwd: at, lib }) => {
            assert_eq!(at, cwd);
            assert!(lib.ends_with("/lib"), "{lib}");
        }
        other => panic!("{other:?}"),
    }
    let dir = format!("{cwd}/pkg");
    let file = format!("{dir}/mod.py");
    assert_eq!(run(&fs::stat_program(&dir)), "absent\n");
    run(&fs::mkdir_program(&dir));
    assert!(run(&fs::stat_program(&dir)).starts_with("dir "));
    // Several chunks, with quotes, backslashes, non-ASCII and NUL bytes.
    let data: Vec<u8> = "s = 'ünï \\'\"'\n\0\r\n".repeat(200).into_bytes();
    let writers = fs::write_programs(&file, &data);
    assert!(writers.len() > 2);
    for w in &writers {
        run(w);
    }
    assert_eq!(std::fs::read(d.join("pkg/mod.py")).unwrap(), data);
    assert_eq!(
        run(&fs::stat_program(&file)),
        format!("file {}\n", data.len())
    );
    let hex: String = data[1000..1010]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(run(&fs::read_program(&file, 1000, 10)), hex + "\n");
    // Removing: the file, then its directory; saying what is not there.
    assert_eq!(
        run(&fs::remove_program(
            std::slice::from_ref(&file),
            std::slice::from_ref(&dir)
        )),
        ""
    );
    assert!(!d.join("pkg").exists());
    assert_eq!(
        run(&fs::remove_program(std::slice::from_ref(&file), &[])),
        format!("not removed: {file}\n")
    );
    // An empty module is written too.
    let empty = format!("{cwd}/empty.py");
    for w in fs::write_programs(&empty, b"") {
        run(&w);
    }
    assert_eq!(std::fs::read(d.join("empty.py")).unwrap(), b"");
}
