//! The simulator's in-memory network: nodes listen by name, a connection is two byte pipes,
//! and nothing written reaches its reader until the scheduler delivers it.
//!
//! Each direction of a connection is a [`Pipe`]: bytes written go *in flight*; the scheduler
//! moves them, in order and in chunks it chooses, to the *readable* side. A cut connection
//! drops what is in flight and fails both ends; a closed end (its stream dropped or shut
//! down) reaches the reader as end of file once what it wrote was delivered. Partitions cut
//! every connection across them and refuse connects until healed; a stalled pair keeps its
//! connections but delivers nothing, as a link that stops carrying packets.
//!
//! A pipe holds at most [`WINDOW`] bytes (in flight and readable together), as a TCP
//! connection's buffers do: a writer that finds it full waits until its reader reads, so a
//! stalled link or a reader that stops reading pushes back on the sender.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use node_server::error::{ConnectError, NodeError};
use node_server::network::{BoxFuture, BoxedTransport, Listener, Listening, NetContext, Network};

use super::lock;

/// The most bytes a pipe holds, in flight and readable together (about what the kernel
/// buffers of a loopback TCP connection hold).
pub const WINDOW: usize = 256 << 10;

/// One direction of a connection.
#[derive(Default)]
struct Pipe {
    /// Written, not yet delivered.
    in_flight: VecDeque<u8>,
    /// Delivered, not yet read.
    readable: VecDeque<u8>,
    /// The writer closed its end (end of file once everything is delivered).
    closed: bool,
    /// The reader's end is gone: writes fail.
    reader_gone: bool,
    reader: Option<Waker>,
    /// A writer waiting for room.
    writer: Option<Waker>,
}

impl Pipe {
    fn wake(&mut self) {
        if let Some(w) = self.reader.take() {
            w.wake();
        }
    }

    fn wake_writer(&mut self) {
        if let Some(w) = self.writer.take() {
            w.wake();
        }
    }

    fn room(&self) -> usize {
        WINDOW.saturating_sub(self.in_flight.len() + self.readable.len())
    }
}

/// A connection: `ends[0]` dialled `ends[1]`; `pipes[i]` carries what end `i` writes.
struct Conn {
    ends: [String; 2],
    pipes: [Pipe; 2],
    cut: bool,
    dropped: [bool; 2],
}

/// A node's listening slot.
struct Listen {
    /// Which listener owns the slot (a restarted node listens again under its name).
    generation: u64,
    queue: VecDeque<(BoxedTransport, String)>,
    waker: Option<Waker>,
}

/// Bytes waiting on one direction of a connection: `(connection, writer end, bytes)`.
pub type Pending = (u64, usize, usize);

/// The state of the whole network.
#[derive(Default)]
struct State {
    conns: BTreeMap<u64, Conn>,
    next_conn: u64,
    listening: BTreeMap<String, Listen>,
    next_generation: u64,
    creations: BTreeMap<String, u32>,
    /// Islands: two nodes can reach each other when every island holds both or neither.
    islands: Vec<BTreeSet<String>>,
    /// Pairs whose links carry nothing (sorted pair).
    stalled: BTreeSet<(String, String)>,
    /// Woken when anything is written, so an idle scheduler notices traffic.
    activity: Option<Waker>,
}

impl State {
    fn separated(&self, a: &str, b: &str) -> bool {
        self.islands.iter().any(|i| i.contains(a) != i.contains(b))
    }

    fn is_stalled(&self, a: &str, b: &str) -> bool {
        self.stalled.contains(&pair(a, b))
    }

    /// Cuts a connection: both ends fail, what was in flight is lost.
    fn cut(&mut self, id: u64) {
        if let Some(c) = self.conns.get_mut(&id) {
            c.cut = true;
            for p in &mut c.pipes {
                p.in_flight.clear();
                p.wake();
                p.wake_writer();
            }
        }
    }
}

fn pair(a: &str, b: &str) -> (String, String) {
    if a <= b {
        (a.to_owned(), b.to_owned())
    } else {
        (b.to_owned(), a.to_owned())
    }
}

/// The simulated network: cheap to clone, shared by every node of a run.
#[derive(Clone, Default)]
pub struct SimNet {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for SimNet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimNet").finish_non_exhaustive()
    }
}

impl SimNet {
    /// The network as node `node` sees it: give it to [`NodeConfig::network`].
    pub fn endpoint(&self, node: &str) -> Arc<dyn Network> {
        Arc::new(Endpoint {
            net: self.clone(),
            node: node.to_owned(),
        })
    }

