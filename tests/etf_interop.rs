//! The External Term Format codec and the Erlang text syntax against a real Erlang/OTP node.
//!
//! `tests/erlang/etf_peer.erl` builds a corpus of several hundred terms on a real node
//! (hand-picked edge cases, pids, references, ports and funs of its own, and deterministic
//! pseudo-random nested terms) and answers line commands about it. For every term T:
//!
//! - (a) our decoding of `term_to_binary(T)` (and of its other encodings) re-encodes to bytes
//!   that `binary_to_term` reads back as exactly T;
//! - (b) for printable T (no pid, reference, port or fun), our text (`Display`) parses in
//!   Erlang as exactly T;
//! - (c) for printable T, we parse Erlang's `~w` text of T to our decoding of
//!   `term_to_binary(T)`, and its encoding reads back in Erlang as exactly T.
//!
//! "Exactly" is `=:=` with float bits compared too (OTP 25 has `0.0 =:= -0.0`). Each check
//! goes through the whole corpus and then reports every failure at once.
//!
//! The three tests share one Erlang node while they run concurrently. Without `erl` they are
//! skipped, except in CI (`CI=true`), where they fail.

use std::fmt::Write as _;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};

use bytes::Bytes;
use node_server::etf::Term;
use testkit::{from_hex, to_hex, truncate, ErlPeer};

/// The corpus must hold at least this many terms.
const MIN_CORPUS: usize = 200;

/// How many characters of a term's text or bytes a failure report quotes.
const QUOTE: usize = 160;

/// One corpus term, as the Erlang node gave it.
struct Entry {
    index: usize,
    /// Whether `text` is Erlang syntax (no pid, reference, port or fun in the term).
    printable: bool,
    /// `term_to_binary(T)`.
    bin: Bytes,
    /// `io_lib:format("~w", [T])`.
    text: String,
}

/// The Erlang node and its corpus, shared by the tests of this file while they run.
struct Shared {
    peer: Mutex<ErlPeer>,
    corpus: Vec<Entry>,
}

impl Shared {
    fn start() -> Option<Shared> {
        let erl = testkit::require_erl()?;
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erlang/etf_peer.erl");
        let beam_dir = testkit::compile_erlang(&src);
        let mut peer = ErlPeer::builder(erl, "etf_peer")
            .code_path(&beam_dir)
            .start()
            .unwrap_or_else(|e| panic!("cannot start the Erlang peer: {e}"));

        let count = peer.request("count");
        let count: usize = count
            .strip_prefix("ok ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("bad reply to count: {count}\n{}", peer.diagnostics()));
        assert!(
            count >= MIN_CORPUS,
            "the Erlang corpus has {count} terms, fewer than {MIN_CORPUS}"
        );
        // The peer's own sanity check: every printable term parses back from its ~w text.
        let selfcheck = peer.request("selfcheck");
        assert_eq!(
            selfcheck, "ok",
            "the corpus's printable terms do not parse in Erlang"
        );

        let corpus = (0..count)
            .map(|index| {
                let reply = peer.request(&format!("get {index}"));
                parse_entry(index, &reply).unwrap_or_else(|| {
                    panic!(
                        "bad reply to get {index}: {}\n{}",
                        truncate(&reply, 300),
                        peer.diagnostics()
                    )
                })
            })
            .collect();
        Some(Shared {
            peer: Mutex::new(peer),
            corpus,
        })
    }

    /// The running node, or a new one when no test holds one; `None` when `erl` is missing
    /// (outside CI).
    fn get() -> Option<Arc<Shared>> {
        static SHARED: Mutex<Weak<Shared>> = Mutex::new(Weak::new());
        let mut slot = SHARED.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(shared) = slot.upgrade() {
            return Some(shared);
        }
        let shared = Arc::new(Shared::start()?);
        *slot = Arc::downgrade(&shared);
        Some(shared)
    }

    fn peer(&self) -> MutexGuard<'_, ErlPeer> {
        self.peer.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn request(&self, line: &str) -> String {
        self.peer().request(line)
    }

    /// Asks the node whether `bytes` decode to exactly term `index`.
    fn check_bin(&self, index: usize, bytes: &[u8]) -> Verdict {
        Verdict::from_reply(self.request(&format!("check_bin {index} {}", to_hex(bytes))))
    }

    /// Asks the node whether `text` parses to exactly term `index`.
    fn check_text(&self, index: usize, text: &str) -> Verdict {
        Verdict::from_reply(
            self.request(&format!("check_text {index} {}", to_hex(text.as_bytes()))),
        )
    }
}

fn parse_entry(index: usize, reply: &str) -> Option<Entry> {
    let mut fields = reply.split(' ');
    if fields.next()? != "ok" {
        return None;
    }
    let printable = match fields.next()? {
        "printable" => true,
        "opaque" => false,
        _ => return None,
    };
    let bin = Bytes::from(from_hex(fields.next()?)?);
    let text = String::from_utf8(from_hex(fields.next()?)?).ok()?;
    fields.next().is_none().then_some(Entry {
        index,
        printable,
        bin,
        text,
    })
}

/// What the node said about bytes or text we sent.
enum Verdict {
    Ok,
    /// `mismatch ...` or `error ...`, or a reply outside the protocol.
    Failed(String),
}

impl Verdict {
    fn from_reply(reply: String) -> Verdict {
        if reply == "ok" {
            Verdict::Ok
        } else {
            Verdict::Failed(reply)
        }
    }
}

/// The failures of one check over the corpus, reported together at the end.
struct Failures {
    check: &'static str,
    checked: usize,
    lines: Vec<String>,
}

impl Failures {
    fn new(check: &'static str) -> Failures {
        Failures {
            check,
            checked: 0,
            lines: Vec::new(),
        }
    }

