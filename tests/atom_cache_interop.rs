//! Real Erlang/OTP 25 accepts messages we send through the sender atom cache
//! (`SendForm::AtomCache`: `131, 68` headers with new entries and references).
//!
//! A raw client built from the public sans-IO [`Handshake`] connects (hidden) to an `erl -sname`
//! node, then sends REG_SENDs and a SEND in the atom cache form: repeated messages (cached
//! entries), a gen_server-call shape, more than 255 atoms in one message (inline fallback), a
//! long UTF-8 atom (LongAtoms), and 3000 distinct atoms over several messages, which forces
//! entries to be replaced on hash collisions, then reuses the first batch; then pre-encoded
//! payloads behind a cached control (`encode_message_as_raw`). A process registered
//! in the Erlang node stores what it receives in an ETS table; the test reads it back as
//! `term_to_binary` and compares each message with what was sent, and checks the connection is
//! still up (OTP drops a connection on a header it cannot read).

use std::path::Path;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use node_server::dist::control::Control;
use node_server::dist::handshake::{Handshake, HandshakeConfig, Step};
use node_server::dist::packet::{encode_message_as, encode_message_as_raw, SendForm};
use node_server::dist::DistFlags;
use node_server::etf::{Atom, Fun, Map, Pid, Reference, Term};
use testkit::ErlPeer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const COOKIE: &str = "atomcachecookie";
const STEP: Duration = Duration::from_secs(10);

/// Runs the initiator's handshake over `tcp`; returns the negotiated flags and the peer's
/// creation.
async fn handshake(
    tcp: &mut TcpStream,
    our_name: &str,
    creation: u32,
    peer: &str,
) -> (DistFlags, u32) {
    let config = HandshakeConfig {
        node_name: our_name.to_owned(),
        cookie: COOKIE.as_bytes().to_vec(),
        flags: DistFlags::OFFERED,
        required: DistFlags::MANDATORY_25,
        creation,
    };
    let mut hs = Handshake::initiator(config, Some(peer.to_owned()), 0x1234_5678);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    hs.start(&mut out).unwrap();
    loop {
        let step = hs.advance(&mut input, &mut out).expect("handshake step");
        if !out.is_empty() {
            tcp.write_all(&out).await.unwrap();
            out.clear();
        }
        match step {
            Step::NeedMore => {
                let n = tokio::time::timeout(STEP, tcp.read_buf(&mut input))
                    .await
                    .expect("handshake reply in time")
                    .unwrap();
                assert!(n > 0, "erl closed the connection during the handshake");
            }
            Step::Established(est) => return (est.flags, est.peer.creation),
            other => panic!("unexpected step {other:?}"),
        }
    }
}

fn eval(peer: &mut ErlPeer, expr: &str) -> String {
    let reply = peer.request(expr);
    match reply.strip_prefix("ok ") {
        Some(v) => v.to_owned(),
        None => panic!("{expr} -> {reply}\n{}", peer.diagnostics()),
    }
}

