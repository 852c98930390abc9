//! Derive macros that make Rust types Erlang terms, for the `node_server` crate.
//!
//! Use them through `node_server` (`use node_server::message::{ErlangMessage, FromTerm,
//! ToTerm};` brings each trait with its derive); the generated code names `::node_server`.
//! The runnable examples live in the docs of `node_server::message`, since a proc-macro crate
//! cannot run its own macros in doctests.
//!
//! - [`ToTerm`](macro@ToTerm) / [`FromTerm`](macro@FromTerm): `node_server::etf::{ToTerm,
//!   FromTerm}` for structs and enums.
//! - [`ErlangMessage`](macro@ErlangMessage): both of those, plus a serializable
//!   `ractor::Message` and `node_server::message::ErlangMessage`, for an actor's message enum.
//!   `#[rpc]` variants are `gen_server` calls.
//!
//! # Term shapes
//!
//! The shapes are the contract with Erlang code:
//!
//! | Rust | Erlang term |
//! |---|---|
//! | `struct Point { x: i32, y: i32 }` | `#{x => X, y => Y}` |
//! | `#[term(record)] struct Point { x: i32, y: i32 }` | `{point, X, Y}` |
//! | `struct Meters(f64)` | the field's term (transparent) |
//! | `struct Pair(i32, String)` | `{A, B}` |
//! | `#[term(record)] struct Pair(i32, String)` | `{pair, A, B}` |
//! | `struct Marker;` | `marker` |
//! | variant `Ping` | `ping` |
//! | variant `Add(i64, i64)` | `{add, A, B}` |
//! | variant `Put { key: String, value: i64 }` | `{put, #{key => K, value => V}}` |
//! | `#[term(other)] Other(Term)` | any term no other variant takes, unchanged |
//! | `#[rpc] Get(String, RpcReplyPort<T>)` | call request `{get, K}`; the reply is `T`'s term |
//! | `#[rpc] Stats(RpcReplyPort<u64>)` | call request `stats` |
//!
//! Reading a map struct ignores extra keys; a missing key is an error naming the field, except
//! for `Option<T>` fields (`None`) and `#[term(default)]` fields (`Default::default()`). An enum
//! tries the variants whose tag and size fit in declaration order, then the `#[term(other)]`
//! variant.
//!
//! # Attributes
//!
//! | where | attribute | effect |
//! |---|---|---|
//! | struct | `#[term(record)]` | a tagged tuple `{tag, ...}` instead of a map / plain tuple |
//! | struct | `#[term(tag = "name")]` | the record tag or a unit struct's atom |
//! | variant | `#[term(rename = "name")]` | the variant's atom |
//! | variant | `#[term(other)]` | the catch-all, which must be `Name(Term)` |
//! | variant | `#[rpc]` (`ErlangMessage` only) | a call; the last field must be `RpcReplyPort<T>` |
//! | named field | `#[term(rename = "name")]` | the map key |
//! | named field | `#[term(default)]` | a missing key reads as `Default::default()` |
//! | named field | `#[term(flatten)]` | the field's own map entries go into this map (see below) |
//!
//! # Flattening
//!
//! `#[term(flatten)]` on a named field of a map struct or a map variant (`Put { .. }`) merges
//! the field's map into the enclosing one, so a long map can be split into sub-structs
//! without changing its term:
//!
//! ```rust,ignore
//! #[derive(ToTerm, FromTerm)]
//! struct Traffic { bytes_in: u64, bytes_out: u64 }
//!
//! #[derive(ToTerm, FromTerm)]
//! struct Info {
//!     node: Atom,
//!     #[term(flatten)]
//!     traffic: Traffic,                      // #{node => N, bytes_in => I, bytes_out => O}
//! }
//! ```
//!
//! - `ToTerm` needs the field's type to implement `node_server::etf::ToMapEntries`, which the
//!   derive implements for map structs (and `node_server` for `Map`, `HashMap` and `BTreeMap`).
//!   Any other type, one whose term would not be a map, is a compile error at the field: a
//!   flattened value is never a non-map at run time. Entries are added in field order, and
//!   on a key written twice the later entry wins.
//! - `FromTerm` reads the field's type from the whole map (a map struct ignores the keys it
//!   does not know, so it takes its own keys and leaves the others); errors name the field as
//!   for any other (`in Counters.received, in Info.traffic`). A type whose `FromTerm` does not
//!   take a map fails to read at run time, as any mismatched field does.
//! - It is an error on a tuple field (tuple structs, tuple variants), in a `#[term(record)]`
//!   struct, and together with `rename` or `default` (a flattened field has no key).
//!
//! # Names
//!
//! Type and variant names become snake_case atoms: an underscore goes before an upper-case
//! letter that follows a lower-case letter or a digit, and before the last capital of a run of
//! capitals when a lower-case letter follows it (`GetAll` → `get_all`, `HTTPRequest` →
//! `http_request`, `Vec2D` → `vec2_d`). Field names are map keys as written.
//!
//! # Example
//!
//! ```rust,ignore
//! use node_server::etf::Term;
//! use node_server::message::{ErlangMessage, FromTerm, ToTerm};
//! use ractor::RpcReplyPort;
//!
//! #[derive(ToTerm, FromTerm)]
//! struct Point { x: i32, y: i32 }            // #{x => 1, y => 2}
//!
//! #[derive(ErlangMessage)]
//! enum KvMsg {
//!     Put { key: String, value: i64 },       // cast {put, #{key => K, value => V}}
//!     Delete(String),                        // cast {delete, K}
//!     #[rpc]
//!     Get(String, RpcReplyPort<Option<i64>>), // call {get, K} -> V | undefined
//!     #[term(other)]
//!     Unknown(Term),                         // any other cast
//! }
//! ```
#![forbid(unsafe_code)]

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

