//! Listing serial ports works without libudev, and lists only real devices.

#[test]
fn listed_serial_ports_exist() {
    let devs = board_agent::serial_devices().expect("listing serial ports");
    for d in devs {
        assert!(
            std::path::Path::new(&d.path).exists(),
            "{} does not exist",
            d.path
        );
    }
}
