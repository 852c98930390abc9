//! [`WasmActor`]: the ractor actor that runs a guest, and [`WasmMsg`], what it takes.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use ractor::message::{BoxedDowncastErr, SerializedMessage};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};

use super::error::WasmError;
use super::host::{Host, MAX_TIMERS};
use super::module::WasmModule;
use super::registry::WasmModules;
use super::sandbox::Sandbox;
use crate::core::Core;
use crate::dist::control::ProcessRef;
use crate::etf::{ConversionError, FromTerm, Pid, Term, ToTerm};
use crate::kinds::{KindInfo, KindSpec, Kinds};
use crate::message::{ErlangMessage, ReplyTo};
use crate::remote::RemoteTarget;
use crate::sources::ModuleHash;

/// What a wasm actor takes: any term as a message, any request as a call (the guest decides
/// what it understands).
#[derive(Debug)]
pub enum WasmMsg {
    /// A message (`Pid ! Msg`, `gen_server:cast`, a timer's): the guest's `handle`.
    Message(Term),
    /// A `gen_server:call` request: the guest's `handle_call`, whose reply goes to the port.
    Call(Term, RpcReplyPort<Term>),
}

impl ToTerm for WasmMsg {
    fn to_term(&self) -> Term {
        match self {
            WasmMsg::Message(t) | WasmMsg::Call(t, _) => t.clone(),
        }
    }
}

impl FromTerm for WasmMsg {
    fn from_term(term: &Term) -> Result<Self, ConversionError> {
        Ok(WasmMsg::Message(term.clone()))
    }
}

impl ractor::Message for WasmMsg {
    fn serializable() -> bool {
        true
    }

    fn serialize(self) -> Result<SerializedMessage, BoxedDowncastErr> {
        Ok(match self {
            WasmMsg::Message(t) => crate::message::__private::cast_message(&t),
            WasmMsg::Call(t, reply) => crate::message::__private::call_message(&t, reply),
        })
    }

    fn deserialize(message: SerializedMessage) -> Result<Self, BoxedDowncastErr> {
        use crate::message::__private::{decode_args, unexpected};
        match message {
            SerializedMessage::Cast { args, .. } => Ok(WasmMsg::Message(decode_args(&args)?)),
            SerializedMessage::Call { args, reply, .. } => {
                let request = decode_args(&args)?;
                let port = crate::message::reply_port_for_call::<Term>(reply);
                Ok(WasmMsg::Call(request, port))
            }
            other => Err(unexpected::<Self>(&other)),
        }
    }
}

impl ErlangMessage for WasmMsg {
    fn accepts_cast(_term: &Term) -> bool {
        true
    }

    fn accepts_call(_request: &Term) -> bool {
        true
    }

    fn call_from_term(request: &Term, on_reply: ReplyTo) -> Option<Self> {
        Some(WasmMsg::Call(
            request.clone(),
            crate::message::reply_port_calling::<Term>(on_reply),
        ))
    }
}

/// Runs one guest of a loaded module as an actor (see the [`crate::wasm`] docs); its
/// arguments are the spawn's argument list.
pub struct WasmActor {
    module: Arc<WasmModule>,
    core: Arc<Core>,
}

impl std::fmt::Debug for WasmActor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmActor")
            .field("module", &self.module.hash())
            .finish_non_exhaustive()
    }
}

/// The running guest; `None` once it has ended (the actor is stopping).
#[derive(Debug)]
pub struct WasmState(Option<Sandbox>);

/// The world of an actor's guest: its node.
struct NodeHost {
    core: Arc<Core>,
    pid: Pid,
    me: ActorRef<WasmMsg>,
    timers: Arc<AtomicUsize>,
}

impl Host for NodeHost {
    fn self_pid(&self) -> Term {
        Term::Pid(self.pid.clone())
    }

    fn node_name(&self) -> &str {
        self.core.id.name.as_str()
    }

    fn send(&self, dest: &Term, msg: Term) -> Result<(), String> {
        let core = &self.core;
        match dest {
            Term::Pid(pid) => core.send_pid(pid, msg),
            Term::Atom(name) => {
                core.router
                    .send(&ProcessRef::Name(name.clone()), msg, &core.id.name);
            }
            Term::Tuple(t) if t.len() == 2 => match (&t[0], &t[1]) {
                (Term::Atom(name), Term::Atom(node)) if *node == core.id.name => {
                    core.router
                        .send(&ProcessRef::Name(name.clone()), msg, &core.id.name);
                }
                (Term::Atom(name), Term::Atom(node)) => core.send_term(
                    &RemoteTarget::Name {
                        name: name.clone(),
                        node: node.clone(),
                    },
                    msg,
                ),
                _ => return Err(format!("{dest} is no destination")),
            },
            _ => return Err(format!("{dest} is no destination")),
        }
        Ok(())
    }

