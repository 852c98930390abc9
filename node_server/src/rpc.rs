//! Remote procedure calls both ways.
//!
//! Rust functions registered under `{Module, Function}` ([`crate::Node::register_fn`]) answer
//! Erlang's `rpc:call/4` and `erpc:call/4`:
//! - `erpc` (and `rpc`, which OTP 25 builds on it) sends `SPAWN_REQUEST` for
//!   `erpc:execute_call(Ref, M, F, A)` with a monitor. The node answers `SPAWN_REPLY` with a
//!   pid for the call, runs the function, and ends that "process" with `MONITOR_P_EXIT` whose
//!   reason is `{Ref, return, Value}`, `{Ref, throw, T}`, `{Ref, exit, R}` or
//!   `{Ref, error, R, Stack}`: the shapes `erpc` turns into a value or an exception.
//! - the classic `rex` server answers `{call, M, F, A, GroupLeader}` calls (what `erl_call` and
//!   old nodes send) with the value or `{badrpc, {'EXIT', Reason}}`, and `{From,
//!   features_request}` with `{features_reply, Node, [erpc]}`.
//!
//! An unknown `M:F/A` fails as Erlang fails it: `error:undef` with `[{M, F, Args, []}]`.
//!
//! [`crate::Node::rpc`] calls an Erlang function from Rust through the peer's `rex`.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use crate::etf::{Atom, Pid, Term};

/// How a registered function fails, mapped onto Erlang's exception classes.
#[derive(Debug, Clone, PartialEq)]
pub enum RpcFailure {
    /// `erlang:error(Reason)`: e.g. `badarith`, `badarg`.
    Error(Term),
    /// `exit(Reason)`.
    Exit(Term),
    /// `throw(Value)`.
    Throw(Term),
}

impl RpcFailure {
    /// `error:badarg`.
    pub fn badarg() -> RpcFailure {
        RpcFailure::Error(Term::atom("badarg"))
    }

    /// `error:badarith`.
    pub fn badarith() -> RpcFailure {
        RpcFailure::Error(Term::atom("badarith"))
    }
}

/// What a registered function returns.
pub type RpcResult = Result<Term, RpcFailure>;

/// A registered function: takes the argument list, returns the value or a failure.
pub type RpcFn =
    Arc<dyn Fn(Vec<Term>) -> Pin<Box<dyn Future<Output = RpcResult> + Send>> + Send + Sync>;

/// Why an rpc from Rust failed.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum RpcError {
    /// The remote side answered `{badrpc, Reason}` (an exception, an unknown function, ...).
    #[error("badrpc: {0}")]
    BadRpc(Term),
    /// The call itself failed (no connection, no `rex`, timeout).
    #[error(transparent)]
    Call(#[from] crate::CallError),
}

/// Whether a `{badrpc, Reason}` reason is `{'EXIT', {undef, _}}`: the function is not there
/// (on a node of ours: a node without that part, or not ours at all).
pub fn is_undef(reason: &Term) -> bool {
    matches!(reason.as_tuple(), Some([exit, inner]) if exit.is_atom("EXIT")
        && matches!(inner.as_tuple(), Some([undef, _]) if undef.is_atom("undef")))
}

/// The exit reason in a `{badrpc, {'EXIT', Reason}}` without its stack, as text: `badarg`
/// for `{badarg, Stack}`, `not_allowed` for the admin guard's `{not_allowed, Node}`.
pub fn badrpc_reason(reason: &Term) -> String {
    match reason.as_tuple() {
        Some([exit, inner]) if exit.is_atom("EXIT") => inner
            .as_tuple()
            .and_then(|t| t.first())
            .unwrap_or(inner)
            .to_string(),
        _ => reason.to_string(),
    }
}

/// `{Module, Function}` of a registered function.
pub(crate) type FnKey = (Atom, Atom);

/// The functions callable by rpc on this node.
#[derive(Default)]
pub(crate) struct Functions {
    by_key: RwLock<HashMap<FnKey, RpcFn>>,
}

impl Functions {
    /// The registered function `module:function`, if any.
    pub fn get(&self, module: &Atom, function: &Atom) -> Option<RpcFn> {
        crate::read(&self.by_key)
            .get(&(module.clone(), function.clone()))
            .cloned()
    }

