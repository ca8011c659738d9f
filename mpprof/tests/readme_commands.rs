//! README's two commands must work as written from a clean clone. The test
//! command is what `.ci/run` runs; the main one is checked here: it names a
//! fixture that exists, and `cargo run` from the workspace root resolves to
//! the `mpprof` binary (the package has two, so without `default-run` cargo
//! refuses to guess), then the binary runs the command's arguments.

use std::path::Path;
use std::process::Command;

mod common;
use common::root;

/// The commands in README's first `sh` block after its "two commands"
/// heading (the install block before it, `pip install mpprof`, is what
/// tests/wheel.rs checks).
fn readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let from_clone = readme
        .find("two commands\n")
        .expect("README has a section on the two commands");
    let block = readme[from_clone..]
        .split("```sh\n")
        .nth(1)
        .and_then(|b| b.split("```").next())
        .expect("README has a ```sh block");
    block
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim().to_string())
        .filter(|l| !l.is_empty())
        .collect()
}

#[test]
fn the_main_command_runs_the_mpprof_binary_on_a_real_fixture() {
    let commands = readme_commands();
    assert_eq!(commands.len(), 2, "{commands:?}");
    let main = &commands[0];
    let args: Vec<&str> = main
        .strip_prefix("cargo run --release -- ")
        .unwrap_or_else(|| panic!("the main command is `cargo run --release -- ...`: {main}"))
        .split_whitespace()
        .collect();
    // `cargo run` in the workspace root builds the default member and runs
    // its default binary.
    let meta = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps"])
        .current_dir(root())
        .output()
        .unwrap();
    assert!(meta.status.success());
    let meta: serde_json::Value = serde_json::from_slice(&meta.stdout).unwrap();
    let default_members = meta["workspace_default_members"].as_array().unwrap();
    assert_eq!(default_members.len(), 1, "{default_members:?}");
    let package = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == default_members[0])
        .unwrap();
    let bins: Vec<&str> = package["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["kind"].as_array().unwrap().iter().any(|k| k == "bin"))
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    let runs = if bins.len() == 1 {
        bins[0]
    } else {
        package["default_run"]
            .as_str()
            .unwrap_or_else(|| panic!("{bins:?}: `cargo run` cannot choose without default-run"))
    };
    assert_eq!(runs, "mpprof");
    // And that binary takes the command's arguments from the root.
    let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("readme-main.json");
    let o = Command::new(env!("CARGO_BIN_EXE_mpprof"))
        .args(&args)
        .arg("-q")
        .arg("-o")
        .arg(&out)
        .current_dir(root())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let p = mpprof_profile::Profile::from_json_file(&out).unwrap();
    assert!(p.gc.alloc_count > 0);
}

#[test]
fn the_test_command_is_what_ci_runs() {
    let commands = readme_commands();
    let ci = std::fs::read_to_string(root().join(".ci/run")).unwrap();
    assert!(
        // A step may go on after a failure (`CMD || status=1`): the command
        // itself is what counts.
        ci.lines()
            .any(|l| l.split("||").next().unwrap_or("").trim() == commands[1]),
        "`.ci/run` does not run README's test command `{}`",
        commands[1]
    );
}
