//! # node_server
//!
//! A node that Erlang/OTP and Elixir clusters accept as one of their own, whose processes are
//! typed `ractor` actors.
//!
//! ## Design
//! The crate is built in layers, inside out:
//! 1. **Wire codecs** — pure functions over byte buffers. [`etf`] is the External Term Format:
//!    the [`etf::Term`] model, its binary codec and its Erlang text syntax.
//! 2. **Protocol state machines** (handshake, session bookkeeping) — pure, driven by
//! 3. **thin tokio drivers** (listener, per-connection reader and writer), and
//! 4. **actors**: the node server, one session per peer, and proxies for remote processes.
//!
//! Layers 2 to 4 arrive with the distribution protocol; today the crate provides layer 1.
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
#![forbid(unsafe_code)]

pub mod config;
pub mod dist;
pub mod error;
pub mod etf;
pub mod server;
pub mod session;
pub mod tls;

pub use config::NodeConfig;
pub use error::{ConnectError, NodeError};
pub use server::{
    client_connect, client_connect_addr, client_connect_enc, Node, NodeEvent, NodeServer,
};
pub use tls::TlsConfig;
