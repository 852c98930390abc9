//! The distribution handshake as a sans-IO state machine, for both roles.
//!
//! Bytes from the peer go into [`Handshake::advance`] (which consumes whole 2-byte-length
//! frames from the buffer), bytes for the peer come out in the `out` buffer, and the returned
//! [`Step`] says what happened. Two decisions belong to the node, not the protocol, and are
//! asked for: the acceptor's status once the peer has named itself ([`Step::PeerNamed`], answer
//! with [`Handshake::set_status`]) and the initiator's answer when the acceptor says the
//! connection is already `alive` ([`Step::PeerAlive`], answer with [`Handshake::answer_alive`]).
//! Time is the driver's: it applies `net_setuptime` to each step.
//!
//! ```text
//! initiator                              acceptor
//!   'N' flags creation name  ───────────▶
//!                            ◀───────────  's' status
//!                            ◀───────────  'N' flags challenge creation name
//!   'r' challenge digest     ───────────▶
//!                            ◀───────────  'a' digest
//! ```

use bytes::{Buf, BufMut, BytesMut};
use md5::{Digest, Md5};

use super::flags::DistFlags;

/// What the local node brings to a handshake.
#[derive(Clone)]
pub struct HandshakeConfig {
    /// The full node name, `name@host`.
    pub node_name: String,
    /// The shared secret.
    pub cookie: Vec<u8>,
    /// The flags offered (include [`DistFlags::PUBLISHED`] for a visible node).
    pub flags: DistFlags,
    /// What a peer must offer.
    pub required: DistFlags,
    /// The node's creation, from EPMD.
    pub creation: u32,
}

impl std::fmt::Debug for HandshakeConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandshakeConfig")
            .field("node_name", &self.node_name)
            .field("cookie", &"<hidden>")
            .field("flags", &self.flags)
            .field("creation", &self.creation)
            .finish()
    }
}

/// The peer, as it introduced itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerInfo {
    /// Its full node name.
    pub name: String,
    /// The flags it offered.
    pub flags: DistFlags,
    /// Its creation.
    pub creation: u32,
}

/// A finished handshake.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Established {
    /// The peer.
    pub peer: PeerInfo,
    /// The flags both sides offered: what the connection uses.
    pub flags: DistFlags,
}

/// The acceptor's answer to a peer that named itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Go on.
    Ok,
    /// Go on; this node was connecting to the peer too and gives that attempt up.
    OkSimultaneous,
    /// Refused: this node is connecting to the peer too and its attempt wins.
    Nok,
    /// Refused: the peer lacks required capabilities or is not allowed.
    NotAllowed,
    /// This node already has a connection with the peer; the peer must say whether to go on.
    Alive,
}

impl Status {
    const ALL: [Status; 5] = [
        Status::Ok,
        Status::OkSimultaneous,
        Status::Nok,
        Status::NotAllowed,
        Status::Alive,
    ];

    /// The status as it goes on the wire (after the tag `s`): `ok`, `nok`, ...
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::OkSimultaneous => "ok_simultaneous",
            Status::Nok => "nok",
            Status::NotAllowed => "not_allowed",
            Status::Alive => "alive",
        }
    }

    fn as_bytes(self) -> &'static [u8] {
        self.as_str().as_bytes()
    }

    /// The status a wire text names, if any.
    fn from_bytes(bytes: &[u8]) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_bytes() == bytes)
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a handshake was refused ([`HandshakeError::Refused`]).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The acceptor's status ended the handshake: [`Status::Nok`] (it is connecting to us
    /// too and its attempt wins) or [`Status::NotAllowed`]. On the acceptor's side: the
    /// status it sent.
    Status(Status),
    /// The acceptor answered with a status this node does not know (its text).
    UnknownStatus(String),
    /// (Acceptor) The initiator answered our `alive` with `false`: it keeps its connection.
    AliveDeclined,
    /// (Initiator) We have a connection with the acceptor already and told it to keep its
    /// own.
    AlreadyConnected,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Status(Status::Nok) => {
                f.write_str("nok (a simultaneous connect that the other attempt wins)")
            }
            Refusal::Status(status) => write!(f, "{status}"),
            Refusal::UnknownStatus(text) => write!(f, "unknown status {text:?}"),
            Refusal::AliveDeclined => f.write_str("the peer answered alive with false"),
            Refusal::AlreadyConnected => f.write_str("already connected"),
        }
    }
}

