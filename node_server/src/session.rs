//! One connection to another node: the handshake drivers, and the [`NodeSession`] actor that
//! runs the distribution protocol once the handshake is done.
//!
//! Each session has a reader task (frames in, ticks noticed, packets decoded and dispatched
//! in place: a message reaches its actor without another hop) and a writer task (drains the
//! send queue and the replies of local actors to the peer's calls into one buffer, writes it
//! with one syscall, and ticks when idle). A call from the peer to a typed actor costs no task
//! of its own: the writer waits for the actor's reply. The session actor owns the two tasks
//! and stops when the connection ends.
//!
//! Big messages are not copied more than they must be: the writer writes binaries of 64 KiB
//! and more from where they are, around its buffer, and the reader reads a frame of 64 KiB or
//! more into a buffer of its own, reused once the binaries decoded from it are dropped
//! (`dist::frame_pool`).

use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ractor::{Actor, ActorProcessingErr, ActorRef};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::dist::control::{AltAct, AltActTarget, Control, ProcessRef};
use crate::dist::frame_pool::FramePool;
use crate::dist::handshake::{Established, Handshake, HandshakeError, Refusal, Status, Step};
use crate::dist::packet::{self, DistMessage, Frame, PacketDecoder, SendForm, Shares};
use crate::dist::DistFlags;
use crate::etf::{Atom, DecodeOptions, Pid, Reference, Term};
use crate::registry::{LocalActor, LocalProcess};
use crate::server::{NodeServerMsg, NodeShared};
use crate::waiter::ReplyWaiter;

/// A byte stream a session can run over: TCP or TLS.
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Transport for T {}

/// A boxed transport.
pub type BoxedTransport = Box<dyn Transport>;

/// What the writer task sends.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Message(Control, Option<Term>),
    /// A control message and a payload already encoded (with its 131).
    Raw(Control, Bytes),
    /// A control message already encoded (its body, without 131) and a payload already
    /// encoded (with its 131): what a proxy sends, encoding its control once. The payload is
    /// the serialized message's own buffer, copied into the write buffer (shared when 64 KiB
    /// or more, see `packet::Shares`) and freed.
    Prepared(Bytes, Vec<u8>),
    /// A `gen_server` call's request, written from its parts.
    Call(Control, GenCall),
    /// A `gen_server` reply `{Tag, Reply}`, written from its parts.
    Reply(Control, GenReply),
    /// Answered once everything queued before it is written (a graceful stop).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The message of a `gen_server` call, `{'$gen_call', {From, [alias | Ref]}, Request}`,
/// written from its parts rather than built as a term first.
#[derive(Debug)]
pub(crate) struct GenCall {
    /// The calling process.
    pub from: Pid,
    /// The call's monitor reference, also its reply alias.
    pub mref: Reference,
    /// The request.
    pub request: Term,
}

impl GenCall {
    /// The same message as a term.
    #[cfg(test)]
    fn to_term(&self) -> Term {
        let tag = Term::improper_list(vec![Term::atom("alias")], Term::from(self.mref.clone()));
        Term::tuple(vec![
            Term::atom("$gen_call"),
            Term::tuple(vec![Term::Pid(self.from.clone()), tag]),
            self.request.clone(),
        ])
    }
}

impl packet::Payload for GenCall {
    fn write_body<A: crate::etf::AtomWriter>(
        &self,
        out: &mut BytesMut,
        atoms: &mut A,
        share: Option<crate::etf::Share<'_>>,
    ) {
        const GEN_CALL: Atom = Atom::from_static("$gen_call");
        crate::etf::encode_pieces(out, atoms, share, |w| {
            w.tuple(3);
            w.atom(&GEN_CALL);
            w.tuple(2);
            w.pid(&self.from);
            alias_tag(w, &self.mref);
            w.term(&self.request);
        });
    }
}

/// Writes the call tag `[alias | Ref]`.
fn alias_tag<A: crate::etf::AtomWriter>(w: &mut crate::etf::Pieces<'_, '_, A>, r: &Reference) {
    const ALIAS: Atom = Atom::from_static("alias");
    w.list(1);
    w.atom(&ALIAS);
    w.reference(r);
}

/// The tag of a `gen_server` call, read once when the call arrives.
#[derive(Debug, Clone)]
pub(crate) enum ReplyTag {
    /// `[alias | Ref]` (OTP 24 and later): the reply goes to the alias.
    Alias(Reference),
    /// Any other tag (a plain reference from older callers), answered to the caller's pid.
    Other(Term),
}

impl ReplyTag {
    fn new(tag: &Term) -> ReplyTag {
        match tag {
            Term::ImproperList(head, tail) if head.len() == 1 && head[0].is_atom("alias") => {
                match &**tail {
                    Term::Reference(r) => ReplyTag::Alias((**r).clone()),
                    _ => ReplyTag::Other(tag.clone()),
                }
            }
            _ => ReplyTag::Other(tag.clone()),
        }
    }
}

/// A `gen_server` reply, `{Tag, Reply}`, written from its parts.
#[derive(Debug)]
pub(crate) struct GenReply {
    tag: ReplyTag,
    reply: Term,
}

impl packet::Payload for GenReply {
    fn write_body<A: crate::etf::AtomWriter>(
        &self,
        out: &mut BytesMut,
        atoms: &mut A,
        share: Option<crate::etf::Share<'_>>,
    ) {
        crate::etf::encode_pieces(out, atoms, share, |w| {
            w.tuple(2);
            match &self.tag {
                ReplyTag::Alias(r) => alias_tag(w, r),
                ReplyTag::Other(tag) => w.term(tag),
            }
            w.term(&self.reply);
        });
    }
}

/// The way to reach a live session.
#[derive(Debug, Clone)]
pub(crate) struct SessionHandle {
    pub peer: Atom,
    pub hidden: bool,
    /// The distribution flags both nodes agreed on.
    pub flags: DistFlags,
    pub tx: mpsc::UnboundedSender<Outgoing>,
    pub actor: ActorRef<SessionMsg>,
    /// Control messages that need not go at once (see [`SessionHandle::send_deferred`]).
    pub deferred: Deferred,
}

/// Control messages the writer sends with its next write: a message, a tick, or
/// [`DEFERRED_FLUSH`] after it noticed them while idle.
pub(crate) type Deferred = Arc<std::sync::Mutex<Vec<Control>>>;

/// How long a deferred control message may wait when nothing else is written.
const DEFERRED_FLUSH: Duration = Duration::from_millis(50);

impl SessionHandle {
    /// Queues a message; false when the session is gone.
    pub fn send(&self, control: Control, payload: Option<Term>) -> bool {
        self.tx.send(Outgoing::Message(control, payload)).is_ok()
    }

    /// Queues a `gen_server` call's request.
    pub(crate) fn send_call(&self, control: Control, call: GenCall) -> bool {
        self.tx.send(Outgoing::Call(control, call)).is_ok()
    }

