//! Headless Chromium driven the way a person uses a page: real mouse clicks
//! and key presses, the DOM read back, screenshots kept. It speaks the
//! DevTools protocol over the pipe Chromium opens with
//! `--remote-debugging-pipe` (commands on its fd 3, answers on its fd 4,
//! each a JSON message ended by a NUL byte), so no driver package is needed.
//!
//! Also a small HTTP server on the loopback address, for viewers that fetch
//! the profile they show (speedscope's `#profileURL=`): a page opened from
//! `file://` cannot fetch.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

/// How long one answer from the browser may take before the test fails
/// (a bound against a hung browser, not a measurement).
const ANSWER_WAIT: Duration = Duration::from_secs(60);

pub struct Browser {
    child: Child,
    commands: std::fs::File,
    answers: Receiver<Value>,
    /// Events (messages without an id) seen so far, e.g. uncaught exceptions.
    pub events: Vec<Value>,
    next_id: u64,
    session: String,
}

fn move_fd_to(fd: i32, target: i32) -> std::io::Result<()> {
    // SAFETY: plain fd syscalls between fork and exec.
    if unsafe { libc::dup2(fd, target) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

impl Browser {
    /// Chromium, headless, with one page of `width` x `height` CSS pixels
    /// attached; its profile in `dir` (apart per test).
    pub fn launch(dir: &Path, width: u32, height: u32) -> Browser {
        let chromium = super::chromium();
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).unwrap();
        let (to_chromium_read, to_chromium_write) = std::io::pipe().unwrap();
        let (from_chromium_read, from_chromium_write) = std::io::pipe().unwrap();
        let child_in: OwnedFd = to_chromium_read.into();
        let child_out: OwnedFd = from_chromium_write.into();
        let (cin, cout) = (child_in.as_raw_fd(), child_out.as_raw_fd());
        let mut cmd = Command::new(chromium);
        cmd.args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--no-default-browser-check",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--remote-debugging-pipe",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("--window-size={width},{height}"))
        .arg("about:blank")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        // SAFETY: only async-signal-safe calls (fcntl, dup2) in the child.
        unsafe {
            cmd.pre_exec(move || {
                // Lift both ends above 3 and 4 first, so one dup2 cannot
                // overwrite the other's source.
                let a = libc::fcntl(cin, libc::F_DUPFD, 10);
                let b = libc::fcntl(cout, libc::F_DUPFD, 10);
                if a < 0 || b < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                move_fd_to(a, 3)?;
                move_fd_to(b, 4)
            });
        }
        let child = cmd.spawn().expect("starting chromium");
        drop(child_in);
        drop(child_out);
        let (tx, answers) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(from_chromium_read);
            loop {
                let mut msg = Vec::new();
                match r.read_until(0, &mut msg) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        msg.pop();
                        if let Ok(v) = serde_json::from_slice::<Value>(&msg) {
                            if tx.send(v).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        let mut b = Browser {
            child,
            commands: std::fs::File::from(OwnedFd::from(to_chromium_write)),
            answers,
            events: Vec::new(),
            next_id: 1,
            session: String::new(),
        };
        let target = b.browser_call("Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().unwrap().to_string();
        let attached = b.browser_call(
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        b.session = attached["sessionId"].as_str().unwrap().to_string();
        b.call("Runtime.enable", json!({}));
        b.call("Page.enable", json!({}));
        b.call(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        b
    }

    fn send(&mut self, method: &str, params: Value, session: Option<String>) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if let Some(s) = session {
            msg["sessionId"] = json!(s);
        }
        let mut bytes = serde_json::to_vec(&msg).unwrap();
        bytes.push(0);
        self.commands.write_all(&bytes).unwrap();
        loop {
            let v = match self.answers.recv_timeout(ANSWER_WAIT) {
                Ok(v) => v,
                Err(RecvTimeoutError::Timeout) => panic!("chromium did not answer {method}"),
                Err(RecvTimeoutError::Disconnected) => panic!("chromium closed during {method}"),
            };
            if v["id"].as_u64() == Some(id) {
                assert!(v.get("error").is_none(), "{method}: {}", v["error"]);
                return v["result"].clone();
            }
            if v.get("id").is_none() {
                self.events.push(v);
            }
        }
    }

    fn browser_call(&mut self, method: &str, params: Value) -> Value {
        self.send(method, params, None)
    }

    /// A DevTools command on the page.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let s = self.session.clone();
        self.send(method, params, Some(s))
    }

    /// Open `url` and wait until the document has loaded.
    pub fn open(&mut self, url: &str) {
        self.call("Page.navigate", json!({"url": url}));
        self.wait_for("document.readyState === 'complete'");
    }

    /// The value of a JavaScript expression on the page (promises awaited).
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true, "awaitPromise": true}),
        );
        assert!(
            r.get("exceptionDetails").is_none(),
            "{expr}: {}",
            r["exceptionDetails"]
        );
        r["result"]["value"].clone()
    }

    /// Wait until `expr` is truthy; its value. Panics, with the page's text,
    /// when it never becomes so (a bound against a viewer that never loads).
    pub fn wait_for(&mut self, expr: &str) -> Value {
        let until = Instant::now() + ANSWER_WAIT;
        loop {
            let v = self.eval(expr);
            let truthy = !(v.is_null()
                || v == json!(false)
                || v == json!(0)
                || v == json!("")
                || v.as_array().is_some_and(|a| a.is_empty()));
            if truthy {
                return v;
            }
            if Instant::now() > until {
                let text = self.eval("document.body ? document.body.innerText : ''");
                panic!("never true: {expr}; the page says: {text}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A left click at (x, y) in CSS pixels, as the mouse does it.
    pub fn click(&mut self, x: f64, y: f64) {
        self.call(
            "Input.dispatchMouseEvent",
            json!({"type": "mouseMoved", "x": x, "y": y}),
        );
        for t in ["mousePressed", "mouseReleased"] {
            self.call(
                "Input.dispatchMouseEvent",
                json!({"type": t, "x": x, "y": y, "button": "left", "buttons": 1, "clickCount": 1}),
            );
        }
    }

    /// Scroll the first element `selector` matches into view and click its
    /// middle.
    pub fn click_element(&mut self, selector: &str) {
        let at = self.eval(&format!(
            "(() => {{ const e = document.querySelector({}); e.scrollIntoView({{block: 'center'}}); const r = e.getBoundingClientRect(); return [r.x + r.width / 2, r.y + r.height / 2]; }})()",
            json!(selector)
        ));
        self.click(at[0].as_f64().unwrap(), at[1].as_f64().unwrap());
    }

    /// A key typed on the keyboard (a printable character).
    pub fn type_key(&mut self, key: &str) {
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyDown", "key": key, "text": key}),
        );
        self.call(
            "Input.dispatchKeyEvent",
            json!({"type": "keyUp", "key": key}),
        );
    }

    /// The page as a PNG, kept at `path` (a test artifact).
    pub fn screenshot(&mut self, path: &Path) -> Vec<u8> {
        let r = self.call("Page.captureScreenshot", json!({"format": "png"}));
        let png = base64_decode(r["data"].as_str().unwrap());
        assert!(png.starts_with(b"\x89PNG"), "a PNG");
        std::fs::write(path, &png).unwrap();
        png
    }

    /// Uncaught exceptions the page threw so far.
    pub fn exceptions(&self) -> Vec<String> {
        self.events
            .iter()
            .filter(|e| e["method"] == "Runtime.exceptionThrown")
            .map(|e| e["params"]["exceptionDetails"].to_string())
            .collect()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in s.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}

/// Serves `routes` (URL path -> file) and everything under `root` on
/// 127.0.0.1 for as long as the test process runs; its base URL.
pub fn serve(root: &Path, routes: HashMap<String, PathBuf>) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let root = root.to_path_buf();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            // The headers: read to the blank line, nothing else is needed.
            loop {
                let mut h = String::new();
                if reader.read_line(&mut h).map_or(true, |n| n == 0) || h == "\r\n" {
                    break;
                }
            }
            let path = request
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .split(['?', '#'])
                .next()
                .unwrap_or("/")
                .to_string();
            let file = routes
                .get(&path)
                .cloned()
                .unwrap_or_else(|| root.join(path.trim_start_matches('/').replace("..", "")));
            let mut body = Vec::new();
            let found = std::fs::File::open(&file)
                .and_then(|mut f| f.read_to_end(&mut body))
                .is_ok();
            let mime = match file.extension().and_then(|e| e.to_str()) {
                Some("html") => "text/html",
                Some("js") => "text/javascript",
                Some("css") => "text/css",
                Some("json") => "application/json",
                Some("wasm") => "application/wasm",
                Some("png") => "image/png",
                Some("svg") => "image/svg+xml",
                _ => "application/octet-stream",
            };
            let status = if found { "200 OK" } else { "404 Not Found" };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: {mime}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(&body);
        }
    });
    base
}
