//! Serial ports and `--device` names in mpremote's conventions: `a0` is
//! /dev/ttyACM0, `u0` /dev/ttyUSB0, `c3` COM3, and `auto` the first USB
//! serial port that looks like a MicroPython board by its USB IDs. Names
//! are resolved here, once, against a list of the ports that exist, before
//! anything opens one.

/// A serial port a board may be on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SerialDevice {
    pub path: String,
    /// The USB device behind the port, when it is one.
    pub usb: Option<UsbInfo>,
}

/// What a USB serial port says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UsbInfo {
    pub vid: u16,
    pub pid: u16,
    pub serial_number: Option<String>,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
}

impl SerialDevice {
    /// `vvvv:pppp`, or `0000:0000` for a port that is no USB device.
    pub fn vid_pid(&self) -> String {
        let (v, p) = self.usb.as_ref().map_or((0, 0), |u| (u.vid, u.pid));
        format!("{v:04x}:{p:04x}")
    }
}

/// Which USB devices `auto` takes for a MicroPython board: a vendor (any
/// product) or one product of a vendor.
struct KnownUsb {
    vid: u16,
    /// `None`: every product of the vendor.
    pid: Option<u16>,
    what: &'static str,
}

/// Written from what common MicroPython boards enumerate as.
///
/// Where `auto` may guess wrong: the vendor-wide entries also match other
/// firmware on the same chips (a Pico running C SDK code or CircuitPython,
/// an ESP32-S3 running Arduino code), and the USB-UART bridges sit on many
/// boards and gadgets that run no MicroPython at all (a GPS receiver, a 3D
/// printer, an Arduino Uno clone). With several candidates the first by
/// port name wins; name the port when it matters.
const KNOWN: &[KnownUsb] = &[
    KnownUsb {
        vid: 0xf055,
        pid: None,
        what: "MicroPython (pyboard and boards using its USB IDs)",
    },
    KnownUsb {
        vid: 0x2e8a,
        pid: None,
        what: "Raspberry Pi (Pico, Pico W, Pico 2)",
    },
    KnownUsb {
        vid: 0x303a,
        pid: None,
        what: "Espressif native USB (ESP32-S2, -S3, -C3, -C6)",
    },
    KnownUsb {
        vid: 0x239a,
        pid: None,
        what: "Adafruit",
    },
    KnownUsb {
        vid: 0x2341,
        pid: None,
        what: "Arduino (Nano RP2040 Connect, Nano ESP32)",
    },
    KnownUsb {
        vid: 0x0483,
        pid: Some(0x5740),
        what: "STM32 virtual COM port",
    },
    KnownUsb {
        vid: 0x10c4,
        pid: Some(0xea60),
        what: "Silicon Labs CP210x bridge",
    },
    KnownUsb {
        vid: 0x1a86,
        pid: Some(0x7523),
        what: "WCH CH340 bridge",
    },
    KnownUsb {
        vid: 0x1a86,
        pid: Some(0x55d4),
        what: "WCH CH9102 bridge",
    },
    KnownUsb {
        vid: 0x0403,
        pid: Some(0x6001),
        what: "FTDI FT232R bridge",
    },
    KnownUsb {
        vid: 0x0403,
        pid: Some(0x6015),
        what: "FTDI FT231X bridge",
    },
    KnownUsb {
        vid: 0x067b,
        pid: Some(0x2303),
        what: "Prolific PL2303 bridge",
    },
];

/// What `auto` takes the device for, when it looks like a MicroPython board.
pub fn known_board(vid: u16, pid: u16) -> Option<&'static str> {
    KNOWN
        .iter()
        .find(|k| k.vid == vid && k.pid.is_none_or(|p| p == pid))
        .map(|k| k.what)
}

/// A `--device` name that names no port here.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PortError {
    #[error("--device {name} means {path}, which is not a serial port here; {}", listing(.ports))]
    Missing {
        name: String,
        path: String,
        ports: Vec<String>,
    },
    #[error("--device auto looks for a USB serial port with a MicroPython board's IDs ({}); none is attached; {}", known_ids(), listing(.ports))]
    NoBoard { ports: Vec<String> },
}

fn listing(ports: &[String]) -> String {
    if ports.is_empty() {
        "this machine has no serial ports (`mpprof devices` lists them)".into()
    } else {
        format!("serial ports here: {}", ports.join(", "))
    }
}

