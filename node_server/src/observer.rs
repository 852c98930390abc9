//! What OTP's observer asks of a node it shows, beyond the processes ([`crate::processes`]):
//! rpc functions that answer its tabs, so that each tab shows what this node has and none
//! crashes observer (a crash in one tab stops observer's whole window).
//!
//! | tab | asks | answer |
//! |---|---|---|
//! | System | `observer_backend:sys_info/0` | [`crate::processes`]: versions, CPUs, memory, counts; one allocator, `node_server`, whose blocks and carriers are the resident set size |
//! | Load Charts | a spawn of `observer_backend:fetch_stats(Parent, Ms)` | a process that sends `{stats, 1, SchedulerWallTime, Io, Memory}` to `Parent` every `Ms` until any message reaches it (observer sends `exit` when the tab goes), the parent's node goes or this node stops: scheduler utilisation is the process's CPU time spread over one "scheduler" per CPU, memory as `erlang:memory/0` answers |
//! | Memory Allocators | `sys_info/0`'s `alloc_info` | the one allocator above |
//! | Applications | `appmon_info:start_link2/3`, then casts `app_ctrl` and `app` | a process of the node that answers: no applications (the node runs none) |
//! | Processes | `erlang:function_exported(observer_backend, procs_info, 1)` | `false`, so observer uses `etop_collect/1` ([`crate::processes`]) and lists the node's processes |
//! | Ports | `function_exported(.., get_port_list, 0)`, `observer_backend:get_port_list/0` | `[]`: no Erlang ports |
//! | Sockets | `observer_backend:get_socket_list/0`, `socket_info/0` | `[]` |
//! | Table Viewer | `observer_backend:get_table_list/2` | `[]`: no ETS tables |
//!
//! `erlang:function_exported(M, F, A)` is true when `M:F` is one of the node's rpc functions
//! (whatever `A`: the node does not record arities).

use std::sync::{Arc, OnceLock, Weak};

use crate::core::Core;
use crate::etf::{Pid, Term};
use crate::node::Node;
use crate::rpc::RpcFailure;

/// Registers the functions on a starting node.
pub(crate) fn register_functions(node: &Node) {
    let weak: Weak<Core> = Arc::downgrade(node.shared());
    let empty = |args: Vec<Term>, arity: usize| {
        let result = if args.len() == arity {
            Ok(Term::NIL)
        } else {
            Err(RpcFailure::Error(Term::atom("undef")))
        };
        async move { result }
    };
    node.register_fn("observer_backend", "get_port_list", move |a| empty(a, 0));
    node.register_fn("observer_backend", "get_socket_list", move |a| empty(a, 0));
    node.register_fn("observer_backend", "socket_info", move |a| empty(a, 0));
    node.register_fn("observer_backend", "get_table_list", move |a| empty(a, 2));

    let w = weak.clone();
    node.register_fn("observer_backend", "fetch_stats", move |args| {
        let weak = w.clone();
        async move { fetch_stats(weak, args).await }
    });

    let w = weak.clone();
    node.register_fn("erlang", "function_exported", move |args| {
        let result = match (&args[..], w.upgrade()) {
            (_, None) => Err(RpcFailure::Exit(Term::atom("shutdown"))),
            ([Term::Atom(m), Term::Atom(f), Term::Int(_)], Some(core)) => {
                Ok(Term::atom(if core.functions.get(m, f).is_some() {
                    "true"
                } else {
                    "false"
                }))
            }
            ([_, _, _], _) => Err(RpcFailure::badarg()),
            _ => Err(RpcFailure::Error(Term::atom("undef"))),
        };
        async move { result }
    });

    // One appmon process per node, made on first use.
    let appmon: Arc<OnceLock<Pid>> = Arc::default();
    node.register_fn("appmon_info", "start_link2", move |args| {
        let result = match (&args[..], weak.upgrade()) {
            (_, None) => Err(RpcFailure::Exit(Term::atom("shutdown"))),
            ([_starter, _client, _opts], Some(core)) => {
                let pid = appmon.get_or_init(|| start_appmon(&core)).clone();
                Ok(Term::tuple(vec![Term::atom("ok"), Term::Pid(pid)]))
            }
            _ => Err(RpcFailure::Error(Term::atom("undef"))),
        };
        async move { result }
    });
}

/// `observer_backend:fetch_stats(Parent, Ms)`, as a spawned process (see the module docs).
async fn fetch_stats(weak: Weak<Core>, args: Vec<Term>) -> crate::rpc::RpcResult {
    let [Term::Pid(parent), Term::Int(ms)] = &args[..] else {
        return Err(RpcFailure::badarg());
    };
    // Only as a process: an rpc has no mailbox to stop it.
    if crate::rpc::current_pid().is_none() {
        return Err(RpcFailure::badarg());
    }
    let every = std::time::Duration::from_millis((*ms).clamp(10, 60_000) as u64);
    let started = std::time::Instant::now();
    loop {
        if crate::rpc::receive(Some(every)).await.is_some() {
            return Ok(Term::atom("ok"));
        }
        let Some(core) = weak.upgrade() else {
            return Ok(Term::atom("ok"));
        };
        if core.ops.is_stopping() || core.session(&parent.node).is_none() {
            return Ok(Term::atom("ok"));
        }
        core.send_pid(parent, stats(&core, started.elapsed()));
    }
}

