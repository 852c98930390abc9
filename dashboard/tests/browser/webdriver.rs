//! A small W3C WebDriver client over `std::net::TcpStream`, enough to drive headless Chromium
//! through `chromedriver`: new session, navigate, run a script, screenshot, quit.
//!
//! `chromedriver` runs as a guarded child; the Chromium it starts gets a fresh profile
//! directory. Dropping a [`Browser`] ends the session (Chromium quits), kills `chromedriver`,
//! and kills by pid any process still running with that profile directory on its command line.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::{json, Value};
use testkit::ChildGuard;

/// How long one WebDriver request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `chromedriver` may take to say it listens.
const DRIVER_START: Duration = Duration::from_secs(30);

/// Chromium flags for this machine: headless, no sandbox (root), and no background traffic,
/// whose connections the closed network refuses.
const CHROMIUM_ARGS: &[&str] = &[
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
];

/// A plain HTTP/1.1 exchange on loopback: `(status, body)`.
pub fn http(
    port: u16,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .map_err(|e| format!("connect to 127.0.0.1:{port}: {e}"))?;
    stream
        .set_read_timeout(Some(REQUEST_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\
         Content-Type: application/json; charset=utf-8\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .map_err(|e| format!("send {method} {path}: {e}"))?;
    read_response(&mut stream).map_err(|e| format!("{method} {path}: {e}"))
}

/// Reads one response: the head, then a body of `Content-Length` bytes, a chunked body, or
/// everything up to the close. (chromedriver keeps the connection open after its reply even
/// when asked to close, so the length must be honoured.)
fn read_response(stream: &mut TcpStream) -> Result<(u16, String), String> {
    let mut raw = Vec::new();
    let mut chunk = [0u8; 8192];
    let head_end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end;
        }
        let n = stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        if n == 0 {
            return Err("closed before the reply's head".into());
        }
        raw.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut body = raw[head_end + 4..].to_vec();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line in {head:?}"))?;
    let header = |name: &str| {
        head.lines().skip(1).find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.trim()
                .eq_ignore_ascii_case(name)
                .then(|| v.trim().to_owned())
        })
    };
    let mut more = |body: &mut Vec<u8>, stream: &mut TcpStream| -> Result<bool, String> {
        let n = stream.read(&mut chunk).map_err(|e| format!("read: {e}"))?;
        body.extend_from_slice(&chunk[..n]);
        Ok(n > 0)
    };
    if let Some(len) = header("content-length") {
        let len: usize = len.parse().map_err(|_| format!("bad length {len:?}"))?;
        while body.len() < len {
            if !more(&mut body, stream)? {
                return Err("closed inside the body".into());
            }
        }
        body.truncate(len);
    } else if header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        loop {
            if let Some(done) = dechunk(&body) {
                body = done;
                break;
            }
            if !more(&mut body, stream)? {
                return Err("closed inside a chunked body".into());
            }
        }
    } else {
        while more(&mut body, stream)? {}
    }
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

/// The body of a chunked transfer.
fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// The port in chromedriver's `ChromeDriver was started successfully on port N.` line, unless
/// it is 0 (a chromedriver that repeats `--port=0` instead of naming the port it got).
fn listening_port(line: &str) -> Option<u16> {
    let (_, rest) = line.split_once("on port ")?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok().filter(|&port| port != 0)
}

/// A Chromium session driven through `chromedriver`.
pub struct Browser {
    port: u16,
    session: String,
    profile: PathBuf,
    driver: Option<ChildGuard>,
}