    /// Queues a message whose payload is ETF bytes with the leading 131.
    pub fn send_raw(&self, control: Control, payload: Bytes) -> bool {
        self.tx.send(Outgoing::Raw(control, payload)).is_ok()
    }

    /// Queues a message whose control body (without 131) and payload (with 131) are encoded.
    pub fn send_prepared(&self, control: Bytes, payload: Vec<u8>) -> bool {
        self.tx.send(Outgoing::Prepared(control, payload)).is_ok()
    }

    /// Queues a control message without waking the writer: it goes with the next write (at the
    /// latest the next tick, a quarter of `net_ticktime`). For housekeeping whose timing does
    /// not matter (a finished call's `DEMONITOR_P`: until it arrives, a stale monitor's DOWN is
    /// ignored), so a call costs one write, not two.
    pub fn send_deferred(&self, control: Control) {
        crate::lock(&self.deferred).push(control);
    }
}

async fn read_step<S: Transport + ?Sized>(
    stream: &mut S,
    hs: &mut Handshake,
    input: &mut BytesMut,
    out: &mut BytesMut,
    setup_time: Duration,
) -> Result<Step, HandshakeError> {
    loop {
        let step = hs.advance(input, out);
        if !out.is_empty() {
            // Send what the machine wrote (a status before an error, say) before acting on it.
            let written = stream.write_all(out).await;
            out.clear();
            if written.is_err() && step.is_ok() {
                return Err(hs.closed());
            }
        }
        match step? {
            Step::NeedMore => {}
            other => return Ok(other),
        }
        let n = tokio::time::timeout(setup_time, stream.read_buf(input))
            .await
            .map_err(|_| HandshakeError::TimedOut)?
            .map_err(|_| hs.closed())?;
        if n == 0 {
            return Err(hs.closed());
        }
    }
}

/// Runs the acceptor's side. Asks the node server for the status once the peer is named.
/// Returns the result and bytes that arrived after the handshake.
pub(crate) async fn accept_handshake(
    stream: &mut BoxedTransport,
    shared: &NodeShared,
    server: &ActorRef<NodeServerMsg>,
    tls: bool,
) -> Result<(Established, BytesMut), HandshakeError> {
    let mut hs = Handshake::acceptor(shared.handshake_config(), random_u32());
    if tls {
        hs = hs.with_4_byte_frames();
    }
    let mut input = BytesMut::with_capacity(256);
    let mut out = BytesMut::with_capacity(256);
    let setup = shared.config.setup_time;
    loop {
        match read_step(stream, &mut hs, &mut input, &mut out, setup).await? {
            Step::PeerNamed(peer) => {
                let status = server
                    .call(
                        |reply| NodeServerMsg::PeerNamed {
                            peer: peer.name.clone(),
                            reply,
                        },
                        Some(setup),
                    )
                    .await
                    .ok()
                    .and_then(|r| match r {
                        ractor::rpc::CallResult::Success(s) => Some(s),
                        _ => None,
                    })
                    .unwrap_or(Status::Nok);
                hs.set_status(status, &mut out)?;
                stream.write_all(&out).await.map_err(|_| hs.closed())?;
                out.clear();
                if matches!(status, Status::Nok | Status::NotAllowed) {
                    return Err(HandshakeError::Refused(Refusal::Status(status)));
                }
            }
            Step::Established(est) => return Ok((est, input)),
            Step::PeerAlive | Step::NeedMore => {
                return Err(HandshakeError::Misuse("acceptor step"))
            }
        }
    }
}

/// Runs the initiator's side against `expected` (the node dialled).
pub(crate) async fn connect_handshake(
    stream: &mut BoxedTransport,
    shared: &NodeShared,
    expected: &str,
    tls: bool,
) -> Result<(Established, BytesMut), HandshakeError> {
    let mut hs = Handshake::initiator(
        shared.handshake_config(),
        Some(expected.to_owned()),
        random_u32(),
    );
    if tls {
        hs = hs.with_4_byte_frames();
    }
    let mut input = BytesMut::with_capacity(256);
    let mut out = BytesMut::with_capacity(256);
    hs.start(&mut out)?;
    loop {
        match read_step(
            stream,
            &mut hs,
            &mut input,
            &mut out,
            shared.config.setup_time,
        )
        .await?
        {
            Step::PeerAlive => {
                // The peer thinks it is still connected to us. If we have no session with it,
                // its connection is stale: tell it to replace it.
                let have = shared.session(&Atom::new(expected)).is_some();
                hs.answer_alive(!have, &mut out)?;
                if have {
                    stream.write_all(&out).await.ok();
                    return Err(HandshakeError::Refused(Refusal::AlreadyConnected));
                }
            }
            Step::Established(est) => return Ok((est, input)),
            Step::PeerNamed(_) | Step::NeedMore => {
                return Err(HandshakeError::Misuse("initiator step"))
            }
        }
    }
}

fn random_u32() -> u32 {
    let mut b = [0u8; 4];
    if getrandom::fill(&mut b).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0x5eed);
        return t.rotate_left(13) ^ 0x9e37_79b9;
    }
    u32::from_ne_bytes(b)
}

/// Messages of a [`NodeSession`].
#[derive(Debug)]
#[non_exhaustive]
pub enum SessionMsg {
    /// The connection ended.
    Closed(String),
}

impl ractor::Message for SessionMsg {}

/// The actor that runs one established connection.
#[derive(Debug)]
pub struct NodeSession;

/// What a [`NodeSession`] starts with (made by the [`crate::NodeServer`]).
pub struct SessionArgs {
    pub(crate) shared: Arc<NodeShared>,
    pub(crate) stream: BoxedTransport,
    pub(crate) established: Established,
    pub(crate) leftover: BytesMut,
    pub(crate) tx: mpsc::UnboundedSender<Outgoing>,
    pub(crate) rx: mpsc::UnboundedReceiver<Outgoing>,
    pub(crate) deferred: Deferred,
    /// The names of the peer's verified certificate (mutual TLS), for the admin guard.
    pub(crate) peer_cert_names: Option<Vec<String>>,
}

