//! `#[derive(ToTerm, FromTerm)]`: every term shape, exactly, and back through the wire.

use std::collections::BTreeMap;
use std::fmt::Debug;

use node_server::etf::Term;
use node_server::{FromTerm, ToTerm};

fn t(text: &str) -> Term {
    Term::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

/// `value` is `expected` as a term, and comes back from it, also after encoding and decoding.
fn roundtrip<T: ToTerm + FromTerm + PartialEq + Debug>(value: T, expected: &str) {
    let term = value.to_term();
    assert_eq!(term, t(expected), "{value:?} as a term");
    let wire = Term::decode(&term.encode()).unwrap();
    assert_eq!(
        T::from_term(&wire).unwrap(),
        value,
        "{value:?} back from {wire}"
    );
}

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
struct Point {
    x: i32,
    y: i32,
}

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
#[term(record)]
struct Point3 {
    x: i32,
    y: i32,
    z: i32,
}

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
#[term(record, tag = "vec2")]
struct Vector(f64, f64);

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
struct Meters(f64);

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
struct Pair(i32, String);

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
struct HTTPRequest;

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
#[term(tag = "eof")]
struct EndOfFile;

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
struct Profile {
    name: String,
    #[term(rename = "Age")]
    age: u8,
    nickname: Option<String>,
    #[term(default)]
    tags: Vec<String>,
    r#type: bool,
}

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
struct Line {
    from: Point,
    to: Point,
}

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
enum Op {
    Ping,
    Add(i64, i64),
    Put {
        key: String,
        value: i64,
    },
    #[term(rename = "del")]
    Delete(String),
    GetAll,
    Wrap(Point),
}

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
enum Event {
    Tick(u64),
    #[term(other)]
    Unknown(Term),
}

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
struct Tagged<T> {
    label: String,
    value: T,
}

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
enum Either<L, R> {
    Left(L),
    Right(R),
}

#[test]
fn named_struct_is_a_map() {
    roundtrip(Point { x: 1, y: -2 }, "#{x => 1, y => -2}");
    roundtrip(
        Line {
            from: Point { x: 0, y: 0 },
            to: Point { x: 3, y: 4 },
        },
        "#{from => #{x => 0, y => 0}, to => #{x => 3, y => 4}}",
    );
}

#[test]
fn map_struct_ignores_extra_keys() {
    let p = Point::from_term(&t("#{x => 1, y => 2, z => 3, <<\"x\">> => 9}")).unwrap();
    assert_eq!(p, Point { x: 1, y: 2 });
}

#[test]
fn map_struct_missing_key_names_the_field() {
    let e = Point::from_term(&t("#{x => 1}")).unwrap_err();
    assert_eq!(e.expected, "a map with key y");
    assert!(e.found.ends_with("(in Point.y)"), "{e}");
    assert_eq!(
        e.to_string(),
        "expected a map with key y, found #{x => 1} (in Point.y)"
    );
}

#[test]
fn field_errors_name_the_field_and_nest() {
    let e = Point::from_term(&t("#{x => foo, y => 2}")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "expected an integer in i32 range, found foo (in Point.x)"
    );
    let e = Line::from_term(&t(
        "#{from => #{x => 1, y => 1}, to => #{x => 1, y => bar}}",
    ))
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "expected an integer in i32 range, found bar (in Point.y, in Line.to)"
    );
    let e = Point::from_term(&t("[1, 2]")).unwrap_err();
    assert_eq!(e.expected, "Point as #{x := _, y := _}");
}

#[test]
fn option_and_default_fields_may_be_missing() {
    roundtrip(
        Profile {
            name: "joe".into(),
            age: 40,
            nickname: None,
            tags: vec!["erlang".into()],
            r#type: true,
        },
        "#{name => <<\"joe\">>, 'Age' => 40, nickname => undefined, tags => [<<\"erlang\">>], type => true}",
    );
    let p = Profile::from_term(&t("#{name => <<\"mike\">>, 'Age' => 30, type => false}")).unwrap();
    assert_eq!(
        p,
        Profile {
            name: "mike".into(),
            age: 30,
            nickname: None,
            tags: vec![],
            r#type: false,
        }
    );
    let p = Profile::from_term(&t(
        "#{name => \"robert\", 'Age' => 1, nickname => <<\"rv\">>, type => true}",
    ))
    .unwrap();
    assert_eq!(p.nickname.as_deref(), Some("rv"));
    // The renamed key is the one read.
    let e = Profile::from_term(&t("#{name => <<>>, age => 1, type => true}")).unwrap_err();
    assert_eq!(e.expected, "a map with key Age");
    assert!(e.found.ends_with("(in Profile.age)"), "{e}");
}

#[test]
fn record_form() {
    roundtrip(Point3 { x: 1, y: 2, z: 3 }, "{point3, 1, 2, 3}");
    roundtrip(Vector(1.5, -0.5), "{vec2, 1.5, -0.5}");
    let e = Point3::from_term(&t("{point, 1, 2, 3}")).unwrap_err();
    assert_eq!(e.expected, "Point3 as {point3, _, _, _}");
    let e = Point3::from_term(&t("{point3, 1, 2}")).unwrap_err();
    assert_eq!(e.expected, "Point3 as {point3, _, _, _}");
    let e = Point3::from_term(&t("{point3, 1, 2, z}")).unwrap_err();
    assert!(e.to_string().ends_with("found z (in Point3.z)"), "{e}");
}

