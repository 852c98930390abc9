//! Sending with and without the atom cache: encode time and bytes per message, our decode
//! time, and (when `erl` is installed) how fast a real OTP 25 node takes each form in.
//!
//! ```text
//! cargo run --release --example atom_cache_bench [-- --iters N] [--otp-msgs N] [--no-otp]
//! ```
//!
//! Two messages, as a node sends them all the time:
//! - `send`: SEND `{2, '', Pid}` + `{hello, 42, <<"payload-0123456789">>}`;
//! - `call`: REG_SEND `{6, From, '', kv_store}` +
//!   `{'$gen_call', {From, [alias | Ref]}, {put, key, value}}`.
//!
//! Each in five forms:
//! - pass-through (`112`), what peers without `DIST_HDR_ATOM_CACHE` get;
//! - the header with no cache references (`131, 68, 0`), what sessions send today, with the
//!   payload encoded per message (a `Term`) or already encoded (`raw`: ETF bytes, as typed
//!   messages reach the session);
//! - the atom cache, warm (every atom sent once before: one byte per atom in the header, two in
//!   the terms), for control and payload, or for the control only in front of a raw payload.
//!
//! Encode and decode are timed in a loop (best of 5 rounds of `--iters`); the raw forms' encode
//! time leaves out encoding the payload, done earlier by whoever serialized it. Bytes are the
//! whole frame with its 4-byte length, for the second message and (in brackets) the first.
//!
//! With `erl` on `PATH`, the OTP part connects a raw hidden client (the public sans-IO
//! handshake) to an `erl -sname` node and, for the header forms (OTP refuses pass-through once
//! the header is negotiated; the raw header form is byte for byte the header form), writes
//! `--otp-msgs` REG_SENDs of each shape to a registered process that counts them. It reports
//! OTP's receive cost per message: the time from the first to the last message as the Erlang
//! process saw them, and the CPU time the Erlang node used meanwhile
//! (`erlang:statistics(runtime)`, schedulers without busy-waiting so that spinning is not
//! counted); best of three rounds after a warm-up round, forms interleaved, one cache shared by
//! the cache forms as on a real connection. The bytes are encoded before the clock starts and
//! written in large chunks, so our side is not what is measured.

use std::hint::black_box;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use node_server::dist::control::Control;
use node_server::dist::handshake::{Handshake, HandshakeConfig, Step};
use node_server::dist::packet::{
    encode_message_as, encode_message_as_raw, next_frame, Frame, PacketDecoder, SendForm,
};
use node_server::dist::DistFlags;
use node_server::etf::{Atom, DecodeOptions, Pid, Reference, Term};
use testkit::ErlPeer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Options {
    iters: u32,
    otp_msgs: usize,
    otp: bool,
}

fn parse_options() -> Result<Options, String> {
    let mut o = Options {
        iters: 200_000,
        otp_msgs: 200_000,
        otp: true,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--iters" => o.iters = value()?.parse().map_err(|e| format!("--iters: {e}"))?,
            "--otp-msgs" => {
                o.otp_msgs = value()?.parse().map_err(|e| format!("--otp-msgs: {e}"))?
            }
            "--no-otp" => o.otp = false,
            other => return Err(format!("unknown option {other}")),
        }
    }
    if o.iters == 0 || o.otp_msgs == 0 {
        return Err("counts must be at least 1".into());
    }
    Ok(o)
}

