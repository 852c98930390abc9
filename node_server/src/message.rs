//! Typed messages that cross to Erlang: the derive macros, their term shapes, and the
//! [`ErlangMessage`] trait.
//!
//! Three derives (from the `node_server_derive` crate, re-exported here and at the crate root)
//! turn Rust types into Erlang terms and back:
//!
//! - [`ToTerm`](macro@ToTerm) and [`FromTerm`](macro@FromTerm) implement the
//!   [`etf::ToTerm`](crate::etf::ToTerm) and [`etf::FromTerm`](crate::etf::FromTerm) traits for
//!   data types;
//! - [`ErlangMessage`](macro@ErlangMessage) does the same for an actor's message enum and adds
//!   [`ractor::Message`] (serializable: casts and calls cross nodes as ETF) and the
//!   [`ErlangMessage`] trait. `#[rpc]` variants become `gen_server` calls.
//!
//! `use node_server::message::{ErlangMessage, FromTerm, ToTerm};` brings each trait together with
//! its derive macro.
//!
//! # Term shapes
//!
//! The shapes are the contract with Erlang code, so they are fixed and listed here. Names
//! become atoms in snake_case (see [Names](#names)).
//!
//! | Rust | Erlang term |
//! |---|---|
//! | `struct Point { x: i32, y: i32 }` | `#{x => X, y => Y}` (a map with atom keys) |
//! | `#[term(record)] struct Point { x: i32, y: i32 }` | `{point, X, Y}` (a record) |
//! | `struct Meters(f64)` (one field) | the field's term itself (transparent) |
//! | `struct Pair(i32, String)` | `{A, B}` |
//! | `#[term(record)] struct Pair(i32, String)` | `{pair, A, B}` |
//! | `struct Marker;` | `marker` |
//! | enum variant `Ping` | `ping` |
//! | enum variant `Add(i64, i64)` | `{add, A, B}` |
//! | enum variant `Put { key: String, value: i64 }` | `{put, #{key => K, value => V}}` |
//! | `#[term(other)] Other(Term)` | any term no other variant takes, unchanged |
//! | `#[rpc]` variant `Get(String, RpcReplyPort<T>)` | call request `{get, K}`, reply `T`'s term |
//! | `#[rpc]` variant `Stats(RpcReplyPort<u64>)` | call request `stats` |
//!
//! Fields convert with their own [`ToTerm`](trait@ToTerm) /
//! [`FromTerm`](trait@FromTerm) (`String` is a UTF-8 binary, `Option<T>` is `undefined`
//! or the value, and so on; see [`etf`](crate::etf)).
//!
//! Reading (`FromTerm`):
//! - a map struct ignores extra keys; a missing key is an error naming the field, except for
//!   `Option<T>` fields (missing means `None`) and fields marked `#[term(default)]` (missing
//!   means `Default::default()`);
//! - an enum tries the variants whose shape (tag and size) fits, in declaration order; the
//!   first whose fields all convert wins. When none does, the `#[term(other)]` variant takes
//!   the term if there is one; otherwise the error is the first field error (naming the
//!   variant and field, e.g. `(in Op::Add.1)`) or, when no tag fit, a list of the shapes the
//!   type accepts;
//! - field errors keep the innermost expectation and add where it happened:
//!   `expected an integer in i32 range, found foo (in Point.x, in Line.from)`.
//!
//! # Attributes
//!
//! | where | attribute | effect |
//! |---|---|---|
//! | struct | `#[term(record)]` | a tagged tuple `{tag, Fields...}` instead of a map / plain tuple |
//! | struct | `#[term(tag = "name")]` | the record tag, or a unit struct's atom (default: snake_case name) |
//! | variant | `#[term(rename = "name")]` | the variant's atom |
//! | variant | `#[term(other)]` | catch-all; the variant must be `Name(Term)` |
//! | variant | `#[rpc]` (`ErlangMessage` only) | a call; the last field must be `RpcReplyPort<T>` |
//! | named field | `#[term(rename = "name")]` | the map key |
//! | named field | `#[term(default)]` | a missing key reads as `Default::default()` |
//!
//! Misuse is a compile error pointing at the culprit: an unknown `#[term(...)]` key, `#[rpc]`
//! without a trailing `RpcReplyPort`, an `RpcReplyPort` field outside an `#[rpc]` variant,
//! `#[term(other)]` on anything but a single `Term` field, two variants with the same shape.
//!
//! # Names
//!
//! Type and variant names become atoms in snake_case: an underscore goes before an upper-case
//! letter that follows a lower-case letter or a digit, and before the last capital of a run of
//! capitals when a lower-case letter follows it; then everything is lower-cased. So `Ping` is
//! `ping`, `GetAll` is `get_all`, `HTTPRequest` is `http_request`, `Vec2` is `vec2`, `Vec2D` is
//! `vec2_d`. Field names are kept as written (`r#type` is `type`). Use `rename` / `tag` when the
//! Erlang side spells it differently.
//!
//! Type parameters get the obvious bound (`T: ToTerm` for `ToTerm`, `T: FromTerm` for
//! `FromTerm`, both plus `Send + 'static` for `ErlangMessage`).
//!
//! # Messages and calls
//!
//! For an `ErlangMessage` type, [`ractor::Message::serialize`] turns
//! - an `#[rpc]` variant into [`SerializedMessage::Call`] whose `args` are the request term's ETF
//!   (version byte 131 included) and whose `reply` port takes the reply's ETF bytes, decodes them
//!   and hands the typed value to the variant's own `RpcReplyPort<T>`;
//! - any other variant into [`SerializedMessage::Cast`] whose `args` are the ETF of its term.
//!
//! [`ractor::Message::deserialize`] goes back: a cast's term goes through `FromTerm`; a call's
//! request picks the `#[rpc]` variant by tag and shape, which gets a typed `RpcReplyPort<T>`
//! whose value is sent back as ETF bytes. `variant` is always empty and `metadata` `None`.
//!
//! What a call costs in tasks: on the calling side, none beyond ractor's own. Serializing an
//! `#[rpc]` variant parks its typed port in this process (named in the message's `metadata`);
//! the proxy that sends the call takes it, and the session's reader converts the reply term
//! and sends it on, so the reply wakes the caller directly. On the receiving side, a call from
//! another node delivered in-process ([`ErlangMessage::call_from_term`]) is waited for by the
//! session's writer, so the actor's reply wakes the writer directly. A serialized call that
//! [`ractor::Message::deserialize`] turns back into a variant (delivered through
//! `send_serialized`) bridges its typed port with one tokio task. A call that goes over some
//! other transport gets its reply through the bytes port, which a running node checks once a
//! second. With no tokio runtime at hand the port is dropped and the caller sees the call fail.
//!
//! # Example
//!
//! ```
//! use node_server::etf::Term;
//! use node_server::message::{ErlangMessage, FromTerm, ToTerm};
//! use ractor::RpcReplyPort;
//!
//! #[derive(Debug, PartialEq, ToTerm, FromTerm)]
//! struct Point {
//!     x: i32,
//!     y: i32,
//! }
//!
//! #[derive(Debug, PartialEq, ToTerm, FromTerm)]
//! enum Shape {
//!     Empty,
//!     Circle(Point, u32),
//!     #[term(rename = "rect")]
//!     Rectangle { from: Point, to: Point },
//! }
//!
//! let c = Shape::Circle(Point { x: 1, y: 2 }, 5);
//! assert_eq!(c.to_term(), Term::parse("{circle, #{x => 1, y => 2}, 5}").unwrap());
//! assert_eq!(Shape::from_term(&Term::parse("empty").unwrap()).unwrap(), Shape::Empty);
//!
//! #[derive(ErlangMessage)]
//! enum Counter {
//!     Add(i64),
//!     #[rpc]
//!     Get(RpcReplyPort<i64>),
//!     #[term(other)]
//!     Unknown(Term),
//! }
//!
//! // Casts: `{add, N}`; anything else lands in `Unknown`.
//! assert!(Counter::accepts_cast(&Term::parse("{add, 2}").unwrap()));
//! assert!(matches!(Counter::from_term(&Term::parse("hello").unwrap()), Ok(Counter::Unknown(_))));
//! // Calls: the request `get`, answered with an integer.
//! assert!(Counter::accepts_call(&Term::parse("get").unwrap()));
//! assert!(!Counter::accepts_call(&Term::parse("{add, 2}").unwrap()));
//! ```
//!
//! Protocol Buffers types cross as binaries of their encoding with one line, see
//! [`prost_term!`](crate::prost_term).

