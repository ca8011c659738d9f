//! Run a script on the emulated board and save its raw profile stream:
//! `cargo run -p board-agent --example qemu_run -- FIRMWARE.elf SCRIPT.py OUT.bin`
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use board_agent::qemu::QemuBoard;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 4 {
        return Err("usage: qemu_run FIRMWARE.elf SCRIPT.py OUT.bin".into());
    }
    let board = QemuBoard {
        firmware: args[1].clone().into(),
        qemu: "qemu-system-arm".into(),
        icount_shift: 4,
    };
    let mut session = board.boot()?;
    let source = std::fs::read(&args[2])?;
    let mut out = std::fs::File::create(&args[3])?;
    let run = session.run_script(
        &source,
        Duration::from_secs(60),
        &mut out,
        &mut |d| print!("{}", String::from_utf8_lossy(d)),
        Arc::new(AtomicBool::new(false)),
    )?;
    eprintln!(
        "exit: {:?}, stderr: {}",
        run.exit,
        String::from_utf8_lossy(&run.output.stderr)
    );
    session.shutdown();
    Ok(())
}
