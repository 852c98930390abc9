//! An evaluator of Erlang expressions, so that operators can run Erlang on a node of ours
//! (`nodectl eval NODE 'gen_server:call(kv, {get, a}).'`) as they would in an Erlang shell.
//!
//! [`eval`] parses text with the project's term syntax extended to expressions (literals are
//! read by the same scanner as [`crate::etf::Term::parse`]), checks it as the shell's
//! `erl_lint` does (unbound variables, illegal patterns, illegal guard expressions), and
//! evaluates it against an [`Env`]: the small trait
//! through which it reaches the world (rpc functions, messages, `gen_server` calls, the
//! node's name and registered processes). Everything but the environment is pure, so the
//! evaluator is unit-tested with a fake one; [`NodeEnv`] is the environment of a running
//! node.
//!
//! # The language
//! - literals (atoms, integers, floats, characters, strings, binaries of literal segments,
//!   and the pid, port, reference and `fun M:F/A` forms of the term syntax), variables;
//! - `Pattern = Expr` with tuple, list (`[H|T]`), map (`#{K := V}`), literal, `_`,
//!   `"prefix" ++ T` and nested `=` patterns; sequences `E1, E2`;
//! - `+ - * / div rem band bor bxor bsl bsr bnot`, unary `-` and `+`, `== /= =:= =/= < > =<
//!   >=` (Erlang's term order, numbers by value), `and or not xor andalso orelse`, `++ --`;
//! - tuples, lists, maps `#{K => V}` and map update `M#{K => V, K := V}`;
//! - `case ... of ... end` and `if ... end` with guards (`when G1, G2; G3`: a test that
//!   raises is false), `begin ... end`;
//! - calls: `M:F(Args)` and auto-imported BIFs `F(Args)`; `Dest ! Msg` to a pid, a registered
//!   name or `{Name, Node}`;
//! - the shell commands `b()` (print the bindings), `f()` (forget them all), `f(X)`, and
//!   `q()`, which is `init:stop()` as in erl's shell: the node stops (`nodectl repl` takes a
//!   `q().` of its own and leaves only the repl).
//!
//! Not there: funs other than `fun M:F/A` literals (so no higher-order `lists` functions),
//! `receive`, `try`/`catch`, comprehensions, records, binaries built from variables.
//!
//! # Functions
//! Done natively: `self/0`, `node/0`, `nodes/0`, `whereis/1`, `registered/0`, `make_ref/0`
//! (through the [`Env`]), `erlang:send/2`, the type tests `is_atom/1`, `is_integer/1`, ...,
//! `length/1`, `element/2`, `setelement/3`, `tuple_size/1`, `map_size/1`, `byte_size/1`,
//! `hd/1`, `tl/1`, `abs/1`, `max/2`, `min/2`, `float/1`, `round/1`, `trunc/1`, conversions
//! between atoms, lists, integers, binaries and tuples, `term_to_binary/1`,
//! `binary_to_term/1`, `map_get/2`, `is_map_key/2`, `error/1`, `exit/1`, `throw/1`;
//! `lists:` `reverse/1,2`, `seq/2,3`, `member/2`, `append/1,2`, `nth/2`, `nthtail/2`,
//! `sum/1`, `max/1`, `min/1`, `sort/1`, `usort/1`, `last/1`, `flatten/1`, `zip/2`,
//! `duplicate/2`, `sublist/2,3`, `split/2`, `delete/2`, `keyfind/3`, `keydelete/3`,
//! `keystore/4`; `maps:` `new/0`, `get/2,3`, `find/2`, `is_key/2`, `put/3`, `update/3`,
//! `remove/2`, `keys/1`, `values/1`, `to_list/1`, `from_list/1`, `size/1`, `merge/2`;
//! `proplists:` `get_value/2,3`, `get_all_values/2`, `lookup/2`, `delete/2`;
//! `gen_server:call/2,3` and `gen_server:cast/2`; `io:format/1,2` (and `io:fwrite`),
//! `io:put_chars/1` and `io:nl/0`, whose text is printed before the value as the shell
//! prints it (the control sequences are listed in `eval/format.rs`). Any other `M:F(Args)` goes to the node's
//! rpc functions ([`crate::builtins`] and those of [`crate::Node::register_fn`]); an unknown
//! one is `undef`.
//!
//! # What it prints
//! [`Outcome::text`] is what the Erlang shell prints, checked against the shells of OTP 25,
//! 27 and 29 by `tests/eval_vs_erl.rs`:
//! - a value as `~p` writes it, on one line (`"abc"`, `<<"abc">>`, `{ok,[1,2]}`; pids as
//!   the term syntax writes them, `<node.N.S>`). The shell breaks long values over lines;
//!   this does not;
//! - an exception as the first line of the shell's report: `** exception error: no match of
//!   right hand side value 3`, `** exception error: bad argument`, `** exception error: an
//!   error occurred when evaluating an arithmetic expression`, `** exception error:
//!   undefined function foo:bar/0`, `** exception error: no case clause matching x`,
//!   `** exception error: no true branch found when evaluating an if expression`,
//!   `** exception exit: ...`, `** exception throw: ...` (the shell's further lines, `in
//!   function hd/1`, `called as ...`, are left out);
//! - what the shell's compiler says: `* 1:5: variable 'Y' is unbound`, `* 1:7: syntax error
//!   before: ')'`.
//!
//! Where releases differ, the newest is followed: an unbound variable gets OTP 28's
//! suggestion (`variable 'A2' is unbound, did you mean 'A1'?`), and `term_to_binary/1`
//! writes atoms as OTP 26 and later do (`SMALL_ATOM_UTF8_EXT`, where OTP 25 writes
//! `ATOM_EXT`). One difference cannot be followed: OTP 26 and later print the atom keys of a
//! small map (and `maps:keys/1` lists them) in the order of the atoms' indexes in their own
//! atom table; here keys come in term order, as OTP 25 prints them. As in the shell, an
//! evaluation that raises leaves the bindings as they were.
//!
//! # Limits
//! Input is treated as hostile; each limit is an error, never a panic or an unbounded
//! allocation:
//! - the text is at most [`MAX_INPUT`] bytes (64 KiB);
//! - expressions nest at most [`MAX_NESTING`] (100) levels, counting each operator of a
//!   chain such as `1 + 2 + 3` as a level (the evaluator recurses once per level), and the
//!   parser and the evaluator use at most [`STACK_BUDGET`] (1 MiB) of the thread's stack
//!   (an unoptimised build, whose frames are large, reaches that well before 100 levels):
//!   deeper text is `* L:C: expression nests deeper than 100 levels` (or `nests too
//!   deeply`, for the stack), a deeper evaluation raises `system_limit`;
//! - the term syntax's own limits apply to literals (100 000 digits, binary sizes);
//! - an integer result may have at most [`MAX_INTEGER_BITS`] bits (2^20, about 315 000
//!   digits) and a list or binary result at most [`MAX_LIST_LEN`] (2^22) elements or
//!   bytes: past that the evaluation raises `system_limit`, as the BEAM does at its own
//!   (larger) limits;
//! - an evaluation copies at most [`MAX_CELLS`] (2^23) term cells (each use of a
//!   variable copies its value, as do bindings and `lists:duplicate/2`): past that it
//!   raises `system_limit`;
//! - values print with at most 200 levels of the shell's layout; deeper parts are written
//!   as the term syntax writes them (without recursion).
//!
//! # On a node
//! Every node answers `node_server_eval:eval(Text, Bindings)` by rpc (see [`NodeEnv`] and
//! [`crate::builtins`]), subject to the admin guard ([`crate::admin`]) as every rpc is.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::etf::{Atom, Pid, Term};
use crate::rpc::RpcResult;

