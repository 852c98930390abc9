//! [`WasmModules`]: the modules loaded on a node, by hash (a service slot of the core).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use wasmi::{Config, Engine, Linker};

use super::error::WasmError;
use super::host::HostState;
use super::limits::WasmLimits;
use super::module::WasmModule;
use crate::core::Core;
use crate::sources::ModuleHash;

/// The modules loaded on a node, by hash, and the engine that runs them.
pub struct WasmModules {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    by_hash: RwLock<BTreeMap<ModuleHash, Entry>>,
    /// Held while a kind version is chosen and registered for a module, so two modules
    /// never get the same version of a name.
    pub(crate) naming: std::sync::Mutex<()>,
    /// Held while a module is fetched from another node: one fetch at a time.
    pub(crate) fetching: tokio::sync::Mutex<()>,
}

/// A loaded module, the code it came with, and the kinds registered for it.
struct Entry {
    module: Arc<WasmModule>,
    mac: Option<Vec<u8>>,
    kinds: Vec<(String, u32)>,
}

/// What [`WasmModules::info`] tells of one module.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleInfo {
    /// Its hash.
    pub hash: ModuleHash,
    /// Its size in bytes.
    pub size: usize,
    /// The kinds that start it, as `name/version`.
    pub kinds: Vec<String>,
    /// The actors running it now.
    pub actors: usize,
}

impl std::fmt::Debug for WasmModules {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmModules")
            .field("loaded", &self.list())
            .finish_non_exhaustive()
    }
}

impl Default for WasmModules {
    /// None loaded; an engine that meters fuel.
    fn default() -> WasmModules {
        let mut config = Config::default();
        config.consume_fuel(true);
        let engine = Engine::new(&config);
        // Our own definitions, each once: this cannot fail.
        let linker = match super::host::linker(&engine) {
            Ok(l) => l,
            Err(e) => unreachable!("host functions defined twice: {e}"),
        };
        WasmModules {
            engine,
            linker: Arc::new(linker),
            by_hash: RwLock::new(BTreeMap::new()),
            naming: std::sync::Mutex::new(()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }
}

impl WasmModules {
    /// The modules of `core`'s node, made on first use.
    pub(crate) fn of(core: &Core) -> Arc<WasmModules> {
        core.services.get_or_insert(WasmModules::default)
    }

    /// Loads `bytes` with `limits` (see [`crate::Node::load_wasm`]): the module, the one
    /// already loaded when the bytes were loaded before.
    pub fn load(&self, bytes: &[u8], limits: WasmLimits) -> Result<Arc<WasmModule>, WasmError> {
        self.load_with_mac(bytes, limits, None)
    }

    /// [`WasmModules::load`], keeping the authentication code the module came with (sent on
    /// when another node fetches it).
    pub(crate) fn load_with_mac(
        &self,
        bytes: &[u8],
        limits: WasmLimits,
        mac: Option<Vec<u8>>,
    ) -> Result<Arc<WasmModule>, WasmError> {
        if bytes.len() <= limits.max_module_bytes() {
            if let Some(e) = crate::write(&self.by_hash).get_mut(&ModuleHash::of(bytes)) {
                if e.mac.is_none() {
                    e.mac = mac;
                }
                return Ok(e.module.clone());
            }
        }
        let module = Arc::new(WasmModule::compile(
            &self.engine,
            &self.linker,
            bytes,
            limits,
        )?);
        Ok(crate::write(&self.by_hash)
            .entry(module.hash())
            .or_insert(Entry {
                module,
                mac,
                kinds: Vec::new(),
            })
            .module
            .clone())
    }

    /// The module loaded as `hash`.
    pub fn get(&self, hash: &ModuleHash) -> Result<Arc<WasmModule>, WasmError> {
        crate::read(&self.by_hash)
            .get(hash)
            .map(|e| e.module.clone())
            .ok_or(WasmError::UnknownModule(*hash))
    }

    /// The authentication code module `hash` came with, if any.
    pub(crate) fn mac(&self, hash: &ModuleHash) -> Option<Vec<u8>> {
        crate::read(&self.by_hash).get(hash)?.mac.clone()
    }

    /// The hashes loaded, in order.
    pub fn list(&self) -> Vec<ModuleHash> {
        crate::read(&self.by_hash).keys().copied().collect()
    }

    /// Each module loaded, in hash order.
    pub fn info(&self) -> Vec<ModuleInfo> {
        crate::read(&self.by_hash)
            .iter()
            .map(|(hash, e)| ModuleInfo {
                hash: *hash,
                size: e.module.size(),
                kinds: e.kinds.iter().map(|(n, v)| format!("{n}/{v}")).collect(),
                // Each running actor holds the module once, the registry once.
                actors: Arc::strong_count(&e.module) - 1,
            })
            .collect()
    }

    /// The version of kind `name` that starts module `hash`, if one does.
    pub(crate) fn kind_version(&self, hash: &ModuleHash, name: &str) -> Option<u32> {
        crate::read(&self.by_hash)
            .get(hash)?
            .kinds
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
    }

    /// Records that version `version` of kind `name` starts module `hash`; false when the
    /// module is not loaded (any more).
    pub(crate) fn add_kind(&self, hash: &ModuleHash, name: &str, version: u32) -> bool {
        match crate::write(&self.by_hash).get_mut(hash) {
            Some(e) => {
                e.kinds.push((name.to_owned(), version));
                true
            }
            None => false,
        }
    }

    /// Whether version `version` of kind `name` starts one of the loaded modules.
    pub(crate) fn is_wasm_kind(&self, name: &str, version: u32) -> bool {
        crate::read(&self.by_hash)
            .values()
            .any(|e| e.kinds.iter().any(|(n, v)| n == name && *v == version))
    }

    /// Forgets module `hash`: the kinds that started it, or `None` when it was not loaded.
    /// Actors running it keep it until they stop.
    pub(crate) fn unload(&self, hash: &ModuleHash) -> Option<Vec<(String, u32)>> {
        crate::write(&self.by_hash).remove(hash).map(|e| e.kinds)
    }
}