mod message;
mod model;
mod naming;
mod term;

use model::Mode;

/// Implements `node_server::etf::ToTerm` with the [term shapes](crate#term-shapes).
///
/// Helper attribute: `#[term(...)]` (see [attributes](crate#attributes)).
#[proc_macro_derive(ToTerm, attributes(term))]
pub fn derive_to_term(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    model::parse(&input, Mode::Term)
        .map(|model| term::to_term_impl(&model))
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Implements `node_server::etf::FromTerm` with the [term shapes](crate#term-shapes).
///
/// Helper attribute: `#[term(...)]` (see [attributes](crate#attributes)).
#[proc_macro_derive(FromTerm, attributes(term))]
pub fn derive_from_term(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    model::parse(&input, Mode::Term)
        .map(|model| term::from_term_impl(&model))
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

/// Makes an actor message type cross to Erlang: implements `node_server::etf::ToTerm`,
/// `node_server::etf::FromTerm`, a serializable `ractor::Message` and
/// `node_server::message::ErlangMessage`. Do not derive `ToTerm` / `FromTerm` as well.
///
/// Variants marked `#[rpc]` are `gen_server` calls: their last field must be an
/// `RpcReplyPort<T>` with `T: ToTerm + FromTerm + Send + 'static`, and the request term is the
/// variant's term without it (`Get(String, RpcReplyPort<T>)` is `{get, K}`,
/// `Stats(RpcReplyPort<u64>)` is `stats`). The other variants are casts; `FromTerm` reads
/// casts only, and `ToTerm` of a call gives its request.
///
/// `Message::serialize` makes a `SerializedMessage::Call` for a call (`args`: the request's ETF
/// with the version byte 131; `reply`: a bytes port bridged to the variant's typed port) and a
/// `SerializedMessage::Cast` for the rest; `Message::deserialize` goes back. See
/// `node_server::message` for the details and a runnable example.
#[proc_macro_derive(ErlangMessage, attributes(term, rpc))]
pub fn derive_erlang_message(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    model::parse(&input, Mode::Message)
        .map(|model| {
            let mut out = term::to_term_impl(&model);
            out.extend(term::from_term_impl(&model));
            out.extend(message::message_impls(&model));
            out
        })
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}