mod bifs;
mod format;
mod lex;
mod lines;
mod node_env;
mod parse;
mod run;
mod show;

pub use lines::{expression_ends, Lines};
pub(crate) use node_env::install;
pub use node_env::NodeEnv;

/// The longest text [`eval`] takes, in bytes.
pub const MAX_INPUT: usize = 64 * 1024;

/// How deep expressions may nest.
pub const MAX_NESTING: usize = 100;

/// The most stack the parser and the evaluator may use below where they start, in bytes; past
/// it a parse fails (`nests too deeply`) and an evaluation raises `system_limit`. Nesting is
/// limited by [`MAX_NESTING`] too, but how much stack a level takes depends on the build (an
/// unoptimised one takes tens of kilobytes), and threads have 2 MiB by default.
pub const STACK_BUDGET: usize = 1 << 20;

/// Where the stack is now: the address of a local (stacks grow down on every supported
/// platform; only differences between two such addresses are used).
#[inline(always)]
fn stack_here() -> usize {
    let marker = 0u8;
    std::hint::black_box(&marker) as *const u8 as usize
}

/// The most bits an integer result may have.
pub const MAX_INTEGER_BITS: u64 = 1 << 20;

/// The most elements a list result (or bytes a binary result) may have.
pub const MAX_LIST_LEN: usize = 1 << 22;

