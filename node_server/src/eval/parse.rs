//! Erlang expressions: the syntax tree, a recursive-descent parser over [`super::lex`]'s
//! tokens with `erl_parse`'s operator precedences, and the check for unbound variables that
//! `erl_lint` makes before the shell evaluates anything.
//!
//! Precedence, loosest first (as `erl_parse.yrl`): `=` and `!` (right), `orelse` (right),
//! `andalso` (right), comparisons (non-associative), `++` `--` (right), `+ - bor bxor bsl
//! bsr or xor` (left), `* / div rem band and` (left), prefix `+ - bnot not`, map update `#`,
//! remote call `:`.

use std::collections::BTreeSet;

use crate::etf::{Atom, Term};

use super::lex::{Tok, Token};
use super::{EvalError, MAX_NESTING};

/// An expression.
#[derive(Debug, Clone)]
pub(super) enum Expr {
    /// A literal term.
    Lit(Term),
    /// A variable and where it is.
    Var(String, usize),
    /// `{E, ...}`.
    Tuple(Vec<Expr>),
    /// `[E, ... | Tail]` with at least one element.
    Cons(Vec<Expr>, Option<Box<Expr>>),
    /// `#{K => V, ...}` (no base) or `Base#{K := V, ...}`; `true` marks `:=`.
    Map(Option<Box<Expr>>, Vec<(Expr, Expr, bool)>),
    /// `Pattern = Expr`.
    Match(Box<Expr>, Box<Expr>, usize),
    /// A binary operator (also `!`, `andalso`, `orelse`).
    Op(&'static str, Box<Expr>, Box<Expr>),
    /// A prefix operator.
    Unary(&'static str, Box<Expr>),
    /// `case E of Clauses end`.
    Case(Box<Expr>, Vec<Clause>),
    /// `if Clauses end` (clauses without patterns).
    If(Vec<Clause>),
    /// `begin Exprs end`.
    Block(Vec<Expr>),
    /// `M:F(Args)` (with a module) or `F(Args)`.
    Call(Option<Box<Expr>>, Box<Expr>, Vec<Expr>),
}

/// A clause of `case` (with a pattern) or `if` (without).
#[derive(Debug, Clone)]
pub(super) struct Clause {
    pub pattern: Option<Expr>,
    /// Alternatives separated by `;`, each a conjunction separated by `,`.
    pub guards: Vec<Vec<Expr>>,
    /// Where each guard test starts, as `guards`.
    pub guard_at: Vec<Vec<usize>>,
    pub body: Vec<Expr>,
}

/// Parses the tokens (ending in [`Tok::Dot`]) as a sequence of expressions.
pub(super) fn parse(text: &str, tokens: &[Token]) -> Result<Vec<Expr>, EvalError> {
    let mut p = Parser {
        text,
        tokens,
        at: 0,
        depth: 0,
        stack_base: super::stack_here(),
    };
    let exprs = p.exprs()?;
    match p.peek() {
        Tok::Dot => Ok(exprs),
        _ => Err(p.syntax_error()),
    }
}

struct Parser<'a> {
    text: &'a str,
    tokens: &'a [Token],
    at: usize,
    depth: usize,
    /// Where the stack was when parsing began ([`super::STACK_BUDGET`]).
    stack_base: usize,
}

type R<T> = Result<T, EvalError>;

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.tokens[self.at.min(self.tokens.len() - 1)].tok
    }

    fn pos(&self) -> usize {
        self.tokens[self.at.min(self.tokens.len() - 1)].pos
    }

    fn bump(&mut self) -> Tok {
        let t = self.peek().clone();
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        t
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.peek(), Tok::Op(o) if *o == op)
    }

    fn is_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Kw(k) if *k == kw)
    }

    fn eat_op(&mut self, op: &str) -> bool {
        let yes = self.is_op(op);
        if yes {
            self.bump();
        }
        yes
    }

    fn syntax_error(&self) -> EvalError {
        EvalError::syntax(
            self.text,
            self.pos(),
            format!("syntax error before: {}", self.peek().show()),
        )
    }

    fn expect_op(&mut self, op: &str) -> R<()> {
        if self.eat_op(op) {
            Ok(())
        } else {
            Err(self.syntax_error())
        }
    }

    fn expect_kw(&mut self, kw: &str) -> R<()> {
        if self.is_kw(kw) {
            self.bump();
            Ok(())
        } else {
            Err(self.syntax_error())
        }
    }

    /// One level deeper; an error past [`MAX_NESTING`] or [`super::STACK_BUDGET`].
    fn enter(&mut self) -> R<()> {
        self.depth += 1;
        let message = if self.depth > MAX_NESTING {
            format!("expression nests deeper than {MAX_NESTING} levels")
        } else if super::stack_here().abs_diff(self.stack_base) > super::STACK_BUDGET {
            format!(
                "expression nests too deeply ({} levels use more than the {} KiB of stack \
                 allowed)",
                self.depth,
                super::STACK_BUDGET >> 10
            )
        } else {
            return Ok(());
        };
        Err(EvalError::syntax(self.text, self.pos(), message))
    }

    fn exprs(&mut self) -> R<Vec<Expr>> {
        let mut out = vec![self.expr()?];
        while self.eat_op(",") {
            out.push(self.expr()?);
        }
        Ok(out)
    }

    fn expr(&mut self) -> R<Expr> {
        self.enter()?;
        let e = self.expr100();
        self.depth -= 1;
        e
    }

    fn expr100(&mut self) -> R<Expr> {
        let lhs = self.expr150()?;
        let pos = self.pos();
        if self.eat_op("=") {
            let rhs = self.expr()?;
            return Ok(Expr::Match(Box::new(lhs), Box::new(rhs), pos));
        }
        if self.eat_op("!") {
            let rhs = self.expr()?;
            return Ok(Expr::Op("!", Box::new(lhs), Box::new(rhs)));
        }
        Ok(lhs)
    }

    /// A right-associative level: `next (op self)?`.
    fn right(
        &mut self,
        ops: &[&'static str],
        next: fn(&mut Self) -> R<Expr>,
        this: fn(&mut Self) -> R<Expr>,
    ) -> R<Expr> {
        let lhs = next(self)?;
        let op = match self.peek() {
            Tok::Op(o) | Tok::Kw(o) if ops.contains(o) => *o,
            _ => return Ok(lhs),
        };
        self.bump();
        self.enter()?;
        let rhs = this(self);
        self.depth -= 1;
        Ok(Expr::Op(op, Box::new(lhs), Box::new(rhs?)))
    }

    fn expr150(&mut self) -> R<Expr> {
        self.right(&["orelse"], Self::expr160, Self::expr150)
    }

    fn expr160(&mut self) -> R<Expr> {
        self.right(&["andalso"], Self::expr200, Self::expr160)
    }

    fn expr200(&mut self) -> R<Expr> {
        let lhs = self.expr300()?;
        let op = match self.peek() {
            Tok::Op(o @ ("==" | "/=" | "=<" | "<" | ">=" | ">" | "=:=" | "=/=")) => *o,
            _ => return Ok(lhs),
        };
        self.bump();
        let rhs = self.expr300()?;
        Ok(Expr::Op(op, Box::new(lhs), Box::new(rhs)))
    }

    fn expr300(&mut self) -> R<Expr> {
        self.right(&["++", "--"], Self::expr400, Self::expr300)
    }

    /// A left-associative level; each fold counts as one level of nesting.
    fn left(&mut self, ops: &[&'static str], next: fn(&mut Self) -> R<Expr>) -> R<Expr> {
        let mut lhs = next(self)?;
        let mut folds = 0;
        let result = loop {
            let op = match self.peek() {
                Tok::Op(o) | Tok::Kw(o) if ops.contains(o) => *o,
                _ => break Ok(lhs),
            };
            self.bump();
            if let Err(e) = self.enter() {
                break Err(e);
            }
            folds += 1;
            match next(self) {
                Ok(rhs) => lhs = Expr::Op(op, Box::new(lhs), Box::new(rhs)),
                Err(e) => break Err(e),
            }
        };
        self.depth -= folds;
        result
    }

    fn expr400(&mut self) -> R<Expr> {
        self.left(
            &["+", "-", "bor", "bxor", "bsl", "bsr", "or", "xor"],
            Self::expr500,
        )
    }

    fn expr500(&mut self) -> R<Expr> {
        self.left(&["*", "/", "div", "rem", "band", "and"], Self::expr600)
    }

    fn expr600(&mut self) -> R<Expr> {
        let op = match self.peek() {
            Tok::Op(o @ ("+" | "-")) | Tok::Kw(o @ ("bnot" | "not")) => *o,
            _ => return self.expr700(),
        };
        self.bump();
        self.enter()?;
        let operand = self.expr600();
        self.depth -= 1;
        let operand = operand?;
        // A negative number literal is a literal (so it is a pattern too).
        if op == "-" {
            if let Expr::Lit(t) = &operand {
                if let Some(n) = super::bifs::negate(t) {
                    return Ok(Expr::Lit(n));
                }
            }
        }
        Ok(Expr::Unary(op, Box::new(operand)))
    }

    fn expr700(&mut self) -> R<Expr> {
        let mut e = self.expr800()?;
        let mut folds = 0;
        let result = loop {
            if !(self.is_op("#")
                && matches!(self.tokens.get(self.at + 1), Some(t) if t.tok == Tok::Op("{")))
            {
                break Ok(e);
            }
            self.bump();
            self.bump();
            if let Err(err) = self.enter() {
                break Err(err);
            }
            folds += 1;
            match self.assocs() {
                Ok(assocs) => e = Expr::Map(Some(Box::new(e)), assocs),
                Err(err) => break Err(err),
            }
        };
        self.depth -= folds;
        result
    }

    fn expr800(&mut self) -> R<Expr> {
        let e = self.primary()?;
        if self.eat_op(":") {
            let f = self.primary()?;
            if !self.is_op("(") {
                return Err(self.syntax_error());
            }
            let args = self.args()?;
            return Ok(Expr::Call(Some(Box::new(e)), Box::new(f), args));
        }
        if self.is_op("(") && matches!(e, Expr::Lit(Term::Atom(_))) {
            let args = self.args()?;
            return Ok(Expr::Call(None, Box::new(e), args));
        }
        Ok(e)
    }

    /// `( Args )`.
    fn args(&mut self) -> R<Vec<Expr>> {
        self.expect_op("(")?;
        if self.eat_op(")") {
            return Ok(Vec::new());
        }
        let args = self.exprs()?;
        self.expect_op(")")?;
        Ok(args)
    }

    /// Map associations after `#{`, through the `}`.
    fn assocs(&mut self) -> R<Vec<(Expr, Expr, bool)>> {
        let mut out = Vec::new();
        if self.eat_op("}") {
            return Ok(out);
        }
        loop {
            let k = self.expr()?;
            let exact = if self.eat_op("=>") {
                false
            } else if self.eat_op(":=") {
                true
            } else {
                return Err(self.syntax_error());
            };
            let v = self.expr()?;
            out.push((k, v, exact));
            if self.eat_op("}") {
                return Ok(out);
            }
            self.expect_op(",")?;
        }
    }

    fn primary(&mut self) -> R<Expr> {
        let pos = self.pos();
        match self.peek().clone() {
            Tok::Lit(t) => {
                self.bump();
                Ok(Expr::Lit(t))
            }
            Tok::Atom(a) => {
                self.bump();
                Ok(Expr::Lit(Term::Atom(a)))
            }
            Tok::Var(v) => {
                self.bump();
                Ok(Expr::Var(v, pos))
            }
            Tok::Op("(") => {
                self.bump();
                let e = self.expr()?;
                self.expect_op(")")?;
                Ok(e)
            }
            Tok::Op("{") => {
                self.bump();
                if self.eat_op("}") {
                    return Ok(Expr::Tuple(Vec::new()));
                }
                let elems = self.exprs()?;
                self.expect_op("}")?;
                Ok(Expr::Tuple(elems))
            }
            Tok::Op("[") => {
                self.bump();
                if self.eat_op("]") {
                    return Ok(Expr::Lit(Term::NIL));
                }
                let elems = self.exprs()?;
                let tail = if self.eat_op("|") {
                    Some(Box::new(self.expr()?))
                } else {
                    None
                };
                self.expect_op("]")?;
                Ok(Expr::Cons(elems, tail))
            }
            Tok::Op("#") => {
                self.bump();
                self.expect_op("{")?;
                Ok(Expr::Map(None, self.assocs()?))
            }
            Tok::Kw("begin") => {
                self.bump();
                let body = self.exprs()?;
                self.expect_kw("end")?;
                Ok(Expr::Block(body))
            }
            Tok::Kw("case") => {
                self.bump();
                let e = self.expr()?;
                self.expect_kw("of")?;
                let clauses = self.clauses(true)?;
                Ok(Expr::Case(Box::new(e), clauses))
            }
            Tok::Kw("if") => {
                self.bump();
                Ok(Expr::If(self.clauses(false)?))
            }
            _ => Err(self.syntax_error()),
        }
    }

    /// Clauses separated by `;`, through the `end`.
    fn clauses(&mut self, with_pattern: bool) -> R<Vec<Clause>> {
        let mut out = Vec::new();
        loop {
            let pattern = if with_pattern {
                Some(self.expr()?)
            } else {
                None
            };
            let mut guards = Vec::new();
            let mut guard_at = Vec::new();
            let has_guard = if with_pattern {
                if self.is_kw("when") {
                    self.bump();
                    true
                } else {
                    false
                }
            } else {
                true
            };
            if has_guard {
                loop {
                    let mut tests = Vec::new();
                    let mut starts = Vec::new();
                    loop {
                        starts.push(self.pos());
                        tests.push(self.expr()?);
                        if !self.eat_op(",") {
                            break;
                        }
                    }
                    guards.push(tests);
                    guard_at.push(starts);
                    if !self.eat_op(";") {
                        break;
                    }
                }
            }
            self.expect_op("->")?;
            let body = self.exprs()?;
            out.push(Clause {
                pattern,
                guards,
                guard_at,
                body,
            });
            if self.is_kw("end") {
                self.bump();
                return Ok(out);
            }
            self.expect_op(";")?;
        }
    }
}

/// What `erl_lint` checks before the shell evaluates: every variable used is bound (by an
/// earlier evaluation or earlier in the expression), and the left side of `=` and the
/// clause heads are patterns. `bound` starts as the bindings' names.
pub(super) fn lint(text: &str, exprs: &[Expr], bound: &mut BTreeSet<String>) -> R<()> {
    for e in exprs {
        lint_expr(text, e, bound)?;
    }
    Ok(())
}

fn lint_expr(text: &str, e: &Expr, bound: &mut BTreeSet<String>) -> R<()> {
    match e {
        Expr::Lit(_) => Ok(()),
        Expr::Var(v, pos) => {
            if bound.contains(v) {
                Ok(())
            } else {
                Err(EvalError::syntax(
                    text,
                    *pos,
                    super::unbound_message(v, bound.iter().map(String::as_str)),
                ))
            }
        }
        Expr::Tuple(elems) | Expr::Block(elems) => lint(text, elems, bound),
        Expr::Cons(elems, tail) => {
            lint(text, elems, bound)?;
            match tail {
                Some(t) => lint_expr(text, t, bound),
                None => Ok(()),
            }
        }
        Expr::Map(base, assocs) => {
            if let Some(b) = base {
                lint_expr(text, b, bound)?;
            }
            for (k, v, _) in assocs {
                lint_expr(text, k, bound)?;
                lint_expr(text, v, bound)?;
            }
            Ok(())
        }
        Expr::Match(p, e, pos) => {
            lint_expr(text, e, bound)?;
            lint_pattern(text, p, *pos, bound)
        }
        Expr::Op(op, a, b) if *op == "andalso" || *op == "orelse" => {
            lint_expr(text, a, bound)?;
            // What the right side binds may be bound after it (checked when it is used).
            lint_expr(text, b, bound)
        }
        Expr::Op(_, a, b) => {
            lint_expr(text, a, bound)?;
            lint_expr(text, b, bound)
        }
        Expr::Unary(_, a) => lint_expr(text, a, bound),
        Expr::Case(e, clauses) => {
            lint_expr(text, e, bound)?;
            lint_clauses(text, clauses, bound)
        }
        Expr::If(clauses) => lint_clauses(text, clauses, bound),
        Expr::Call(m, f, args) => {
            // `f(X)` forgets X whether it is bound or not.
            if m.is_none()
                && matches!(&**f, Expr::Lit(Term::Atom(a)) if a == "f")
                && args.len() == 1
            {
                if let Expr::Var(..) = &args[0] {
                    return Ok(());
                }
            }
            if let Some(m) = m {
                lint_expr(text, m, bound)?;
            }
            lint_expr(text, f, bound)?;
            lint(text, args, bound)
        }
    }
}

/// The variables bound in any clause count as bound after the `case` or `if`, as the shell
/// takes them (one bound in some clauses only is an error when it is used and not bound).
fn lint_clauses(text: &str, clauses: &[Clause], bound: &mut BTreeSet<String>) -> R<()> {
    let mut after: Option<BTreeSet<String>> = None;
    for c in clauses {
        let mut inner = bound.clone();
        if let Some(p) = &c.pattern {
            lint_pattern(text, p, 0, &mut inner)?;
        }
        for (tests, starts) in c.guards.iter().zip(&c.guard_at) {
            for (test, at) in tests.iter().zip(starts) {
                if !is_guard(test) {
                    return Err(EvalError::syntax(
                        text,
                        *at,
                        "illegal guard expression".to_owned(),
                    ));
                }
            }
        }
        for g in &c.guards {
            lint(text, g, &mut inner.clone())?;
        }
        lint(text, &c.body, &mut inner)?;
        after = Some(match after {
            None => inner,
            Some(a) => a.union(&inner).cloned().collect(),
        });
    }
    if let Some(a) = after {
        *bound = a;
    }
    Ok(())
}

/// Whether `e` may stand in a guard: literals, variables, constructions, operators (not `!`
/// or `=`) and the guard BIFs (`erl_internal:guard_bif/2` and the type tests), called bare
/// or as `erlang:F(...)`.
fn is_guard(e: &Expr) -> bool {
    match e {
        Expr::Lit(_) | Expr::Var(..) => true,
        Expr::Tuple(elems) => elems.iter().all(is_guard),
        Expr::Cons(elems, tail) => {
            elems.iter().all(is_guard) && tail.as_deref().is_none_or(is_guard)
        }
        Expr::Map(base, assocs) => {
            base.as_deref().is_none_or(is_guard)
                && assocs.iter().all(|(k, v, _)| is_guard(k) && is_guard(v))
        }
        Expr::Op("!", ..) => false,
        Expr::Op(_, a, b) => is_guard(a) && is_guard(b),
        Expr::Unary(_, a) => is_guard(a),
        Expr::Call(m, f, args) => {
            let module_ok = match m.as_deref() {
                None => true,
                Some(m) => atom_of(m).is_some_and(|a| a == "erlang"),
            };
            module_ok
                && atom_of(f).is_some_and(|f| is_guard_bif(f.as_str(), args.len()))
                && args.iter().all(is_guard)
        }
        Expr::Match(..) | Expr::Case(..) | Expr::If(..) | Expr::Block(_) => false,
    }
}

/// The BIFs allowed in guards.
fn is_guard_bif(f: &str, arity: usize) -> bool {
    matches!(
        (f, arity),
        (
            "is_atom"
                | "is_binary"
                | "is_bitstring"
                | "is_boolean"
                | "is_float"
                | "is_function"
                | "is_integer"
                | "is_list"
                | "is_map"
                | "is_number"
                | "is_pid"
                | "is_port"
                | "is_reference"
                | "is_tuple"
                | "abs"
                | "bit_size"
                | "byte_size"
                | "ceil"
                | "float"
                | "floor"
                | "hd"
                | "length"
                | "map_size"
                | "node"
                | "round"
                | "size"
                | "tl"
                | "trunc"
                | "tuple_size",
            1
        ) | (
            "is_function"
                | "is_record"
                | "element"
                | "is_map_key"
                | "map_get"
                | "max"
                | "min"
                | "binary_part",
            2
        ) | ("is_record" | "binary_part", 3)
            | ("node" | "self", 0)
    )
}

/// Binds the variables of pattern `p`; map keys must be bound already.
fn lint_pattern(text: &str, p: &Expr, at: usize, bound: &mut BTreeSet<String>) -> R<()> {
    match p {
        Expr::Lit(_) => Ok(()),
        Expr::Var(v, _) => {
            if v != "_" {
                bound.insert(v.clone());
            }
            Ok(())
        }
        Expr::Tuple(elems) => {
            for e in elems {
                lint_pattern(text, e, at, bound)?;
            }
            Ok(())
        }
        Expr::Cons(elems, tail) => {
            for e in elems {
                lint_pattern(text, e, at, bound)?;
            }
            match tail {
                Some(t) => lint_pattern(text, t, at, bound),
                None => Ok(()),
            }
        }
        Expr::Map(None, assocs) if assocs.iter().all(|(_, _, exact)| *exact) => {
            for (k, v, _) in assocs {
                lint_expr(text, k, bound)?;
                lint_pattern(text, v, at, bound)?;
            }
            Ok(())
        }
        Expr::Match(a, b, _) => {
            lint_pattern(text, a, at, bound)?;
            lint_pattern(text, b, at, bound)
        }
        Expr::Op("++", a, b) if matches!(&**a, Expr::Lit(Term::List(_))) => {
            lint_pattern(text, b, at, bound)
        }
        _ => Err(EvalError::syntax(text, at, "illegal pattern".to_owned())),
    }
}

/// The name of an atom literal.
pub(super) fn atom_of(e: &Expr) -> Option<&Atom> {
    match e {
        Expr::Lit(Term::Atom(a)) => Some(a),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::lex::tokens;
    use super::*;

    fn parse_text(text: &str) -> R<Vec<Expr>> {
        parse(text, &tokens(text)?)
    }

    #[test]
    fn precedence() {
        let e = parse_text("1 + 2 * 3 == 7 andalso true").unwrap();
        let Expr::Op("andalso", lhs, _) = &e[0] else {
            panic!("{e:?}")
        };
        assert!(matches!(&**lhs, Expr::Op("==", ..)));
        let e = parse_text("X = Y = 1").unwrap();
        assert!(matches!(&e[0], Expr::Match(_, rhs, _) if matches!(&**rhs, Expr::Match(..))));
        let e = parse_text("-1").unwrap();
        assert!(matches!(&e[0], Expr::Lit(Term::Int(-1))));
    }

    #[test]
    fn nesting_is_limited() {
        let deep = format!(
            "{}1{}",
            "(".repeat(MAX_NESTING + 1),
            ")".repeat(MAX_NESTING + 1)
        );
        assert!(parse_text(&deep).is_err());
        let long = vec!["1"; 5000].join(" + ");
        let e = parse_text(&long).unwrap_err();
        assert!(e.to_string().contains("nests "), "{e}");
        let unary = format!("{}1", "- ".repeat(MAX_NESTING + 1));
        assert!(parse_text(&unary).is_err());
        let update = format!("#{{}}{}", "#{a => 1}".repeat(MAX_NESTING + 1));
        assert!(parse_text(&update).is_err());
    }
}
