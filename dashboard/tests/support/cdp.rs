//! Just enough of the Chrome DevTools Protocol to drive Debian's headless Chromium from a
//! test, with no driver and no extra crate: Chromium is started with
//! `--remote-debugging-pipe` and reads JSON commands from fd 3 and writes answers to fd 4,
//! each message terminated by a NUL byte. One page (target) at a time, commands answered
//! in order.

use std::fs::File;
use std::io::{BufRead, BufReader, Write};
use std::os::fd::{FromRawFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::Proc;

/// A headless Chromium with one attached page.
pub struct Browser {
    _proc: Proc,
    to_chrome: File,
    from_chrome: mpsc::Receiver<Value>,
    next_id: u64,
    session: Option<String>,
}

fn pipe() -> (RawFd, RawFd) {
    let mut fds = [0; 2];
    // SAFETY: plain pipe2(2) into a local array.
    let rc = unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) };
    assert_eq!(rc, 0, "pipe2");
    (fds[0], fds[1])
}

impl Browser {
    /// Starts Chromium with a fresh profile under `dir`, `width`×`height` window.
    pub fn launch(dir: &Path, width: u32, height: u32) -> Browser {
        std::fs::create_dir_all(dir).expect("browser dir");
        let (chrome_reads, we_write) = pipe();
        let (we_read, chrome_writes) = pipe();
        let mut cmd = testkit::chromium::headless(&dir.join("profile"));
        cmd.args(["--hide-scrollbars", "--remote-debugging-pipe"])
            .arg(format!("--window-size={width},{height}"));
        // SAFETY: only dup2(2), async-signal-safe; the targets 3 and 4 lose CLOEXEC.
        unsafe {
            cmd.pre_exec(move || {
                if libc::dup2(chrome_reads, 3) < 0 || libc::dup2(chrome_writes, 4) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let proc = Proc::spawn("chromium", cmd, &dir.join("chromium.log")).expect("spawn chromium");
        // SAFETY: we own these fds; the child has its own copies.
        unsafe {
            libc::close(chrome_reads);
            libc::close(chrome_writes);
        }
        // SAFETY: fresh fds from pipe2 owned by nobody else now.
        let to_chrome = unsafe { File::from_raw_fd(we_write) };
        let reader = unsafe { File::from_raw_fd(we_read) };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(reader);
            loop {
                let mut buf = Vec::new();
                match reader.read_until(0, &mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(_) => {
                        buf.pop();
                        if let Ok(v) = serde_json::from_slice::<Value>(&buf) {
                            if tx.send(v).is_err() {
                                return;
                            }
                        }
                    }
                }
            }
        });
        Browser {
            _proc: proc,
            to_chrome,
            from_chrome: rx,
            next_id: 1,
            session: None,
        }
    }

    /// Sends one command (to the attached page when `page`) and waits for its answer.
    pub fn call(&mut self, page: bool, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        let mut msg = json!({"id": id, "method": method, "params": params});
        if page {
            msg["sessionId"] = json!(self.session.clone().expect("attached page"));
        }
        let mut bytes = serde_json::to_vec(&msg).expect("json");
        bytes.push(0);
        self.to_chrome.write_all(&bytes).expect("write to chromium");
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            let v = self
                .from_chrome
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no answer from chromium to {method}"));
            if v["id"] == json!(id) {
                assert!(v.get("error").is_none(), "{method} failed: {v}");
                return v["result"].clone();
            }
        }
    }

    /// Opens `url` in a new page, attaches to it and waits for the load.
    pub fn open(&mut self, url: &str, width: u32, height: u32, javascript: bool) {
        let target = self.call(false, "Target.createTarget", json!({"url": "about:blank"}));
        let target_id = target["targetId"].as_str().expect("targetId").to_string();
        let attached = self.call(
            false,
            "Target.attachToTarget",
            json!({"targetId": target_id, "flatten": true}),
        );
        self.session = Some(
            attached["sessionId"]
                .as_str()
                .expect("sessionId")
                .to_string(),
        );
        self.call(true, "Page.enable", json!({}));
        self.call(
            true,
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": width < 600}),
        );
        if !javascript {
            self.call(
                true,
                "Emulation.setScriptExecutionDisabled",
                json!({"value": true}),
            );
        }
        self.call(true, "Page.navigate", json!({"url": url}));
        assert!(
            self.wait_eval(
                Duration::from_secs(30),
                "document.readyState === 'complete'"
            )
            .is_some(),
            "page did not load"
        );
    }

    /// Evaluates `expr` in the page; returns its JSON value. Works with JavaScript disabled
    /// for the page (DevTools evaluation is not page script).
    pub fn eval(&mut self, expr: &str) -> Value {
        let r = self.call(
            true,
            "Runtime.evaluate",
            json!({"expression": expr, "returnByValue": true}),
        );
        r["result"]["value"].clone()
    }

    /// Polls `expr` until it is truthy (returns its value) or `timeout` passes.
    pub fn wait_eval(&mut self, timeout: Duration, expr: &str) -> Option<Value> {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let v = self.eval(expr);
            let truthy = match &v {
                Value::Null => false,
                Value::Bool(b) => *b,
                Value::String(s) => !s.is_empty(),
                Value::Number(n) => n.as_f64() != Some(0.0),
                _ => true,
            };
            if truthy {
                return Some(v);
            }
            if std::time::Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A PNG of the whole page (beyond the viewport).
    pub fn screenshot(&mut self) -> Vec<u8> {
        use base64::Engine as _;
        let r = self.call(
            true,
            "Page.captureScreenshot",
            json!({"format": "png", "captureBeyondViewport": true}),
        );
        base64::engine::general_purpose::STANDARD
            .decode(r["data"].as_str().expect("screenshot data"))
            .expect("base64")
    }
}
