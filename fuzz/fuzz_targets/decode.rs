//! Fuzzes the External Term Format decoder with arbitrary bytes.
//!
//! The input goes to both entry points: `Term::decode_slice` (a whole term behind the version
//! byte 131, compressed terms included) and `DecodeOptions::decode_body` (a term without it,
//! as in a distribution message). Decoding must never panic; when it succeeds, the term must
//! re-encode to bytes that decode to the same term.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use node_server::etf::{DecodeOptions, Term};

fuzz_target!(|data: &[u8]| {
    if let Ok(term) = Term::decode_slice(data) {
        check_roundtrip(&term, data);
    }
    let body = Bytes::copy_from_slice(data);
    if let Ok(term) = DecodeOptions::new().decode_body(&body) {
        check_roundtrip(&term, data);
    }
});

/// Panics unless `decode(encode(term)) == term`.
fn check_roundtrip(term: &Term, input: &[u8]) {
    let encoded = term.encode();
    match Term::decode(&encoded) {
        Ok(back) if back == *term => {}
        Ok(back) => panic!(
            "roundtrip mismatch\n input:     {input:02x?}\n decoded:   {term:?}\n encoded:   \
             {:02x?}\n redecoded: {back:?}",
            &encoded[..]
        ),
        Err(e) => panic!(
            "re-encoded term does not decode: {e}\n input:   {input:02x?}\n decoded: {term:?}\n \
             encoded: {:02x?}",
            &encoded[..]
        ),
    }
}