/// The session's state.
pub struct SessionState {
    peer: Atom,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

/// Handles the peer's control messages. It runs inside the reader task, so an incoming
/// message reaches its actor without another hop.
struct Dispatcher {
    shared: Arc<NodeShared>,
    peer: Atom,
    flags: DistFlags,
    tx: mpsc::UnboundedSender<Outgoing>,
    /// Monitors the peer holds on our processes: reference -> (monitoring pid, target).
    monitors: crate::hash::FastMap<Reference, (Pid, ProcessRef)>,
    /// Whether the peer passes the admin guard ([`crate::admin`]).
    admin: bool,
    /// Waits for local actors' replies to the peer's calls, in the writer task.
    waiter: ReplyWaiter,
    /// Where those replies go.
    outbox: Arc<ReplyOutbox>,
}

/// A session killed rather than stopped (its supervisor going down kills it) skips
/// `post_stop`: end its tasks here so the connection closes either way.
impl Drop for SessionState {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl std::fmt::Debug for SessionState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionState")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Actor for NodeSession {
    type Msg = SessionMsg;
    type State = SessionState;
    type Arguments = SessionArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<SessionMsg>,
        args: SessionArgs,
    ) -> Result<SessionState, ActorProcessingErr> {
        let SessionArgs {
            shared,
            stream,
            established,
            leftover,
            tx,
            rx,
            deferred,
            peer_cert_names,
        } = args;
        let (read_half, write_half) = tokio::io::split(stream);
        let tick = shared.config.net_ticktime;
        let flags = established.flags;
        let waiter = ReplyWaiter::default();
        let outbox = Arc::new(ReplyOutbox::default());
        let writer = tokio::spawn(writer_task(
            write_half,
            rx,
            (waiter.clone(), outbox.clone()),
            deferred.clone(),
            flags,
            tick / 4,
            (shared.ops.counters.clone(), shared.busy.clone()),
        ));
        let decoder = PacketDecoder::new(DecodeOptions::new(), shared.config.max_frame);
        let max_frame = shared.config.max_frame;
        let peer = Atom::new(&established.peer.name);
        // Reachable by name before the reader delivers anything: an actor answering the
        // peer's first message must find this session.
        if let Ok(mut sessions) = shared.sessions.write() {
            sessions.insert(
                peer.clone(),
                SessionHandle {
                    peer: peer.clone(),
                    hidden: !flags.contains(DistFlags::PUBLISHED),
                    flags,
                    tx: tx.clone(),
                    actor: myself.clone(),
                    deferred,
                },
            );
        }
        let admin = crate::admin::allows(&shared.config, peer.as_str(), peer_cert_names.as_deref());
        let dispatcher = Dispatcher {
            shared,
            peer: peer.clone(),
            flags,
            tx,
            monitors: Default::default(),
            admin,
            waiter,
            outbox,
        };
        let reader = tokio::spawn(reader_task(
            read_half,
            leftover,
            decoder,
            dispatcher,
            myself.clone(),
            tick,
            max_frame,
        ));
        Ok(SessionState {
            peer,
            reader,
            writer,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<SessionMsg>,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        state.reader.abort();
        state.writer.abort();
        // As in Erlang, everything read from a connection is delivered before its node-down:
        // the node server announces the node down only after this returns, so wait until
        // the reader has stopped (at its next await).
        let _ = tokio::time::timeout(Duration::from_secs(1), &mut state.reader).await;
        Ok(())
    }

    async fn handle(
        &self,
        myself: ActorRef<SessionMsg>,
        message: SessionMsg,
        state: &mut SessionState,
    ) -> Result<(), ActorProcessingErr> {
        let SessionMsg::Closed(reason) = message;
        tracing::debug!(peer = %state.peer, %reason, "session closing");
        myself.stop(Some(reason));
        Ok(())
    }
}

impl Dispatcher {
    fn send(&self, control: Control, payload: Option<Term>) {
        let _ = self.tx.send(Outgoing::Message(control, payload));
    }

    fn dispatch(&mut self, msg: DistMessage) {
        let DistMessage { control, payload } = msg;
        let (control, payload) = match control {
            Control::AltAct {
                flags, from, to, ..
            } => match self.alt_act(flags, from, to, payload) {
                Some(classic) => classic,
                None => return,
            },
            other => (other, payload),
        };
        match control {
            Control::MonitorP {
                from,
                to,
                reference,
            } => match self.shared.resolve(&to) {
                Some(LocalProcess::Actor(actor)) => {
                    // When the actor is already gone, watch() answers noproc itself.
                    self.shared
                        .watch(&actor, |s, id| s.add_monitor(id, reference, from, to));
                }
                Some(_) => {
                    self.monitors.insert(reference, (from, to));
                }
                None => self.send(
                    Control::MonitorPExit {
                        from: to,
                        to: from,
                        reference,
                        reason: Term::atom("noproc"),
                    },
                    None,
                ),
            },
            Control::DemonitorP { reference, .. } => {
                if self.monitors.remove(&reference).is_none() {
                    self.shared.signals().remove_monitor(&reference);
                }
            }
            Control::Link { from, to } => match self.shared.resolve(&ProcessRef::Pid(to.clone())) {
                Some(LocalProcess::Actor(actor)) => {
                    self.shared.watch(&actor, |s, id| s.add_link(id, from));
                }
                Some(_) => {}
                None => self.send(
                    Control::Exit {
                        from: to,
                        to: from,
                        reason: Term::atom("noproc"),
                    },
                    None,
                ),
            },
            Control::Unlink { from, to }
            | Control::UnlinkIdAck {
                from: to, to: from, ..
            } => {
                self.unlink(&from, &to);
            }
            Control::UnlinkId { id, from, to } => {
                self.unlink(&from, &to);
                self.send(
                    Control::UnlinkIdAck {
                        id,
                        from: to,
                        to: from,
                    },
                    None,
                );
            }
            Control::Exit { from, to, reason } => self.exit_signal(from, to, reason, true),
            Control::PayloadExit { from, to } => {
                self.exit_signal(from, to, payload.unwrap_or_default(), true)
            }
            Control::Exit2 { .. } | Control::PayloadExit2 { .. } if !self.admin => {
                tracing::warn!(peer = %self.peer, control = ?control, "exit signal from a node outside the admin allow-list dropped");
            }
            Control::Exit2 { from, to, reason } => self.exit_signal(from, to, reason, false),
            Control::PayloadExit2 { from, to } => {
                self.exit_signal(from, to, payload.unwrap_or_default(), false)
            }
            Control::RegSend { to_name, .. } => {
                self.deliver(&ProcessRef::Name(to_name), payload.unwrap_or_default());
            }
            Control::Send { to } | Control::SendSender { to, .. } => {
                self.deliver(&ProcessRef::Pid(to), payload.unwrap_or_default());
            }
            Control::AliasSend { alias, .. } => {
                self.alias_message(&alias, payload.unwrap_or_default(), false);
            }
            Control::MonitorPExit {
                to,
                reference,
                reason,
                ..
            } if to == self.shared.router_pid => self.router_down(&reference, reason),
            Control::PayloadMonitorPExit { to, reference, .. } if to == self.shared.router_pid => {
                self.router_down(&reference, payload.unwrap_or_default())
            }
            Control::SpawnRequest {
                req_id,
                from,
                module,
                function,
                arity,
                opts,
                ..
            } => self.spawn_request(req_id, from, (module, function, arity), &opts, payload),
            other => {
                tracing::debug!(peer = %self.peer, control = ?other, "ignored control message");
            }
        }
    }

    /// An `ALTACT_SIG_SEND`: a message to an alias is handed on here (with its priority);
    /// any other signal becomes the classic control message it stands for, with the same
    /// payload (the message, or the exit reason). `None` when nothing is left to do.
    ///
    /// Priority matters only for aliases (EEP 76: the receiver enables it on an alias); to a
    /// pid or name a priority signal is an ordinary one, as OTP treats it. Aliases of this node
    /// are the tags of its calls and the aliases of priority inboxes, so an exit signal to one
    /// is dropped.
    fn alt_act(
        &mut self,
        flags: AltAct,
        from: Pid,
        to: AltActTarget,
        payload: Option<Term>,
    ) -> Option<(Control, Option<Term>)> {
        let exit = flags.contains(AltAct::EXIT);
        let classic = match to {
            AltActTarget::Alias(alias) if !exit => {
                let priority = flags.contains(AltAct::PRIORITY);
                self.alias_message(&alias, payload.unwrap_or_default(), priority);
                return None;
            }
            AltActTarget::Alias(alias) => {
                tracing::debug!(peer = %self.peer, ?alias, "exit signal to an alias of this node dropped");
                return None;
            }
            AltActTarget::Pid(to) if exit => Control::PayloadExit2 { from, to },
            AltActTarget::Pid(to) => Control::SendSender { from, to },
            AltActTarget::Name(to_name) if !exit => Control::RegSend { from, to_name },
            AltActTarget::Name(name) => {
                match self.shared.resolve(&ProcessRef::Name(name.clone())) {
                    Some(LocalProcess::Actor(actor)) => Control::PayloadExit2 {
                        from,
                        to: actor.pid.clone(),
                    },
                    _ => {
                        tracing::debug!(peer = %self.peer, %name, "exit signal to a name with no actor dropped");
                        return None;
                    }
                }
            }
        };
        Some((classic, payload))
    }

    /// Delivers a message to a local process or service.
    fn deliver(&mut self, to: &ProcessRef, msg: Term) {
        match self.shared.resolve(to) {
            Some(LocalProcess::NetKernel) => self.net_kernel(msg),
            Some(LocalProcess::Router) => self.call_reply(msg),
            Some(LocalProcess::Rex) => self.rex(msg),
            Some(LocalProcess::Actor(actor)) => self.deliver_to_actor(&actor, to, msg),
            Some(LocalProcess::Service(service)) => (service.deliver)(&self.peer, msg),
            None => {
                tracing::debug!(peer = %self.peer, ?to, %msg, "message to a process that does not exist dropped");
            }
        }
    }

    /// A reply `{Tag, Reply}` to a call this node made.
    fn call_reply(&mut self, msg: Term) {
        if !self.finish_call(&msg) {
            tracing::debug!(peer = %self.peer, %msg, "stray message to the router dropped");
        }
    }

    /// A message to an alias of this node: the reply to one of its calls (the call's tag is
    /// the alias), or a message for an actor's [`crate::priority::PriorityInbox`].
    fn alias_message(&mut self, alias: &Reference, msg: Term, priority: bool) {
        if self.finish_call(&msg) {
            return;
        }
        let deliver = self.shared.registry().alias(alias);
        match deliver {
            Some(deliver) => deliver(msg, priority),
            None => {
                tracing::debug!(peer = %self.peer, ?alias, %msg, "message to an inactive alias dropped")
            }
        }
    }

    /// Completes the call whose reply `msg` is; false when it is none.
    fn finish_call(&mut self, msg: &Term) -> bool {
        if let Some([tag, reply]) = msg.as_tuple() {
            let mref = match tag {
                Term::ImproperList(head, tail) if head.len() == 1 => match &**tail {
                    Term::Reference(r) => Some(&**r),
                    _ => None,
                },
                Term::Reference(r) => Some(&**r),
                _ => None,
            };
            if let Some(mref) = mref {
                return self.shared.finish_call(mref, Some(reply));
            }
        }
        false
    }

    /// A message for a Rust actor: a `gen_server` call when it has the `'$gen_call'` shape and
    /// the actor takes the request, a cast when the actor takes the term, else the fallback.
    fn deliver_to_actor(&mut self, actor: &LocalActor, to: &ProcessRef, msg: Term) {
        use ractor::message::SerializedMessage;
        if let Some((caller, tag, request)) = gen_call_parts(&msg) {
            let replier = Replier {
                tx: self.tx.clone(),
                flags: self.flags,
                from: actor.pid.clone(),
                outbox: Some(self.outbox.clone()),
            };
            let (reply_to, reply_tag) = (caller.clone(), ReplyTag::new(tag));
            let on_reply = crate::message::ReplyTo::new(move |reply| {
                replier.reply(&reply_to, &reply_tag, reply)
            })
            .waited_by(self.waiter.clone());
            if (actor.call)(request, on_reply) {
                return;
            }
            if (actor.accepts_call)(request) {
                let (tx, rx) = tokio::sync::oneshot::channel::<Vec<u8>>();
                let call = SerializedMessage::Call {
                    variant: String::new(),
                    args: request.encode().to_vec(),
                    reply: tx.into(),
                    metadata: None,
                };
                if actor.cell.send_serialized(call).is_ok() {
                    let replier = Replier {
                        tx: self.tx.clone(),
                        flags: self.flags,
                        from: actor.pid.clone(),
                        outbox: Some(self.outbox.clone()),
                    };
                    let (caller, tag) = (caller.clone(), ReplyTag::new(tag));
                    let wait: crate::waiter::Wait = Box::pin(async move {
                        if let Ok(bytes) = rx.await {
                            match Term::decode_slice(&bytes) {
                                Ok(reply) => replier.reply(&caller, &tag, reply),
                                Err(e) => tracing::warn!(error = %e, "actor reply did not decode"),
                            }
                        }
                    });
                    crate::waiter::ReplyWaiter::add_or_spawn(Some(&self.waiter), wait);
                }
                return;
            }
        }
        if (actor.cast)(&msg) {
            return;
        }
        self.shared.undeliverable(to, msg);
    }

    /// A monitor held by the router fired: a call's target, or a Rust monitor's process.
    fn router_down(&mut self, reference: &Reference, reason: Term) {
        if self.shared.finish_call(reference, None) {
            tracing::debug!(peer = %self.peer, %reason, "call target down");
            return;
        }
        if let Some((_, tx)) = self.shared.signals().outgoing.remove(reference) {
            let _ = tx.send(reason);
        }
    }

    /// Removes the link between remote `remote` and local `local`.
    fn unlink(&mut self, remote: &Pid, local: &Pid) {
        if let Some(LocalProcess::Actor(actor)) =
            self.shared.resolve(&ProcessRef::Pid(local.clone()))
        {
            if let Some(w) = self.shared.signals().watched.get_mut(&actor.cell.get_id()) {
                w.links.retain(|p| p != remote);
            }
        }
    }

    /// An exit signal from `from` to local `to`: over a link, or from `exit/2`.
    fn exit_signal(&mut self, from: Pid, to: Pid, reason: Term, via_link: bool) {
        let Some(LocalProcess::Actor(actor)) = self.shared.resolve(&ProcessRef::Pid(to.clone()))
        else {
            return;
        };
        let id = actor.cell.get_id();
        let trapping = {
            let mut signals = self.shared.signals();
            if via_link {
                if let Some(w) = signals.watched.get_mut(&id) {
                    w.links.retain(|p| *p != from);
                }
            }
            signals.trapping.contains(&id)
        };
        if reason.is_atom("kill") && !via_link {
            self.shared
                .signals()
                .exit_reasons
                .insert(id, Term::atom("killed"));
            actor.cell.kill();
        } else if trapping {
            let msg = Term::tuple(vec![Term::atom("EXIT"), Term::Pid(from), reason]);
            if !(actor.cast)(&msg) {
                self.shared.undeliverable(&ProcessRef::Pid(to), msg);
            }
        } else if !reason.is_atom("normal") {
            let text = match &reason {
                Term::Atom(a) => a.as_str().to_owned(),
                other => other.to_string(),
            };
            self.shared.signals().exit_reasons.insert(id, reason);
            actor.cell.stop(Some(text));
        }
    }

    /// A spawn request. `erpc:execute_call(Ref, M, F, A)` (what `erpc:call` and OTP 25's
    /// `rpc:call` send) runs a registered function as a short-lived "process"; anything
    /// else is refused with `notsup`.
    fn spawn_request(
        &mut self,
        req_id: Reference,
        from: Pid,
        (module, function, arity): (Atom, Atom, u32),
        opts: &Term,
        args: Option<Term>,
    ) {
        // `execute_call(Ref, M, F, A)` reports through the monitor; `execute_cast(M, F, A)`
        // (rpc:cast, erpc:cast) runs the function and reports nothing.
        let call = match (module.as_str(), function.as_str(), arity, args) {
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
        let Some((res, m, f, a)) = call else {
            self.send(
                Control::SpawnReply {
                    req_id,
                    to: from,
                    flags: 0,
                    result: Term::atom("notsup"),
                },
                None,
            );
            return;
        };
        let monitor = match opts {
            Term::List(o) => o.iter().any(|o| {
                o.is_atom("monitor") || matches!(o.as_tuple(), Some([k, _]) if k.is_atom("monitor"))
            }),
            _ => false,
        };
        let pid = self.shared.registry().fresh_pid();
        self.send(
            Control::SpawnReply {
                req_id: req_id.clone(),
                to: from.clone(),
                flags: if monitor { 2 } else { 0 },
                result: Term::Pid(pid.clone()),
            },
            None,
        );
        let func = self.shared.function(&m, &f);
        let tx = self.tx.clone();
        let in_flight = self.shared.ops.rpc_started();
        let refused = (!self.admin).then(|| self.refuse_rpc(&m, &f));
        tokio::spawn(async move {
            let _in_flight = in_flight;
            let stack = crate::rpc::stack(&m, &f, &a);
            let result = match refused {
                Some(refusal) => Err(refusal),
                None => crate::rpc::apply(func, &m, &f, a).await,
            };
            let Some(res) = res else {
                return;
            };
            let reason = match result {
                Ok(value) => Term::tuple(vec![res, Term::atom("return"), value]),
                Err(failure) => failure.erpc_reason(&res, stack),
            };
            if monitor {
                let exit = Control::MonitorPExit {
                    from: ProcessRef::Pid(pid),
                    to: from,
                    reference: req_id,
                    reason,
                };
                let _ = tx.send(Outgoing::Message(exit, None));
            }
        });
    }

    /// An rpc call refused by the admin guard: logged, and the failure the caller gets.
    fn refuse_rpc(&self, m: &Atom, f: &Atom) -> crate::rpc::RpcFailure {
        tracing::warn!(peer = %self.peer, module = %m, function = %f, "rpc from a node outside the admin allow-list refused");
        crate::rpc::RpcFailure::Exit(crate::admin::refusal(&self.peer))
    }

    /// `rex`: `{call, M, F, A, GroupLeader}` calls, as `gen_server` calls or in the classic
    /// `{From, {call, M, F, A, GroupLeader}}` form that `erl_call` and C nodes send (answered
    /// with `{rex, Reply}`), and `features_request`.
    fn rex(&mut self, msg: Term) {
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
            let Some([op, Term::Atom(m), Term::Atom(f), Term::List(a), _gl]) = request.as_tuple()
            else {
                tracing::debug!(peer = %self.peer, %request, "unsupported rex call");
                return;
            };
            // `block_call` answers the same; here it does not block other calls.
            if !op.is_atom("call") && !op.is_atom("block_call") {
                return;
            }
            let (m, f, a) = (m.clone(), f.clone(), a.clone());
            let func = self.shared.function(&m, &f);
            let replier = Replier {
                tx: self.tx.clone(),
                flags: self.flags,
                from: self.shared.rex_pid.clone(),
                outbox: None,
            };
            let (caller, tag) = (caller.clone(), tag.map(ReplyTag::new));
            let in_flight = self.shared.ops.rpc_started();
            let refused = (!self.admin).then(|| self.refuse_rpc(&m, &f));
            tokio::spawn(async move {
                let _in_flight = in_flight;
                let stack = crate::rpc::stack(&m, &f, &a);
                let result = match refused {
                    Some(refusal) => Err(refusal),
                    None => crate::rpc::apply(func, &m, &f, a).await,
                };
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
                    Term::Atom(self.shared.name.clone()),
                    Term::list(vec![Term::atom("erpc")]),
                ]);
                self.send(Control::Send { to: from.clone() }, Some(reply));
            }
        }
    }

    /// Our `net_kernel`: answers `{is_auth, Node}` calls so `net_adm:ping` gets `pong`.
    fn net_kernel(&mut self, msg: Term) {
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
        Replier {
            tx: self.tx.clone(),
            flags: self.flags,
            from: self.shared.net_kernel_pid.clone(),
            outbox: None,
        }
        .reply(caller, &ReplyTag::new(tag), reply);
    }
}

/// `{'$gen_call', {From, Tag}, Request}` taken apart.
fn gen_call_parts(msg: &Term) -> Option<(&Pid, &Term, &Term)> {
    let [label, from, request] = msg.as_tuple()? else {
        return None;
    };
    if !label.is_atom("$gen_call") {
        return None;
    }
    match from.as_tuple()? {
        [Term::Pid(caller), tag] => Some((caller, tag, request)),
        _ => None,
    }
}

/// Sends `gen_server` replies on one session.
#[derive(Debug, Clone)]
pub(crate) struct Replier {
    tx: mpsc::UnboundedSender<Outgoing>,
    flags: DistFlags,
    from: Pid,
    /// Set for replies the writer waits for (see [`ReplyOutbox`]).
    outbox: Option<Arc<ReplyOutbox>>,
}

/// Replies of local actors to the peer's calls, on their way to the writer.
///
/// The writer waits for these replies itself ([`crate::waiter`]), so a reply is usually
/// produced while the writer is being polled. Sent on the writer's own channel, it would wake
/// the writer from inside its poll, and tokio reschedules a task woken that way as a yield,
/// which in the multi-thread scheduler wakes another worker thread: a futex and two context
/// switches per call. The outbox takes the reply without waking the writer when the writer is
/// the one polling, and wakes it otherwise.
#[derive(Default)]
pub(crate) struct ReplyOutbox {
    items: std::sync::Mutex<Vec<Outgoing>>,
    owner: crate::waiter::WakerCell,
    polling: std::sync::atomic::AtomicBool,
}

impl std::fmt::Debug for ReplyOutbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyOutbox").finish_non_exhaustive()
    }
}

