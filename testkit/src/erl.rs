//! Finding Erlang/OTP and compiling Erlang modules for a test.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

use crate::child::output_within;

/// How long `erlc` may take to compile one module.
const COMPILE_TIMEOUT: Duration = Duration::from_secs(120);

/// The first file named `name` on `PATH` that is executable.
pub fn find_executable(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

#[cfg(unix)]
fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(path).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(path: &Path) -> bool {
    path.is_file()
}

/// Whether the tests run in CI, where a missing tool is a failure rather than a skip.
fn in_ci() -> bool {
    env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Finds `erl` on `PATH` for a test that needs a real Erlang node.
///
/// Without `erl`, a test on a developer machine is skipped: this prints a notice to stderr and
/// returns `None`, and the test should return early. In CI (`CI=true`) interop tests must fail
/// rather than pass by skipping, so there this panics.
///
/// # Panics
/// When `erl` is missing and `CI` is `true`.
pub fn require_erl() -> Option<PathBuf> {
    match find_executable("erl") {
        Some(erl) => Some(erl),
        None if in_ci() => panic!(
            "testkit: `erl` (Erlang/OTP) is not on PATH, and CI=true: interop tests must not be \
             skipped in CI. Install Erlang/OTP (e.g. `apt-get install erlang-nox`) in the CI setup."
        ),
        None => {
            eprintln!(
                "testkit: SKIPPED: `erl` (Erlang/OTP) is not on PATH; install it to run the \
                 interop tests (in CI, with CI=true, this is a failure)"
            );
            None
        }
    }
}

/// Finds `erlc`: next to the `erl` found on `PATH` (the two come together), else on `PATH`.
pub fn find_erlc() -> Option<PathBuf> {
    let beside_erl = find_executable("erl")
        .and_then(|erl| fs::canonicalize(erl).ok())
        .and_then(|erl| erl.parent().map(|dir| dir.join("erlc")))
        .filter(|erlc| is_executable(erlc));
    beside_erl.or_else(|| find_executable("erlc"))
}

/// A new, empty directory under the system's temp dir, unique to this process and call.
///
/// The name holds the process id and a counter. Directories that earlier test processes left
/// behind are removed (once per process, best effort, where `/proc` tells which processes are
/// gone).
///
/// # Panics
/// When the directory cannot be created.
pub fn unique_temp_dir(label: &str) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static CLEANUP: Once = Once::new();
    CLEANUP.call_once(remove_stale_temp_dirs);

    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let dir = env::temp_dir().join(format!(
        "{TEMP_PREFIX}{}-{n}-{}",
        std::process::id(),
        sanitize(label)
    ));
    // A directory of this name can only be left from an earlier process with the same pid.
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("testkit: cannot create {}: {e}", dir.display()));
    dir
}

const TEMP_PREFIX: &str = "testkit-";

fn sanitize(label: &str) -> String {
    label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// Removes `testkit-PID-...` directories whose process no longer exists.
fn remove_stale_temp_dirs() {
    let proc_dir = Path::new("/proc");
    if !proc_dir.join("self").exists() {
        return;
    }
    let Ok(entries) = fs::read_dir(env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(TEMP_PREFIX))
            .and_then(|rest| rest.split('-').next())
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if pid != std::process::id() && !proc_dir.join(pid.to_string()).exists() {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Compiles the Erlang module `src` with `erlc` into a new directory and returns the directory,
/// to be given to `erl -pa`.
///
/// Each call compiles into its own directory (see [`unique_temp_dir`]), so tests running in
/// parallel never share or overwrite `.beam` files.
///
/// # Panics
/// When `erlc` cannot be found or run, takes more than two minutes, or the module does not
/// compile; the message holds `erlc`'s output.
pub fn compile_erlang(src: &Path) -> PathBuf {
    let erlc = find_erlc().unwrap_or_else(|| {
        panic!(
            "testkit: `erlc` (Erlang/OTP) is not on PATH; cannot compile {}",
            src.display()
        )
    });
    let stem = src.file_stem().and_then(|s| s.to_str()).unwrap_or("erlang");
    let out_dir = unique_temp_dir(stem);
    let output = output_within(
        Command::new(&erlc).arg("-o").arg(&out_dir).arg(src),
        COMPILE_TIMEOUT,
    )
    .unwrap_or_else(|e| panic!("testkit: cannot run {}: {e}", erlc.display()));
    if !output.status.success() {
        panic!(
            "testkit: `erlc {}` failed ({}):\n{}{}",
            src.display(),
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    out_dir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_dirs_are_unique_and_empty() {
        let a = unique_temp_dir("x/y");
        let b = unique_temp_dir("x/y");
        assert_ne!(a, b);
        assert!(a.is_dir() && b.is_dir());
        assert_eq!(fs::read_dir(&a).unwrap().count(), 0);
        fs::remove_dir_all(a).unwrap();
        fs::remove_dir_all(b).unwrap();
    }
}
