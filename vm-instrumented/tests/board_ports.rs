//! The board port layers, compile-checked. `mpprof_port_cortexm.c` is built
//! with the Arm toolchain for a Cortex-M0+ (the RP2040's core) and a
//! Cortex-M4 (the PYBV11's), with each transport, against the patched
//! MicroPython tree and the board configuration wrapper; the objects are then
//! read back to see which counter each core reads and that the whole port
//! layer is there. Nothing here runs on a board: none attaches to this
//! machine. `mpprof_port_esp32.c` is not compiled (no Xtensa toolchain).
//!
//! The qemu firmware is built first: its build directory holds the generated
//! headers (genhdr) that MicroPython's headers include.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use vm_instrumented::{apt_install, build_qemu, embedded_files, prepared_source, BuildOptions};

const PORT_FUNCTIONS: [&str; 9] = [
    "mpprof_port_open",
    "mpprof_port_write",
    "mpprof_port_close",
    "mpprof_port_ticks",
    "mpprof_port_clock_hz",
    "mpprof_port_clock_name",
    "mpprof_port_target_name",
    "mpprof_port_is_main_thread",
    "mpprof_port_align_ticks",
];

const DEMCR: u64 = 0xe000_edfc;
const DWT_CTRL: u64 = 0xe000_1000;
const CYCCNT: u64 = 0xe000_1004;
const SYST_CSR: u64 = 0xe000_e010;
const SYST_RVR: u64 = 0xe000_e014;
const SYST_CVR: u64 = 0xe000_e018;
const SIO_CPUID: u64 = 0xd000_0000;

struct Setup {
    tree: PathBuf,
    usermod: PathBuf,
    genhdr_parent: PathBuf,
    config_dir: PathBuf,
    out: PathBuf,
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

fn setup() -> &'static Setup {
    static SETUP: OnceLock<Setup> = OnceLock::new();
    SETUP.get_or_init(|| {
        let mut progress = |m: &str| eprintln!("board_ports: {m}");
        if !have("arm-none-eabi-gcc") || !Path::new("/usr/lib/arm-none-eabi/newlib").exists() {
            apt_install(
                &["gcc-arm-none-eabi", "libnewlib-arm-none-eabi"],
                &mut progress,
            )
            .expect("the Arm toolchain is needed to compile the Cortex-M port layer");
        }
        assert!(
            have("arm-none-eabi-gcc"),
            "arm-none-eabi-gcc is not on PATH"
        );
        let opts = BuildOptions::default();
        let tree = prepared_source(&opts, &mut progress).expect("the patched source tree");
        let usermod = tree.join("mpprof-usermod/mpprof");
        for f in [
            "mpprof_port_cortexm.c",
            "mpprof_port_esp32.c",
            "micropython.cmake",
        ] {
            assert!(
                usermod.join(f).exists(),
                "{f} is not in the prepared tree: is it embedded?"
            );
        }
        let qemu = build_qemu(&opts, &mut progress)
            .expect("the qemu firmware build (it generates the genhdr headers)");
        let genhdr_parent = qemu.firmware.parent().unwrap().to_path_buf();
        assert!(
            genhdr_parent.join("genhdr/qstrdefs.generated.h").exists(),
            "no genhdr in {}",
            genhdr_parent.display()
        );
        // The board wrapper is embedded but not copied into the tree: take it
        // from the embedded files, as a build from them would.
        let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("board_ports");
        let config_dir = out.join("config");
        std::fs::create_dir_all(&config_dir).unwrap();
        let (_, config) = embedded_files()
            .iter()
            .find(|(n, _)| *n == "ports/boards/mpprof_board_config.h")
            .expect("ports/boards/mpprof_board_config.h is embedded");
        std::fs::write(config_dir.join("mpprof_board_config.h"), config).unwrap();
        Setup {
            tree,
            usermod,
            genhdr_parent,
            config_dir,
            out,
        }
    })
}

