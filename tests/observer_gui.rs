//! OTP's observer GUI (wx, under Xvfb) shows a node of ours: it switches to our node, every
//! tab opens without crashing observer, the System tab shows our node's version, the
//! Processes tab counts our node's processes, and a screenshot of each tab is saved (under
//! `target/tmp/observer_gui/`, for a human to look at).
//!
//! Needs Erlang/OTP with its wx application (Debian's `erlang-observer` pulls in
//! `erlang-wx`), `Xvfb`, `xwd` and netpbm's `xwdtopnm`/`pnmtopng`: skipped on a developer
//! machine without them, fails in CI (`CI=true`). The OTP 27 and 29 that CI unpacks beside
//! Debian's have no wx (it would take GTK from those suites too): with `TESTKIT_OTP`
//! pointing at a release without wx the test says so and passes; the OTP 25 run covers it.

use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use node_server::eval::{Bindings, NodeEnv};
use node_server::NodeConfig;
use ractor::Actor;
use testkit::{ChildGuard, Epmd};

#[path = "../examples/echo_node/services.rs"]
mod services;

const COOKIE: &str = "observer_gui_cookie";

/// Whether `erl` has the wx application.
fn has_wx(erl: &Path) -> bool {
    let out = testkit::output_within(
        Command::new(erl).args([
            "-noshell",
            "-eval",
            "io:format(\"~p\", [code:which(wx)]), halt().",
        ]),
        Duration::from_secs(30),
    )
    .expect("erl runs");
    !String::from_utf8_lossy(&out.stdout).contains("non_existing")
}

/// `tool`, or `None` (a failure in CI) when it is not installed.
fn require(tool: &str, package: &str) -> Option<()> {
    if testkit::find_executable(tool).is_some() {
        return Some(());
    }
    assert!(!testkit::in_ci(), "{tool} is missing (install {package})");
    eprintln!("{tool} is missing (install {package}): test skipped");
    None
}

/// An X server of its own: Xvfb picks a free display and writes its number.
fn start_xvfb() -> (ChildGuard, String) {
    let mut xvfb = ChildGuard::spawn(
        Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x900x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null()),
        "Xvfb",
    )
    .expect("Xvfb starts");
    let stdout = xvfb.child_mut().stdout.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = std::io::BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let display = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("Xvfb names its display");
    (xvfb, format!(":{}", display.trim()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observer_shows_our_node_in_every_tab() {
    testkit::init_logging();
    let Some(erl) = testkit::require_erl() else {
        return;
    };
    if !has_wx(&erl) {
        if std::env::var_os("TESTKIT_OTP").is_some() {
            eprintln!("this release has no wx (observer's GUI): test skipped");
            return;
        }
        assert!(
            !testkit::in_ci(),
            "Erlang's wx is missing (install erlang-observer)"
        );
        eprintln!("Erlang's wx is missing: test skipped");
        return;
    }
    for (tool, package) in [
        ("Xvfb", "xvfb"),
        ("xwd", "x11-apps"),
        ("xwdtopnm", "netpbm"),
        ("pnmtopng", "netpbm"),
    ] {
        let Some(()) = require(tool, package) else {
            return;
        };
    }
    let (_xvfb, display) = start_xvfb();
    let epmd = Epmd::start();
    let id = std::process::id();
    let node = NodeConfig::new(format!("ogr_{id}"))
        .cookie(COOKIE)
        .epmd("localhost", epmd.port())
        .start()
        .await
        .expect("node starts");
    let (kv, _) = Actor::spawn(None, services::Kv, ()).await.expect("kv");
    node.register("kv", &kv).expect("registered");
    let ours = node.name().to_owned();

    let beams = testkit::compile_erlang_once(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/erlang"),
        &["observer_drive"],
    );
    let shots = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("observer_gui");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let mut cmd = Command::new(&erl);
    cmd.env("DISPLAY", &display)
        .env("ERL_EPMD_PORT", epmd.port().to_string())
        .args([
            "-sname",
            &format!("ogo_{id}"),
            "-setcookie",
            COOKIE,
            "-noshell",
        ])
        .arg("-pa")
        .args(&beams)
        .args(["-run", "observer_drive", "main", &ours])
        .arg(&shots);
    let out = tokio::task::block_in_place(|| {
        testkit::output_within(&mut cmd, Duration::from_secs(180)).expect("erl runs")
    });
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let report = || format!("{text}\nstderr:\n{}", String::from_utf8_lossy(&out.stderr));
    let lines: Vec<&str> = text.lines().collect();
    assert!(
        lines.contains(&"done"),
        "the drive did not finish:\n{}",
        report()
    );
    assert!(
        lines.contains(&format!("node {ours}").as_str()),
        "observer shows our node:\n{}",
        report()
    );
    let version = format!("label node_server {}", env!("CARGO_PKG_VERSION"));
    assert!(
        lines.contains(&version.as_str()),
        "the System tab shows our version ({version}):\n{}",
        report()
    );
    let tabs: Vec<&str> = lines
        .iter()
        .filter(|l| l.starts_with("tab "))
        .copied()
        .collect();
    for name in [
        "System",
        "Memory Allocators",
        "Applications",
        "Processes",
        "Ports",
        "Table Viewer",
    ] {
        assert!(
            tabs.iter()
                .any(|t| t.contains(&format!(" {name} alive true"))),
            "tab {name} opened and observer runs: {tabs:?}\n{}",
            report()
        );
    }
    assert!(
        tabs.iter().all(|t| t.ends_with("alive true")),
        "{tabs:?}\n{}",
        report()
    );
    for bad in ["CRASH REPORT", "ERROR REPORT", "crashed"] {
        assert!(
            !text.contains(bad),
            "{bad} in observer's output:\n{}",
            report()
        );
    }
    let processes: usize = node_server::eval::eval(
        "length(erlang:processes()).",
        &mut Bindings::new(),
        &NodeEnv::new(&node),
    )
    .await
    .text()
    .parse()
    .expect("a count");
    // Ours, and the collector observer spawned to list them (it lists itself, as on Erlang):
    // no Load Charts sampler is left over from that tab.
    let listed = processes + 1;
    assert!(
        lines.contains(&format!("status Number of Processes: {listed}").as_str()),
        "the Processes tab lists our {processes} processes and its collector:\n{}",
        report()
    );
    for i in 0..tabs.len() {
        let shot = shots.join(format!("tab{i}.png"));
        let size = std::fs::metadata(&shot).map_or(0, |m| m.len());
        assert!(size > 4096, "{} is {size} bytes", shot.display());
    }
    eprintln!("observer screenshots: {}", shots.display());
    node.shutdown().await;
}