/// The most term cells (one per term, container or leaf) an evaluation may copy: each use
/// of a variable copies its value, each binding and `lists:duplicate/2` too. Past it the
/// evaluation raises `system_limit`, so that `{X, X, X, ...}` of a large `X` cannot take all
/// memory.
pub const MAX_CELLS: u64 = 1 << 23;

/// `variable 'V' is unbound`, with the suggestion OTP 28 and later add when a bound
/// variable's name is similar enough (`, did you mean 'V1'?`): the most similar of `bound` by
/// Jaro similarity (`string:jaro_similarity/2`), above 0.66, the greater name on a tie, as
/// `erl_lint` picks it.
fn unbound_message<'a>(name: &str, bound: impl IntoIterator<Item = &'a str>) -> String {
    let mut text = format!("variable {} is unbound", Term::atom(name));
    let best = bound
        .into_iter()
        .map(|b| (jaro(name, b), b))
        .max_by(|x, y| x.0.total_cmp(&y.0).then_with(|| x.1.cmp(y.1)));
    if let Some((sim, guess)) = best {
        if sim > 0.66 {
            text.push_str(&format!(", did you mean '{guess}'?"));
        }
    }
    text
}

/// The Jaro similarity of two strings, as OTP's `string:jaro_similarity/2` computes it
/// (over characters; variable names have no multi-character graphemes).
fn jaro(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    if a.is_empty() || b.is_empty() {
        return 0.0;
    }
    // Matches are at most `window - 1` apart.
    let window = (a.len().max(b.len()) / 2).max(1);
    let mut used = vec![false; b.len()];
    let mut a_matched = Vec::new();
    let mut b_matched_at = Vec::new();
    for (i, ca) in a.iter().enumerate() {
        let lo = (i + 1).saturating_sub(window);
        let hi = (i + window).min(b.len());
        if let Some(j) = (lo..hi).find(|&j| !used[j] && b[j] == *ca) {
            used[j] = true;
            a_matched.push(*ca);
            b_matched_at.push(j);
        }
    }
    let m = a_matched.len();
    if m == 0 {
        return 0.0;
    }
    b_matched_at.sort_unstable();
    let t = a_matched
        .iter()
        .zip(&b_matched_at)
        .filter(|(ca, j)| **ca != b[**j])
        .count();
    let (m, t) = (m as f64, t as f64);
    (m / a.len() as f64 + m / b.len() as f64 + (m - t / 2.0) / m) / 3.0
}

/// The reason of the exception that a variable bound in only some clauses of an earlier
/// `case` or `if` raises when it is not bound after all: `{UNBOUND, Name, Offset}`. The
/// shell reports it as it reports an unbound variable.
const UNBOUND: &str = "$unbound_var";

/// The class of an Erlang exception.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// `error`.
    Error,
    /// `exit`.
    Exit,
    /// `throw`.
    Throw,
}

/// An exception raised by an evaluation.
#[derive(Debug, Clone, PartialEq)]
pub struct Exception {
    /// Its class.
    pub class: Class,
    /// Its reason (`badarg`, `{badmatch, V}`, ...).
    pub reason: Term,
    /// The call it is about, for `undef` and `function_clause`: module, function, arguments.
    pub call: Option<Box<(Atom, Atom, Vec<Term>)>>,
}

/// Why an evaluation gave no value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum EvalError {
    /// The text does not parse, or does not compile (an unbound variable, an illegal
    /// pattern, too deep): `* LINE:COLUMN: MESSAGE`.
    Syntax {
        /// 1-based line.
        line: usize,
        /// 1-based column, in characters.
        column: usize,
        /// What is wrong (`syntax error before: ')'`, `variable 'Y' is unbound`).
        message: String,
    },
    /// The text is longer than [`MAX_INPUT`].
    TooLong(usize),
    /// The evaluation raised an exception.
    Exception(Exception),
}

impl EvalError {
    fn syntax(text: &str, offset: usize, message: String) -> EvalError {
        let e = crate::etf::ParseError::at(text, offset, String::new());
        EvalError::Syntax {
            line: e.line,
            column: e.column,
            message,
        }
    }
}

