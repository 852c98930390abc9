//! `erl -remsh` into a node of ours (see `node_server::remote_shell`), driven through tmux as an
//! operator would type: the prompt, expressions, a `gen_server` call to `kv`, bindings over
//! lines, an error, Ctrl-G `q` (the Erlang node leaves, ours keeps running and the shell
//! process ends), `q()` (our node stops gracefully), `-sname` and `-name`, and the admin
//! guard's refusal.
//!
//! Needs Erlang/OTP (`erl`, from `TESTKIT_OTP` when set) and `tmux`: skipped on a developer
//! machine without them, fails in CI (`CI=true`).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use node_server::eval::{Bindings, NodeEnv};
use node_server::{Node, NodeConfig, NodeEvent};
use ractor::Actor;
use testkit::Epmd;

#[path = "../examples/echo_node/services.rs"]
mod services;

const COOKIE: &str = "remsh_interop_cookie";

/// How long any one screen may take to show what is expected.
const SCREEN: Duration = Duration::from_secs(30);

/// `tmux`, or `None` (a failure in CI) when it is not installed.
fn require_tmux() -> Option<()> {
    let found = Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(!testkit::in_ci(), "tmux is missing (CI installs it)");
        eprintln!("tmux is missing: test skipped");
        return None;
    }
    Some(())
}