impl Browser {
    /// Starts `chromedriver` on a port of its own and a headless Chromium session with a new
    /// profile directory.
    pub fn start(chromium: &Path, chromedriver: &Path) -> Result<Browser, String> {
        // Port 0: chromedriver binds a port the system picks (so no other test can take it
        // first) and names it in its "started successfully on port N." line.
        let mut driver = ChildGuard::spawn(
            Command::new(chromedriver)
                .arg("--port=0")
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::null()),
            "chromedriver",
        )
        .map_err(|e| e.to_string())?;
        // chromedriver says when it listens and on which port; read that, then keep draining
        // its output.
        let stdout = driver
            .child_mut()
            .stdout
            .take()
            .ok_or("chromedriver has no stdout")?;
        let (ready_tx, ready_rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut ready_tx = Some(ready_tx);
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.contains("started successfully") {
                    if let Some(tx) = ready_tx.take() {
                        let _ = tx.send(line);
                    }
                }
            }
        });
        let ready = ready_rx
            .recv_timeout(DRIVER_START)
            .map_err(|_| format!("chromedriver did not start within {DRIVER_START:?}"))?;
        let port = listening_port(&ready).ok_or_else(|| {
            format!("chromedriver did not name the port it listens on (too old?): {ready:?}")
        })?;

        let profile = testkit::unique_temp_dir("chromium-profile");
        let mut args: Vec<String> = CHROMIUM_ARGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        let capabilities = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": chromium.display().to_string(),
                        "args": args,
                    }
                }
            }
        });
        let mut browser = Browser {
            port,
            session: String::new(),
            profile,
            driver: Some(driver),
        };
        let created = browser.command("POST", "/session", Some(capabilities))?;
        browser.session = created["sessionId"]
            .as_str()
            .ok_or_else(|| format!("no sessionId in {created}"))?
            .to_owned();
        Ok(browser)
    }

    /// One WebDriver command; the reply's `value`, or its error as text.
    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let body = body.map(|b| b.to_string());
        let (status, text) = http(self.port, method, path, body.as_deref())?;
        let reply: Value = serde_json::from_str(&text)
            .map_err(|e| format!("{method} {path}: {status} {text:?}: {e}"))?;
        let value = reply.get("value").cloned().unwrap_or(Value::Null);
        if status != 200 {
            return Err(format!("{method} {path}: {status}: {value}"));
        }
        Ok(value)
    }

    fn session_path(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session)
    }

    /// Loads `url` and waits for the document to load.
    pub fn goto(&self, url: &str) -> Result<(), String> {
        self.command(
            "POST",
            &self.session_path("/url"),
            Some(json!({ "url": url })),
        )
        .map(|_| ())
    }

    /// Runs `script` (a function body; `return` gives the value) in the page.
    pub fn eval(&self, script: &str) -> Result<Value, String> {
        self.command(
            "POST",
            &self.session_path("/execute/sync"),
            Some(json!({ "script": script, "args": [] })),
        )
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Result<Vec<u8>, String> {
        let value = self.command("GET", &self.session_path("/screenshot"), None)?;
        base64_decode(value.as_str().ok_or("screenshot is not a string")?)
            .ok_or_else(|| "screenshot is not base64".to_owned())
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        if !self.session.is_empty() {
            let _ = self.command("DELETE", &self.session_path(""), None);
        }
        drop(self.driver.take());
        kill_processes_mentioning(&self.profile);
        let _ = std::fs::remove_dir_all(&self.profile);
    }
}

/// Kills (by pid) every process whose command line holds `dir`: Chromium's processes for a
/// profile directory no other process uses.
fn kill_processes_mentioning(dir: &Path) {
    let needle = dir.display().to_string();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
    }
}

/// Standard base64 (with padding) to bytes.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(c: u8) -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    }
    let clean: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(clean.len() / 4 * 3);
    for quad in clean.chunks(4) {
        let digits: Vec<u32> = quad
            .iter()
            .take_while(|&&c| c != b'=')
            .map(|&c| value(c))
            .collect::<Option<_>>()?;
        let n = digits
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, d)| acc | d << (18 - 6 * i));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..digits.len().saturating_sub(1)]);
    }
    Some(out)
}

#[test]
fn base64_and_chunks() {
    assert_eq!(base64_decode("aGVsbG8=").unwrap(), b"hello");
    assert_eq!(base64_decode("aGk=").unwrap(), b"hi");
    assert_eq!(base64_decode("YWJj").unwrap(), b"abc");
    assert_eq!(
        dechunk(b"3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n").unwrap(),
        b"abcde"
    );
}