    fn send_after(&self, ms: u64, msg: Term) -> Result<(), String> {
        if self.timers.fetch_add(1, Ordering::Relaxed) >= MAX_TIMERS {
            self.timers.fetch_sub(1, Ordering::Relaxed);
            return Err(format!("more than {MAX_TIMERS} timers pending"));
        }
        let (me, timers) = (self.me.clone(), self.timers.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            timers.fetch_sub(1, Ordering::Relaxed);
            // A stopped actor's timers fall on the floor, as Erlang's do.
            let _ = me.cast(WasmMsg::Message(msg));
        });
        Ok(())
    }

    fn log(&self, level: i32, text: &str) {
        let pid = Term::Pid(self.pid.clone());
        let module = "wasm guest";
        match level {
            0 => tracing::error!(%pid, "{module}: {text}"),
            1 => tracing::warn!(%pid, "{module}: {text}"),
            2 => tracing::info!(%pid, "{module}: {text}"),
            3 => tracing::debug!(%pid, "{module}: {text}"),
            _ => tracing::trace!(%pid, "{module}: {text}"),
        }
    }
}

impl WasmActor {
    /// Ends the actor with the Erlang exit reason `reason` (as [`crate::Node::exit_actor`]).
    fn exit(&self, me: &ActorRef<WasmMsg>, state: &mut WasmState, reason: Term) {
        state.0 = None;
        if reason.is_atom("normal") {
            me.stop(None);
            return;
        }
        tracing::debug!(module = %self.module.hash(), %reason, "wasm actor ends");
        let text = match &reason {
            Term::Atom(a) => a.as_str().to_owned(),
            other => other.to_string(),
        };
        self.core.signals().exit_reasons.insert(me.get_id(), reason);
        me.stop(Some(text));
    }
}

impl Actor for WasmActor {
    type Msg = WasmMsg;
    type State = WasmState;
    type Arguments = Vec<Term>;

    async fn pre_start(
        &self,
        me: ActorRef<WasmMsg>,
        args: Vec<Term>,
    ) -> Result<WasmState, ActorProcessingErr> {
        let pid = self.core.router.expose(&me).pid.clone();
        let host = NodeHost {
            core: self.core.clone(),
            pid,
            me,
            timers: Arc::new(AtomicUsize::new(0)),
        };
        let mut sandbox = Sandbox::new(&self.module, Box::new(host))
            .map_err(|reason| format!("instantiation failed: {reason}"))?;
        sandbox
            .init(&Term::list(args))
            .map_err(|reason| format!("init failed: {reason}"))?;
        Ok(WasmState(Some(sandbox)))
    }

    async fn handle(
        &self,
        me: ActorRef<WasmMsg>,
        msg: WasmMsg,
        state: &mut WasmState,
    ) -> Result<(), ActorProcessingErr> {
        let Some(sandbox) = state.0.as_mut() else {
            return Ok(());
        };
        let result = match msg {
            WasmMsg::Message(term) => sandbox.handle(&term),
            WasmMsg::Call(request, port) => sandbox.handle_call(&request).map(|reply| {
                if let Some(reply) = reply {
                    if port.send(reply).is_err() {
                        tracing::debug!("the caller went away before the reply");
                    }
                }
            }),
        };
        if let Err(reason) = result {
            self.exit(&me, state, reason);
        }
        Ok(())
    }
}

/// Registers kind `spec` whose actors run the module `hash`, looked up at each spawn (after
/// an unload, spawns fail naming the hash).
pub(crate) fn register_kind(
    core: &Arc<Core>,
    spec: KindSpec,
    hash: ModuleHash,
) -> Result<KindInfo, WasmError> {
    Ok(Kinds::of(core).register_converted::<WasmActor>(
        spec,
        move |core| {
            if crate::node::Node::from_core(core).is_none() {
                return Err("the node is stopping".to_owned());
            }
            let module = WasmModules::of(core)
                .get(&hash)
                .map_err(|e| e.to_string())?;
            Ok(WasmActor {
                module,
                core: core.clone(),
            })
        },
        |args| Ok(args.to_vec()),
    )?)
}

/// Starts an actor of `module` with `args`, a child of the node server.
pub(crate) async fn spawn(
    core: &Arc<Core>,
    module: Arc<WasmModule>,
    args: Vec<Term>,
) -> Result<(ActorRef<WasmMsg>, Pid), WasmError> {
    let hash = module.hash();
    let actor = WasmActor {
        module,
        core: core.clone(),
    };
    let started = match core.server.get() {
        Some(server) => Actor::spawn_linked(None, actor, args, server.clone()).await,
        None => Actor::spawn(None, actor, args).await,
    };
    let (actor, _) = started.map_err(|e| WasmError::StartFailed {
        module: hash,
        reason: e.to_string(),
    })?;
    let pid = core.router.expose(&actor).pid.clone();
    Ok((actor, pid))
}