    /// The directions with bytes in flight that may be delivered now, in a fixed order.
    pub fn pending(&self) -> Vec<Pending> {
        let s = lock(&self.state);
        s.conns
            .iter()
            .filter(|(_, c)| !c.cut && !s.is_stalled(&c.ends[0], &c.ends[1]))
            .flat_map(|(id, c)| {
                (0..2)
                    .filter(|&i| !c.pipes[i].in_flight.is_empty())
                    .map(move |i| (*id, i, c.pipes[i].in_flight.len()))
            })
            .collect()
    }

    /// Delivers up to `n` bytes that end `end` of connection `id` wrote.
    pub fn deliver(&self, id: u64, end: usize, n: usize) {
        let mut s = lock(&self.state);
        if let Some(c) = s.conns.get_mut(&id) {
            let p = &mut c.pipes[end];
            let n = n.min(p.in_flight.len());
            let moved: Vec<u8> = p.in_flight.drain(..n).collect();
            p.readable.extend(moved);
            p.wake();
        }
    }

    /// Cuts every connection between `a` and `b`; how many.
    pub fn cut_between(&self, a: &str, b: &str) -> usize {
        let mut s = lock(&self.state);
        let ids: Vec<u64> = s
            .conns
            .iter()
            .filter(|(_, c)| !c.cut && pair(&c.ends[0], &c.ends[1]) == pair(a, b))
            .map(|(id, _)| *id)
            .collect();
        for id in &ids {
            s.cut(*id);
        }
        ids.len()
    }

    /// Separates `island` from every other node: cuts the connections across and refuses
    /// connects across until [`SimNet::heal`].
    pub fn partition(&self, island: &[&str]) {
        let mut s = lock(&self.state);
        s.islands
            .push(island.iter().map(|n| (*n).to_owned()).collect());
        let across: Vec<u64> = s
            .conns
            .iter()
            .filter(|(_, c)| !c.cut && s.separated(&c.ends[0], &c.ends[1]))
            .map(|(id, _)| *id)
            .collect();
        for id in across {
            s.cut(id);
        }
    }

    /// Ends every partition.
    pub fn heal(&self) {
        lock(&self.state).islands.clear();
    }

    /// Stops (`true`) or restarts delivery between `a` and `b`, connections kept.
    pub fn stall(&self, a: &str, b: &str, stalled: bool) {
        let mut s = lock(&self.state);
        if stalled {
            s.stalled.insert(pair(a, b));
        } else {
            s.stalled.remove(&pair(a, b));
        }
    }

    /// Registers the waker to wake on the next write anywhere.
    pub fn on_activity(&self, waker: &Waker) {
        lock(&self.state).activity = Some(waker.clone());
    }

    /// How many connections are open (not cut, not closed by both ends).
    pub fn open_connections(&self) -> usize {
        lock(&self.state).conns.values().filter(|c| !c.cut).count()
    }

    fn listen(&self, node: &str) -> (u64, u32) {
        let mut s = lock(&self.state);
        s.next_generation += 1;
        let generation = s.next_generation;
        let creation = {
            let c = s.creations.entry(node.to_owned()).or_insert(0);
            *c += 1;
            *c
        };
        let old = s.listening.insert(
            node.to_owned(),
            Listen {
                generation,
                queue: VecDeque::new(),
                waker: None,
            },
        );
        drop(s);
        // Streams are dropped outside the lock: dropping one takes it.
        drop(old);
        (generation, creation)
    }

    fn connect(&self, from: &str, to: &str) -> Result<BoxedTransport, String> {
        let mut s = lock(&self.state);
        if s.separated(from, to) {
            return Err("partitioned".into());
        }
        if !s.listening.contains_key(to) {
            return Err("connection refused".into());
        }
        let id = s.next_conn;
        s.next_conn += 1;
        s.conns.insert(
            id,
            Conn {
                ends: [from.to_owned(), to.to_owned()],
                pipes: [Pipe::default(), Pipe::default()],
                cut: false,
                dropped: [false; 2],
            },
        );
        let server: BoxedTransport = Box::new(SimStream {
            net: self.clone(),
            id,
            end: 1,
        });
        let slot = s.listening.get_mut(to).expect("checked above");
        slot.queue.push_back((server, from.to_owned()));
        if let Some(w) = slot.waker.take() {
            w.wake();
        }
        Ok(Box::new(SimStream {
            net: self.clone(),
            id,
            end: 0,
        }))
    }
}

/// One node's view of the network.
struct Endpoint {
    net: SimNet,
    node: String,
}

