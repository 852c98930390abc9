//! Distribution over TLS against real `erl -proto_dist inet_tls`: Erlang pings our TLS
//! listener, we connect to Erlang's, and a plain TCP Erlang node is refused by our listener.

use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use node_server::etf::{Atom, Term};
use node_server::remote::{Raw, RemoteTarget};
use node_server::{client_connect_enc, NodeConfig, TlsConfig};
use testkit::ErlPeer;

/// A CA and one certificate for this host (and localhost), valid for client and server use.
struct Certs {
    dir: PathBuf,
}

impl Certs {
    fn make() -> Certs {
        let dir = testkit::unique_temp_dir("tls");
        let host = node_server::config::hostname();
        let short = host.split('.').next().unwrap_or("localhost").to_owned();
        let run = |args: &[&str]| testkit::openssl(&dir, args);
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
        ]);
        run(&[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "node.key",
            "-out",
            "node.csr",
            "-subj",
            &format!("/CN={short}"),
        ]);
        std::fs::write(
            dir.join("ext.cnf"),
            format!(
                "subjectAltName=DNS:{short},DNS:{host},DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n"
            ),
        )
        .unwrap();
        run(&[
            "x509",
            "-req",
            "-in",
            "node.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "node.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ]);
        let p = |f: &str| dir.join(f).display().to_string();
        std::fs::write(
            dir.join("ssl_dist.conf"),
            format!(
                "[{{server, [{{certfile, \"{c}\"}}, {{keyfile, \"{k}\"}}, {{cacertfile, \"{a}\"}}, {{verify, verify_peer}}, {{fail_if_no_peer_cert, true}}]}},\n {{client, [{{certfile, \"{c}\"}}, {{keyfile, \"{k}\"}}, {{cacertfile, \"{a}\"}}, {{verify, verify_peer}}]}}].\n",
                c = p("node.pem"),
                k = p("node.key"),
                a = p("ca.pem")
            ),
        )
        .unwrap();
        Certs { dir }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.join(f)
    }

    fn tls(&self) -> TlsConfig {
        TlsConfig::from_pem_files(
            &self.path("node.pem"),
            &self.path("node.key"),
            Some(&self.path("ca.pem")),
        )
        .expect("TLS config loads")
    }
}

fn erl_peer(erl: &Path, beams: &Path, name: &str, epmd_port: u16, tls: Option<&Certs>) -> ErlPeer {
    let mut b = ErlPeer::builder(erl, "eval_peer")
        .code_path(beams)
        .env("ERL_EPMD_PORT", epmd_port.to_string())
        .args(["-sname", name, "-setcookie", "tlscookie"]);
    if let Some(certs) = tls {
        b = b
            .args(["-proto_dist", "inet_tls", "-ssl_dist_optfile"])
            .arg(certs.path("ssl_dist.conf"));
    }
    b.start().expect("erl starts")
}

fn eval(peer: &mut ErlPeer, expr: &str) -> String {
    peer.request(expr)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_both_directions_and_plain_refused() {
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let certs = Certs::make();
    let beams = testkit::compile_erlang(Path::new(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/erlang/eval_peer.erl"
    )));
    let epmd = testkit::Epmd::start();
    let epmd_port = epmd.port();
    let pid = std::process::id();

    // Our TLS node registers with this test's EPMD, as the Erlang nodes then do.
    let ours = NodeConfig::new(format!("rtls{pid}"))
        .cookie("tlscookie")
        .epmd("localhost", epmd_port)
        .tls(certs.tls())
        .start()
        .await
        .expect("node starts");
    let mut events = ours.subscribe();

    // Erlang (TLS) pings our TLS listener.
    let mut etls = erl_peer(&erl, &beams, &format!("etls{pid}"), epmd_port, Some(&certs));
    let reply = eval(&mut etls, &format!("net_adm:ping('{}')", ours.name()));
    assert_eq!(reply, "ok pong", "{}", etls.diagnostics());
    let ev = tokio::time::timeout(Duration::from_secs(10), events.recv())
        .await
        .expect("up event")
        .unwrap();
    assert!(matches!(ev, node_server::NodeEvent::Up { .. }), "{ev:?}");

    // Big messages both ways over TLS: frames far beyond a TLS record, read into their own
    // buffers on our side and written around the shared binary.
    let etls_name = eval(&mut etls, "node()")
        .trim_start_matches("ok ")
        .to_owned();
    let big = Bytes::from([1u8, 2, 3, 4, 5, 6, 7].repeat(600_000));
    let (inbox, mut inbox_rx) = testkit::forwarder::<Raw>().await;
    ours.register("tlsbox", &inbox).expect("registers");
    let reply = eval(
        &mut etls,
        &format!(
            "begin {{tlsbox, '{}'}} ! {{big, binary:copy(<<1,2,3,4,5,6,7>>, 600000)}}, sent end",
            ours.name()
        ),
    );
    assert_eq!(reply, "ok sent");
    let Raw(got) = tokio::time::timeout(Duration::from_secs(20), inbox_rx.recv())
        .await
        .expect("the big message arrives in time")
        .expect("inbox alive");
    assert!(
        got == Term::tuple(vec![Term::atom("big"), Term::Binary(big.clone())]),
        "the 4.2 MB message from Erlang arrives whole"
    );
    assert_eq!(eval(&mut etls, "register(tlsrx, self())"), "ok true");
    ours.send(
        &RemoteTarget::Name {
            name: Atom::new("tlsrx"),
            node: Atom::new(&etls_name),
        },
        Term::tuple(vec![Term::atom("big"), Term::Binary(big)]),
    );
    let reply = eval(
        &mut etls,
        "receive {big, B} -> B =:= binary:copy(<<1,2,3,4,5,6,7>>, 600000) \
         after 20000 -> timeout end",
    );
    assert_eq!(
        reply, "ok true",
        "the 4.2 MB message from Rust arrives whole"
    );

    // We connect to another TLS Erlang node over TLS.
    let mut etls2 = erl_peer(
        &erl,
        &beams,
        &format!("etlsb{pid}"),
        epmd_port,
        Some(&certs),
    );
    let etls2_name = eval(&mut etls2, "node()")
        .trim_start_matches("ok ")
        .to_owned();
    client_connect_enc(&ours, &etls2_name)
        .await
        .expect("TLS connect to Erlang");
    let up = eval(
        &mut etls2,
        &format!("eval_peer:connected('{}', 5000)", ours.name()),
    );
    assert_eq!(up, "ok true", "{}", eval(&mut etls2, "nodes(connected)"));

    // A plain-TCP Erlang node cannot talk to the TLS listener.
    let mut plain = erl_peer(&erl, &beams, &format!("eplain{pid}"), epmd_port, None);
    let reply = eval(&mut plain, &format!("net_adm:ping('{}')", ours.name()));
    assert_eq!(reply, "ok pang");
    // ...and the TLS listener still serves TLS peers afterwards.
    let reply = eval(
        &mut etls,
        &format!(
            "begin erlang:disconnect_node('{0}'), net_adm:ping('{0}') end",
            ours.name()
        ),
    );
    assert_eq!(reply, "ok pong");
    ours.shutdown().await;
}
