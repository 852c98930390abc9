//! Group messaging over the node's `pg` scopes: send to every member, call one member with
//! retries, pick a member by key or in turn, find groups by name prefix.
//!
//! Groups are named as in `ractor::pg` (see [`crate::pg`] for how names map to Erlang group
//! terms); members are Erlang pids, local actors and remote processes alike, as
//! `pg:get_members/2` shows them on this node.
//!
//! ```no_run
//! # async fn example(node: node_server::Node) -> Result<(), Box<dyn std::error::Error>> {
//! use std::time::Duration;
//! use node_server::etf::Term;
//! use node_server::groups::Pick;
//!
//! let cache = node.groups(); // scope `pg`
//! let sent = cache.send("cache/v2", &Term::atom("flush")).await;
//! let reply = cache
//!     .call("cache/v2", Term::atom("stats"), Pick::Key(42), Duration::from_secs(1))
//!     .await?;
//! println!("{sent} members flushed; one says {reply}");
//! # Ok(()) }
//! ```
//!
//! The node also answers `pg:get_members/1,2`, `pg:get_local_members/1,2` and
//! `pg:which_groups/0,1` by rpc, so tools that ask an Erlang node these questions can ask ours.

use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ractor::ActorRef;

use crate::dist::control::ProcessRef;
use crate::etf::{Atom, Pid, Term};
use crate::message::{ErlangMessage, ToTerm};
use crate::node::{CallError, Node};
use crate::pg::{group_name, group_term, ScopeMsg};
use crate::remote::RemoteTarget;

/// How [`Groups::call`] orders the members it tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Pick {
    /// A random member first.
    Any,
    /// The members in turn, call after call (one counter per process).
    RoundRobin,
    /// The member a key hashes to (rendezvous hashing over the sorted members, so every node
    /// with the same view picks the same member and a membership change moves few keys).
    Key(u64),
}

/// Why a group call failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum GroupCallError {
    /// The group has no members.
    #[error("group {0} has no members")]
    NoMembers(String),
    /// Every member tried failed; the last error.
    #[error("all {tried} members failed; last: {last}")]
    AllFailed {
        /// How many members were tried.
        tried: usize,
        /// The last member's error.
        last: CallError,
    },
}

/// The process groups of one scope of a node: get one with [`Node::groups`].
#[derive(Debug, Clone)]
pub struct Groups {
    node: Node,
    scope: Atom,
}

/// The node's round-robin position for [`Pick::RoundRobin`], kept in the core's services (one
/// per node, not per process: two nodes in one process pick independently).
#[derive(Default)]
struct RoundRobin(AtomicUsize);

impl Node {
    /// The groups of scope `pg`, the default scope.
    pub fn groups(&self) -> Groups {
        Groups {
            node: self.clone(),
            scope: Atom::new("pg"),
        }
    }
}

impl Groups {
    /// The same node's groups in another scope (one listed in
    /// [`crate::NodeConfig::pg_scopes`]).
    pub fn scope(mut self, scope: &str) -> Groups {
        self.scope = Atom::new(scope);
        self
    }

    /// Whether this node runs the scope.
    pub fn is_running(&self) -> bool {
        self.scope_actor().is_some()
    }

    fn scope_actor(&self) -> Option<ActorRef<ScopeMsg>> {
        crate::pg::PgScopes::of(self.node.shared(), &self.scope)
    }

    /// Adds a local actor to a group: it joins the `ractor::pg` group and Erlang sees its pid
    /// in `pg:get_members`. Messages from Erlang reach it typed, as for a registered actor.
    pub fn join<M: ErlangMessage>(&self, group: &str, actor: &ActorRef<M>) -> Pid {
        let pid = self.node.pid_of(actor);
        ractor::pg::join_scoped(
            crate::pg::ractor_scope_of(&self.node.shared().id.config, self.scope.as_str()),
            group.to_owned(),
            vec![actor.get_cell()],
        );
        pid
    }

    /// Takes a local actor out of a group.
    pub fn leave<M: ErlangMessage>(&self, group: &str, actor: &ActorRef<M>) {
        ractor::pg::leave_scoped(
            crate::pg::ractor_scope_of(&self.node.shared().id.config, self.scope.as_str()),
            group.to_owned(),
            vec![actor.get_cell()],
        );
    }

