//! Process groups shared with Erlang: OTP `pg` scopes that stay in sync with `ractor::pg`.
//!
//! Each configured scope (see [`crate::NodeConfig::pg_scopes`]) runs a scope process that
//! speaks OTP 23+'s `pg` protocol with the same-named scope on every connected node, Erlang or
//! ours:
//!
//! - on a new connection (hidden or visible) it sends `{discover, Self}` to `{Scope, Node}`;
//!   a scope that hears `{discover, Peer}` answers with the cast `{sync, Self, [{Group, Pids}]}`
//!   and, the first time, its own discover;
//! - `{join, Peer, Group, Pids}` and `{leave, Peer, Pids, Groups}` carry later changes.
//!
//! The scope mirrors both ways:
//! - a local actor that joins a group of the matching `ractor::pg` scope is announced to every
//!   peer (with its Erlang pid, made on first use); when it leaves or stops, the leave is
//!   announced;
//! - a remote process that joins is a member of the scope's group (as a pid: see
//!   [`crate::groups::Groups`]); it leaves when it leaves, when its node disconnects, or when
//!   its scope process exits (peer scopes are monitored, as OTP's scopes monitor each other).
//!   With [`crate::NodeConfig::pg_mirror_remote`] it is also put in the `ractor::pg` group as a
//!   [`crate::proxy::RemoteActor`] proxy, and taken out again with it. Without (the default),
//!   no proxy is made: an `ActorRef` comes only when asked for
//!   ([`crate::groups::Groups::actor_refs`]).
//!
//! Names: the Erlang scope `pg` is ractor's default scope, any other scope keeps its name.
//! A group that is an atom in Erlang has the atom's text as its ractor name; any other group
//! term (a tuple, a binary) is named by its Erlang text (`{cache,v2}`, `<<"jobs">>`), and a
//! ractor name that reads as a tuple, list, map, string or binary literal goes back to that
//! term. Any other name is an atom.
//!
//! An actor joined through `ractor::pg` directly gets messages from Erlang through ractor's
//! serialized path (an actor whose type is not an [`crate::ErlangMessage`] drops them); join
//! through [`crate::groups::Groups::join`] to get typed delivery and the fallback for terms that
//! do not fit.

use std::sync::Arc;
use std::time::Duration;

use ractor::pg::GroupChangeMessage;
use ractor::{
    Actor, ActorCell, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent,
};

use crate::core::Core;
use crate::dist::control::Control;
use crate::etf::{Atom, Pid, Term};
use crate::events::NodeEvent;
// A fixed hasher: syncs list groups in map order, which must not differ between runs.
use crate::hash::FastMap as HashMap;
use crate::remote::RemoteTarget;

/// The `ractor::pg` scope name of an Erlang `pg` scope.
pub fn ractor_scope(scope: &str) -> String {
    if scope == "pg" {
        ractor::pg::DEFAULT_SCOPE.to_owned()
    } else {
        scope.to_owned()
    }
}

/// The `ractor::pg` scope name of an Erlang `pg` scope on a node configured by `config`:
/// [`ractor_scope`], after the node's `pg` namespace if it has one
/// ([`crate::NodeConfig::pg_namespace`]).
pub(crate) fn ractor_scope_of(config: &crate::NodeConfig, scope: &str) -> String {
    match &config.pg.namespace {
        Some(ns) => format!("{ns}{}", ractor_scope(scope)),
        None => ractor_scope(scope),
    }
}

/// The Erlang group term of a `ractor::pg` group name.
pub fn group_term(name: &str) -> Term {
    if name.starts_with(['{', '[', '<', '"', '#']) {
        if let Ok(term) = Term::parse(name) {
            return term;
        }
    }
    Term::atom(name)
}

/// The `ractor::pg` group name of an Erlang group term.
pub fn group_name(group: &Term) -> String {
    match group {
        Term::Atom(a) => a.as_str().to_owned(),
        other => format!("{other:#}"),
    }
}

