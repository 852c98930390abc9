//! Compile errors for misuse of the derive macros, with their spans (trybuild snapshots in
//! `tests/ui`; regenerate with `TRYBUILD=overwrite` and review them).
//!
//! trybuild builds the cases with cargo and writes its progress straight to the terminal,
//! past the test harness's capture: so the test runs itself again as a child process with
//! [`CHILD`] set, keeps that output, and shows it only when the cases fail.

use std::process::Command;
use std::time::Duration;

/// Set in the child process that runs the cases.
const CHILD: &str = "NODE_SERVER_DERIVE_UI_CHILD";

#[test]
fn derive_misuse_is_a_compile_error() {
    if std::env::var_os(CHILD).is_some() {
        trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
        return;
    }
    let exe = std::env::current_exe().expect("the test binary's path");
    let out = testkit::output_within(
        Command::new(exe)
            .args([
                "--exact",
                "derive_misuse_is_a_compile_error",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1"),
        Duration::from_secs(900),
    )
    .expect("the derive_ui test runs as a child process");
    assert!(
        out.status.success(),
        "trybuild cases failed ({}):\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