/// A tmux server of its own (`-L`) with one window running a command: the terminal an
/// operator types into. Dropping it kills the server and what runs in it.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// Runs `command` (a shell command line) in a 200x50 window; when it exits the window
    /// shows `EXITED <status>` and stays.
    fn start(label: &str, command: &str) -> Tmux {
        let tmux = Tmux {
            socket: format!("{label}_{}", std::process::id()),
        };
        let _ = tmux.tmux(&["kill-server"]);
        let line = format!("{command}; echo EXITED $?; sleep 600");
        let out = tmux
            .tmux(&[
                "new-session",
                "-d",
                "-s",
                "t",
                "-x",
                "200",
                "-y",
                "50",
                &line,
            ])
            .expect("tmux runs");
        assert!(
            out.status.success(),
            "tmux new-session: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        tmux
    }

    fn tmux(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        testkit::output_within(
            Command::new("tmux").arg("-L").arg(&self.socket).args(args),
            Duration::from_secs(10),
        )
    }

    /// Types `text` literally, then Enter.
    fn line(&self, text: &str) {
        self.tmux(&["send-keys", "-t", "t", "-l", text])
            .expect("send-keys");
        self.keys(&["Enter"]);
    }

    /// Sends keys by tmux's names (`C-g`, `Enter`).
    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "t"];
        args.extend_from_slice(keys);
        self.tmux(&args).expect("send-keys");
    }

    /// The whole window, scrollback included, wrapped lines joined.
    fn screen(&self) -> String {
        let out = self
            .tmux(&["capture-pane", "-p", "-J", "-S", "-", "-t", "t"])
            .expect("capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the window shows `text` (screen contents have no event to await: they
    /// are read again every 50 ms, for at most [`SCREEN`]).
    fn wait_for(&self, text: &str) -> String {
        self.wait_for_times(text, 1)
    }

    /// Waits until the window shows `text` at least `times` times.
    fn wait_for_times(&self, text: &str, times: usize) -> String {
        let deadline = Instant::now() + SCREEN;
        loop {
            let screen = self.screen();
            if screen.matches(text).count() >= times {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the terminal never showed {text:?} {times} times; it shows:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux(&["kill-server"]);
    }
}

/// The command line of `erl -remsh` with `names` (`-sname X` or `-name X`).
fn remsh_command(erl: &Path, epmd_port: u16, names: &str, node: &str) -> String {
    format!(
        "env ERL_EPMD_PORT={epmd_port} '{}' {names} -setcookie {COOKIE} -remsh {node}",
        erl.display()
    )
}

/// A node of ours with `kv` registered.
async fn start_node(config: NodeConfig, epmd_port: u16) -> Node {
    let node = config
        .cookie(COOKIE)
        .epmd("localhost", epmd_port)
        .pg_scopes(Vec::<String>::new())
        .start()
        .await
        .expect("node starts");
    let (kv, _) = Actor::spawn(None, services::Kv, ()).await.expect("kv");
    node.register("kv", &kv).expect("registered");
    node
}

/// A node of ours (`config`, with `kv`) and a terminal running `erl NAMES -remsh` into it;
/// `None` when Erlang or tmux is missing (outside CI).
struct Scene {
    node: Node,
    ours: String,
    term: Tmux,
    /// Bind it (`_epmd`, not `..`): it must outlive the test.
    _epmd: Epmd,
}

async fn scene(label: &str, config: NodeConfig, names: &str) -> Option<Scene> {
    testkit::init_logging();
    let erl = testkit::require_erl()?;
    require_tmux()?;
    let epmd = Epmd::start();
    let node = start_node(config, epmd.port()).await;
    let ours = node.name().to_owned();
    let term = Tmux::start(label, &remsh_command(&erl, epmd.port(), names, &ours));
    Some(Scene {
        node,
        ours,
        term,
        _epmd: epmd,
    })
}

/// How many processes the node lists (`length(erlang:processes())`).
async fn process_count(node: &Node) -> usize {
    let outcome = node_server::eval::eval(
        "length(erlang:processes()).",
        &mut Bindings::new(),
        &NodeEnv::new(node),
    )
    .await;
    outcome
        .text()
        .parse()
        .unwrap_or_else(|_| panic!("{}", outcome.text()))
}

/// Types `expr` at prompt `n` and checks the shell printed `expected` before prompt `n + 1`.
fn expect(term: &Tmux, node: &str, n: u32, expr: &str, expected: &str) {
    term.line(expr);
    let next = format!("({node}){}>", n + 1);
    let screen = term.wait_for(&next);
    assert!(
        screen.contains(&format!("({node}){n}> {expr}\n{expected}\n{next}")),
        "({node}){n}> {expr} should print {expected:?}; the terminal shows:\n{screen}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remsh_with_short_names_evaluates_and_ctrl_g_q_leaves_our_node_running() {
    let id = std::process::id();
    let me = format!("rshe_{id}");
    let config = NodeConfig::new(format!("rsh_{id}"));
    let Some(Scene {
        node,
        ours,
        term,
        _epmd,
    }) = scene("remsh_s", config, &format!("-sname {me}")).await
    else {
        return;
    };
    let mut events = node.subscribe();
    let screen = term.wait_for(&format!("({ours})1>"));
    assert!(screen.contains("Eshell node_server"), "{screen}");
    // The shell is one of our node's processes until it ends.
    let before = process_count(&node).await - 1;

    expect(&term, &ours, 1, "node().", &ours);
    expect(&term, &ours, 2, "gen_server:call(kv, {put, a, 42}).", "ok");
    expect(&term, &ours, 3, "gen_server:call(kv, {get, a}).", "{ok,42}");
    expect(
        &term,
        &ours,
        4,
        "lists:member(kv, erlang:registered()).",
        "true",
    );
    expect(&term, &ours, 5, "X = 20, X + 22.", "42");
    // An expression over two lines: the same prompt asks for the rest.
    term.line("Y = X +");
    term.wait_for(&format!("({ours})6> Y = X +\n({ours})6>"));
    term.line("1.");
    term.wait_for(&format!("({ours})6> 1.\n21\n({ours})7>"));
    expect(
        &term,
        &ours,
        7,
        "foo:bar(Y).",
        "** exception error: undefined function foo:bar/1",
    );
    expect(&term, &ours, 8, "{X, Z}.", "* 1:5: variable 'Z' is unbound");
    // The shell survived all of that.
    expect(&term, &ours, 9, "Y - X.", "1");
    // Output goes to the operator's terminal, before the value.
    expect(
        &term,
        &ours,
        10,
        "io:format(\"Y is ~p~n\", [Y]).",
        "Y is 21\nok",
    );

    // Ctrl-G i (interrupt) drops what was typed of an expression; c goes back to the shell.
    term.tmux(&["send-keys", "-t", "t", "-l", "Y +"])
        .expect("send-keys");
    term.keys(&["C-g"]);
    term.wait_for("-->");
    term.line("i");
    term.wait_for_times("-->", 2);
    term.line("c");
    term.wait_for_times(&format!("({ours})11>"), 2);
    expect(&term, &ours, 11, "Y - 1.", "20");

    // Ctrl-G q: the Erlang node halts; ours keeps running, without the shell.
    term.keys(&["C-g"]);
    term.wait_for_times("-->", 3);
    term.line("q");
    term.wait_for("EXITED 0");
    let me_full = format!("{me}@");
    let went = tokio::time::timeout(SCREEN, async {
        loop {
            match events.recv().await {
                Ok(NodeEvent::Down { node, .. }) if node.starts_with(&me_full) => return,
                Ok(_) => {}
                Err(e) => panic!("events: {e}"),
            }
        }
    })
    .await;
    assert!(went.is_ok(), "our node saw the Erlang node go");
    let deadline = Instant::now() + SCREEN;
    while process_count(&node).await != before {
        assert!(Instant::now() < deadline, "the shell process never ended");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        node_server::eval::eval(
            "gen_server:call(kv, {get, a}).",
            &mut Bindings::new(),
            &NodeEnv::new(&node)
        )
        .await
        .text(),
        "{ok,42}",
        "our node still serves"
    );
    node.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remsh_with_long_names_and_q_stops_our_node() {
    let id = std::process::id();
    let config = NodeConfig::new(format!("rlg_{id}@127.0.0.1")).long_names(true);
    let names = format!("-name rlge_{id}@127.0.0.1");
    let Some(Scene {
        node,
        ours,
        term,
        _epmd,
    }) = scene("remsh_l", config, &names).await
    else {
        return;
    };
    term.wait_for(&format!("({ours})1>"));
    expect(&term, &ours, 1, "node().", &format!("'{ours}'"));
    // The answer comes before the node goes (the next prompt may or may not).
    term.line("q().");
    term.wait_for(&format!("({ours})2> q().\nok\n"));
    let status = tokio::time::timeout(SCREEN, node.wait_stopped()).await;
    assert_eq!(status, Ok(0), "q() stops our node gracefully");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remsh_from_a_node_outside_the_admin_guard_is_refused() {
    let id = std::process::id();
    let config = NodeConfig::new(format!("rad_{id}")).admin_allow(["nobody@nowhere"]);
    let Some(Scene {
        node,
        ours,
        term,
        _epmd,
    }) = scene("remsh_a", config, &format!("-sname rade_{id}")).await
    else {
        return;
    };
    let screen = term.wait_for("not_allowed");
    assert!(
        !screen.contains(&format!("({ours})1>")),
        "no shell: {screen}"
    );
    node.shutdown().await;
}