    fn add(&mut self, entry: &Entry, what: impl AsRef<str>) {
        self.lines.push(format!(
            "#{} {}: {}",
            entry.index,
            truncate(&entry.text, QUOTE),
            what.as_ref()
        ));
    }

    fn finish(self) {
        assert!(self.checked > 0, "{}: no term was checked", self.check);
        if self.lines.is_empty() {
            eprintln!("{}: all {} terms passed", self.check, self.checked);
            return;
        }
        let mut report = format!(
            "{}: {} of {} terms failed:\n",
            self.check,
            self.lines.len(),
            self.checked
        );
        for line in &self.lines {
            let _ = writeln!(report, "  {line}");
        }
        panic!("{report}");
    }
}

/// Runs `f`, turning a panic into an error so that one bad term does not hide the others.
fn catch<T>(f: impl FnOnce() -> T) -> Result<T, String> {
    panic::catch_unwind(AssertUnwindSafe(f)).map_err(|payload| {
        payload
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| payload.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "a panic".to_owned())
    })
}

fn decode(bytes: &Bytes) -> Result<Term, String> {
    match catch(|| Term::decode(bytes)) {
        Ok(Ok(term)) => Ok(term),
        Ok(Err(e)) => Err(format!("our decoder refused it: {e}")),
        Err(panic) => Err(format!("our decoder panicked: {panic}")),
    }
}

fn encode(term: &Term) -> Result<Bytes, String> {
    catch(|| term.encode()).map_err(|panic| format!("our encoder panicked: {panic}"))
}

fn quote_bytes(bytes: &[u8]) -> String {
    truncate(&to_hex(bytes), QUOTE)
}

/// Splits an `encodings` reply into (name, bytes) pairs.
fn parse_encodings(reply: &str) -> Option<Vec<(String, Bytes)>> {
    let rest = reply.strip_prefix("ok ")?;
    rest.split(' ')
        .map(|field| {
            let (name, hex) = field.split_once(':')?;
            Some((name.to_owned(), Bytes::from(from_hex(hex)?)))
        })
        .collect()
}