/// The two message shapes, addressed from `me` to `peer_node`.
fn shapes(me: &Pid, to: &Pid) -> Vec<(&'static str, Control, Term)> {
    let hello = Term::tuple(vec![
        Term::atom("hello"),
        Term::Int(42),
        Term::binary(&b"payload-0123456789"[..]),
    ]);
    let alias = Reference::new(me.node.clone(), me.creation, &[0x1234, 0x5678, 0x9abc])
        .expect("three words make a reference");
    let call = Term::tuple(vec![
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
    vec![
        ("send", Control::Send { to: to.clone() }, hello),
        (
            "call",
            Control::RegSend {
                from: me.clone(),
                to_name: Atom::new("kv_store"),
            },
            call,
        ),
    ]
}

/// The ways of sending: the term forms encode control and payload per message; the raw forms
/// take the payload already encoded (ETF with 131, as typed messages reach the session) and
/// encode the control only.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    PassThrough,
    Header,
    HeaderRaw,
    Cache,
    CacheRaw,
}

impl Form {
    const ALL: [Form; 5] = [
        Form::PassThrough,
        Form::Header,
        Form::HeaderRaw,
        Form::Cache,
        Form::CacheRaw,
    ];

    fn label(self) -> &'static str {
        match self {
            Form::PassThrough => "pass-through (112)",
            Form::Header => "header, no cache [today]",
            Form::HeaderRaw => "header, no cache, raw payload [today]",
            Form::Cache => "atom cache, warm",
            Form::CacheRaw => "atom cache (control), raw payload",
        }
    }

    fn send_form(self) -> SendForm {
        match self {
            Form::PassThrough => SendForm::PassThrough,
            Form::Header | Form::HeaderRaw => SendForm::for_flags(DistFlags::DIST_HDR_ATOM_CACHE),
            Form::Cache | Form::CacheRaw => {
                SendForm::with_atom_cache(DistFlags::DIST_HDR_ATOM_CACHE)
            }
        }
    }

    /// Appends one message in this form; `raw` is `payload` encoded.
    fn encode(
        self,
        out: &mut BytesMut,
        form: &mut SendForm,
        control: &Control,
        payload: &Term,
        raw: &[u8],
    ) {
        match self {
            Form::HeaderRaw | Form::CacheRaw => {
                encode_message_as_raw(out, form, control, Some(raw))
            }
            _ => encode_message_as(out, form, control, Some(payload)),
        }
    }
}