    /// Whether some function of `module` is registered.
    pub fn has_module(&self, module: &Atom) -> bool {
        crate::read(&self.by_key).keys().any(|(m, _)| m == module)
    }

    /// Registers (or replaces) `module:function`.
    pub fn insert(&self, module: Atom, function: Atom, f: RpcFn) {
        crate::write(&self.by_key).insert((module, function), f);
    }
}

/// One rpc from another node, `M:F(Args)`, looked up when it arrived and checked against the
/// admin guard ([`crate::admin`]): what `rex` and `erpc` both run.
pub(crate) struct Invocation {
    module: Atom,
    function: Atom,
    args: Vec<Term>,
    /// The function, or why the caller may not call it.
    func: Result<Option<RpcFn>, RpcFailure>,
    /// The caller's group leader (what a spawn request or a `rex` call names).
    group_leader: Option<Pid>,
    /// The caller's node.
    caller_node: Atom,
}

impl Invocation {
    /// `M:F(Args)` called from `peer`; `admin` is whether the peer passes the admin guard.
    pub fn new(
        functions: &Functions,
        (peer, admin): (&Atom, bool),
        module: Atom,
        function: Atom,
        args: Vec<Term>,
    ) -> Invocation {
        let func = if admin {
            Ok(functions.get(&module, &function))
        } else {
            tracing::warn!(%peer, %module, %function, "rpc from a node outside the admin allow-list refused");
            Err(RpcFailure::Exit(crate::admin::refusal(peer)))
        };
        Invocation {
            module,
            function,
            args,
            func,
            group_leader: None,
            caller_node: peer.clone(),
        }
    }

    /// The group leader the caller named: the function reads it with
    /// [`current_group_leader`] (the remote shell talks to it, [`crate::remote_shell`]).
    pub fn with_group_leader(mut self, group_leader: Pid) -> Invocation {
        self.group_leader = Some(group_leader);
        self
    }

    /// Runs it: the result, and the stack Erlang would report with an error.
    pub async fn run(self) -> (RpcResult, Term) {
        self.run_as(None, None).await
    }

    /// [`Invocation::run`] as the process `pid` (a spawn of the function), whose messages
    /// arrive in `mailbox`: the function reads them with [`current_pid`] and [`receive`].
    pub async fn run_as(
        self,
        pid: Option<Pid>,
        mailbox: Option<Arc<Mailbox>>,
    ) -> (RpcResult, Term) {
        let stack = stack(&self.module, &self.function, &self.args);
        let result = match self.func {
            Err(refusal) => Err(refusal),
            Ok(func) => {
                let caller = Caller {
                    pid,
                    mailbox,
                    group_leader: self.group_leader,
                    node: Some(self.caller_node),
                };
                apply(func, &self.module, &self.function, self.args, caller).await
            }
        };
        (result, stack)
    }
}

tokio::task_local! {
    /// Who the running function runs for (set once, by [`apply`]).
    static CALLER: Caller;
}

/// How many messages may wait in a spawned function's mailbox; more are dropped, with a
/// warning in the log.
pub const MAILBOX_CAP: usize = 1024;

/// The messages sent to the pid of a spawned function ([`receive`]).
#[derive(Debug)]
pub(crate) struct Mailbox(tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Term>>);

impl Mailbox {
    /// A mailbox and what puts messages in it (false when it is full or gone).
    pub fn new() -> (Arc<Mailbox>, impl Fn(Term) -> bool + Send + Sync + 'static) {
        let (tx, rx) = tokio::sync::mpsc::channel(MAILBOX_CAP);
        let mailbox = Arc::new(Mailbox(tokio::sync::Mutex::new(rx)));
        (mailbox, move |msg| tx.try_send(msg).is_ok())
    }
}

/// The next message sent to the process this function runs as, when it was spawned
/// (`spawn(Node, M, F, A)`: [`current_pid`]), waiting at most `timeout` (`None`: as long as
/// it takes): Erlang's `receive Msg -> .. after T -> .. end` for functions. `None` when the
/// time is up, or the function is not running as a spawned process.
pub async fn receive(timeout: Option<std::time::Duration>) -> Option<Term> {
    let mailbox = CALLER.try_with(|c| c.mailbox.clone()).ok().flatten()?;
    let mut rx = mailbox.0.lock().await;
    match timeout {
        None => rx.recv().await,
        Some(t) => tokio::time::timeout(t, rx.recv()).await.ok().flatten(),
    }
}

