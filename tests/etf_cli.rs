//! The `etf` example as a user runs it: bytes in, Erlang text out, and back.

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};

/// The example binary, built by `cargo test` beside the test executables.
fn etf_example() -> PathBuf {
    testkit::example_exe("etf")
}

fn run(mode: &str, input: &[u8]) -> (bool, Vec<u8>, String) {
    let mut child = Command::new(etf_example())
        .arg(mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the etf example is built by cargo test");
    child.stdin.take().unwrap().write_all(input).unwrap();
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn fmt_prints_erlang_syntax() {
    // term_to_binary({ok, 256, <<"a">>, [1|2]}) as OTP 25 writes it.
    let bytes = [
        131, 104, 4, 100, 0, 2, 111, 107, 98, 0, 0, 1, 0, 109, 0, 0, 0, 1, 97, 108, 0, 0, 0, 1, 97,
        1, 97, 2,
    ];
    let (ok, out, err) = run("fmt", &bytes);
    assert!(ok, "{err}");
    assert_eq!(String::from_utf8(out).unwrap(), "{ok,256,<<97>>,[1|2]}\n");
}

#[test]
fn parse_writes_etf() {
    let (ok, out, err) = run("parse", b"{ok, [1|2], 'A b'}.\n");
    assert!(ok, "{err}");
    assert_eq!(
        out,
        [131, 104, 3, 119, 2, 111, 107, 108, 0, 0, 0, 1, 97, 1, 97, 2, 119, 3, 65, 32, 98]
    );
}

#[test]
fn errors_go_to_stderr_with_failure() {
    let (ok, out, err) = run("fmt", &[131, 255]);
    assert!(!ok);
    assert!(out.is_empty());
    assert!(err.contains("unknown term tag 255"), "{err}");

    let (ok, _, err) = run("parse", b"{ok, ");
    assert!(!ok);
    assert!(err.contains("line 1"), "{err}");

    let (ok, _, _) = run("bogus", b"");
    assert!(!ok);
}

/// `--help` and a missing or wrong mode answer at once, without reading stdin: the child's
/// stdin stays open (as a terminal would), so a read would hang past the time limit.
#[test]
fn help_and_usage_do_not_wait_for_stdin() {
    for (args, code, stream_has_usage) in [
        (&["--help"][..], 0, "stdout"),
        (&[][..], 2, "stderr"),
        (&["bogus"][..], 2, "stderr"),
    ] {
        let mut cmd = Command::new(etf_example());
        cmd.args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = testkit::ChildGuard::spawn(&mut cmd, "etf").expect("etf starts");
        let stdin = child.child_mut().stdin.take();
        let status = child
            .wait_timeout(std::time::Duration::from_secs(30))
            .expect("etf can be waited for")
            .unwrap_or_else(|| panic!("etf {args:?} did not exit at once"));
        drop(stdin);
        assert_eq!(status.code(), Some(code), "etf {args:?}");
        let mut text = String::new();
        if stream_has_usage == "stdout" {
            child
                .child_mut()
                .stdout
                .take()
                .unwrap()
                .read_to_string(&mut text)
        } else {
            child
                .child_mut()
                .stderr
                .take()
                .unwrap()
                .read_to_string(&mut text)
        }
        .expect("output reads");
        assert!(
            text.contains("usage: etf fmt|parse"),
            "etf {args:?}: {text}"
        );
    }
}
