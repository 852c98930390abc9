//! Processes as Erlang's tools see them: rpc functions that answer what `etop`, observer and
//! a shell ask a node about its processes, over this node's services and exposed actors.
//!
//! - `erlang:processes/0`: the pids of the node's services (`net_kernel`, the router, `rex`,
//!   `pg` scopes, `global_name_server`, ...) and of its live actors that Erlang can address
//!   (registered, exposed by a message, a link or a spawn);
//! - `erlang:process_info/1,2`: `registered_name`, `status`, `message_queue_len`,
//!   `reductions`, `memory`, `current_function`, `initial_call`, `links`, `monitored_by`,
//!   `trap_exit`, and the other keys Erlang's tools read, with neutral values where a ractor
//!   actor has nothing like it (heap sizes, dictionary);
//! - `observer_backend:vsn/0` and `observer_backend:etop_collect/1`, so OTP's `etop` lists
//!   the node's processes (`etop:start([{node, N}, {output, text}, {tracing, off}])`; etop's
//!   default tracing needs `dbg` on the node, which ours has not); `observer_backend:sys_info/0`
//!   for observer's system tab (what observer's other tabs ask: [`crate::observer`]).
//!
//! What the figures mean for an actor: `reductions` counts the messages and calls the node
//! handed it; `message_queue_len` is 0 (ractor does not tell a mailbox's length);
//! `memory` is [`ACTOR_MEMORY`], what an idle ractor actor takes (`proxy_bench`'s parts);
//! `current_function` and `initial_call` are `{node_server, actor, 0}`; `status` is
//! `waiting`, or `exiting` for an actor that is stopping.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use crate::core::Core;
use crate::etf::{Atom, Pid, Term};
use crate::node::Node;
use crate::registry::LocalProcess;
use crate::rpc::{RpcFailure, RpcResult};

/// The memory reported for an actor: an idle ractor actor's, as measured by `proxy_bench`.
pub const ACTOR_MEMORY: u64 = 10_900;

/// Registers the functions on a starting node.
pub(crate) fn register_functions(node: &Node) {
    let weak = Arc::downgrade(node.shared());
    let reg = |module: &str, function: &str, f: fn(&Arc<Core>, Vec<Term>) -> RpcResult| {
        let weak: Weak<Core> = weak.clone();
        node.register_fn(module, function, move |args| {
            let weak = weak.clone();
            // Inside the future: a spawned function reads its own pid while it runs.
            async move {
                match weak.upgrade() {
                    Some(core) => f(&core, args),
                    None => Err(RpcFailure::Exit(Term::atom("shutdown"))),
                }
            }
        });
    };
    reg("erlang", "processes", processes);
    reg("erlang", "process_info", process_info);
    reg("observer_backend", "vsn", vsn);
    reg("observer_backend", "etop_collect", etop_collect);
    reg("observer_backend", "sys_info", sys_info);
}

fn undef() -> RpcFailure {
    RpcFailure::Error(Term::atom("undef"))
}

/// One process as the functions see it.
struct Process {
    pid: Pid,
    name: Option<Atom>,
    kind: LocalProcess,
}

fn all(core: &Core) -> Vec<Process> {
    core.registry()
        .processes()
        .into_iter()
        .map(|(pid, name, kind)| Process { pid, name, kind })
        .collect()
}

fn find(core: &Core, pid: &Pid) -> Option<Process> {
    all(core).into_iter().find(|p| p.pid == *pid)
}

fn processes(core: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    if !args.is_empty() {
        return Err(undef());
    }
    Ok(Term::list(
        all(core)
            .into_iter()
            .map(|p| Term::Pid(p.pid))
            .collect::<Vec<_>>(),
    ))
}

/// The keys `process_info/1` gives, as Erlang's.
const DEFAULT_KEYS: [&str; 13] = [
    "current_function",
    "initial_call",
    "status",
    "message_queue_len",
    "links",
    "dictionary",
    "trap_exit",
    "error_handler",
    "priority",
    "group_leader",
    "total_heap_size",
    "heap_size",
    "reductions",
];

fn mfa(m: &str, f: &str, a: i64) -> Term {
    Term::tuple(vec![Term::atom(m), Term::atom(f), Term::Int(a)])
}