fn known_ids() -> String {
    KNOWN
        .iter()
        .map(|k| match k.pid {
            Some(p) => format!("{:04x}:{p:04x}", k.vid),
            None => format!("{:04x}:*", k.vid),
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The port an mpremote-style shortcut stands for (`a0`, `u1`, `c3`), or
/// `None` when `name` is no shortcut.
pub fn shortcut_path(name: &str) -> Option<String> {
    let mut chars = name.chars();
    let kind = chars.next()?;
    let digits = chars.as_str();
    if digits.is_empty() || digits.len() > 2 || !digits.chars().all(|c| c.is_ascii_digit()) {
        return None;
    }
    match kind {
        'a' => Some(format!("/dev/ttyACM{digits}")),
        'u' => Some(format!("/dev/ttyUSB{digits}")),
        'c' => Some(format!("COM{digits}")),
        _ => None,
    }
}

/// Whether resolving `name` needs the list of ports (a shortcut or `auto`);
/// any other name is a path, used as given.
pub fn needs_port_list(name: &str) -> bool {
    name == "auto" || shortcut_path(name).is_some()
}

/// The port `name` stands for among `ports`: a shortcut's port when it
/// exists, `auto`'s first MicroPython-looking USB port (by path), any other
/// name unchanged (a path, a pty, a port the listing cannot see).
pub fn resolve_port(name: &str, ports: &[SerialDevice]) -> Result<String, PortError> {
    let names = || ports.iter().map(|p| p.path.clone()).collect::<Vec<_>>();
    if name == "auto" {
        let mut boards: Vec<&SerialDevice> = ports
            .iter()
            .filter(|p| {
                p.usb
                    .as_ref()
                    .is_some_and(|u| known_board(u.vid, u.pid).is_some())
            })
            .collect();
        boards.sort_by(|a, b| a.path.cmp(&b.path));
        return boards
            .first()
            .map(|p| p.path.clone())
            .ok_or_else(|| PortError::NoBoard { ports: names() });
    }
    match shortcut_path(name) {
        Some(path) if ports.iter().any(|p| p.path == path) => Ok(path),
        Some(path) => Err(PortError::Missing {
            name: name.into(),
            path,
            ports: names(),
        }),
        None => Ok(name.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usb(path: &str, vid: u16, pid: u16) -> SerialDevice {
        SerialDevice {
            path: path.into(),
            usb: Some(UsbInfo {
                vid,
                pid,
                ..UsbInfo::default()
            }),
        }
    }

    fn plain(path: &str) -> SerialDevice {
        SerialDevice {
            path: path.into(),
            usb: None,
        }
    }

    #[test]
    fn shortcuts_name_their_ports() {
        let ports = [
            plain("/dev/ttyS0"),
            usb("/dev/ttyACM0", 0x2e8a, 0x0005),
            usb("/dev/ttyUSB1", 0x10c4, 0xea60),
            usb("COM3", 0x303a, 0x1001),
        ];
        assert_eq!(resolve_port("a0", &ports).unwrap(), "/dev/ttyACM0");
        assert_eq!(resolve_port("u1", &ports).unwrap(), "/dev/ttyUSB1");
        assert_eq!(resolve_port("c3", &ports).unwrap(), "COM3");
        // Paths and other names pass unchanged, listed or not.
        assert_eq!(resolve_port("/dev/pts/4", &ports).unwrap(), "/dev/pts/4");
        assert_eq!(resolve_port("/dev/ttyS0", &ports).unwrap(), "/dev/ttyS0");
        assert_eq!(resolve_port("abc", &ports).unwrap(), "abc");
        assert!(!needs_port_list("/dev/ttyACM0"));
        assert!(needs_port_list("a12") && needs_port_list("auto"));
    }

    #[test]
    fn a_missing_shortcut_names_what_was_looked_for_and_what_exists() {
        let ports = [usb("/dev/ttyACM0", 0x2e8a, 0x0005), plain("/dev/ttyS0")];
        let e = resolve_port("a1", &ports).unwrap_err().to_string();
        assert!(e.contains("a1 means /dev/ttyACM1"), "{e}");
        assert!(e.contains("/dev/ttyACM0, /dev/ttyS0"), "{e}");
        let e = resolve_port("u0", &[]).unwrap_err().to_string();
        assert!(
            e.contains("/dev/ttyUSB0") && e.contains("no serial ports"),
            "{e}"
        );
    }

    #[test]
    fn auto_takes_the_first_board_by_its_usb_ids() {
        let ports = [
            plain("/dev/ttyS0"),
            usb("/dev/ttyUSB0", 0x1234, 0x5678), // an unknown gadget
            usb("/dev/ttyACM1", 0x303a, 0x4001),
            usb("/dev/ttyACM0", 0xf055, 0x9802),
        ];
        assert_eq!(resolve_port("auto", &ports).unwrap(), "/dev/ttyACM0");
        // A bridge counts only with its own product ID.
        let bridges = [
            usb("/dev/ttyUSB0", 0x1a86, 0x0001),
            usb("/dev/ttyUSB1", 0x1a86, 0x7523),
        ];
        assert_eq!(resolve_port("auto", &bridges).unwrap(), "/dev/ttyUSB1");
        let e = resolve_port("auto", &ports[..2]).unwrap_err().to_string();
        assert!(e.contains("2e8a:*") && e.contains("10c4:ea60"), "{e}");
        assert!(e.contains("/dev/ttyS0, /dev/ttyUSB0"), "{e}");
    }

    #[test]
    fn vid_pid_is_zero_for_a_plain_port() {
        assert_eq!(plain("/dev/ttyS0").vid_pid(), "0000:0000");
        assert_eq!(usb("x", 0x2e8a, 5).vid_pid(), "2e8a:0005");
    }
}