/// Run arm-none-eabi-gcc -c on one runtime file; the raw output.
fn try_compile(source: &str, mcpu: &str, defines: &[&str], object: &Path) -> Output {
    let s = setup();
    let mut cmd = Command::new("arm-none-eabi-gcc");
    cmd.args(["-c", "-Os", "-mthumb"])
        .arg(format!("-mcpu={mcpu}"))
        // The qemu port's own warning set, as errors.
        .args([
            "-std=gnu99",
            "-Wall",
            "-Werror",
            "-Wpointer-arith",
            "-Wdouble-promotion",
            "-Wfloat-conversion",
            "-ffunction-sections",
            "-fdata-sections",
            "-DNDEBUG",
        ])
        .arg(format!("-I{}", s.config_dir.display()))
        .arg(format!("-I{}", s.usermod.display()))
        .arg(format!("-I{}", s.tree.join("ports/qemu").display()))
        .arg(format!("-I{}", s.tree.display()))
        .arg(format!("-I{}", s.genhdr_parent.display()))
        .arg("-DMP_CONFIGFILE=<mpprof_board_config.h>")
        // The float type MPS2_AN385 builds with: from v1.27 the qemu port's
        // Makefile passes it (before, its mpconfigport.h defined it, with
        // the same tokens).
        .arg("-DMICROPY_FLOAT_IMPL=(MICROPY_FLOAT_IMPL_FLOAT)");
    for d in defines {
        // A macro definition, or a raw option such as an extra -I.
        if d.starts_with('-') {
            cmd.arg(d);
        } else {
            cmd.arg(format!("-D{d}"));
        }
    }
    cmd.arg(s.usermod.join(source)).arg("-o").arg(object);
    cmd.output().expect("arm-none-eabi-gcc runs")
}

