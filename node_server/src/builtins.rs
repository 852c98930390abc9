//! Functions every node answers by rpc, so that tools made for Erlang nodes (`erl_call`,
//! `rpc:call` from a shell, `nodectl`) work on this one too.
//!
//! They are registered when the node starts, as [`crate::Node::register_fn`] would register
//! them (a function registered later under the same name replaces the built-in one). The
//! answers describe this node honestly; where it has no counterpart of what the BEAM
//! reports, the table says what comes back instead.
//!
//! | function | answer |
//! |---|---|
//! | `erlang:node/0` | this node's name |
//! | `erlang:node/1` | the node of a pid, port or reference; `badarg` otherwise |
//! | `erlang:nodes/0` | the visible connected nodes (none when this node is hidden: every connection of a hidden node is hidden) |
//! | `erlang:nodes/1` | `visible`, `hidden`, `connected`, `this`, `known`, or a list of these, as Erlang; `known` is this node and the connected ones (the node remembers no others) |
//! | `erlang:registered/0` | the registered names: actors registered with [`crate::Node::register`], and the built-in `net_kernel` and `rex` |
//! | `erlang:whereis/1` | the pid registered under a name, or `undefined` |
//! | `erlang:is_process_alive/1` | whether a pid of this node names a live actor or service; `badarg` for another node's pid, as Erlang |
//! | `erlang:exit/2` | an exit signal to a local actor, with [`crate::signals`]' semantics (`kill` kills, a trapping actor gets `{'EXIT', From, Reason}`, `normal` is ignored); `true` |
//! | `erlang:system_info/1` | `otp_release`: `"25"`, the Erlang/OTP release whose distribution protocol the node speaks (it also sets the flags OTP 26 requires); `version`: this crate's version (where the BEAM gives its ERTS version); `system_version`: `"node_server VERSION (Rust) ..."`; `process_count`: live actors exposed to Erlang plus the built-in services; `creation`; `machine`: `"node_server"`; `wordsize`: 8; `schedulers`, `schedulers_online`, `logical_processors`: the CPUs available to the process; `port_count`: 0. Other items: `badarg` |
//! | `erlang:memory/0,1` | best effort: `total` and `system` are the process's resident set size (`VmRSS`, Linux only, else 0); `processes`, `processes_used`, `atom`, `atom_used`, `binary`, `code` and `ets` are 0, as the node keeps no accounting by category; an unknown type is `badarg` |
//! | `erlang:statistics/1` | `wall_clock`: `{MsSinceStart, MsSinceLastCall}`; `runtime`: `{CpuMs, CpuMsSinceLastCall}` of the whole process (user + system, from `/proc/self/stat` at 100 ticks a second; 0 where unavailable); `io`: `{{input, BytesIn}, {output, BytesOut}}` of the distribution connections (the BEAM counts all its ports); others `badarg` |
//! | `code:ensure_loaded/1` | `{module, M}` when a function of `M` is registered (the node's modules are its rpc functions), else `{error, nofile}` |
//! | `application:get_env/2,3` | `undefined`, or the default: the node runs no OTP applications |
//! | `net_kernel:get_net_ticktime/0` | the tick time ([`crate::NodeConfig::net_ticktime`]) in whole seconds |
//! | `init:stop/0,1` | `ok`, then a graceful stop of the node ([`crate::ops`]); `init:stop(Status)` with an integer status makes [`crate::Node::wait_stopped`] return it, a string status gives 1 |
//! | `node_server:info/0` | a map ([`crate::info::NodeInfo`]): `node`, `version` (binary), `otp_release` (binary), `uptime_ms`, `process_count`, `registered` (the names, sorted), `connections` (how many), `connected` (`[{Node, visible \| hidden}]`), `messages_in`, `messages_out`, `bytes_in`, `bytes_out` ([`crate::ops`]), `memory_total`, `creation`, `hidden`, `admin_guard` (whether [`crate::NodeConfig::admin_allow`] is on), `queues` (`[#{node, queue_bytes, busy, dropped}]`: each connection's send queue, [`crate::send_queue`]) |
//!
//! [`crate::eval`] registers `node_server_eval:eval/1,2` beside these (Erlang expressions,
//! what `nodectl eval` runs), and [`crate::remote_shell`] `shell:start/0` and
//! `edlin_expand:expand/1,2` (what `erl -remsh` calls).
//!
//! Under the admin guard ([`crate::admin`]) all of these are rpc calls like any other: only
//! listed nodes get answers.