#[test]
fn tuple_structs() {
    roundtrip(Meters(2.5), "2.5");
    roundtrip(Pair(7, "seven".into()), "{7, <<\"seven\">>}");
    let e = Pair::from_term(&t("{7}")).unwrap_err();
    assert_eq!(e.expected, "Pair as {_, _}");
    let e = Meters::from_term(&t("far")).unwrap_err();
    assert_eq!(e.to_string(), "expected a number, found far (in Meters.0)");
}

#[test]
fn unit_structs_are_atoms() {
    roundtrip(HTTPRequest, "http_request");
    roundtrip(EndOfFile, "eof");
    let e = EndOfFile::from_term(&t("end_of_file")).unwrap_err();
    assert_eq!(e.expected, "EndOfFile as eof");
}

#[test]
fn enum_variants() {
    roundtrip(Op::Ping, "ping");
    roundtrip(Op::Add(1, 2), "{add, 1, 2}");
    roundtrip(
        Op::Put {
            key: "k".into(),
            value: 5,
        },
        "{put, #{key => <<\"k\">>, value => 5}}",
    );
    roundtrip(Op::Delete("k".into()), "{del, <<\"k\">>}");
    roundtrip(Op::GetAll, "get_all");
    roundtrip(Op::Wrap(Point { x: 1, y: 2 }), "{wrap, #{x => 1, y => 2}}");
}

#[test]
fn enum_errors_name_the_variant() {
    let e = Op::from_term(&t("{add, 1, two}")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "expected an integer in i64 range, found two (in Op::Add.1)"
    );
    let e = Op::from_term(&t("{put, #{key => <<\"k\">>}}")).unwrap_err();
    assert_eq!(e.expected, "a map with key value");
    assert!(e.found.ends_with("(in Op::Put.value)"), "{e}");
    // The old name no longer reads.
    let e = Op::from_term(&t("{delete, <<\"k\">>}")).unwrap_err();
    assert_eq!(
        e.expected,
        "Op as one of ping | {add, _, _} | {put, #{key := _, value := _}} | {del, _} | get_all | {wrap, _}"
    );
    assert!(Op::from_term(&t("{add, 1}")).is_err());
    assert!(Op::from_term(&t("{ping}")).is_err());
}

#[test]
fn catch_all_takes_what_no_variant_does() {
    roundtrip(Event::Tick(3), "{tick, 3}");
    for text in ["{tick, -1}", "{tick, 1, 2}", "hello", "[1, 2]", "#{a => b}"] {
        let term = t(text);
        let event = Event::from_term(&term).unwrap();
        assert_eq!(event, Event::Unknown(term.clone()), "{text}");
        // Written back unchanged.
        assert_eq!(event.to_term(), term);
    }
}

#[test]
fn generics() {
    roundtrip(
        Tagged {
            label: "n".into(),
            value: 3u8,
        },
        "#{label => <<\"n\">>, value => 3}",
    );
    roundtrip(
        Tagged {
            label: "p".into(),
            value: Point { x: 1, y: 1 },
        },
        "#{label => <<\"p\">>, value => #{x => 1, y => 1}}",
    );
    roundtrip(Either::<i32, String>::Left(1), "{left, 1}");
    roundtrip(
        Either::<i32, String>::Right("r".into()),
        "{right, <<\"r\">>}",
    );
    let nested: BTreeMap<String, Either<u8, bool>> = [("a".to_string(), Either::Right(true))]
        .into_iter()
        .collect();
    roundtrip(nested, "#{<<\"a\">> => {right, true}}");
}

#[test]
fn derives_work_inside_a_module_with_only_the_crate_root_imported() {
    mod inner {
        #[derive(Debug, PartialEq, node_server::ToTerm, node_server::FromTerm)]
        pub enum Status {
            Up,
            Down { reason: String },
        }
    }
    roundtrip(inner::Status::Up, "up");
    roundtrip(
        inner::Status::Down { reason: "x".into() },
        "{down, #{reason => <<\"x\">>}}",
    );
}

mod proto {
    /// A hand-written prost message.
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Reading {
        #[prost(string, tag = "1")]
        pub sensor: String,
        #[prost(sint64, tag = "2")]
        pub value: i64,
        #[prost(uint32, repeated, tag = "3")]
        pub samples: Vec<u32>,
    }

    node_server::prost_term!(Reading);
}

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
enum Telemetry {
    Reading(proto::Reading),
}

