//! Errors of the node layer.

use crate::dist::handshake::HandshakeError;
use crate::dist::DistFlags;

/// What is wrong with a node name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameProblem {
    /// No `@host` part where a full name is needed.
    #[error("a node name is name@host (no @host given)")]
    NoHost,
    /// Nothing before the `@`.
    #[error("the part before @ is empty")]
    EmptyName,
    /// Nothing after the `@`.
    #[error("the host after @ is empty")]
    EmptyHost,
    /// More than one `@`.
    #[error("it has more than one @")]
    TwoAts,
    /// The name is this node's own.
    #[error("it is this node")]
    ThisNode,
}

impl NameProblem {
    /// What is wrong with `name` as a full node name `name@host`, if anything.
    pub fn of_full_name(name: &str) -> Option<NameProblem> {
        let Some((alive, host)) = name.split_once('@') else {
            return Some(NameProblem::NoHost);
        };
        if alive.is_empty() {
            Some(NameProblem::EmptyName)
        } else if host.is_empty() {
            Some(NameProblem::EmptyHost)
        } else if host.contains('@') {
            Some(NameProblem::TwoAts)
        } else {
            None
        }
    }
}

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NodeError {
    /// The node name is not `name` or `name@host`.
    #[error("invalid node name {name:?}: {problem}")]
    BadName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
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
    /// The metrics listener ([`crate::NodeConfig::metrics_listen`]) could not bind.
    #[error("cannot serve metrics: {0}")]
    Metrics(std::io::Error),
}

/// Why a connection to another node failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The node name is not `name@host`, or names this node.
    #[error("invalid node name {name:?}: {problem}")]
    BadName {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
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