use std::sync::{Arc, Weak};

use crate::core::Core;
use crate::dist::control::ProcessRef;
use crate::etf::{Atom, Term, ToTerm};
use crate::info::{ConnectedNode, ConnectionQueue, NodeIdentity, NodeInfo, Visibility};
use crate::node::Node;
use crate::registry::LocalProcess;
use crate::rpc::{RpcFailure, RpcResult};

/// The Erlang/OTP release whose distribution protocol this node speaks.
pub const OTP_RELEASE: &str = "25";

/// This crate's version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Registers the built-in functions on a starting node.
pub(crate) fn install(node: &Node) {
    let weak = Arc::downgrade(node.shared());
    // The functions hold the node weakly: the node holds them.
    let reg = |module: &str, function: &str, f: fn(&Arc<Core>, Vec<Term>) -> RpcResult| {
        let weak: Weak<Core> = weak.clone();
        node.register_fn(module, function, move |args| {
            let result = match weak.upgrade() {
                Some(shared) => f(&shared, args),
                None => Err(RpcFailure::Exit(Term::atom("shutdown"))),
            };
            async move { result }
        });
    };
    reg("erlang", "node", node_fn);
    reg("erlang", "nodes", nodes);
    reg("erlang", "registered", registered);
    reg("erlang", "whereis", whereis);
    reg("erlang", "register", register);
    reg("erlang", "is_process_alive", is_process_alive);
    reg("erlang", "exit", exit);
    reg("erlang", "system_info", system_info);
    reg("erlang", "memory", memory);
    reg("erlang", "statistics", statistics);
    reg("init", "stop", init_stop);
    reg("code", "ensure_loaded", ensure_loaded);
    reg("application", "get_env", get_env);
    reg("net_kernel", "get_net_ticktime", get_net_ticktime);
    reg("node_server", "info", info);
    reg("node_server", "kinds", kinds);
}

/// `erlang:register(Name, Pid)` for a local actor: `true`, or `badarg` as in Erlang (the
/// name taken, no such actor, a bad name).
pub(crate) fn register(shared: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    let [Term::Atom(name), Term::Pid(pid)] = &args[..] else {
        return Err(RpcFailure::badarg());
    };
    if name.as_str() == "undefined" {
        return Err(RpcFailure::badarg());
    }
    let actor = match shared.resolve(&ProcessRef::Pid(pid.clone())) {
        Some(LocalProcess::Actor(actor)) => actor,
        _ => return Err(RpcFailure::badarg()),
    };
    if shared
        .registry()
        .register(name.clone(), LocalProcess::Actor(actor))
    {
        Ok(Term::atom("true"))
    } else {
        Err(RpcFailure::badarg())
    }
}

/// `node_server:kinds()`: the spawnable kinds ([`crate::kinds::KindInfo`] maps).
fn kinds(shared: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    if !args.is_empty() {
        return Err(undef());
    }
    Ok(Term::list(
        crate::kinds::Kinds::of(shared)
            .list()
            .iter()
            .map(crate::etf::ToTerm::to_term)
            .collect::<Vec<_>>(),
    ))
}

/// `code:ensure_loaded(M)`: `{module, M}` when some function of `M` is registered (the
/// node's "modules" are its rpc functions), else `{error, nofile}` as for a module that is
/// not there.
fn ensure_loaded(shared: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    let [Term::Atom(module)] = &args[..] else {
        return Err(if args.len() == 1 {
            RpcFailure::Error(Term::atom("function_clause"))
        } else {
            undef()
        });
    };
    Ok(if shared.functions.has_module(module) {
        Term::tuple(vec![Term::atom("module"), Term::Atom(module.clone())])
    } else {
        Term::tuple(vec![Term::atom("error"), Term::atom("nofile")])
    })
}

