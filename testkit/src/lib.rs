//! Helpers for the workspace's cross-process interop tests.
//!
//! Interop tests run real Erlang/OTP nodes next to ours. This crate holds what every such test
//! needs (with `std`, plus `tokio`, `ractor` and `tracing-subscriber` for the async helpers,
//! and this workspace's `epmd`):
//!
//! - [`Epmd`] runs this workspace's EPMD daemon on a port of its own (bound to port 0, the
//!   listener kept, so no other test can take the port) until the guard is dropped;
//!   [`closed_port`] reserves a port where connections are refused; [`free_port`] only names
//!   a port that was free a moment ago, which races under parallel tests (kept for the
//!   benchmarks);
//! - [`ChildGuard`] kills and reaps a child process when dropped, so no `erl` outlives a test,
//!   not even one that panics; [`output_within`] runs a command to its end with a time limit;
//! - [`require_erl`] finds `erl`, and decides what a test does without it: skip on a developer
//!   machine, fail in CI (`CI=true`);
//! - [`compile_erlang`] compiles an Erlang module into a fresh directory for `-pa`;
//! - [`ErlPeer`] runs an Erlang function that talks a line protocol over stdin and stdout, with
//!   a bounded wait for every reply and the node's stderr kept for panic messages;
//! - [`to_hex`] and [`from_hex`] keep binary data line-safe;
//! - [`init_logging`] routes the node's logs to the test output when `RUST_LOG` is set,
//!   [`within`] bounds an awaited step, [`compile_erlang_once`] compiles a test's Erlang
//!   helpers once per test process, [`forwarder`] spawns an actor that hands what it gets to
//!   the test, [`openssl`] runs `openssl` for tests that make certificates.
//!
//! ```no_run
//! use std::path::Path;
//!
//! let Some(erl) = testkit::require_erl() else { return };
//! let beam_dir = testkit::compile_erlang(Path::new("tests/erlang/etf_peer.erl"));
//! let mut peer = testkit::ErlPeer::builder(erl, "etf_peer")
//!     .code_path(&beam_dir)
//!     .start()
//!     .expect("erl starts");
//! let reply = peer.request("count");
//! assert!(reply.starts_with("ok "));
//! ```
#![forbid(unsafe_code)]

mod child;
mod epmd;
mod erl;
mod eval;
mod harness;
mod peer;
mod ports;

pub use self::epmd::Epmd;
pub use child::{output_within, spawn_ready, ChildGuard};
pub use erl::{
    compile_erlang, find_erlc, find_executable, find_otp_tool, in_ci, otp_release, require_elixir,
    require_erl, unique_temp_dir, OTP_ENV,
};
pub use eval::EvalPeer;
pub use harness::{
    compile_erlang_once, forwarder, init_logging, openssl, stop_watcher, within, Forward,
    StopWatcher,
};
pub use peer::{ErlPeer, ErlPeerBuilder, PeerError};
pub use ports::{closed_port, free_port, ClosedPort};

/// The path of the example binary `name` of the package under test: `cargo test` builds the
/// examples into `target/<profile>/examples/`, beside the test executables' `deps/`.
///
/// # Panics
/// When the test executable's own path is unknown.
pub fn example_exe(name: &str) -> std::path::PathBuf {
    let mut dir = std::env::current_exe().expect("testkit: the test executable's path");
    dir.pop();
    if dir.ends_with("deps") {
        dir.pop();
    }
    dir.join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX))
}

/// `n` pseudo-random bytes from `seed` (xorshift64*): test data that is the same in every
/// run and unlikely to hide an off-by-one.
///
/// ```
/// assert_eq!(testkit::pseudo_random(5, 1), testkit::pseudo_random(5, 1));
/// assert_ne!(testkit::pseudo_random(64, 1), testkit::pseudo_random(64, 2));
/// ```
pub fn pseudo_random(n: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(n);
    out
}

/// Lower-case hex of `bytes`, two digits a byte.
///
/// ```
/// assert_eq!(testkit::to_hex(&[0, 171, 255]), "00abff");
/// ```
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    out
}

/// The bytes that `hex` spells (either case), or `None` when it has an odd length or a
/// character that is not a hex digit.
///
/// ```
/// assert_eq!(testkit::from_hex("00aBff"), Some(vec![0, 171, 255]));
/// assert_eq!(testkit::from_hex("abc"), None);
/// ```
pub fn from_hex(hex: &str) -> Option<Vec<u8>> {
    fn digit(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    }
    let raw = hex.as_bytes();
    if !raw.len().is_multiple_of(2) {
        return None;
    }
    raw.chunks_exact(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

/// `text` cut to at most `max` characters, with a note of how much was left off.
///
/// Handy for panic messages that quote large terms.
///
/// ```
/// assert_eq!(testkit::truncate("abcdef", 3), "abc...(3 more chars)");
/// assert_eq!(testkit::truncate("abc", 3), "abc");
/// ```
pub fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        None => text.to_owned(),
        Some((cut, _)) => {
            let rest = text[cut..].chars().count();
            format!("{}...({rest} more chars)", &text[..cut])
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_roundtrips() {
        let all: Vec<u8> = (0..=255).collect();
        assert_eq!(from_hex(&to_hex(&all)), Some(all));
        assert_eq!(from_hex(""), Some(vec![]));
        assert_eq!(from_hex("0g"), None);
    }

    #[test]
    fn truncate_counts_chars() {
        assert_eq!(truncate("привет", 2), "пр...(4 more chars)");
    }
}