/// Messages of a scope process.
#[derive(Debug)]
pub(crate) enum ScopeMsg {
    /// A message to the scope from another node.
    Remote(Term),
    /// A connection came up.
    NodeUp(Atom),
    /// A connection went down.
    NodeDown(Atom),
    /// A peer scope process exited (its node stays connected).
    PeerDown(Pid),
    /// The pids in a group, all or only this node's.
    Members {
        group: Term,
        local_only: bool,
        reply: RpcReplyPort<Vec<Pid>>,
    },
    /// The groups with members.
    Groups(RpcReplyPort<Vec<Term>>),
}

impl ractor::Message for ScopeMsg {}

/// A scope process.
#[derive(Debug)]
pub(crate) struct PgScope;

/// What a scope process starts with.
pub(crate) struct ScopeArgs {
    pub shared: Arc<Core>,
    pub scope: Atom,
    pub pid: Pid,
}

/// One remote process mirrored into a `ractor::pg` group.
struct Mirrored {
    /// How many times the process is in the group (OTP's groups are multisets).
    count: usize,
    proxy: Option<ActorCell>,
}

pub(crate) struct ScopeState {
    shared: Arc<Core>,
    me: ActorRef<ScopeMsg>,
    scope: Atom,
    ractor_scope: String,
    pid: Pid,
    /// Peer scope processes that discovered us or synced: their groups.
    peers: HashMap<Pid, HashMap<Term, Vec<Pid>>>,
    /// This node's members as announced: group -> pids.
    local: HashMap<Term, Vec<Pid>>,
    /// The pids of local actors that joined.
    local_pids: HashMap<ActorId, Pid>,
    /// Remote members put into ractor groups: (group, pid) -> entry.
    mirrored: HashMap<(Term, Pid), Mirrored>,
    /// Whether remote members join the ractor groups as proxies: with
    /// [`crate::NodeConfig::pg_mirror_remote`], and always in Phoenix.PubSub's scope, whose
    /// worker ([`crate::phoenix`]) learns the pool groups of Elixir nodes from them (a few
    /// members per node).
    mirror_remote: bool,
    events: tokio::task::JoinHandle<()>,
}

impl Drop for ScopeState {
    fn drop(&mut self) {
        self.events.abort();
    }
}

impl std::fmt::Debug for ScopeState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScopeState")
            .field("scope", &self.scope)
            .finish_non_exhaustive()
    }
}