use std::time::Duration;

use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::RpcReplyPort;

use crate::etf::{ConversionError, Map, Term};

pub use crate::etf::{FromTerm, ToTerm};
pub use node_server_derive::ErlangMessage;

/// A message type whose values cross to Erlang processes: casts as terms, `#[rpc]` variants as
/// `gen_server` calls.
///
/// Implemented by `#[derive(ErlangMessage)]` (see the [module docs](self) for the term shapes),
/// together with [`ToTerm`](trait@ToTerm), [`FromTerm`](trait@FromTerm) and a
/// serializable [`ractor::Message`]. `FromTerm` reads casts only: an `#[rpc]` variant needs a
/// reply port, so calls arrive through [`ractor::Message::deserialize`] with a
/// [`SerializedMessage::Call`] (which [`ractor::ActorCell::send_serialized`] delivers).
///
/// The node runtime uses the two predicates to decide, before delivering, whether the receiving
/// actor can take a term at all.
pub trait ErlangMessage: ractor::Message + ToTerm + FromTerm {
    /// Whether `term`, arriving as a plain message (`Pid ! Term`, `gen_server:cast`), reads as
    /// this type: exactly when `FromTerm::from_term` succeeds. Always true with a
    /// `#[term(other)]` variant.
    fn accepts_cast(term: &Term) -> bool;

