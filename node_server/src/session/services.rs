//! The built-in processes a session answers for the peer: `net_kernel` (`is_auth`, so
//! `net_adm:ping` gets `pong`), `rex` (`rpc:call` and `erl_call`) and `erpc`'s spawn requests.
//! Both rpc paths run [`crate::rpc::Invocation`], so the admin guard and the failure shapes
//! are one rule.

use super::dispatch::{Dispatcher, Inbound, WatchFor};
use super::reply::Replier;
use crate::dist::control::{Control, ProcessRef};
use crate::etf::{Atom, Pid, Reference, Term};
use crate::outgoing::{Outgoing, ReplyTag};
use crate::router::gen_call_parts;

impl<N: Inbound> Dispatcher<N> {
    /// A replier from `from` on this session's queue.
    fn replier(&self, from: Pid) -> Replier {
        Replier {
            queue: self.queue().clone(),
            flags: self.flags(),
            from,
            outbox: None,
        }
    }

    /// A spawn request. `erpc:execute_call(Ref, M, F, A)` (what `erpc:call` and OTP 25's
    /// `rpc:call` send) runs a registered function as a short-lived "process"; any other
    /// module names a spawnable kind ([`crate::kinds`]).
    pub(super) fn spawn_request(
        &mut self,
        req_id: Reference,
        (from, group_leader): (Pid, Pid),
        (module, function, arity): (Atom, Atom, u32),
        opts: &Term,
        args: Option<Term>,
    ) {
        // `execute_call(Ref, M, F, A)` reports through the monitor; `execute_cast(M, F, A)`
        // (rpc:cast, erpc:cast) runs the function and reports nothing.
        let call = match (module.as_str(), function.as_str(), arity, &args) {
            ("erpc", "execute_call", 4, Some(Term::List(args))) => match &args[..] {
                [res, Term::Atom(m), Term::Atom(f), Term::List(a)] => {
                    Some((Some(res.clone()), m.clone(), f.clone(), a.clone()))
                }
                _ => None,
            },
            ("erpc", "execute_cast", 3, Some(Term::List(args))) => match &args[..] {
                [Term::Atom(m), Term::Atom(f), Term::List(a)] => {
                    Some((None, m.clone(), f.clone(), a.clone()))
                }
                _ => None,
            },
            _ => None,
        };
        let (link, monitor) = spawn_options(opts);
        let Some((res, m, f, a)) = call else {
            let spawner = Spawner {
                req_id,
                from,
                link,
                monitor,
            };
            if !self.admin {
                tracing::warn!(peer = %self.peer, %module, "spawn refused by the admin guard");
                return self.send(spawner.refused("not_allowed"), None);
            }
            let args = match args {
                Some(Term::List(args)) => args,
                None => Vec::new(),
                Some(_) => return self.send(spawner.refused("badarg"), None),
            };
            let target = (module, function);
            return if self.node.has_kind(target.0.as_str()) {
                self.spawn_kind(spawner, target, args)
            } else {
                self.spawn_function(spawner, target, args, group_leader)
            };
        };
        // erpc asks for a monitor only, and reports through it.
        let spawner = Spawner {
            req_id,
            from,
            link: false,
            monitor,
        };
        if !self.admin && crate::remote_shell::starts_shell(&m, &f) {
            // `erl -remsh` of OTP 25 shows no reason for a shell that does not start: say it
            // on that terminal, through the node's `user` (the caller's group leader exits
            // before it would print anything).
            let from = self.node.identity().router_pid.clone();
            let notice = crate::remote_shell::refusal_notice(&self.peer, &from);
            let to_name = crate::etf::Atom::new("user");
            self.send(Control::RegSend { from, to_name }, Some(notice));
        }
        let pid = self.node.fresh_pid();
        self.send(spawner.reply(&pid), None);
        let invocation = self
            .node
            .invocation((&self.peer, self.admin), m, f, a)
            .with_group_leader(group_leader);
        let queue = self.queue().clone();
        let in_flight = self.node.rpc_started();
        tokio::spawn(async move {
            let _in_flight = in_flight;
            let (result, stack) = invocation.run().await;
            let Some(res) = res else {
                return;
            };
            let reason = match result {
                Ok(value) => Term::tuple(vec![res, Term::atom("return"), value]),
                Err(failure) => failure.erpc_reason(&res, stack),
            };
            spawner.exited(&queue, pid, &reason);
        });
    }

