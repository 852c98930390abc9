//! # epmd
//!
//! A drop-in replacement for Erlang's port mapper daemon, and the async client a node uses to
//! talk to any epmd.
//!
//! ## Design
//! - [`protocol`] is the wire format, sans IO: requests and replies as values, decoded from
//!   byte buffers (`Ok(None)` while a frame is incomplete, a typed error when it is invalid).
//! - [`server`] drives it with tokio: a task per listener and per connection, registrations
//!   that live exactly as long as their socket, limits that keep hostile clients from costing
//!   more than their own connection.
//! - [`client`] asks any epmd (real or ours) to register, look up, list, stop and kill.
//! - [`roles`] encodes node roles in the registration's EXTRA field, which real epmd stores
//!   and returns unchanged.
//!
//! The `epmd` binary wraps the server and the client with real epmd's command line.
//!
//! ## Example
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use epmd::{Client, NodeInfo, ServerConfig};
//!
//! let server = ServerConfig::new().port(0).addresses(vec!["127.0.0.1".parse()?]).start().await?;
//! let client = Client::new("127.0.0.1", server.port());
//!
//! let mut info = NodeInfo::new("web", 5555);
//! info.extra = epmd::roles::encode_roles(&["httpd"])?;
//! let registration = client.register(info).await?;
//! assert_ne!(registration.creation(), 0);
//!
//! assert_eq!(client.port_please("web").await?.map(|n| n.port), Some(5555));
//! assert_eq!(client.nodes_with_role("httpd").await?.len(), 1);
//!
//! drop(registration); // closing the socket unregisters the node
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]

pub mod client;
pub mod protocol;
pub mod roles;
pub mod server;

pub use client::{Client, ClientError, Registration, StopOutcome};
pub use protocol::{Names, NodeInfo, NodeType, DEFAULT_PORT};
pub use server::{ServerConfig, ServerHandle};

/// The port in `ERL_EPMD_PORT`, when it is set to a valid port.
pub fn env_port() -> Option<u16> {
    std::env::var("ERL_EPMD_PORT").ok()?.trim().parse().ok()
}