#[test]
fn prost_types_cross_as_binaries() {
    use prost::Message;
    let reading = proto::Reading {
        sensor: "t1".into(),
        value: -3,
        samples: vec![1, 300],
    };
    let term = reading.to_term();
    assert_eq!(term, Term::binary(reading.encode_to_vec()));
    assert_eq!(proto::Reading::from_term(&term).unwrap(), reading);
    // Inside derived types too.
    let t1 = Telemetry::Reading(reading.clone());
    let term = t1.to_term();
    assert_eq!(
        term,
        Term::tuple(vec![
            Term::atom("reading"),
            Term::binary(reading.encode_to_vec())
        ])
    );
    assert_eq!(Telemetry::from_term(&term).unwrap(), t1);
    // Not a binary, or not protobuf.
    let e = proto::Reading::from_term(&t("reading")).unwrap_err();
    assert_eq!(e.expected, "a binary holding a protobuf Reading");
    assert!(proto::Reading::from_term(&t("<<255, 255, 255>>")).is_err());
}

// `#[term(flatten)]`: the inner map's entries in the outer map.

#[derive(Debug, Clone, PartialEq, ToTerm, FromTerm)]
struct Counters {
    sent: u64,
    received: u64,
}

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
struct Peer {
    name: String,
    #[term(flatten)]
    counters: Counters,
    up: bool,
}

/// Flattening nests: `Host`'s map takes `Peer`'s entries, which took `Counters`' entries.
#[derive(Debug, PartialEq, ToTerm, FromTerm)]
struct Host {
    #[term(flatten)]
    peer: Peer,
    #[term(rename = "Where")]
    location: Option<String>,
}

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
struct WithGeneric<T> {
    id: u8,
    #[term(flatten)]
    inner: T,
}

#[derive(Debug, PartialEq, ToTerm, FromTerm)]
enum PeerEvent {
    Seen {
        at: u64,
        #[term(flatten)]
        counters: Counters,
    },
    Lost(String),
}

fn peer() -> Peer {
    Peer {
        name: "b".into(),
        counters: Counters {
            sent: 1,
            received: 2,
        },
        up: true,
    }
}

#[test]
fn flattened_fields_merge_into_the_map() {
    roundtrip(
        peer(),
        "#{name => <<\"b\">>, sent => 1, received => 2, up => true}",
    );
    roundtrip(
        Host {
            peer: peer(),
            location: Some("here".into()),
        },
        "#{name => <<\"b\">>, sent => 1, received => 2, up => true, 'Where' => <<\"here\">>}",
    );
    roundtrip(
        WithGeneric {
            id: 9,
            inner: Counters {
                sent: 3,
                received: 4,
            },
        },
        "#{id => 9, sent => 3, received => 4}",
    );
}

#[test]
fn flattened_fields_in_map_variants() {
    roundtrip(
        PeerEvent::Seen {
            at: 7,
            counters: Counters {
                sent: 0,
                received: 1,
            },
        },
        "{seen, #{at => 7, sent => 0, received => 1}}",
    );
    roundtrip(PeerEvent::Lost("x".into()), "{lost, <<\"x\">>}");
    lacks_received::<PeerEvent>(
        "{seen, #{at => 7, sent => 0}}",
        "(in Counters.received, in PeerEvent::Seen.counters)",
    );
}

/// Reading `text` as `T` fails on the missing key `received` of the flattened `Counters`,
/// the error naming the fields `path`.
fn lacks_received<T: FromTerm + Debug>(text: &str, path: &str) {
    let e = T::from_term(&t(text)).unwrap_err();
    assert_eq!(e.expected, "a map with key received");
    assert!(e.found.ends_with(path), "{e}");
}

#[test]
fn a_flattened_field_reads_from_the_whole_map() {
    // The inner struct ignores the outer keys, as the outer one ignores the inner's.
    let c = Counters::from_term(&peer().to_term()).unwrap();
    assert_eq!(c, peer().counters);
    lacks_received::<Peer>(
        "#{name => <<\"b\">>, sent => 1, up => true}",
        "(in Counters.received, in Peer.counters)",
    );
    let not_a_map = Peer::from_term(&t("{peer}")).unwrap_err();
    assert_eq!(not_a_map.expected, "Peer as #{name := _, up := _, ...}");
}

#[test]
fn maps_flatten_too() {
    #[derive(Debug, PartialEq, ToTerm)]
    struct Labelled {
        id: u8,
        #[term(flatten)]
        labels: BTreeMap<String, i32>,
        #[term(flatten)]
        raw: node_server::etf::Map,
    }
    let l = Labelled {
        id: 1,
        labels: [("k".to_string(), 5)].into_iter().collect(),
        raw: node_server::etf::Map::from_entries(vec![(t("{x}"), t("y"))]),
    };
    assert_eq!(l.to_term(), t("#{id => 1, <<\"k\">> => 5, {x} => y}"));
}

#[test]
fn on_a_repeated_key_the_later_field_wins() {
    #[derive(Debug, PartialEq, ToTerm)]
    struct Shadow {
        sent: u64,
        #[term(flatten)]
        counters: Counters,
    }
    let s = Shadow {
        sent: 100,
        counters: Counters {
            sent: 1,
            received: 2,
        },
    };
    assert_eq!(s.to_term(), t("#{sent => 1, received => 2}"));
}