/// Best-of-5 nanoseconds per call of `f`, each round `iters` calls.
fn time_ns(iters: u32, mut f: impl FnMut()) -> f64 {
    for _ in 0..iters / 10 + 1 {
        f();
    }
    (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..iters {
                f();
            }
            start.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .fold(f64::INFINITY, f64::min)
}

fn frame_body(buf: &mut BytesMut) -> Bytes {
    match next_frame(buf, 1 << 20) {
        Ok(Some(Frame::Data(b))) => b,
        other => panic!("expected a frame, got {other:?}"),
    }
}

struct Row {
    shape: &'static str,
    form: Form,
    bytes: usize,
    cold_bytes: usize,
    encode_ns: f64,
    decode_ns: f64,
}

fn measure_codec(iters: u32) -> Vec<Row> {
    let me = Pid {
        node: Atom::new("bench@localhost"),
        id: 85,
        serial: 0,
        creation: 1_700_000_001,
    };
    let to = Pid {
        node: Atom::new("erl@localhost"),
        id: 112,
        serial: 0,
        creation: 1_700_000_002,
    };
    let mut rows = Vec::new();
    for (shape, control, payload) in shapes(&me, &to) {
        let raw = payload.encode();
        for form in Form::ALL {
            let mut send_form = form.send_form();
            let mut buf = BytesMut::with_capacity(4096);
            // The first message (cold cache) and the second (warm) as the wire sees them.
            form.encode(&mut buf, &mut send_form, &control, &payload, &raw);
            let cold_bytes = buf.len();
            let cold = frame_body(&mut buf);
            form.encode(&mut buf, &mut send_form, &control, &payload, &raw);
            let bytes = buf.len();
            let warm = frame_body(&mut buf);
            let encode_ns = time_ns(iters, || {
                buf.clear();
                form.encode(
                    &mut buf,
                    &mut send_form,
                    &control,
                    black_box(&payload),
                    black_box(&raw),
                );
                black_box(&buf);
            });
            let mut decoder = PacketDecoder::new(DecodeOptions::new(), 1 << 20);
            let first = decoder.decode(cold).expect("decodes").expect("whole");
            assert_eq!(first.payload.as_ref(), Some(&payload));
            let again = decoder
                .decode(warm.clone())
                .expect("decodes")
                .expect("whole");
            assert_eq!(again.payload.as_ref(), Some(&payload));
            let decode_ns = time_ns(iters, || {
                black_box(decoder.decode(black_box(warm.clone())).ok());
            });
            rows.push(Row {
                shape,
                form,
                bytes,
                cold_bytes,
                encode_ns,
                decode_ns,
            });
        }
    }
    rows
}

fn print_codec(rows: &[Row]) {
    println!(
        "{:<6} {:<38} {:>9} {:>11} {:>10} {:>11}",
        "msg", "form", "bytes/msg", "(1st msg)", "encode ns", "our decode"
    );
    for r in rows {
        println!(
            "{:<6} {:<38} {:>9} {:>11} {:>10.1} {:>11.1}",
            r.shape,
            r.form.label(),
            r.bytes,
            r.cold_bytes,
            r.encode_ns,
            r.decode_ns
        );
    }
}

const COOKIE: &str = "atomcachebench";

/// Measured rounds of the OTP part (after one warm-up round); the best of them is printed.
const OTP_ROUNDS: usize = 3;

/// The Erlang side: a registered `counter` that, after `{reset, N}`, notes the monotonic time
/// and the node's runtime at the first message and at the `N`th, and stores the differences
/// in the ETS table `bench` as `{done, WallMicros, CpuMillis}`. Its queue is off-heap, so a
/// backlog does not make it garbage-collect the queued messages over and over.
const COUNTER: &str = "begin \
    Loop = fun L(N, Target, T0, R0) -> \
        receive \
            {reset, T} -> L(0, T, undefined, undefined); \
            _ when N =:= 0 -> \
                {R, _} = erlang:statistics(runtime), \
                L(1, Target, erlang:monotonic_time(microsecond), R); \
            _ when N + 1 =:= Target -> \
                T1 = erlang:monotonic_time(microsecond), \
                {R1, _} = erlang:statistics(runtime), \
                ets:insert(bench, {done, T1 - T0, R1 - R0}), \
                L(N + 1, Target, T0, R0); \
            _ -> L(N + 1, Target, T0, R0) \
        end \
    end, \
    ets:new(bench, [named_table, public]), \
    register(counter, spawn_opt(fun() -> Loop(0, 0, undefined, undefined) end, \
    [{message_queue_data, off_heap}])), ok end";

fn eval(peer: &mut ErlPeer, expr: &str) -> Result<String, String> {
    let reply = peer.request(expr);
    reply
        .strip_prefix("ok ")
        .map(str::to_owned)
        .ok_or_else(|| format!("{expr} -> {reply}\n{}", peer.diagnostics()))
}

async fn handshake(
    tcp: &mut TcpStream,
    our_name: &str,
    creation: u32,
    peer: &str,
) -> Result<(DistFlags, u32), String> {
    let config = HandshakeConfig {
        node_name: our_name.to_owned(),
        cookie: COOKIE.as_bytes().to_vec(),
        flags: DistFlags::OFFERED,
        required: DistFlags::MANDATORY_25,
        creation,
    };
    let mut hs = Handshake::initiator(config, Some(peer.to_owned()), 0x0bad_cafe);
    let mut input = BytesMut::new();
    let mut out = BytesMut::new();
    hs.start(&mut out).map_err(|e| e.to_string())?;
    loop {
        let step = hs
            .advance(&mut input, &mut out)
            .map_err(|e| e.to_string())?;
        if !out.is_empty() {
            tcp.write_all(&out).await.map_err(|e| e.to_string())?;
            out.clear();
        }
        match step {
            Step::NeedMore => {
                let n = tokio::time::timeout(Duration::from_secs(10), tcp.read_buf(&mut input))
                    .await
                    .map_err(|_| "handshake timed out".to_owned())?
                    .map_err(|e| e.to_string())?;
                if n == 0 {
                    return Err("erl closed the connection during the handshake".into());
                }
            }
            Step::Established(est) => return Ok((est.flags, est.peer.creation)),
            other => return Err(format!("unexpected handshake step {other:?}")),
        }
    }
}

struct OtpRow {
    shape: &'static str,
    form: Form,
    wall_us_per_msg: f64,
    cpu_us_per_msg: f64,
}

async fn measure_otp(erl: PathBuf, msgs: usize) -> Result<Vec<OtpRow>, String> {
    let beams = testkit::compile_erlang(&PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/erlang/eval_peer.erl"
    )));
    let epmd = epmd::ServerConfig::new()
        .port(testkit::free_port())
        .start()
        .await
        .map_err(|e| format!("epmd: {e}"))?;
    let os_pid = std::process::id();
    let mut erlang = ErlPeer::builder(&erl, "eval_peer")
        .code_path(&beams)
        .env("ERL_EPMD_PORT", epmd.port().to_string())
        .args(["-sname", &format!("acbench{os_pid}"), "-setcookie", COOKIE])
        // No scheduler busy-waiting, so that the runtime counts work, not spinning.
        .args(["+sbwt", "none", "+sbwtdcpu", "none", "+sbwtdio", "none"])
        .reply_timeout(Duration::from_secs(120))
        .start()
        .map_err(|e| e.to_string())?;
    let erl_name = eval(&mut erlang, "node()")?;
    let (short, host) = erl_name
        .split_once('@')
        .ok_or_else(|| format!("odd node name {erl_name}"))?;
    eval(&mut erlang, COUNTER)?;
    let info = epmd::Client::new("localhost", epmd.port())
        .timeout(Duration::from_secs(10))
        .port_please(short)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("erl did not register")?;
    let mut tcp = TcpStream::connect(("127.0.0.1", info.port))
        .await
        .map_err(|e| e.to_string())?;
    let _ = tcp.set_nodelay(true);
    let our_name = format!("acbenchrs{os_pid}@{host}");
    let creation = 0x0ace_0001;
    let (flags, peer_creation) = handshake(&mut tcp, &our_name, creation, &erl_name).await?;
    if !flags.contains(DistFlags::DIST_HDR_ATOM_CACHE) {
        return Err(format!("the peer did not take the atom cache: {flags:?}"));
    }
    // Drain whatever the node sends us (ticks), so it never blocks on us.
    let (mut rd, mut wr) = tcp.into_split();
    let drain = tokio::spawn(async move {
        let mut sink = vec![0u8; 4096];
        while matches!(rd.read(&mut sink).await, Ok(n) if n > 0) {}
    });
    let me = Pid {
        node: Atom::new(&our_name),
        id: 85,
        serial: 0,
        creation,
    };
    let peer = Pid {
        node: Atom::new(&erl_name),
        id: 1,
        serial: 0,
        creation: peer_creation,
    };
    let counter = Control::RegSend {
        from: me.clone(),
        to_name: Atom::new("counter"),
    };
    // One cache for the connection, used by every message in the cache forms.
    let mut cache_form = Form::Cache.send_form();
    let mut rows: Vec<OtpRow> = Vec::new();
    for round in 0..=OTP_ROUNDS {
        for (shape, _, payload) in shapes(&me, &peer) {
            // Pass-through is for peers without DIST_HDR_ATOM_CACHE: OTP refuses it ("message
            // from incompatible erlang") once the header has been negotiated.
            // The raw header form writes the same bytes as the header form.
            let raw = payload.encode();
            for form in [Form::Header, Form::Cache, Form::CacheRaw] {
                let mut plain;
                let send_form = match form {
                    Form::Cache | Form::CacheRaw => &mut cache_form,
                    _ => {
                        plain = form.send_form();
                        &mut plain
                    }
                };
                let target = Term::tuple(vec![Term::atom("reset"), Term::Int(msgs as i64)]);
                eval(&mut erlang, "ets:delete_all_objects(bench)")?;
                let mut out = BytesMut::new();
                // The reset goes in the same form, ahead of the measured messages.
                encode_message_as(&mut out, send_form, &counter, Some(&target));
                for _ in 0..msgs {
                    form.encode(&mut out, send_form, &counter, &payload, &raw);
                }
                if let Err(e) = wr.write_all(&out).await {
                    return Err(format!("writing to erl: {e}\n{}", erlang.diagnostics()));
                }
                let deadline = Instant::now() + Duration::from_secs(60);
                let done = loop {
                    let r = eval(&mut erlang, "ets:lookup(bench, done)")?;
                    if r != "[]" {
                        break r;
                    }
                    if Instant::now() > deadline {
                        let state = eval(
                            &mut erlang,
                            "{nodes(hidden), erlang:process_info(whereis(counter), \
                             [message_queue_len, current_function, status])}",
                        );
                        return Err(format!(
                            "OTP did not count {msgs} messages in time: {state:?}\n{}",
                            erlang.diagnostics()
                        ));
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                };
                // [{done,WallUs,CpuMs}]
                let nums: Vec<f64> = done
                    .trim_matches(['[', ']', '{', '}'])
                    .split(',')
                    .skip(1)
                    .map(|n| n.parse().unwrap_or(f64::NAN))
                    .collect();
                let (wall, cpu) = (
                    nums[0] / (msgs - 1) as f64,
                    nums[1] * 1000.0 / (msgs - 1) as f64,
                );
                if round == 0 {
                    continue; // warm-up
                }
                match rows.iter_mut().find(|r| r.shape == shape && r.form == form) {
                    Some(r) => {
                        r.wall_us_per_msg = r.wall_us_per_msg.min(wall);
                        r.cpu_us_per_msg = r.cpu_us_per_msg.min(cpu);
                    }
                    None => rows.push(OtpRow {
                        shape,
                        form,
                        wall_us_per_msg: wall,
                        cpu_us_per_msg: cpu,
                    }),
                }
            }
        }
    }
    drop(wr);
    drain.abort();
    let _ = erlang.shutdown(Duration::from_secs(10));
    epmd.stop().await;
    Ok(rows)
}