impl fmt::Display for EvalError {
    /// As the Erlang shell prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvalError::Syntax {
                line,
                column,
                message,
            } => write!(f, "* {line}:{column}: {message}"),
            EvalError::TooLong(n) => write!(
                f,
                "* the expression is {n} bytes long; the limit is {MAX_INPUT}"
            ),
            EvalError::Exception(e) => f.write_str(&show::exception(e)),
        }
    }
}

impl std::error::Error for EvalError {}

/// The shell's bindings: variable names and their values, kept from one evaluation to the
/// next.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bindings(BTreeMap<String, Term>);

impl Bindings {
    /// No bindings.
    pub fn new() -> Bindings {
        Bindings::default()
    }

    /// The value bound to `name`.
    pub fn get(&self, name: &str) -> Option<&Term> {
        self.0.get(name)
    }

    /// Binds `name` (a variable name) to `value`.
    pub fn insert(&mut self, name: impl Into<String>, value: Term) {
        self.0.insert(name.into(), value);
    }

    /// The bindings in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Term)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// How many there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The bindings as `erl_eval` keeps them: `[{'X', Value}, ...]`.
    pub fn to_term(&self) -> Term {
        Term::List(
            self.0
                .iter()
                .map(|(k, v)| Term::tuple(vec![Term::atom(k), v.clone()]))
                .collect(),
        )
    }

    /// Reads `[{'X', Value}, ...]` (names must be variable names); `None` for anything else.
    pub fn from_term(term: &Term) -> Option<Bindings> {
        let Term::List(items) = term else {
            return None;
        };
        let mut out = Bindings::new();
        for item in items {
            match item.as_tuple() {
                Some([Term::Atom(name), value])
                    if name.as_str().starts_with(crate::etf::text::is_var_start) =>
                {
                    out.insert(name.as_str(), value.clone());
                }
                _ => return None,
            }
        }
        Some(out)
    }
}

/// What an [`Env`] call returns.
pub type EnvFuture<'a> = Pin<Box<dyn Future<Output = RpcResult> + Send + 'a>>;

/// What the evaluator needs of the world. [`NodeEnv`] is a running node's; tests use fakes.
pub trait Env: Send + Sync {
    /// This node's name (`node()`).
    fn node(&self) -> Atom;
    /// The pid standing for the evaluating process (`self()`).
    fn self_pid(&self) -> Pid;
    /// The connected visible nodes (`nodes()`).
    fn nodes(&self) -> Vec<Atom>;
    /// The pid registered under `name` (`whereis/1`).
    fn whereis(&self, name: &Atom) -> Option<Pid>;
    /// The registered names (`registered()`).
    fn registered(&self) -> Vec<Atom>;
    /// A new reference (`make_ref()`).
    fn make_ref(&self) -> Term;
    /// `Dest ! Msg` to a pid, a registered name or `{Name, Node}`; false when `Dest` is none
    /// of those or names no registered process (Erlang's `badarg`).
    fn send(&self, dest: &Term, msg: Term) -> bool;
    /// An rpc function `M:F(Args)`; `None` when there is none.
    fn call(&self, module: &Atom, function: &Atom, args: Vec<Term>) -> Option<EnvFuture<'_>>;
    /// `gen_server:call(Dest, Request, Timeout)` (`None`: infinity). Fails with
    /// `RpcFailure::Exit(noproc)` or `RpcFailure::Exit(timeout)`, which the evaluator
    /// raises as `gen_server` does: `exit:{noproc, {gen_server, call, Args}}`.
    fn gen_call(&self, dest: Term, request: Term, timeout: Option<Duration>) -> EnvFuture<'_>;
    /// `gen_server:cast(Dest, Request)`.
    fn gen_cast(&self, dest: Term, request: Term);
}

/// The environment of an Erlang that is not distributed and runs nothing else: `node()` is
/// `nonode@nohost`, `self()` is `<0.1.0>` of it, there are no other nodes, processes,
/// registered names or functions (`M:F(Args)` not done natively is `undef`), a send to a
/// name is `badarg` and a `gen_server` call exits `noproc`. For pure expressions (tests,
/// checks); a node's is [`NodeEnv`].
#[derive(Debug, Clone, Copy, Default)]
pub struct NoNode;

