//! Modules across nodes: loads from other nodes through the source authority
//! ([`crate::sources`]), fetching a module from the node that asks for a spawn, kinds named
//! for a module (versions side by side), unloading, and the rpc functions behind them
//! (`nodectl load`, `unload`, `list-sources`, `spawn --source`).
//!
//! | rpc | answer |
//! |---|---|
//! | `node_server_wasm:load(Bytes, Mac)` | `{ok, <<"sha256:...">>}` or `{error, Text}`; `Mac` is the 32-byte `HMAC-SHA256(key, Bytes)` or `undefined` |
//! | `node_server_wasm:unload(Hash)` | `ok` or `{error, Text}`; refused on a node without a source authority (modules are managed from other nodes only where they may load them) |
//! | `node_server_wasm:list()` | `[#{hash, size, kinds, actors}]`, hashes and kinds as binaries |
//! | `node_server_wasm:fetch(Hash)` | `{ok, Bytes, Mac}` (`Mac`: this node's own code when its authority has a key, else the code the module came with, else `undefined`) or `{error, Text}` |
//! | `node_server_wasm:prepare(Hash, Kind)` | makes sure the module is here (fetched from the calling node when not, checked against the hash and the source authority; one fetch at a time), and that a version of kind `Kind` starts it: `{ok, <<"Kind/N">>}` or `{error, Text}`; refused without a source authority, and for a kind name that has native versions |
//!
//! # Kinds and versions
//! A module runs as a spawnable kind ([`crate::kinds`]). The first time kind `counter` is
//! asked for module `H` on a node ([`crate::Node::wasm_kind`], a spawn with
//! [`crate::placement::SpawnOpts::source`]), the node registers `counter/N` for it, `N` one
//! above the highest version of `counter` there; asked again, it gives the same version. So
//! modules of one kind run side by side, actors of each keep running, and a bare `counter`
//! (Erlang's `spawn(Node, counter, start, Args)`) starts the newest: the node's default for
//! that name is the module most recently named for it. Unloading a module removes its kind
//! versions (a bare name then starts the newest left).

use std::time::Duration;

use std::future::Future;
use std::pin::Pin;

use crate::etf::Term;
use crate::kinds::{KindSpec, Kinds};
use crate::node::Node;
use crate::rpc::RpcFailure;
use crate::sources::{ModuleHash, SourceError, SourceLoad};

use super::{WasmError, WasmLimits};

/// How long a fetch of a module from another node may take.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

impl Node {
    /// Loads a module that node `from` sent, after the source authority approves it
    /// ([`crate::sources`]; without one the load is refused).
    pub async fn load_wasm_from(
        &self,
        bytes: bytes::Bytes,
        mac: Option<Vec<u8>>,
        from: &str,
    ) -> Result<ModuleHash, WasmError> {
        let limits = WasmLimits::default();
        if bytes.len() > limits.max_module_bytes() {
            return Err(WasmError::TooLarge {
                size: bytes.len(),
                limit: limits.max_module_bytes(),
            });
        }
        let authority = self
            .shared()
            .id
            .config
            .source_authority
            .clone()
            .ok_or(SourceError::NoAuthority)?;
        let hash = ModuleHash::of(&bytes);
        authority
            .check(SourceLoad {
                hash,
                bytes: bytes.clone(),
                mac: mac.clone(),
                from: from.to_owned(),
            })
            .await?;
        Ok(self
            .wasm_modules()
            .load_with_mac(&bytes, limits, mac)?
            .hash())
    }

    /// Unloads module `hash` from this node: new spawns from it fail naming the hash, its
    /// kind versions go, actors running it keep running until they stop, and its memory is
    /// freed after the last one.
    pub fn unload_wasm(&self, hash: &ModuleHash) -> Result<(), WasmError> {
        let kinds = self
            .wasm_modules()
            .unload(hash)
            .ok_or(WasmError::UnknownModule(*hash))?;
        let registered = Kinds::of(self.shared());
        for (name, version) in kinds {
            registered.remove(&name, version);
        }
        Ok(())
    }

