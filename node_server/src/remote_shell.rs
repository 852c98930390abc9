//! The shell that `erl -remsh NODE` runs on a node of ours: a `(node@host)1>` prompt on the
//! operator's terminal, evaluating with [`crate::eval`] on this node.
//!
//! # What `erl -remsh` asks of the node
//! Read from OTP's `user_drv` and `group` of each release (OTP 25 to 29):
//! - OTP 26 and later first ask, each by `erpc:call`: `code:ensure_loaded(shell)` (answered
//!   `{module, shell}`, [`crate::builtins`]), `net_kernel:get_net_ticktime()` (the remote
//!   shell's node takes the same tick time), `application:get_env(stdlib, shell_slogan,
//!   erlang:system_info(system_version))` (the default comes back: the slogan is our
//!   `system_version`) and `erlang:system_info(otp_release)` (which `edlin_expand:expand`
//!   arity Tab completion calls). OTP 25 asks none of these.
//! - Then, on every release, the local `group` process calls `shell:start()` on our node by
//!   `erpc:call` with itself as the caller's group leader. `shell:start/0` here starts a
//!   shell process (an actor with a pid, listed by `erlang:processes/0`) whose group leader
//!   is that `group` process, and returns its pid; the `group` links to it.
//! - Tab: `edlin_expand:expand/1,2`, answered `{no, [], []}` (no completion).
//!
//! # The shell process
//! It speaks Erlang's I/O protocol with its group leader: it prints a banner, then asks for
//! a line with `{get_line, unicode, Prompt}` (`(node@host)N> `, N counting evaluations as
//! erl's shell does), gathers lines until a `.` ends an expression ([`crate::eval::Lines`],
//! the rule `nodectl repl` follows too), evaluates each expression with the bindings of
//! the ones before (`b()`, `f()`, `f(X)`), and writes the value or the error with
//! `{put_chars, unicode, Text}` exactly as [`crate::eval`] prints it. Then the next prompt.
//! `self()` in it is the shell's pid.
//!
//! - `q()` or `init:stop()` stops this node gracefully, as in an Erlang remote shell: the
//!   answer `ok` is written first (the evaluation counts as an rpc in flight, and a
//!   graceful stop writes what is queued, [`crate::ops`]).
//! - Ctrl-G `q` halts the operator's node: the connection goes, the link from its `group`
//!   fires `noconnection`, and the shell process ends. Ctrl-G `k` kills it. Ctrl-G `i`
//!   (interrupt) leaves it running: the shell traps exits, ignores `interrupt` (an evaluation
//!   runs to its end; the prompt it waits at stays) and ends on any other exit signal.
//! - An `eof` or error reply from the group leader ends the shell (`normal`).
//! - Anything else sent to the shell's pid is dropped (there is no `flush()`).
//!
//! The admin guard ([`crate::admin`]) applies: `erl -remsh` from a node outside the allow-list
//! gets no shell. OTP 26 and later print the refusal (`{not_allowed, CallerNode}`, the exit
//! of their first `erpc:call`) as they exit; OTP 25's only says `Shell process terminated!`,
//! so the node also writes the refusal on that terminal through the caller's `user`.

use std::collections::VecDeque;
use std::sync::{Arc, Weak};

use ractor::{Actor, ActorProcessingErr, ActorRef};

use crate::core::Core;
use crate::etf::{Atom, FromTerm, Pid, Term};
use crate::eval::{Bindings, Lines, NodeEnv};
use crate::node::Node;
use crate::remote::{Raw, RemoteTarget};
use crate::rpc::RpcFailure;

/// What the shell prints first.
fn banner() -> String {
    format!(
        "Eshell node_server {} (press Ctrl+G to abort; q(). stops this node)\n",
        crate::builtins::VERSION
    )
}

/// What the group leader answered to a `get_line`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Input {
    /// A line, without its newline.
    Line(String),
    /// The read was interrupted (Ctrl-G `i`): what was typed of the expression goes, the
    /// prompt comes again.
    Interrupted,
    /// The end of input, or an error: the shell ends.
    End,
}