impl Env for NoNode {
    fn node(&self) -> Atom {
        Atom::new("nonode@nohost")
    }
    fn self_pid(&self) -> Pid {
        Pid {
            node: Atom::new("nonode@nohost"),
            id: 1,
            serial: 0,
            creation: 0,
        }
    }
    fn nodes(&self) -> Vec<Atom> {
        Vec::new()
    }
    fn whereis(&self, _: &Atom) -> Option<Pid> {
        None
    }
    fn registered(&self) -> Vec<Atom> {
        Vec::new()
    }
    fn make_ref(&self) -> Term {
        Term::NIL
    }
    fn send(&self, dest: &Term, _: Term) -> bool {
        matches!(dest, Term::Pid(_))
    }
    fn call(&self, _: &Atom, _: &Atom, _: Vec<Term>) -> Option<EnvFuture<'_>> {
        None
    }
    fn gen_call(&self, _: Term, _: Term, _: Option<Duration>) -> EnvFuture<'_> {
        Box::pin(async { Err(crate::rpc::RpcFailure::Exit(Term::atom("noproc"))) })
    }
    fn gen_cast(&self, _: Term, _: Term) {}
}

/// The result of [`eval`].
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// What shell commands and `io` calls printed on the way (`b()`'s lines, `io:format`'s
    /// text).
    pub printed: String,
    /// The value, or why there is none.
    pub value: Result<Term, EvalError>,
}

impl Outcome {
    /// What the Erlang shell prints for it: [`Outcome::printed`], then the value (`~p`) or
    /// the error, without a final newline.
    pub fn text(&self) -> String {
        let last = match &self.value {
            Ok(v) => show::pretty(v),
            Err(e) => e.to_string(),
        };
        format!("{}{last}", self.printed)
    }
}

/// Parses, checks and evaluates `text` (one or more expressions separated by `,`, ending in
/// an optional `.`) with `bindings`, which gets what the evaluation binds (when it raises,
/// the bindings stay as they were, as in the shell).
pub async fn eval(text: &str, bindings: &mut Bindings, env: &dyn Env) -> Outcome {
    let fail = |e| Outcome {
        printed: String::new(),
        value: Err(e),
    };
    if text.len() > MAX_INPUT {
        return fail(EvalError::TooLong(text.len()));
    }
    let exprs = match lex::tokens(text).and_then(|tokens| parse::parse(text, &tokens)) {
        Ok(exprs) => exprs,
        Err(e) => return fail(e),
    };
    let mut bound: BTreeSet<String> = bindings.0.keys().cloned().collect();
    if let Err(e) = parse::lint(text, &exprs, &mut bound) {
        return fail(e);
    }
    let base = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(stack_here()));
    let mut run = run::Run {
        env,
        vars: bindings.0.clone(),
        printed: String::new(),
        stack_base: base.clone(),
        cells_left: MAX_CELLS,
    };
    let value = {
        let mut fut = run.exprs(&exprs);
        // Each poll may start elsewhere (another thread of the runtime): measure from there.
        std::future::poll_fn(|cx| {
            base.store(stack_here(), std::sync::atomic::Ordering::Relaxed);
            fut.as_mut().poll(cx)
        })
        .await
    };
    let printed = std::mem::take(&mut run.printed);
    if value.is_ok() {
        bindings.0 = std::mem::take(&mut run.vars);
    }
    Outcome {
        printed,
        value: value.map_err(|e| match e.reason.as_tuple() {
            Some([tag, Term::Atom(name), Term::Int(pos)]) if tag.is_atom(UNBOUND) => {
                EvalError::syntax(
                    text,
                    usize::try_from(*pos).unwrap_or(0),
                    unbound_message(name.as_str(), run.vars.keys().map(String::as_str)),
                )
            }
            _ => EvalError::Exception(e),
        }),
    }
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod jaro_tests {
    #[test]
    fn jaro_similarity_as_otp() {
        // What OTP 29's string:jaro_similarity/2 gives.
        assert_eq!(super::jaro("A2", "A1"), 0.6666666666666666);
        assert_eq!(super::jaro("Unbound2", "Z"), 0.0);
        assert_eq!(super::jaro("MARTHA", "MARHTA"), 0.9444444444444445);
        assert_eq!(super::jaro("", ""), 1.0);
        assert_eq!(
            super::unbound_message("A2", ["A1", "B"]),
            "variable 'A2' is unbound, did you mean 'A1'?"
        );
        assert_eq!(
            super::unbound_message("Y", ["X"]),
            "variable 'Y' is unbound"
        );
    }
}
