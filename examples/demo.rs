//! The tour: two Rust nodes exchange typed messages and a call, then (when `erl` is
//! installed) an Erlang node joins and does the same with them. Prints what crossed the wire.
//!
//! ```text
//! cargo run --release --example demo
//! ```
//!
//! EPMD is the one on `ERL_EPMD_PORT` (or 4369); when none answers, the first node runs one
//! inside this process, and the Erlang node registers with it.

use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use node_server::etf::ToTerm;
use node_server::{ErlangMessage, Node, NodeConfig};
use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio::sync::mpsc;

const COOKIE: &str = "demo-cookie";

/// What the greeter actors speak, as Erlang sees it:
/// `{greet, #{from => <<"...">>, text => <<"...">>}}` and calls `{add, A, B}` -> `A + B`.
#[derive(Debug, ErlangMessage)]
enum Greeter {
    Greet {
        from: String,
        text: String,
    },
    #[rpc]
    Add(i64, i64, RpcReplyPort<i64>),
}

/// Reports each message it gets to the transcript.
struct GreeterActor;

impl Actor for GreeterActor {
    type Msg = Greeter;
    type State = (String, mpsc::UnboundedSender<String>);
    type Arguments = (String, mpsc::UnboundedSender<String>);

    async fn pre_start(
        &self,
        _: ActorRef<Greeter>,
        args: Self::Arguments,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(args)
    }

    async fn handle(
        &self,
        _: ActorRef<Greeter>,
        msg: Greeter,
        (me, log): &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            Greeter::Greet { from, text } => {
                let _ = log.send(format!("  {me} got greet from {from}: {text:?}"));
            }
            Greeter::Add(a, b, reply) => {
                let _ = log.send(format!("  {me} answers add({a}, {b}) = {}", a + b));
                let _ = reply.send(a + b);
            }
        }
        Ok(())
    }
}

async fn greeter_node(
    name: &str,
    log: &mpsc::UnboundedSender<String>,
) -> Result<Node, Box<dyn std::error::Error>> {
    let node = NodeConfig::new(name).cookie(COOKIE).start().await?;
    let (greeter, _) =
        Actor::spawn(None, GreeterActor, (node.name().to_owned(), log.clone())).await?;
    node.register("greeter", &greeter)?;
    Ok(node)
}

/// Sends a greet and makes a call from `from` to the greeter on `to`, printing the terms.
async fn exchange(
    from: &Node,
    to: &str,
    log: &mut mpsc::UnboundedReceiver<String>,
) -> Result<(), Box<dyn std::error::Error>> {
    let greeter = from.remote_name::<Greeter>("greeter", to).await?;
    let greet = Greeter::Greet {
        from: from.name().to_owned(),
        text: "hello".into(),
    };
    println!(
        "{} -> {{greeter, {to}}} ! {:#}",
        from.name(),
        greet.to_term()
    );
    greeter.cast(greet)?;
    println!(
        "{} -> gen_server:call({{greeter, {to}}}, {{add,2,3}})",
        from.name()
    );
    let sum = ractor::call_t!(greeter, Greeter::Add, 5000, 2, 3)?;
    println!("{} <- {sum}", from.name());
    // The greet and the call's answer are reported by the receiving actor.
    for _ in 0..2 {
        if let Ok(Some(line)) = tokio::time::timeout(Duration::from_secs(5), log.recv()).await {
            println!("{line}");
        }
    }
    if sum != 5 {
        return Err(format!("expected 5, got {sum}").into());
    }
    Ok(())
}

/// Starts an Erlang node that greets the Rust node's greeter and calls it, then exits.
fn erlang_round(rust_node: &str) -> Result<String, Box<dyn std::error::Error>> {
    let script = format!(
        "Rust = '{rust_node}', \
         {{greeter, Rust}} ! {{greet, #{{from => atom_to_binary(node()), text => <<\"hello from Erlang\">>}}}}, \
         Sum = gen_server:call({{greeter, Rust}}, {{add, 40, 2}}), \
         io:format(\"~s: gen_server:call({{greeter, ~s}}, {{add,40,2}}) -> ~p~n\", [node(), Rust, Sum]), \
         halt()."
    );
    let out = Command::new("erl")
        .args([
            "-noshell",
            "-sname",
            &format!("demo_erl{}", std::process::id()),
            "-setcookie",
            COOKIE,
            "-eval",
            &script,
        ])
        .stderr(Stdio::inherit())
        .output()?;
    if !out.status.success() {
        return Err(format!("erl exited with {}", out.status).into());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (tx, mut log) = mpsc::unbounded_channel();
    let pid = std::process::id();
    let alice = greeter_node(&format!("alice{pid}"), &tx).await?;
    let bob = greeter_node(&format!("bob{pid}"), &tx).await?;
    println!("nodes {} and {} are up\n", alice.name(), bob.name());

    exchange(&alice, bob.name(), &mut log).await?;
    println!();
    exchange(&bob, alice.name(), &mut log).await?;

    if Command::new("erl")
        .arg("-version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_err()
    {
        println!("\nerl is not installed: skipping the Erlang round");
        return Ok(());
    }
    println!();
    let line = erlang_round(alice.name())?;
    for _ in 0..2 {
        if let Ok(Some(l)) = tokio::time::timeout(Duration::from_secs(10), log.recv()).await {
            println!("{l}");
        }
    }
    print!("{line}");
    if !line.contains("-> 42") {
        return Err("Erlang did not get 42".into());
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(()) => {
            println!("\ndemo: ok");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("demo: {e}");
            ExitCode::FAILURE
        }
    }
}
