//! The command line's own answers: `mpprof --version`, `mpprof devices` on
//! this machine, and `--device` names resolved before anything opens a port.

mod common;
use common::{mpprof, root};

#[test]
fn devices_lists_this_machines_ports_like_mpremote() {
    let o = mpprof(&["devices"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = String::from_utf8_lossy(&o.stdout);
    let ports = board_agent::serial_devices().unwrap();
    if ports.is_empty() {
        assert!(out.contains("none found"), "{out}");
    }
    if ports.iter().all(|p| p.usb.is_none()) {
        assert!(out.contains("no USB serial port found"), "{out}");
    }
    for p in &ports {
        let line = out
            .lines()
            .find(|l| l.split_whitespace().next() == Some(p.path.as_str()))
            .unwrap_or_else(|| panic!("{} listed in\n{out}", p.path));
        assert!(line.contains(&p.vid_pid()), "{line}");
        if let Some(sn) = p.usb.as_ref().and_then(|u| u.serial_number.as_deref()) {
            assert!(line.contains(sn), "{line}");
        }
    }
    assert!(out.contains("debug probes"), "{out}");
}

#[test]
fn device_shortcuts_that_name_no_port_are_refused_with_what_exists() {
    let ports = board_agent::serial_devices().unwrap();
    let script = root().join("fixtures/causes/float.py");
    // A shortcut whose port is absent here, and auto without a board.
    let absent = (0..100)
        .map(|n| format!("a{n}"))
        .find(|s| {
            let path = board_agent::ports::shortcut_path(s).unwrap();
            !ports.iter().any(|p| p.path == path)
        })
        .unwrap();
    let o = mpprof(&["run", "--device", &absent, script.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    let path = board_agent::ports::shortcut_path(&absent).unwrap();
    assert!(err.contains(&format!("{absent} means {path}")), "{err}");
    for p in &ports {
        assert!(err.contains(&p.path), "{err}");
    }
    if board_agent::resolve_port("auto", &ports).is_err() {
        let o = mpprof(&["run", "--device", "auto", script.to_str().unwrap()]);
        assert_eq!(o.status.code(), Some(2));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("--device auto looks for") && err.contains("2e8a"),
            "{err}"
        );
    }
}

#[test]
fn version_names_mpprof_and_every_supported_micropython() {
    for flag in ["--version", "-V"] {
        let o = mpprof(&[flag]);
        assert!(o.status.success());
        let out = String::from_utf8_lossy(&o.stdout);
        let first = out.lines().next().unwrap();
        assert_eq!(first, format!("mpprof {}", env!("CARGO_PKG_VERSION")));
        for set in vm_instrumented::PATCH_SETS {
            for (a, b) in set.releases {
                assert!(out.contains(&format!("{a}.{b}.x")), "{a}.{b} in {out}");
            }
            if let Some((a, b)) = set.preview {
                assert!(
                    out.contains(&format!("master ({a}.{b}.0-preview)")),
                    "{out}"
                );
            }
        }
        for r in vm_instrumented::DebianRelease::ALL {
            assert!(out.contains(r.upstream_version()), "{out}");
        }
        let default = vm_instrumented::DebianRelease::default().upstream_version();
        assert!(out.contains(&format!("{default} (default)")), "{out}");
    }
}
