//! The evaluator's [`Env`] on a running node, and the rpc function that evaluates
//! (`node_server_eval:eval/1,2`).
//!
//! | Erlang | here |
//! |---|---|
//! | `self()` | the node's router pid, which stands for every process of the node that is not an actor (in the remote shell, the shell's own pid) |
//! | `Dest ! Msg` | a local pid or registered name through the router (an unknown name is `badarg`), `{Name, Node}` and remote pids through the connection (dropped when there is none, as Erlang drops it) |
//! | `gen_server:call(Dest, Req[, Timeout])` | a local actor's call (Rust actors that take the request), or a remote `gen_server` call (connecting first); the default timeout is 5 s; a local actor that takes no such request fails the call with `exit:{{bad_call, Req}, {gen_server, call, Args}}` |
//! | `gen_server:cast(Dest, Req)` | `{'$gen_cast', Req}` sent as `!` sends it |
//! | `gen_server:call` to a built-in service (`rex`, `net_kernel`, `global_name_server`, ...) | not there: `exit:{noproc, ...}` (their answers go to the caller's pid, and the evaluator has none of its own) |
//! | `M:F(Args)` | the node's rpc functions (built-in and registered) |
//!
//! `node_server_eval:eval(Text, Bindings)` takes the text (a binary or a string) and the
//! bindings as `[{'X', Value}, ...]` (what an earlier call returned, or `[]`), and answers
//! `{ok, Printed, NewBindings}` or `{error, Printed, Bindings}`, `Printed` being the binary
//! the Erlang shell would print (UTF-8): the value as `~p` writes it, or the error text
//! (see [`super`]). `node_server_eval:eval(Text)` is `eval(Text, [])`.

use std::sync::{Arc, Weak};
use std::time::Duration;

use crate::core::Core;
use crate::dist::control::ProcessRef;
use crate::etf::{Atom, FromTerm, Pid, Term};
use crate::node::Node;
use crate::remote::RemoteTarget;
use crate::rpc::RpcFailure;
use crate::CallError;

use super::{Bindings, Env, EnvFuture};

/// A running node as the evaluator's environment.
pub struct NodeEnv {
    core: Arc<Core>,
    /// The process evaluating, when it is one of its own (the remote shell); else the
    /// router stands for it.
    me: Option<Pid>,
}

impl NodeEnv {
    /// The environment of `node`.
    pub fn new(node: &Node) -> NodeEnv {
        NodeEnv {
            core: node.shared().clone(),
            me: None,
        }
    }

    /// The environment of the process `me` of `core`'s node: `self()` is `me`.
    pub(crate) fn of_process(core: Arc<Core>, me: Pid) -> NodeEnv {
        NodeEnv { core, me: Some(me) }
    }

    /// Where `dest` is: this node's process (by pid or name), or a remote target.
    fn target(&self, dest: &Term) -> Option<Result<ProcessRef, RemoteTarget>> {
        let ours = &self.core.id.name;
        match dest {
            Term::Pid(p) if self.core.id.is_local(p) => Some(Ok(ProcessRef::Pid(p.clone()))),
            Term::Pid(p) => Some(Err(RemoteTarget::Pid(p.clone()))),
            Term::Atom(name) => Some(Ok(ProcessRef::Name(name.clone()))),
            Term::Tuple(t) => match &t[..] {
                [Term::Atom(name), Term::Atom(node)] if node == ours => {
                    Some(Ok(ProcessRef::Name(name.clone())))
                }
                [Term::Atom(name), Term::Atom(node)] => Some(Err(RemoteTarget::Name {
                    name: name.clone(),
                    node: node.clone(),
                })),
                _ => None,
            },
            _ => None,
        }
    }

    /// A `gen_server` call to a local actor.
    async fn local_call(
        &self,
        to: ProcessRef,
        request: Term,
        timeout: Duration,
    ) -> Result<Term, RpcFailure> {
        let (tx, rx) = tokio::sync::oneshot::channel::<Term>();
        let tx = std::sync::Mutex::new(Some(tx));
        let on_reply = crate::message::ReplyTo::new(move |reply| {
            if let Some(tx) = crate::lock(&tx).take() {
                let _ = tx.send(reply);
            }
        });
        match self.core.router.call(&to, &request, on_reply) {
            Some(true) => {}
            Some(false) => {
                return Err(RpcFailure::Exit(Term::tuple(vec![
                    Term::atom("bad_call"),
                    request,
                ])))
            }
            None => return Err(RpcFailure::Exit(Term::atom("noproc"))),
        }
        match tokio::time::timeout(timeout, rx).await {
            Err(_) => Err(RpcFailure::Exit(Term::atom("timeout"))),
            Ok(Err(_)) => Err(RpcFailure::Exit(Term::atom("noproc"))),
            Ok(Ok(reply)) => Ok(reply),
        }
    }
}