/// `application:get_env(App, Key[, Default])`: the node runs no OTP applications, so no
/// key has a value: `undefined`, or the default.
fn get_env(_: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    match &args[..] {
        [Term::Atom(_), Term::Atom(_)] => Ok(Term::atom("undefined")),
        [Term::Atom(_), Term::Atom(_), default] => Ok(default.clone()),
        [_, _] | [_, _, _] => Err(RpcFailure::Error(Term::atom("function_clause"))),
        _ => Err(undef()),
    }
}

/// `net_kernel:get_net_ticktime()`: the node's tick time in whole seconds (at least 1).
fn get_net_ticktime(shared: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    if !args.is_empty() {
        return Err(undef());
    }
    let secs = shared.id.config.net_ticktime.as_secs().max(1);
    Ok(Term::Int(i64::try_from(secs).unwrap_or(i64::MAX)))
}

fn undef() -> RpcFailure {
    RpcFailure::Error(Term::atom("undef"))
}

/// An Erlang string: a list of character codes.
fn string(text: &str) -> Term {
    Term::list(
        text.chars()
            .map(|c| Term::Int(i64::from(u32::from(c))))
            .collect::<Vec<_>>(),
    )
}

fn int(n: u64) -> Term {
    i64::try_from(n).map_or_else(|_| Term::big_int(n.into()), Term::Int)
}

fn node_fn(shared: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    match &args[..] {
        [] => Ok(Term::Atom(shared.id.name.clone())),
        [Term::Pid(p)] => Ok(Term::Atom(p.node.clone())),
        [Term::Port(p)] => Ok(Term::Atom(p.node.clone())),
        [Term::Reference(r)] => Ok(Term::Atom(r.node.clone())),
        [_] => Err(RpcFailure::badarg()),
        _ => Err(undef()),
    }
}

/// The connected nodes: (visible, hidden), each sorted.
fn connected(shared: &Core) -> (Vec<Atom>, Vec<Atom>) {
    let mut visible = Vec::new();
    let mut hidden = Vec::new();
    for (node, is_hidden) in shared.sessions.connected() {
        if is_hidden {
            hidden.push(Atom::new(node));
        } else {
            visible.push(Atom::new(node));
        }
    }
    visible.sort();
    hidden.sort();
    (visible, hidden)
}

fn nodes(shared: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    let kinds: Vec<Term> = match args.as_slice() {
        [] => vec![Term::atom("visible")],
        [Term::List(kinds)] if !kinds.is_empty() => kinds.clone(),
        [Term::Atom(_)] => args.clone(),
        [_] => return Err(RpcFailure::badarg()),
        _ => return Err(undef()),
    };
    let (visible, hidden) = connected(shared);
    let (mut this, mut vis, mut hid) = (false, false, false);
    for kind in &kinds {
        match kind.as_atom().map(Atom::as_str) {
            Some("this") => this = true,
            Some("visible") => vis = true,
            Some("hidden") => hid = true,
            Some("connected") => (vis, hid) = (true, true),
            Some("known") => (this, vis, hid) = (true, true, true),
            _ => return Err(RpcFailure::badarg()),
        }
    }
    let mut out = Vec::new();
    if this {
        out.push(Term::Atom(shared.id.name.clone()));
    }
    if vis {
        out.extend(visible.into_iter().map(Term::Atom));
    }
    if hid {
        out.extend(hidden.into_iter().map(Term::Atom));
    }
    Ok(Term::list(out))
}

fn registered(shared: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    if !args.is_empty() {
        return Err(undef());
    }
    let mut names = shared.registry().registered();
    names.sort();
    Ok(Term::list(
        names.into_iter().map(Term::Atom).collect::<Vec<_>>(),
    ))
}

fn whereis(shared: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    match &args[..] {
        [Term::Atom(name)] => Ok(shared
            .registry()
            .whereis(name)
            .map_or_else(|| Term::atom("undefined"), Term::Pid)),
        [_] => Err(RpcFailure::badarg()),
        _ => Err(undef()),
    }
}

