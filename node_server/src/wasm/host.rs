//! The host side of the guest ABI (see the [`crate::wasm`] docs): what a guest may import,
//! the store data of a sandbox, and the host functions, which check every region the guest
//! hands them.

use wasmi::ResourceLimiter;
use wasmi::{Caller, Engine, Linker, Memory, ValType};
use wasmi_core::LimiterError;

use crate::etf::Term;

/// What a sandbox needs of the world: the actor's identity and its ways out.
pub(crate) trait Host: Send + Sync + 'static {
    /// The actor's pid, as a term.
    fn self_pid(&self) -> Term;
    /// The node's name.
    fn node_name(&self) -> &str;
    /// `dest ! msg`; an error says why `dest` is no destination.
    fn send(&self, dest: &Term, msg: Term) -> Result<(), String>;
    /// `msg` to the actor itself after `ms` milliseconds; an error says why not.
    fn send_after(&self, ms: u64, msg: Term) -> Result<(), String>;
    /// Logs `text` at `level` (0 error, 1 warn, 2 info, 3 debug, else trace).
    fn log(&self, level: i32, text: &str);
}

/// The module every import must come from.
pub(crate) const IMPORT_MODULE: &str = "erl";

/// The host functions a guest may import: name, parameters, results.
pub(crate) const IMPORTS: &[(&str, &[ValType], &[ValType])] = {
    use ValType::{I32, I64};
    &[
        ("send", &[I32, I32, I32, I32], &[I32]),
        ("reply", &[I32, I32], &[]),
        ("self_pid", &[I32, I32], &[I32]),
        ("node_name", &[I32, I32], &[I32]),
        ("log", &[I32, I32, I32], &[]),
        ("send_after", &[I64, I32, I32], &[I32]),
        ("exit", &[I32, I32], &[]),
    ]
};

/// Fuel a host call costs besides one unit per byte it moves.
const HOST_CALL_FUEL: u64 = 100;

/// Caps an instance's memory (the one thing a guest can grow without end) and tables.
#[derive(Debug)]
pub(crate) struct Cap {
    /// The most bytes of memory.
    pub max_memory_bytes: usize,
    /// Set when a growth past the cap was refused (the guest then traps).
    pub hit: bool,
}

/// The most elements of a table.
const MAX_TABLE_ELEMENTS: usize = 100_000;

impl ResourceLimiter for Cap {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        if desired > self.max_memory_bytes {
            self.hit = true;
            return Err(LimiterError::ResourceLimiterDeniedAllocation);
        }
        Ok(maximum.is_none_or(|m| desired <= m))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        maximum: Option<usize>,
    ) -> Result<bool, LimiterError> {
        Ok(desired <= MAX_TABLE_ELEMENTS && maximum.is_none_or(|m| desired <= m))
    }

    fn instances(&self) -> usize {
        1
    }

    fn tables(&self) -> usize {
        4
    }

    fn memories(&self) -> usize {
        1
    }
}

/// The data of a sandbox's store.
pub(crate) struct HostState {
    /// The memory cap.
    pub cap: Cap,
    /// The guest's memory, once instantiated.
    pub memory: Option<Memory>,
    /// The world.
    pub host: Box<dyn Host>,
    /// The actor's pid as ETF, made once.
    pub self_pid: Vec<u8>,
    /// Whether a call is being handled (`reply` allowed).
    pub in_call: bool,
    /// The reply given to the call being handled.
    pub reply: Option<Term>,
    /// Why the guest must end, set by a host function before it traps.
    pub fault: Option<Term>,
}

impl HostState {
    /// The state for a guest in `host`'s world with memory capped at `max_memory_bytes`.
    pub fn new(host: Box<dyn Host>, max_memory_bytes: usize) -> HostState {
        let self_pid = crate::message::encode_to_vec(&host.self_pid());
        HostState {
            cap: Cap {
                max_memory_bytes,
                hit: false,
            },
            memory: None,
            host,
            self_pid,
            in_call: false,
            reply: None,
            fault: None,
        }
    }
}

