//! Property tests: encoding then decoding is the identity, over generated terms that stress the
//! edges (integer width boundaries, huge bigints, unicode, empty and deep containers, improper
//! lists, maps with compound keys), and printing then parsing is too.

use bytes::Bytes;
use node_server::etf::{Atom, BitBinary, DecodeOptions, Fun, Map, Pid, Port, Reference, Term};
use num_bigint::BigInt;
use proptest::prelude::*;

fn edge_int() -> impl Strategy<Value = Term> {
    let edges: Vec<i128> = [0i128, 1, 255, 256, 1 << 27, 1 << 31, 1 << 63, 1 << 64]
        .into_iter()
        .flat_map(|e| [e - 1, e, e + 1, -e - 1, -e, -e + 1])
        .collect();
    prop_oneof![
        prop::sample::select(edges).prop_map(|i| Term::big_int(BigInt::from(i))),
        any::<i64>().prop_map(Term::Int),
        (any::<bool>(), prop::collection::vec(any::<u32>(), 1..40)).prop_map(|(neg, digits)| {
            let sign = if neg {
                num_bigint::Sign::Minus
            } else {
                num_bigint::Sign::Plus
            };
            Term::big_int(BigInt::new(sign, digits))
        }),
    ]
}

fn atom() -> impl Strategy<Value = Atom> {
    prop_oneof![
        "[a-z][a-zA-Z0-9_@]{0,10}".prop_map(Atom::new),
        "\\PC{0,12}".prop_map(Atom::new),
        Just(Atom::new("")),
        Just(Atom::new("x".repeat(255))),
        Just(Atom::new("\u{1F600}".repeat(255))),
    ]
}

fn pid() -> impl Strategy<Value = Pid> {
    (atom(), any::<u32>(), any::<u32>(), any::<u32>()).prop_map(|(node, id, serial, creation)| {
        Pid {
            node,
            id,
            serial,
            creation,
        }
    })
}

fn leaf() -> impl Strategy<Value = Term> {
    prop_oneof![
        edge_int(),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Term::Float),
        atom().prop_map(Term::Atom),
        prop::collection::vec(any::<u8>(), 0..64).prop_map(|b| Term::Binary(Bytes::from(b))),
        "\\PC{0,20}".prop_map(|s| Term::Binary(Bytes::from(s))),
        (prop::collection::vec(any::<u8>(), 1..8), 1u8..8)
            .prop_map(|(b, bits)| BitBinary::new_term(Bytes::from(b), bits).unwrap()),
        pid().prop_map(Term::Pid),
        (atom(), any::<u64>(), any::<u32>()).prop_map(|(node, id, creation)| Term::Port(Port {
            node,
            id,
            creation
        })),
        (
            atom(),
            any::<u32>(),
            prop::collection::vec(any::<u32>(), 1..=5)
        )
            .prop_map(|(node, c, w)| Term::from(Reference::new(node, c, &w).unwrap())),
        (atom(), atom(), any::<u8>()).prop_map(|(module, function, arity)| Term::from(
            Fun::Export {
                module,
                function,
                arity
            }
        )),
        Just(Term::NIL),
        Just(Term::tuple(vec![])),
        Just(Term::Map(Map::new())),
    ]
}

fn term() -> impl Strategy<Value = Term> {
    leaf().prop_recursive(6, 128, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Term::List),
            prop::collection::vec(any::<u8>(), 0..16)
                .prop_map(|s| Term::List(s.into_iter().map(|b| Term::Int(b.into())).collect())),
            (prop::collection::vec(inner.clone(), 1..4), inner.clone())
                .prop_map(|(elems, tail)| Term::improper_list(elems, tail)),
            prop::collection::vec(inner.clone(), 0..8).prop_map(Term::Tuple),
            prop::collection::vec((inner.clone(), inner.clone()), 0..6)
                .prop_map(|e| Term::Map(Map::from_entries(e))),
            (
                any::<u8>(),
                any::<[u8; 16]>(),
                any::<u32>(),
                atom(),
                pid(),
                prop::collection::vec(inner, 0..3)
            )
                .prop_map(|(arity, uniq, index, module, pid, free_vars)| {
                    Term::from(Fun::Closure {
                        arity,
                        uniq,
                        index,
                        module,
                        old_index: index,
                        old_uniq: 7,
                        pid,
                        free_vars,
                    })
                }),
        ]
    })
}

/// Whether the term has only parts that Erlang's term syntax can write.
fn printable(t: &Term) -> bool {
    match t {
        Term::Pid(_) | Term::Port(_) | Term::Reference(_) | Term::Fun(_) => false,
        Term::List(l) | Term::Tuple(l) => l.iter().all(printable),
        Term::ImproperList(l, tail) => l.iter().all(printable) && printable(tail),
        Term::Map(m) => m.iter().all(|(k, v)| printable(k) && printable(v)),
        _ => true,
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn encode_decode_is_identity(t in term()) {
        let bytes = t.encode();
        prop_assert_eq!(Term::decode(&bytes).unwrap(), t.clone());
        // Without the version byte too.
        let body = bytes.slice(1..);
        prop_assert_eq!(DecodeOptions::new().decode_body(&body).unwrap(), t);
    }

    #[test]
    fn segments_and_reused_buffers_give_the_same_bytes(t in term()) {
        let bytes = t.encode();
        let (mut scratch, mut segments) = (bytes::BytesMut::new(), Vec::new());
        t.encode_segments_into(&mut scratch, &mut segments);
        prop_assert_eq!(segments.concat(), bytes.to_vec());
        // A reused buffer that held a longer term.
        let mut out = bytes::BytesMut::from(&[0xAAu8; 300][..]);
        out.clear();
        t.encode_into(&mut out);
        prop_assert_eq!(&out[..], &bytes[..]);
    }

    #[test]
    fn print_parse_is_identity(t in term().prop_filter("printable", printable)) {
        let text = t.to_string();
        let back = Term::parse(&text);
        prop_assert!(back.is_ok(), "{} did not parse: {:?}", text, back);
        prop_assert_eq!(back.unwrap(), t);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic(t in term(), cut in any::<prop::sample::Index>()) {
        let bytes = t.encode();
        let n = cut.index(bytes.len());
        prop_assert!(Term::decode(&bytes.slice(..n)).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(mut bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        bytes.insert(0, 131);
        let _ = Term::decode_slice(&bytes);
    }
}

#[test]
fn compressed_terms_decode() {
    use std::io::Write;
    let t = Term::list(vec![Term::binary(vec![7u8; 4096]), Term::atom("x")]);
    let body = &t.encode()[1..];
    let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    z.write_all(body).unwrap();
    let deflated = z.finish().unwrap();
    let mut input = vec![131, 80];
    input.extend((body.len() as u32).to_be_bytes());
    input.extend(deflated);
    assert_eq!(Term::decode_slice(&input).unwrap(), t);
}

#[test]
fn huge_bigint_roundtrips() {
    let huge = Term::big_int(BigInt::from(3u8).pow(20_000));
    assert_eq!(Term::decode(&huge.encode()).unwrap(), huge);
}