/// Whether `pid` is a pid of this node (this incarnation or an earlier one).
fn is_process_alive(shared: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    match &args[..] {
        [Term::Pid(pid)] if shared.id.is_local(pid) => {
            let target = crate::dist::control::ProcessRef::Pid(pid.clone());
            Ok(Term::atom(if shared.resolve(&target).is_some() {
                "true"
            } else {
                "false"
            }))
        }
        [_] => Err(RpcFailure::badarg()),
        _ => Err(undef()),
    }
}

/// `exit(Pid, Reason)` to a local actor, from the node's router pid.
pub(crate) fn exit(shared: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    let [Term::Pid(to), reason] = &args[..] else {
        return Err(if args.len() == 2 {
            RpcFailure::badarg()
        } else {
            undef()
        });
    };
    if !shared.id.is_local(to) {
        // Sending to another node's process is not what this built-in is for.
        return Err(RpcFailure::badarg());
    }
    tracing::info!(pid = ?to, %reason, "exit signal by rpc");
    shared.exit(&shared.id.router_pid, to, reason.clone());
    Ok(Term::atom("true"))
}

pub(crate) fn cpus() -> u64 {
    std::thread::available_parallelism().map_or(1, |n| n.get() as u64)
}

fn system_info(shared: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    let [Term::Atom(item)] = &args[..] else {
        return Err(if args.len() == 1 {
            RpcFailure::badarg()
        } else {
            undef()
        });
    };
    Ok(match item.as_str() {
        "otp_release" => string(OTP_RELEASE),
        "version" => string(VERSION),
        "system_version" => {
            string(&format!(
            "node_server {VERSION} (Rust) [Erlang/OTP {OTP_RELEASE} distribution protocol] [{}]\n",
            if shared.id.config.hidden { "hidden" } else { "visible" }
        ))
        }
        "process_count" => int(shared.registry().process_count() as u64),
        "port_count" => Term::Int(0),
        "creation" => int(u64::from(shared.id.creation)),
        "machine" => string("node_server"),
        "wordsize" => int(std::mem::size_of::<usize>() as u64),
        "schedulers" | "schedulers_online" | "logical_processors" => int(cpus()),
        _ => return Err(RpcFailure::badarg()),
    })
}

/// The process's resident set size in bytes (Linux), else 0.
pub(crate) fn resident_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// CPU time of the whole process (user + system) in milliseconds (Linux), else 0.
pub(crate) fn cpu_ms() -> u64 {
    // Fields after the command name: state is field 3, utime 14, stime 15.
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return 0;
    };
    let Some((_, rest)) = stat.rsplit_once(')') else {
        return 0;
    };
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| fields.get(i).and_then(|f| f.parse::<u64>().ok());
    match (ticks(11), ticks(12)) {
        // USER_HZ is 100 on Linux.
        (Some(user), Some(system)) => (user + system) * 10,
        _ => 0,
    }
}

const MEMORY_TYPES: [&str; 9] = [
    "total",
    "processes",
    "processes_used",
    "system",
    "atom",
    "atom_used",
    "binary",
    "code",
    "ets",
];

fn memory_of(kind: &str, rss: u64) -> Option<u64> {
    match kind {
        "total" | "system" => Some(rss),
        k if MEMORY_TYPES.contains(&k) => Some(0),
        _ => None,
    }
}

pub(crate) fn memory(_shared: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    let rss = resident_bytes();
    let pair = |kind: &str| -> Option<Term> {
        memory_of(kind, rss).map(|v| Term::tuple(vec![Term::atom(kind), int(v)]))
    };
    match &args[..] {
        [] => Ok(Term::list(
            MEMORY_TYPES
                .iter()
                .filter_map(|k| pair(k))
                .collect::<Vec<_>>(),
        )),
        [Term::Atom(kind)] => memory_of(kind.as_str(), rss)
            .map(int)
            .ok_or_else(RpcFailure::badarg),
        [Term::List(kinds)] => kinds
            .iter()
            .map(|k| k.as_atom().and_then(|a| pair(a.as_str())))
            .collect::<Option<Vec<_>>>()
            .map(Term::list)
            .ok_or_else(RpcFailure::badarg),
        [_] => Err(RpcFailure::badarg()),
        _ => Err(undef()),
    }
}

