//! Loadable code from other nodes: what names a module (its [`ModuleHash`]), and who approves
//! a module before this node runs it (its [`SourceAuthority`]). The engine that runs modules is
//! `node_server::wasm` (cargo feature `wasm`); this part has no engine, so a client (`nodectl`)
//! computes hashes and authentication codes with it.
//!
//! # The source authority
//! A node accepts a module from another node (a load by rpc, or a fetch it makes for a spawn)
//! only when [`crate::NodeConfig::source_authority`] is set:
//! - [`SourceAuthority::hmac_key`]: a load carries `HMAC-SHA256(key, module bytes)`, which the
//!   loader computes with the same key ([`SourceAuthority::mac`], `nodectl load --key`); a
//!   missing or wrong code refuses the load. A node serving a module to another (a fetch)
//!   sends the code with it: its own when it has the key, else the one the module came with.
//! - [`SourceAuthority::validator`]: a function of the owner's (it may ask an actor) that sees
//!   the module ([`SourceLoad`]) and approves or refuses it with a reason, as Thespian's
//!   Source Authority does.
//!
//! Without one, every load from another node is refused ([`SourceError::NoAuthority`]).
//! Loads by the node's own Rust code ([`crate::Node`]'s `load_wasm`) are the owner's own and
//! are not checked.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hmac::{Hmac, Mac};
use sha2::Sha256;

mod hash;

pub use hash::ModuleHash;

/// The shortest HMAC key a source authority takes, in bytes.
pub const MIN_KEY_BYTES: usize = 16;

/// Why a module from elsewhere was refused, or a hash did not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A string that is not `sha256:<64 hex>`.
    #[error("bad module hash {0:?}: expected sha256:<64 hex digits>")]
    BadHash(String),
    /// The node has no source authority: it loads nothing from other nodes.
    #[error("this node has no source authority: it loads no modules from other nodes (NodeConfig::source_authority, echo_node --sources-key)")]
    NoAuthority,
    /// The load carried no authentication code, and the authority wants one.
    #[error("the module {0} came without an HMAC-SHA256 code, which this node's source authority requires")]
    MissingMac(ModuleHash),
    /// The authentication code does not match (a wrong key, or changed bytes).
    #[error(
        "the HMAC-SHA256 code of module {0} does not match: wrong key, or the bytes were changed"
    )]
    BadMac(ModuleHash),
    /// An HMAC key shorter than [`MIN_KEY_BYTES`]: a guessable key would let anyone with the
    /// cookie load code.
    #[error(
        "an HMAC key of {0} bytes is too short: a source authority's key has at least 16 bytes"
    )]
    WeakKey(usize),
    /// The validator refused the module.
    #[error("the source authority refused module {hash}: {reason}")]
    Refused {
        /// The module.
        hash: ModuleHash,
        /// The validator's reason.
        reason: String,
    },
    /// Fetched bytes whose hash is not the one asked for.
    #[error("the bytes fetched for {expected} hash to {got}")]
    HashMismatch {
        /// The hash asked for.
        expected: ModuleHash,
        /// What the bytes hash to.
        got: ModuleHash,
    },
}

/// A module offered to this node from elsewhere, as the source authority sees it.
#[derive(Debug, Clone)]
pub struct SourceLoad {
    /// The hash of its bytes.
    pub hash: ModuleHash,
    /// Its bytes.
    pub bytes: bytes::Bytes,
    /// The authentication code it came with, if any.
    pub mac: Option<Vec<u8>>,
    /// The node it came from.
    pub from: String,
}

type Validate =
    dyn Fn(SourceLoad) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send>> + Send + Sync;

/// Who approves modules from other nodes (see the module docs).
#[derive(Clone)]
pub struct SourceAuthority(Kind);

#[derive(Clone)]
enum Kind {
    Hmac(Arc<[u8]>),
    Validator(Arc<Validate>),
}

impl std::fmt::Debug for SourceAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self.0 {
            Kind::Hmac(_) => "SourceAuthority::Hmac(..)",
            Kind::Validator(_) => "SourceAuthority::Validator(..)",
        })
    }
}

impl SourceAuthority {
    /// Modules must carry `HMAC-SHA256(key, bytes)`; a key shorter than [`MIN_KEY_BYTES`] is
    /// [`SourceError::WeakKey`].
    pub fn hmac_key(key: impl AsRef<[u8]>) -> Result<SourceAuthority, SourceError> {
        let key = key.as_ref();
        if key.len() < MIN_KEY_BYTES {
            return Err(SourceError::WeakKey(key.len()));
        }
        Ok(SourceAuthority(Kind::Hmac(key.into())))
    }