/// The value of `key` for `p`; `None` for a key Erlang does not know (badarg).
fn item(core: &Core, p: &Process, key: &str) -> Option<Term> {
    let actor = match &p.kind {
        LocalProcess::Actor(a) => Some(a),
        _ => None,
    };
    let id = actor.map(|a| a.cell.get_id());
    let pids = |list: Vec<Pid>| Term::list(list.into_iter().map(Term::Pid).collect::<Vec<_>>());
    let function = match &p.kind {
        LocalProcess::Actor(_) => mfa("node_server", "actor", 0),
        LocalProcess::NetKernel => mfa("net_kernel", "loop", 0),
        LocalProcess::Router => mfa("node_server", "router", 0),
        LocalProcess::Rex => mfa("rpc", "loop", 0),
        LocalProcess::Service(_) => mfa("node_server", "service", 0),
    };
    Some(match key {
        "registered_name" => match &p.name {
            Some(n) => Term::Atom(n.clone()),
            None => Term::NIL,
        },
        "current_function" | "initial_call" => function,
        "status" => Term::atom(match actor {
            Some(a) if a.cell.get_status() >= ractor::ActorStatus::Stopping => "exiting",
            _ => "waiting",
        }),
        "message_queue_len" => Term::Int(0),
        "messages" | "dictionary" | "suspending" | "garbage_collection" => Term::NIL,
        "links" => {
            let signals = core.signals();
            pids(
                id.and_then(|id| signals.watched.get(&id))
                    .map(|w| w.links.clone())
                    .unwrap_or_default(),
            )
        }
        "monitored_by" => {
            let signals = core.signals();
            pids(
                id.and_then(|id| signals.watched.get(&id))
                    .map(|w| w.monitors.iter().map(|(_, by, _)| by.clone()).collect())
                    .unwrap_or_default(),
            )
        }
        "monitors" => Term::NIL,
        "trap_exit" => {
            crate::etf::ToTerm::to_term(&id.is_some_and(|id| core.signals().trapping.contains(&id)))
        }
        "error_handler" => Term::atom("error_handler"),
        "priority" => Term::atom("normal"),
        "group_leader" => Term::Pid(core.id.router_pid.clone()),
        "total_heap_size" | "heap_size" | "stack_size" => Term::Int(0),
        "reductions" => Term::Int(
            actor
                .map(|a| a.delivered.load(Ordering::Relaxed))
                .map_or(0, |n| i64::try_from(n).unwrap_or(i64::MAX)),
        ),
        "memory" => Term::Int(if actor.is_some() {
            ACTOR_MEMORY as i64
        } else {
            0
        }),
        _ => return None,
    })
}