impl ReplyOutbox {
    fn push(&self, item: Outgoing) {
        use std::sync::atomic::Ordering::SeqCst;
        crate::lock(&self.items).push(item);
        // The writer drains after its poll (`polling` false again), so an item pushed while
        // it polls is seen without a wake-up.
        if !self.polling.load(SeqCst) {
            self.owner.wake();
        }
    }

    /// Polls `waiter` on the writer's behalf; replies it completes land here unwoken.
    fn poll_waits(&self, waiter: &ReplyWaiter, cx: &mut std::task::Context<'_>) {
        use std::sync::atomic::Ordering::SeqCst;
        self.owner.register(cx.waker());
        self.polling.store(true, SeqCst);
        waiter.poll(cx);
        self.polling.store(false, SeqCst);
    }

    fn has_items(&self) -> bool {
        !crate::lock(&self.items).is_empty()
    }

    /// Moves the queued replies into `into` (empty), which lends its buffer to the queue.
    fn take_into(&self, into: &mut Vec<Outgoing>) {
        std::mem::swap(&mut *crate::lock(&self.items), into);
    }
}

impl Replier {
    /// Sends `{Tag, Reply}` to a caller: to its alias when the tag is `[alias | Ref]` and the
    /// peer takes aliases, else to its pid.
    pub fn reply(&self, caller: &Pid, tag: &ReplyTag, reply: Term) {
        let control = match tag {
            ReplyTag::Alias(alias) if self.flags.contains(DistFlags::ALIAS) => Control::AliasSend {
                from: self.from.clone(),
                alias: alias.clone(),
            },
            _ => Control::Send { to: caller.clone() },
        };
        let item = Outgoing::Reply(
            control,
            GenReply {
                tag: tag.clone(),
                reply,
            },
        );
        match &self.outbox {
            Some(outbox) => outbox.push(item),
            None => {
                let _ = self.tx.send(item);
            }
        }
    }