    /// Whether `request`, arriving as a `gen_server:call`, matches one of the `#[rpc]`
    /// variants (tag, shape and field types).
    fn accepts_call(request: &Term) -> bool;

    /// The `#[rpc]` variant for `request`, whose reply port hands the reply's term to
    /// `on_reply`: how the node delivers a remote `gen_server:call` to a local actor without
    /// serializing it again. `None` when no variant matches (the default: no in-process path).
    fn call_from_term(request: &Term, on_reply: ReplyTo) -> Option<Self> {
        let _ = (request, on_reply);
        None
    }
}

/// Where the reply to a call delivered in-process goes, as a term: a callback, and inside the
/// node the session writer that waits for the reply (so a call costs no task of its own).
#[derive(Clone)]
pub struct ReplyTo {
    on_reply: std::sync::Arc<dyn Fn(Term) + Send + Sync>,
    waiter: Option<crate::waiter::ReplyWaiter>,
}

impl ReplyTo {
    /// Replies go to `on_reply`.
    pub fn new(on_reply: impl Fn(Term) + Send + Sync + 'static) -> Self {
        ReplyTo {
            on_reply: std::sync::Arc::new(on_reply),
            waiter: None,
        }
    }

    /// The same, with replies awaited by `waiter`'s owner instead of a spawned task.
    pub(crate) fn waited_by(mut self, waiter: crate::waiter::ReplyWaiter) -> Self {
        self.waiter = Some(waiter);
        self
    }

    /// Passes a reply on.
    pub fn reply(&self, reply: Term) {
        (self.on_reply)(reply)
    }
}

impl std::fmt::Debug for ReplyTo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyTo")
            .field("waited", &self.waiter.is_some())
            .finish_non_exhaustive()
    }
}

/// A typed reply port whose value goes to `on_reply` as a term. The wait for the value runs in
/// the session writer when `on_reply` came from a session, else in a spawned tokio task (ended
/// by the reply or by dropping the port).
#[doc(hidden)]
pub fn reply_port_calling<T: ToTerm + Send + 'static>(on_reply: ReplyTo) -> RpcReplyPort<T> {
    let (tx, rx) = ractor::concurrency::oneshot::<T>();
    let typed = RpcReplyPort::from(tx);
    let ReplyTo { on_reply, waiter } = on_reply;
    let wait: crate::waiter::Wait = Box::pin(async move {
        if let Ok(value) = rx.await {
            on_reply(value.to_term());
        }
    });
    crate::waiter::ReplyWaiter::add_or_spawn(waiter.as_ref(), wait);
    typed
}

