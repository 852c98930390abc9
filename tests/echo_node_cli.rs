//! The `echo_node` example's command line as a user meets it: `--help` lists every option, a
//! wrong argument says how to get help, and a `--connect` that fails (a bare name completed
//! with this host's short name, nobody there) is reported while the node runs on, and
//! `--metrics 127.0.0.1:0` prints where it serves `/metrics`, which answers.

use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use testkit::{ChildGuard, Epmd};

const LIMIT: Duration = Duration::from_secs(30);

/// The example binary, built by `cargo test` beside the test executables.
fn echo_node_exe() -> PathBuf {
    testkit::example_exe("echo_node")
}

fn run_to_end(args: &[&str]) -> (Option<i32>, String, String) {
    let out = testkit::output_within(Command::new(echo_node_exe()).args(args), LIMIT)
        .expect("echo_node runs");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_lists_every_option_and_a_wrong_argument_points_at_it() {
    let (code, out, _) = run_to_end(&["--help"]);
    assert_eq!(code, Some(0));
    for option in [
        "--name",
        "--cookie",
        "--hidden",
        "--visible",
        "--connect",
        "--global",
        "--roles",
        "--phoenix-pubsub",
        "--tls-cert",
        "--tls-key",
        "--tls-ca",
        "--metrics",
        "ERL_EPMD_PORT",
    ] {
        assert!(out.contains(option), "--help lacks {option}:\n{out}");
    }
    let (code, _, err) = run_to_end(&["--bogus"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("unknown argument --bogus") && err.contains("--help"),
        "{err}"
    );
    let (code, _, err) = run_to_end(&["--tls-cert", "x.pem"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--tls-key"), "{err}");
    let (code, _, err) = run_to_end(&["--metrics", "localhost"]);
    assert_eq!(code, Some(2));
    assert!(
        err.contains("--metrics \"localhost\" is not an address") && err.contains("IP:PORT"),
        "{err}"
    );
    let (code, _, err) = run_to_end(&["--metrics"]);
    assert_eq!(code, Some(2));
    assert!(err.contains("--metrics needs a value"), "{err}");
}

/// `GET path` on `addr` with a plain TCP stream: the whole response.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect(addr).expect("the metrics listener answers");
    stream.set_read_timeout(Some(LIMIT)).expect("timeout");
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

#[test]
fn a_failed_connect_is_reported_and_the_node_runs_on() {
    let epmd = Epmd::start();
    let name = format!("echo_cli_{}", std::process::id());
    let mut cmd = Command::new(echo_node_exe());
    cmd.args(["--name", &name, "--cookie", "echo_cli_cookie"])
        .args(["--connect", "nosuch_node_here"])
        .args(["--metrics", "127.0.0.1:0"])
        .env("ERL_EPMD_PORT", epmd.port().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = ChildGuard::spawn(&mut cmd, "echo_node").expect("echo_node starts");
    let stdout = child.child_mut().stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            let _ = tx.send(line);
        }
    });
    let ready = rx
        .recv_timeout(LIMIT)
        .expect("echo_node prints ready although its --connect failed");
    assert!(ready.starts_with(&format!("ready {name}@")), "{ready}");
    let metrics = rx.recv_timeout(LIMIT).expect("the metrics line");
    let addr = metrics
        .strip_prefix("metrics http://")
        .and_then(|m| m.strip_suffix("/metrics"))
        .unwrap_or_else(|| panic!("not a metrics line: {metrics}"));
    assert!(!addr.ends_with(":0"), "the bound port is printed: {addr}");
    let scrape = http_get(addr, "/metrics");
    assert!(scrape.starts_with("HTTP/1.1 200 OK\r\n"), "{scrape}");
    assert!(scrape.contains("\nnode_actors "), "{scrape}");
    assert_eq!(child.try_wait().expect("wait"), None, "echo_node exited");
    child.kill().expect("echo_node stops");
    let mut err = String::new();
    child
        .child_mut()
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut err)
        .expect("stderr reads");
    let host = node_server::config::full_node_name("x");
    let host = host.split('@').nth(1).expect("a host");
    assert!(
        err.contains(&format!("cannot connect to nosuch_node_here@{host}")),
        "{err}"
    );
}