fn main() -> ExitCode {
    let options = match parse_options() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("atom_cache_bench: {e}");
            return ExitCode::from(2);
        }
    };
    println!(
        "encode/decode, best of 5 x {} iterations (one thread):",
        options.iters
    );
    let rows = measure_codec(options.iters);
    print_codec(&rows);
    if !options.otp {
        return ExitCode::SUCCESS;
    }
    let Some(erl) = testkit::find_executable("erl") else {
        println!("\nOTP receive: skipped (`erl` is not on PATH)");
        return ExitCode::SUCCESS;
    };
    println!(
        "\nOTP 25 receiving {} REG_SENDs per form (best of {OTP_ROUNDS} rounds after a warm-up):",
        options.otp_msgs
    );
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("atom_cache_bench: tokio: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(measure_otp(erl, options.otp_msgs)) {
        Ok(rows) => {
            println!(
                "{:<6} {:<38} {:>14} {:>16}",
                "msg", "form", "wall us/msg", "erl CPU us/msg"
            );
            for r in rows {
                println!(
                    "{:<6} {:<38} {:>14.3} {:>16.3}",
                    r.shape,
                    r.form.label(),
                    r.wall_us_per_msg,
                    r.cpu_us_per_msg
                );
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("atom_cache_bench: OTP part failed: {e}");
            ExitCode::FAILURE
        }
    }
}