impl Actor for PgScope {
    type Msg = ScopeMsg;
    type State = ScopeState;
    type Arguments = ScopeArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<ScopeMsg>,
        args: ScopeArgs,
    ) -> Result<ScopeState, ActorProcessingErr> {
        let ScopeArgs { shared, scope, pid } = args;
        let ractor_scope = ractor_scope_of(&shared.id.config, scope.as_str());
        let mirror_remote = shared.id.config.pg.mirror_remote
            || scope.as_str() == crate::config::PHOENIX_PUBSUB_SCOPE;
        ractor::pg::monitor_scope(ractor_scope.clone(), myself.get_cell());
        let events = crate::events::forward_node_events(&shared.events, myself.clone(), |event| {
            match event {
                // A peer without SPAWN (a C node such as erl_call, Jinterface) runs no pg
                // scope; a discover would be the first message it reads, which erl_call
                // takes for its rpc reply and fails.
                NodeEvent::Up { flags, .. } if !flags.contains(crate::dist::DistFlags::SPAWN) => {
                    None
                }
                NodeEvent::Up { node, .. } => Some(ScopeMsg::NodeUp(Atom::new(node))),
                NodeEvent::Down { node, .. } => Some(ScopeMsg::NodeDown(Atom::new(node))),
            }
        });
        let mut state = ScopeState {
            shared,
            me: myself.clone(),
            scope,
            ractor_scope,
            pid,
            peers: HashMap::default(),
            local: HashMap::default(),
            local_pids: HashMap::default(),
            mirrored: HashMap::default(),
            mirror_remote,
            events,
        };
        // Actors that joined before the scope started.
        for name in ractor::pg::which_scoped_groups(&state.ractor_scope) {
            let cells = ractor::pg::get_scoped_local_members(&state.ractor_scope, &name);
            state.local_joined(&name, cells);
        }
        Ok(state)
    }

    async fn handle(
        &self,
        _myself: ActorRef<ScopeMsg>,
        message: ScopeMsg,
        state: &mut ScopeState,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            ScopeMsg::Remote(msg) => state.remote(msg).await,
            ScopeMsg::NodeUp(node) => state.discover(&node),
            ScopeMsg::NodeDown(node) => state.node_down(&node),
            ScopeMsg::PeerDown(peer) => state.peer_gone(&peer),
            ScopeMsg::Members {
                group,
                local_only,
                reply,
            } => {
                let _ = reply.send(state.members(&group, local_only));
            }
            ScopeMsg::Groups(reply) => {
                let _ = reply.send(state.groups());
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        _myself: ActorRef<ScopeMsg>,
        event: SupervisionEvent,
        state: &mut ScopeState,
    ) -> Result<(), ActorProcessingErr> {
        if let SupervisionEvent::ProcessGroupChanged(change) = event {
            match change {
                GroupChangeMessage::Join(scope, group, cells) if scope == state.ractor_scope => {
                    state.local_joined(&group, cells)
                }
                GroupChangeMessage::Leave(scope, group, cells) if scope == state.ractor_scope => {
                    state.local_left(&group, &cells)
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// `Pid` or `[Pid]` as a list of pids; `None` for anything else.
fn pids_of(term: &Term) -> Option<Vec<Pid>> {
    match term {
        Term::Pid(p) => Some(vec![p.clone()]),
        Term::List(items) => items
            .iter()
            .map(|t| match t {
                Term::Pid(p) => Some(p.clone()),
                _ => None,
            })
            .collect(),
        _ => None,
    }
}

fn pid_list(pids: &[Pid]) -> Term {
    Term::list(pids.iter().cloned().map(Term::from).collect::<Vec<_>>())
}

impl ScopeState {
    /// Sends to a peer scope process.
    fn send_to(&self, peer: &Pid, msg: Term) {
        if let Some(session) = self.shared.session(&peer.node) {
            session.send(Control::Send { to: peer.clone() }, Some(msg));
        }
    }

    /// Sends to every known peer scope.
    fn broadcast(&self, msg: Term) {
        for peer in self.peers.keys() {
            self.send_to(peer, msg.clone());
        }
    }

    /// Asks the same-named scope on `node` to sync with us.
    fn discover(&mut self, node: &Atom) {
        if *node == self.shared.id.name {
            return;
        }
        if let Some(session) = self.shared.session(node) {
            let msg = Term::tuple(vec![Term::atom("discover"), Term::from(self.pid.clone())]);
            session.send(
                Control::RegSend {
                    from: self.pid.clone(),
                    to_name: self.scope.clone(),
                },
                Some(msg),
            );
        }
    }

    /// `{sync, Self, [{Group, Pids}]}` as a `gen_server` cast, for `peer`.
    fn sync_message(&self) -> Term {
        let groups: Vec<Term> = self
            .local
            .iter()
            .filter(|(_, pids)| !pids.is_empty())
            .map(|(group, pids)| Term::tuple(vec![group.clone(), pid_list(pids)]))
            .collect();
        Term::tuple(vec![
            Term::atom("$gen_cast"),
            Term::tuple(vec![
                Term::atom("sync"),
                Term::from(self.pid.clone()),
                Term::list(groups),
            ]),
        ])
    }

    async fn remote(&mut self, msg: Term) {
        let Some(parts) = msg.as_tuple() else {
            tracing::debug!(scope = %self.scope, %msg, "unexpected pg message");
            return;
        };
        match parts {
            [tag, Term::Pid(peer)] | [tag, Term::Pid(peer), _] if tag.is_atom("discover") => {
                let peer = peer.clone();
                if !self.peers.contains_key(&peer) {
                    if !self.monitor_peer(&peer) {
                        // Read just before its connection closed: the node is gone.
                        return;
                    }
                    self.peers.insert(peer.clone(), HashMap::default());
                    self.send_to(&peer, self.sync_message());
                    let discover =
                        Term::tuple(vec![Term::atom("discover"), Term::from(self.pid.clone())]);
                    self.send_to(&peer, discover);
                } else {
                    self.send_to(&peer, self.sync_message());
                }
            }
            [tag, Term::Pid(peer), group, members] if tag.is_atom("join") => {
                let (Some(pids), true) = (pids_of(members), self.peers.contains_key(peer)) else {
                    return;
                };
                if let Some(groups) = self.peers.get_mut(peer) {
                    groups
                        .entry(group.clone())
                        .or_default()
                        .extend(pids.iter().cloned());
                }
                self.mirror_join(group, &pids).await;
            }
            [tag, Term::Pid(peer), members, Term::List(groups)] if tag.is_atom("leave") => {
                let Some(pids) = pids_of(members) else {
                    return;
                };
                let Some(known) = self.peers.get_mut(peer) else {
                    return;
                };
                let mut left = Vec::new();
                for group in groups.iter() {
                    if let Some(list) = known.get_mut(group) {
                        for pid in &pids {
                            if let Some(i) = list.iter().position(|p| p == pid) {
                                list.remove(i);
                                left.push((group.clone(), pid.clone()));
                            }
                        }
                        if list.is_empty() {
                            known.remove(group);
                        }
                    }
                }
                for (group, pid) in left {
                    self.mirror_leave(&group, &pid);
                }
            }
            [tag, cast] if tag.is_atom("$gen_cast") => {
                if let Some([sync, Term::Pid(peer), Term::List(groups)]) = cast.as_tuple() {
                    if sync.is_atom("sync") {
                        self.sync(peer.clone(), groups).await;
                    }
                }
            }
            _ => tracing::debug!(scope = %self.scope, %msg, "unexpected pg message"),
        }
    }

    /// A peer's full membership replaces what we knew of it.
    async fn sync(&mut self, peer: Pid, groups: &[Term]) {
        let mut new: HashMap<Term, Vec<Pid>> = HashMap::default();
        for entry in groups {
            if let Some([group, members]) = entry.as_tuple() {
                if let Some(pids) = pids_of(members) {
                    new.entry(group.clone()).or_default().extend(pids);
                }
            }
        }
        if !self.peers.contains_key(&peer) && !self.monitor_peer(&peer) {
            // A sync read just before its connection closed: recording it would leave
            // members of a node that is gone, with no monitor to remove them.
            return;
        }
        let old = self.peers.insert(peer, new.clone()).unwrap_or_default();
        for (group, pids) in &old {
            for pid in pids {
                self.mirror_leave(group, pid);
            }
        }
        for (group, pids) in &new {
            self.mirror_join(group, pids).await;
        }
    }

    /// Remote pids joined `group`: with mirroring on, their proxies join the ractor group.
    async fn mirror_join(&mut self, group: &Term, pids: &[Pid]) {
        if !self.mirror_remote {
            return;
        }
        let name = group_name(group);
        for pid in pids {
            let key = (group.clone(), pid.clone());
            if let Some(m) = self.mirrored.get_mut(&key) {
                m.count += 1;
                continue;
            }
            let proxy = match crate::proxy::proxy_cell(&self.shared, RemoteTarget::Pid(pid.clone()))
                .await
            {
                Ok(cell) => {
                    ractor::pg::join_scoped(
                        self.ractor_scope.clone(),
                        name.clone(),
                        vec![cell.clone()],
                    );
                    Some(cell)
                }
                Err(e) => {
                    tracing::debug!(?pid, error = %e, "no proxy for a group member");
                    None
                }
            };
            self.mirrored.insert(key, Mirrored { count: 1, proxy });
        }
    }

    /// A remote pid left `group` once.
    fn mirror_leave(&mut self, group: &Term, pid: &Pid) {
        let key = (group.clone(), pid.clone());
        let Some(m) = self.mirrored.get_mut(&key) else {
            return;
        };
        m.count -= 1;
        if m.count > 0 {
            return;
        }
        if let Some(Mirrored {
            proxy: Some(cell), ..
        }) = self.mirrored.remove(&key)
        {
            ractor::pg::leave_scoped(self.ractor_scope.clone(), group_name(group), vec![cell]);
        }
    }

    /// Monitors a peer scope process, as OTP's scopes monitor each other: when it exits
    /// (`pg` stopped on a node that stays connected), its members leave. False when its
    /// node is no longer connected.
    fn monitor_peer(&self, peer: &Pid) -> bool {
        let Some((_, down)) = self.shared.monitor_remote(&RemoteTarget::Pid(peer.clone())) else {
            return false;
        };
        let me = self.me.clone();
        let peer = peer.clone();
        tokio::spawn(async move {
            let _ = down.await;
            let _ = me.cast(ScopeMsg::PeerDown(peer));
        });
        true
    }

    /// A peer scope exited: its members leave.
    fn peer_gone(&mut self, peer: &Pid) {
        if let Some(groups) = self.peers.remove(peer) {
            for (group, pids) in groups {
                for pid in pids {
                    self.mirror_leave(&group, &pid);
                }
            }
        }
    }

    /// A node went: its scope's members leave.
    fn node_down(&mut self, node: &Atom) {
        let gone: Vec<Pid> = self
            .peers
            .keys()
            .filter(|p| p.node == *node)
            .cloned()
            .collect();
        for peer in gone {
            if let Some(groups) = self.peers.remove(&peer) {
                for (group, pids) in groups {
                    for pid in pids {
                        self.mirror_leave(&group, &pid);
                    }
                }
            }
        }
        // Anything left from that node (should be nothing) goes too.
        let stale: Vec<(Term, Pid)> = self
            .mirrored
            .keys()
            .filter(|(_, p)| p.node == *node)
            .cloned()
            .collect();
        for key in stale {
            if let Some(Mirrored {
                proxy: Some(cell), ..
            }) = self.mirrored.remove(&key)
            {
                ractor::pg::leave_scoped(self.ractor_scope.clone(), group_name(&key.0), vec![cell]);
            }
        }
    }

    /// The Erlang pid of a local actor, exposing it (untyped) on first use.
    fn local_pid(&mut self, cell: &ActorCell) -> Pid {
        if let Some(pid) = self.local_pids.get(&cell.get_id()) {
            return pid.clone();
        }
        let for_cast = cell.clone();
        let pid = self
            .shared
            .registry()
            .expose(
                cell,
                move || {
                    let cast: crate::registry::CastFn = Box::new(move |term: &Term| {
                        for_cast
                            .send_serialized(crate::message::__private::cast_message(term))
                            .is_ok()
                    });
                    let call: crate::registry::CallFn = Box::new(|_, _| false);
                    (cast, call)
                },
                |_| true,
            )
            .pid
            .clone();
        self.local_pids.insert(cell.get_id(), pid.clone());
        pid
    }

    /// Local actors joined a ractor group: announce the new members.
    fn local_joined(&mut self, name: &str, cells: Vec<ActorCell>) {
        let group = group_term(name);
        let mut new = Vec::new();
        for cell in cells.iter().filter(|c| c.get_id().is_local()) {
            if cell.get_status() >= ractor::ActorStatus::Stopping {
                continue;
            }
            let pid = self.local_pid(cell);
            let members = self.local.entry(group.clone()).or_default();
            if !members.contains(&pid) {
                members.push(pid.clone());
                new.push(pid);
            }
        }
        if !new.is_empty() {
            self.broadcast(Term::tuple(vec![
                Term::atom("join"),
                Term::from(self.pid.clone()),
                group,
                pid_list(&new),
            ]));
        }
    }

    /// Local actors left a ractor group (or stopped): announce it.
    fn local_left(&mut self, name: &str, cells: &[ActorCell]) {
        let group = group_term(name);
        let mut gone = Vec::new();
        for cell in cells.iter().filter(|c| c.get_id().is_local()) {
            let Some(pid) = self.local_pids.get(&cell.get_id()).cloned() else {
                continue;
            };
            if let Some(members) = self.local.get_mut(&group) {
                if let Some(i) = members.iter().position(|p| *p == pid) {
                    members.remove(i);
                    gone.push(pid.clone());
                }
                if members.is_empty() {
                    self.local.remove(&group);
                }
            }
            if cell.get_status() >= ractor::ActorStatus::Stopping
                && !self.local.values().any(|m| m.contains(&pid))
            {
                self.local_pids.remove(&cell.get_id());
            }
        }
        if !gone.is_empty() {
            self.broadcast(Term::tuple(vec![
                Term::atom("leave"),
                Term::from(self.pid.clone()),
                pid_list(&gone),
                Term::list(vec![group]),
            ]));
        }
    }

    fn members(&self, group: &Term, local_only: bool) -> Vec<Pid> {
        let mut pids: Vec<Pid> = self.local.get(group).cloned().unwrap_or_default();
        if !local_only {
            for groups in self.peers.values() {
                if let Some(remote) = groups.get(group) {
                    pids.extend(remote.iter().cloned());
                }
            }
        }
        pids
    }

    fn groups(&self) -> Vec<Term> {
        let mut groups: Vec<Term> = self.local.keys().cloned().collect();
        for remote in self.peers.values() {
            for group in remote.keys() {
                if !groups.contains(group) {
                    groups.push(group.clone());
                }
            }
        }
        groups
    }
}

/// Starts a scope process and registers it under the scope's name.
/// The node's running scopes, by name, kept in the core's services.
#[derive(Default)]
pub(crate) struct PgScopes(pub std::sync::RwLock<HashMap<Atom, ActorRef<ScopeMsg>>>);

impl PgScopes {
    /// The scope process of `scope` on `core`'s node, if it runs.
    pub fn of(core: &Core, scope: &Atom) -> Option<ActorRef<ScopeMsg>> {
        let scopes = core.services.get::<PgScopes>()?;
        let actor = crate::read(&scopes.0).get(scope).cloned();
        actor
    }
}

pub(crate) async fn start_scope(
    shared: &Arc<Core>,
    scope: &str,
    supervisor: ActorCell,
) -> Result<ActorRef<ScopeMsg>, ActorProcessingErr> {
    let scope = Atom::new(scope);
    let scope_name = scope.clone();
    let slot: Arc<std::sync::OnceLock<ActorRef<ScopeMsg>>> = Arc::default();
    let for_deliver = slot.clone();
    let pid = shared.registry().add_service(
        Some(scope.clone()),
        Box::new(move |_from, msg| {
            if let Some(scope) = for_deliver.get() {
                let _ = scope.cast(ScopeMsg::Remote(msg));
            }
        }),
    );
    let (actor, _) = Actor::spawn_linked(
        None,
        PgScope,
        ScopeArgs {
            shared: shared.clone(),
            scope,
            pid,
        },
        supervisor,
    )
    .await?;
    let _ = slot.set(actor.clone());
    crate::write(&shared.services.get_or_insert(PgScopes::default).0)
        .insert(scope_name, actor.clone());
    // Nodes connected before the scope could hear from them.
    for (node, _) in shared.sessions.connected() {
        let _ = actor.cast(ScopeMsg::NodeUp(Atom::new(node)));
    }
    Ok(actor)
}

/// Asks a scope for a group's members.
pub(crate) async fn members(scope: &ActorRef<ScopeMsg>, group: Term, local_only: bool) -> Vec<Pid> {
    scope
        .call(
            |reply| ScopeMsg::Members {
                group,
                local_only,
                reply,
            },
            Some(Duration::from_secs(5)),
        )
        .await
        .ok()
        .and_then(|r| match r {
            ractor::rpc::CallResult::Success(p) => Some(p),
            _ => None,
        })
        .unwrap_or_default()
}

/// Asks a scope for its groups.
pub(crate) async fn groups(scope: &ActorRef<ScopeMsg>) -> Vec<Term> {
    scope
        .call(ScopeMsg::Groups, Some(Duration::from_secs(5)))
        .await
        .ok()
        .and_then(|r| match r {
            ractor::rpc::CallResult::Success(g) => Some(g),
            _ => None,
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_round_trip() {
        for (name, term) in [
            ("echo", Term::atom("echo")),
            ("cache/v2", Term::atom("cache/v2")),
            (
                "{cache,v2}",
                Term::tuple(vec![Term::atom("cache"), Term::atom("v2")]),
            ),
            ("<<\"jobs\">>", Term::binary(b"jobs")),
        ] {
            assert_eq!(group_term(name), term, "{name}");
            assert_eq!(group_name(&term), name);
        }
        // Not a literal: an atom.
        assert_eq!(group_term("{oops"), Term::atom("{oops"));
        assert_eq!(ractor_scope("pg"), ractor::pg::DEFAULT_SCOPE);
        assert_eq!(ractor_scope("other"), "other");
    }
}