    /// Sends a plain message to a pid.
    pub fn send(&self, to: &Pid, msg: Term) {
        let control = Control::Send { to: to.clone() };
        let _ = self.tx.send(Outgoing::Message(control, Some(msg)));
    }
}

/// Encodes one queued message. Terms go through the connection's atom cache when the peer
/// takes it (OTP receives cached atoms more cheaply, and it cuts bytes by 17-39%); a proxy's
/// pre-encoded control and payload go out as they are, which is cheapest for the sender.
fn encode_outgoing(
    out: &mut BytesMut,
    form: &mut SendForm,
    flags: DistFlags,
    msg: Outgoing,
    shares: &mut Shares,
) {
    match msg {
        Outgoing::Prepared(control, payload) => {
            packet::encode_prepared_shared(out, flags, &control, payload, shares)
        }
        Outgoing::Message(control, payload) => {
            packet::encode_frame_shared(out, form, &control, payload.as_ref(), Some(shares))
        }
        Outgoing::Call(control, call) => {
            packet::encode_frame_shared(out, form, &control, Some(&call), Some(shares))
        }
        Outgoing::Reply(control, reply) => {
            packet::encode_frame_shared(out, form, &control, Some(&reply), Some(shares))
        }
        Outgoing::Raw(control, payload) => {
            packet::encode_raw_shared(out, form, &control, &payload, shares)
        }
        // The writer answers these itself.
        Outgoing::Flush(_) => {}
    }
}