/// The pid of the process a function runs as, when it was spawned (`spawn(Node, M, F, A)`
/// of a registered function, see [`crate::kinds`]): what `self()` is for it. `None` in an rpc.
pub fn current_pid() -> Option<Pid> {
    CALLER.try_with(|c| c.pid.clone()).ok().flatten()
}

/// The group leader of the process that called the function, as the caller's node named
/// it (`group_leader()` for it): the process that takes its I/O. `None` when the call named
/// none (a call from Rust, or from the evaluator).
pub fn current_group_leader() -> Option<Pid> {
    CALLER.try_with(|c| c.group_leader.clone()).ok().flatten()
}

/// The node that called the function by rpc (or spawned it); `None` for a call from this
/// node's own Rust code.
pub fn current_caller_node() -> Option<Atom> {
    CALLER.try_with(|c| c.node.clone()).ok().flatten()
}

/// Who a function runs for: its own pid and mailbox when spawned, the caller's group leader
/// and node.
#[derive(Debug, Clone, Default)]
pub(crate) struct Caller {
    pub pid: Option<Pid>,
    pub mailbox: Option<Arc<Mailbox>>,
    pub group_leader: Option<Pid>,
    pub node: Option<Atom>,
}

/// Runs `M:F(Args)` against the registered functions, as Erlang's `apply/3` would.
pub(crate) async fn apply(
    f: Option<RpcFn>,
    module: &Atom,
    function: &Atom,
    args: Vec<Term>,
    caller: Caller,
) -> RpcResult {
    match f {
        Some(f) => {
            // A panicking function is an error, not a dead node.
            let task = tokio::spawn(CALLER.scope(caller, f(args)));
            match task.await {
                Ok(result) => result,
                Err(e) => Err(RpcFailure::Error(Term::tuple(vec![
                    Term::atom("panic"),
                    Term::binary(e.to_string()),
                ]))),
            }
        }
        None => {
            tracing::debug!(%module, %function, "rpc of an unknown function");
            Err(RpcFailure::Error(Term::atom("undef")))
        }
    }
}

impl RpcFailure {
    /// The exit reason of a process that failed this way (`stack` as [`Invocation::run`]
    /// gives it): `{Reason, Stack}` for an error, the reason of an exit, `{{nocatch, Value},
    /// Stack}` for a throw.
    pub(crate) fn exit_reason(&self, stack: Term) -> Term {
        match self {
            RpcFailure::Error(r) => Term::tuple(vec![r.clone(), stack]),
            RpcFailure::Exit(r) => r.clone(),
            RpcFailure::Throw(t) => Term::tuple(vec![
                Term::tuple(vec![Term::atom("nocatch"), t.clone()]),
                stack,
            ]),
        }
    }

    /// The `erpc:execute_call` exit reason for this failure.
    pub(crate) fn erpc_reason(&self, res: &Term, stack: Term) -> Term {
        match self {
            RpcFailure::Error(r) => {
                Term::tuple(vec![res.clone(), Term::atom("error"), r.clone(), stack])
            }
            RpcFailure::Exit(r) => Term::tuple(vec![res.clone(), Term::atom("exit"), r.clone()]),
            RpcFailure::Throw(t) => Term::tuple(vec![res.clone(), Term::atom("throw"), t.clone()]),
        }
    }

    /// What `rpc:call` (through `rex`) answers for this failure: `{badrpc, {'EXIT', ...}}`.
    pub(crate) fn rex_reply(&self, stack: Term) -> Term {
        let exit = match self {
            RpcFailure::Error(r) => Term::tuple(vec![r.clone(), stack]),
            RpcFailure::Exit(r) => r.clone(),
            // rpc returns a thrown value as the result.
            RpcFailure::Throw(t) => return t.clone(),
        };
        Term::tuple(vec![
            Term::atom("badrpc"),
            Term::tuple(vec![Term::atom("EXIT"), exit]),
        ])
    }
}

/// The stack Erlang reports for a call: `[{M, F, Args, []}]`.
pub(crate) fn stack(module: &Atom, function: &Atom, args: &[Term]) -> Term {
    Term::list(vec![Term::tuple(vec![
        Term::Atom(module.clone()),
        Term::Atom(function.clone()),
        Term::list(args.to_vec()),
        Term::NIL,
    ])])
}