    /// The kind that starts module `hash` under `name` on this node, as `name/N` (see the
    /// module docs): registered now when there is none yet. When the module is not here and
    /// `from` names a node, it is fetched from there first.
    pub async fn wasm_kind(
        &self,
        hash: &ModuleHash,
        name: &str,
        from: Option<&str>,
    ) -> Result<String, WasmError> {
        let modules = self.wasm_modules();
        if modules.get(hash).is_err() {
            match from {
                Some(from) if from != self.name() => self.fetch_wasm(hash, from).await?,
                _ => return Err(WasmError::UnknownModule(*hash)),
            }
        }
        // The version is chosen, registered and recorded in one step (no await in it).
        let _naming = crate::lock(&modules.naming);
        if let Some(v) = modules.kind_version(hash, name) {
            return Ok(format!("{name}/{v}"));
        }
        let kinds = Kinds::of(self.shared());
        let versions = kinds.versions(name);
        if let Some(native) = versions.iter().find(|v| !modules.is_wasm_kind(name, **v)) {
            return Err(WasmError::NativeKind {
                name: name.to_owned(),
                version: *native,
            });
        }
        // Unloaded meanwhile: nothing registered.
        modules.get(hash)?;
        let version = versions.last().map_or(1, |v| v + 1);
        let full = format!("{name}/{version}");
        super::actor::register_kind(self.shared(), KindSpec::new(full.clone()), *hash)?;
        modules.add_kind(hash, name, version);
        Ok(full)
    }

    /// Fetches module `hash` from node `from` and loads it (checked against the hash and the
    /// source authority).
    async fn fetch_wasm(&self, hash: &ModuleHash, from: &str) -> Result<(), WasmError> {
        // One fetch at a time; a fetch of the same module that finished meanwhile is enough.
        let modules = self.wasm_modules();
        let _fetching = modules.fetching.lock().await;
        if modules.get(hash).is_ok() {
            return Ok(());
        }
        let failed = |reason: String| WasmError::Fetch {
            hash: *hash,
            node: from.to_owned(),
            reason,
        };
        let reply = self
            .rpc(
                from,
                "node_server_wasm",
                "fetch",
                vec![Term::binary(hash.to_string())],
                FETCH_TIMEOUT,
            )
            .await
            .map_err(|e| failed(e.to_string()))?;
        let (bytes, mac) = match reply.as_tuple() {
            Some([ok, Term::Binary(bytes), mac]) if ok.is_atom("ok") => (
                bytes.clone(),
                match mac {
                    Term::Binary(m) => Some(m.to_vec()),
                    _ => None,
                },
            ),
            Some([error, Term::Binary(why)]) if error.is_atom("error") => {
                return Err(failed(String::from_utf8_lossy(why).into_owned()))
            }
            _ => return Err(failed(format!("unexpected answer {reply}"))),
        };
        let got = ModuleHash::of(&bytes);
        if got != *hash {
            return Err(SourceError::HashMismatch {
                expected: *hash,
                got,
            }
            .into());
        }
        self.load_wasm_from(bytes, mac, from).await.map(|_| ())
    }
}

/// What an rpc function of this module gives.
type Answer = Pin<Box<dyn Future<Output = Term> + Send>>;

/// `{error, Text}`.
fn error(e: impl std::fmt::Display) -> Term {
    Term::tuple(vec![Term::atom("error"), Term::binary(e.to_string())])
}

/// A hash given as a binary or a string.
fn hash_arg(t: &Term) -> Result<ModuleHash, Term> {
    let text = match t {
        Term::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        Term::Atom(a) => a.as_str().to_owned(),
        other => other.to_string(),
    };
    text.parse::<ModuleHash>().map_err(error)
}

/// A name given as a binary or an atom.
fn name_arg(t: &Term) -> Option<String> {
    match t {
        Term::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
        Term::Atom(a) => Some(a.as_str().to_owned()),
        _ => None,
    }
}

