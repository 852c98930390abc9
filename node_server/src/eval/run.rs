//! Evaluating a parsed expression against an [`Env`], as `erl_eval` does: left to right,
//! patterns binding variables, `case` and `if` clauses tried in order, guards that fail
//! rather than raise.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::etf::{Atom, Map, Term};
use crate::rpc::RpcFailure;

use super::parse::{atom_of, Clause, Expr};
use super::{bifs, show, Class, Env, Exception};

type Fut<'a> = Pin<Box<dyn Future<Output = Result<Term, Exception>> + Send + 'a>>;

/// The state of one evaluation.
pub(super) struct Run<'e> {
    pub env: &'e dyn Env,
    /// The bindings: those before the evaluation, then what it binds.
    pub vars: BTreeMap<String, Term>,
    /// What shell commands (`b()`) and `io` calls printed.
    pub printed: String,
    /// Where the stack was when the evaluation was last polled ([`super::STACK_BUDGET`]).
    pub stack_base: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    /// How many more term cells the evaluation may copy ([`super::MAX_CELLS`]).
    pub cells_left: u64,
}

/// The cells of `t` (one per term, container or leaf), counted up to `limit` + 1 (so that
/// counting a huge term costs no more than the budget left). Without recursion.
pub(super) fn cells(t: &Term, limit: u64) -> u64 {
    let mut n = 0u64;
    let mut stack = vec![t];
    while let Some(t) = stack.pop() {
        n += 1;
        if n > limit {
            break;
        }
        match t {
            Term::List(items) | Term::Tuple(items) => stack.extend(items.iter()),
            Term::ImproperList(items, tail) => {
                stack.extend(items.iter());
                stack.push(tail);
            }
            Term::Map(m) => {
                for (k, v) in m.iter() {
                    stack.push(k);
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
    n
}

fn error(reason: Term) -> Exception {
    Exception {
        class: Class::Error,
        reason,
        call: None,
    }
}

fn tagged(tag: &str, value: Term) -> Term {
    Term::tuple(vec![Term::atom(tag), value])
}

impl From<RpcFailure> for Exception {
    fn from(f: RpcFailure) -> Exception {
        let (class, reason) = match f {
            RpcFailure::Error(r) => (Class::Error, r),
            RpcFailure::Exit(r) => (Class::Exit, r),
            RpcFailure::Throw(r) => (Class::Throw, r),
        };
        Exception {
            class,
            reason,
            call: None,
        }
    }
}

impl<'e> Run<'e> {
    /// Takes `n` cells from the budget; `system_limit` when it runs out.
    fn charge(&mut self, n: u64) -> Result<(), Exception> {
        match self.cells_left.checked_sub(n) {
            Some(left) => {
                self.cells_left = left;
                Ok(())
            }
            None => Err(error(Term::atom("system_limit"))),
        }
    }

    /// Binds `new` (names not bound yet), charging the copies; the names go to `added`.
    fn bind(&mut self, added: &mut Vec<String>, new: Vec<(String, Term)>) -> Result<(), Exception> {
        for (name, value) in new {
            let n = cells(&value, self.cells_left);
            self.charge(n)?;
            added.push(name.clone());
            self.vars.insert(name, value);
        }
        Ok(())
    }

    /// Evaluates a sequence; its value is the last expression's.
    pub fn exprs<'a>(&'a mut self, exprs: &'a [Expr]) -> Fut<'a> {
        Box::pin(async move {
            let mut value = Term::atom("ok");
            for e in exprs {
                value = self.expr(e).await?;
            }
            Ok(value)
        })
    }

    fn all<'a>(
        &'a mut self,
        exprs: &'a [Expr],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Term>, Exception>> + Send + 'a>> {
        Box::pin(async move {
            let mut out = Vec::with_capacity(exprs.len());
            for e in exprs {
                out.push(self.expr(e).await?);
            }
            Ok(out)
        })
    }

    fn expr<'a>(&'a mut self, e: &'a Expr) -> Fut<'a> {
        Box::pin(async move {
            let base = self.stack_base.load(std::sync::atomic::Ordering::Relaxed);
            if super::stack_here().abs_diff(base) > super::STACK_BUDGET {
                return Err(error(Term::atom("system_limit")));
            }
            match e {
                Expr::Lit(t) => Ok(t.clone()),
                // Bound in some clauses of an earlier `case` only: the shell finds out here.
                Expr::Var(v, pos) => {
                    if let Some(t) = self.vars.get(v) {
                        // A copy as big as the value: it counts.
                        let cells = cells(t, self.cells_left);
                        self.charge(cells)?;
                    }
                    self.vars.get(v).cloned().ok_or_else(|| {
                        error(Term::tuple(vec![
                            Term::atom(super::UNBOUND),
                            Term::atom(v),
                            Term::Int(*pos as i64),
                        ]))
                    })
                }
                Expr::Tuple(elems) => Ok(Term::Tuple(self.all(elems).await?)),
                Expr::Cons(elems, tail) => {
                    let elems = self.all(elems).await?;
                    let tail = match tail {
                        Some(t) => self.expr(t).await?,
                        None => Term::NIL,
                    };
                    Ok(Term::improper_list(elems, tail))
                }
                Expr::Map(base, assocs) => {
                    let mut map = match base {
                        Some(b) => match self.expr(b).await? {
                            Term::Map(m) => m,
                            other => return Err(error(tagged("badmap", other))),
                        },
                        None => Map::new(),
                    };
                    for (k, v, exact) in assocs {
                        let k = self.expr(k).await?;
                        let v = self.expr(v).await?;
                        if *exact && map.get(&k).is_none() {
                            return Err(error(tagged("badkey", k)));
                        }
                        map.insert(k, v);
                    }
                    Ok(Term::Map(map))
                }
                Expr::Match(p, e, _) => {
                    let value = self.expr(e).await?;
                    let mut new = Vec::new();
                    if self.pmatch(p, &value, &mut new)? {
                        self.bind(&mut Vec::new(), new)?;
                        Ok(value)
                    } else {
                        Err(error(tagged("badmatch", value)))
                    }
                }
                Expr::Op(op, a, b) => self.op(op, a, b).await,
                Expr::Unary(op, a) => {
                    let a = self.expr(a).await?;
                    bifs::unary(op, &a)
                }
                Expr::Block(body) => self.exprs(body).await,
                Expr::Case(e, clauses) => {
                    let value = self.expr(e).await?;
                    match self.clauses(clauses, Some(&value)).await? {
                        Some(v) => Ok(v),
                        None => Err(error(tagged("case_clause", value))),
                    }
                }
                Expr::If(clauses) => match self.clauses(clauses, None).await? {
                    Some(v) => Ok(v),
                    None => Err(error(Term::atom("if_clause"))),
                },
                Expr::Call(m, f, args) => self.call(m.as_deref(), f, args).await,
            }
        })
    }

    /// Tries the clauses in order; `None` when none matches.
    async fn clauses(
        &mut self,
        clauses: &[Clause],
        value: Option<&Term>,
    ) -> Result<Option<Term>, Exception> {
        for c in clauses {
            // A pattern only adds names, and guards bind nothing (the lint sees to it): a
            // clause that does not hold takes back exactly what its pattern added.
            let mut added = Vec::new();
            if let (Some(p), Some(v)) = (&c.pattern, value) {
                let mut new = Vec::new();
                if !self.pmatch(p, v, &mut new)? {
                    continue;
                }
                self.bind(&mut added, new)?;
            }
            if self.guards(&c.guards).await {
                return self.exprs(&c.body).await.map(Some);
            }
            for name in added {
                self.vars.remove(&name);
            }
        }
        Ok(None)
    }

    /// Whether a guard sequence holds: one alternative whose tests are all `true`. An
    /// exception in a test makes it false.
    async fn guards(&mut self, guards: &[Vec<Expr>]) -> bool {
        if guards.is_empty() {
            return true;
        }
        'alternatives: for alt in guards {
            for test in alt {
                match self.expr(test).await {
                    Ok(t) if t.is_atom("true") => {}
                    _ => continue 'alternatives,
                }
            }
            return true;
        }
        false
    }

    /// Matches `value` against pattern `p`, collecting new bindings in `new`.
    fn pmatch(
        &self,
        p: &Expr,
        value: &Term,
        new: &mut Vec<(String, Term)>,
    ) -> Result<bool, Exception> {
        Ok(match p {
            Expr::Lit(t) => t == value,
            Expr::Var(v, _) if v == "_" => true,
            Expr::Var(v, _) => {
                let bound = self
                    .vars
                    .get(v)
                    .or_else(|| new.iter().find(|(n, _)| n == v).map(|(_, t)| t));
                match bound {
                    Some(t) => t == value,
                    None => {
                        new.push((v.clone(), value.clone()));
                        true
                    }
                }
            }
            Expr::Tuple(elems) => match value {
                Term::Tuple(vs) if vs.len() == elems.len() => {
                    for (e, v) in elems.iter().zip(vs) {
                        if !self.pmatch(e, v, new)? {
                            return Ok(false);
                        }
                    }
                    true
                }
                _ => false,
            },
            Expr::Cons(elems, tail) => {
                let mut rest = value.clone();
                for e in elems {
                    let (head, more) = match rest {
                        Term::List(mut l) if !l.is_empty() => {
                            let h = l.remove(0);
                            (h, Term::List(l))
                        }
                        Term::ImproperList(mut l, t) => {
                            let h = l.remove(0);
                            (h, Term::improper_list(l, *t))
                        }
                        _ => return Ok(false),
                    };
                    if !self.pmatch(e, &head, new)? {
                        return Ok(false);
                    }
                    rest = more;
                }
                match tail {
                    Some(t) => self.pmatch(t, &rest, new)?,
                    None => rest.is_nil(),
                }
            }
            Expr::Map(None, assocs) => {
                let Term::Map(m) = value else {
                    return Ok(false);
                };
                for (k, v, _) in assocs {
                    let key = self.constant(k, new)?;
                    match m.get(&key) {
                        Some(found) if self.pmatch(v, found, new)? => {}
                        _ => return Ok(false),
                    }
                }
                true
            }
            Expr::Match(a, b, _) => self.pmatch(a, value, new)? && self.pmatch(b, value, new)?,
            Expr::Op("++", prefix, rest) => {
                let (Expr::Lit(Term::List(pre)), Term::List(l)) = (&**prefix, value) else {
                    return Ok(false);
                };
                if l.len() < pre.len() || l[..pre.len()] != pre[..] {
                    return Ok(false);
                }
                self.pmatch(rest, &Term::List(l[pre.len()..].to_vec()), new)?
            }
            _ => return Err(error(Term::atom("illegal_pattern"))),
        })
    }

    /// The value of a map key in a pattern: a literal or a bound variable.
    fn constant(&self, e: &Expr, new: &[(String, Term)]) -> Result<Term, Exception> {
        match e {
            Expr::Lit(t) => Ok(t.clone()),
            Expr::Var(v, _) => self
                .vars
                .get(v)
                .or_else(|| new.iter().find(|(n, _)| n == v).map(|(_, t)| t))
                .cloned()
                .ok_or_else(|| error(Term::atom("illegal_map_key"))),
            _ => Err(error(Term::atom("illegal_map_key"))),
        }
    }

    async fn op(&mut self, op: &'static str, a: &Expr, b: &Expr) -> Result<Term, Exception> {
        match op {
            "andalso" | "orelse" => {
                let x = self.expr(a).await?;
                let short = if op == "andalso" { "false" } else { "true" };
                if x.is_atom(short) {
                    return Ok(x);
                }
                if !(x.is_atom("true") || x.is_atom("false")) {
                    return Err(error(tagged("badarg", x)));
                }
                self.expr(b).await
            }
            "!" => {
                let dest = self.expr(a).await?;
                let msg = self.expr(b).await?;
                if self.env.send(&dest, msg.clone()) {
                    Ok(msg)
                } else {
                    Err(error(Term::atom("badarg")))
                }
            }
            _ => {
                let x = self.expr(a).await?;
                let y = self.expr(b).await?;
                bifs::binary(op, &x, &y)
            }
        }
    }

    async fn call(&mut self, m: Option<&Expr>, f: &Expr, args: &[Expr]) -> Result<Term, Exception> {
        let Some(m) = m else {
            return self.local(f, args).await;
        };
        let module = match self.expr(m).await? {
            Term::Atom(a) => a,
            other => return Err(error(tagged("badfun", other))),
        };
        let function = match self.expr(f).await? {
            Term::Atom(a) => a,
            other => return Err(error(tagged("badfun", other))),
        };
        let args = self.all(args).await?;
        self.remote(module, function, args).await
    }

    /// `F(Args)` without a module: a shell command or an auto-imported BIF.
    async fn local(&mut self, f: &Expr, args: &[Expr]) -> Result<Term, Exception> {
        let Some(name) = atom_of(f).cloned() else {
            return Err(error(Term::atom("badfun")));
        };
        match (name.as_str(), args) {
            ("b", []) => {
                for (k, v) in &self.vars {
                    self.printed
                        .push_str(&format!("{k} = {}\n", show::pretty(v)));
                }
                return Ok(Term::atom("ok"));
            }
            ("f", []) => {
                self.vars.clear();
                return Ok(Term::atom("ok"));
            }
            ("f", [Expr::Var(v, _)]) => {
                self.vars.remove(v);
                return Ok(Term::atom("ok"));
            }
            // c:q(): init:stop(), the node stops (as erl's shell stops its node).
            ("q", []) => {
                return self
                    .remote(Atom::new("init"), Atom::new("stop"), Vec::new())
                    .await
            }
            ("f", [_]) => {
                return Err(error(Term::tuple(vec![
                    Term::atom("shell_function_clause"),
                    Term::atom("f"),
                    Term::Int(1),
                ])))
            }
            _ => {}
        }
        let values = self.all(args).await?;
        let env_bif = matches!(
            (name.as_str(), values.len()),
            ("self" | "node" | "nodes" | "registered" | "make_ref", 0) | ("whereis" | "node", 1)
        );
        if env_bif || bifs::auto_imported(name.as_str()) {
            return self.remote(Atom::new("erlang"), name, values).await;
        }
        Err(error(Term::tuple(vec![
            Term::atom("shell_undef"),
            Term::Atom(name),
            Term::Int(values.len() as i64),
        ])))
    }

    /// `M:F(Args)`: native when done here, else the node's rpc functions.
    async fn remote(&mut self, m: Atom, f: Atom, args: Vec<Term>) -> Result<Term, Exception> {
        let env = self.env;
        match (m.as_str(), f.as_str(), &args[..]) {
            ("erlang", "self", []) => return Ok(Term::Pid(env.self_pid())),
            ("erlang", "node", []) => return Ok(Term::Atom(env.node())),
            ("erlang", "node", [t]) => {
                return match t {
                    Term::Pid(p) => Ok(Term::Atom(p.node.clone())),
                    Term::Port(p) => Ok(Term::Atom(p.node.clone())),
                    Term::Reference(r) => Ok(Term::Atom(r.node.clone())),
                    _ => Err(error(Term::atom("badarg"))),
                }
            }
            ("erlang", "nodes", []) => {
                return Ok(Term::List(
                    env.nodes().into_iter().map(Term::Atom).collect(),
                ))
            }
            ("erlang", "registered", []) => {
                return Ok(Term::List(
                    env.registered().into_iter().map(Term::Atom).collect(),
                ))
            }
            ("erlang", "whereis", [Term::Atom(name)]) => {
                return Ok(env
                    .whereis(name)
                    .map_or_else(|| Term::atom("undefined"), Term::Pid))
            }
            ("erlang", "whereis", [_]) => return Err(error(Term::atom("badarg"))),
            ("erlang", "make_ref", []) => return Ok(env.make_ref()),
            ("erlang", "send", [dest, msg]) => {
                return if env.send(dest, msg.clone()) {
                    Ok(msg.clone())
                } else {
                    Err(error(Term::atom("badarg")))
                }
            }
            ("gen_server", "call", [dest, request])
            | ("gen_server", "call", [dest, request, _]) => {
                let timeout = match args.get(2) {
                    None => Some(Duration::from_secs(5)),
                    Some(t) if t.is_atom("infinity") => None,
                    Some(Term::Int(ms)) if *ms >= 0 => Some(Duration::from_millis(*ms as u64)),
                    Some(_) => return Err(Exception::from(RpcFailure::Exit(Term::atom("badarg")))),
                };
                let result = env.gen_call(dest.clone(), request.clone(), timeout).await;
                return result.map_err(|failure| match failure {
                    RpcFailure::Exit(reason) => Exception {
                        class: Class::Exit,
                        reason: Term::tuple(vec![
                            reason,
                            Term::tuple(vec![
                                Term::atom("gen_server"),
                                Term::atom("call"),
                                Term::List(args.clone()),
                            ]),
                        ]),
                        call: None,
                    },
                    other => other.into(),
                });
            }
            ("io", "format" | "fwrite", [fmt]) | ("io", "format" | "fwrite", [fmt, _]) => {
                let text = super::format::format(fmt, args.get(1).unwrap_or(&Term::NIL))
                    .ok_or_else(|| error(Term::atom("badarg")))?;
                self.printed.push_str(&text);
                return Ok(Term::atom("ok"));
            }
            ("io", "put_chars", [chars]) => {
                let text =
                    super::format::chars(chars).ok_or_else(|| error(Term::atom("badarg")))?;
                self.printed.push_str(&text);
                return Ok(Term::atom("ok"));
            }
            ("io", "nl", []) => {
                self.printed.push('\n');
                return Ok(Term::atom("ok"));
            }
            ("gen_server", "cast", [dest, request]) => {
                env.gen_cast(dest.clone(), request.clone());
                return Ok(Term::atom("ok"));
            }
            _ => {}
        }
        if let ("lists", "duplicate", [Term::Int(n), x]) = (m.as_str(), f.as_str(), &args[..]) {
            // The one function whose result outgrows its arguments many times over.
            let each = cells(x, self.cells_left);
            self.charge(each.saturating_mul(u64::try_from(*n).unwrap_or(0)))?;
        }
        let native = if m == "erlang" {
            bifs::erlang(f.as_str(), &args)
        } else {
            bifs::library(m.as_str(), f.as_str(), &args)
        };
        if let Some(result) = native {
            return result;
        }
        let undef = |args: Vec<Term>| Exception {
            class: Class::Error,
            reason: Term::atom("undef"),
            call: Some(Box::new((m.clone(), f.clone(), args))),
        };
        let Some(fut) = env.call(&m, &f, args.clone()) else {
            return Err(undef(args));
        };
        match fut.await {
            Ok(v) => Ok(v),
            Err(RpcFailure::Error(r)) if r.is_atom("undef") => Err(undef(args)),
            Err(other) => Err(other.into()),
        }
    }
}
