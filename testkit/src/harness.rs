//! Small pieces every async interop test repeats: logging, bounded waits, compiled helpers.

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// Routes `tracing` output to the test harness's captured output when `RUST_LOG` is set (the
/// first call wins; later ones do nothing).
pub fn init_logging() {
    if std::env::var_os("RUST_LOG").is_some() {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
    }
}

/// Awaits `fut` for at most `limit`.
///
/// # Panics
/// When `fut` takes longer, with `what` in the message.
pub async fn within<T>(what: &str, limit: Duration, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(limit, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?}: {what}"))
}

/// The directories of compiled `dir/NAME.erl` for each name, compiled once per test process
/// (see [`crate::compile_erlang`]), for `erl -pa`.
///
/// # Panics
/// As [`crate::compile_erlang`].
pub fn compile_erlang_once(dir: &Path, names: &[&str]) -> Vec<PathBuf> {
    static COMPILED: OnceLock<Mutex<HashMap<PathBuf, PathBuf>>> = OnceLock::new();
    let cache = COMPILED.get_or_init(Mutex::default);
    names
        .iter()
        .map(|name| {
            let src = dir.join(format!("{name}.erl"));
            let mut compiled = cache.lock().unwrap_or_else(|e| e.into_inner());
            compiled
                .entry(src.clone())
                .or_insert_with(|| crate::compile_erlang(&src))
                .clone()
        })
        .collect()
}

/// An actor that hands every message it gets to a channel the test reads (see [`forwarder`]).
pub struct Forward<M>(std::marker::PhantomData<fn() -> M>);

impl<M: ractor::Message> ractor::Actor for Forward<M> {
    type Msg = M;
    type State = tokio::sync::mpsc::UnboundedSender<M>;
    type Arguments = tokio::sync::mpsc::UnboundedSender<M>;

    async fn pre_start(
        &self,
        _me: ractor::ActorRef<M>,
        tx: Self::Arguments,
    ) -> Result<Self::State, ractor::ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle(
        &self,
        _me: ractor::ActorRef<M>,
        msg: M,
        tx: &mut Self::State,
    ) -> Result<(), ractor::ActorProcessingErr> {
        let _ = tx.send(msg);
        Ok(())
    }
}

/// Spawns a [`Forward`] actor; returns it and the channel it fills.
///
/// # Panics
/// When the actor does not start.
pub async fn forwarder<M: ractor::Message>(
) -> (ractor::ActorRef<M>, tokio::sync::mpsc::UnboundedReceiver<M>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (actor, _) = ractor::Actor::spawn(None, Forward(std::marker::PhantomData), tx)
        .await
        .expect("testkit: forwarder starts");
    (actor, rx)
}

/// An actor that reports, on a channel the test reads, the stop reason of each actor linked to
/// it (ractor's `ActorTerminated`; see [`stop_watcher`]).
pub struct StopWatcher;

impl ractor::Actor for StopWatcher {
    type Msg = ();
    type State = tokio::sync::mpsc::UnboundedSender<Option<String>>;
    type Arguments = tokio::sync::mpsc::UnboundedSender<Option<String>>;

    async fn pre_start(
        &self,
        _me: ractor::ActorRef<()>,
        tx: Self::Arguments,
    ) -> Result<Self::State, ractor::ActorProcessingErr> {
        Ok(tx)
    }

    async fn handle_supervisor_evt(
        &self,
        _me: ractor::ActorRef<()>,
        event: ractor::SupervisionEvent,
        tx: &mut Self::State,
    ) -> Result<(), ractor::ActorProcessingErr> {
        if let ractor::SupervisionEvent::ActorTerminated(_, _, reason) = event {
            let _ = tx.send(reason);
        }
        Ok(())
    }
}

/// Spawns a [`StopWatcher`]; returns it and the channel of stop reasons. Link an actor to it
/// with `actor.get_cell().link(watcher.get_cell())`.
///
/// # Panics
/// When the actor does not start.
pub async fn stop_watcher() -> (
    ractor::ActorRef<()>,
    tokio::sync::mpsc::UnboundedReceiver<Option<String>>,
) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let (actor, _) = ractor::Actor::spawn(None, StopWatcher, tx)
        .await
        .expect("testkit: stop watcher starts");
    (actor, rx)
}

/// Runs `openssl ARGS` in `dir` (60 s at most) and panics with its stderr unless it
/// succeeds: for tests that make their own certificates.
pub fn openssl(dir: &Path, args: &[&str]) {
    let out = crate::output_within(
        std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir),
        Duration::from_secs(60),
    )
    .expect("openssl runs (CI installs it)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