impl Input {
    /// Reads the reply to a `get_line`: characters as a list (the group's default, `list`
    /// mode) or a UTF-8 binary (`binary` mode), `eof`, or `{error, Reason}`.
    pub fn from_reply(reply: &Term) -> Input {
        if let Some([error, why]) = reply.as_tuple() {
            if error.is_atom("error") && why.is_atom("interrupted") {
                return Input::Interrupted;
            }
        }
        match String::from_term(reply) {
            Ok(text) => {
                let text = text.strip_suffix('\n').unwrap_or(&text);
                Input::Line(text.strip_suffix('\r').unwrap_or(text).to_owned())
            }
            Err(_) => Input::End,
        }
    }
}

/// What the shell does next.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Step {
    /// Ask the group leader for a line with this prompt.
    Read(String),
    /// Evaluate this expression (then [`Shell::evaluated`]).
    Eval(String),
    /// End the shell.
    Stop,
}

/// The shell's logic without its process: input in, steps out.
#[derive(Debug)]
pub(crate) struct Shell {
    node: String,
    lines: Lines,
    /// Expressions a line completed that are not evaluated yet.
    waiting: VecDeque<String>,
    /// The bindings of the evaluations so far.
    pub bindings: Bindings,
}

impl Shell {
    /// A shell on `node`.
    pub fn new(node: &str) -> Shell {
        Shell {
            node: node.to_owned(),
            lines: Lines::new(),
            waiting: VecDeque::new(),
            bindings: Bindings::new(),
        }
    }

    /// The next step: an expression waiting, else a prompt.
    pub fn next(&mut self) -> Step {
        match self.waiting.pop_front() {
            Some(expr) => Step::Eval(expr),
            None => Step::Read(self.lines.prompt(&self.node)),
        }
    }

    /// Takes what the group leader answered.
    pub fn input(&mut self, input: Input) -> Step {
        match input {
            Input::End => Step::Stop,
            Input::Interrupted => {
                self.lines.clear();
                self.waiting.clear();
                self.next()
            }
            Input::Line(line) => {
                self.waiting.extend(self.lines.push_line(&line));
                self.next()
            }
        }
    }

    /// Counts an evaluation that gave a value (`ok`) or printed `printed`.
    pub fn evaluated(&mut self, ok: bool, printed: &str) {
        self.lines.evaluated(ok, printed);
    }
}

/// An I/O request to a group leader: `{io_request, From, ReplyAs, Request}`.
fn io_request(from: &Pid, reply_as: Term, request: Term) -> Term {
    Term::tuple(vec![
        Term::atom("io_request"),
        Term::Pid(from.clone()),
        reply_as,
        request,
    ])
}

/// The shell process.
struct ShellActor;

/// Its state.
struct ShellState {
    core: Weak<Core>,
    /// Its pid.
    me: Pid,
    /// Its group leader: the operator's `group` process.
    group_leader: Pid,
    shell: Shell,
    /// The `ReplyAs` of the `get_line` waiting for its answer.
    reading: Option<Term>,
    /// Numbers the requests.
    requests: u64,
}

impl ShellState {
    /// Sends an I/O request to the group leader; its `ReplyAs`.
    fn request(&mut self, core: &Core, request: Term) -> Term {
        self.requests += 1;
        let reply_as = Term::tuple(vec![
            Term::atom("node_server_shell"),
            Term::Int(self.requests as i64),
        ]);
        let msg = io_request(&self.me, reply_as.clone(), request);
        core.send_term(&RemoteTarget::Pid(self.group_leader.clone()), msg);
        reply_as
    }

    fn put_chars(&mut self, core: &Core, text: String) {
        let request = Term::tuple(vec![
            Term::atom("put_chars"),
            Term::atom("unicode"),
            Term::binary(text),
        ]);
        self.request(core, request);
    }

    /// Runs steps until the shell waits for input or stops; false when it stops.
    async fn run(&mut self, core: &Arc<Core>, mut step: Step) -> bool {
        loop {
            match step {
                Step::Read(prompt) => {
                    let request = Term::tuple(vec![
                        Term::atom("get_line"),
                        Term::atom("unicode"),
                        Term::binary(prompt),
                    ]);
                    self.reading = Some(self.request(core, request));
                    return true;
                }
                Step::Stop => return false,
                Step::Eval(expr) => {
                    // An rpc in flight: a graceful stop (`q()`) waits until the answer is
                    // queued, then writes it.
                    let in_flight = core.ops.rpc_started();
                    let env = NodeEnv::of_process(core.clone(), self.me.clone());
                    let outcome = crate::eval::eval(&expr, &mut self.shell.bindings, &env).await;
                    let text = outcome.text();
                    self.shell.evaluated(outcome.value.is_ok(), &text);
                    self.put_chars(core, format!("{text}\n"));
                    drop(in_flight);
                    step = self.shell.next();
                }
            }
        }
    }
}

