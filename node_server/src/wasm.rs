//! Actor kinds from WebAssembly modules (cargo feature `wasm`): a module is loaded by its
//! bytes, named by their hash, and each actor started from it runs in a sandbox of its own.
//!
//! ```no_run
//! # async fn demo(node: node_server::Node) -> Result<(), Box<dyn std::error::Error>> {
//! use node_server::kinds::KindSpec;
//! let bytes = std::fs::read("examples/guests/counter.wasm")?;
//! let hash = node.load_wasm(&bytes)?; // sha256:2b1f...
//! node.spawnable_wasm(KindSpec::new("counter_wasm"), &hash)?;
//! // Erlang: spawn(Node, counter_wasm, start, [5]); Node::spawn_on(.., "counter_wasm", ..) too.
//! let (actor, pid) = node.spawn_wasm(&hash, vec![node_server::etf::Term::Int(5)]).await?;
//! # let _ = (actor, pid);
//! # Ok(()) }
//! ```
//!
//! # Modules
//! A module is named by [`ModuleHash`], `sha256:<64 lowercase hex>` of its bytes. Loading
//! ([`crate::Node::load_wasm`]) checks the size ([`WasmLimits::max_module_bytes`]), parses and
//! validates the whole module, and checks it against the guest ABI below (the exports it must
//! have, the imports it may have, its initial memory against
//! [`WasmLimits::max_memory_pages`]); each failure is a [`WasmError`] that says what is wrong.
//! Loading the same bytes again changes nothing. The loaded modules of a node are kept by hash
//! ([`crate::Node::wasm_modules`]); a kind registered with [`crate::Node::spawnable_wasm`]
//! starts actors from one of them, so Erlang's `spawn(Node, Kind, start, Args)` and
//! [`crate::Node::spawn_on`] start wasm actors as they start native kinds ([`crate::kinds`]).
//!
//! Loading with [`crate::Node::load_wasm`] is the node's own Rust code giving it bytes it
//! trusts. Modules from other nodes (a load by rpc, `nodectl load`, or a fetch for a spawn)
//! pass the source authority first ([`crate::sources`]); see the `cluster` part below for
//! fetching, kinds and versions, and unloading.
//!
//! # Sandboxes and limits
//! Each actor has its own instance (its own linear memory and globals) in its own store. Per
//! actor, [`WasmLimits`] caps the fuel one message may burn (roughly one unit per
//! instruction, host calls charged by the bytes they move) and the pages its memory may grow
//! to. The guest runs on the actor's task while it handles a message; fuel bounds how long.
//!
//! An actor ends, with an Erlang exit reason its links and monitors see, when its guest:
//!
//! | what | exit reason |
//! |---|---|
//! | calls `exit(Reason)` | `Reason` (`normal` is a normal exit) |
//! | traps (`unreachable`, an access outside its memory, division by zero, stack overflow) | `{wasm_trap, <<"what">>}` |
//! | burns all the fuel of one message (an endless loop) | `{wasm_out_of_fuel, FuelPerMessage}` |
//! | grows its memory past the cap | `{wasm_memory_limit, MaxPages}` |
//! | hands a host function a pointer/length outside its memory, bytes that are not ETF, a term of the wrong shape (a garbage reply), or returns such a region from `alloc` | `{wasm_badarg, Function, <<"what">>}` |
//! | fails in `init` | the same reasons: the spawn fails with `{start_failed, Text}` |
//!
//! The node and every other actor go on.
//!
//! # Guest ABI
//! All pointers and lengths are `i32` (read as unsigned) into the guest's exported memory;
//! every term crossing, in or out, is ETF bytes starting with the version byte 131 (the
//! node's [`crate::etf`] encodes and decodes them). The host bounds-checks every region the
//! guest hands it.
//!
//! The guest **exports**:
//!
//! | export | type | when |
//! |---|---|---|
//! | `memory` | memory | required: its linear memory (not imported) |
//! | `alloc` | `(len: i32) -> i32` | required: before each term the host writes, a region of `len` bytes the host may fill; it must stay untouched until the following call (`init`, `handle`, `handle_call`) returns, and the guest may reuse it after |
//! | `handle` | `(ptr: i32, len: i32)` | required: a message (`Pid ! Msg`, `gen_server:cast`, a timer's message) |
//! | `init` | `(ptr: i32, len: i32)` | optional: once, before any message, with the spawn's argument list (`[5]` for `spawn(N, K, start, [5])`) |
//! | `handle_call` | `(ptr: i32, len: i32)` | optional: a `gen_server:call` request; the guest answers with `reply`. Without the export, or without a reply, the caller gets no answer (it times out) |
//!
//! The host **imports** it may use, all from module `erl` (a module may import any subset,
//! nothing else):
//!
//! | import | type | what |
//! |---|---|---|
//! | `send` | `(dest_ptr, dest_len, msg_ptr, msg_len: i32) -> i32` | `Dest ! Msg`: `Dest` a pid, an atom (a name registered on this node) or `{Name, Node}`; returns 0 |
//! | `reply` | `(ptr, len: i32)` | the reply to the call being handled; only inside `handle_call`, at most once |
//! | `self_pid` | `(buf, cap: i32) -> i32` | writes the ETF of the actor's pid to `buf` when it fits in `cap` bytes; returns its length either way |
//! | `node_name` | `(buf, cap: i32) -> i32` | the node's name (UTF-8), by the same rule |
//! | `log` | `(level, ptr, len: i32)` | logs UTF-8 text (0 error, 1 warn, 2 info, 3 debug, other trace) with the actor's pid |
//! | `send_after` | `(ms: i64, msg_ptr, msg_len: i32) -> i32` | after `ms` milliseconds (0 to 2^32-1) `handle` gets the message; returns 0. At most 1024 pending per actor |
//! | `exit` | `(ptr, len: i32)` | ends the actor with the reason term; does not return |
//!
//! Host functions cost fuel: 100 units plus one per byte they move.
//!
//! Writing ETF by hand is not needed: `examples/guests/etf.wat` is a small encoder/decoder
//! for WAT guests (tuples, atoms, integers, pids, skipping any term), spliced into a guest by
//! `cargo run --example build_guest` (see `examples/guests/counter.wat`, the `counter` kind
//! of `echo_node` as a guest).

