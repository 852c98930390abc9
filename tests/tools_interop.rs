//! Erlang's tools on our node (see `node_server::processes`): `erlang:processes/0` and
//! `erlang:process_info/1,2` show our actors as processes, a spawn of one of the node's rpc
//! functions runs as a short-lived process (as `etop` spawns `observer_backend:etop_collect/1`),
//! and OTP's `etop` in text mode lists the node's processes with their names (`kv`).
//!
//! Needs Erlang/OTP (`erl`) and its observer application (Debian's `erlang-observer`, for
//! `etop`): skipped on a developer machine without them, fails in CI (`CI=true`). OTP 27's
//! etop cannot watch our node (it always sets up `dbg` tracing there): that part is skipped
//! on OTP 27.

use std::process::Command;
use std::time::Duration;

use node_server::NodeConfig;
use ractor::Actor;
use testkit::{Epmd, EvalPeer};

#[path = "../examples/echo_node/services.rs"]
mod services;

const COOKIE: &str = "tools_interop_cookie";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processes_process_info_and_etop_see_our_actors() {
    testkit::init_logging();
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let epmd = Epmd::start();
    let id = std::process::id();
    let node = NodeConfig::new(format!("tlr_{id}"))
        .cookie(COOKIE)
        .epmd("localhost", epmd.port())
        .pg_scopes(Vec::<String>::new())
        .start()
        .await
        .expect("node starts");
    let (kv, _) = Actor::spawn(None, services::Kv, ()).await.expect("kv");
    let kv_pid = node.register("kv", &kv).expect("registered");
    let rust = node.name().to_owned();
    let dirs = testkit::compile_erlang_once(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erlang"),
        &["eval_peer"],
    );
    let mut e = EvalPeer::start_in_place(
        &erl,
        &format!("tle_{id}"),
        COOKIE,
        epmd.port(),
        &dirs,
        Duration::from_secs(30),
    );
    assert_eq!(e.ok_in_place(&format!("net_adm:ping('{rust}')")), "pong");

    // processes/0 and process_info/1,2.
    let found = e.ok_in_place(&format!(
        "begin Ps = [P || P <- rpc:call('{rust}', erlang, processes, []), \
         rpc:call('{rust}', erlang, process_info, [P, registered_name]) =:= {{registered_name, kv}}], \
         put(kvp, hd(Ps)), {{length(Ps), node(hd(Ps)), element(2, lists:keyfind(Ps, 1, [{{Ps, x}}]))}} end"
    ));
    assert_eq!(
        found,
        format!("{{1,{rust},x}}"),
        "kv is one of the processes"
    );
    assert_eq!(
        e.ok_in_place(&format!(
            "lists:nth(2, string:tokens(pid_to_list(get(kvp)), \".\")) =:= \"{}\"",
            kv_pid.id
        )),
        "true",
        "the pid Rust registered"
    );
    let info = e.ok_in_place(&format!(
        "rpc:call('{rust}', erlang, process_info, [get(kvp), [status, message_queue_len, trap_exit]])"
    ));
    assert_eq!(
        info,
        "[{status,waiting},{message_queue_len,0},{trap_exit,false}]"
    );
    assert_eq!(
        e.ok_in_place(&format!(
            "rpc:call('{rust}', erlang, process_info, [list_to_pid(\"<0.4242.0>\")])"
        )),
        "{badrpc,{'EXIT',{badarg,[{erlang,process_info,[<0.4242.0>],[]}]}}}",
        "a pid of another node is badarg, as Erlang's"
    );

    // A spawn of a registered function: a short-lived process that exits normal; of a
    // function that is not there: undef.
    assert_eq!(
        e.ok_in_place(&format!(
            "begin {{P, R}} = spawn_monitor('{rust}', erlang, node, []), \
             receive {{'DOWN', R, process, P, W}} -> W after 5000 -> timeout end end"
        )),
        "normal"
    );
    assert_eq!(
        e.ok_in_place(&format!(
            "begin {{P, R}} = spawn_monitor('{rust}', nosuch, start, [1]), \
             receive {{'DOWN', R, process, P, W}} -> W after 5000 -> timeout end end"
        )),
        "{undef,[{nosuch,start,[1],[]}]}"
    );

    // A spawned function is a process with a mailbox: observer's fetch_stats sends samples
    // to its parent until a message reaches it.
    assert_eq!(
        e.ok_in_place(&format!(
            "begin {{P, R}} = spawn_monitor('{rust}', observer_backend, fetch_stats, [self(), 20]), \
             S = receive {{stats, 1, [{{1, A, T}} | _], {{{{input, I}}, {{output, O}}}}, M}} \
                   when is_integer(A), T >= A, is_integer(I), is_integer(O) -> \
                     {{ok, lists:keymember(total, 1, M)}} \
                 after 5000 -> timeout end, \
             Listed = lists:member(P, rpc:call('{rust}', erlang, processes, [])), \
             P ! exit, \
             D = receive {{'DOWN', R, process, P, Why}} -> Why after 5000 -> timeout end, \
             {{S, Listed, D, lists:member(P, rpc:call('{rust}', erlang, processes, []))}} end"
        )),
        "{{ok,true},true,normal,false}"
    );

    // etop in text mode, from its own node: it lists kv. OTP 27's etop (observer 2.17)
    // sets up `dbg` tracing on a remote node whatever `{tracing, off}` says, and our node has
    // no `dbg`: that release's etop cannot watch it (OTP 25's and 29's can).
    if testkit::otp_release() == Some(27) {
        eprintln!("OTP 27's etop always traces a remote node with dbg: its part skipped");
        node.shutdown().await;
        return;
    }
    let has_etop = e.ok_in_place("code:which(etop) =/= non_existing");
    if has_etop != "true" {
        assert!(
            !testkit::in_ci(),
            "etop is missing (install erlang-observer for this release)"
        );
        eprintln!("etop is missing: its part of the test skipped");
        node.shutdown().await;
        return;
    }
    let script = format!(
        "N = '{rust}', pong = net_adm:ping(N), \
         spawn(fun() -> timer:sleep(2500), etop:stop(), halt() end), \
         etop:start([{{node, N}}, {{output, text}}, {{tracing, off}}, {{interval, 1}}, {{lines, 20}}])."
    );
    let out = testkit::output_within(
        Command::new(&erl)
            .env("ERL_EPMD_PORT", epmd.port().to_string())
            .args([
                "-noshell",
                "-sname",
                &format!("tlt_{id}"),
                "-setcookie",
                COOKIE,
            ])
            .args(["-eval", &script]),
        Duration::from_secs(30),
    )
    .expect("etop runs");
    let text = String::from_utf8_lossy(&out.stdout);
    println!("{text}");
    assert!(text.contains("Name or Initial Func"), "{text}");
    let kv_line = text
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("kv"))
        .unwrap_or_else(|| panic!("etop lists kv:\n{text}"));
    assert!(kv_line.contains("node_server:actor/0"), "{kv_line}");
    node.shutdown().await;
}