    /// Every member's pid, local and remote, sorted.
    pub async fn members(&self, group: &str) -> Vec<Pid> {
        self.members_of(group_term(group), false).await
    }

    /// Every member as an `ActorRef<M>`: local actors as they are, remote processes through
    /// proxies made on this request (and cached until their node disconnects; see
    /// [`crate::Node::remote_pid`]). Members whose node cannot be reached are left out.
    pub async fn actor_refs<M: ractor::Message>(&self, group: &str) -> Vec<ActorRef<M>> {
        let scope = crate::pg::ractor_scope_of(&self.node.shared().id.config, self.scope.as_str());
        let mut refs: Vec<ActorRef<M>> =
            ractor::pg::get_scoped_local_members(&scope, &group.to_owned())
                .into_iter()
                .map(Into::into)
                .collect();
        let me = &self.node.shared().id;
        for pid in self.members(group).await {
            if me.is_local(&pid) {
                continue;
            }
            match self.node.remote_pid::<M>(pid).await {
                Ok(r) => refs.push(r),
                Err(e) => tracing::debug!(error = %e, "no proxy for a group member"),
            }
        }
        refs
    }

    /// This node's members' pids, sorted.
    pub async fn local_members(&self, group: &str) -> Vec<Pid> {
        self.members_of(group_term(group), true).await
    }

    async fn members_of(&self, group: Term, local_only: bool) -> Vec<Pid> {
        let Some(scope) = self.scope_actor() else {
            return Vec::new();
        };
        let mut pids = crate::pg::members(&scope, group, local_only).await;
        pids.sort();
        pids
    }

    /// The names of the groups with members, sorted.
    pub async fn which_groups(&self) -> Vec<String> {
        let Some(scope) = self.scope_actor() else {
            return Vec::new();
        };
        let mut names: Vec<String> = crate::pg::groups(&scope)
            .await
            .iter()
            .map(group_name)
            .collect();
        names.sort();
        names
    }

    /// The groups whose name starts with `prefix` (categories such as `cache/`).
    pub async fn with_prefix(&self, prefix: &str) -> Vec<String> {
        let mut names = self.which_groups().await;
        names.retain(|n| n.starts_with(prefix));
        names
    }

    /// Sends `msg` to every member; returns how many members it went to.
    pub async fn send(&self, group: &str, msg: &impl ToTerm) -> usize {
        let members = self.members(group).await;
        let term = msg.to_term();
        for pid in &members {
            self.node.shared().send_pid(pid, term.clone());
        }
        members.len()
    }

    /// The member `pick` chooses first, if the group has any.
    pub async fn pick(&self, group: &str, pick: Pick) -> Option<Pid> {
        self.order(self.members(group).await, pick)
            .into_iter()
            .next()
    }

    /// Calls one member (`gen_server:call` semantics) and waits up to `timeout`; when it does
    /// not answer in time or is gone, tries the next member `pick` gives, until one answers or
    /// all were tried. A retried request may run on several members, so requests sent this
    /// way must be idempotent.
    pub async fn call(
        &self,
        group: &str,
        request: Term,
        pick: Pick,
        timeout: Duration,
    ) -> Result<Term, GroupCallError> {
        let members = self.order(self.members(group).await, pick);
        if members.is_empty() {
            return Err(GroupCallError::NoMembers(group.to_owned()));
        }
        let mut last = CallError::Timeout;
        for pid in &members {
            match call_pid(&self.node, pid, request.clone(), timeout).await {
                Ok(reply) => return Ok(reply),
                Err(e) => {
                    tracing::debug!(?pid, error = %e, "group call failed; trying the next member");
                    last = e;
                }
            }
        }
        Err(GroupCallError::AllFailed {
            tried: members.len(),
            last,
        })
    }