/// (a) Our decoding of `term_to_binary(T)` re-encodes to bytes Erlang reads as exactly T, and
/// T's other encodings (Latin-1 atoms, `FLOAT_EXT`, compressed) decode to the same term.
#[test]
fn binary_roundtrip_through_erlang() {
    let Some(shared) = Shared::get() else { return };
    let mut failures = Failures::new("(a) decode term_to_binary(T), encode, binary_to_term");
    for entry in &shared.corpus {
        failures.checked += 1;
        let term = match decode(&entry.bin) {
            Ok(term) => term,
            Err(e) => {
                failures.add(entry, format!("{e}; bytes {}", quote_bytes(&entry.bin)));
                continue;
            }
        };
        let ours = match encode(&term) {
            Ok(ours) => ours,
            Err(e) => {
                failures.add(entry, e);
                continue;
            }
        };
        if let Verdict::Failed(why) = shared.check_bin(entry.index, &ours) {
            failures.add(
                entry,
                format!(
                    "Erlang read our encoding wrongly: {why}; Erlang's bytes {}; ours {}",
                    quote_bytes(&entry.bin),
                    quote_bytes(&ours)
                ),
            );
        }

        let reply = shared.request(&format!("encodings {}", entry.index));
        let Some(encodings) = parse_encodings(&reply) else {
            failures.add(
                entry,
                format!("bad reply to encodings: {}", truncate(&reply, QUOTE)),
            );
            continue;
        };
        for (name, bytes) in encodings {
            match decode(&bytes) {
                Ok(other) if other == term => {}
                Ok(other) => failures.add(
                    entry,
                    format!(
                        "the {name} encoding decodes to another term: {}; bytes {}",
                        truncate(&format!("{other:?}"), QUOTE),
                        quote_bytes(&bytes)
                    ),
                ),
                Err(e) => failures.add(
                    entry,
                    format!("{name} encoding: {e}; bytes {}", quote_bytes(&bytes)),
                ),
            }
        }
    }
    failures.finish();
}

/// (b) For printable T, what we print parses in Erlang as exactly T.
#[test]
fn our_text_parses_in_erlang() {
    let Some(shared) = Shared::get() else { return };
    let mut failures = Failures::new("(b) our text of T, parsed by erl_parse");
    for entry in shared.corpus.iter().filter(|e| e.printable) {
        failures.checked += 1;
        let term = match decode(&entry.bin) {
            Ok(term) => term,
            Err(e) => {
                failures.add(entry, e);
                continue;
            }
        };
        let ours = match catch(|| term.to_string()) {
            Ok(text) => text,
            Err(panic) => {
                failures.add(entry, format!("Display panicked: {panic}"));
                continue;
            }
        };
        if let Verdict::Failed(why) = shared.check_text(entry.index, &ours) {
            failures.add(entry, format!("we print {}: {why}", truncate(&ours, QUOTE)));
        }
    }
    failures.finish();
}

/// (c) For printable T, we parse Erlang's `~w` text of T to our decoding of
/// `term_to_binary(T)`, and that parse encodes to bytes Erlang reads as exactly T.
#[test]
fn erlang_text_parses_here() {
    let Some(shared) = Shared::get() else { return };
    let mut failures = Failures::new("(c) Erlang's ~w text of T, parsed by Term::parse");
    for entry in shared.corpus.iter().filter(|e| e.printable) {
        failures.checked += 1;
        let parsed = match catch(|| Term::parse(&entry.text)) {
            Ok(Ok(term)) => term,
            Ok(Err(e)) => {
                failures.add(entry, format!("Term::parse refused it: {e}"));
                continue;
            }
            Err(panic) => {
                failures.add(entry, format!("Term::parse panicked: {panic}"));
                continue;
            }
        };
        match decode(&entry.bin) {
            Ok(decoded) if decoded == parsed => {}
            Ok(decoded) => failures.add(
                entry,
                format!(
                    "parsed {} but decoded {}",
                    truncate(&format!("{parsed:?}"), QUOTE),
                    truncate(&format!("{decoded:?}"), QUOTE)
                ),
            ),
            Err(e) => failures.add(entry, e),
        }
        let bytes = match encode(&parsed) {
            Ok(bytes) => bytes,
            Err(e) => {
                failures.add(entry, e);
                continue;
            }
        };
        if let Verdict::Failed(why) = shared.check_bin(entry.index, &bytes) {
            failures.add(
                entry,
                format!(
                    "Erlang read the parse's encoding {} wrongly: {why}",
                    quote_bytes(&bytes)
                ),
            );
        }
    }
    failures.finish();
}
