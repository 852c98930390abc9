//! The reader task: frames in, ticks noticed, packets decoded and dispatched in place, so a
//! message reaches its actor without another hop; `net_ticktime` of silence ends the session.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use ractor::ActorRef;
use tokio::io::AsyncReadExt;

use super::dispatch::{Dispatcher, Inbound};
use super::{BoxedTransport, SessionMsg};
use crate::dist::frame_pool::FramePool;
use crate::dist::packet::{self, Frame, PacketDecoder};
use crate::send_queue::ConnStats;

pub(super) async fn reader_task<N: Inbound>(
    mut r: tokio::io::ReadHalf<BoxedTransport>,
    mut input: BytesMut,
    mut decoder: PacketDecoder,
    mut dispatcher: Dispatcher<N>,
    session: ActorRef<SessionMsg>,
    ticktime: Duration,
    max_frame: usize,
) {
    let counters = dispatcher.counters();
    // The connection's own counters (see `crate::send_queue::ConnStats`).
    let queue = dispatcher.queue().clone();
    let stats = &queue.stats;
    crate::ops::Counters::add(&counters.bytes_in, input.len() as u64);
    ConnStats::add(&stats.bytes_in, input.len() as u64);
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
        ConnStats::add(&stats.messages_in, received);
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
                ConnStats::add(&stats.bytes_in, n as u64);
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
    ConnStats::add(&stats.messages_in, received);
    let _ = session.cast(SessionMsg::Closed(reason));
}

/// Decodes one data frame and dispatches the message in it; how many messages that was (a
/// fragment of one is none yet), or why the connection ends.
fn take_frame<N: Inbound>(
    decoder: &mut PacketDecoder,
    dispatcher: &mut Dispatcher<N>,
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
