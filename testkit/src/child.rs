//! [`ChildGuard`]: a child process that dies with its owner.

use std::io::{self, Read};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::thread;
use std::time::{Duration, Instant};

/// Owns a child process and kills and reaps it when dropped.
///
/// `std::process::Child` lets a process run on after its handle is dropped; a test that panics
/// would leave its `erl` nodes behind. Wrapping the child in a `ChildGuard` right after spawning
/// it ties the process's life to the guard's, panics and early returns included.
#[derive(Debug)]
pub struct ChildGuard {
    child: Child,
    label: String,
}

impl ChildGuard {
    /// Guards an already spawned child. `label` names it in messages.
    pub fn new(child: Child, label: impl Into<String>) -> ChildGuard {
        ChildGuard {
            child,
            label: label.into(),
        }
    }

    /// Spawns `command` and guards the child. `label` names it in messages.
    pub fn spawn(command: &mut Command, label: impl Into<String>) -> io::Result<ChildGuard> {
        let label = label.into();
        let child = command.spawn().map_err(|e| {
            io::Error::new(e.kind(), format!("cannot start {label} ({command:?}): {e}"))
        })?;
        Ok(ChildGuard::new(child, label))
    }

    /// The name given to the child.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The operating system's process id of the child.
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// The child itself, to take its pipes or signal it.
    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// The exit status if the child has ended, without waiting.
    pub fn try_wait(&mut self) -> io::Result<Option<ExitStatus>> {
        self.child.try_wait()
    }

    /// Waits up to `timeout` for the child to end by itself; `None` if it still runs then.
    pub fn wait_timeout(&mut self, timeout: Duration) -> io::Result<Option<ExitStatus>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(Some(status));
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(None);
            }
            thread::sleep((deadline - now).min(Duration::from_millis(20)));
        }
    }

    /// Kills the child (if it still runs) and reaps it, returning how it ended.
    pub fn kill(&mut self) -> io::Result<ExitStatus> {
        if let Some(status) = self.child.try_wait()? {
            return Ok(status);
        }
        // The child may end between the check and the kill; waiting below settles it either way.
        let _ = self.child.kill();
        self.child.wait()
    }
}

impl Drop for ChildGuard {
    fn drop(&mut self) {
        if let Err(e) = self.kill() {
            eprintln!(
                "testkit: could not kill {} (pid {}): {e}",
                self.label,
                self.child.id()
            );
        }
    }
}

/// Runs `command` to completion like [`Command::output`], but for at most `timeout`: a command
/// still running then is killed and this returns an error of kind
/// [`io::ErrorKind::TimedOut`]. Stdin is closed; stdout and stderr are collected.
pub fn output_within(command: &mut Command, timeout: Duration) -> io::Result<Output> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let label = format!("{command:?}");
    let mut guard = ChildGuard::spawn(command, label)?;
    let child = guard.child_mut();
    let stdout = child.stdout.take().map(drain);
    let stderr = child.stderr.take().map(drain);
    let Some(status) = guard.wait_timeout(timeout)? else {
        return Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{} still ran after {timeout:?}; killed it", guard.label()),
        ));
    };
    let collect = |reader: Option<thread::JoinHandle<Vec<u8>>>| {
        reader
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default()
    };
    Ok(Output {
        status,
        stdout: collect(stdout),
        stderr: collect(stderr),
    })
}

/// Reads `pipe` to its end on a thread of its own.
fn drain(mut pipe: impl Read + Send + 'static) -> thread::JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = pipe.read_to_end(&mut buf);
        buf
    })
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn drop_kills_the_child() {
        let guard = ChildGuard::spawn(Command::new("sleep").arg("60"), "sleep").unwrap();
        let pid = guard.id();
        drop(guard);
        // Reaped, so the pid no longer names a process (unless the system reused it already).
        let alive = Command::new("kill")
            .arg("-0")
            .arg(pid.to_string())
            .output()
            .is_ok_and(|out| out.status.success());
        assert!(!alive, "pid {pid} still runs");
    }

    #[test]
    fn output_within_collects_or_times_out() {
        let out = output_within(
            Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]),
            Duration::from_secs(30),
        )
        .unwrap();
        assert_eq!(out.status.code(), Some(3));
        assert_eq!(out.stdout, b"out\n");
        assert_eq!(out.stderr, b"err\n");
        let slow = output_within(Command::new("sleep").arg("60"), Duration::from_millis(200));
        assert_eq!(slow.unwrap_err().kind(), io::ErrorKind::TimedOut);
    }

    #[test]
    fn wait_timeout_sees_an_exit() {
        let mut guard = ChildGuard::spawn(&mut Command::new("true"), "true").unwrap();
        let status = guard.wait_timeout(Duration::from_secs(10)).unwrap();
        assert!(status.is_some_and(|s| s.success()));
    }
}

/// Starts `command` (its stdout piped) under a [`ChildGuard`] labelled `label`, and waits up
/// to `limit` for the line `ready NAME ...` that the project's node programs print once
/// running (`echo_node`); returns the guard and `NAME`. The rest of stdout is read and
/// dropped, so the program never blocks on it.
///
/// # Panics
/// When the program does not start or prints no such line in time.
pub fn spawn_ready(command: &mut Command, label: &str, limit: Duration) -> (ChildGuard, String) {
    use std::io::BufRead;
    command.stdout(Stdio::piped());
    let mut child =
        ChildGuard::spawn(command, label).unwrap_or_else(|e| panic!("{label} starts: {e}"));
    let stdout = child.child_mut().stdout.take().expect("stdout is piped");
    let (tx, rx) = std::sync::mpsc::channel();
    thread::spawn(move || {
        for line in io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if let Some(name) = line
                .strip_prefix("ready ")
                .and_then(|r| r.split_whitespace().next())
            {
                let _ = tx.send(name.to_owned());
            }
        }
    });
    let name = rx
        .recv_timeout(limit)
        .unwrap_or_else(|_| panic!("{label} did not print ready within {limit:?}"));
    (child, name)
}
