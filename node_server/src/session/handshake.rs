//! The handshake drivers: they run [`crate::dist::handshake`]'s state machine over a stream,
//! asking the node server for its decision when the peer names itself.

use std::time::Duration;

use bytes::BytesMut;
use ractor::ActorRef;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BoxedTransport, Transport};
use crate::core::Core;
use crate::dist::handshake::{Established, Handshake, HandshakeError, Refusal, Status, Step};
use crate::etf::Atom;
use crate::server::NodeServerMsg;

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
    core: &Core,
    server: &ActorRef<NodeServerMsg>,
    tls: bool,
) -> Result<(Established, BytesMut), HandshakeError> {
    let mut hs = Handshake::acceptor(core.id.handshake_config(), random_u32());
    if tls {
        hs = hs.with_4_byte_frames();
    }
    let mut input = BytesMut::with_capacity(256);
    let mut out = BytesMut::with_capacity(256);
    let setup = core.id.config.setup_time;
    // The peer we accepted, once we have: if its handshake then fails, the node server must
    // know, as connect requests may be waiting for it.
    let mut accepted: Option<String> = None;
    let result = accept_steps(
        stream,
        server,
        (&mut hs, &mut input, &mut out),
        setup,
        &mut accepted,
    )
    .await;
    if let (Err(_), Some(peer)) = (&result, accepted) {
        let _ = server.cast(NodeServerMsg::AcceptEnded { peer });
    }
    result.map(|est| (est, input))
}

/// The acceptor's steps; `accepted` is set once the peer was answered `ok` or
/// `ok_simultaneous`.
async fn accept_steps(
    stream: &mut BoxedTransport,
    server: &ActorRef<NodeServerMsg>,
    (hs, input, out): (&mut Handshake, &mut BytesMut, &mut BytesMut),
    setup: std::time::Duration,
    accepted: &mut Option<String>,
) -> Result<Established, HandshakeError> {
    loop {
        match read_step(stream, hs, input, out, setup).await? {
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
                if matches!(status, Status::Ok | Status::OkSimultaneous) {
                    *accepted = Some(peer.name.clone());
                }
                hs.set_status(status, out)?;
                stream.write_all(out).await.map_err(|_| hs.closed())?;
                out.clear();
                if matches!(status, Status::Nok | Status::NotAllowed) {
                    return Err(HandshakeError::Refused(Refusal::Status(status)));
                }
            }
            Step::Established(est) => return Ok(est),
            Step::PeerAlive | Step::NeedMore => {
                return Err(HandshakeError::Misuse("acceptor step"))
            }
        }
    }
}

/// Runs the initiator's side against `expected` (the node dialled).
pub(crate) async fn connect_handshake(
    stream: &mut BoxedTransport,
    core: &Core,
    expected: &str,
    tls: bool,
) -> Result<(Established, BytesMut), HandshakeError> {
    let mut hs = Handshake::initiator(
        core.id.handshake_config(),
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
            core.id.config.setup_time,
        )
        .await?
        {
            Step::PeerAlive => {
                // The peer thinks it is still connected to us. If we have no session with it,
                // its connection is stale: tell it to replace it.
                let have = core.session(&Atom::new(expected)).is_some();
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
    if !crate::random::fill(&mut b) {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0x5eed);
        return t.rotate_left(13) ^ 0x9e37_79b9;
    }
    u32::from_ne_bytes(b)
}