impl Env for NodeEnv {
    fn node(&self) -> Atom {
        self.core.id.name.clone()
    }

    fn self_pid(&self) -> Pid {
        self.me
            .clone()
            .unwrap_or_else(|| self.core.id.router_pid.clone())
    }

    fn nodes(&self) -> Vec<Atom> {
        let mut out: Vec<Atom> = self
            .core
            .sessions
            .connected()
            .into_iter()
            .filter(|(_, hidden)| !hidden)
            .map(|(n, _)| Atom::new(n))
            .collect();
        out.sort();
        out
    }

    fn whereis(&self, name: &Atom) -> Option<Pid> {
        self.core.registry().whereis(name)
    }

    fn registered(&self) -> Vec<Atom> {
        let mut names = self.core.registry().registered();
        names.sort();
        names
    }

    fn make_ref(&self) -> Term {
        Term::from(self.core.make_ref())
    }

    fn send(&self, dest: &Term, msg: Term) -> bool {
        match self.target(dest) {
            Some(Ok(local)) => {
                let known = self.core.resolve(&local).is_some();
                if known {
                    self.core.router.send(&local, msg, &self.core.id.name);
                }
                // Erlang: `Name ! Msg` to no such name is badarg; to a dead pid it is not.
                known || matches!(local, ProcessRef::Pid(_))
            }
            Some(Err(remote)) => {
                self.core.send_term(&remote, msg);
                true
            }
            None => false,
        }
    }

    fn call(&self, module: &Atom, function: &Atom, args: Vec<Term>) -> Option<EnvFuture<'_>> {
        let func = self.core.functions.get(module, function)?;
        let (m, f) = (module.clone(), function.clone());
        Some(Box::pin(async move {
            crate::rpc::apply(Some(func), &m, &f, args, Default::default()).await
        }))
    }

    fn gen_call(&self, dest: Term, request: Term, timeout: Option<Duration>) -> EnvFuture<'_> {
        // "infinity": a day is as good.
        let timeout = timeout.unwrap_or(Duration::from_secs(86_400));
        Box::pin(async move {
            match self.target(&dest) {
                None => Err(RpcFailure::Exit(Term::atom("noproc"))),
                Some(Ok(local)) => self.local_call(local, request, timeout).await,
                Some(Err(remote)) => {
                    let Some(node) = Node::from_core(&self.core) else {
                        return Err(RpcFailure::Exit(Term::atom("noproc")));
                    };
                    node.call(&remote, request, timeout)
                        .await
                        .map_err(|e| match e {
                            CallError::Timeout => RpcFailure::Exit(Term::atom("timeout")),
                            _ => RpcFailure::Exit(Term::atom("noproc")),
                        })
                }
            }
        })
    }

    fn gen_cast(&self, dest: Term, request: Term) {
        let msg = Term::tuple(vec![Term::atom("$gen_cast"), request]);
        let _ = self.send(&dest, msg);
    }
}

/// Registers `node_server_eval:eval/1,2` on a starting node.
pub(crate) fn install(node: &Node) {
    let weak: Weak<Core> = Arc::downgrade(node.shared());
    node.register_fn("node_server_eval", "eval", move |args| {
        let weak = weak.clone();
        async move {
            let core = weak
                .upgrade()
                .ok_or_else(|| RpcFailure::Exit(Term::atom("shutdown")))?;
            let (text, bindings) = match &args[..] {
                [text] => (text, Bindings::new()),
                [text, b] => (text, Bindings::from_term(b).ok_or_else(RpcFailure::badarg)?),
                _ => return Err(RpcFailure::Error(Term::atom("undef"))),
            };
            let text = String::from_term(text).map_err(|_| RpcFailure::badarg())?;
            let env = NodeEnv { core, me: None };
            let mut bindings = bindings;
            let outcome = super::eval(&text, &mut bindings, &env).await;
            let tag = if outcome.value.is_ok() { "ok" } else { "error" };
            Ok(Term::tuple(vec![
                Term::atom(tag),
                Term::binary(outcome.text()),
                bindings.to_term(),
            ]))
        }
    });
}
