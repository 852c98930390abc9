//! The dashboard in headless Chromium, against real Erlang/OTP nodes.
//!
//! The test runs an EPMD of its own ([`testkit::Epmd`], on a port the system picked); the
//! dashboard starts first, then two `erl` nodes that connect to each other, one with a process
//! in `pg` group `echo` and a registered name, and an EPMD registration with roles whose node
//! never answers.
//! Chromium (through `chromedriver`, see [`webdriver`]) loads the page once; the test then
//! reads the DOM, polling it every 25 ms up to a deadline, while the cluster changes:
//! a third node starts and connects, a second member joins `echo`, the third node is killed.
//! Each change must show within [`LIVE`] without a reload; the measured times are printed.
//!
//! Needs `erl`, `chromium` and `chromedriver` (`apt-get install erlang-base chromium
//! chromium-driver`): skipped on a developer machine without them, fails in CI (`CI=true`).

mod webdriver;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use node_dashboard::DashboardConfig;
use serde::Deserialize;
use testkit::{find_executable, Epmd, EvalPeer};

use webdriver::{http, Browser};

const COOKIE: &str = "dashboard_browser_cookie";
/// How soon a change in the cluster must show on the page.
const LIVE: Duration = Duration::from_secs(2);
/// Deadline for setup steps (browser start, first render).
const SETUP: Duration = Duration::from_secs(30);
const ERL_REPLY: Duration = Duration::from_secs(20);

fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// Finds Chromium and chromedriver: skip without them on a developer machine, fail in CI.
fn require_browser() -> Option<(PathBuf, PathBuf)> {
    let chromium = ["chromium", "chromium-browser"]
        .iter()
        .find_map(|n| find_executable(n));
    let driver = find_executable("chromedriver");
    match (chromium, driver) {
        (Some(c), Some(d)) => Some((c, d)),
        _ if in_ci() => panic!(
            "chromium and chromedriver must be on PATH in CI (CI=true): \
             apt-get install chromium chromium-driver (.ci/run does)"
        ),
        _ => {
            eprintln!(
                "SKIPPED: chromium or chromedriver is not on PATH; \
                 apt-get install chromium chromium-driver to run the browser test"
            );
            None
        }
    }
}

fn eval_peer_beams() -> PathBuf {
    testkit::compile_erlang(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/erlang/eval_peer.erl"),
    )
}

fn start_erl(erl: &Path, sname: &str, epmd_port: u16, beams: &Path) -> EvalPeer {
    tokio::task::block_in_place(|| {
        EvalPeer::start(
            erl,
            sname,
            COOKIE,
            epmd_port,
            &[beams.to_path_buf()],
            ERL_REPLY,
        )
    })
    .unwrap_or_else(|e| panic!("cannot start erl {sname}: {e}"))
}

fn ok(peer: &mut EvalPeer, expr: &str) -> String {
    tokio::task::block_in_place(|| peer.ok(expr))
}

/// What the page shows, read from its `data-*` attributes.
#[derive(Debug, Deserialize)]
struct Dom {
    seq: Option<String>,
    live: Option<String>,
    marker: Option<u64>,
    /// Node name -> status.
    nodes: BTreeMap<String, String>,
    roles: BTreeMap<String, String>,
    /// Group name -> members as (pid, node).
    groups: BTreeMap<String, Vec<(String, String)>>,
    /// "a b" pairs.
    edges: Vec<String>,
    /// Node name -> registered names.
    registered: BTreeMap<String, Vec<String>>,
}

const READ_DOM: &str = r#"
const q = (root, sel) => Array.from(root.querySelectorAll(sel));
const rows = q(document, '#nodes tr[data-node]');
return {
  seq: document.body.dataset.seq || null,
  live: document.getElementById('status').dataset.state || null,
  marker: window.__testMarker || null,
  nodes: Object.fromEntries(rows.map(r => [r.dataset.node, r.dataset.status])),
  roles: Object.fromEntries(rows.map(r => [r.dataset.node,
    (r.querySelector('[data-roles]') || {dataset: {roles: ''}}).dataset.roles])),
  groups: Object.fromEntries(q(document, '[data-group]').map(g => [g.dataset.group,
    q(g, '[data-member]').map(m => [m.dataset.member, m.dataset.memberNode])])),
  edges: q(document, '#edges [data-edge]').map(e => e.dataset.edge),
  registered: Object.fromEntries(q(document, '[data-registered-of]').map(d => [
    d.dataset.registeredOf, q(d, '[data-registered]').map(r => r.dataset.registered)])),
};
"#;

