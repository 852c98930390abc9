//! Fuzzes the distribution packet decoder with arbitrary bytes.
//!
//! The input is a sequence of packets, each behind a 2-byte little-endian length, fed to one
//! `PacketDecoder` so that atom cache entries and fragments carry over from packet to packet.
//! Decoding must never panic. A control message it decodes (the common ones are read straight
//! from the bytes, the others through a term) must read back the same through its term form,
//! which is the general path: the two readers agree.

#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use node_server::dist::control::Control;
use node_server::dist::packet::PacketDecoder;
use node_server::etf::DecodeOptions;

fuzz_target!(|data: &[u8]| {
    let mut decoder = PacketDecoder::new(DecodeOptions::new(), 1 << 20);
    let mut rest = data;
    while let [a, b, tail @ ..] = rest {
        let n = usize::from(u16::from_le_bytes([*a, *b])).min(tail.len());
        let packet = Bytes::copy_from_slice(&tail[..n]);
        rest = &tail[n..];
        if let Ok(Some(message)) = decoder.decode(packet) {
            let term = message.control.to_term();
            match Control::from_term(&term) {
                Ok(back) => assert_eq!(back, message.control, "term: {term}"),
                Err(e) => panic!("decoded control {:?} does not read back: {e}", message.control),
            }
        }
    }
});
