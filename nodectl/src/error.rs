//! Why a command failed: one clear line each, a short kind for scripts, an exit code.

use std::time::Duration;

use node_server::etf::Term;

/// Why a `nodectl` command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CtlError {
    /// The command line is wrong.
    #[error("{0}")]
    Usage(String),
    /// No cookie could be found, or the cookie file could not be read or written.
    #[error("cookie: {0}")]
    Cookie(String),
    /// EPMD could not be asked.
    #[error("epmd on {host}: {source}")]
    Epmd {
        /// The host asked.
        host: String,
        /// The error.
        #[source]
        source: epmd::ClientError,
    },
    /// EPMD does not know the node.
    #[error("unknown: {node} is not registered with epmd on {host}")]
    UnknownNode {
        /// The node.
        node: String,
        /// Its host.
        host: String,
    },
    /// Nothing matched a lookup.
    #[error("not found: {0}")]
    NotFound(String),
    /// The node refused our cookie (or we refused its).
    #[error("refused cookie: {0} rejected the cookie")]
    CookieRejected(String),
    /// The node or its host could not be reached.
    #[error("unreachable: {node}: {reason}")]
    Unreachable {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// The connection could not be set up otherwise.
    #[error("cannot connect to {node}: {reason}")]
    Connect {
        /// The node.
        node: String,
        /// Why.
        reason: String,
    },
    /// No answer in time.
    #[error("timeout after {after:?}: {what}")]
    Timeout {
        /// What was waited for.
        what: String,
        /// How long.
        after: Duration,
    },
    /// The node's admin guard refused us.
    #[error("refused: {node} allows rpc and shutdown only from its admin nodes, and {us} is not one of them")]
    AdminRefused {
        /// The node that refused.
        node: String,
        /// The name we connected as.
        us: String,
    },
    /// An rpc call failed on the remote side.
    #[error("badrpc from {node}: {reason}")]
    BadRpc {
        /// The node.
        node: String,
        /// The reason, in Erlang syntax.
        reason: String,
    },
    /// The node answered something we did not expect.
    #[error("unexpected answer from {node}: {answer}")]
    Unexpected {
        /// The node.
        node: String,
        /// The answer, in Erlang syntax.
        answer: String,
    },
    /// The actor asked for is not registered, or not alive.
    #[error("no actor: {0}")]
    NoActor(String),
    /// The node is not a node of ours (an Erlang node): it has no `node_server:kinds/0`.
    #[error("not ours: {node} is not a node_server node (it has no node_server:{function}), so it has no spawnable kinds")]
    NotOurs {
        /// The node.
        node: String,
        /// The function it lacks, `kinds/0` or `spawn/3`.
        function: String,
    },
    /// The node has no spawnable kind of that name (and version).
    #[error("unknown kind: {node} has no kind {kind} (it has: {known})")]
    UnknownKind {
        /// The kind asked for.
        kind: String,
        /// The node.
        node: String,
        /// Its kinds, `name/version` separated by commas, or `none`.
        known: String,
    },
    /// No node satisfies the placement and the kind's requirements; the text names the
    /// requirement (`no candidate node for kind counter: role:db: ...`).
    #[error("{0}")]
    NoCandidate(String),
    /// The spawn was refused, or the new process exited at once (arguments that do not fit
    /// the kind, say); nothing is left running.
    #[error("spawn failed: {0}")]
    Spawn(String),
    /// A node refused or failed a module operation (`load`, `unload`): the node's text (a
    /// refused source authority, a bad module, a hash that is not loaded).
    #[error("{node}: {reason}")]
    Source {
        /// The node.
        node: String,
        /// What it said.
        reason: String,
    },
    /// Our own node could not start.
    #[error("cannot start nodectl's node: {0}")]
    Start(#[from] node_server::NodeError),
    /// `eval` gave an error: the text the Erlang shell prints for it
    /// (`** exception error: ...`, `* 1:5: variable 'Y' is unbound`).
    #[error("{0}")]
    Eval(String),
    /// `repl`: the node could not be reached any more.
    #[error("connection to {node} lost: {reason}")]
    Lost {
        /// The node.
        node: String,
        /// Why the last call failed.
        reason: String,
    },
    /// The dashboard could not serve (its address is taken, say).
    #[error("dashboard: {0}")]
    Dashboard(String),
    /// Some of several operations failed (`shutdown --all`).
    #[error("{failed} of {total} failed")]
    Partial {
        /// How many failed.
        failed: usize,
        /// How many there were.
        total: usize,
    },
}

impl CtlError {
    /// A short, stable name of the failure, for `--json` output.
    pub fn kind(&self) -> &'static str {
        match self {
            CtlError::Usage(_) => "usage",
            CtlError::Cookie(_) => "cookie",
            CtlError::Epmd { .. } => "epmd",
            CtlError::UnknownNode { .. } => "unknown",
            CtlError::NotFound(_) => "not_found",
            CtlError::CookieRejected(_) => "refused_cookie",
            CtlError::Unreachable { .. } => "unreachable",
            CtlError::Connect { .. } => "connect",
            CtlError::Timeout { .. } => "timeout",
            CtlError::AdminRefused { .. } => "not_allowed",
            CtlError::BadRpc { .. } => "badrpc",
            CtlError::Unexpected { .. } => "unexpected",
            CtlError::NoActor(_) => "no_actor",
            CtlError::NotOurs { .. } => "not_ours",
            CtlError::UnknownKind { .. } => "unknown_kind",
            CtlError::NoCandidate(_) => "no_candidate",
            CtlError::Spawn(_) => "spawn",
            CtlError::Source { .. } => "source",
            CtlError::Start(_) => "start",
            CtlError::Dashboard(_) => "dashboard",
            CtlError::Eval(_) => "eval",
            CtlError::Lost { .. } => "lost",
            CtlError::Partial { .. } => "partial",
        }
    }

    /// The process exit code: 2 for a wrong command line, 1 for every other failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            CtlError::Usage(_) => 2,
            _ => 1,
        }
    }

    /// The error for an rpc whose answer was `{badrpc, Reason}`.
    pub(crate) fn from_badrpc(node: &str, us: &str, reason: &Term) -> CtlError {
        if let Some([exit, inner]) = reason.as_tuple() {
            if exit.is_atom("EXIT") {
                if let Some([tag, _]) = inner.as_tuple() {
                    if tag.is_atom("not_allowed") {
                        return CtlError::AdminRefused {
                            node: node.to_owned(),
                            us: us.to_owned(),
                        };
                    }
                }
            }
        }
        CtlError::BadRpc {
            node: node.to_owned(),
            reason: crate::pretty::pretty(reason),
        }
    }
}
