//! Finding Erlang/OTP and compiling Erlang modules for a test.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Once, OnceLock};
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

/// The environment variable that picks the Erlang/OTP release the interop tests run against:
/// a directory holding that release's `erl`, `erlc`, `epmd`, `erl_call` and, where present,
/// `elixir` (for example `/opt/otp-29/bin`, as `.ci/install-otp 29` makes it). Unset, the
/// tools come from `PATH`.
pub const OTP_ENV: &str = "TESTKIT_OTP";

/// An Erlang/OTP or Elixir tool (`erl`, `erlc`, `epmd`, `erl_call`, `elixir`, ...) of the
/// release the tests run against: from the directory in [`OTP_ENV`] when it is set, else the
/// first on `PATH`.
///
/// # Panics
/// When [`OTP_ENV`] is set but names no directory with an `erl` in it: a misspelt release
/// must not quietly test another one.
pub fn find_otp_tool(name: &str) -> Option<PathBuf> {
    match env::var_os(OTP_ENV).filter(|dir| !dir.is_empty()) {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            assert!(
                is_executable(&dir.join("erl")),
                "testkit: {OTP_ENV}={} has no executable `erl`; point it at an Erlang/OTP \
                 release's bin directory (for example /opt/otp-29/bin, see .ci/install-otp)",
                dir.display()
            );
            Some(dir.join(name)).filter(|tool| is_executable(tool))
        }
        None => find_executable(name),
    }
}

/// Whether the tests run in CI, where a missing tool is a failure rather than a skip.
pub fn in_ci() -> bool {
    env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Finds `erl` of the release under test (see [`find_otp_tool`]) for a test that needs a real
/// Erlang node.
///
/// Without `erl`, a test on a developer machine is skipped: this prints a notice to stderr and
/// returns `None`, and the test should return early. In CI (`CI=true`) interop tests must fail
/// rather than pass by skipping, so there this panics.
///
/// # Panics
/// When `erl` is missing and `CI` is `true`.
pub fn require_erl() -> Option<PathBuf> {
    require_otp_tool(
        "erl",
        "Erlang/OTP",
        "apt-get install erlang-base erlang-ssl",
    )
}

/// Finds `elixir` of the release under test (see [`find_otp_tool`]), deciding as
/// [`require_erl`] does what a test does without it.
///
/// # Panics
/// When `elixir` is missing and `CI` is `true`.
pub fn require_elixir() -> Option<PathBuf> {
    require_erl()?;
    require_otp_tool("elixir", "Elixir", "apt-get install elixir")
}

fn require_otp_tool(name: &str, what: &str, install: &str) -> Option<PathBuf> {
    let place = match env::var_os(OTP_ENV) {
        Some(dir) if !dir.is_empty() => format!("in {OTP_ENV}={}", dir.to_string_lossy()),
        _ => "on PATH".to_owned(),
    };
    match find_otp_tool(name) {
        Some(tool) => Some(tool),
        None if in_ci() => panic!(
            "testkit: `{name}` ({what}) is not {place}, and CI=true: interop tests must not be \
             skipped in CI. Install it (`{install}`, or .ci/install-otp) in the CI setup."
        ),
        None => {
            eprintln!(
                "testkit: SKIPPED: `{name}` ({what}) is not {place}; install it to run the \
                 interop tests (in CI, with CI=true, this is a failure)"
            );
            None
        }
    }
}

/// The release (`"25"`, `"29"`, ...) of the `erl` the tests run against, asked of `erl` itself
/// once per test process; `None` without `erl`.
///
/// # Panics
/// When `erl` is there but does not answer within two minutes.
pub fn otp_release() -> Option<u32> {
    static RELEASE: OnceLock<Option<u32>> = OnceLock::new();
    *RELEASE.get_or_init(|| {
        let erl = find_otp_tool("erl")?;
        let output = output_within(
            Command::new(&erl).args([
                "-noshell",
                "-eval",
                "io:put_chars(erlang:system_info(otp_release)), halt().",
            ]),
            COMPILE_TIMEOUT,
        )
        .unwrap_or_else(|e| panic!("testkit: cannot run {}: {e}", erl.display()));
        let text = String::from_utf8_lossy(&output.stdout);
        Some(
            text.trim().parse().unwrap_or_else(|_| {
                panic!("testkit: {} printed no release: {text:?}", erl.display())
            }),
        )
    })
}

/// Finds `erlc`: next to the `erl` under test (the two come together), else as
/// [`find_otp_tool`] finds it.
pub fn find_erlc() -> Option<PathBuf> {
    let beside_erl = find_otp_tool("erl")
        .and_then(|erl| fs::canonicalize(erl).ok())
        .and_then(|erl| erl.parent().map(|dir| dir.join("erlc")))
        .filter(|erlc| is_executable(erlc));
    beside_erl.or_else(|| find_otp_tool("erlc"))
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
