//! `nodectl load`, `unload` and `list-sources`: WebAssembly modules on a node of ours (its
//! `node_server_wasm` rpc functions; see `node_server::wasm` and `node_server::sources`).

use node_server::etf::Term;
use node_server::sources::ModuleHash;
use serde::Serialize;

use crate::client::Ctl;
use crate::error::CtlError;

/// A module loaded on a node, as `list-sources` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// `sha256:<hex>`.
    pub hash: String,
    /// Its size in bytes.
    pub size: u64,
    /// The kinds that start it (`name/version`).
    pub kinds: Vec<String>,
    /// How many actors run it now.
    pub actors: u64,
}

/// The text of `{error, Text}`, or `None` for any other answer.
fn error_text(reply: &Term) -> Option<String> {
    match reply.as_tuple() {
        Some([e, Term::Binary(t)]) if e.is_atom("error") => {
            Some(String::from_utf8_lossy(t).into_owned())
        }
        _ => None,
    }
}

impl Ctl {
    /// `node_server_wasm:Function(Args)` on `target`; a node without it is not ours (or was
    /// built without the `wasm` feature).
    async fn wasm_rpc(
        &self,
        target: &str,
        function: &str,
        args: Vec<Term>,
    ) -> Result<Term, CtlError> {
        match self
            .rpc_raw(target, "node_server_wasm", function, args)
            .await?
        {
            Ok(reply) => match error_text(&reply) {
                Some(reason) => Err(CtlError::Source {
                    node: target.to_owned(),
                    reason,
                }),
                None => Ok(reply),
            },
            Err(reason) if crate::client::is_undef(&reason) => Err(CtlError::NotOurs {
                node: target.to_owned(),
                function: format!(
                    "node_server_wasm:{function} (a node of ours built with the wasm feature)"
                ),
            }),
            Err(reason) => Err(CtlError::from_badrpc(target, &self.us(), &reason)),
        }
    }

    /// Loads `bytes` on `target`, with `HMAC-SHA256(key, bytes)` when a key is given; the
    /// module's hash.
    pub async fn load_source(
        &self,
        target: &str,
        bytes: Vec<u8>,
        key: Option<&[u8]>,
    ) -> Result<ModuleHash, CtlError> {
        let mac = key.map_or_else(
            || Term::atom("undefined"),
            |k| Term::binary(node_server::sources::mac(k, &bytes)),
        );
        let reply = self
            .wasm_rpc(target, "load", vec![Term::binary(bytes), mac])
            .await?;
        match reply.as_tuple() {
            Some([ok, Term::Binary(hash)]) if ok.is_atom("ok") => String::from_utf8_lossy(hash)
                .parse()
                .map_err(|_| Self::unexpected(target, &reply)),
            _ => Err(Self::unexpected(target, &reply)),
        }
    }

    /// Unloads module `hash` from `target`.
    pub async fn unload_source(&self, target: &str, hash: &ModuleHash) -> Result<(), CtlError> {
        let reply = self
            .wasm_rpc(target, "unload", vec![Term::binary(hash.to_string())])
            .await?;
        if reply.is_atom("ok") {
            Ok(())
        } else {
            Err(Self::unexpected(target, &reply))
        }
    }

    /// The modules loaded on `target`.
    pub async fn list_sources(&self, target: &str) -> Result<Vec<Source>, CtlError> {
        let reply = self.wasm_rpc(target, "list", vec![]).await?;
        let bad = || Self::unexpected(target, &reply);
        let Term::List(items) = &reply else {
            return Err(bad());
        };
        items
            .iter()
            .map(|item| {
                let Term::Map(m) = item else {
                    return Err(bad());
                };
                let get = |k: &str| m.get(&Term::atom(k));
                let text = |t: &Term| match t {
                    Term::Binary(b) => Some(String::from_utf8_lossy(b).into_owned()),
                    _ => None,
                };
                let int = |t: &Term| t.as_i64().and_then(|i| u64::try_from(i).ok());
                Ok(Source {
                    hash: get("hash").and_then(text).ok_or_else(bad)?,
                    size: get("size").and_then(int).ok_or_else(bad)?,
                    kinds: match get("kinds") {
                        Some(Term::List(k)) => k.iter().filter_map(text).collect(),
                        _ => Vec::new(),
                    },
                    actors: get("actors").and_then(int).unwrap_or(0),
                })
            })
            .collect()
    }
}
