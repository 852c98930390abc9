//! A node that Erlang nodes can connect to and ping.
//!
//! ```text
//! cargo run --release --example echo_node -- --name NAME --cookie COOKIE [--hidden|--visible]
//!     [--tls-cert F --tls-key F [--tls-ca F]]
//! ```
//!
//! Prints `ready NAME@HOST` once it accepts connections, then `up NODE` / `down NODE REASON`
//! lines as nodes come and go. EPMD is found at `ERL_EPMD_PORT` (or 4369); when none answers,
//! the node runs one inside its own process.

use std::path::PathBuf;
use std::process::ExitCode;

use node_server::etf::Term;
use node_server::remote::{Raw, RemoteTarget};
use node_server::rpc::{RpcError, RpcFailure};
use node_server::{ErlangMessage, FromTerm, ToTerm};
use node_server::{Node, NodeConfig, NodeEvent, TlsConfig};
use num_bigint::BigInt;
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use std::collections::HashMap;
use std::time::Duration;

/// Registered as `kv`: a typed gen_server over any terms.
#[derive(Debug, ErlangMessage)]
enum KvMsg {
    /// `{put, Key, Value}` -> `ok`
    #[rpc]
    Put(Term, Term, RpcReplyPort<()>),
    /// `{get, Key}` -> `{ok, Value}` or `not_found`
    #[rpc]
    Get(Term, RpcReplyPort<Lookup>),
    /// `{delete, Key}` -> `ok`
    #[rpc]
    Delete(Term, RpcReplyPort<()>),
}

/// The answer to `get`.
#[derive(Debug, ToTerm, FromTerm)]
enum Lookup {
    Ok(Term),
    NotFound,
}

struct Kv;

impl Actor for Kv {
    type Msg = KvMsg;
    type State = HashMap<Term, Term>;
    type Arguments = ();

    async fn pre_start(
        &self,
        _me: ActorRef<KvMsg>,
        _: (),
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(HashMap::new())
    }

    async fn handle(
        &self,
        _me: ActorRef<KvMsg>,
        msg: KvMsg,
        store: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            KvMsg::Put(k, v, reply) => {
                store.insert(k, v);
                let _ = reply.send(());
            }
            KvMsg::Get(k, reply) => {
                let _ = reply.send(store.get(&k).cloned().map_or(Lookup::NotFound, Lookup::Ok));
            }
            KvMsg::Delete(k, reply) => {
                store.remove(&k);
                let _ = reply.send(());
            }
        }
        Ok(())
    }
}

/// Registered as `echo`: on `{From, Msg}` sends `Msg` back to `From`, whatever the term.
struct Echo;

impl Actor for Echo {
    type Msg = Raw;
    type State = Node;
    type Arguments = Node;

    async fn pre_start(&self, _me: ActorRef<Raw>, node: Node) -> Result<Node, ActorProcessingErr> {
        Ok(node)
    }

    async fn handle(
        &self,
        _me: ActorRef<Raw>,
        Raw(msg): Raw,
        node: &mut Node,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Term::Tuple(mut parts) if parts.len() == 2 && matches!(parts[0], Term::Pid(_)) => {
                let reply = parts.pop().unwrap_or_default();
                if let Some(Term::Pid(from)) = parts.pop() {
                    node.send(&RemoteTarget::Pid(from), reply);
                }
            }
            other => tracing::warn!(%other, "echo expects {{From, Msg}}"),
        }
        Ok(())
    }
}

/// `echo_node:add(A, B)` and `echo_node:call_back(Node, M, F, Args)` for `rpc:call`.
fn register_functions(node: &Node) {
    node.register_fn("echo_node", "add", |args| async move {
        match &args[..] {
            [a, b] => match (BigInt::from_term(a), BigInt::from_term(b)) {
                (Ok(a), Ok(b)) => Ok((a + b).to_term()),
                _ => Err(RpcFailure::badarith()),
            },
            _ => Err(RpcFailure::Error(Term::atom("undef"))),
        }
    });
    let caller = node.clone();
    node.register_fn("echo_node", "call_back", move |args| {
        let node = caller.clone();
        async move {
            let [Term::Atom(target), Term::Atom(m), Term::Atom(f), Term::List(a)] = &args[..]
            else {
                return Err(RpcFailure::badarg());
            };
            match node
                .rpc(
                    target.as_str(),
                    m.as_str(),
                    f.as_str(),
                    a.clone(),
                    Duration::from_secs(10),
                )
                .await
            {
                Ok(value) => Ok(value),
                Err(RpcError::BadRpc(reason)) => {
                    Ok(Term::tuple(vec![Term::atom("badrpc"), reason]))
                }
                Err(e) => Err(RpcFailure::Error(Term::tuple(vec![
                    Term::atom("call_back"),
                    Term::binary(e.to_string()),
                ]))),
            }
        }
    });
}

struct Args {
    name: String,
    cookie: Option<String>,
    hidden: bool,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    tls_ca: Option<PathBuf>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        name: "echo".into(),
        cookie: None,
        hidden: true,
        tls_cert: None,
        tls_key: None,
        tls_ca: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut value = || it.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--name" => args.name = value()?,
            "--cookie" => args.cookie = Some(value()?),
            "--hidden" => args.hidden = true,
            "--visible" => args.hidden = false,
            "--tls-cert" => args.tls_cert = Some(value()?.into()),
            "--tls-key" => args.tls_key = Some(value()?.into()),
            "--tls-ca" => args.tls_ca = Some(value()?.into()),
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo_node: {e}\nusage: echo_node --name NAME --cookie COOKIE [--hidden|--visible] [--tls-cert F --tls-key F [--tls-ca F]]");
            return ExitCode::from(2);
        }
    };
    let mut config = NodeConfig::new(&args.name).hidden(args.hidden);
    if let Some(cookie) = &args.cookie {
        config = config.cookie(cookie);
    }
    if let (Some(cert), Some(key)) = (&args.tls_cert, &args.tls_key) {
        match TlsConfig::from_pem_files(cert, key, args.tls_ca.as_deref()) {
            Ok(tls) => config = config.tls(tls),
            Err(e) => {
                eprintln!("echo_node: {e}");
                return ExitCode::FAILURE;
            }
        }
    }
    let node = match config.start().await {
        Ok(n) => n,
        Err(e) => {
            eprintln!("echo_node: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut events = node.subscribe();
    let (echo, _) = match Actor::spawn(None, Echo, node.clone()).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo_node: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = node.register("echo", &echo) {
        eprintln!("echo_node: {e}");
        return ExitCode::FAILURE;
    }
    let (kv, _) = match Actor::spawn(None, Kv, ()).await {
        Ok(a) => a,
        Err(e) => {
            eprintln!("echo_node: {e}");
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = node.register("kv", &kv) {
        eprintln!("echo_node: {e}");
        return ExitCode::FAILURE;
    }
    register_functions(&node);
    println!("ready {}", node.name());
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => break,
            ev = events.recv() => match ev {
                Ok(NodeEvent::Up { node, .. }) => println!("up {node}"),
                Ok(NodeEvent::Down { node, reason }) => println!("down {node} {reason}"),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(_) => break,
            },
        }
    }
    node.shutdown().await;
    ExitCode::SUCCESS
}