/// `<0.87.0>` -> (87, 0).
fn parse_local_pid(text: &str) -> (u32, u32) {
    let parts: Vec<u32> = text
        .trim_matches(['<', '>'])
        .split('.')
        .map(|p| p.parse().unwrap())
        .collect();
    assert_eq!(parts.len(), 3, "{text}");
    (parts[1], parts[2])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn erlang_accepts_atom_cache_encoding() {
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let beams = testkit::compile_erlang(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/erlang/eval_peer.erl"
    )));
    let epmd = epmd::ServerConfig::new()
        .port(0)
        .start()
        .await
        .expect("epmd starts");
    let os_pid = std::process::id();
    let mut erlang = ErlPeer::builder(&erl, "eval_peer")
        .code_path(&beams)
        .env("ERL_EPMD_PORT", epmd.port().to_string())
        .args(["-sname", &format!("acerl{os_pid}"), "-setcookie", COOKIE])
        .start()
        .expect("erl starts");
    let erl_name = eval(&mut erlang, "node()");
    let (short, host) = erl_name.split_once('@').expect("name@host");
    let sink = eval(
        &mut erlang,
        "begin ets:new(acsink, [named_table, public, ordered_set]), \
         Loop = fun L(N) -> receive M -> ets:insert(acsink, {N, M}), L(N + 1) end end, \
         P = spawn(fun() -> Loop(0) end), register(sink, P), P end",
    );
    let (sink_id, sink_serial) = parse_local_pid(&sink);

    let info = epmd::Client::new("localhost", epmd.port())
        .timeout(STEP)
        .port_please(short)
        .await
        .expect("epmd answers")
        .expect("erl registered");
    let mut tcp = TcpStream::connect(("127.0.0.1", info.port))
        .await
        .expect("connect to erl");
    tcp.set_nodelay(true).unwrap();
    let our_name = format!("acrust{os_pid}@{host}");
    let creation = 0x5eed_0001;
    let (flags, peer_creation) = handshake(&mut tcp, &our_name, creation, &erl_name).await;
    assert!(
        flags.contains(DistFlags::DIST_HDR_ATOM_CACHE),
        "OTP offers the atom cache: {flags:?}"
    );

    // What we send.
    let me = Pid {
        node: Atom::new(&our_name),
        id: 1,
        serial: 0,
        creation,
    };
    let sink_pid = Pid {
        node: Atom::new(&erl_name),
        id: sink_id,
        serial: sink_serial,
        creation: peer_creation,
    };
    let hello = Term::tuple(vec![
        Term::atom("hello"),
        Term::Int(42),
        Term::binary(&b"payload-0123456789"[..]),
    ]);
    let alias = Reference::new(Atom::new(&our_name), creation, &[7, 8, 9]).unwrap();
    let gen_call = Term::tuple(vec![
        Term::atom("$gen_call"),
        Term::tuple(vec![
            Term::Pid(me.clone()),
            Term::improper_list(vec![Term::atom("alias")], Term::from(alias)),
        ]),
        Term::tuple(vec![
            Term::atom("put"),
            Term::atom("key"),
            Term::atom("value"),
        ]),
    ]);
    let many = |prefix: &str, n: usize| {
        Term::list(
            (0..n)
                .map(|i| Term::atom(format!("{prefix}_{i}")))
                .collect::<Vec<_>>(),
        )
    };
    let mixed = Term::tuple(vec![
        Term::from(Map::from_entries(vec![
            (Term::atom("name"), Term::atom("joe")),
            (
                Term::atom("tags"),
                Term::list(vec![
                    Term::atom("a"),
                    Term::atom("b"),
                    Term::atom("Capital"),
                ]),
            ),
            (
                Term::Int(1),
                Term::tuple(vec![Term::atom("ok"), Term::atom("true")]),
            ),
        ])),
        Term::from(Fun::Export {
            module: Atom::new("erlang"),
            function: Atom::new("node"),
            arity: 0,
        }),
        Term::atom("ж".repeat(200)),
        Term::atom("ünïcødé"),
        Term::atom(""),
    ]);
    let mut payloads = vec![
        hello.clone(),
        hello.clone(),
        gen_call.clone(),
        gen_call,
        many("over255", 300),
        mixed.clone(),
        mixed,
    ];
    // 3000 distinct atoms in 12 messages: more than the 2048 slots, so entries get replaced.
    for batch in 0..12 {
        payloads.push(Term::list(
            (0..250)
                .map(|i| Term::atom(format!("ac_{}", batch * 250 + i)))
                .collect::<Vec<_>>(),
        ));
    }
    payloads.push(payloads[7].clone()); // the first batch again: hits and re-entries
    payloads.push(hello.clone());

    let mut form = SendForm::with_atom_cache(flags);
    assert!(matches!(form, SendForm::AtomCache(_)));
    let mut out = BytesMut::new();
    let reg_send = Control::RegSend {
        from: me.clone(),
        to_name: Atom::new("sink"),
    };
    for p in &payloads {
        encode_message_as(&mut out, &mut form, &reg_send, Some(p));
    }
    // One by pid too.
    let by_pid = Term::tuple(vec![Term::atom("by_pid"), hello]);
    encode_message_as(
        &mut out,
        &mut form,
        &Control::Send { to: sink_pid },
        Some(&by_pid),
    );
    payloads.push(by_pid);
    // Pre-encoded payloads (as typed messages arrive at the session): the control through the
    // same cache, the payload's atoms inline, in one header message.
    for p in [payloads[2].clone(), payloads[5].clone()] {
        encode_message_as_raw(&mut out, &mut form, &reg_send, Some(&p.encode()));
        payloads.push(p);
    }
    tcp.write_all(&out).await.unwrap();
    tcp.flush().await.unwrap();

    // Wait for the sink to have them all.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let n: usize = eval(&mut erlang, "ets:info(acsink, size)").parse().unwrap();
        if n == payloads.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the sink got {n} of {} messages\n{}",
            payloads.len(),
            erlang.diagnostics()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let seen = eval(&mut erlang, "nodes(hidden)");
    assert!(
        seen.contains(&our_name),
        "the connection survived: {seen}\n{}",
        erlang.diagnostics()
    );
    let listed = eval(
        &mut erlang,
        "[binary:encode_hex(term_to_binary(M)) || {_, M} <- ets:tab2list(acsink)]",
    );
    let received: Vec<Term> = listed
        .split("<<\"")
        .skip(1)
        .map(|chunk| {
            let hex = chunk.split("\">>").next().unwrap();
            Term::decode_slice(&testkit::from_hex(hex).expect("hex")).expect("term")
        })
        .collect();
    assert_eq!(received.len(), payloads.len());
    for (i, (got, sent)) in received.iter().zip(&payloads).enumerate() {
        assert_eq!(
            got,
            sent,
            "message {i} differs: {}",
            testkit::truncate(&got.to_string(), 300)
        );
    }
    drop(tcp);
    let _ = erlang.shutdown(Duration::from_secs(10));
    epmd.stop().await;
}
