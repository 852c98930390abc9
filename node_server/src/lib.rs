//! # node_server
//!
//! A node that Erlang/OTP and Elixir clusters accept as one of their own, whose processes are
//! typed `ractor` actors.
//!
//! ## Design
//! The crate is built in layers, inside out:
//! 1. **Wire codecs**, pure functions over byte buffers: [`etf`] (terms, their binary codec and
//!    Erlang text syntax) and [`dist`] (flags, control messages, packets with atom cache and
//!    fragments).
//! 2. **Protocol state machines**, pure: the handshake ([`dist::handshake`]) for both roles,
//!    and the connection table with its simultaneous-connect rules ([`connections`]).
//! 3. **Thin tokio drivers**: the listener (the byte streams come from a [`network`]: TCP with
//!    EPMD by default, an in-memory one in the deterministic simulator), and per connection a
//!    reader task (frames, ticks, decoding) and a writer task (drains the send queue into one write, ticks when idle);
//!    after writes the node busy-polls briefly so answers are read without waking a sleeping
//!    CPU ([`busy`], [`NodeConfig::busy_wait`]).
//! 4. **Actors**: [`NodeServer`] (listener, EPMD registration, sessions by node, connection
//!    setup with simultaneous-connect resolution), one [`session::NodeSession`] per peer
//!    (control messages, `net_kernel`, routing to local actors), and
//!    [`proxy::RemoteActor`] proxies that let local code hold an `ActorRef<M>` for an
//!    Erlang process.
//! 5. **Cluster services** as Erlang has them: [`pg`] scopes kept in sync with `ractor::pg`
//!    (and [`groups`] to message a group), the [`global`] name server, and Elixir apps'
//!    Phoenix.PubSub over `pg` ([`phoenix`]).
//! 6. **Operations**: [`builtins`] (the rpc functions every node answers, so `erl_call`,
//!    `rpc:call` from a shell and `nodectl` work on it; [`info`] is what a node says of itself), [`ops`] (traffic counters, graceful
//!    stop on `init:stop`, [`Node::wait_stopped`]) and [`admin`] (the optional admin guard
//!    on rpc and exit signals, [`NodeConfig::admin_allow`]).
//!
//! A message's path out: `ActorRef<M>::cast` on a proxy, ractor serializes it with
//! [`ErlangMessage`] (the term's ETF bytes), the proxy queues `SEND` + bytes on its session,
//! the writer frames it. In: the reader decodes control and payload, resolves the pid or
//! registered name and hands the term to the actor, whose type converts it.
//!
//! A call's path: the caller's typed reply port is parked when ractor serializes the call
//! ([`message`]), the proxy sends `MONITOR_P` and `{'$gen_call', {From, [alias|Ref]}, Request}`,
//! and the reader on the way back converts the reply term and completes the parked port, which
//! wakes the caller. On the other node, the reader gives the request to the typed actor with a
//! reply port that the session writer waits on, so the actor's reply wakes the writer. No task
//! is spawned per call on either side.
//!
//! ## Example
//! ```
//! use node_server::etf::Term;
//!
//! // What Erlang's term_to_binary({ok, 1}) gives, with UTF-8 atoms.
//! let bytes = [131, 104, 2, 119, 2, b'o', b'k', 97, 1];
//! let term = Term::decode_slice(&bytes).unwrap();
//! assert_eq!(term.to_string(), "{ok,1}");
//! assert_eq!(&term.encode()[..], &bytes);
//! ```
//!
//! Starting a node that Erlang can ping (`net_adm:ping('demo@HOST')` gives `pong`):
//! ```no_run
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use node_server::{client_connect, NodeConfig};
//!
//! let node = NodeConfig::new("demo").cookie("secret").start().await?;
//! client_connect(&node, "other@localhost").await?;
//! println!("connected to {:?}", node.connected());
//! # Ok(()) }
//! ```
#![forbid(unsafe_code)]

// Lets the derive macros' `::node_server::...` paths resolve inside this crate too.
extern crate self as node_server;

pub mod admin;
pub mod builtins;
pub mod busy;
mod calls;
pub mod config;
pub mod connections;
mod core;
pub mod dist;
pub mod error;
pub mod etf;
pub mod events;
pub mod global;
pub mod groups;
mod hash;
mod identity;
pub mod info;
pub mod message;
pub mod network;
pub mod node;
pub mod ops;
mod outgoing;
pub mod pg;
pub mod phoenix;
pub mod priority;
mod proxies;
pub mod proxy;
pub mod random;
mod registry;
pub mod remote;
mod router;
pub mod rpc;
pub mod server;
pub mod session;
mod sessions;
pub mod signals;
mod start;
pub mod tls;
mod waiter;

/// Locks `m`, also after a panic in another holder: every critical section in this crate
/// leaves its data consistent, and a panic elsewhere must not wedge the node.
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// Reads `l`, also after a panic in another holder (as [`lock`]).
pub(crate) fn read<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    l.read().unwrap_or_else(|e| e.into_inner())
}

/// Writes `l`, also after a panic in another holder (as [`lock`]).
pub(crate) fn write<T>(l: &std::sync::RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    l.write().unwrap_or_else(|e| e.into_inner())
}

pub use config::NodeConfig;
pub use error::{ConnectError, NameProblem, NodeError};
pub use events::NodeEvent;
pub use node::{
    client_connect, client_connect_addr, client_connect_enc, CallError, Node, RegisterError,
};
pub use server::NodeServer;
// Each of these is a trait and its derive macro.
pub use message::{ErlangMessage, FromTerm, ToTerm};
pub use tls::TlsConfig;
