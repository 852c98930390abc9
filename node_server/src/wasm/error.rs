//! [`WasmError`]: why a module did not load or an actor did not start.

use crate::kinds::KindError;
use crate::sources::{ModuleHash, SourceError};

/// Why a module could not be loaded, or a wasm actor registered or started.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WasmError {
    /// The module is larger than [`super::WasmLimits::max_module_bytes`].
    #[error("module of {size} bytes is over the limit of {limit} bytes")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not a valid WebAssembly module (truncated, malformed, or failing
    /// validation).
    #[error("not a valid WebAssembly module: {0}")]
    Invalid(String),
    /// A required export is missing.
    #[error("the module does not export {name} ({expected})")]
    MissingExport {
        /// The export's name.
        name: &'static str,
        /// What it should be.
        expected: &'static str,
    },
    /// An export of the ABI has the wrong type.
    #[error("export {name} of the module is {found}, expected {expected}")]
    BadExport {
        /// The export's name.
        name: &'static str,
        /// What it should be.
        expected: &'static str,
        /// What it is.
        found: String,
    },
    /// The module imports something the host does not give.
    #[error("the module imports {module}.{name} ({found}): {why}")]
    BadImport {
        /// The import's module.
        module: String,
        /// The import's name.
        name: String,
        /// Its type.
        found: String,
        /// What is wrong.
        why: String,
    },
    /// The module's initial memory is over the cap.
    #[error("the module's memory starts at {pages} pages, over the cap of {limit}")]
    MemoryTooLarge {
        /// Its initial pages.
        pages: u64,
        /// The cap.
        limit: u32,
    },
    /// A bad hash, or a module from another node that the source authority refused
    /// ([`crate::sources`]).
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The node to fetch a module from could not be asked, or did not give it.
    #[error("could not fetch module {hash} from {node}: {reason}")]
    Fetch {
        /// The module.
        hash: ModuleHash,
        /// The node asked.
        node: String,
        /// Why.
        reason: String,
    },
    /// No module with that hash is loaded here.
    #[error("no module {0} is loaded")]
    UnknownModule(ModuleHash),
    /// A module was asked to run as a version of a kind that has native (Rust) versions.
    #[error(
        "kind {name} has a native version ({name}/{version}): a module cannot be a version of it"
    )]
    NativeKind {
        /// The kind's name.
        name: String,
        /// Its native version.
        version: u32,
    },
    /// The kind could not be registered.
    #[error(transparent)]
    Kind(#[from] KindError),
    /// The actor did not start: instantiation or its `init` failed.
    #[error("actor of module {module} did not start: {reason}")]
    StartFailed {
        /// The module.
        module: ModuleHash,
        /// Why.
        reason: String,
    },
}
