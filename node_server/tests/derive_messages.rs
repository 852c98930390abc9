//! `#[derive(ErlangMessage)]`: casts and calls through `ractor::Message::{serialize,
//! deserialize}`, reply-port bridging, and local actors that still work as usual.

use std::collections::HashMap;
use std::time::Duration;

use node_server::etf::{FromTerm, Term, ToTerm};
use node_server::message::ErlangMessage;
use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::{Actor, ActorProcessingErr, ActorRef, Message, RpcReplyPort};
use tokio::sync::oneshot;

fn t(text: &str) -> Term {
    Term::parse(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[derive(Debug, PartialEq, node_server::ToTerm, node_server::FromTerm)]
struct Entry {
    key: String,
    value: i64,
}

#[derive(Debug, ErlangMessage)]
enum KvMsg {
    Put {
        key: String,
        value: i64,
    },
    Delete(String),
    Clear,
    #[rpc]
    Get(String, RpcReplyPort<Option<i64>>),
    #[rpc]
    Stats(RpcReplyPort<u64>),
    #[rpc]
    #[term(rename = "find")]
    Lookup {
        prefix: String,
        reply: RpcReplyPort<Vec<Entry>>,
    },
    #[term(other)]
    Unknown(Term),
}

/// ETF bytes start with the version byte; the rest is the term.
fn term_of(bytes: &[u8]) -> Term {
    assert_eq!(bytes.first(), Some(&131), "{bytes:?}");
    Term::decode_slice(bytes).unwrap()
}

fn cast_args(message: SerializedMessage) -> Vec<u8> {
    match message {
        SerializedMessage::Cast {
            variant,
            args,
            metadata,
        } => {
            assert!(variant.is_empty());
            assert!(metadata.is_none());
            args
        }
        other => panic!("not a cast: {other:?}"),
    }
}

fn cast(args: &[u8]) -> SerializedMessage {
    SerializedMessage::Cast {
        variant: String::new(),
        args: args.to_vec(),
        metadata: None,
    }
}

#[test]
fn casts_serialize_as_their_terms() {
    assert!(KvMsg::serializable());
    let cases = [
        (
            KvMsg::Put {
                key: "a".into(),
                value: 1,
            },
            "{put, #{key => <<\"a\">>, value => 1}}",
        ),
        (KvMsg::Delete("a".into()), "{delete, <<\"a\">>}"),
        (KvMsg::Clear, "clear"),
        (KvMsg::Unknown(t("{whatever, [1]}")), "{whatever, [1]}"),
    ];
    for (message, expected) in cases {
        let args = cast_args(message.serialize().unwrap());
        assert_eq!(term_of(&args), t(expected));
        // And back, as the receiving side does.
        let back = KvMsg::deserialize(cast(&args)).unwrap();
        assert_eq!(back.to_term(), t(expected));
    }
    match KvMsg::deserialize(cast(&t("{put, #{key => <<\"k\">>, value => 9}}").encode())) {
        Ok(KvMsg::Put { key, value }) => assert_eq!((key.as_str(), value), ("k", 9)),
        other => panic!("{other:?}"),
    }
}

#[test]
fn casts_that_match_nothing_land_in_the_catch_all() {
    for text in ["{put, 1}", "{get, <<\"k\">>}", "stats", "42"] {
        match KvMsg::deserialize(cast(&t(text).encode())) {
            Ok(KvMsg::Unknown(term)) => assert_eq!(term, t(text)),
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn predicates() {
    assert!(KvMsg::accepts_cast(&t("{delete, <<\"k\">>}")));
    // The catch-all takes any cast.
    assert!(KvMsg::accepts_cast(&t("anything")));
    assert!(KvMsg::accepts_call(&t("{get, <<\"k\">>}")));
    assert!(KvMsg::accepts_call(&t("stats")));
    assert!(KvMsg::accepts_call(&t("{find, #{prefix => <<\"a\">>}}")));
    assert!(!KvMsg::accepts_call(&t("{get, 1}")), "field type checked");
    assert!(!KvMsg::accepts_call(&t("{get, <<\"k\">>, extra}")));
    assert!(
        !KvMsg::accepts_call(&t("{lookup, #{prefix => <<\"a\">>}}")),
        "renamed"
    );
    assert!(!KvMsg::accepts_call(&t("clear")), "casts are not calls");
    assert!(!KvMsg::accepts_call(&t("{find, #{}}")));

    assert!(Strict::accepts_cast(&t("{hit, 1}")));
    assert!(!Strict::accepts_cast(&t("{hit, x}")));
    assert!(!Strict::accepts_call(&t("{hit, 1}")));
}

/// A message type without calls or catch-all.
#[derive(Debug, ErlangMessage)]
enum Strict {
    Hit(u32),
}

#[test]
fn decoding_failures_are_errors() {
    assert_eq!(
        Strict::deserialize(cast(&t("{miss, 1}").encode())).unwrap_err(),
        BoxedDowncastErr
    );
    assert!(Strict::deserialize(cast(&[131, 255])).is_err(), "not ETF");
    assert!(Strict::deserialize(cast(&[])).is_err());
    assert!(Strict::deserialize(SerializedMessage::CallReply(1, vec![])).is_err());
    let (tx, _rx) = oneshot::channel();
    let call = SerializedMessage::Call {
        variant: String::new(),
        args: t("{hit, 1}").encode().to_vec(),
        reply: tx.into(),
        metadata: None,
    };
    assert!(Strict::deserialize(call).is_err(), "no calls at all");
}

/// The request term of a serialized call, its bytes reply port (bridged to the caller's typed
/// port) and its metadata (marking the request as the derive's encoding).
fn call_parts(message: SerializedMessage) -> (Vec<u8>, RpcReplyPort<Vec<u8>>, Vec<u8>) {
    match message {
        SerializedMessage::Call {
            variant,
            args,
            reply,
            metadata,
        } => {
            assert!(variant.is_empty());
            (args, reply, metadata.expect("a call marks its request"))
        }
        other => panic!("not a call: {other:?}"),
    }
}

/// A call as another transport would hand it over (without metadata).
fn call(args: Vec<u8>, reply: RpcReplyPort<Vec<u8>>) -> SerializedMessage {
    call_with(args, reply, None)
}

fn call_with(
    args: Vec<u8>,
    reply: RpcReplyPort<Vec<u8>>,
    metadata: Option<Vec<u8>>,
) -> SerializedMessage {
    SerializedMessage::Call {
        variant: String::new(),
        args,
        reply,
        metadata,
    }
}

#[tokio::test]
async fn calls_round_trip_through_both_bridges() {
    // The caller's side: a typed port goes out as a call.
    let (tx, rx) = oneshot::channel::<Option<i64>>();
    let message = KvMsg::Get("k".into(), tx.into());
    assert_eq!(
        message.to_term(),
        t("{get, <<\"k\">>}"),
        "to_term is the request"
    );
    let (args, reply, metadata) = call_parts(message.serialize().unwrap());
    assert_eq!(term_of(&args), t("{get, <<\"k\">>}"));

    // The receiving side: the same bytes come back as the enum with a typed port.
    match KvMsg::deserialize(call_with(args, reply, Some(metadata))).unwrap() {
        KvMsg::Get(key, port) => {
            assert_eq!(key, "k");
            port.send(Some(42)).unwrap();
        }
        other => panic!("{other:?}"),
    }
    // The value crossed as ETF bytes and arrives typed.
    let got = tokio::time::timeout(Duration::from_secs(5), rx).await;
    assert_eq!(got.unwrap().unwrap(), Some(42));
}

#[tokio::test]
async fn unit_and_named_calls() {
    let (tx, rx) = oneshot::channel::<u64>();
    let (args, reply, _) = call_parts(KvMsg::Stats(tx.into()).serialize().unwrap());
    assert_eq!(term_of(&args), t("stats"));
    // A reply through the bytes port arrives as ETF bytes.
    reply.send(t("7").encode().to_vec()).unwrap();
    assert_eq!(rx.await.unwrap(), 7);

    let (tx, rx) = oneshot::channel();
    let message = KvMsg::Lookup {
        prefix: "a".into(),
        reply: tx.into(),
    };
    let (args, reply, _) = call_parts(message.serialize().unwrap());
    assert_eq!(term_of(&args), t("{find, #{prefix => <<\"a\">>}}"));
    // Delivered as another transport would: the reply crosses as bytes.
    match KvMsg::deserialize(call(args, reply)).unwrap() {
        KvMsg::Lookup { prefix, reply } => {
            assert_eq!(prefix, "a");
            reply
                .send(vec![Entry {
                    key: "ab".into(),
                    value: 1,
                }])
                .unwrap();
        }
        other => panic!("{other:?}"),
    }
    let got = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        got,
        vec![Entry {
            key: "ab".into(),
            value: 1
        }]
    );
}

#[tokio::test]
async fn replies_that_do_not_convert_fail_the_call() {
    let (tx, rx) = oneshot::channel::<u64>();
    let (_, reply, _) = call_parts(KvMsg::Stats(tx.into()).serialize().unwrap());
    reply.send(t("not_a_number").encode().to_vec()).unwrap();
    assert!(rx.await.is_err(), "port dropped");

    let (tx, rx) = oneshot::channel::<u64>();
    let (_, reply, _) = call_parts(KvMsg::Stats(tx.into()).serialize().unwrap());
    reply.send(vec![1, 2, 3]).unwrap();
    assert!(rx.await.is_err(), "not ETF");

    let (tx, rx) = oneshot::channel::<u64>();
    let (_, reply, _) = call_parts(KvMsg::Stats(tx.into()).serialize().unwrap());
    drop(reply);
    assert!(rx.await.is_err(), "no reply at all");
}

#[tokio::test]
async fn calls_keep_the_port_timeout() {
    let timeout = Duration::from_millis(1500);
    let (tx, _rx) = oneshot::channel::<u64>();
    let (_, reply, _) = call_parts(KvMsg::Stats((tx, timeout).into()).serialize().unwrap());
    assert_eq!(reply.get_timeout(), Some(timeout));

    let (tx, _rx) = oneshot::channel::<Vec<u8>>();
    let bytes_port: RpcReplyPort<Vec<u8>> = (tx, timeout).into();
    match KvMsg::deserialize(call(t("stats").encode().to_vec(), bytes_port)).unwrap() {
        KvMsg::Stats(port) => assert_eq!(port.get_timeout(), Some(timeout)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn unknown_calls_are_errors() {
    for request in ["{get, 1}", "{nope, <<\"k\">>}", "clear", "{find, #{}}"] {
        let (tx, rx) = oneshot::channel::<Vec<u8>>();
        let result = KvMsg::deserialize(call(t(request).encode().to_vec(), tx.into()));
        assert!(result.is_err(), "{request}");
        assert!(rx.await.is_err(), "{request}: the reply port is dropped");
    }
}

// A local actor of the derived type.

struct Kv;

impl Actor for Kv {
    type Msg = KvMsg;
    type State = HashMap<String, i64>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _myself: ActorRef<KvMsg>,
        _args: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(HashMap::new())
    }

    async fn handle(
        &self,
        _myself: ActorRef<KvMsg>,
        message: KvMsg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            KvMsg::Put { key, value } => {
                state.insert(key, value);
            }
            KvMsg::Delete(key) => {
                state.remove(&key);
            }
            KvMsg::Clear => state.clear(),
            KvMsg::Get(key, reply) => {
                let _ = reply.send(state.get(&key).copied());
            }
            KvMsg::Stats(reply) => {
                let _ = reply.send(state.len() as u64);
            }
            KvMsg::Lookup { prefix, reply } => {
                let mut found: Vec<Entry> = state
                    .iter()
                    .filter(|(k, _)| k.starts_with(&prefix))
                    .map(|(k, v)| Entry {
                        key: k.clone(),
                        value: *v,
                    })
                    .collect();
                found.sort_by(|a, b| a.key.cmp(&b.key));
                let _ = reply.send(found);
            }
            KvMsg::Unknown(term) => {
                state.insert(format!("unknown {term}"), 0);
            }
        }
        Ok(())
    }
}

#[tokio::test]
async fn local_actor_messaging_still_works() {
    let (actor, handle) = Actor::spawn(None, Kv, ()).await.unwrap();
    actor
        .cast(KvMsg::Put {
            key: "a".into(),
            value: 1,
        })
        .unwrap();
    actor
        .cast(KvMsg::Put {
            key: "ab".into(),
            value: 2,
        })
        .unwrap();
    assert_eq!(
        ractor::call!(actor, KvMsg::Get, "a".into()).unwrap(),
        Some(1)
    );
    assert_eq!(ractor::call!(actor, KvMsg::Get, "zz".into()).unwrap(), None);
    assert_eq!(ractor::call!(actor, KvMsg::Stats).unwrap(), 2);
    let found = ractor::call!(actor, |reply| KvMsg::Lookup {
        prefix: "a".into(),
        reply
    })
    .unwrap();
    assert_eq!(found.len(), 2);

    // What a node session does with traffic from Erlang: serialized messages, deserialized in
    // the actor's own loop.
    let cell = actor.get_cell();
    cell.send_serialized(cast(&t("{delete, <<\"a\">>}").encode()))
        .unwrap();
    let (tx, rx) = oneshot::channel::<Vec<u8>>();
    cell.send_serialized(call(t("stats").encode().to_vec(), tx.into()))
        .unwrap();
    let reply = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(term_of(&reply), t("1"));
    let (tx, rx) = oneshot::channel::<Vec<u8>>();
    cell.send_serialized(call(t("{get, <<\"ab\">>}").encode().to_vec(), tx.into()))
        .unwrap();
    assert_eq!(term_of(&rx.await.unwrap()), t("2"));
    let (tx, rx) = oneshot::channel::<Vec<u8>>();
    cell.send_serialized(call(t("{get, <<\"a\">>}").encode().to_vec(), tx.into()))
        .unwrap();
    assert_eq!(term_of(&rx.await.unwrap()), t("undefined"));

    actor.stop(None);
    handle.await.unwrap();
}

/// Generic message types get `ToTerm + FromTerm + Send + 'static` bounds.
#[derive(Debug, ErlangMessage)]
enum Slot<T> {
    Set(T),
    #[rpc]
    Read(RpcReplyPort<T>),
}

#[tokio::test]
async fn generic_messages() {
    let args = cast_args(Slot::Set(5u8).serialize().unwrap());
    assert_eq!(term_of(&args), t("{set, 5}"));
    assert!(Slot::<u8>::accepts_cast(&t("{set, 5}")));
    assert!(!Slot::<u8>::accepts_cast(&t("{set, 500}")));

    let (tx, rx) = oneshot::channel::<String>();
    let (args, reply, metadata) = call_parts(Slot::Read(tx.into()).serialize().unwrap());
    assert_eq!(term_of(&args), t("read"));
    match Slot::<String>::deserialize(call_with(args, reply, Some(metadata))).unwrap() {
        Slot::Read(port) => port.send("v".into()).unwrap(),
        other => panic!("{other:?}"),
    }
    assert_eq!(rx.await.unwrap(), "v");
    assert_eq!(String::from_term(&"v".to_term()).unwrap(), "v");
}

/// A struct message: casts only.
#[derive(Debug, PartialEq, ErlangMessage)]
#[term(record)]
struct Sample {
    id: u32,
    label: Option<String>,
}

#[tokio::test]
async fn struct_messages_are_casts() {
    let sample = Sample { id: 1, label: None };
    let args = cast_args(sample.serialize().unwrap());
    assert_eq!(term_of(&args), t("{sample, 1, undefined}"));
    assert_eq!(
        Sample::deserialize(cast(&args)).unwrap(),
        Sample { id: 1, label: None }
    );
    assert!(Sample::accepts_cast(&t("{sample, 2, <<\"x\">>}")));
    assert!(!Sample::accepts_call(&t("{sample, 2, <<\"x\">>}")));
    let (tx, _rx) = oneshot::channel::<Vec<u8>>();
    assert!(Sample::deserialize(call(args, tx.into())).is_err());
}

/// The in-process call path: `call_from_term` builds the `#[rpc]` variant with a port whose
/// reply reaches the callback as a term.
#[tokio::test]
async fn call_from_term_answers_through_the_callback() {
    let (tx, rx) = oneshot::channel::<Term>();
    let tx = std::sync::Mutex::new(Some(tx));
    let on_reply = node_server::message::ReplyTo::new(move |reply| {
        if let Some(tx) = tx.lock().unwrap().take() {
            let _ = tx.send(reply);
        }
    });
    let request = Term::parse("{get, <<\"a\">>}").unwrap();
    match KvMsg::call_from_term(&request, on_reply.clone()) {
        Some(KvMsg::Get(key, reply)) => {
            assert_eq!(key, "a");
            reply.send(Some(42)).unwrap();
        }
        other => panic!("expected Get, got {other:?}"),
    }
    let reply = tokio::time::timeout(Duration::from_secs(5), rx)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reply, Term::Int(42));
    // Casts and unknown requests are not calls.
    assert!(KvMsg::call_from_term(&Term::atom("clear"), on_reply.clone()).is_none());
    assert!(KvMsg::call_from_term(&Term::parse("{nope, 1}").unwrap(), on_reply).is_none());
}

/// `#[term(flatten)]` in a message: a cast and a call request with the inner map's entries.
#[derive(Debug, ErlangMessage)]
enum FlatMsg<T> {
    Store {
        #[term(flatten)]
        entry: Entry,
        #[term(flatten)]
        meta: T,
    },
    #[rpc]
    Check {
        #[term(flatten)]
        entry: Entry,
        reply: RpcReplyPort<bool>,
    },
}

#[derive(Debug, PartialEq, node_server::ToTerm, node_server::FromTerm)]
struct Meta {
    by: String,
}

#[test]
fn flattened_fields_in_casts_and_calls() {
    let store = FlatMsg::Store {
        entry: Entry {
            key: "a".into(),
            value: 1,
        },
        meta: Meta { by: "me".into() },
    };
    let expected = t("{store, #{key => <<\"a\">>, value => 1, by => <<\"me\">>}}");
    let args = cast_args(store.serialize().unwrap());
    assert_eq!(term_of(&args), expected);
    match FlatMsg::<Meta>::deserialize(cast(&args)) {
        Ok(FlatMsg::Store { entry, meta }) => {
            assert_eq!(entry.key, "a");
            assert_eq!(meta, Meta { by: "me".into() });
        }
        other => panic!("{other:?}"),
    }
    let (tx, _rx) = oneshot::channel();
    let check = FlatMsg::<Meta>::Check {
        entry: Entry {
            key: "b".into(),
            value: 2,
        },
        reply: tx.into(),
    };
    assert_eq!(
        check.to_term(),
        t("{check, #{key => <<\"b\">>, value => 2}}")
    );
    match check.serialize().unwrap() {
        SerializedMessage::Call { args, .. } => {
            assert_eq!(
                term_of(&args),
                t("{check, #{key => <<\"b\">>, value => 2}}")
            )
        }
        other => panic!("not a call: {other:?}"),
    }
}
