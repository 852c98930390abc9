//! Errors of the node layer.

use crate::dist::handshake::HandshakeError;
use crate::dist::DistFlags;

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node name is not `name` or `name@host`.
    #[error("invalid node name {0:?}")]
    BadName(String),
    /// The cookie could not be read or created.
    #[error("cookie: {0}")]
    Cookie(String),
    /// The listener could not bind.
    #[error("cannot listen: {0}")]
    Listen(std::io::Error),
    /// EPMD refused or failed the registration.
    #[error("epmd registration failed: {0}")]
    Epmd(#[from] epmd::ClientError),
    /// The TLS configuration is invalid.
    #[error("tls: {0}")]
    Tls(String),
    /// The node actor could not start.
    #[error("node actor: {0}")]
    Actor(String),
    /// The configured roles cannot be announced.
    #[error("roles: {0}")]
    Roles(String),
}

/// Why a connection to another node failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The node name is not `name@host`.
    #[error("invalid node name {0:?}")]
    BadName(String),
    /// The host or its EPMD could not be reached, or the node's port refused the connection.
    #[error("cannot reach {node}: {reason}")]
    Unreachable {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// EPMD on the node's host does not know the name.
    #[error("{0} is not registered with epmd on its host")]
    UnknownToEpmd(String),
    /// The peer and this node have different cookies.
    #[error("{0} rejected the cookie (or ours rejected its)")]
    CookieRejected(String),
    /// The peer refused: it lacks flags we need, or we lack flags it needs.
    #[error("{node}: not allowed (missing flags {missing})")]
    NotAllowed {
        /// The node.
        node: String,
        /// The flags missing, where known (empty when the peer refused without saying).
        missing: DistFlags,
    },
    /// The handshake failed otherwise.
    #[error("handshake with {node} failed: {error}")]
    Handshake {
        /// The node.
        node: String,
        /// The error.
        error: HandshakeError,
    },
    /// TLS was asked for but the node has no TLS configuration, or the TLS layer failed.
    #[error("tls: {0}")]
    Tls(String),
    /// The connection was not up within the setup time.
    #[error("connecting to {0} timed out")]
    Timeout(String),
    /// The node is shutting down.
    #[error("the local node is stopping")]
    Stopping,
}
