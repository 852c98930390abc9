//! [`WasmModules`]: the modules loaded on a node, by hash (a service slot of the core).

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use wasmi::{Config, Engine, Linker};

use super::error::WasmError;
use super::hash::ModuleHash;
use super::host::HostState;
use super::limits::WasmLimits;
use super::module::WasmModule;
use crate::core::Core;

/// The modules loaded on a node, by hash, and the engine that runs them.
pub struct WasmModules {
    engine: Engine,
    linker: Arc<Linker<HostState>>,
    by_hash: RwLock<BTreeMap<ModuleHash, Arc<WasmModule>>>,
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
        if bytes.len() <= limits.max_module_bytes() {
            if let Some(m) = crate::read(&self.by_hash).get(&ModuleHash::of(bytes)) {
                return Ok(m.clone());
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
            .or_insert(module)
            .clone())
    }

    /// The module loaded as `hash`.
    pub fn get(&self, hash: &ModuleHash) -> Result<Arc<WasmModule>, WasmError> {
        crate::read(&self.by_hash)
            .get(hash)
            .cloned()
            .ok_or(WasmError::UnknownModule(*hash))
    }

    /// The hashes loaded, in order.
    pub fn list(&self) -> Vec<ModuleHash> {
        crate::read(&self.by_hash).keys().copied().collect()
    }
}