    /// Modules are approved (`Ok`) or refused (`Err(reason)`) by `validate`.
    pub fn validator<F, Fut>(validate: F) -> SourceAuthority
    where
        F: Fn(SourceLoad) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        SourceAuthority(Kind::Validator(Arc::new(move |load| {
            Box::pin(validate(load))
        })))
    }

    /// `HMAC-SHA256(key, bytes)` with this authority's key; `None` for a validator.
    pub fn mac(&self, bytes: &[u8]) -> Option<[u8; 32]> {
        match &self.0 {
            Kind::Hmac(key) => Some(mac(key, bytes)),
            Kind::Validator(_) => None,
        }
    }

    /// Approves `load` or says why not.
    pub async fn check(&self, load: SourceLoad) -> Result<(), SourceError> {
        match &self.0 {
            Kind::Hmac(key) => {
                let given = load
                    .mac
                    .as_ref()
                    .ok_or(SourceError::MissingMac(load.hash))?;
                let mut m = new_mac(key);
                m.update(&load.bytes);
                // In constant time.
                m.verify_slice(given)
                    .map_err(|_| SourceError::BadMac(load.hash))
            }
            Kind::Validator(validate) => {
                let hash = load.hash;
                validate(load)
                    .await
                    .map_err(|reason| SourceError::Refused { hash, reason })
            }
        }
    }
}

fn new_mac(key: &[u8]) -> Hmac<Sha256> {
    // HMAC takes keys of any length.
    match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts every key length"),
    }
}

/// A key from a file: its contents, one trailing newline trimmed (`echo_node --sources-key`,
/// `nodectl load --key`).
pub fn read_key(path: &std::path::Path) -> std::io::Result<Vec<u8>> {
    let mut key = std::fs::read(path)?;
    if key.ends_with(b"\n") {
        key.pop();
    }
    Ok(key)
}

/// `HMAC-SHA256(key, bytes)`: what a loader sends with a module for a node whose source
/// authority has `key` (`nodectl load --key`).
pub fn mac(key: &[u8], bytes: &[u8]) -> [u8; 32] {
    let mut m = new_mac(key);
    m.update(bytes);
    m.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(bytes: &'static [u8], mac: Option<Vec<u8>>) -> SourceLoad {
        SourceLoad {
            hash: ModuleHash::of(bytes),
            bytes: bytes::Bytes::from_static(bytes),
            mac,
            from: "a@h".into(),
        }
    }

    #[tokio::test]
    async fn hmac_authority_checks_the_code() {
        assert_eq!(
            SourceAuthority::hmac_key("short").unwrap_err(),
            SourceError::WeakKey(5)
        );
        assert!(SourceAuthority::hmac_key("").is_err());
        let auth = SourceAuthority::hmac_key("a secret of 16+ bytes").unwrap();
        let good = auth.mac(b"module").unwrap().to_vec();
        assert_eq!(good, mac(b"a secret of 16+ bytes", b"module"));
        // RFC 4231 test case 2.
        assert_eq!(
            hex(&mac(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert_eq!(
            auth.check(load(b"module", Some(good.clone()))).await,
            Ok(())
        );
        let h = ModuleHash::of(b"module");
        assert_eq!(
            auth.check(load(b"module", None)).await,
            Err(SourceError::MissingMac(h))
        );
        let mut bad = good;
        bad[0] ^= 1;
        assert_eq!(
            auth.check(load(b"module", Some(bad))).await,
            Err(SourceError::BadMac(h))
        );
        assert_eq!(
            auth.check(load(b"module", Some(vec![1, 2]))).await,
            Err(SourceError::BadMac(h))
        );
    }

    #[tokio::test]
    async fn a_validator_approves_or_refuses() {
        let auth = SourceAuthority::validator(|load: SourceLoad| async move {
            if load.bytes.starts_with(b"ok") {
                Ok(())
            } else {
                Err(format!("{} bytes from {}: no", load.bytes.len(), load.from))
            }
        });
        assert_eq!(auth.mac(b"x"), None);
        assert_eq!(auth.check(load(b"ok then", None)).await, Ok(()));
        assert_eq!(
            auth.check(load(b"nope", None)).await,
            Err(SourceError::Refused {
                hash: ModuleHash::of(b"nope"),
                reason: "4 bytes from a@h: no".into()
            })
        );
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }
}