fn read_dom(browser: &Browser) -> Dom {
    let value = browser
        .eval(READ_DOM)
        .unwrap_or_else(|e| panic!("reading the DOM failed: {e}"));
    serde_json::from_value(value.clone())
        .unwrap_or_else(|e| panic!("unexpected DOM summary {value}: {e}"))
}

/// Polls the DOM every 25 ms until `check` holds; returns how long that took. Panics with
/// the last DOM seen after `limit`.
async fn shown(
    browser: &Browser,
    what: &str,
    limit: Duration,
    check: impl Fn(&Dom) -> bool,
) -> Duration {
    let start = Instant::now();
    loop {
        let dom = tokio::task::block_in_place(|| read_dom(browser));
        if check(&dom) {
            let took = start.elapsed();
            println!("dashboard: {what}: shown after {} ms", took.as_millis());
            return took;
        }
        if start.elapsed() > limit {
            if let Ok(png) = browser.screenshot() {
                let path = std::env::temp_dir().join("dashboard-browser-failure.png");
                if std::fs::write(&path, png).is_ok() {
                    eprintln!("screenshot of the page: {}", path.display());
                }
            }
            panic!("not shown within {limit:?}: {what}\nlast DOM: {dom:#?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

fn has_edge(dom: &Dom, a: &str, b: &str) -> bool {
    let (a, b) = if a < b { (a, b) } else { (b, a) };
    dom.edges.iter().any(|e| e == &format!("{a} {b}"))
}

fn members_on<'a>(dom: &'a Dom, group: &str, node: &str) -> Vec<&'a str> {
    dom.groups
        .get(group)
        .map(|ms| {
            ms.iter()
                .filter(|(_, n)| n == node)
                .map(|(p, _)| p.as_str())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dashboard_shows_cluster_changes_live_in_chromium() {
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    let Some((chromium, chromedriver)) = require_browser() else {
        return;
    };
    let tag = std::process::id();
    let epmd = Epmd::start();
    let epmd_port = epmd.port();
    let beams = eval_peer_beams();

    let dashboard = node_dashboard::serve(
        DashboardConfig::new()
            .listen("127.0.0.1:0".parse().unwrap())
            .cookie(COOKIE)
            .epmd("localhost", epmd_port)
            .node_name(format!("dash_{tag}")),
    )
    .await
    .expect("dashboard starts");
    let http_port = dashboard.local_addr().port();

    let mut a = start_erl(&erl, &format!("dba_{tag}"), epmd_port, &beams);
    let mut b = start_erl(&erl, &format!("dbb_{tag}"), epmd_port, &beams);
    let (a_name, b_name) = (a.name().to_owned(), b.name().to_owned());
    for peer in [&mut a, &mut b] {
        assert_eq!(ok(peer, "element(1, pg:start(pg))"), "ok");
    }
    assert_eq!(ok(&mut a, &format!("net_adm:ping('{b_name}')")), "pong");
    ok(
        &mut a,
        "begin P = spawn(fun() -> receive stop -> ok end end), ok = pg:join(echo, P), \
         true = register(dash_probe, P), P end",
    );
    // A registration whose node never answers (its port is held where nobody listens): shown
    // with its roles, as unreachable.
    let ghost_short = format!("dbghost_{tag}");
    let ghost_port = testkit::closed_port();
    let mut ghost_info = epmd::NodeInfo::new(ghost_short.clone(), ghost_port.port());
    ghost_info.extra = epmd::roles::encode_roles(&["cache", "httpd"]).unwrap();
    let _ghost = epmd::Client::new("localhost", epmd_port)
        .register(ghost_info)
        .await
        .expect("ghost registers");
    let host = a_name.split('@').nth(1).unwrap().to_owned();
    let ghost_name = format!("{ghost_short}@{host}");

    // The snapshot is also served as JSON.
    let state_ready = dashboard
        .next_snapshot(0)
        .await
        .expect("dashboard publishes");
    assert!(state_ready.seq >= 1);
    let (status, body) =
        tokio::task::block_in_place(|| http(http_port, "GET", "/state.json", None))
            .expect("GET /state.json");
    assert_eq!(status, 200);
    let state: serde_json::Value = serde_json::from_str(&body).expect("state.json is JSON");
    assert_eq!(state["dashboard_node"], dashboard.node_name());

    let browser = tokio::task::block_in_place(|| Browser::start(&chromium, &chromedriver))
        .unwrap_or_else(|e| panic!("browser: {e}"));
    let loaded = Instant::now();
    tokio::task::block_in_place(|| browser.goto(&dashboard.url())).expect("page loads");

    // Both nodes, their connection, the group with its member, the registered name, the
    // roles of the node that never answers.
    shown(&browser, "initial cluster", SETUP, |d| {
        d.live.as_deref() == Some("live")
            && d.nodes.get(&a_name).map(String::as_str) == Some("up")
            && d.nodes.get(&b_name).map(String::as_str) == Some("up")
            && has_edge(d, &a_name, &b_name)
            && members_on(d, "echo", &a_name).len() == 1
            && d.registered
                .get(&a_name)
                .is_some_and(|r| r.iter().any(|n| n == "dash_probe"))
            && d.nodes.get(&ghost_name).map(String::as_str) == Some("unreachable")
            && d.roles.get(&ghost_name).map(String::as_str) == Some("cache,httpd")
    })
    .await;
    println!(
        "dashboard: page loaded and rendered {} ms after navigation began",
        loaded.elapsed().as_millis()
    );
    let dom = tokio::task::block_in_place(|| read_dom(&browser));
    assert!(
        !dom.nodes.contains_key(dashboard.node_name()),
        "the dashboard's own node is not shown"
    );
    // Marks this page load: a reload would lose it.
    tokio::task::block_in_place(|| browser.eval("window.__testMarker = 4242; return null;"))
        .expect("set marker");

    // A third node joins and connects to A.
    let spawned = Instant::now();
    let mut c = start_erl(&erl, &format!("dbc_{tag}"), epmd_port, &beams);
    let c_name = c.name().to_owned();
    let c_boot = spawned.elapsed();
    let join = shown(&browser, "third node up (from its boot done)", LIVE, |d| {
        d.nodes.get(&c_name).map(String::as_str) == Some("up")
    })
    .await;
    println!(
        "dashboard: third node: erl boot took {} ms, so {} ms from spawn",
        c_boot.as_millis(),
        (c_boot + join).as_millis()
    );
    assert_eq!(ok(&mut c, &format!("net_adm:ping('{a_name}')")), "pong");
    let edge = shown(&browser, "new connection A-C", LIVE, |d| {
        has_edge(d, &a_name, &c_name)
    })
    .await;

    // A group change: a process on B joins `echo`.
    ok(
        &mut b,
        "begin P = spawn(fun() -> receive stop -> ok end end), ok = pg:join(echo, P), P end",
    );
    let group = shown(&browser, "second member in echo", LIVE, |d| {
        members_on(d, "echo", &a_name).len() == 1 && members_on(d, "echo", &b_name).len() == 1
    })
    .await;

    // The third node dies.
    tokio::task::block_in_place(|| drop(c));
    let death = shown(&browser, "third node gone", LIVE, |d| {
        d.nodes.get(&c_name).is_none_or(|status| status == "gone") && !has_edge(d, &a_name, &c_name)
    })
    .await;

    let dom = tokio::task::block_in_place(|| read_dom(&browser));
    assert_eq!(dom.marker, Some(4242), "the page was not reloaded");
    assert!(dom.seq.is_some());
    if let Ok(dir) = std::env::var("DASHBOARD_SCREENSHOT") {
        let png = tokio::task::block_in_place(|| browser.screenshot()).expect("screenshot");
        std::fs::write(&dir, png).expect("write screenshot");
        println!("dashboard: screenshot in {dir}");
    }
    println!(
        "dashboard latencies: join {} ms, connection {} ms, group change {} ms, death {} ms",
        join.as_millis(),
        edge.as_millis(),
        group.as_millis(),
        death.as_millis()
    );

    drop(browser);
    drop((a, b));
    dashboard.shutdown().await;
}