/// What [`Handshake::advance`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// It needs more bytes from the peer.
    NeedMore,
    /// (Acceptor) The peer named itself: answer with [`Handshake::set_status`].
    PeerNamed(PeerInfo),
    /// (Initiator) The acceptor already has a connection with this node: answer with
    /// [`Handshake::answer_alive`].
    PeerAlive,
    /// The handshake is complete; what follows on the connection is distribution traffic.
    Established(Established),
}

/// Why a handshake failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum HandshakeError {
    /// A message was too short, too long or had the wrong layout.
    #[error("malformed handshake message: {0}")]
    Malformed(&'static str),
    /// A message other than the one the protocol calls for.
    #[error("expected {expected} but got message tag {tag}")]
    Unexpected {
        /// What was expected.
        expected: &'static str,
        /// The tag byte received.
        tag: u8,
    },
    /// The peer lacks capabilities this node requires.
    #[error("peer {peer} lacks required distribution flags {missing}")]
    MissingFlags {
        /// The peer's name.
        peer: String,
        /// What it lacks.
        missing: DistFlags,
    },
    /// The peer's node name is not `name@host`.
    #[error("invalid peer node name {0:?}")]
    BadName(String),
    /// The acceptor answered with another node name than the one dialled.
    #[error("dialled {expected} but {got} answered")]
    WrongPeer {
        /// The node dialled.
        expected: String,
        /// The node that answered.
        got: String,
    },
    /// The connection was refused: by the acceptor's status, or by one side's answer to
    /// `alive`.
    #[error("connection refused: {0}")]
    Refused(Refusal),
    /// A step of the handshake took longer than `net_setuptime`.
    #[error("the handshake timed out (net_setuptime)")]
    TimedOut,
    /// The peer's digest does not match the cookie: the cookies differ.
    #[error("the peer's cookie digest does not match ours (different cookies)")]
    BadDigest,
    /// The peer closed the connection after our challenge reply: it rejected our cookie.
    #[error("the peer closed the connection: it rejected our cookie")]
    CookieRejected,
    /// The peer closed the connection.
    #[error("the peer closed the connection during the handshake")]
    Closed,
    /// A method was called in a state that does not allow it.
    #[error("handshake misuse: {0}")]
    Misuse(&'static str),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    // Initiator
    Start,
    AwaitStatus,
    AwaitAliveAnswer,
    AwaitChallenge,
    AwaitAck,
    // Acceptor
    AwaitName,
    AwaitStatusDecision,
    AwaitAliveConfirm,
    AwaitComplement,
    AwaitReply,
    // Both
    Done,
    Failed,
}

/// One side of a handshake. See the module docs.
#[derive(Debug)]
pub struct Handshake {
    config: HandshakeConfig,
    state: State,
    our_challenge: u32,
    expected_peer: Option<String>,
    peer: Option<PeerInfo>,
    old_style_peer: bool,
    wide_frames: bool,
}

/// The digest of a challenge: MD5 of the cookie followed by the challenge in decimal.
pub fn digest(challenge: u32, cookie: &[u8]) -> [u8; 16] {
    let mut md5 = Md5::new();
    md5.update(cookie);
    md5.update(challenge.to_string().as_bytes());
    md5.finalize().into()
}

/// Compares two digests in time that does not depend on where they differ.
fn digests_equal(a: &[u8; 16], b: &[u8]) -> bool {
    if b.len() != 16 {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn valid_node_name(name: &str) -> bool {
    match name.split_once('@') {
        Some((n, h)) => !n.is_empty() && !h.is_empty() && !h.contains('@'),
        None => false,
    }
}

/// Frames a message with a 2-byte length (TCP), or 4-byte (TLS, as `inet_tls_dist` does).
fn write_frame_sized(out: &mut BytesMut, wide: bool, body: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    let header = if wide { 4 } else { 2 };
    out.put_bytes(0, header);
    body(out);
    let len = out.len() - start - header;
    if wide {
        out[start..start + 4].copy_from_slice(&(len as u32).to_be_bytes());
    } else {
        out[start..start + 2].copy_from_slice(&(len as u16).to_be_bytes());
    }
}

#[cfg(test)]
fn write_frame(out: &mut BytesMut, body: impl FnOnce(&mut BytesMut)) {
    write_frame_sized(out, false, body);
}

/// The longest handshake message: a challenge with a 255-character name of 4-byte characters.
const MAX_FRAME: usize = 1 + 8 + 4 + 4 + 2 + 255 * 4;

/// Takes one complete frame off the front of `input`.
fn next_frame(input: &mut BytesMut, wide: bool) -> Result<Option<BytesMut>, HandshakeError> {
    let header = if wide { 4 } else { 2 };
    if input.len() < header {
        return Ok(None);
    }
    let len = if wide {
        u32::from_be_bytes([input[0], input[1], input[2], input[3]]) as usize
    } else {
        usize::from(u16::from_be_bytes([input[0], input[1]]))
    };
    if len == 0 {
        return Err(HandshakeError::Malformed("empty frame"));
    }
    if len > MAX_FRAME {
        return Err(HandshakeError::Malformed(
            "frame longer than any handshake message",
        ));
    }
    if input.len() < header + len {
        return Ok(None);
    }
    input.advance(header);
    Ok(Some(input.split_to(len)))
}

impl Handshake {
    /// The side that connects. `expected_peer` is the node dialled, checked against the name
    /// the acceptor announces; `challenge` must be random.
    pub fn initiator(
        config: HandshakeConfig,
        expected_peer: Option<String>,
        challenge: u32,
    ) -> Self {
        Handshake {
            config,
            state: State::Start,
            our_challenge: challenge,
            expected_peer,
            peer: None,
            old_style_peer: false,
            wide_frames: false,
        }
    }

    /// The side that accepts. `challenge` must be random.
    pub fn acceptor(config: HandshakeConfig, challenge: u32) -> Self {
        Handshake {
            config,
            state: State::AwaitName,
            our_challenge: challenge,
            expected_peer: None,
            peer: None,
            old_style_peer: false,
            wide_frames: false,
        }
    }

    /// Uses 4-byte frame lengths, as OTP does for the handshake over TLS
    /// (`-proto_dist inet_tls`); TCP uses 2.
    pub fn with_4_byte_frames(mut self) -> Self {
        self.wide_frames = true;
        self
    }

    /// The peer, once known.
    pub fn peer(&self) -> Option<&PeerInfo> {
        self.peer.as_ref()
    }

    /// (Initiator) Writes `send_name`, the first message.
    pub fn start(&mut self, out: &mut BytesMut) -> Result<(), HandshakeError> {
        if self.state != State::Start {
            return Err(HandshakeError::Misuse("start is for a new initiator"));
        }
        let cfg = &self.config;
        write_frame_sized(out, self.wide_frames, |o| {
            o.put_u8(b'N');
            o.put_u64(cfg.flags.0);
            o.put_u32(cfg.creation);
            o.put_u16(cfg.node_name.len() as u16);
            o.put_slice(cfg.node_name.as_bytes());
        });
        self.state = State::AwaitStatus;
        Ok(())
    }

    /// (Acceptor) Answers [`Step::PeerNamed`]. `Ok`/`OkSimultaneous` go on with the challenge;
    /// `Nok`/`NotAllowed` end the handshake (close after sending `out`); `Alive` waits for the
    /// peer's answer.
    pub fn set_status(&mut self, status: Status, out: &mut BytesMut) -> Result<(), HandshakeError> {
        if self.state != State::AwaitStatusDecision {
            return Err(HandshakeError::Misuse("set_status answers PeerNamed"));
        }
        write_frame_sized(out, self.wide_frames, |o| {
            o.put_u8(b's');
            o.put_slice(status.as_bytes());
        });
        match status {
            Status::Ok | Status::OkSimultaneous => self.send_challenge(out),
            Status::Alive => self.state = State::AwaitAliveConfirm,
            Status::Nok | Status::NotAllowed => self.state = State::Failed,
        }
        Ok(())
    }

    /// (Initiator) Answers [`Step::PeerAlive`]: `true` when this node has no connection with
    /// the peer (the peer's is stale and should be replaced), `false` to give up.
    pub fn answer_alive(
        &mut self,
        proceed: bool,
        out: &mut BytesMut,
    ) -> Result<(), HandshakeError> {
        if self.state != State::AwaitAliveAnswer {
            return Err(HandshakeError::Misuse("answer_alive answers PeerAlive"));
        }
        write_frame_sized(out, self.wide_frames, |o| {
            o.put_u8(b's');
            o.put_slice(if proceed { b"true" } else { b"false" });
        });
        self.state = if proceed {
            State::AwaitChallenge
        } else {
            State::Failed
        };
        Ok(())
    }

    fn send_challenge(&mut self, out: &mut BytesMut) {
        let cfg = &self.config;
        let challenge = self.our_challenge;
        write_frame_sized(out, self.wide_frames, |o| {
            o.put_u8(b'N');
            o.put_u64(cfg.flags.0);
            o.put_u32(challenge);
            o.put_u32(cfg.creation);
            o.put_u16(cfg.node_name.len() as u16);
            o.put_slice(cfg.node_name.as_bytes());
        });
        let complement_due = self.old_style_peer
            && self
                .peer
                .as_ref()
                .is_some_and(|p| p.flags.contains(DistFlags::HANDSHAKE_23));
        self.state = if complement_due {
            State::AwaitComplement
        } else {
            State::AwaitReply
        };
    }

    /// Tells the machine the peer closed the connection; returns the error that explains it.
    pub fn closed(&mut self) -> HandshakeError {
        let e = match self.state {
            State::AwaitAck => HandshakeError::CookieRejected,
            _ => HandshakeError::Closed,
        };
        self.state = State::Failed;
        e
    }

    /// Consumes complete frames from `input`, writing replies to `out`.
    pub fn advance(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<Step, HandshakeError> {
        let result = self.advance_inner(input, out);
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    fn advance_inner(
        &mut self,
        input: &mut BytesMut,
        out: &mut BytesMut,
    ) -> Result<Step, HandshakeError> {
        loop {
            match self.state {
                State::Done => return Err(HandshakeError::Misuse("handshake already complete")),
                State::Failed => return Err(HandshakeError::Misuse("handshake already failed")),
                State::Start => return Err(HandshakeError::Misuse("call start first")),
                State::AwaitStatusDecision | State::AwaitAliveAnswer => return Ok(Step::NeedMore),
                _ => {}
            }
            let Some(mut frame) = next_frame(input, self.wide_frames)? else {
                return Ok(Step::NeedMore);
            };
            let tag = frame.get_u8();
            match (self.state, tag) {
                (State::AwaitName, b'N') => {
                    if frame.len() < 14 {
                        return Err(HandshakeError::Malformed("send_name too short"));
                    }
                    let flags = DistFlags(frame.get_u64()).expand_digest();
                    let creation = frame.get_u32();
                    let nlen = usize::from(frame.get_u16());
                    if frame.len() != nlen {
                        return Err(HandshakeError::Malformed("send_name name length"));
                    }
                    let name = self.peer_name(&frame)?;
                    return self.named(
                        PeerInfo {
                            name,
                            flags,
                            creation,
                        },
                        out,
                    );
                }
                (State::AwaitName, b'n') => {
                    // The pre-OTP-23 form: version, 32 bits of flags, name.
                    if frame.len() < 7 {
                        return Err(HandshakeError::Malformed("old send_name too short"));
                    }
                    let _version = frame.get_u16();
                    let flags = DistFlags(u64::from(frame.get_u32())).expand_digest();
                    let name = self.peer_name(&frame)?;
                    self.old_style_peer = true;
                    return self.named(
                        PeerInfo {
                            name,
                            flags,
                            creation: 0,
                        },
                        out,
                    );
                }
                (State::AwaitName, tag) => {
                    return Err(HandshakeError::Unexpected {
                        expected: "send_name",
                        tag,
                    })
                }
                (State::AwaitAliveConfirm, b's') => {
                    if &frame[..] == b"true" {
                        self.send_challenge(out);
                    } else {
                        self.state = State::Failed;
                        return Err(HandshakeError::Refused(Refusal::AliveDeclined));
                    }
                }
                (State::AwaitComplement, b'c') => {
                    if frame.len() != 8 {
                        return Err(HandshakeError::Malformed("complement length"));
                    }
                    let high = u64::from(frame.get_u32());
                    let creation = frame.get_u32();
                    if let Some(peer) = self.peer.as_mut() {
                        peer.flags = DistFlags(peer.flags.0 | (high << 32));
                        peer.creation = creation;
                    }
                    self.state = State::AwaitReply;
                }
                (State::AwaitReply | State::AwaitComplement, b'r') => {
                    if frame.len() != 20 {
                        return Err(HandshakeError::Malformed("challenge_reply length"));
                    }
                    let peer_challenge = frame.get_u32();
                    let expected = digest(self.our_challenge, &self.config.cookie);
                    if !digests_equal(&expected, &frame[..16]) {
                        return Err(HandshakeError::BadDigest);
                    }
                    let answer = digest(peer_challenge, &self.config.cookie);
                    write_frame_sized(out, self.wide_frames, |o| {
                        o.put_u8(b'a');
                        o.put_slice(&answer);
                    });
                    return Ok(self.established());
                }
                (State::AwaitStatus, b's') => match &frame[..] {
                    b"ok" | b"ok_simultaneous" => self.state = State::AwaitChallenge,
                    b"alive" => {
                        self.state = State::AwaitAliveAnswer;
                        return Ok(Step::PeerAlive);
                    }
                    other => {
                        return Err(HandshakeError::Refused(match Status::from_bytes(other) {
                            Some(status) => Refusal::Status(status),
                            None => Refusal::UnknownStatus(String::from_utf8_lossy(other).into()),
                        }))
                    }
                },
                (State::AwaitChallenge, b'N') => {
                    if frame.len() < 18 {
                        return Err(HandshakeError::Malformed("challenge too short"));
                    }
                    let flags = DistFlags(frame.get_u64()).expand_digest();
                    let challenge = frame.get_u32();
                    let creation = frame.get_u32();
                    let nlen = usize::from(frame.get_u16());
                    if frame.len() != nlen {
                        return Err(HandshakeError::Malformed("challenge name length"));
                    }
                    let name = self.peer_name(&frame)?;
                    if let Some(expected) = &self.expected_peer {
                        if *expected != name {
                            return Err(HandshakeError::WrongPeer {
                                expected: expected.clone(),
                                got: name,
                            });
                        }
                    }
                    let missing = flags.missing(self.config.required);
                    if !missing.is_empty() {
                        return Err(HandshakeError::MissingFlags {
                            peer: name,
                            missing,
                        });
                    }
                    self.peer = Some(PeerInfo {
                        name,
                        flags,
                        creation,
                    });
                    let our_challenge = self.our_challenge;
                    let answer = digest(challenge, &self.config.cookie);
                    write_frame_sized(out, self.wide_frames, |o| {
                        o.put_u8(b'r');
                        o.put_u32(our_challenge);
                        o.put_slice(&answer);
                    });
                    self.state = State::AwaitAck;
                }
                (State::AwaitAck, b'a') => {
                    let expected = digest(self.our_challenge, &self.config.cookie);
                    if !digests_equal(&expected, &frame[..]) {
                        return Err(HandshakeError::BadDigest);
                    }
                    return Ok(self.established());
                }
                (state, tag) => {
                    return Err(HandshakeError::Unexpected {
                        expected: match state {
                            State::AwaitStatus => "status",
                            State::AwaitChallenge => "challenge",
                            State::AwaitAck => "challenge_ack",
                            State::AwaitAliveConfirm => "alive answer",
                            State::AwaitComplement => "complement",
                            _ => "challenge_reply",
                        },
                        tag,
                    })
                }
            }
        }
    }

    fn peer_name(&self, raw: &[u8]) -> Result<String, HandshakeError> {
        let name = std::str::from_utf8(raw)
            .map_err(|_| HandshakeError::BadName(String::from_utf8_lossy(raw).into_owned()))?;
        if !valid_node_name(name) || name.chars().count() > 255 {
            return Err(HandshakeError::BadName(name.to_owned()));
        }
        Ok(name.to_owned())
    }

    /// The acceptor learnt the peer's name: refuse a peer lacking required flags at once (the
    /// `not_allowed` status is in `out`), otherwise ask the node for a status.
    fn named(&mut self, peer: PeerInfo, out: &mut BytesMut) -> Result<Step, HandshakeError> {
        let mut missing = peer.flags.missing(self.config.required);
        if self.old_style_peer {
            // An old-style peer sends its high flags in the complement: judge the low half.
            missing = DistFlags(missing.0 & 0xffff_ffff);
        }
        self.peer = Some(peer.clone());
        self.state = State::AwaitStatusDecision;
        if !missing.is_empty() {
            self.set_status(Status::NotAllowed, out)?;
            return Err(HandshakeError::MissingFlags {
                peer: peer.name,
                missing,
            });
        }
        Ok(Step::PeerNamed(peer))
    }

    /// Whether the handshake refused the peer on its own (missing flags) and is over.
    pub fn is_failed(&self) -> bool {
        self.state == State::Failed
    }

    fn established(&mut self) -> Step {
        self.state = State::Done;
        let peer = self.peer.clone().unwrap_or(PeerInfo {
            name: String::new(),
            flags: DistFlags(0),
            creation: 0,
        });
        let flags = peer.flags & self.config.flags;
        Step::Established(Established { peer, flags })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(name: &str, cookie: &str) -> HandshakeConfig {
        HandshakeConfig {
            node_name: name.into(),
            cookie: cookie.as_bytes().to_vec(),
            flags: DistFlags::OFFERED,
            required: DistFlags::REQUIRED,
            creation: 7,
        }
    }

    /// Runs both machines against each other in memory.
    fn run(
        a_cookie: &str,
        b_cookie: &str,
        status: Status,
    ) -> (Result<Step, HandshakeError>, Result<Step, HandshakeError>) {
        let mut a = Handshake::initiator(config("a@h", a_cookie), Some("b@h".into()), 1111);
        let mut b = Handshake::acceptor(config("b@h", b_cookie), 2222);
        let (mut a_out, mut b_out) = (BytesMut::new(), BytesMut::new());
        a.start(&mut a_out).unwrap();
        let mut a_res = Ok(Step::NeedMore);
        let mut b_res = Ok(Step::NeedMore);
        for _ in 0..10 {
            if !a_out.is_empty() {
                b_res = b.advance(&mut a_out, &mut b_out);
                if let Ok(Step::PeerNamed(_)) = b_res {
                    b.set_status(status, &mut b_out).unwrap();
                }
            }
            if !b_out.is_empty() {
                a_res = a.advance(&mut b_out, &mut a_out);
                if let Ok(Step::PeerAlive) = a_res {
                    a.answer_alive(true, &mut a_out).unwrap();
                }
            }
            if b_res.is_err() && a_out.is_empty() && b_out.is_empty() {
                a_res = Err(a.closed());
                break;
            }
            if a_out.is_empty() && b_out.is_empty() {
                break;
            }
        }
        (a_res, b_res)
    }

    #[test]
    fn same_cookie_establishes() {
        let (a, b) = run("c", "c", Status::Ok);
        let Ok(Step::Established(a)) = a else {
            panic!("{a:?}")
        };
        let Ok(Step::Established(b)) = b else {
            panic!("{b:?}")
        };
        assert_eq!(a.peer.name, "b@h");
        assert_eq!(b.peer.name, "a@h");
        assert_eq!(a.flags, DistFlags::OFFERED);
        assert_eq!(b.peer.creation, 7);
    }

    #[test]
    fn alive_then_true_establishes() {
        let (a, b) = run("c", "c", Status::Alive);
        assert!(matches!(a, Ok(Step::Established(_))), "{a:?}");
        assert!(matches!(b, Ok(Step::Established(_))), "{b:?}");
    }

    #[test]
    fn different_cookies_fail_on_both_sides() {
        let (a, b) = run("c", "d", Status::Ok);
        assert_eq!(b, Err(HandshakeError::BadDigest));
        assert_eq!(a, Err(HandshakeError::CookieRejected));
    }

    #[test]
    fn nok_is_refused() {
        let (a, _) = run("c", "c", Status::Nok);
        assert_eq!(
            a,
            Err(HandshakeError::Refused(Refusal::Status(Status::Nok)))
        );
    }

    #[test]
    fn a_refusal_says_which_status() {
        let answer = |status: &[u8]| {
            let mut a = Handshake::initiator(config("a@h", "c"), Some("b@h".into()), 1);
            let mut a_out = BytesMut::new();
            a.start(&mut a_out).unwrap();
            let mut frame = BytesMut::new();
            frame.put_u16(1 + status.len() as u16);
            frame.put_u8(b's');
            frame.put_slice(status);
            a.advance(&mut frame, &mut a_out)
        };
        let refused = |r| Err(HandshakeError::Refused(r));
        assert_eq!(
            answer(b"not_allowed"),
            refused(Refusal::Status(Status::NotAllowed))
        );
        assert_eq!(
            answer(b"bogus"),
            refused(Refusal::UnknownStatus("bogus".into()))
        );
        assert_eq!(
            HandshakeError::Refused(Refusal::Status(Status::NotAllowed)).to_string(),
            "connection refused: not_allowed"
        );
        assert!(HandshakeError::Refused(Refusal::Status(Status::Nok))
            .to_string()
            .starts_with("connection refused: nok "));
    }

    #[test]
    fn missing_flags_get_not_allowed() {
        let mut weak = config("a@h", "c");
        weak.flags = DistFlags::MANDATORY_25;
        let mut a = Handshake::initiator(weak, None, 1);
        let mut b = Handshake::acceptor(config("b@h", "c"), 2);
        let (mut a_out, mut b_out) = (BytesMut::new(), BytesMut::new());
        a.start(&mut a_out).unwrap();
        assert!(matches!(
            b.advance(&mut a_out, &mut b_out),
            Err(HandshakeError::MissingFlags { .. })
        ));
        assert!(b.is_failed());
        assert_eq!(
            a.advance(&mut b_out, &mut a_out),
            Err(HandshakeError::Refused(Refusal::Status(Status::NotAllowed)))
        );
    }

    /// What an acceptor makes of an initiator offering `flags`: its first step.
    fn acceptor_meets(flags: DistFlags) -> Result<Step, HandshakeError> {
        let mut offer = config("a@h", "c");
        offer.flags = flags;
        let mut a = Handshake::initiator(offer, None, 1);
        let mut b = Handshake::acceptor(config("b@h", "c"), 2);
        let (mut a_out, mut b_out) = (BytesMut::new(), BytesMut::new());
        a.start(&mut a_out).unwrap();
        b.advance(&mut a_out, &mut b_out)
    }

    /// A peer may send `DFLAG_MANDATORY_25_DIGEST` instead of OTP 25's mandatory flags.
    #[test]
    fn the_mandatory_25_digest_stands_for_otp_25s_flags() {
        let otp_26 = DistFlags::V4_NC | DistFlags::UNLINK_ID;
        assert!(matches!(
            acceptor_meets(DistFlags::MANDATORY_25_DIGEST | otp_26),
            Ok(Step::PeerNamed(_))
        ));
        // Without the digest the same peer lacks OTP 25's flags.
        assert!(matches!(
            acceptor_meets(otp_26),
            Err(HandshakeError::MissingFlags { .. })
        ));
    }

    #[test]
    fn wrong_peer_name_is_refused() {
        let mut a = Handshake::initiator(config("a@h", "c"), Some("x@h".into()), 1);
        let mut b = Handshake::acceptor(config("b@h", "c"), 2);
        let (mut a_out, mut b_out) = (BytesMut::new(), BytesMut::new());
        a.start(&mut a_out).unwrap();
        b.advance(&mut a_out, &mut b_out).unwrap();
        b.set_status(Status::Ok, &mut b_out).unwrap();
        assert!(matches!(
            a.advance(&mut b_out, &mut a_out),
            Err(HandshakeError::WrongPeer { .. })
        ));
    }

    #[test]
    fn garbage_is_an_error() {
        let mut b = Handshake::acceptor(config("b@h", "c"), 2);
        let mut out = BytesMut::new();
        let mut junk = BytesMut::from(&b"GET / HTTP/1.1\r\n"[..]);
        assert!(matches!(
            b.advance(&mut junk, &mut out),
            Err(HandshakeError::Unexpected { .. } | HandshakeError::Malformed(_))
        ));
        let mut b = Handshake::acceptor(config("b@h", "c"), 2);
        let mut bad_name = BytesMut::new();
        write_frame(&mut bad_name, |o| {
            o.put_u8(b'N');
            o.put_u64(DistFlags::OFFERED.0);
            o.put_u32(1);
            o.put_u16(5);
            o.put_slice(b"nohst");
        });
        assert!(matches!(
            b.advance(&mut bad_name, &mut out),
            Err(HandshakeError::BadName(_))
        ));
    }

    #[test]
    fn digest_matches_otp() {
        // erlang:md5(["cookie", integer_to_list(123456)]).
        let d = digest(123456, b"cookie");
        let expected = Md5::digest(b"cookie123456");
        assert_eq!(&d[..], &expected[..]);
        assert!(digests_equal(&d, &expected));
        assert!(!digests_equal(&d, &expected[..15]));
    }
}
