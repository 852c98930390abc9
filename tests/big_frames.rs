//! Big frames between two nodes of ours in one process: no Erlang needed.
//!
//! A session's reader reads frames of 64 KiB and more into buffers of their own and reuses a
//! buffer once nothing refers to it (the binaries decoded from a frame are slices of it). This
//! checks the property that reuse must not break: a binary the receiver still holds keeps its
//! bytes while later frames arrive, and every message arrives whole and in order, whatever
//! its size relative to the threshold.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use node_server::etf::Term;
use node_server::remote::{Raw, RemoteTarget};
use node_server::{client_connect, Node, NodeConfig};
use testkit::{forwarder, Epmd};

/// How long any awaited event may take before the test fails.
const DEADLINE: Duration = Duration::from_secs(30);

/// Payload sizes around the reader's 64 KiB threshold and well beyond it, small ones between.
const SIZES: [usize; 11] = [
    0,
    100,
    65_000,
    65_536,
    65_600,
    1 << 20,
    100,
    (3 << 20) + 7,
    200_000,
    70_000,
    10,
];

/// Deterministic bytes for message `i`.
fn payload(i: usize, n: usize) -> Vec<u8> {
    testkit::pseudo_random(
        n,
        0x9e37_79b9_7f4a_7c15 ^ (i as u64).wrapping_mul(0x2545_f491_4f6c_dd1d),
    )
}

async fn start(name: &str, epmd_port: u16) -> Node {
    tokio::time::timeout(
        DEADLINE,
        NodeConfig::new(format!("{name}_{}", std::process::id()))
            .cookie("big_frames_cookie")
            .epmd("localhost", epmd_port)
            .listen(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))
            .start(),
    )
    .await
    .expect("node starts in time")
    .expect("node starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_and_small_messages_arrive_whole_in_order_and_held_ones_keep_their_bytes() {
    testkit::init_logging();
    // Both nodes register with this EPMD.
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let a = start("big_a", epmd_port).await;
    let b = start("big_b", epmd_port).await;
    tokio::time::timeout(DEADLINE, client_connect(&a, b.name()))
        .await
        .expect("connects in time")
        .expect("connects");

    let (sink, mut inbox) = forwarder::<Raw>().await;
    let target = RemoteTarget::Pid(b.pid_of(&sink));
    let sizes: Vec<usize> = (0..4).flat_map(|_| SIZES).collect();
    let send = |i: usize| {
        a.send(
            &target,
            Term::tuple(vec![
                Term::Int(i as i64),
                Term::Binary(Bytes::from(payload(i, sizes[i]))),
            ]),
        )
    };
    // Every other big binary stays held while the rest arrive and are dropped.
    let mut held = Vec::new();
    let mut receive = async |i: usize| {
        let n = sizes[i];
        let Raw(term) = tokio::time::timeout(DEADLINE, inbox.recv())
            .await
            .unwrap_or_else(|_| panic!("message {i} of {} in time", sizes.len()))
            .expect("the sink is alive");
        let Term::Tuple(fields) = &term else {
            panic!("message {i}: not a tuple: {term}");
        };
        assert_eq!(fields[0], Term::Int(i as i64), "message {i} out of order");
        let Term::Binary(data) = &fields[1] else {
            panic!("message {i}: no binary");
        };
        assert_eq!(data.len(), n, "message {i}: length");
        assert!(data[..] == payload(i, n)[..], "message {i}: bytes differ");
        if n >= 64 << 10 && i.is_multiple_of(2) {
            held.push((i, data.clone()));
        }
    };
    // Half in lockstep, so a dropped message's buffer is free when the next frame comes,
    // then the rest in one burst.
    let half = sizes.len() / 2;
    for i in 0..half {
        send(i);
        receive(i).await;
    }
    for i in half..sizes.len() {
        send(i);
    }
    for i in half..sizes.len() {
        receive(i).await;
    }
    assert!(held.len() >= 4, "the test holds some big binaries");
    for (i, data) in &held {
        assert!(
            data[..] == payload(*i, data.len())[..],
            "held binary of message {i} was overwritten"
        );
    }
    a.shutdown().await;
    b.shutdown().await;
}