/// `{Total, SinceLast}`, updating the last value.
fn since_last(last: &std::sync::Mutex<u64>, now: u64) -> Term {
    let mut last = crate::lock(last);
    let delta = now.saturating_sub(*last);
    *last = now;
    Term::tuple(vec![int(now), int(delta)])
}

pub(crate) fn statistics(shared: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    let [Term::Atom(item)] = &args[..] else {
        return Err(if args.len() == 1 {
            RpcFailure::badarg()
        } else {
            undef()
        });
    };
    let ops = &shared.ops;
    Ok(match item.as_str() {
        "wall_clock" => since_last(&ops.last_wall_ms, ops.started.elapsed().as_millis() as u64),
        "runtime" => since_last(&ops.last_runtime_ms, cpu_ms()),
        "io" => {
            let stats = ops.stats();
            Term::tuple(vec![
                Term::tuple(vec![Term::atom("input"), int(stats.bytes_in)]),
                Term::tuple(vec![Term::atom("output"), int(stats.bytes_out)]),
            ])
        }
        _ => return Err(RpcFailure::badarg()),
    })
}

fn init_stop(shared: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    let status = match &args[..] {
        [] => 0,
        [Term::Int(n)] if *n >= 0 => i32::try_from(*n).unwrap_or(i32::MAX),
        // init:stop("message") halts with a crash dump and status 1.
        [Term::List(chars)] if chars.iter().all(|c| matches!(c, Term::Int(_))) => 1,
        [_] => return Err(RpcFailure::badarg()),
        _ => return Err(undef()),
    };
    // After this call's reply is queued: stop_gracefully waits for calls in flight.
    tokio::spawn(shared.clone().stop_gracefully(status));
    Ok(Term::atom("ok"))
}

fn info(shared: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    if !args.is_empty() {
        return Err(undef());
    }
    Ok(node_info(shared).to_term())
}

/// What `node_server:info/0` answers.
pub(crate) fn node_info(shared: &Core) -> NodeInfo {
    let stats = shared.ops.stats();
    let (mut registered, processes) = {
        let registry = shared.registry();
        (registry.registered(), registry.process_count())
    };
    registered.sort();
    let (visible, hidden) = connected(shared);
    let connected: Vec<ConnectedNode> = visible
        .into_iter()
        .map(|n| (n, Visibility::Visible))
        .chain(hidden.into_iter().map(|n| (n, Visibility::Hidden)))
        .map(|(node, visibility)| ConnectedNode { node, visibility })
        .collect();
    let mut queues: Vec<ConnectionQueue> = shared
        .sessions
        .all()
        .iter()
        .map(|s| {
            let stats = s.queue.snapshot();
            ConnectionQueue {
                node: s.peer.clone(),
                queue_bytes: stats.queued_bytes,
                busy: stats.busy,
                dropped: stats.dropped,
            }
        })
        .collect();
    queues.sort_by(|a, b| a.node.cmp(&b.node));
    NodeInfo {
        identity: NodeIdentity {
            node: shared.id.name.clone(),
            version: VERSION.into(),
            otp_release: OTP_RELEASE.into(),
            creation: shared.id.creation,
            hidden: shared.id.config.hidden,
        },
        uptime_ms: stats.uptime.as_millis() as u64,
        process_count: processes as u64,
        registered,
        connections: connected.len() as u64,
        connected,
        traffic: stats.into(),
        memory_total: resident_bytes(),
        admin_guard: shared.id.config.admin_allow.is_some(),
        queues,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_code_point_lists() {
        assert_eq!(string("25").to_string(), "[50,53]");
    }

    #[test]
    fn memory_types() {
        assert_eq!(memory_of("total", 7), Some(7));
        assert_eq!(memory_of("ets", 7), Some(0));
        assert_eq!(memory_of("bogus", 7), None);
    }

    #[test]
    fn process_figures_read_on_linux() {
        if std::path::Path::new("/proc/self/stat").exists() {
            assert!(resident_bytes() > 0);
            // A few ms of CPU at least have gone into starting the test binary; 0 is allowed
            // for a very fast start, but the read must not fail to parse.
            let _ = cpu_ms();
        }
    }
}