mod actor;
mod cluster;
mod error;
mod host;
mod limits;
mod module;
mod registry;
mod sandbox;

pub use crate::sources::{ModuleHash, SourceAuthority, SourceError, SourceLoad};
pub use actor::{WasmActor, WasmMsg};
pub(crate) use cluster::install;
pub use cluster::FETCH_TIMEOUT;
pub use error::WasmError;
pub use limits::WasmLimits;
pub use module::WasmModule;
pub use registry::{ModuleInfo, WasmModules};

use std::sync::Arc;

use ractor::ActorRef;

use crate::etf::{Pid, Term};
use crate::kinds::{KindInfo, KindSpec};
use crate::node::Node;

impl Node {
    /// The WebAssembly modules loaded on this node, by hash.
    pub fn wasm_modules(&self) -> Arc<WasmModules> {
        WasmModules::of(self.shared())
    }

    /// Loads a WebAssembly module with the default [`WasmLimits`]: validates and compiles it
    /// and keeps it under its hash, which it returns (the same bytes again: the same hash,
    /// nothing changes). See the [module docs](crate::wasm) for what a module must be.
    pub fn load_wasm(&self, bytes: &[u8]) -> Result<ModuleHash, WasmError> {
        self.load_wasm_with(bytes, WasmLimits::default())
    }

    /// [`Node::load_wasm`] with limits of its own for the module and its actors. Loading
    /// bytes already loaded keeps the module as it was, limits included.
    pub fn load_wasm_with(
        &self,
        bytes: &[u8],
        limits: WasmLimits,
    ) -> Result<ModuleHash, WasmError> {
        Ok(self.wasm_modules().load(bytes, limits)?.hash())
    }

    /// Registers spawnable kind `spec` (see [`crate::kinds`]) whose actors run the loaded
    /// module `hash`: `init` gets the spawn's argument list as it is.
    pub fn spawnable_wasm(&self, spec: KindSpec, hash: &ModuleHash) -> Result<KindInfo, WasmError> {
        let modules = self.wasm_modules();
        modules.get(hash)?;
        let _naming = crate::lock(&modules.naming);
        let info = actor::register_kind(self.shared(), spec, *hash)?;
        // Recorded, so an unload takes the kind with the module.
        modules.add_kind(hash, &info.name, info.version);
        Ok(info)
    }

    /// Starts an actor from the loaded module `hash` on this node with the argument list
    /// `args`; the actor is a child of the node server, as spawned kinds are. An `init` that
    /// fails is [`WasmError::StartFailed`].
    pub async fn spawn_wasm(
        &self,
        hash: &ModuleHash,
        args: Vec<Term>,
    ) -> Result<(ActorRef<WasmMsg>, Pid), WasmError> {
        let module = self.wasm_modules().get(hash)?;
        actor::spawn(self.shared(), module, args).await
    }
}

/// `module` with a custom section of `padding` zero bytes appended (named `pad`): a module
/// of another hash and size that behaves the same, for tests and benchmarks of module
/// handling (`wasm_bench` fetches a 1 MiB one).
pub fn padded(module: &[u8], padding: usize) -> Vec<u8> {
    fn leb(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let b = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }
    let name = b"pad";
    let mut body = Vec::with_capacity(padding + 8);
    leb(name.len(), &mut body);
    body.extend_from_slice(name);
    body.resize(body.len() + padding, 0);
    let mut out = module.to_vec();
    out.push(0);
    leb(body.len(), &mut out);
    out.extend_from_slice(&body);
    out
}

#[cfg(test)]
mod tests;