/// The exit reason `{wasm_badarg, Function, <<Why>>}`.
pub(crate) fn badarg(function: &str, why: &str) -> Term {
    Term::tuple(vec![
        Term::atom("wasm_badarg"),
        Term::atom(function),
        Term::binary(why),
    ])
}

/// Ends the guest with `reason`: the error its host function returns.
fn end(caller: &mut Caller<'_, HostState>, reason: Term) -> wasmi::Error {
    caller.data_mut().fault = Some(reason);
    wasmi::Error::new("the guest ends")
}

/// Ends the guest with `{wasm_badarg, Function, Why}`.
fn fail(caller: &mut Caller<'_, HostState>, function: &str, why: &str) -> wasmi::Error {
    end(caller, badarg(function, why))
}

/// Takes `HOST_CALL_FUEL + bytes` units of fuel; out of fuel ends the guest.
fn charge(caller: &mut Caller<'_, HostState>, bytes: usize) -> Result<(), wasmi::Error> {
    let cost = HOST_CALL_FUEL.saturating_add(bytes as u64);
    let fuel = caller.get_fuel()?;
    if fuel < cost {
        caller.set_fuel(0)?;
        // The same reason as fuel running out in the guest's own code.
        return Err(wasmi::Error::from(wasmi::TrapCode::OutOfFuel));
    }
    caller.set_fuel(fuel - cost)?;
    Ok(())
}

/// The byte range `ptr..ptr+len` of the guest's memory, checked.
pub(crate) fn region(memory_size: usize, ptr: i32, len: i32) -> Result<(usize, usize), String> {
    // The ABI's pointers and lengths are unsigned.
    let start = ptr as u32 as usize;
    let len = len as u32 as usize;
    match start.checked_add(len) {
        Some(end) if end <= memory_size => Ok((start, end)),
        _ => Err(format!(
            "bytes {start}..{} are outside the memory of {memory_size} bytes",
            start as u64 + len as u64
        )),
    }
}

/// The guest's bytes at `ptr..ptr+len`, copied, after charging fuel for them.
fn read(
    caller: &mut Caller<'_, HostState>,
    function: &str,
    ptr: i32,
    len: i32,
) -> Result<Vec<u8>, wasmi::Error> {
    let Some(memory) = caller.data().memory else {
        return Err(fail(caller, function, "no memory"));
    };
    let data = memory.data(&*caller);
    let bytes = match region(data.len(), ptr, len) {
        Ok((start, end)) => data[start..end].to_vec(),
        Err(why) => return Err(fail(caller, function, &why)),
    };
    charge(caller, bytes.len())?;
    Ok(bytes)
}

/// The term in the guest's ETF bytes at `ptr..ptr+len`.
fn read_term(
    caller: &mut Caller<'_, HostState>,
    function: &str,
    ptr: i32,
    len: i32,
) -> Result<Term, wasmi::Error> {
    let bytes = read(caller, function, ptr, len)?;
    Term::decode_slice(&bytes).map_err(|e| fail(caller, function, &format!("not ETF: {e}")))
}

/// Writes `bytes` to the guest's `buf` when they fit in `cap` bytes; their length.
fn write_if_fits(
    caller: &mut Caller<'_, HostState>,
    function: &str,
    buf: i32,
    cap: i32,
    bytes: &[u8],
) -> Result<i32, wasmi::Error> {
    let Some(memory) = caller.data().memory else {
        return Err(fail(caller, function, "no memory"));
    };
    charge(caller, bytes.len())?;
    let len = i32::try_from(bytes.len()).map_err(|_| fail(caller, function, "too long"))?;
    if bytes.len() <= cap as u32 as usize {
        let data = memory.data_mut(&mut *caller);
        match region(data.len(), buf, len) {
            Ok((start, end)) => data[start..end].copy_from_slice(bytes),
            Err(why) => return Err(fail(caller, function, &why)),
        }
    }
    Ok(len)
}

/// The most timers one actor may have pending.
pub(crate) const MAX_TIMERS: usize = 1024;

