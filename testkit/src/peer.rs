//! [`ErlPeer`]: an Erlang function driven over stdin and stdout, one line at a time.

use std::ffi::OsString;
use std::fmt;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use crate::child::ChildGuard;

/// How long [`ErlPeer::recv_line`] waits for a reply unless told otherwise.
pub const DEFAULT_REPLY_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of the peer's stderr is kept (the end of it).
const STDERR_KEEP: usize = 64 * 1024;

/// Sends the default logger's reports to stderr, where [`ErlPeer`] collects them, instead of
/// stdout, where they would break the line protocol.
const LOGGER_TO_STDERR: &str =
    "[{handler,default,logger_std_h,#{config => #{type => standard_error}}}]";

/// Why no reply line came.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PeerError {
    /// No line came within the timeout.
    Timeout(Duration),
    /// The peer closed its stdout (it ended or crashed).
    Closed,
    /// Reading the peer's stdout failed.
    Io(String),
}

impl fmt::Display for PeerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerError::Timeout(d) => write!(f, "no reply within {d:?}"),
            PeerError::Closed => f.write_str("the peer closed its stdout"),
            PeerError::Io(e) => write!(f, "reading the peer's stdout failed: {e}"),
        }
    }
}

impl std::error::Error for PeerError {}

/// Settings for starting an [`ErlPeer`]; made by [`ErlPeer::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct ErlPeerBuilder {
    erl: PathBuf,
    module: String,
    function: String,
    run_args: Vec<String>,
    code_paths: Vec<PathBuf>,
    args: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    reply_timeout: Duration,
}

impl ErlPeerBuilder {
    /// The function to run (default `main`).
    ///
    /// Without [`run_arg`](Self::run_arg)s it is called with no arguments (`Module:Function()`);
    /// with them, with one list of strings (`Module:Function(["a", "b"])`), as `erl -run` does.
    pub fn function(mut self, function: impl Into<String>) -> Self {
        self.function = function.into();
        self
    }

    /// Adds a string argument for the function (see [`function`](Self::function)). It must not
    /// start with `-`, which `erl` would read as a flag of its own.
    pub fn run_arg(mut self, arg: impl Into<String>) -> Self {
        self.run_args.push(arg.into());
        self
    }

    /// Adds a directory to the code path (`-pa`), e.g. one from [`crate::compile_erlang`].
    pub fn code_path(mut self, dir: impl AsRef<Path>) -> Self {
        self.code_paths.push(dir.as_ref().to_path_buf());
        self
    }

    /// Adds an argument for `erl` itself, e.g. `-sname` and a name, or `-setcookie` and a
    /// cookie. Arguments go before the `-run` that starts the function.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Adds several arguments for `erl` itself (see [`arg`](Self::arg)).
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets an environment variable for the node, e.g. `ERL_EPMD_PORT`.
    pub fn env(mut self, key: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }

    /// How long [`ErlPeer::recv_line`] waits for each reply (default 30 s).
    pub fn reply_timeout(mut self, timeout: Duration) -> Self {
        self.reply_timeout = timeout;
        self
    }

    /// The command that [`start`](Self::start) runs.
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.erl);
        // -noshell (not -noinput): no Erlang shell, but stdin stays readable by io:get_line/2.
        cmd.arg("-noshell");
        cmd.arg("-kernel").arg("logger").arg(LOGGER_TO_STDERR);
        for dir in &self.code_paths {
            cmd.arg("-pa").arg(dir);
        }
        cmd.args(&self.args);
        cmd.arg("-run").arg(&self.module).arg(&self.function);
        cmd.args(&self.run_args);
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts the node. It runs until the [`ErlPeer`] is dropped, which kills it.
    pub fn start(self) -> io::Result<ErlPeer> {
        let label = format!("erl running {}:{}", self.module, self.function);
        let mut guard = ChildGuard::spawn(&mut self.command(), label)?;
        let child = guard.child_mut();
        let (Some(stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(io::Error::other("erl started without piped stdio"));
        };

        let stderr_buf = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&stderr_buf);
        thread::Builder::new()
            .name("erl-peer-stderr".into())
            .spawn(move || collect_stderr(stderr, &sink))?;

        let (line_tx, lines) = mpsc::channel();
        thread::Builder::new()
            .name("erl-peer-stdout".into())
            .spawn(move || read_lines(stdout, &line_tx))?;

        let (outbox, outbox_rx) = mpsc::channel::<String>();
        let write_error = Arc::new(Mutex::new(None));
        let write_error_sink = Arc::clone(&write_error);
        thread::Builder::new()
            .name("erl-peer-stdin".into())
            .spawn(move || write_lines(stdin, &outbox_rx, &write_error_sink))?;

        Ok(ErlPeer {
            outbox: Some(outbox),
            lines,
            stderr: stderr_buf,
            write_error,
            reply_timeout: self.reply_timeout,
            guard,
        })
    }
}