fn process_info(core: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    let (pid, keys) = match &args[..] {
        [Term::Pid(pid)] => (pid, None),
        [Term::Pid(pid), keys] => (pid, Some(keys)),
        [_] | [_, _] => return Err(RpcFailure::badarg()),
        _ => return Err(undef()),
    };
    if !core.id.is_local(pid) {
        return Err(RpcFailure::badarg());
    }
    let Some(p) = find(core, pid) else {
        return Ok(Term::atom("undefined"));
    };
    let pair = |key: &str| -> Option<Term> {
        item(core, &p, key).map(|v| Term::tuple(vec![Term::atom(key), v]))
    };
    match keys {
        None => {
            let mut out: Vec<Term> = Vec::new();
            if let Some(name) = &p.name {
                out.push(Term::tuple(vec![
                    Term::atom("registered_name"),
                    Term::Atom(name.clone()),
                ]));
            }
            out.extend(DEFAULT_KEYS.iter().filter_map(|k| pair(k)));
            Ok(Term::list(out))
        }
        Some(Term::Atom(key)) => {
            // An unregistered process answers `[]` for its name, as Erlang's.
            if key.as_str() == "registered_name" && p.name.is_none() {
                return Ok(Term::NIL);
            }
            pair(key.as_str()).ok_or_else(RpcFailure::badarg)
        }
        Some(Term::List(keys)) => keys
            .iter()
            .map(|k| match k {
                Term::Atom(k) => pair(k.as_str()).ok_or_else(RpcFailure::badarg),
                _ => Err(RpcFailure::badarg()),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Term::list),
        Some(_) => Err(RpcFailure::badarg()),
    }
}

fn vsn(_: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    if !args.is_empty() {
        return Err(undef());
    }
    Ok(Term::tuple(vec![
        Term::atom("ok"),
        Term::list(
            crate::builtins::VERSION
                .chars()
                .map(|c| Term::Int(i64::from(u32::from(c))))
                .collect::<Vec<_>>(),
        ),
    ]))
}

/// `erlang:timestamp()`.
fn timestamp() -> Term {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    Term::tuple(vec![
        Term::Int((secs / 1_000_000) as i64),
        Term::Int((secs % 1_000_000) as i64),
        Term::Int(i64::from(now.subsec_micros())),
    ])
}

/// The memory figures etop and observer show: `[{total, N}, {processes, N}, ...]`.
fn memory(core: &Core, actors: u64) -> Term {
    let total = crate::builtins::node_info(core).memory_total;
    let pair = |k: &str, v: u64| Term::tuple(vec![Term::atom(k), Term::Int(v as i64)]);
    Term::list(vec![
        pair("total", total),
        pair("processes", actors * ACTOR_MEMORY),
        pair("ets", 0),
        pair("atom", 0),
        pair("code", 0),
        pair("binary", 0),
    ])
}

/// `observer_backend:etop_collect(Collector)`, spawned by `etop`: sends `{Self, #etop_info{}}`
/// to the collector, `Self` the pid of the spawned "process".
fn etop_collect(core: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    let [Term::Pid(collector)] = &args[..] else {
        return Err(RpcFailure::badarg());
    };
    let me = crate::rpc::current_pid().unwrap_or_else(|| core.id.router_pid.clone());
    let procs = all(core);
    let actors = procs
        .iter()
        .filter(|p| matches!(p.kind, LocalProcess::Actor(_)))
        .count() as u64;
    let info: Vec<Term> = procs
        .iter()
        .map(|p| {
            let get = |k| item(core, p, k).unwrap_or_default();
            let name = match &p.name {
                Some(n) => Term::Atom(n.clone()),
                None => get("initial_call"),
            };
            Term::tuple(vec![
                Term::atom("etop_proc_info"),
                Term::Pid(p.pid.clone()),
                get("memory"),
                get("reductions"),
                name,
                Term::Int(0),
                get("current_function"),
                get("message_queue_len"),
            ])
        })
        .collect();
    let record = Term::tuple(vec![
        Term::atom("etop_info"),
        timestamp(),
        Term::Int(procs.len() as i64),
        Term::atom("undefined"),
        Term::atom("undefined"),
        Term::Int(0),
        Term::NIL,
        memory(core, actors),
        Term::list(info),
    ]);
    core.send_pid(collector, Term::tuple(vec![Term::Pid(me), record]));
    Ok(Term::atom("ok"))
}

/// `observer_backend:sys_info()`: the proplist observer's system tab reads.
fn sys_info(core: &Arc<Core>, args: Vec<Term>) -> RpcResult {
    if !args.is_empty() {
        return Err(undef());
    }
    let info = crate::builtins::node_info(core);
    let actors = all(core)
        .iter()
        .filter(|p| matches!(p.kind, LocalProcess::Actor(_)))
        .count() as u64;
    let string = |s: &str| {
        Term::list(
            s.chars()
                .map(|c| Term::Int(i64::from(u32::from(c))))
                .collect::<Vec<_>>(),
        )
    };
    let pair = |k: &str, v: Term| Term::tuple(vec![Term::atom(k), v]);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as i64;
    let mut out = vec![
        pair("uptime", Term::Int(info.uptime_ms as i64)),
        pair("run_queue", Term::Int(0)),
        pair("io_input", Term::Int(info.traffic.bytes_in as i64)),
        pair("io_output", Term::Int(info.traffic.bytes_out as i64)),
        pair("logical_processors", Term::Int(cores)),
        pair("logical_processors_online", Term::Int(cores)),
        pair("logical_processors_available", Term::Int(cores)),
        pair("schedulers", Term::Int(cores)),
        pair("schedulers_online", Term::Int(cores)),
        pair("schedulers_available", Term::Int(cores)),
        pair("otp_release", string(crate::builtins::OTP_RELEASE)),
        pair(
            "version",
            string(&format!("node_server {}", crate::builtins::VERSION)),
        ),
        pair("system_architecture", string(std::env::consts::ARCH)),
        pair("kernel_poll", Term::atom("true")),
        pair("smp_support", Term::atom("true")),
        pair("threads", Term::atom("true")),
        pair("thread_pool_size", Term::Int(cores)),
        pair("wordsize_internal", Term::Int(8)),
        pair("wordsize_external", Term::Int(8)),
        // No allocator keeps accounts here: one allocator, `node_server`, whose blocks and
        // carriers are both the resident set size (observer divides by the carriers).
        pair("alloc_info", {
            let rss = Term::Int(i64::try_from(info.memory_total.max(1)).unwrap_or(i64::MAX));
            let sizes =
                |k: &str| Term::tuple(vec![Term::atom(k), rss.clone(), rss.clone(), rss.clone()]);
            Term::list(vec![pair(
                "node_server",
                Term::list(vec![Term::tuple(vec![
                    Term::atom("instance"),
                    Term::Int(0),
                    Term::list(vec![pair(
                        "mbcs",
                        Term::list(vec![sizes("blocks_size"), sizes("carriers_size")]),
                    )]),
                ])]),
            )])
        }),
        pair("process_count", Term::Int(info.process_count as i64)),
        pair("process_limit", Term::Int(1 << 28)),
        pair("atom_count", Term::Int(0)),
        pair("atom_limit", Term::Int(1 << 20)),
        pair("port_count", Term::Int(0)),
        pair("port_limit", Term::Int(65536)),
        pair("ets_count", Term::Int(0)),
        pair("ets_limit", Term::Int(8192)),
        pair(
            "dist_buf_busy_limit",
            Term::Int(core.id.config.flow.busy_limit as i64),
        ),
    ];
    if let Term::List(mem) = memory(core, actors) {
        out.extend(mem);
    }
    Ok(Term::list(out))
}