    /// The members in the order `pick` tries them.
    fn order(&self, mut members: Vec<Pid>, pick: Pick) -> Vec<Pid> {
        if members.is_empty() {
            return members;
        }
        match pick {
            Pick::Any => {
                let start = random_index(members.len());
                members.rotate_left(start);
            }
            Pick::RoundRobin => {
                let next = self
                    .node
                    .shared()
                    .services
                    .get_or_insert(RoundRobin::default);
                let start = next.0.fetch_add(1, Ordering::Relaxed) % members.len();
                members.rotate_left(start);
            }
            Pick::Key(key) => {
                members.sort_by_key(|pid| std::cmp::Reverse(weight(key, pid)));
            }
        }
        members
    }
}

/// Rendezvous weight of a member for a key: stable across nodes and runs.
fn weight(key: u64, pid: &Pid) -> u64 {
    // SipHash with fixed keys, so the same key picks the same member everywhere.
    #[allow(deprecated)]
    let mut h = std::hash::SipHasher::new_with_keys(0x6e6f_6465, 0x7067_7270);
    key.hash(&mut h);
    pid.node.as_str().hash(&mut h);
    pid.id.hash(&mut h);
    pid.serial.hash(&mut h);
    pid.creation.hash(&mut h);
    h.finish()
}

fn random_index(len: usize) -> usize {
    // Without randomness, the first member.
    (crate::random::u64().unwrap_or(0) % len as u64) as usize
}

/// A `gen_server:call` to a pid of this node or another.
async fn call_pid(
    node: &Node,
    pid: &Pid,
    request: Term,
    timeout: Duration,
) -> Result<Term, CallError> {
    let shared = node.shared();
    if !shared.id.is_local(pid) {
        return node
            .call(&RemoteTarget::Pid(pid.clone()), request, timeout)
            .await;
    }
    let (tx, rx) = tokio::sync::oneshot::channel::<Term>();
    let tx = std::sync::Mutex::new(Some(tx));
    let on_reply = crate::message::ReplyTo::new(move |reply| {
        if let Some(tx) = crate::lock(&tx).take() {
            let _ = tx.send(reply);
        }
    });
    match shared
        .router
        .call(&ProcessRef::Pid(pid.clone()), &request, on_reply)
    {
        Some(true) => {}
        Some(false) => {
            return Err(CallError::BadReply(format!(
                "{pid:?} takes no call {request}"
            )))
        }
        None => return Err(CallError::NoProcess),
    }
    match tokio::time::timeout(timeout, rx).await {
        Err(_) => Err(CallError::Timeout),
        Ok(Err(_)) => Err(CallError::NoProcess),
        Ok(Ok(reply)) => Ok(reply),
    }
}

/// Registers `pg:get_members/1,2`, `pg:get_local_members/1,2` and `pg:which_groups/0,1` as
/// rpc functions answered from this node's scopes.
pub(crate) fn register_functions(node: &Node) {
    fn scope_and_group(args: &[Term]) -> Option<(Atom, Term)> {
        match args {
            [group] => Some((Atom::new("pg"), group.clone())),
            [Term::Atom(scope), group] => Some((scope.clone(), group.clone())),
            _ => None,
        }
    }
    for (function, local_only) in [("get_members", false), ("get_local_members", true)] {
        let n = node.clone();
        node.register_fn("pg", function, move |args| {
            let n = n.clone();
            async move {
                let (scope, group) = scope_and_group(&args)
                    .ok_or_else(|| crate::rpc::RpcFailure::Error(Term::atom("badarg")))?;
                let pids = n
                    .groups()
                    .scope(scope.as_str())
                    .members_of(group, local_only)
                    .await;
                Ok(Term::list(
                    pids.into_iter().map(Term::from).collect::<Vec<_>>(),
                ))
            }
        });
    }
    let n = node.clone();
    node.register_fn("pg", "which_groups", move |args| {
        let n = n.clone();
        async move {
            let scope = match &args[..] {
                [] => Atom::new("pg"),
                [Term::Atom(s)] => s.clone(),
                _ => return Err(crate::rpc::RpcFailure::Error(Term::atom("badarg"))),
            };
            let groups = match n.groups().scope(scope.as_str()).scope_actor() {
                Some(actor) => crate::pg::groups(&actor).await,
                None => Vec::new(),
            };
            Ok(Term::list(groups))
        }
    });
}