/// Implements [`ToTerm`](trait@ToTerm) and [`FromTerm`](trait@FromTerm) for
/// `prost` message types as a binary holding the Protocol Buffers encoding.
///
/// The type needs `prost::Message + Default` (what `#[derive(prost::Message)]` gives). Erlang
/// code decodes the binary with its own protobuf library (gpb, protox...).
///
/// ```
/// use node_server::etf::{FromTerm, Term, ToTerm};
///
/// #[derive(Clone, PartialEq, prost::Message)]
/// struct Ping {
///     #[prost(uint32, tag = "1")]
///     seq: u32,
/// }
/// node_server::prost_term!(Ping);
///
/// let term = Ping { seq: 150 }.to_term();
/// assert_eq!(term, Term::parse("<<8, 150, 1>>").unwrap());
/// assert_eq!(Ping::from_term(&term).unwrap(), Ping { seq: 150 });
/// ```
#[macro_export]
macro_rules! prost_term {
    ($($ty:ty),+ $(,)?) => {$(
        impl $crate::etf::ToTerm for $ty {
            fn to_term(&self) -> $crate::etf::Term {
                $crate::message::__private::prost_to_term(self)
            }
        }

        impl $crate::etf::FromTerm for $ty {
            fn from_term(
                term: &$crate::etf::Term,
            ) -> ::core::result::Result<Self, $crate::etf::ConversionError> {
                $crate::message::__private::prost_from_term(
                    term,
                    ::core::concat!("a binary holding a protobuf ", ::core::stringify!($ty)),
                )
            }
        }
    )+};
}

/// The ETF bytes of `term`, version byte 131 included: what `args` of a serialized message and
/// reply bytes hold.
#[doc(hidden)]
pub fn encode_to_vec(term: &Term) -> Vec<u8> {
    let mut out = bytes::BytesMut::new();
    term.encode_into(&mut out);
    // A uniquely owned buffer becomes a Vec without copying.
    Vec::from(out)
}

/// The term in ETF `bytes` (with the version byte), or `None` when they do not decode.
#[doc(hidden)]
pub fn decode_from_slice(bytes: &[u8]) -> Option<Term> {
    match Term::decode_slice(bytes) {
        Ok(term) => Some(term),
        Err(error) => {
            tracing::debug!(%error, len = bytes.len(), "message bytes are not ETF");
            None
        }
    }
}

/// A typed reply port for the receiving side of a call: the value sent on it goes out on
/// `bytes` as the ETF of its term. Spawns one tokio task (ended by the reply, by dropping the
/// port, or by `bytes`'s timeout).
#[doc(hidden)]
pub fn reply_port_for_call<T: ToTerm + Send + 'static>(
    bytes: RpcReplyPort<Vec<u8>>,
) -> RpcReplyPort<T> {
    relay_port(bytes.get_timeout(), move |value: T| {
        if bytes.send(encode_to_vec(&value.to_term())).is_err() {
            tracing::debug!("the caller went away before the reply");
        }
    })
}

/// A port whose value, sent within `timeout`, a task of its own hands to `relay`: the one
/// bridge between a typed reply port and a bytes one, either way. Without a tokio runtime
/// nothing relays, so the call fails.
fn relay_port<V: Send + 'static>(
    timeout: Option<Duration>,
    relay: impl FnOnce(V) + Send + 'static,
) -> RpcReplyPort<V> {
    let (tx, rx) = ractor::concurrency::oneshot::<V>();
    let port = port_with_timeout(tx, timeout);
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                if let Some(value) = receive(rx, timeout).await {
                    relay(value);
                }
            });
        }
        Err(_) => {
            tracing::warn!("no tokio runtime to bridge a call's reply port; the call will fail")
        }
    }
    port
}

