//! # node_server
//!
//! A node that Erlang/OTP and Elixir clusters accept as one of their own, whose processes are
//! typed `ractor` actors.
//!
//! ## Design
//! The crate is built in layers; a module uses only modules of its own layer or below (no
//! import cycle between modules; `python3 ../shared/tools/modcycles node_server/src` checks).
//!
//! ```text
//!  services   pg  groups  global (+ global/machine, global/wire)  phoenix  priority  builtins
//!             eval (+ eval/{lex, parse, run, bifs, show, node_env}: Erlang expressions)
//!             placement (spawn_on)  kinds (spawnable actors)  spawn (spawn requests)
//!  (above)      \    |      |                                       |        |         |
//!  facade     node (Node: the public API)   handle (ProcessHandle)   start   info (NodeInfo)
//!                 |                              |
//!  actors     server (NodeServer + connections)  session (NodeSession; session/{handshake,
//!                 |                              |   reader, writer, dispatch, services, reply})
//!                 +--------------+---------------+   proxy (RemoteActor)   metrics (/metrics)
//!                                |
//!  core       core::Core = identity + sessions (each with its send_queue) + calls + proxies
//!             + router + rpc (functions) + events + ops + services
//!             (router = registry + signals + delivery rules)
//!                                |
//!  protocol   dist::handshake, connections, global/machine   (sans-IO state machines)
//!  codecs     etf (terms, codec, text), dist (flags, control, packet, atom cache, fragments),
//!             outgoing (what a writer writes)
//! ```
//!
//! 1. **Wire codecs**, pure functions over byte buffers: [`etf`] (terms, their binary codec and
//!    Erlang text syntax) and [`dist`] (flags, control messages, packets with atom cache and
//!    fragments).
//! 2. **Protocol state machines**, pure: the handshake ([`dist::handshake`]) for both roles, the
//!    simultaneous-connect rules ([`connections`]), and the `global` protocol
//!    (`global/machine.rs`): each takes events (and the time) and returns what to do.
//! 3. **The core** (`core.rs`), the node's state by concept, each part owned by its module:
//!    who the node is (`identity`), the live connection to each node (`sessions`), this node's
//!    calls in flight (`calls`), proxies by target (`proxies`), the router (`router`: local
//!    processes by pid, name and alias, links and monitors, and the one implementation of
//!    local delivery and of exit signals that every path uses), rpc functions ([`rpc`]),
//!    node events ([`events`]) and counters ([`ops`]).
//! 4. **Actors and drivers**: [`NodeServer`] (listener and connection setup, over a [`network`]:
//!    TCP with EPMD by default, an in-memory one in the deterministic simulator; it drives
//!    [`connections`]), one [`session::NodeSession`] per peer with its reader and writer tasks
//!    (the reader dispatches through a small trait, so dispatch is unit-tested with a fake
//!    node), and [`proxy::RemoteActor`] proxies that let local code hold an `ActorRef<M>` for
//!    an Erlang process. [`metrics`] serves Prometheus text at `GET /metrics`
//!    ([`NodeConfig::metrics_listen`]), read from the core at each scrape. After writes the node busy-polls briefly so answers are read without
//!    waking a sleeping CPU ([`busy`], [`NodeConfig::busy_wait`]).
//! 5. **The facade**: [`Node`] ([`node`]), what Rust code uses; [`NodeConfig::start`] builds
//!    the core, the node server and the services.
//! 6. **Cluster services** as Erlang has them, above the core (the core never names them; each
//!    keeps its handle in the core's service slots): [`pg`] scopes kept in sync with
//!    `ractor::pg` (and [`groups`] to message a group), the [`global`] name server, Elixir
//!    apps' Phoenix.PubSub over `pg` ([`phoenix`]), priority inboxes ([`priority`]), and
//!    [`builtins`] (the rpc functions every node answers, so `erl_call`, `rpc:call` from a
//!    shell and `nodectl` work on it; `node_server:info/0` answers an [`info::NodeInfo`]).
//!    [`eval`] evaluates Erlang expressions against a small environment trait (sans-IO but
//!    for it) and answers `node_server_eval:eval/2`, what `nodectl eval` calls.
//!    [`admin`] guards rpc and exit signals ([`NodeConfig::admin_allow`]). Spawnable
//!    [`kinds`] are started by other nodes' spawn requests (read by `session/services`), and
//!    [`placement`] picks a node for [`Node::spawn_on`], which sends its request through
//!    [`spawn`].
//!
//! A message's path **out**: [`ProcessHandle::send`] ([`handle`]) looks up the session's
//! [`send_queue`] once, waits while it is busy (`dist_buf_busy_limit`), and encodes the frame
//! straight into the queue's buffer; the writer (`session/writer`) takes the buffer whole and
//! writes it with one syscall. `ActorRef<M>::cast` on a proxy (`proxy`): ractor serializes it
//! with [`ErlangMessage`] (the term's ETF bytes), the proxy frames `SEND` + bytes into the same
//! queue, up to its hard cap (`dist_queue_cap`; past it the message is dropped and counted).
//! [`Node::send`] and the services go through `core::Core::send_term` / `send_pid` to the same
//! queue, or to the router for a local pid.
//!
//! A message's path **in**: the reader (`session/reader`) cuts frames, decodes control and
//! payload (`dist::packet`), and `session/dispatch` acts on the control message: a message to a
//! pid or name goes to the router (`router`), which hands the term to the actor, whose type
//! converts it (or to a service such as a `pg` scope or `global`); links, monitors and exit
//! signals go to the router's rules; replies to this node's calls complete them (`calls`).
//!
//! A call's path: when ractor serializes the call ([`message`]), the caller's typed reply port
//! is bridged to a bytes port by a task of the call's own (ractor does not say which node the
//! call goes to, so nothing of any node's state is in reach there), the proxy sends
//! `MONITOR_P` and `{'$gen_call', {From, [alias|Ref]}, Request}`, and the reader on the way
//! back completes the bytes port with the reply, which the bridge converts for the caller. On
//! the other node, the reader gives the request to the typed actor with a reply port that the
//! session writer waits on, so the actor's reply wakes the writer.
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
pub mod eval;
pub mod events;
pub mod global;
pub mod groups;
pub mod handle;
mod hash;
mod identity;
pub mod info;
pub mod kinds;
pub mod message;
pub mod metrics;
pub mod network;
pub mod node;
pub mod observer;
pub mod ops;
mod outgoing;
pub mod pg;
pub mod phoenix;
pub mod placement;
pub mod priority;
pub mod processes;
mod proxies;
pub mod proxy;
pub mod random;
mod registry;
pub mod remote;
pub mod remote_shell;
mod router;
pub mod rpc;
pub mod send_queue;
pub mod server;
pub mod session;
mod sessions;
pub mod signals;
pub mod sources;
pub mod spawn;
mod start;
pub mod tls;
mod waiter;
#[cfg(feature = "wasm")]
pub mod wasm;

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
pub use handle::{ProcessHandle, SendError};
pub use node::{
    client_connect, client_connect_addr, client_connect_enc, CallError, Node, RegisterError,
};
pub use server::NodeServer;
// Each of these is a trait and its derive macro.
pub use message::{ErlangMessage, FromTerm, ToTerm};
pub use tls::TlsConfig;
