//! [`EvalPeer`]: a distributed `erl -sname` node running `tests/erlang/eval_peer.erl`, which
//! evaluates one Erlang expression per line and answers `ok ~0p-of-value` or `error ...`.

use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::peer::ErlPeer;

/// An `erl -sname` node running `eval_peer`, registered with the EPMD on `epmd_port` (it
/// starts none of its own).
pub struct EvalPeer {
    peer: ErlPeer,
    name: String,
}

impl EvalPeer {
    /// Starts `erl -sname SNAME -setcookie COOKIE -start_epmd false` with `ERL_EPMD_PORT` set,
    /// the directories of `code_paths` (compiled `eval_peer` and helpers) on the code path,
    /// and `reply_timeout` for each answer. Learns the node's full name.
    pub fn start(
        erl: &Path,
        sname: &str,
        cookie: &str,
        epmd_port: u16,
        code_paths: &[PathBuf],
        reply_timeout: Duration,
    ) -> io::Result<EvalPeer> {
        let mut builder = ErlPeer::builder(erl, "eval_peer")
            .args([
                "-sname",
                sname,
                "-setcookie",
                cookie,
                "-start_epmd",
                "false",
            ])
            .env("ERL_EPMD_PORT", epmd_port.to_string())
            .reply_timeout(reply_timeout);
        for dir in code_paths {
            builder = builder.code_path(dir);
        }
        let mut peer = EvalPeer {
            peer: builder.start()?,
            name: String::new(),
        };
        peer.name = peer.ok("node()").trim_matches('\'').to_owned();
        Ok(peer)
    }

    /// [`EvalPeer::start`] from async code (with `block_in_place`, see
    /// [`EvalPeer::ok_in_place`]).
    ///
    /// # Panics
    /// When the node does not start, with the reason.
    pub fn start_in_place(
        erl: &Path,
        sname: &str,
        cookie: &str,
        epmd_port: u16,
        code_paths: &[PathBuf],
        reply_timeout: Duration,
    ) -> EvalPeer {
        tokio::task::block_in_place(|| {
            EvalPeer::start(erl, sname, cookie, epmd_port, code_paths, reply_timeout)
        })
        .unwrap_or_else(|e| panic!("cannot start erl {sname}: {e}"))
    }

    /// The node's full name (`name@host`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Evaluates `expr` and returns the reply line.
    ///
    /// Keep `expr` ASCII: `eval_peer`'s stdin is a Latin-1 device, so each byte of a UTF-8
    /// character becomes a character of its own (`"ö"` evaluates to `[195, 182]`). Write
    /// other characters as `\x{...}` escapes.
    pub fn eval(&mut self, expr: &str) -> String {
        self.peer.request(expr)
    }

    /// Evaluates `expr`, which must succeed; returns the `~0p` text of its value. Panics with
    /// the reply and the node's diagnostics otherwise.
    pub fn ok(&mut self, expr: &str) -> String {
        let reply = self.eval(expr);
        match reply.strip_prefix("ok ") {
            Some(value) => value.to_owned(),
            None => panic!(
                "{expr} failed: {}\n{}",
                crate::truncate(&reply, 2000),
                self.peer.diagnostics()
            ),
        }
    }

    /// [`EvalPeer::ok`] from async code: runs on the current tokio worker thread with
    /// `block_in_place`, so other tasks (our node's) keep running meanwhile. Needs the
    /// multi-threaded runtime.
    pub fn ok_in_place(&mut self, expr: &str) -> String {
        tokio::task::block_in_place(|| self.ok(expr))
    }

    /// The underlying peer.
    pub fn peer_mut(&mut self) -> &mut ErlPeer {
        &mut self.peer
    }

    /// The underlying peer, to shut it down and learn its exit status.
    pub fn into_peer(self) -> ErlPeer {
        self.peer
    }
}