    /// A spawn of a kind: the actor starts (in a task of its own, the reader goes on), its
    /// link and monitor are made, then the reply goes; a spawn that fails still gives a pid,
    /// whose link or monitor fires at once with the reason, as OTP's would.
    fn spawn_kind(&mut self, spawner: Spawner, (kind, function): (Atom, Atom), args: Vec<Term>) {
        let start = self.node.start_kind(kind.as_str(), &args);
        let node = self.node.clone();
        let queue = self.queue().clone();
        tokio::spawn(async move {
            match start.await {
                Ok(actor) => {
                    if spawner.link {
                        node.watch(&actor, WatchFor::Link(spawner.from.clone()));
                    }
                    if spawner.monitor {
                        let to = ProcessRef::Pid(actor.pid.clone());
                        node.watch(
                            &actor,
                            WatchFor::Monitor {
                                reference: spawner.req_id.clone(),
                                from: spawner.from.clone(),
                                to,
                            },
                        );
                    }
                    queue.push(Outgoing::Message(spawner.reply(&actor.pid), None));
                }
                Err(e) => {
                    tracing::warn!(%kind, error = %e, "spawn failed");
                    let pid = node.fresh_pid();
                    queue.push(Outgoing::Message(spawner.reply(&pid), None));
                    spawner.exited(&queue, pid, &e.exit_reason(&kind, &function, &args));
                }
            }
        });
    }

    /// A spawn of a registered function (`spawn(Node, M, F, A)` where `M:F` is one of the
    /// node's rpc functions, as OTP's tools do: `etop` spawns `observer_backend:etop_collect/1`):
    /// it runs as a short-lived process with a fresh pid, which the function reads as
    /// `self()` ([`crate::rpc::current_pid`]) and whose messages it reads with
    /// [`crate::rpc::receive`], and exits `normal` when it returns, or with
    /// the reason of its failure (`{undef, [{M, F, Args, []}]}` for a function that is not
    /// there, as OTP's), through the link and monitor asked for.
    fn spawn_function(
        &mut self,
        spawner: Spawner,
        (module, function): (Atom, Atom),
        args: Vec<Term>,
        group_leader: Pid,
    ) {
        let (pid, mailbox) = self.node.function_process();
        self.send(spawner.reply(&pid), None);
        let invocation = self
            .node
            .invocation((&self.peer, self.admin), module, function, args)
            .with_group_leader(group_leader);
        let queue = self.queue().clone();
        let in_flight = self.node.rpc_started();
        let node = self.node.clone();
        tokio::spawn(async move {
            let _in_flight = in_flight;
            let (result, stack) = invocation.run_as(Some(pid.clone()), Some(mailbox)).await;
            node.end_process(&pid);
            let reason = match result {
                Ok(_) => Term::atom("normal"),
                Err(failure) => failure.exit_reason(stack),
            };
            spawner.exited(&queue, pid, &reason);
        });
    }

