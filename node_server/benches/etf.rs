//! Decode and encode benchmarks of the External Term Format codec, against the `eetf` crate.
//!
//! Every input is built with our [`Term`] API and encoded once with our encoder; both codecs
//! then decode those same bytes, and each encodes the term it decoded. Four inputs:
//!
//! - `small_tuple`: `{hello, 42, <<"payload-0123456789">>}`;
//! - `map_1k`: a JSON-like record of about 1 KiB, a map of 20 atom and binary keys whose values
//!   are small maps, lists, integers, floats and binaries;
//! - `binary_1m`: a 1 MiB binary;
//! - `int_list_10k`: a list of 10,000 integers of every encoded size (`SMALL_INTEGER_EXT`,
//!   `INTEGER_EXT` above 255 and above 2^27, and some `SMALL_BIG_EXT`).
//!
//! Before measuring, the bench checks that `eetf` reads each input as the same term (by
//! re-encoding its result and decoding that with ours) and that decoding the 1 MiB binary
//! shares the input buffer instead of copying it.
//!
//! Both encoders write into a buffer that is cleared and reused from one iteration to the
//! next: ours into a `BytesMut` with `Term::encode_into`, `eetf` into a `Vec<u8>` (its writer
//! is any `io::Write`), so neither pays for allocating or growing its buffer. For the 1 MiB
//! binary, `encode/ours_segments` also measures `Term::encode_segments_into`, which hands the
//! binary out by reference instead of copying it (checked before measuring): a different
//! operation than `eetf`'s copy, for a writer that can do vectored writes.
//!
//! Run with `cargo bench -p node_server --bench etf`; the whole run takes about a minute and a
//! half.

use std::hint::black_box;
use std::io::Cursor;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use criterion::{BenchmarkId, Criterion, Throughput};
use node_server::etf::{Atom, Map, Term};

/// `{hello, 42, <<"payload-0123456789">>}`.
fn small_tuple() -> Term {
    Term::tuple(vec![
        Term::atom("hello"),
        Term::Int(42),
        Term::binary(b"payload-0123456789"),
    ])
}

/// A small map with atom keys, as a nested JSON object would be.
fn small_map(i: i64) -> Term {
    Term::Map(Map::from_entries(vec![
        (Term::atom("id"), Term::Int(i)),
        (Term::atom("enabled"), Term::Atom(Atom::TRUE)),
        (Term::atom("score"), Term::Float(i as f64 * 0.25 + 0.5)),
        (Term::atom("label"), Term::binary(format!("item-{i:04}"))),
    ]))
}

/// A JSON-like record of about 1 KiB: 20 keys (atoms and binaries) with nested values.
fn map_1k() -> Term {
    let mut entries = Vec::new();
    for i in 0..10i64 {
        entries.push((
            Term::atom(format!("field_{i:02}")),
            match i % 5 {
                0 => small_map(i),
                1 => Term::list((0..8).map(|j| Term::Int(i * 1000 + j)).collect::<Vec<_>>()),
                2 => Term::Int(i * 123_456_789),
                3 => Term::binary(format!("value of field {i}: some text")),
                _ => Term::tuple(vec![Term::atom("ok"), Term::Int(i)]),
            },
        ));
    }
    for i in 0..10i64 {
        entries.push((
            Term::binary(format!("key-{i:02}")),
            match i % 4 {
                0 => Term::list(vec![small_map(i), small_map(i + 100)]),
                1 => Term::binary(format!("https://example.invalid/items/{i}?q=abc")),
                2 => Term::Float(i as f64 / 7.0),
                _ => Term::atom(format!("state_{i}")),
            },
        ));
    }
    Term::Map(Map::from_entries(entries))
}

/// A 1 MiB binary.
fn binary_1m() -> Term {
    Term::Binary(Bytes::from(
        (0..1usize << 20)
            .map(|i| (i * 31) as u8)
            .collect::<Vec<_>>(),
    ))
}

/// A list of 10,000 integers: a quarter under 256, a quarter above 255, a quarter above 2^27,
/// a quarter negative, and every hundredth beyond 32 bits.
fn int_list_10k() -> Term {
    Term::list(
        (0..10_000i64)
            .map(|i| {
                Term::Int(if i % 100 == 99 {
                    i * 10_000_000_000
                } else {
                    match i % 4 {
                        0 => i % 256,
                        1 => i * 300,
                        2 => (1 << 27) + i * 20_000,
                        _ => -i * 1_000,
                    }
                })
            })
            .collect::<Vec<_>>(),
    )
}

/// The inputs: a name and the bytes our encoder writes for the term.
fn inputs() -> Vec<(&'static str, Term, Bytes)> {
    [
        ("small_tuple", small_tuple()),
        ("map_1k", map_1k()),
        ("binary_1m", binary_1m()),
        ("int_list_10k", int_list_10k()),
    ]
    .into_iter()
    .map(|(name, term)| {
        let bytes = term.encode();
        (name, term, bytes)
    })
    .collect()
}

