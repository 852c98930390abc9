//! # nodectl
//!
//! Operate Erlang-distribution nodes from the command line: nodes of this workspace
//! (`node_server`) and Erlang/OTP nodes alike, through the interfaces every Erlang node has
//! (EPMD, `net_kernel`, `rpc`).
//!
//! ```text
//! nodectl [--cookie C] [--epmd-port P] [--timeout SECS] [--json] COMMAND
//!   cookie [--force]                    write a new random ~/.erlang.cookie (mode 0400)
//!   list-servers [--host H]             nodes in EPMD: name, port, type, roles
//!   lookup NAME | lookup --role ROLE    one node, or the nodes with a role
//!   ping NODE [ACTOR] [-c N]            OK and the round trip, or why not
//!   list-actors NODE                    registered names
//!   list-connections NODE               connected nodes, hidden or visible
//!   info NODE                           version, uptime, processes, memory, counters
//!   rpc NODE MODULE FUNCTION [ARG ...]  arguments and result in Erlang syntax
//!   eval NODE EXPR                      Erlang expressions on a node of ours, printed as
//!                                       the Erlang shell prints them (node_server::eval)
//!   repl NODE                           an interactive Erlang shell on a node of ours
//!                                       (bindings kept; q(). or Ctrl-D leaves, the node
//!                                       keeps running)
//!   list-kinds NODE                     spawnable kinds of a node of ours (name/version)
//!   spawn [--on NODE | --strategy S] [--via NODE] [--register NAME] [--source HASH]
//!         KIND [ARG ...]                start a kind where a placement says; pid and node
//!   load NODE FILE [--key KEYFILE]      load a WebAssembly module; prints sha256:<hex>
//!   unload NODE HASH                    unload a module
//!   list-sources NODE                   the modules loaded: hash, size, kinds, actors
//!   shutdown NODE [ACTOR] [--kill]      init:stop/0, or exit(whereis(ACTOR), shutdown)
//!   shutdown --all --force [--host H]   init:stop/0 on every node in EPMD
//! ```
//!
//! It joins the cluster as a hidden node (not registered with EPMD) with the cookie from
//! `--cookie`, else `ERLANG_COOKIE`, else `~/.erlang.cookie`. Text output by default, one
//! JSON object with `"ok"` under `--json`; exit status 0 on success, 1 with one line saying
//! why on failure (`unknown: ...`, `refused cookie: ...`, `timeout: ...`, `refused: ...` for
//! a node's admin guard), 2 for a wrong command line.
//!
//! `spawn` places with [`node_server::placement`]: without `--via`, nodectl's own node
//! decides ([`node_server::Node::spawn_on`]), with `--via NODE` that node does
//! (`node_server:spawn/3`). The default strategy is `random`. Round-robin's turn lives on the
//! deciding node, per kind, in memory: NODE's with `--via`; without it, nodectl's node, which
//! lives for one command, so each run starts over at the first candidate.
//!
//! The crate is a library with a thin binary: [`client`] holds the typed queries (a
//! dashboard reuses them), [`report`] the text and JSON forms, [`cli`] the command line.
#![forbid(unsafe_code)]

pub mod cli;
pub mod client;
pub mod error;
pub mod pretty;
pub mod repl;
pub mod report;
pub mod sources;

pub use error::CtlError;