/// Appends what `stderr` yields to `sink`, keeping its last [`STDERR_KEEP`] bytes.
fn collect_stderr(mut stderr: impl Read, sink: &Mutex<Vec<u8>>) {
    let mut chunk = [0u8; 4096];
    loop {
        match stderr.read(&mut chunk) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                let mut buf = sink.lock().unwrap_or_else(|p| p.into_inner());
                buf.extend_from_slice(&chunk[..n]);
                if buf.len() > STDERR_KEEP {
                    let excess = buf.len() - STDERR_KEEP;
                    buf.drain(..excess);
                }
            }
        }
    }
}

/// Sends each line of `stdout` (without its line ending) to `tx` until end of file.
fn read_lines(stdout: impl Read, tx: &Sender<Result<String, String>>) {
    let mut reader = BufReader::new(stdout);
    let mut raw = Vec::new();
    loop {
        raw.clear();
        match reader.read_until(b'\n', &mut raw) {
            Ok(0) => return,
            Ok(_) => {
                while raw.last().is_some_and(|&b| b == b'\n' || b == b'\r') {
                    raw.pop();
                }
                let line = String::from_utf8_lossy(&raw).into_owned();
                if tx.send(Ok(line)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = tx.send(Err(e.to_string()));
                return;
            }
        }
    }
}

/// Writes each line from `rx` to `stdin`, until `rx` closes or a write fails.
fn write_lines(mut stdin: impl Write, rx: &Receiver<String>, error: &Mutex<Option<String>>) {
    for line in rx {
        let result = stdin
            .write_all(line.as_bytes())
            .and_then(|()| stdin.write_all(b"\n"))
            .and_then(|()| stdin.flush());
        if let Err(e) = result {
            *error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
            return;
        }
    }
}

/// An Erlang node running one function that speaks a line protocol on stdin and stdout.
///
/// The node is `erl -noshell [-pa DIR]... [ARGS]... -run MODULE FUNCTION [RUN_ARGS]...`, with
/// the default logger moved to stderr so that stdout carries nothing but the protocol. Lines
/// are written by a background thread and read by another, so neither a peer that stops
/// reading nor one that stops answering can hang a test: [`recv_line`](Self::recv_line) waits
/// at most the reply timeout and then panics with the peer's stderr.
///
/// Dropping the peer kills the node (see [`ChildGuard`]).
#[derive(Debug)]
pub struct ErlPeer {
    // Declared first so it drops first: closing stdin lets a well-behaved peer see EOF.
    outbox: Option<Sender<String>>,
    lines: Receiver<Result<String, String>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    write_error: Arc<Mutex<Option<String>>>,
    reply_timeout: Duration,
    guard: ChildGuard,
}

impl ErlPeer {
    /// Settings for a peer that runs `module`'s `main` with the `erl` at `erl` (see
    /// [`crate::require_erl`]).
    pub fn builder(erl: impl Into<PathBuf>, module: impl Into<String>) -> ErlPeerBuilder {
        ErlPeerBuilder {
            erl: erl.into(),
            module: module.into(),
            function: "main".into(),
            run_args: Vec::new(),
            code_paths: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            reply_timeout: DEFAULT_REPLY_TIMEOUT,
        }
    }

    /// The operating system's process id of the node.
    pub fn os_pid(&self) -> u32 {
        self.guard.id()
    }

    /// How long [`recv_line`](Self::recv_line) waits.
    pub fn reply_timeout(&self) -> Duration {
        self.reply_timeout
    }

    /// Changes how long [`recv_line`](Self::recv_line) waits.
    pub fn set_reply_timeout(&mut self, timeout: Duration) {
        self.reply_timeout = timeout;
    }

    /// Queues `line` for the peer's stdin; a newline is added. Never blocks.
    ///
    /// # Panics
    /// When `line` holds a line break, which would split it in two.
    pub fn send_line(&mut self, line: &str) {
        assert!(
            !line.contains(['\n', '\r']),
            "testkit: a protocol line must not contain a line break: {}",
            crate::truncate(line, 200)
        );
        if let Some(outbox) = &self.outbox {
            // A failed send means the writer stopped on an error; recv_line will report it.
            let _ = outbox.send(line.to_owned());
        }
    }

    /// The next line from the peer's stdout, or why none came within `timeout`.
    pub fn try_recv_line(&mut self, timeout: Duration) -> Result<String, PeerError> {
        match self.lines.recv_timeout(timeout) {
            Ok(Ok(line)) => Ok(line),
            Ok(Err(e)) => Err(PeerError::Io(e)),
            Err(RecvTimeoutError::Timeout) => Err(PeerError::Timeout(timeout)),
            Err(RecvTimeoutError::Disconnected) => Err(PeerError::Closed),
        }
    }

    /// The next line from the peer's stdout, waiting at most the reply timeout.
    ///
    /// # Panics
    /// When no line comes in time or the peer has closed its stdout; the message holds the
    /// peer's exit status and stderr.
    pub fn recv_line(&mut self) -> String {
        match self.try_recv_line(self.reply_timeout) {
            Ok(line) => line,
            Err(e) => panic!("testkit: {}: {e}\n{}", self.label(), self.diagnostics()),
        }
    }

    /// Sends `line` and returns the reply line (see [`recv_line`](Self::recv_line)).
    pub fn request(&mut self, line: &str) -> String {
        self.send_line(line);
        self.recv_line()
    }

    /// What the peer has written to stderr so far (its last 64 KiB), lossily as UTF-8.
    pub fn stderr_output(&self) -> String {
        let buf = self.stderr.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(&buf).into_owned()
    }

    /// The exit status if the node has ended, without waiting.
    pub fn try_wait(&mut self) -> Option<ExitStatus> {
        self.guard.try_wait().ok().flatten()
    }

    /// Closes the peer's stdin and waits up to `timeout` for the node to end by itself; kills
    /// it if it does not. Returns its exit status.
    pub fn shutdown(mut self, timeout: Duration) -> io::Result<ExitStatus> {
        self.outbox = None;
        match self.guard.wait_timeout(timeout)? {
            Some(status) => Ok(status),
            None => self.guard.kill(),
        }
    }

    /// A report for failure messages: whether the node still runs, a write error if any, and
    /// its stderr.
    pub fn diagnostics(&mut self) -> String {
        let state = match self.guard.try_wait() {
            Ok(Some(status)) => format!("the node has exited: {status}"),
            Ok(None) => "the node is still running".to_owned(),
            Err(e) => format!("the node's state is unknown: {e}"),
        };
        let write_error = self
            .write_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .map(|e| format!("; writing to its stdin failed: {e}"))
            .unwrap_or_default();
        let stderr = self.stderr_output();
        let stderr = if stderr.trim().is_empty() {
            "(empty)".to_owned()
        } else {
            stderr
        };
        format!("{state}{write_error}\n--- stderr of the node ---\n{stderr}\n--- end of stderr ---")
    }

    fn label(&self) -> String {
        format!("{} (pid {})", self.guard.label(), self.guard.id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECHO: &str = r#"
-module(testkit_echo).
-export([main/0, main/1]).
main() -> main([]).
main(Args) ->
    ok = io:setopts(standard_io, [binary]),
    loop(Args).
loop(Args) ->
    case io:get_line(standard_io, "") of
        eof -> erlang:halt(0);
        Line ->
            case string:trim(Line, trailing, "\n") of
                <<"args">> -> io:put_chars([lists:join(",", Args), $\n]), loop(Args);
                <<"env">> -> io:put_chars([os:getenv("TESTKIT_ECHO", "unset"), $\n]), loop(Args);
                <<"hang">> -> loop(Args);
                <<"die">> -> io:format(standard_error, "dying on request~n", []), erlang:halt(3);
                Other -> io:put_chars([<<"echo ">>, Other, $\n]), loop(Args)
            end
    end.
"#;

    fn echo_peer(configure: impl FnOnce(ErlPeerBuilder) -> ErlPeerBuilder) -> Option<ErlPeer> {
        let erl = crate::require_erl()?;
        let src_dir = crate::unique_temp_dir("echo_src");
        let src = src_dir.join("testkit_echo.erl");
        std::fs::write(&src, ECHO).unwrap();
        let beam_dir = crate::compile_erlang(&src);
        let builder = ErlPeer::builder(erl, "testkit_echo")
            .code_path(&beam_dir)
            .reply_timeout(Duration::from_secs(30));
        let peer = configure(builder).start().expect("erl starts");
        let _ = std::fs::remove_dir_all(src_dir);
        Some(peer)
    }

    #[test]
    fn echoes_lines_and_passes_args_and_env() {
        let Some(mut peer) =
            echo_peer(|b| b.run_arg("one").run_arg("two").env("TESTKIT_ECHO", "set"))
        else {
            return;
        };
        assert_eq!(peer.request("hello world"), "echo hello world");
        assert_eq!(peer.request("args"), "one,two");
        assert_eq!(peer.request("env"), "set");
        let status = peer.shutdown(Duration::from_secs(30)).unwrap();
        assert!(status.success(), "{status}");
    }

    #[test]
    fn a_silent_peer_times_out() {
        let Some(mut peer) = echo_peer(|b| b) else {
            return;
        };
        peer.send_line("hang");
        assert_eq!(
            peer.try_recv_line(Duration::from_millis(300)),
            Err(PeerError::Timeout(Duration::from_millis(300)))
        );
        // It still answers afterwards.
        assert_eq!(peer.request("x"), "echo x");
    }

    #[test]
    fn a_dead_peer_is_reported_with_its_stderr() {
        let Some(mut peer) = echo_peer(|b| b) else {
            return;
        };
        peer.send_line("die");
        assert_eq!(
            peer.try_recv_line(Duration::from_secs(30)),
            Err(PeerError::Closed)
        );
        let report = peer.diagnostics();
        assert!(report.contains("dying on request"), "{report}");
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| peer.recv_line()))
            .expect_err("recv_line panics on a closed peer");
        let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
        assert!(message.contains("dying on request"), "{message}");
    }
}