/// Writes `buf` with the binaries `shares` left out of it in their places: the write path
/// of a batch with big binaries, which are not copied.
async fn write_shared<W: AsyncWrite + Unpin>(
    w: &mut W,
    buf: &[u8],
    shares: &Shares,
) -> std::io::Result<()> {
    use std::io::IoSlice;
    let mut slices = Vec::with_capacity(2 * shares.at.len() + 1);
    let mut from = 0;
    for (at, bytes) in &shares.at {
        slices.push(IoSlice::new(&buf[from..*at]));
        slices.push(IoSlice::new(bytes));
        from = *at;
    }
    slices.push(IoSlice::new(&buf[from..]));
    slices.retain(|s| !s.is_empty());
    let mut slices = &mut slices[..];
    // One vectored write for all of it when the transport takes it, else as many as needed.
    while !slices.is_empty() {
        match w.write_vectored(slices).await? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            n => IoSlice::advance_slices(&mut slices, n),
        }
    }
    Ok(())
}

/// Ends the reply waits when the writer ends (returns, or is aborted with its session).
struct CloseOnDrop(ReplyWaiter);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        self.0.close();
    }
}

async fn writer_task(
    mut w: tokio::io::WriteHalf<BoxedTransport>,
    mut rx: mpsc::UnboundedReceiver<Outgoing>,
    (waiter, outbox): (ReplyWaiter, Arc<ReplyOutbox>),
    deferred: Deferred,
    flags: DistFlags,
    tick_every: Duration,
    // The node's counters and busy poller.
    (counters, busy): (Arc<crate::ops::Counters>, Arc<crate::busy::BusyPoll>),
) {
    const BATCH: usize = 256 << 10;
    // The most bytes one frame can take, its 4-byte length included.
    const FRAME_MAX: usize = 4 + u32::MAX as usize;
    let mut oversized = false;
    let mut buf = BytesMut::with_capacity(64 << 10);
    // Big binaries of this batch, written from where they are rather than copied into `buf`.
    let mut shares = Shares::default();
    let mut form = SendForm::with_atom_cache(flags);
    let mut flushed = Vec::new();
    let mut messages = 0u64;
    let _close = CloseOnDrop(waiter.clone());
    // The buffers the deferred controls and the replies are swapped into, kept across writes.
    let (mut controls, mut replies) = (Vec::new(), Vec::new());
    let take_deferred = |buf: &mut BytesMut,
                         form: &mut SendForm,
                         messages: &mut u64,
                         controls: &mut Vec<Control>| {
        std::mem::swap(&mut *crate::lock(&deferred), controls);
        for control in controls.drain(..) {
            *messages += 1;
            packet::encode_message_as(buf, form, &control, None);
        }
    };
    // Timers are armed rarely, not per message: registering a timer earlier than the one the
    // runtime sleeps on wakes the thread parked in the I/O driver. The tick timer fires every
    // `tick_every` and sends a tick only when nothing was written since it last fired; the
    // flush timer runs only while deferred control messages wait.
    let mut wrote = false;
    let tick = tokio::time::sleep(tick_every);
    tokio::pin!(tick);
    let flush = tokio::time::sleep(DEFERRED_FLUSH);
    tokio::pin!(flush);
    let mut flush_armed = false;
    loop {
        if !flush_armed && !crate::lock(&deferred).is_empty() {
            flush
                .as_mut()
                .reset(tokio::time::Instant::now() + DEFERRED_FLUSH);
            flush_armed = true;
        }
        // Replies of local actors to the peer's calls wake this task directly (see
        // `crate::waiter`); running their waits puts the replies in the outbox.
        let next = std::future::poll_fn(|cx| {
            outbox.poll_waits(&waiter, cx);
            match rx.poll_recv(cx) {
                std::task::Poll::Pending if outbox.has_items() => {
                    std::task::Poll::Ready(Some(None))
                }
                other => other.map(|m| m.map(Some)),
            }
        });
        let first = tokio::select! {
            biased;
            m = next => match m {
                Some(m) => m,
                None => return,
            },
            () = &mut flush, if flush_armed => {
                flush_armed = false;
                take_deferred(&mut buf, &mut form, &mut messages, &mut controls);
                None
            }
            () = &mut tick => {
                tick.as_mut().reset(tokio::time::Instant::now() + tick_every);
                if std::mem::take(&mut wrote) {
                    continue;
                }
                // Idle for a tick interval: keep the peer's view of us alive.
                take_deferred(&mut buf, &mut form, &mut messages, &mut controls);
                if buf.is_empty() {
                    packet::encode_tick(&mut buf);
                }
                None
            }
        };
        outbox.take_into(&mut replies);
        if first.is_some() || !replies.is_empty() {
            let mut take = |buf: &mut BytesMut, shares: &mut Shares, msg: Outgoing| match msg {
                Outgoing::Flush(ack) => flushed.push(ack),
                msg => {
                    messages += 1;
                    let before = buf.len() + shares.bytes;
                    encode_outgoing(buf, &mut form, flags, msg, shares);
                    // A frame's length is 32 bits; this node does not fragment what it
                    // sends, so a message of 4 GiB or more cannot go.
                    oversized |= buf.len() + shares.bytes - before > FRAME_MAX;
                }
            };
            for reply in replies.drain(..) {
                take(&mut buf, &mut shares, reply);
            }
            if let Some(msg) = first {
                take(&mut buf, &mut shares, msg);
            }
            // Batch whatever else is queued into the same write.
            while buf.len() + shares.bytes < BATCH {
                match rx.try_recv() {
                    Ok(msg) => take(&mut buf, &mut shares, msg),
                    Err(_) => break,
                }
            }
            take_deferred(&mut buf, &mut form, &mut messages, &mut controls);
        }
        if buf.is_empty() && flushed.is_empty() {
            continue;
        }
        if oversized {
            // Its length would wrap and the peer would read garbage; the atom cache already
            // counts it as sent, so the connection cannot go on without it either.
            tracing::error!(
                "a message of 4 GiB or more does not fit in one distribution frame; \
                 closing the connection"
            );
            let _ = w.shutdown().await;
            return;
        }
        let written = if shares.at.is_empty() {
            w.write_all(&buf).await
        } else {
            write_shared(&mut w, &buf, &shares).await
        };
        if written.is_err() {
            return;
        }
        busy.kick();
        // A tick written does not count: the next interval needs its own.
        wrote = messages > 0;
        crate::ops::Counters::add(&counters.bytes_out, (buf.len() + shares.bytes) as u64);
        shares.clear();
        crate::ops::Counters::add(&counters.messages_out, std::mem::take(&mut messages));
        for ack in flushed.drain(..) {
            let _ = ack.send(());
        }
        buf.clear();
    }
}

