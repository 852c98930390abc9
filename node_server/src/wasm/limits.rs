//! [`WasmLimits`]: what one module and each of its actors may use.

/// Limits of a loaded module and of each actor started from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WasmLimits {
    max_module_bytes: usize,
    fuel_per_message: u64,
    max_memory_pages: u32,
}

impl Default for WasmLimits {
    /// 16 MiB modules, 10 million units of fuel per message (some milliseconds), 256 pages
    /// (16 MiB) of memory per actor.
    fn default() -> WasmLimits {
        WasmLimits {
            max_module_bytes: 16 << 20,
            fuel_per_message: 10_000_000,
            max_memory_pages: 256,
        }
    }
}

impl WasmLimits {
    /// The largest module accepted, in bytes.
    pub fn max_module_bytes(&self) -> usize {
        self.max_module_bytes
    }

    /// The fuel one message (or `init`) may burn.
    pub fn fuel_per_message(&self) -> u64 {
        self.fuel_per_message
    }

    /// The most 64 KiB pages an actor's memory may have.
    pub fn max_memory_pages(&self) -> u32 {
        self.max_memory_pages
    }

    /// Sets the largest module accepted.
    pub fn with_max_module_bytes(mut self, bytes: usize) -> WasmLimits {
        self.max_module_bytes = bytes;
        self
    }

    /// Sets the fuel per message (at least 1).
    pub fn with_fuel_per_message(mut self, fuel: u64) -> WasmLimits {
        self.fuel_per_message = fuel.max(1);
        self
    }

    /// Sets the memory cap in 64 KiB pages (at most 65536, 4 GiB).
    pub fn with_max_memory_pages(mut self, pages: u32) -> WasmLimits {
        self.max_memory_pages = pages.min(65536);
        self
    }

    /// The memory cap in bytes.
    pub(crate) fn max_memory_bytes(&self) -> usize {
        (self.max_memory_pages as usize).saturating_mul(65536)
    }
}