fn compile(source: &str, mcpu: &str, defines: &[&str], name: &str) -> PathBuf {
    let object = setup().out.join(format!("{name}.o"));
    let _ = std::fs::remove_file(&object);
    let out = try_compile(source, mcpu, defines, &object);
    assert!(
        out.status.success(),
        "{source} does not compile for {mcpu} with {defines:?}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    object
}

fn tool(name: &str, args: &[&str], object: &Path) -> String {
    let out = Command::new(name)
        .args(args)
        .arg(object)
        .output()
        .unwrap_or_else(|e| panic!("{name} runs: {e}"));
    assert!(
        out.status.success(),
        "{name} failed on {}",
        object.display()
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Symbol names by nm's type letter: (defined in .text, undefined).
fn symbols(object: &Path) -> (Vec<String>, Vec<String>) {
    let mut text = Vec::new();
    let mut undefined = Vec::new();
    for line in tool("arm-none-eabi-nm", &[], object).lines() {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            [_, "T", name] => text.push(name.to_string()),
            ["U", name] => undefined.push(name.to_string()),
            _ => {}
        }
    }
    (text, undefined)
}

/// One decoded instruction of `objdump -d -z` output.
struct Insn {
    addr: u64,
    mnemonic: String,
    operands: String,
    comment: String,
}

/// Each function's instructions (literal-pool words included, as `.word`).
fn disassembly(object: &Path) -> HashMap<String, Vec<Insn>> {
    let text = tool("arm-none-eabi-objdump", &["-d", "-z"], object);
    let mut functions: HashMap<String, Vec<Insn>> = HashMap::new();
    let mut current: Option<String> = None;
    for line in text.lines() {
        if let Some(name) = line
            .strip_suffix(">:")
            .and_then(|l| l.split_once(" <"))
            .map(|(_, n)| n.to_string())
        {
            functions.entry(name.clone()).or_default();
            current = Some(name);
            continue;
        }
        let (Some(f), Some((addr, rest))) = (&current, line.split_once(':')) else {
            continue;
        };
        let Ok(addr) = u64::from_str_radix(addr.trim(), 16) else {
            continue;
        };
        let fields: Vec<&str> = rest.split('\t').collect();
        if fields.len() < 3 {
            continue;
        }
        functions.get_mut(f).unwrap().push(Insn {
            addr,
            mnemonic: fields[2].trim().to_string(),
            operands: fields.get(3).map_or("", |s| s.trim()).to_string(),
            comment: fields.get(4).map_or("", |s| s.trim()).to_string(),
        });
    }
    functions
}

fn parse_imm(s: &str) -> Option<u64> {
    let s = s.trim().trim_start_matches('#');
    match s.strip_prefix("0x") {
        Some(h) => u64::from_str_radix(h, 16).ok(),
        None => s.parse::<i64>().ok().map(|v| v as u32 as u64),
    }
}

/// The memory accesses of one function whose address can be worked out
/// from the code alone: constants loaded from the literal pool or built
/// with mov/lsl/add/sub, then used as the base of a load or store. GCC reaches a
/// register as `base + offset` (0xe0001000 then `[r3, #4]` for 0xe0001004),
/// so the literal alone does not say which register is read.
/// Returns (is_store, address) pairs; the walk is straight-line, which is
/// enough for code that loads a peripheral's address and reads it.
fn memory_accesses(insns: &[Insn]) -> Vec<(bool, u64)> {
    let pool: HashMap<u64, u64> = insns
        .iter()
        .filter(|i| i.mnemonic == ".word")
        .filter_map(|i| Some((i.addr, parse_imm(&i.operands)?)))
        .collect();
    let mut regs: HashMap<String, u64> = HashMap::new();
    let mut out = Vec::new();
    for i in insns {
        let ops: Vec<&str> = i.operands.split(", ").map(str::trim).collect();
        let dest = ops.first().map(|d| d.to_string()).unwrap_or_default();
        let m = i.mnemonic.trim_end_matches(".w").trim_end_matches(".n");
        let value: Option<u64> = if m.starts_with("ldr") || m.starts_with("str") {
            // [rn] or [rn, #imm]
            let mem = i
                .operands
                .split_once('[')
                .map(|(_, r)| r.trim_end_matches(']'));
            let (base, off) = match mem.map(|m| m.split_once(", ")) {
                Some(Some((b, o))) => (b.trim(), parse_imm(o.trim_end_matches(']'))),
                Some(None) => (mem.unwrap().trim(), Some(0)),
                None => ("", None),
            };
            if base == "pc" && m == "ldr" {
                // ldr rd, [pc, #n]  @ (ADDR <...>)
                let target = i
                    .comment
                    .split_once('(')
                    .and_then(|(_, r)| r.split_whitespace().next())
                    .and_then(|a| u64::from_str_radix(a, 16).ok());
                target.and_then(|t| pool.get(&t).copied())
            } else {
                if let (Some(b), Some(o)) = (regs.get(base), off) {
                    out.push((m.starts_with("str"), (b + o) & 0xffff_ffff));
                }
                None
            }
        } else if matches!(m, "movs" | "mov" | "movw") && ops.len() == 2 {
            parse_imm(ops[1])
        } else if matches!(m, "lsls" | "lsl") && ops.len() == 3 {
            match (regs.get(ops[1]), parse_imm(ops[2])) {
                (Some(v), Some(n)) => Some((v << n) & 0xffff_ffff),
                _ => None,
            }
        } else if matches!(m, "adds" | "add" | "subs" | "sub")
            && ops.len() == 3
            && ops[2].starts_with('#')
        {
            match (regs.get(ops[1]), parse_imm(ops[2])) {
                (Some(v), Some(n)) if m.starts_with("add") => Some((v + n) & 0xffff_ffff),
                (Some(v), Some(n)) => Some(v.wrapping_sub(n) & 0xffff_ffff),
                _ => None,
            }
        } else {
            None
        };
        if m == "bl" || m == "blx" {
            for r in ["r0", "r1", "r2", "r3", "ip", "lr"] {
                regs.remove(r);
            }
        } else if !m.starts_with("str") && !m.starts_with("cmp") && !m.starts_with("tst") {
            match value {
                Some(v) => {
                    regs.insert(dest, v);
                }
                None => {
                    regs.remove(&dest);
                }
            }
        }
    }
    out
}

fn reads(accesses: &[(bool, u64)], address: u64) -> bool {
    accesses.iter().any(|&(store, a)| !store && a == address)
}

fn writes(accesses: &[(bool, u64)], address: u64) -> bool {
    accesses.iter().any(|&(store, a)| store && a == address)
}

fn listing(insns: &[Insn]) -> String {
    insns
        .iter()
        .map(|i| format!("{:4x}: {} {} {}", i.addr, i.mnemonic, i.operands, i.comment))
        .collect::<Vec<_>>()
        .join("\n")
}

fn check_port_layer(object: &Path, transport_uart: bool) {
    let (text, undefined) = symbols(object);
    for f in PORT_FUNCTIONS {
        assert!(
            text.iter().any(|t| t == f),
            "{f} is not defined (T) in {}: {text:?}",
            object.display()
        );
    }
    let (used, unused) = if transport_uart {
        (
            &["mpprof_uart_write"][..],
            &["mpprof_rtt_write", "mpprof_rtt_init"][..],
        )
    } else {
        (
            &["mpprof_rtt_write", "mpprof_rtt_init"][..],
            &["mpprof_uart_write"][..],
        )
    };
    for u in used {
        assert!(
            undefined.iter().any(|s| s == u),
            "{u} should be an undefined (U) symbol of {}: {undefined:?}",
            object.display()
        );
    }
    for u in unused {
        assert!(
            !undefined.iter().any(|s| s == u),
            "{u} should not be used by {}",
            object.display()
        );
    }
}

fn contains_bytes(object: &Path, needle: &[u8]) -> bool {
    let data = std::fs::read(object).unwrap();
    data.windows(needle.len()).any(|w| w == needle)
}

fn all_accesses(functions: &HashMap<String, Vec<Insn>>) -> Vec<(bool, u64)> {
    functions
        .values()
        .flat_map(|f| memory_accesses(f))
        .collect()
}

#[test]
fn cortex_m4_reads_the_dwt_cycle_counter() {
    for (uart, name) in [(false, "m4-rtt"), (true, "m4-uart")] {
        let mut defines = vec!["MPPROF_CLOCK_HZ=168000000"];
        if uart {
            defines.push("MPPROF_TRANSPORT_UART=1");
        }
        let obj = compile("mpprof_port_cortexm.c", "cortex-m4", &defines, name);
        check_port_layer(&obj, uart);
        let functions = disassembly(&obj);
        let ticks = &functions["mpprof_port_ticks"];
        assert!(
            reads(&memory_accesses(ticks), CYCCNT),
            "{name}: mpprof_port_ticks does not read DWT_CYCCNT ({CYCCNT:#x}):\n{}",
            listing(ticks)
        );
        // The literal pool holds the DWT block's address (GCC reaches
        // CYCCNT at offset 4 from it).
        assert!(
            ticks.iter().any(|i| i.mnemonic == ".word"
                && matches!(parse_imm(&i.operands), Some(DWT_CTRL | CYCCNT))),
            "{name}: no DWT address in the literal pool of mpprof_port_ticks"
        );
        let all = all_accesses(&functions);
        assert!(
            writes(&all, DEMCR) && writes(&all, DWT_CTRL),
            "{name}: TRCENA (DEMCR) and CYCCNTENA (DWT_CTRL) are not set: {all:x?}"
        );
        assert!(
            !all.iter().any(|&(_, a)| (SYST_CSR..=SYST_CVR).contains(&a)),
            "{name}: touches SysTick as well"
        );
        assert!(
            contains_bytes(&obj, b"dwt\0"),
            "{name}: clock not named dwt"
        );
        assert!(!contains_bytes(&obj, b"systick\0"));
        eprintln!(
            "{name}: compiled; mpprof_port_ticks reads {CYCCNT:#x} (DWT_CYCCNT), open sets DEMCR.TRCENA and DWT_CTRL.CYCCNTENA; all 9 port functions defined; transport {}",
            if uart { "mpprof_uart_write (U)" } else { "mpprof_rtt_write (U)" }
        );
    }
}

#[test]
fn cortex_m0plus_reads_systick_and_not_the_dwt() {
    for (uart, name) in [(false, "m0plus-rtt"), (true, "m0plus-uart")] {
        let mut defines = vec!["MPPROF_CLOCK_HZ=125000000"];
        if uart {
            defines.push("MPPROF_TRANSPORT_UART=1");
        }
        let obj = compile("mpprof_port_cortexm.c", "cortex-m0plus", &defines, name);
        check_port_layer(&obj, uart);
        let functions = disassembly(&obj);
        let ticks = &functions["mpprof_port_ticks"];
        assert!(
            reads(&memory_accesses(ticks), SYST_CVR),
            "{name}: mpprof_port_ticks does not read SYST_CVR ({SYST_CVR:#x}):\n{}",
            listing(ticks)
        );
        let all = all_accesses(&functions);
        // Started only when the port has not: CSR read first, then RVR,
        // CVR and CSR written.
        assert!(
            reads(&all, SYST_CSR)
                && writes(&all, SYST_RVR)
                && writes(&all, SYST_CVR)
                && writes(&all, SYST_CSR),
            "{name}: SysTick is not set up: {all:x?}"
        );
        assert!(
            !all.iter()
                .any(|&(_, a)| (0xe000_1000..=0xe000_1fff).contains(&a) || a == DEMCR),
            "{name}: an ARMv6-M build touches the DWT, which has no cycle counter there"
        );
        let words: Vec<u64> = functions
            .values()
            .flatten()
            .filter(|i| i.mnemonic == ".word")
            .filter_map(|i| parse_imm(&i.operands))
            .collect();
        assert!(
            !words
                .iter()
                .any(|w| (0xe000_1000..=0xe000_1fff).contains(w) || *w == DEMCR),
            "{name}: a DWT address is in the literal pools"
        );
        assert!(
            contains_bytes(&obj, b"systick\0"),
            "{name}: clock not named systick"
        );
        assert!(!contains_bytes(&obj, b"dwt\0"));
        eprintln!(
            "{name}: compiled; mpprof_port_ticks reads {SYST_CVR:#x} (SYST_CVR), no DWT address anywhere; all 9 port functions defined; transport {}",
            if uart { "mpprof_uart_write (U)" } else { "mpprof_rtt_write (U)" }
        );
    }
}

#[test]
fn rp2_tells_the_main_core_by_sio_cpuid() {
    let obj = compile(
        "mpprof_port_cortexm.c",
        "cortex-m0plus",
        &["MPPROF_CLOCK_HZ=125000000", "PICO_RP2040=1"],
        "rp2040",
    );
    check_port_layer(&obj, false);
    let functions = disassembly(&obj);
    let main_thread = &functions["mpprof_port_is_main_thread"];
    assert!(
        reads(&memory_accesses(main_thread), SIO_CPUID),
        "the rp2 build does not read SIO CPUID ({SIO_CPUID:#x}):\n{}",
        listing(main_thread)
    );
    // Without the rp2 macros there is one core and no threads: no SIO read.
    let plain = compile(
        "mpprof_port_cortexm.c",
        "cortex-m0plus",
        &["MPPROF_CLOCK_HZ=125000000"],
        "m0plus-plain",
    );
    assert!(!reads(&all_accesses(&disassembly(&plain)), SIO_CPUID));
    eprintln!("rp2040: mpprof_port_is_main_thread reads {SIO_CPUID:#x} (SIO CPUID)");
}

#[test]
fn threads_on_one_core_are_told_apart_by_their_state() {
    // stm32 with _thread: the main thread is the one whose state is
    // mp_state_ctx.thread. The qemu port has no threads, so a two-type
    // mpthreadport.h stands in for the port's.
    let dir = setup().out.join("threads");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("mpthreadport.h"),
        "typedef struct { int unused; } mp_thread_mutex_t;\n\
         typedef struct { int unused; } mp_thread_recursive_mutex_t;\n",
    )
    .unwrap();
    let include = format!("-I{}", dir.display());
    let obj = compile(
        "mpprof_port_cortexm.c",
        "cortex-m4",
        &["MPPROF_CLOCK_HZ=168000000", "MICROPY_PY_THREAD=1", &include],
        "m4-threads",
    );
    check_port_layer(&obj, false);
    let (_, undefined) = symbols(&obj);
    for s in ["mp_thread_get_state", "mp_state_ctx"] {
        assert!(
            undefined.iter().any(|u| u == s),
            "the threaded build does not use {s}: {undefined:?}"
        );
    }
}

#[test]
fn the_clock_rate_comes_from_the_port_or_the_build_stops() {
    // stm32: SystemCoreClock (its Makefile always defines STM32_HAL_H).
    let obj = compile(
        "mpprof_port_cortexm.c",
        "cortex-m4",
        &["STM32_HAL_H=<stm32f4xx_hal.h>"],
        "stm32f4",
    );
    let (_, undefined) = symbols(&obj);
    assert!(
        undefined.iter().any(|s| s == "SystemCoreClock"),
        "the stm32 build does not take its rate from SystemCoreClock: {undefined:?}"
    );
    // A port it does not know, without MPPROF_CLOCK_HZ: no silent guess.
    let object = setup().out.join("no-clock.o");
    let out = try_compile("mpprof_port_cortexm.c", "cortex-m4", &[], &object);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success(),
        "built without knowing the clock rate"
    );
    assert!(
        stderr.contains("define MPPROF_CLOCK_HZ"),
        "unexpected failure:\n{stderr}"
    );
}