/// A linker with the host functions of [`IMPORTS`], for `engine`.
pub(crate) fn linker(engine: &Engine) -> Result<Linker<HostState>, wasmi::errors::LinkerError> {
    let mut l = Linker::new(engine);
    let m = IMPORT_MODULE;
    l.func_wrap(
        m,
        "send",
        |mut c: Caller<'_, HostState>, dp: i32, dl: i32, mp: i32, ml: i32| {
            let dest = read_term(&mut c, "send", dp, dl)?;
            let msg = read_term(&mut c, "send", mp, ml)?;
            match c.data().host.send(&dest, msg) {
                Ok(()) => Ok(0i32),
                Err(why) => Err(fail(&mut c, "send", &why)),
            }
        },
    )?;
    l.func_wrap(
        m,
        "reply",
        |mut c: Caller<'_, HostState>, p: i32, n: i32| {
            if !c.data().in_call {
                return Err(fail(&mut c, "reply", "not handling a call"));
            }
            if c.data().reply.is_some() {
                return Err(fail(&mut c, "reply", "the call was answered already"));
            }
            let reply = read_term(&mut c, "reply", p, n)?;
            c.data_mut().reply = Some(reply);
            Ok(())
        },
    )?;
    l.func_wrap(
        m,
        "self_pid",
        |mut c: Caller<'_, HostState>, buf: i32, cap: i32| {
            let pid = std::mem::take(&mut c.data_mut().self_pid);
            let written = write_if_fits(&mut c, "self_pid", buf, cap, &pid);
            c.data_mut().self_pid = pid;
            written
        },
    )?;
    l.func_wrap(
        m,
        "node_name",
        |mut c: Caller<'_, HostState>, buf: i32, cap: i32| {
            let name = c.data().host.node_name().as_bytes().to_vec();
            write_if_fits(&mut c, "node_name", buf, cap, &name)
        },
    )?;
    l.func_wrap(
        m,
        "log",
        |mut c: Caller<'_, HostState>, level: i32, p: i32, n: i32| {
            let bytes = read(&mut c, "log", p, n)?;
            c.data().host.log(level, &String::from_utf8_lossy(&bytes));
            Ok(())
        },
    )?;
    l.func_wrap(
        m,
        "send_after",
        |mut c: Caller<'_, HostState>, ms: i64, p: i32, n: i32| {
            let Ok(ms) = u32::try_from(ms) else {
                return Err(fail(&mut c, "send_after", "the time is not 0..2^32-1 ms"));
            };
            let msg = read_term(&mut c, "send_after", p, n)?;
            match c.data().host.send_after(u64::from(ms), msg) {
                Ok(()) => Ok(0i32),
                Err(why) => Err(fail(&mut c, "send_after", &why)),
            }
        },
    )?;
    l.func_wrap(m, "exit", |mut c: Caller<'_, HostState>, p: i32, n: i32| {
        let reason = read_term(&mut c, "exit", p, n)?;
        Err::<(), _>(end(&mut c, reason))
    })?;
    Ok(l)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_are_checked_without_overflow() {
        assert_eq!(region(100, 10, 20), Ok((10, 30)));
        assert_eq!(region(100, 0, 100), Ok((0, 100)));
        assert_eq!(region(100, 100, 0), Ok((100, 100)));
        assert!(region(100, 90, 11).is_err());
        assert!(region(100, -1, 1).is_err(), "pointers are unsigned");
        assert!(region(100, 1, -1).is_err(), "lengths are unsigned");
        assert!(region(usize::MAX, -1, -1).is_ok() || usize::BITS == 32);
        let e = region(65536, 65530, 10).unwrap_err();
        assert_eq!(
            e,
            "bytes 65530..65540 are outside the memory of 65536 bytes"
        );
    }

    #[test]
    fn the_cap_refuses_growth_past_it_and_says_so() {
        let mut cap = Cap {
            max_memory_bytes: 2 * 65536,
            hit: false,
        };
        assert!(cap.memory_growing(0, 65536, None).unwrap());
        assert!(!cap.hit);
        assert!(cap.memory_growing(65536, 3 * 65536, None).is_err());
        assert!(cap.hit);
    }
}
