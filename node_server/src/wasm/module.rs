//! [`WasmModule`]: a module validated, compiled and checked against the guest ABI.

use std::sync::Arc;

use wasmi::{Engine, ExternType, FuncType, Linker, ValType};

use super::error::WasmError;
use super::host::{HostState, IMPORTS, IMPORT_MODULE};
use super::limits::WasmLimits;
use crate::sources::ModuleHash;

/// A loaded module: what actors start from. Cheap to share (`Arc`).
pub struct WasmModule {
    hash: ModuleHash,
    /// Its bytes, for a node that fetches it from this one.
    bytes: bytes::Bytes,
    limits: WasmLimits,
    pub(crate) module: wasmi::Module,
    pub(crate) linker: Arc<Linker<HostState>>,
    pub(crate) has_init: bool,
    pub(crate) has_handle_call: bool,
}

impl std::fmt::Debug for WasmModule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmModule")
            .field("hash", &self.hash)
            .field("size", &self.bytes.len())
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// The exports of the ABI: name, required, parameters (all `i32`), results.
const EXPORTS: &[(&str, bool, &str, usize, usize)] = &[
    ("alloc", true, "a function (i32) -> i32", 1, 1),
    ("handle", true, "a function (i32, i32) -> ()", 2, 0),
    ("init", false, "a function (i32, i32) -> ()", 2, 0),
    ("handle_call", false, "a function (i32, i32) -> ()", 2, 0),
];

fn describe(ty: &ExternType) -> String {
    match ty {
        ExternType::Func(f) => format!("a function {:?} -> {:?}", f.params(), f.results()),
        ExternType::Memory(_) => "a memory".into(),
        ExternType::Table(_) => "a table".into(),
        ExternType::Global(_) => "a global".into(),
    }
}

fn all_i32(f: &FuncType, params: usize, results: usize) -> bool {
    f.params().len() == params
        && f.results().len() == results
        && f.params()
            .iter()
            .chain(f.results())
            .all(|t| *t == ValType::I32)
}

impl WasmModule {
    /// Checks the size, validates and compiles `bytes` on `engine`, and checks the module
    /// against the ABI and `limits`.
    pub(crate) fn compile(
        engine: &Engine,
        linker: &Arc<Linker<HostState>>,
        bytes: &[u8],
        limits: WasmLimits,
    ) -> Result<WasmModule, WasmError> {
        if bytes.len() > limits.max_module_bytes() {
            return Err(WasmError::TooLarge {
                size: bytes.len(),
                limit: limits.max_module_bytes(),
            });
        }
        let hash = ModuleHash::of(bytes);
        let module =
            wasmi::Module::new(engine, bytes).map_err(|e| WasmError::Invalid(e.to_string()))?;
        for import in module.imports() {
            let bad = |why: &str| WasmError::BadImport {
                module: import.module().chars().take(100).collect(),
                name: import.name().chars().take(100).collect(),
                found: describe(import.ty()),
                why: why.to_owned(),
            };
            if import.module() != IMPORT_MODULE {
                return Err(bad("imports come from module erl only"));
            }
            let Some((_, params, results)) = IMPORTS.iter().find(|(n, ..)| *n == import.name())
            else {
                return Err(bad("the host has no such function"));
            };
            match import.ty() {
                ExternType::Func(f) if f.params() == *params && f.results() == *results => {}
                _ => {
                    return Err(bad(&format!(
                        "the host's is a function {params:?} -> {results:?}"
                    )))
                }
            }
        }
        match module.get_export("memory") {
            Some(ExternType::Memory(m)) => {
                if m.minimum() > u64::from(limits.max_memory_pages()) {
                    return Err(WasmError::MemoryTooLarge {
                        pages: m.minimum(),
                        limit: limits.max_memory_pages(),
                    });
                }
            }
            Some(other) => {
                return Err(WasmError::BadExport {
                    name: "memory",
                    expected: "a memory",
                    found: describe(&other),
                })
            }
            None => {
                return Err(WasmError::MissingExport {
                    name: "memory",
                    expected: "a memory",
                })
            }
        }
        let mut present = [false; EXPORTS.len()];
        for (i, (name, required, expected, params, results)) in EXPORTS.iter().enumerate() {
            match module.get_export(name) {
                Some(ExternType::Func(f)) if all_i32(&f, *params, *results) => present[i] = true,
                Some(other) => {
                    return Err(WasmError::BadExport {
                        name,
                        expected,
                        found: describe(&other),
                    })
                }
                None if *required => return Err(WasmError::MissingExport { name, expected }),
                None => {}
            }
        }
        Ok(WasmModule {
            hash,
            bytes: bytes::Bytes::copy_from_slice(bytes),
            limits,
            module,
            linker: linker.clone(),
            has_init: present[2],
            has_handle_call: present[3],
        })
    }

    /// Its hash.
    pub fn hash(&self) -> ModuleHash {
        self.hash
    }

    /// Its size in bytes.
    pub fn size(&self) -> usize {
        self.bytes.len()
    }

    /// Its bytes.
    pub fn bytes(&self) -> &bytes::Bytes {
        &self.bytes
    }

    /// The limits it and its actors run with.
    pub fn limits(&self) -> WasmLimits {
        self.limits
    }
}