async fn reader_task(
    mut r: tokio::io::ReadHalf<BoxedTransport>,
    mut input: BytesMut,
    mut decoder: PacketDecoder,
    mut dispatcher: Dispatcher,
    session: ActorRef<SessionMsg>,
    ticktime: Duration,
    max_frame: usize,
) {
    let counters = dispatcher.shared.ops.counters.clone();
    crate::ops::Counters::add(&counters.bytes_in, input.len() as u64);
    // Counted locally and added once per read, so sessions do not contend on the counter.
    let mut received = 0u64;
    // Big frames are read into buffers of their own, reused once released (see
    // `FramePool`): `big` is the one being read and the frame's length.
    let mut pool = FramePool::default();
    let mut big: Option<(BytesMut, usize)> = None;
    // As net_kernel: every quarter tick time, note whether anything arrived; four quiet
    // quarters in a row (`net_ticktime` without a byte, ticks included) end the connection.
    // One timer re-armed four times per tick time, not one per read.
    let check = tokio::time::sleep(ticktime / 4);
    tokio::pin!(check);
    let (mut heard, mut idle_checks) = (false, 0u32);
    let reason = loop {
        if big.is_none() {
            if let Some(len) = packet::incomplete_frame_len(&input, max_frame)
                .filter(|&len| len >= FramePool::FROM)
            {
                // The rest of a big frame goes straight into a buffer of its own.
                let mut buf = pool.take(len);
                buf.extend_from_slice(&input[4..]);
                input.clear();
                big = Some((buf, len));
            } else {
                match packet::next_frame(&mut input, max_frame) {
                    Err(e) => break format!("bad frame: {e}"),
                    Ok(Some(Frame::Tick)) => continue,
                    Ok(Some(Frame::Data(data))) => {
                        match take_frame(&mut decoder, &mut dispatcher, data) {
                            Ok(n) => received += n,
                            Err(e) => break e,
                        }
                        continue;
                    }
                    Ok(None) => {}
                }
                if input.capacity() - input.len() < 8192 {
                    input.reserve(64 << 10);
                }
            }
        }
        crate::ops::Counters::add(&counters.messages_in, std::mem::take(&mut received));
        let read = tokio::select! {
            biased;
            read = async {
                match &mut big {
                    Some((buf, len)) => {
                        let rest = *len - buf.len();
                        r.read_buf(&mut bytes::BufMut::limit(buf, rest)).await
                    }
                    None => r.read_buf(&mut input).await,
                }
            } => read,
            () = &mut check => {
                // From now, not from the last deadline: a busy loop may poll this late.
                check.as_mut().reset(tokio::time::Instant::now() + ticktime / 4);
                // No big buffers kept by a connection that no longer reads big frames.
                pool.idle_check();
                if std::mem::take(&mut heard) {
                    idle_checks = 0;
                } else {
                    idle_checks += 1;
                    if idle_checks >= 4 {
                        break "net_tick_timeout".to_owned();
                    }
                }
                continue;
            }
        };
        match read {
            Ok(0) => break "connection_closed".to_owned(),
            Ok(n) => {
                heard = true;
                crate::ops::Counters::add(&counters.bytes_in, n as u64)
            }
            // A TLS peer that closes without close_notify (as OTP does) is a plain close.
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break "connection_closed".to_owned()
            }
            Err(e) => break format!("read error: {e}"),
        }
        if let Some((buf, _)) = big.take_if(|(buf, len)| buf.len() == *len) {
            match take_frame(&mut decoder, &mut dispatcher, pool.freeze(buf)) {
                Ok(n) => received += n,
                Err(e) => break e,
            }
        }
    };
    crate::ops::Counters::add(&counters.messages_in, received);
    let _ = session.cast(SessionMsg::Closed(reason));
}