    /// `rex`: `{call, M, F, A, GroupLeader}` calls, as `gen_server` calls or in the classic
    /// `{From, {call, M, F, A, GroupLeader}}` form that `erl_call` and C nodes send (answered
    /// with `{rex, Reply}`), and `features_request`.
    pub(super) fn rex(&mut self, msg: Term) {
        // (caller, Some(tag) for a gen_server call, the request)
        let call = match gen_call_parts(&msg) {
            Some((caller, tag, request)) => Some((caller, Some(tag), request)),
            None => match msg.as_tuple() {
                Some([Term::Pid(caller), request @ Term::Tuple(_)]) => {
                    Some((caller, None, request))
                }
                _ => None,
            },
        };
        if let Some((caller, tag, request)) = call {
            let Some([op, Term::Atom(m), Term::Atom(f), Term::List(a), gl]) = request.as_tuple()
            else {
                tracing::debug!(peer = %self.peer, %request, "unsupported rex call");
                return;
            };
            // `block_call` answers the same; here it does not block other calls.
            if !op.is_atom("call") && !op.is_atom("block_call") {
                return;
            }
            let mut invocation =
                self.node
                    .invocation((&self.peer, self.admin), m.clone(), f.clone(), a.clone());
            if let Term::Pid(gl) = gl {
                invocation = invocation.with_group_leader(gl.clone());
            }
            let replier = self.replier(self.node.identity().rex_pid.clone());
            let (caller, tag) = (caller.clone(), tag.map(ReplyTag::new));
            let in_flight = self.node.rpc_started();
            tokio::spawn(async move {
                let _in_flight = in_flight;
                let (result, stack) = invocation.run().await;
                let reply = match result {
                    Ok(value) => value,
                    Err(failure) => failure.rex_reply(stack),
                };
                match tag {
                    Some(tag) => replier.reply(&caller, &tag, reply),
                    None => replier.send(&caller, Term::tuple(vec![Term::atom("rex"), reply])),
                }
            });
            return;
        }
        if let Some([Term::Pid(from), what]) = msg.as_tuple() {
            if what.is_atom("features_request") {
                let reply = Term::tuple(vec![
                    Term::atom("features_reply"),
                    Term::Atom(self.node.identity().name.clone()),
                    Term::list(vec![Term::atom("erpc")]),
                ]);
                self.send(Control::Send { to: from.clone() }, Some(reply));
            }
        }
    }

    /// Our `net_kernel`: answers `{is_auth, Node}` calls so `net_adm:ping` gets `pong`.
    pub(super) fn net_kernel(&mut self, msg: Term) {
        let Some((caller, tag, request)) = gen_call_parts(&msg) else {
            return;
        };
        let reply = match request.as_tuple() {
            Some([op, _node]) if op.is_atom("is_auth") => Term::atom("yes"),
            _ => {
                tracing::debug!(peer = %self.peer, %request, "unsupported net_kernel call");
                return;
            }
        };
        self.replier(self.node.identity().net_kernel_pid.clone())
            .reply(caller, &ReplyTag::new(tag), reply);
    }
}

/// The `link` and `monitor` options of a spawn request (`monitor` also as `{monitor, Opts}`).
fn spawn_options(opts: &Term) -> (bool, bool) {
    let Term::List(opts) = opts else {
        return (false, false);
    };
    let link = opts.iter().any(|o| o.is_atom("link"));
    let monitor = opts.iter().any(|o| {
        o.is_atom("monitor") || matches!(o.as_tuple(), Some([k, _]) if k.is_atom("monitor"))
    });
    (link, monitor)
}

/// Who asked for a spawn, and what it asked to hold on the new process.
struct Spawner {
    req_id: Reference,
    from: Pid,
    link: bool,
    monitor: bool,
}

impl Spawner {
    /// `SPAWN_REPLY` with the new pid, and the link and monitor made (flags 1 and 2).
    fn reply(&self, pid: &Pid) -> Control {
        Control::SpawnReply {
            req_id: self.req_id.clone(),
            to: self.from.clone(),
            flags: u32::from(self.link) | (u32::from(self.monitor) << 1),
            result: Term::Pid(pid.clone()),
        }
    }

    /// `SPAWN_REPLY` with the error `why`: nothing started.
    fn refused(&self, why: &str) -> Control {
        Control::SpawnReply {
            req_id: self.req_id.clone(),
            to: self.from.clone(),
            flags: 0,
            result: Term::atom(why),
        }
    }

    /// The new process `pid` (one that holds no actor) exited with `reason`: the spawner
    /// hears it through the link and the monitor it asked for, by the one rule of exit
    /// signals ([`crate::signals::exit_signals`]; the monitor's reference is the request's).
    fn exited(self, queue: &crate::send_queue::SendQueue, pid: Pid, reason: &Term) {
        let watched = crate::signals::Watched {
            monitors: if self.monitor {
                vec![(self.req_id, self.from.clone(), ProcessRef::Pid(pid.clone()))]
            } else {
                Vec::new()
            },
            links: if self.link {
                vec![self.from]
            } else {
                Vec::new()
            },
            pid: Some(pid),
        };
        for (_, signal) in crate::signals::exit_signals(watched, reason) {
            queue.push(Outgoing::Message(signal, None));
        }
    }
}