/// `{stats, 1, SchedulerWallTime, {{input, In}, {output, Out}}, Memory}`.
fn stats(core: &Arc<Core>, wall: std::time::Duration) -> Term {
    let cpus = crate::builtins::cpus().max(1);
    // One "scheduler" per CPU, each as busy as the process's CPU time spread over them.
    let total = wall.as_micros().min(i64::MAX as u128) as i64;
    let active = ((crate::builtins::cpu_ms() * 1000 / cpus) as i64).min(total);
    let schedulers = (1..=cpus)
        .map(|id| {
            Term::tuple(vec![
                Term::Int(id as i64),
                Term::Int(active),
                Term::Int(total),
            ])
        })
        .collect::<Vec<_>>();
    let io = crate::builtins::statistics(core, vec![Term::atom("io")]).unwrap_or(Term::NIL);
    let memory = crate::builtins::memory(core, Vec::new()).unwrap_or(Term::NIL);
    Term::tuple(vec![
        Term::atom("stats"),
        Term::Int(1),
        Term::list(schedulers),
        io,
        memory,
    ])
}

/// The appmon process: it answers `app_ctrl` with no applications and `app` with an empty
/// tree, as `appmon_info` delivers them (`{delivery, Self, Cmd, Aux, Result}`).
fn start_appmon(core: &Arc<Core>) -> Pid {
    let weak = Arc::downgrade(core);
    let me: Arc<OnceLock<Pid>> = Arc::default();
    let me_in = me.clone();
    let pid = core.registry().add_service(
        None,
        Box::new(move |_from, msg| {
            let (Some(core), Some(me)) = (weak.upgrade(), me_in.get()) else {
                return;
            };
            if let Some((to, reply)) = appmon_reply(me, &msg) {
                core.send_pid(&to, reply);
            }
        }),
    );
    let _ = me.set(pid.clone());
    pid
}

/// The answer to a message to the appmon process: to whom, and what.
fn appmon_reply(me: &Pid, msg: &Term) -> Option<(Pid, Term)> {
    // gen_server:cast(Serv, {From, Cmd, Aux, OnOff, Opts})
    let [tag, request] = msg.as_tuple()? else {
        return None;
    };
    if !tag.is_atom("$gen_cast") {
        return None;
    }
    let [Term::Pid(from), Term::Atom(cmd), aux, on, _opts] = request.as_tuple()? else {
        return None;
    };
    if !on.is_atom("true") {
        return None;
    }
    let result = match cmd.as_str() {
        "app_ctrl" => Term::NIL,
        "app" => Term::tuple(vec![Term::NIL, Term::NIL, Term::NIL, Term::NIL]),
        _ => return None,
    };
    let delivery = Term::tuple(vec![
        Term::atom("delivery"),
        Term::Pid(me.clone()),
        Term::Atom(cmd.clone()),
        aux.clone(),
        result,
    ]);
    Some((from.clone(), delivery))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::etf::Atom;

    fn pid(id: u32) -> Pid {
        Pid {
            node: Atom::new("a@h"),
            id,
            serial: 0,
            creation: 1,
        }
    }

    fn cast(cmd: &str, on: bool) -> Term {
        Term::tuple(vec![
            Term::atom("$gen_cast"),
            Term::tuple(vec![
                Term::Pid(pid(7)),
                Term::atom(cmd),
                Term::atom("a@h"),
                Term::atom(if on { "true" } else { "false" }),
                Term::NIL,
            ]),
        ])
    }

    #[test]
    fn appmon_delivers_no_applications() {
        let me = pid(1);
        let (to, reply) = appmon_reply(&me, &cast("app_ctrl", true)).unwrap();
        assert_eq!(to, pid(7));
        assert_eq!(reply.to_string(), "{delivery,<a@h.1.0>,app_ctrl,a@h,[]}");
        let (_, reply) = appmon_reply(&me, &cast("app", true)).unwrap();
        assert_eq!(
            reply.to_string(),
            "{delivery,<a@h.1.0>,app,a@h,{[],[],[],[]}}"
        );
        assert_eq!(appmon_reply(&me, &cast("app_ctrl", false)), None);
        assert_eq!(appmon_reply(&me, &cast("load", true)), None);
        assert_eq!(appmon_reply(&me, &Term::atom("x")), None);
    }
}
