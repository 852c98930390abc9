//! [`Sandbox`]: one actor's instance of a module, in a store of its own, run under its
//! limits. Every failure of the guest is an exit reason (see the [`crate::wasm`] docs).

use bytes::BytesMut;
use wasmi::{Memory, Store, TypedFunc};

use super::host::{badarg, region, Host, HostState};
use super::module::WasmModule;
use crate::etf::Term;

type Entry = TypedFunc<(i32, i32), ()>;

/// An instance of a module for one actor.
pub(crate) struct Sandbox {
    store: Store<HostState>,
    memory: Memory,
    alloc: TypedFunc<i32, i32>,
    handle: Entry,
    init: Option<Entry>,
    handle_call: Option<Entry>,
    fuel: u64,
    max_pages: u32,
    /// The ETF of the term being handed in (kept to save an allocation per message).
    buf: BytesMut,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("fuel", &self.fuel)
            .field("max_pages", &self.max_pages)
            .finish_non_exhaustive()
    }
}

/// The exit reason `{wasm_trap, <<Text>>}`.
fn trap(text: &str) -> Term {
    Term::tuple(vec![Term::atom("wasm_trap"), Term::binary(text)])
}

/// The exit reason of a wasm error in the guest (or in a host function it called).
fn reason_of(
    store: &mut Store<HostState>,
    fuel: u64,
    max_pages: u32,
    error: &wasmi::Error,
) -> Term {
    if let Some(fault) = store.data_mut().fault.take() {
        return fault;
    }
    if std::mem::take(&mut store.data_mut().cap.hit) {
        return Term::tuple(vec![
            Term::atom("wasm_memory_limit"),
            Term::Int(i64::from(max_pages)),
        ]);
    }
    if error.as_trap_code() == Some(wasmi::TrapCode::OutOfFuel) {
        return Term::tuple(vec![
            Term::atom("wasm_out_of_fuel"),
            Term::Int(i64::try_from(fuel).unwrap_or(i64::MAX)),
        ]);
    }
    trap(&error.to_string())
}

impl Sandbox {
    /// Instantiates `module` for an actor in `host`'s world (without calling `init`): the
    /// exit reason when the module's start function fails.
    pub fn new(module: &WasmModule, host: Box<dyn Host>) -> Result<Sandbox, Term> {
        let limits = module.limits();
        let (fuel, max_pages) = (limits.fuel_per_message(), limits.max_memory_pages());
        let engine = module.module.engine().clone();
        let mut store = Store::new(&engine, HostState::new(host, limits.max_memory_bytes()));
        store.limiter(|state| &mut state.cap);
        // Fails only when the engine meters no fuel, and ours does.
        store.set_fuel(fuel).map_err(|e| trap(&e.to_string()))?;
        let instance = match module
            .linker
            .instantiate_and_start(&mut store, &module.module)
        {
            Ok(instance) => instance,
            Err(e) => return Err(reason_of(&mut store, fuel, max_pages, &e)),
        };
        // The module was checked at load: these do not happen.
        let missing = |what: &str| trap(&format!("no export {what}"));
        let memory = instance
            .get_memory(&store, "memory")
            .ok_or_else(|| missing("memory"))?;
        store.data_mut().memory = Some(memory);
        let alloc = instance
            .get_typed_func::<i32, i32>(&store, "alloc")
            .map_err(|_| missing("alloc"))?;
        let handle = instance
            .get_typed_func::<(i32, i32), ()>(&store, "handle")
            .map_err(|_| missing("handle"))?;
        let entry = |name: &str, present: bool| {
            present
                .then(|| instance.get_typed_func::<(i32, i32), ()>(&store, name).ok())
                .flatten()
        };
        let init = entry("init", module.has_init);
        let handle_call = entry("handle_call", module.has_handle_call);
        Ok(Sandbox {
            store,
            memory,
            alloc,
            handle,
            init,
            handle_call,
            fuel,
            max_pages,
            buf: BytesMut::with_capacity(256),
        })
    }

    fn fail(&mut self, error: &wasmi::Error) -> Term {
        reason_of(&mut self.store, self.fuel, self.max_pages, error)
    }

    /// Refills the fuel, writes `term` into memory the guest allocates, and calls `entry`.
    fn enter(&mut self, entry: Entry, term: &Term) -> Result<(), Term> {
        self.buf.clear();
        term.encode_into(&mut self.buf);
        let Ok(len) = i32::try_from(self.buf.len()) else {
            return Err(badarg("alloc", "a term over 2 GiB"));
        };
        self.store.set_fuel(self.fuel).map_err(|e| self.fail(&e))?;
        let ptr = match self.alloc.call(&mut self.store, len) {
            Ok(ptr) => ptr,
            Err(e) => return Err(self.fail(&e)),
        };
        let data = self.memory.data_mut(&mut self.store);
        match region(data.len(), ptr, len) {
            Ok((start, end)) => data[start..end].copy_from_slice(&self.buf),
            Err(why) => return Err(badarg("alloc", &why)),
        }
        match entry.call(&mut self.store, (ptr, len)) {
            Ok(()) => Ok(()),
            Err(e) => Err(self.fail(&e)),
        }
    }

    /// Runs `init` with the spawn's argument list (nothing when the module has no `init`).
    pub fn init(&mut self, args: &Term) -> Result<(), Term> {
        match self.init {
            Some(init) => self.enter(init, args),
            None => Ok(()),
        }
    }

    /// Hands the guest a message.
    pub fn handle(&mut self, msg: &Term) -> Result<(), Term> {
        self.enter(self.handle, msg)
    }

    /// Hands the guest a call: its reply, if it gave one.
    pub fn handle_call(&mut self, request: &Term) -> Result<Option<Term>, Term> {
        let Some(entry) = self.handle_call else {
            return Ok(None);
        };
        let state = self.store.data_mut();
        state.in_call = true;
        state.reply = None;
        let result = self.enter(entry, request);
        let state = self.store.data_mut();
        state.in_call = false;
        let reply = state.reply.take();
        result.map(|()| reply)
    }

    /// The pages of memory the guest has now.
    #[cfg(test)]
    pub fn memory_pages(&self) -> u64 {
        self.memory.size(&self.store)
    }
}