impl Actor for ShellActor {
    type Msg = Raw;
    type State = ShellState;
    type Arguments = (Weak<Core>, Pid);

    async fn pre_start(
        &self,
        myself: ActorRef<Raw>,
        (core, group_leader): (Weak<Core>, Pid),
    ) -> Result<ShellState, ActorProcessingErr> {
        let strong = core.upgrade().ok_or("the node is stopping")?;
        let me = strong.router.expose(&myself).pid.clone();
        // Exit signals come as messages: Ctrl-G `i` (an interrupt) leaves the shell running.
        strong.router.trap_exits(myself.get_id(), true);
        Ok(ShellState {
            shell: Shell::new(strong.id.name.as_str()),
            core,
            me,
            group_leader,
            reading: None,
            requests: 0,
        })
    }

    async fn post_start(
        &self,
        myself: ActorRef<Raw>,
        state: &mut ShellState,
    ) -> Result<(), ActorProcessingErr> {
        let Some(core) = state.core.upgrade() else {
            myself.stop(None);
            return Ok(());
        };
        state.put_chars(&core, banner());
        let step = state.shell.next();
        if !state.run(&core, step).await {
            myself.stop(None);
        }
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<Raw>,
        Raw(msg): Raw,
        state: &mut ShellState,
    ) -> Result<(), ActorProcessingErr> {
        let Some([tag, reply_as, reply]) = msg.as_tuple() else {
            tracing::debug!(%msg, "remote shell: message dropped");
            return Ok(());
        };
        if tag.is_atom("EXIT") {
            // {'EXIT', From, Reason}: an interrupt (Ctrl-G `i`) is ignored, as the input
            // asked for stays asked for; any other exit (the group leader gone) ends the shell.
            if reply.is_atom("interrupt") {
                return Ok(());
            }
            tracing::debug!(from = %reply_as, reason = %reply, "remote shell: exit signal");
            myself.stop(None);
            return Ok(());
        }
        if !tag.is_atom("io_reply") {
            tracing::debug!(%msg, "remote shell: message dropped");
            return Ok(());
        }
        // Replies to put_chars need nothing; the one to the get_line is the next input.
        if state.reading.as_ref() != Some(reply_as) {
            return Ok(());
        }
        state.reading = None;
        let Some(core) = state.core.upgrade() else {
            myself.stop(None);
            return Ok(());
        };
        let step = state.shell.input(Input::from_reply(reply));
        if !state.run(&core, step).await {
            myself.stop(None);
        }
        Ok(())
    }
}

/// Whether `M:F` is the call that starts a remote shell.
pub(crate) fn starts_shell(module: &Atom, function: &Atom) -> bool {
    module == "shell" && function == "start"
}

/// What the admin guard writes to the terminal of an `erl -remsh` it refuses: a
/// `put_chars` request for the caller's `user` process from `from` (the router, which drops
/// the reply), with the refusal reason every refused rpc gets, `{not_allowed, CallerNode}`.
pub(crate) fn refusal_notice(peer: &Atom, from: &Pid) -> Term {
    let text = format!(
        "*** {peer} may not start a shell here: {} (the node's admin guard)\n",
        crate::admin::refusal(peer)
    );
    let request = Term::tuple(vec![
        Term::atom("put_chars"),
        Term::atom("unicode"),
        Term::binary(text),
    ]);
    io_request(from, Term::atom("node_server_refusal"), request)
}