/// Decodes one data frame and dispatches the message in it; how many messages that was (a
/// fragment of one is none yet), or why the connection ends.
fn take_frame(
    decoder: &mut PacketDecoder,
    dispatcher: &mut Dispatcher,
    data: Bytes,
) -> Result<u64, String> {
    match decoder.decode(data) {
        Ok(Some(msg)) => {
            dispatcher.dispatch(msg);
            Ok(1)
        }
        Ok(None) => Ok(0),
        Err(e) => Err(format!("bad packet: {e}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::{Context, Wake, Waker};

    /// A writer that takes at most 7 bytes a call and has no vectored writes.
    struct Trickle(Vec<u8>);

    impl AsyncWrite for Trickle {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let n = buf.len().min(7);
            self.0.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn shared_binaries_are_written_in_their_places() {
        let buf = b"0123456789abcdef";
        let mut shares = Shares::default();
        // Two at one place, one at the very start, one at the end.
        for (at, bytes) in [(0, "<a>"), (5, "<b>"), (5, "<c>"), (16, "<d>")] {
            shares.at.push((at, Bytes::from_static(bytes.as_bytes())));
        }
        let expected = b"<a>01234<b><c>56789abcdef<d>";
        let mut vectored = Vec::new();
        write_shared(&mut vectored, buf, &shares).await.unwrap();
        assert_eq!(&vectored[..], expected);
        let mut trickle = Trickle(Vec::new());
        write_shared(&mut trickle, buf, &shares).await.unwrap();
        assert_eq!(&trickle.0[..], expected);
    }

    struct CountingWaker(AtomicUsize);

    impl Wake for CountingWaker {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn tick() -> Outgoing {
        Outgoing::Prepared(Bytes::new(), Vec::new())
    }

    /// A reply written from its parts is the same frame as `{Tag, Reply}`, for an alias tag
    /// and another, in every form.
    #[test]
    fn a_gen_reply_is_written_as_its_term() {
        let reference = Reference::new(Atom::new("caller@host"), 7, &[1, 2, 3]).unwrap();
        let tags = [
            Term::improper_list(vec![Term::atom("alias")], Term::from(reference.clone())),
            Term::from(reference),
        ];
        let control = Control::Send {
            to: Pid {
                node: Atom::new("caller@host"),
                id: 1,
                serial: 0,
                creation: 7,
            },
        };
        let reply = Term::tuple(vec![Term::atom("ok"), Term::binary(&b"value"[..])]);
        let forms = || {
            [
                SendForm::PassThrough,
                SendForm::Header,
                SendForm::with_atom_cache(DistFlags::DIST_HDR_ATOM_CACHE),
            ]
        };
        for (mut parts_form, mut term_form) in forms().into_iter().zip(forms()) {
            for tag in &tags {
                let gen_reply = GenReply {
                    tag: ReplyTag::new(tag),
                    reply: reply.clone(),
                };
                let t = Term::tuple(vec![tag.clone(), reply.clone()]);
                let (mut parts, mut term) = (BytesMut::new(), BytesMut::new());
                packet::encode_frame_as(&mut parts, &mut parts_form, &control, Some(&gen_reply));
                packet::encode_message_as(&mut term, &mut term_form, &control, Some(&t));
                assert_eq!(parts, term, "{tag}");
            }
        }
    }

    /// A call's request written from its parts is the same frame as its term, in every form
    /// (the atom cache's included, message after message).
    #[test]
    fn a_gen_call_is_written_as_its_term() {
        let pid = |id| Pid {
            node: Atom::new("caller@host"),
            id,
            serial: 0,
            creation: 7,
        };
        let calls: Vec<GenCall> = (0..3)
            .map(|i| GenCall {
                from: pid(i),
                mref: Reference::new(Atom::new("caller@host"), 7, &[i, 2, 3]).unwrap(),
                request: Term::tuple(vec![Term::atom("get"), Term::Int(i64::from(i))]),
            })
            .collect();
        let control = Control::RegSend {
            from: pid(0),
            to_name: Atom::new("kv"),
        };
        let form = |i| match i {
            0 => SendForm::PassThrough,
            1 => SendForm::Header,
            _ => SendForm::with_atom_cache(DistFlags::DIST_HDR_ATOM_CACHE),
        };
        for i in 0..3 {
            let (mut parts_form, mut term_form) = (form(i), form(i));
            for call in &calls {
                let (mut parts, mut term) = (BytesMut::new(), BytesMut::new());
                packet::encode_frame_as(&mut parts, &mut parts_form, &control, Some(call));
                let t = call.to_term();
                packet::encode_message_as(&mut term, &mut term_form, &control, Some(&t));
                assert_eq!(parts, term, "form {i}");
            }
        }
    }

    /// A reply produced while the writer polls its waits is queued without waking the writer
    /// (tokio would reschedule it as a yield and wake another worker); one produced elsewhere
    /// wakes it.
    #[test]
    fn the_outbox_wakes_its_writer_only_from_outside_its_poll() {
        let outbox = Arc::new(ReplyOutbox::default());
        let counter = Arc::new(CountingWaker(AtomicUsize::new(0)));
        let waker = Waker::from(counter.clone());
        let mut cx = Context::from_waker(&waker);
        let waiter = ReplyWaiter::default();

        // A wait that pushes a reply when its port is answered; the sender answers it.
        let wait_for_reply = || {
            let (tx, rx) = tokio::sync::oneshot::channel::<()>();
            let pushing = outbox.clone();
            let wait: crate::waiter::Wait = Box::pin(async move {
                let _ = rx.await;
                pushing.push(tick());
            });
            (tx, wait)
        };

        // The writer polls once; then a wait whose reply is already there is added.
        outbox.poll_waits(&waiter, &mut cx);
        let (tx, wait) = wait_for_reply();
        tx.send(()).unwrap();
        assert!(waiter.add(wait).is_ok());
        // `add` ran the wait on this thread, outside the writer's poll: that wakes it.
        assert_eq!(counter.0.load(Ordering::SeqCst), 1);
        assert_eq!(
            {
                let mut v = Vec::new();
                outbox.take_into(&mut v);
                v.len()
            },
            1
        );

        // A wait completed by the writer's own poll: queued, no wake-up.
        let (tx, wait) = wait_for_reply();
        assert!(waiter.add(wait).is_ok());
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            1,
            "adding a pending wait wakes nobody"
        );
        tx.send(()).unwrap();
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            2,
            "the reply wakes the writer"
        );
        outbox.poll_waits(&waiter, &mut cx);
        assert_eq!(
            counter.0.load(Ordering::SeqCst),
            2,
            "no wake from inside the poll"
        );
        assert!(outbox.has_items());
        assert_eq!(
            {
                let mut v = Vec::new();
                outbox.take_into(&mut v);
                v.len()
            },
            1
        );
        assert!(!outbox.has_items());
    }
}