fn port_with_timeout<T>(
    tx: ractor::concurrency::OneshotSender<T>,
    timeout: Option<Duration>,
) -> RpcReplyPort<T> {
    match timeout {
        Some(t) => RpcReplyPort::from((tx, t)),
        None => RpcReplyPort::from(tx),
    }
}

async fn receive<T>(
    rx: ractor::concurrency::OneshotReceiver<T>,
    timeout: Option<Duration>,
) -> Option<T> {
    match timeout {
        Some(t) => tokio::time::timeout(t, rx).await.ok()?.ok(),
        None => rx.await.ok(),
    }
}

/// The caller's side of a call made on a proxy with a derived message type.
///
/// ractor hands a proxy a [`SerializedMessage::Call`] whose reply port takes ETF bytes, and
/// calls `Message::serialize` on the caller's task without saying which node the proxy
/// belongs to. So serialization bridges the caller's typed port to a bytes port with a task
/// of its own, which decodes the reply and converts it to the caller's type: no state outside
/// the call, whichever node or transport the message reaches. The message's `metadata` marks
/// the request as the derive's own encoding, which a proxy sends as it is.
pub(crate) mod typed_calls {
    use ractor::RpcReplyPort;

    use crate::etf::{FromTerm, Term};

    /// What `metadata` holds for a call serialized by a derived message type.
    pub(crate) const MARKER: &[u8] = b"node_server";

    /// Whether a call's `metadata` says its request is the derive's own encoding.
    pub(crate) fn is_derived(metadata: Option<&[u8]>) -> bool {
        metadata == Some(MARKER)
    }

    /// A bytes port whose reply reaches `port` converted; logs a reply that is not ETF or
    /// does not convert (the caller then sees the call fail). Without a tokio runtime the
    /// bytes port is dropped at once, failing the call.
    pub(crate) fn bridge<T: FromTerm + Send + 'static>(
        port: RpcReplyPort<T>,
    ) -> RpcReplyPort<Vec<u8>> {
        super::relay_port(port.get_timeout(), move |reply: Vec<u8>| {
            complete(port, &reply)
        })
    }

    fn complete<T: FromTerm>(port: RpcReplyPort<T>, reply: &[u8]) {
        let term = match Term::decode_slice(reply) {
            Ok(term) => term,
            Err(error) => {
                tracing::warn!(%error, "call reply is not ETF; dropped");
                return;
            }
        };
        match T::from_term(&term) {
            Ok(value) => {
                if port.send(value).is_err() {
                    tracing::debug!("the caller went away before the reply");
                }
            }
            Err(error) => tracing::warn!(
                reply_type = std::any::type_name::<T>(),
                %error,
                reply = %term,
                "call reply does not convert; dropped"
            ),
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[tokio::test]
        async fn a_bridged_port_gets_the_reply_converted() {
            let (tx, rx) = tokio::sync::oneshot::channel::<i64>();
            let bytes = bridge(RpcReplyPort::from(tx));
            bytes.send(Term::Int(7).encode().to_vec()).unwrap();
            assert_eq!(rx.await.unwrap(), 7);
        }

        #[tokio::test]
        async fn a_dropped_message_or_a_bad_reply_fails_the_call() {
            let (tx, rx) = tokio::sync::oneshot::channel::<i64>();
            drop(bridge(RpcReplyPort::from(tx)));
            assert!(rx.await.is_err(), "no reply at all");

            let (tx, rx) = tokio::sync::oneshot::channel::<i64>();
            let bytes = bridge(RpcReplyPort::from(tx));
            bytes.send(Term::atom("nan").encode().to_vec()).unwrap();
            assert!(rx.await.is_err(), "does not convert");

            let (tx, rx) = tokio::sync::oneshot::channel::<i64>();
            let bytes = bridge(RpcReplyPort::from(tx));
            bytes.send(vec![1, 2, 3]).unwrap();
            assert!(rx.await.is_err(), "not ETF");
        }

        #[test]
        fn only_the_marker_says_derived() {
            assert!(is_derived(Some(MARKER)));
            assert!(!is_derived(None));
            assert!(!is_derived(Some(b"node_server:")));
            assert!(!is_derived(Some(b"")));
        }
    }
}