/// Registers `shell:start/0` and `edlin_expand:expand/1,2` on a starting node. The shell is
/// linked to its group leader as it starts.
pub(crate) fn install(node: &Node) {
    let weak: Weak<Core> = Arc::downgrade(node.shared());
    node.register_fn("shell", "start", move |args| {
        let weak = weak.clone();
        async move {
            if !args.is_empty() {
                return Err(RpcFailure::Error(Term::atom("undef")));
            }
            let core = weak
                .upgrade()
                .ok_or_else(|| RpcFailure::Exit(Term::atom("shutdown")))?;
            // The shell's I/O goes to the caller's group leader, on the caller's node.
            let group_leader = crate::rpc::current_group_leader()
                .filter(|gl| !core.id.is_local(gl))
                .ok_or_else(RpcFailure::badarg)?;
            let started = match core.server.get() {
                Some(server) => {
                    Actor::spawn_linked(
                        None,
                        ShellActor,
                        (weak.clone(), group_leader.clone()),
                        server.clone(),
                    )
                    .await
                }
                None => Actor::spawn(None, ShellActor, (weak.clone(), group_leader.clone())).await,
            };
            let (shell, _) = started.map_err(|e| {
                RpcFailure::Error(Term::tuple(vec![
                    Term::atom("shell_start"),
                    Term::binary(e.to_string()),
                ]))
            })?;
            // Linked to its group leader from the first moment: a connection lost before the
            // caller's own link ends the shell too.
            if let Some(node) = Node::from_core(&core) {
                if let Err(e) = node.link(&shell, &group_leader).await {
                    shell.stop(None);
                    return Err(RpcFailure::Exit(Term::tuple(vec![
                        Term::atom("noconnection"),
                        Term::binary(e.to_string()),
                    ])));
                }
            }
            Ok(Term::Pid(core.router.expose(&shell).pid.clone()))
        }
    });
    // Tab completion: none.
    node.register_fn("edlin_expand", "expand", |args| async move {
        match args.len() {
            1 | 2 => Ok(Term::tuple(vec![Term::atom("no"), Term::NIL, Term::NIL])),
            _ => Err(RpcFailure::Error(Term::atom("undef"))),
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chars(s: &str) -> Term {
        Term::List(s.chars().map(|c| Term::Int(c as i64)).collect())
    }

    /// Runs the shell over `lines` as the group leader would answer them: what it prints,
    /// prompts included.
    async fn session(lines: &[&str]) -> String {
        let mut shell = Shell::new("ours@host");
        let mut out = String::new();
        let mut input = lines.iter();
        let mut step = shell.next();
        loop {
            match step {
                Step::Read(prompt) => {
                    out.push_str(&prompt);
                    let reply = match input.next() {
                        Some(line) => {
                            out.push_str(line);
                            out.push('\n');
                            chars(&format!("{line}\n"))
                        }
                        None => Term::atom("eof"),
                    };
                    step = shell.input(Input::from_reply(&reply));
                }
                Step::Eval(expr) => {
                    let outcome =
                        crate::eval::eval(&expr, &mut shell.bindings, &crate::eval::NoNode).await;
                    let text = outcome.text();
                    shell.evaluated(outcome.value.is_ok(), &text);
                    out.push_str(&text);
                    out.push('\n');
                    step = shell.next();
                }
                Step::Stop => return out,
            }
        }
    }

    #[tokio::test]
    async fn prompts_multi_line_input_bindings_and_errors() {
        let out = session(&["X = 20,", "X + 22.", "Y.", "1 +.", "X * 2. self()."]).await;
        assert_eq!(
            out,
            "(ours@host)1> X = 20,\n\
             (ours@host)1> X + 22.\n\
             42\n\
             (ours@host)2> Y.\n\
             * 1:1: variable 'Y' is unbound\n\
             (ours@host)3> 1 +.\n\
             * 1:4: syntax error before: '.'\n\
             (ours@host)3> X * 2. self().\n\
             40\n\
             <nonode@nohost.1.0>\n\
             (ours@host)5> "
        );
    }

    #[test]
    fn replies_read_as_lines_or_the_end() {
        assert_eq!(
            Input::from_reply(&chars("node().\n")),
            Input::Line("node().".into())
        );
        assert_eq!(
            Input::from_reply(&Term::binary("héllo\r\n")),
            Input::Line("héllo".into())
        );
        assert_eq!(Input::from_reply(&Term::atom("eof")), Input::End);
        assert_eq!(
            Input::from_reply(&Term::tuple(vec![
                Term::atom("error"),
                Term::atom("interrupted")
            ])),
            Input::Interrupted
        );
        assert_eq!(
            Input::from_reply(&Term::tuple(vec![Term::atom("error"), Term::atom("x")])),
            Input::End
        );
        // Not characters: the end, not a crash.
        assert_eq!(
            Input::from_reply(&Term::List(vec![Term::Int(-1), Term::Int(0x41)])),
            Input::End
        );
    }
}