/// Checks that both codecs read `bytes` as `term` before they are timed.
fn check_input(name: &str, term: &Term, bytes: &Bytes) {
    assert_eq!(&Term::decode(bytes).unwrap(), term, "{name}: ours");
    let theirs = eetf::Term::decode(Cursor::new(&bytes[..]))
        .unwrap_or_else(|e| panic!("{name}: eetf cannot decode our bytes: {e:?}"));
    let mut reencoded = Vec::new();
    theirs.encode(&mut reencoded).unwrap();
    assert_eq!(
        &Term::decode_slice(&reencoded).unwrap(),
        term,
        "{name}: eetf read another term"
    );
}

/// Checks that decoding a large binary shares the input buffer instead of copying it.
fn check_zero_copy(bytes: &Bytes) {
    let Term::Binary(b) = Term::decode(bytes).unwrap() else {
        panic!("binary_1m did not decode to a binary")
    };
    // Version byte, BINARY_EXT tag and a 4-byte length precede the data.
    assert_eq!(b.len(), bytes.len() - 6);
    assert_eq!(
        b.as_ptr(),
        bytes[6..].as_ptr(),
        "decoding the 1 MiB binary copied it"
    );
    eprintln!("zero-copy check: decoded 1 MiB binary points into the input buffer");
}

/// Checks that encoding the 1 MiB binary as segments shares it, and that the segments make up
/// the plain encoding.
fn check_segments(term: &Term, bytes: &Bytes) {
    let (mut scratch, mut segments) = (BytesMut::new(), Vec::new());
    term.encode_segments_into(&mut scratch, &mut segments);
    assert_eq!(&segments.concat()[..], &bytes[..]);
    let Term::Binary(b) = term else {
        panic!("binary_1m is not a binary")
    };
    assert_eq!(segments.last().map(|s| s.as_ptr()), Some(b.as_ptr()));
    eprintln!("zero-copy check: the 1 MiB binary's last segment is the binary itself");
}

/// Registers the decode and encode benchmarks for every input.
fn etf(c: &mut Criterion) {
    let inputs = inputs();
    for (name, term, bytes) in &inputs {
        check_input(name, term, bytes);
        eprintln!("{name}: {} bytes encoded", bytes.len());
    }
    let (_, big_term, big) = inputs.iter().find(|(n, ..)| *n == "binary_1m").unwrap();
    check_zero_copy(big);
    check_segments(big_term, big);

    for (name, term, bytes) in &inputs {
        let throughput = Throughput::Bytes(bytes.len() as u64);

        let mut group = c.benchmark_group("decode");
        group.throughput(throughput.clone());
        group.bench_with_input(BenchmarkId::new("ours", name), bytes, |b, bytes| {
            b.iter(|| Term::decode(black_box(bytes)).unwrap())
        });
        group.bench_with_input(BenchmarkId::new("eetf", name), bytes, |b, bytes| {
            b.iter(|| eetf::Term::decode(Cursor::new(black_box(&bytes[..]))).unwrap())
        });
        group.finish();

        let theirs = eetf::Term::decode(Cursor::new(&bytes[..])).unwrap();
        let mut group = c.benchmark_group("encode");
        group.throughput(throughput);
        group.bench_with_input(BenchmarkId::new("ours", name), term, |b, term| {
            let mut out = BytesMut::new();
            b.iter(|| {
                out.clear();
                black_box(term).encode_into(&mut out);
                black_box(out.len())
            })
        });
        group.bench_with_input(BenchmarkId::new("eetf", name), &theirs, |b, theirs| {
            let mut out = Vec::new();
            b.iter(|| {
                out.clear();
                black_box(theirs).encode(&mut out).unwrap();
                black_box(out.len())
            })
        });
        if *name == "binary_1m" {
            group.bench_with_input(BenchmarkId::new("ours_segments", name), term, |b, term| {
                let (mut scratch, mut segments) = (BytesMut::new(), Vec::new());
                b.iter(|| {
                    // Dropping last iteration's segments lets `scratch` reuse its memory.
                    segments.clear();
                    black_box(term).encode_segments_into(&mut scratch, &mut segments);
                    black_box(segments.len())
                })
            });
        }
        group.finish();
    }
}

/// Short warm-up and measurement so the 17 benchmarks finish in about a minute and a half.
fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50)
}

fn main() {
    // What `criterion_group!`/`criterion_main!` expand to, written out so that no undocumented
    // public function is generated.
    let mut criterion = config().configure_from_args();
    etf(&mut criterion);
    criterion.final_summary();
}