/// Registers the `node_server_wasm` functions on a starting node.
pub(crate) fn install(node: &Node) {
    let weak = std::sync::Arc::downgrade(node.shared());
    let reg = |function: &str, arity: usize, f: fn(Node, Vec<Term>) -> Answer| {
        let weak = weak.clone();
        node.register_fn("node_server_wasm", function, move |args| {
            let node = weak.upgrade().and_then(|core| Node::from_core(&core));
            async move {
                let Some(node) = node else {
                    return Err(RpcFailure::Exit(Term::atom("shutdown")));
                };
                if args.len() != arity {
                    return Err(RpcFailure::Error(Term::atom("undef")));
                }
                Ok(f(node, args).await)
            }
        });
    };
    reg("load", 2, |node, args| {
        Box::pin(async move {
            let [Term::Binary(bytes), mac] = &args[..] else {
                return error("load(Bytes, Mac): Bytes must be a binary");
            };
            let mac = match mac {
                Term::Binary(m) => Some(m.to_vec()),
                _ => None,
            };
            let from = crate::rpc::current_caller_node()
                .map_or_else(|| "?".to_owned(), |a| a.as_str().to_owned());
            match node.load_wasm_from(bytes.clone(), mac, &from).await {
                Ok(hash) => Term::tuple(vec![Term::atom("ok"), Term::binary(hash.to_string())]),
                Err(e) => {
                    tracing::warn!(%from, error = %e, "a module load refused");
                    error(e)
                }
            }
        })
    });
    reg("unload", 1, |node, args| {
        Box::pin(async move {
            // Modules are managed from other nodes only where loading from them is allowed.
            if node.shared().id.config.source_authority.is_none() {
                return error(SourceError::NoAuthority);
            }
            match hash_arg(&args[0]) {
                Ok(hash) => match node.unload_wasm(&hash) {
                    Ok(()) => Term::atom("ok"),
                    Err(e) => error(e),
                },
                Err(e) => e,
            }
        })
    });
    reg("list", 0, |node, _| {
        Box::pin(async move {
            Term::list(
                node.wasm_modules()
                    .info()
                    .into_iter()
                    .map(|m| {
                        Term::Map(crate::etf::Map::from_iter([
                            (Term::atom("hash"), Term::binary(m.hash.to_string())),
                            (Term::atom("size"), Term::Int(m.size as i64)),
                            (
                                Term::atom("kinds"),
                                Term::list(
                                    m.kinds.into_iter().map(Term::binary).collect::<Vec<_>>(),
                                ),
                            ),
                            (Term::atom("actors"), Term::Int(m.actors as i64)),
                        ]))
                    })
                    .collect::<Vec<_>>(),
            )
        })
    });
    reg("fetch", 1, |node, args| {
        Box::pin(async move {
            let hash = match hash_arg(&args[0]) {
                Ok(h) => h,
                Err(e) => return e,
            };
            let modules = node.wasm_modules();
            match modules.get(&hash) {
                Ok(module) => {
                    let authority = node.shared().id.config.source_authority.clone();
                    let mac = authority
                        .and_then(|a| a.mac(module.bytes()).map(|m| m.to_vec()))
                        .or_else(|| modules.mac(&hash));
                    Term::tuple(vec![
                        Term::atom("ok"),
                        Term::Binary(module.bytes().clone()),
                        mac.map_or_else(|| Term::atom("undefined"), Term::binary),
                    ])
                }
                Err(e) => error(e),
            }
        })
    });
    reg("prepare", 2, |node, args| {
        Box::pin(async move {
            if node.shared().id.config.source_authority.is_none() {
                return error(SourceError::NoAuthority);
            }
            let hash = match hash_arg(&args[0]) {
                Ok(h) => h,
                Err(e) => return e,
            };
            let Some(kind) = name_arg(&args[1]) else {
                return error("prepare(Hash, Kind): Kind is a name");
            };
            // Fetched from the node that asks, never from a node it names.
            let from = crate::rpc::current_caller_node().map(|a| a.as_str().to_owned());
            match node.wasm_kind(&hash, &kind, from.as_deref()).await {
                Ok(full) => Term::tuple(vec![Term::atom("ok"), Term::binary(full)]),
                Err(e) => error(e),
            }
        })
    });
}