/// .data + .bss of the given objects, from arm-none-eabi-size.
fn static_ram(objects: &[PathBuf]) -> u64 {
    let mut total = 0;
    for o in objects {
        let text = tool("arm-none-eabi-size", &[], o);
        let line = text
            .lines()
            .nth(1)
            .expect("size prints one line per object");
        let cols: Vec<u64> = line
            .split_whitespace()
            .take(3)
            .map(|c| c.parse().unwrap())
            .collect();
        total += cols[1] + cols[2];
    }
    total
}

/// The figure after `label` in the wrapper's comment ("... 12345 bytes").
fn documented(config: &str, label: &str) -> u64 {
    let at = config
        .find(label)
        .unwrap_or_else(|| panic!("the board config does not document `{label}`"));
    config[at + label.len()..]
        .trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no number after `{label}`"))
}

#[test]
fn the_board_config_documents_the_runtime_ram() {
    let common = [
        "mpprof_rt.c",
        "mpprof_wire.c",
        "mpprof_vm.c",
        "mpprof_mod.c",
    ];
    let mut measured = Vec::new();
    for (uart, transport_file, label) in [
        (true, "mpprof_uart.c", "UART transport:"),
        (false, "mpprof_rtt.c", "RTT transport:"),
    ] {
        let mut defines = vec!["MPPROF_CLOCK_HZ=168000000"];
        if uart {
            defines.push("MPPROF_TRANSPORT_UART=1");
        }
        let mut objects = Vec::new();
        for f in common
            .iter()
            .chain([&"mpprof_port_cortexm.c", &transport_file])
        {
            let name = format!(
                "ram-{}-{}",
                if uart { "uart" } else { "rtt" },
                f.trim_end_matches(".c")
            );
            objects.push(compile(f, "cortex-m4", &defines, &name));
        }
        let bytes = static_ram(&objects);
        eprintln!("runtime static RAM with the board config, {label} {bytes} bytes");
        measured.push((label, bytes));
    }
    let config = std::fs::read_to_string(setup().config_dir.join("mpprof_board_config.h")).unwrap();
    for (label, bytes) in measured {
        let doc = documented(&config, label);
        // Within 1%: small changes to the runtime need not touch the comment,
        // a table size change must.
        assert!(
            doc.abs_diff(bytes) * 100 <= bytes,
            "mpprof_board_config.h says {doc} bytes for the {label} build, measured {bytes}: update the comment"
        );
    }
}