impl Network for Endpoint {
    fn listen<'a>(
        &'a self,
        node: &'a str,
        _ctx: NetContext<'a>,
    ) -> BoxFuture<'a, Result<Listening, NodeError>> {
        Box::pin(async move {
            let (generation, creation) = self.net.listen(node);
            Ok(Listening {
                listener: Box::new(SimListener {
                    net: self.net.clone(),
                    node: node.to_owned(),
                    generation,
                }),
                port: 0,
                creation,
                keep: Box::new(()),
            })
        })
    }

    fn connect<'a>(
        &'a self,
        node: &'a str,
        _addr: Option<SocketAddr>,
        _ctx: NetContext<'a>,
    ) -> BoxFuture<'a, Result<BoxedTransport, ConnectError>> {
        Box::pin(async move {
            self.net
                .connect(&self.node, node)
                .map_err(|reason| ConnectError::Unreachable {
                    node: node.to_owned(),
                    reason,
                })
        })
    }
}

/// A node's listener on the simulated network.
struct SimListener {
    net: SimNet,
    node: String,
    generation: u64,
}

impl Listener for SimListener {
    fn accept(&mut self) -> BoxFuture<'_, io::Result<(BoxedTransport, String)>> {
        Box::pin(std::future::poll_fn(move |cx| {
            let mut s = lock(&self.net.state);
            match s.listening.get_mut(&self.node) {
                Some(l) if l.generation == self.generation => match l.queue.pop_front() {
                    Some(incoming) => Poll::Ready(Ok(incoming)),
                    None => {
                        l.waker = Some(cx.waker().clone());
                        Poll::Pending
                    }
                },
                _ => Poll::Ready(Err(io::Error::other("no longer listening"))),
            }
        }))
    }
}

impl Drop for SimListener {
    fn drop(&mut self) {
        let mut s = lock(&self.net.state);
        let mine = s
            .listening
            .get(&self.node)
            .is_some_and(|l| l.generation == self.generation);
        let old = if mine {
            s.listening.remove(&self.node)
        } else {
            None
        };
        drop(s);
        drop(old);
    }
}

/// One end of a simulated connection.
struct SimStream {
    net: SimNet,
    id: u64,
    end: usize,
}

impl AsyncRead for SimStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let mut s = lock(&self.net.state);
        let Some(c) = s.conns.get_mut(&self.id) else {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        };
        let cut = c.cut;
        let p = &mut c.pipes[1 - self.end];
        if !p.readable.is_empty() {
            let n = p.readable.len().min(buf.remaining());
            let (a, b) = p.readable.as_slices();
            let from_a = n.min(a.len());
            buf.put_slice(&a[..from_a]);
            buf.put_slice(&b[..n - from_a]);
            p.readable.drain(..n);
            p.wake_writer();
            return Poll::Ready(Ok(()));
        }
        if cut {
            return Poll::Ready(Err(io::ErrorKind::ConnectionReset.into()));
        }
        if p.closed && p.in_flight.is_empty() {
            return Poll::Ready(Ok(()));
        }
        p.reader = Some(cx.waker().clone());
        Poll::Pending
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let mut s = lock(&self.net.state);
        let Some(c) = s.conns.get_mut(&self.id) else {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        };
        let p = &mut c.pipes[self.end];
        if c.cut || p.reader_gone || p.closed {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        let n = data.len().min(p.room());
        if n == 0 && !data.is_empty() {
            p.writer = Some(cx.waker().clone());
            return Poll::Pending;
        }
        p.in_flight.extend(&data[..n]);
        if let Some(w) = s.activity.take() {
            w.wake();
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut s = lock(&self.net.state);
        if let Some(c) = s.conns.get_mut(&self.id) {
            let p = &mut c.pipes[self.end];
            p.closed = true;
            p.wake();
        }
        Poll::Ready(Ok(()))
    }
}

impl Drop for SimStream {
    fn drop(&mut self) {
        let mut s = lock(&self.net.state);
        let Some(c) = s.conns.get_mut(&self.id) else {
            return;
        };
        c.dropped[self.end] = true;
        c.pipes[self.end].closed = true;
        c.pipes[self.end].wake();
        c.pipes[1 - self.end].reader_gone = true;
        c.pipes[1 - self.end].in_flight.clear();
        c.pipes[1 - self.end].readable.clear();
        c.pipes[1 - self.end].wake_writer();
        if c.dropped == [true, true] {
            s.conns.remove(&self.id);
        }
    }
}