/// Plumbing for the derive macros and [`prost_term!`](crate::prost_term); not a stable API.
#[doc(hidden)]
pub mod __private {
    use super::*;

    pub use super::{decode_from_slice, encode_to_vec, reply_port_calling, reply_port_for_call};
    pub use ractor;

    /// The elements after the tag of `{tag, E1, ..., En}`.
    #[inline]
    pub fn tagged<'a>(term: &'a Term, tag: &str, arity: usize) -> Option<&'a [Term]> {
        match term {
            Term::Tuple(elems) if elems.len() == arity + 1 && elems[0].is_atom(tag) => {
                Some(&elems[1..])
            }
            _ => None,
        }
    }

    /// The map of `{tag, #{...}}`, as a term and as a map.
    #[inline]
    pub fn tagged_map<'a>(term: &'a Term, tag: &str) -> Option<(&'a Term, &'a Map)> {
        match tagged(term, tag, 1) {
            Some([whole @ Term::Map(m)]) => Some((whole, m)),
            _ => None,
        }
    }

    /// The elements of a tuple of `arity`.
    #[inline]
    pub fn tuple(term: &Term, arity: usize) -> Option<&[Term]> {
        match term {
            Term::Tuple(elems) if elems.len() == arity => Some(elems),
            _ => None,
        }
    }

    /// The map, if `term` is one.
    #[inline]
    pub fn map(term: &Term) -> Option<&Map> {
        match term {
            Term::Map(m) => Some(m),
            _ => None,
        }
    }

    /// An atom term.
    #[inline]
    pub fn atom(text: &str) -> Term {
        Term::atom(text)
    }

    /// A map term from `(key atom, value)` pairs.
    pub fn map_term<const N: usize>(entries: [(&str, Term); N]) -> Term {
        Term::Map(Map::from_entries(
            entries
                .into_iter()
                .map(|(k, v)| (Term::atom(k), v))
                .collect(),
        ))
    }

    /// Adds the entry `key => value` (`key` an atom) to the entries of a map being built.
    #[inline]
    pub fn push_entry(entries: &mut Vec<(Term, Term)>, key: &str, value: Term) {
        entries.push((Term::atom(key), value));
    }

    /// The map term of `entries` (a later entry with an equal key wins).
    pub fn map_of_entries(entries: Vec<(Term, Term)>) -> Term {
        Term::Map(Map::from_entries(entries))
    }

    /// `error` with `context` (`Type.field`, `Type::Variant.0`) added to where it happened.
    pub fn in_field(error: ConversionError, context: &'static str) -> ConversionError {
        let mut found = error.found;
        // A `found` we extended already ends with `)`; printed terms never do.
        if found.ends_with(')') && found.contains(" (in ") {
            found.pop();
            found.push_str(", in ");
        } else {
            found.push_str(" (in ");
        }
        found.push_str(context);
        found.push(')');
        ConversionError {
            expected: error.expected,
            found,
        }
    }

    /// The value of a converted element, with `context` added to the error.
    #[inline]
    pub fn field<T: FromTerm>(term: &Term, context: &'static str) -> Result<T, ConversionError> {
        T::from_term(term).map_err(|e| in_field(e, context))
    }

    /// The value under the atom key `key` of `map` (which is `whole`, or inside it); a missing
    /// key is the error `missing_expected`.
    pub fn map_field<T: FromTerm>(
        whole: &Term,
        map: &Map,
        key: &str,
        missing_expected: &'static str,
        context: &'static str,
    ) -> Result<T, ConversionError> {
        match map.get(&Term::atom(key)) {
            Some(value) => field(value, context),
            None => Err(in_field(
                ConversionError::new(missing_expected, whole),
                context,
            )),
        }
    }

    /// The value under the atom key `key` of `map`, or `missing()` when there is no such key.
    pub fn map_field_or<T: FromTerm>(
        map: &Map,
        key: &str,
        context: &'static str,
        missing: impl FnOnce() -> T,
    ) -> Result<T, ConversionError> {
        match map.get(&Term::atom(key)) {
            Some(value) => field(value, context),
            None => Ok(missing()),
        }
    }

    /// A cast of `term`.
    pub fn cast_message(term: &Term) -> SerializedMessage {
        SerializedMessage::Cast {
            variant: String::new(),
            args: encode_to_vec(term),
            metadata: None,
        }
    }

    /// A call of `request` answered on `reply`, through a bytes port bridged to it by a task
    /// of the call's own; `metadata` marks the request as the derive's encoding.
    pub fn call_message<T: FromTerm + Send + 'static>(
        request: &Term,
        reply: RpcReplyPort<T>,
    ) -> SerializedMessage {
        SerializedMessage::Call {
            variant: String::new(),
            args: encode_to_vec(request),
            reply: super::typed_calls::bridge(reply),
            metadata: Some(super::typed_calls::MARKER.to_vec()),
        }
    }

    /// The term of a serialized message's `args`.
    pub fn decode_args(args: &[u8]) -> Result<Term, BoxedDowncastErr> {
        decode_from_slice(args).ok_or(BoxedDowncastErr)
    }

    /// A cast's message.
    pub fn read_cast<M: FromTerm>(args: &[u8]) -> Result<M, BoxedDowncastErr> {
        let term = decode_args(args)?;
        M::from_term(&term).map_err(|error| {
            tracing::debug!(
                message_type = std::any::type_name::<M>(),
                %term,
                %error,
                "cast does not convert"
            );
            BoxedDowncastErr
        })
    }

    /// Logs a call request no `#[rpc]` variant takes.
    pub fn call_rejected<M>(request: &Term, error: ConversionError) -> BoxedDowncastErr {
        tracing::debug!(
            message_type = std::any::type_name::<M>(),
            %request,
            %error,
            "call request does not convert"
        );
        BoxedDowncastErr
    }

    /// Logs a serialized message of a kind a message type cannot take.
    pub fn unexpected<M>(message: &SerializedMessage) -> BoxedDowncastErr {
        let kind = match message {
            SerializedMessage::Cast { .. } => "cast",
            SerializedMessage::Call { .. } => "call",
            SerializedMessage::CallReply(..) => "call reply",
        };
        tracing::debug!(
            message_type = std::any::type_name::<M>(),
            kind,
            "serialized message of the wrong kind"
        );
        BoxedDowncastErr
    }

    /// The binary of a protobuf message's encoding.
    pub fn prost_to_term<P: prost::Message>(message: &P) -> Term {
        Term::Binary(bytes::Bytes::from(message.encode_to_vec()))
    }

    /// A protobuf message from a binary of its encoding.
    pub fn prost_from_term<P: prost::Message + Default>(
        term: &Term,
        expected: &'static str,
    ) -> Result<P, ConversionError> {
        match term {
            Term::Binary(b) => {
                P::decode(b.clone()).map_err(|_| ConversionError::new(expected, term))
            }
            _ => Err(ConversionError::new(expected, term)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::__private::in_field;
    use crate::etf::{ConversionError, FromTerm, Term, ToTerm};

    // The derives name `::node_server`, which resolves inside this crate too.
    #[derive(Debug, PartialEq, crate::ToTerm, crate::FromTerm)]
    enum Local {
        A,
        B { n: u8 },
    }

    #[test]
    fn derives_work_inside_the_crate() {
        let b = Local::B { n: 1 };
        assert_eq!(b.to_term(), Term::parse("{b, #{n => 1}}").unwrap());
        assert_eq!(Local::from_term(&b.to_term()).unwrap(), b);
        assert_eq!(Local::from_term(&Term::atom("a")).unwrap(), Local::A);
    }

    #[test]
    fn field_context_nests() {
        let e = ConversionError::new("an atom", &Term::Int(1));
        let e = in_field(e, "A.x");
        assert_eq!(e.found, "1 (in A.x)");
        let e = in_field(e, "B::C.0");
        assert_eq!(e.found, "1 (in A.x, in B::C.0)");
        assert_eq!(
            e.to_string(),
            "expected an atom, found 1 (in A.x, in B::C.0)"
        );
    }
}
