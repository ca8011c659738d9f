//! The `mpprof` command line.

use std::process::ExitCode;

fn main() -> ExitCode {
    mpprof::cmd::main()
}
