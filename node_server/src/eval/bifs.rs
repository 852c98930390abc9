//! The operators and the functions the evaluator runs natively: Erlang's BIFs that need no
//! process or node (`length/1`, `element/2`, `is_atom/1`, ...), and parts of `lists`, `maps`
//! and `proplists`. Each fails as Erlang does: `badarg` for a BIF, `function_clause` for a
//! library function, `{badkey, K}` and `{badmap, M}` for `maps`; a result past the
//! evaluator's size limits is `system_limit`.

use std::cmp::Ordering;

use num_bigint::BigInt;
use num_traits::{FromPrimitive, Signed, ToPrimitive, Zero};

use crate::etf::{Atom, Map, Term};

use super::{Class, Exception, MAX_INTEGER_BITS, MAX_LIST_LEN};

type R = Result<Term, Exception>;

fn error(reason: Term) -> Exception {
    Exception {
        class: Class::Error,
        reason,
        call: None,
    }
}

fn badarg() -> Exception {
    error(Term::atom("badarg"))
}

fn badarith() -> Exception {
    error(Term::atom("badarith"))
}

fn system_limit() -> Exception {
    error(Term::atom("system_limit"))
}

fn boolean(b: bool) -> Term {
    Term::atom(if b { "true" } else { "false" })
}

fn as_bool(t: &Term) -> Option<bool> {
    match t {
        Term::Atom(a) if a == "true" => Some(true),
        Term::Atom(a) if a == "false" => Some(false),
        _ => None,
    }
}

/// The integer as a big integer, if it is one.
fn big(t: &Term) -> Option<BigInt> {
    match t {
        Term::Int(i) => Some(BigInt::from(*i)),
        Term::BigInt(b) => Some(b.clone()),
        _ => None,
    }
}

/// An integer result, `system_limit` past [`MAX_INTEGER_BITS`].
fn int_result(b: BigInt) -> R {
    if b.bits() > MAX_INTEGER_BITS {
        return Err(system_limit());
    }
    Ok(Term::big_int(b))
}

fn float_of(t: &Term) -> Option<f64> {
    match t {
        Term::Int(i) => Some(*i as f64),
        Term::BigInt(b) => b.to_f64(),
        Term::Float(x) => Some(*x),
        _ => None,
    }
}

fn float_result(x: f64) -> R {
    if x.is_finite() {
        Ok(Term::Float(x))
    } else {
        Err(badarith())
    }
}

fn is_number(t: &Term) -> bool {
    matches!(t, Term::Int(_) | Term::BigInt(_) | Term::Float(_))
}

/// `-N` for a number literal.
pub(super) fn negate(t: &Term) -> Option<Term> {
    match t {
        Term::Int(i) => Some(
            i.checked_neg()
                .map_or_else(|| Term::big_int(-BigInt::from(*i)), Term::Int),
        ),
        Term::BigInt(b) => Some(Term::big_int(-b.clone())),
        Term::Float(x) => Some(Term::Float(-x)),
        _ => None,
    }
}

/// A prefix operator.
pub(super) fn unary(op: &str, a: &Term) -> R {
    match op {
        "-" => negate(a).ok_or_else(badarith),
        "+" if is_number(a) => Ok(a.clone()),
        "bnot" => big(a).map(|b| Term::big_int(-b - 1)).ok_or_else(badarith),
        "not" => as_bool(a).map(|b| boolean(!b)).ok_or_else(badarg),
        _ => Err(badarith()),
    }
}

/// Erlang's arithmetic comparison: numbers compare by value (`1 == 1.0`), at any depth;
/// otherwise term order.
pub(super) fn compare(a: &Term, b: &Term) -> Ordering {
    match (a, b) {
        (x, y) if is_number(x) && is_number(y) => match (x, y) {
            (Term::Float(_), _) | (_, Term::Float(_)) => {
                let (fx, fy) = (float_of(x).unwrap_or(0.0), float_of(y).unwrap_or(0.0));
                fx.partial_cmp(&fy).unwrap_or(Ordering::Equal)
            }
            _ => big(x).cmp(&big(y)),
        },
        (Term::Tuple(x), Term::Tuple(y)) => x.len().cmp(&y.len()).then_with(|| compare_seq(x, y)),
        (Term::List(x), Term::List(y)) => compare_seq(x, y).then(x.len().cmp(&y.len())),
        _ => a.cmp(b),
    }
}

fn compare_seq(x: &[Term], y: &[Term]) -> Ordering {
    x.iter()
        .zip(y)
        .map(|(a, b)| compare(a, b))
        .find(|o| o.is_ne())
        .unwrap_or(Ordering::Equal)
}

/// The elements of a proper list.
fn list(t: &Term) -> Option<&[Term]> {
    match t {
        Term::List(l) => Some(l),
        _ => None,
    }
}

fn check_len(n: usize) -> Result<(), Exception> {
    if n > MAX_LIST_LEN {
        Err(system_limit())
    } else {
        Ok(())
    }
}

/// A binary operator (not `!`, `andalso`, `orelse`).
pub(super) fn binary(op: &str, a: &Term, b: &Term) -> R {
    match op {
        "==" => Ok(boolean(compare(a, b).is_eq())),
        "/=" => Ok(boolean(compare(a, b).is_ne())),
        "<" => Ok(boolean(compare(a, b).is_lt())),
        "=<" => Ok(boolean(compare(a, b).is_le())),
        ">" => Ok(boolean(compare(a, b).is_gt())),
        ">=" => Ok(boolean(compare(a, b).is_ge())),
        "=:=" => Ok(boolean(a == b)),
        "=/=" => Ok(boolean(a != b)),
        "and" | "or" | "xor" => match (as_bool(a), as_bool(b)) {
            (Some(x), Some(y)) => Ok(boolean(match op {
                "and" => x && y,
                "or" => x || y,
                _ => x != y,
            })),
            _ => Err(badarg()),
        },
        "++" => {
            let Some(x) = list(a) else {
                return Err(badarg());
            };
            if x.is_empty() {
                return Ok(b.clone());
            }
            let extra = match b {
                Term::List(y) => y.len(),
                Term::ImproperList(y, _) => y.len(),
                _ => 0,
            };
            check_len(x.len() + extra)?;
            Ok(Term::improper_list(x.to_vec(), b.clone()))
        }
        "--" => {
            let (Some(x), Some(y)) = (list(a), list(b)) else {
                return Err(badarg());
            };
            // Each element of `y` removes the first equal element of `x`: count them, then
            // drop that many first occurrences (linear, where a search per element is not).
            let mut counts: std::collections::HashMap<&Term, usize> = Default::default();
            for del in y {
                *counts.entry(del).or_default() += 1;
            }
            let out = x
                .iter()
                .filter(|e| match counts.get_mut(e) {
                    Some(n) if *n > 0 => {
                        *n -= 1;
                        false
                    }
                    _ => true,
                })
                .cloned()
                .collect();
            Ok(Term::List(out))
        }
        _ => arith(op, a, b),
    }
}

fn arith(op: &str, a: &Term, b: &Term) -> R {
    if !is_number(a) || !is_number(b) {
        return Err(badarith());
    }
    let floats = matches!(a, Term::Float(_)) || matches!(b, Term::Float(_));
    if op == "/" || (floats && matches!(op, "+" | "-" | "*")) {
        let (x, y) = (
            float_of(a).ok_or_else(badarith)?,
            float_of(b).ok_or_else(badarith)?,
        );
        return match op {
            "+" => float_result(x + y),
            "-" => float_result(x - y),
            "*" => float_result(x * y),
            _ if y == 0.0 => Err(badarith()),
            _ => float_result(x / y),
        };
    }
    let (Some(x), Some(y)) = (big(a), big(b)) else {
        return Err(badarith());
    };
    match op {
        "+" => int_result(x + y),
        "-" => int_result(x - y),
        "*" => {
            if x.bits() + y.bits() > MAX_INTEGER_BITS + 1 {
                return Err(system_limit());
            }
            int_result(x * y)
        }
        "div" | "rem" if y.is_zero() => Err(badarith()),
        // Erlang's div and rem truncate towards zero.
        "div" => int_result(x / y),
        "rem" => int_result(x % y),
        "band" => int_result(x & y),
        "bor" => int_result(x | y),
        "bxor" => int_result(x ^ y),
        "bsl" | "bsr" => {
            let shift = y.to_i64().ok_or_else(system_limit)?;
            let left = if op == "bsl" { shift } else { -shift };
            if left > 0 {
                if x.bits() + left.unsigned_abs() > MAX_INTEGER_BITS {
                    return Err(system_limit());
                }
                int_result(x << left.unsigned_abs())
            } else {
                let right = left.unsigned_abs().min(MAX_INTEGER_BITS + 64);
                int_result(x >> right)
            }
        }
        _ => Err(badarith()),
    }
}

/// An Erlang string of `text`.
fn string(text: &str) -> Term {
    Term::List(
        text.chars()
            .map(|c| Term::Int(i64::from(u32::from(c))))
            .collect(),
    )
}

/// The text of a flat list of character codes.
fn chars(t: &Term) -> Option<String> {
    list(t)?
        .iter()
        .map(|c| match c {
            Term::Int(i) => u32::try_from(*i).ok().and_then(char::from_u32),
            _ => None,
        })
        .collect()
}

/// The bytes of an iolist (bytes, binaries and iolists, nested).
fn iolist(t: &Term, out: &mut Vec<u8>, depth: usize) -> Option<()> {
    if depth > super::MAX_NESTING * 4 {
        return None;
    }
    match t {
        Term::Binary(b) => out.extend_from_slice(b),
        Term::List(items) => {
            for i in items {
                match i {
                    Term::Int(b) => out.push(u8::try_from(*b).ok()?),
                    other => iolist(other, out, depth + 1)?,
                }
            }
        }
        Term::ImproperList(items, tail) => {
            iolist(&Term::List(items.clone()), out, depth + 1)?;
            match &**tail {
                Term::Binary(b) => out.extend_from_slice(b),
                _ => return None,
            }
        }
        _ => return None,
    }
    if out.len() > MAX_LIST_LEN {
        return None;
    }
    Some(())
}

/// An Erlang BIF that needs neither a process nor the node, by name and arguments; `None`
/// when there is no such BIF here.
pub(super) fn erlang(f: &str, args: &[Term]) -> Option<R> {
    let is = |pred: fn(&Term) -> bool| -> Option<R> {
        match args {
            [a] => Some(Ok(boolean(pred(a)))),
            _ => None,
        }
    };
    let r = match (f, args) {
        ("is_atom", _) => return is(|t| matches!(t, Term::Atom(_))),
        ("is_integer", _) => return is(|t| matches!(t, Term::Int(_) | Term::BigInt(_))),
        ("is_float", _) => return is(|t| matches!(t, Term::Float(_))),
        ("is_number", _) => return is(is_number),
        ("is_list", _) => return is(|t| matches!(t, Term::List(_) | Term::ImproperList(..))),
        ("is_tuple", _) => return is(|t| matches!(t, Term::Tuple(_))),
        ("is_map", _) => return is(|t| matches!(t, Term::Map(_))),
        ("is_binary", _) => return is(|t| matches!(t, Term::Binary(_))),
        ("is_bitstring", _) => return is(|t| matches!(t, Term::Binary(_) | Term::BitBinary(_))),
        ("is_boolean", _) => return is(|t| as_bool(t).is_some()),
        ("is_pid", _) => return is(|t| matches!(t, Term::Pid(_))),
        ("is_port", _) => return is(|t| matches!(t, Term::Port(_))),
        ("is_reference", _) => return is(|t| matches!(t, Term::Reference(_))),
        ("is_function", _) => return is(|t| matches!(t, Term::Fun(_))),
        ("length", [a]) => list(a)
            .map(|l| Term::Int(l.len() as i64))
            .ok_or_else(badarg),
        ("tuple_size", [Term::Tuple(t)]) => Ok(Term::Int(t.len() as i64)),
        ("map_size", [Term::Map(m)]) => Ok(Term::Int(m.len() as i64)),
        ("byte_size", [Term::Binary(b)]) => Ok(Term::Int(b.len() as i64)),
        ("element", [Term::Int(n), Term::Tuple(t)]) => usize::try_from(*n)
            .ok()
            .and_then(|n| n.checked_sub(1))
            .and_then(|i| t.get(i).cloned())
            .ok_or_else(badarg),
        ("setelement", [Term::Int(n), Term::Tuple(t), v]) => {
            let mut t = t.clone();
            match usize::try_from(*n).ok().and_then(|n| n.checked_sub(1)) {
                Some(i) if i < t.len() => {
                    t[i] = v.clone();
                    Ok(Term::Tuple(t))
                }
                _ => Err(badarg()),
            }
        }
        ("hd", [Term::List(l)]) if !l.is_empty() => Ok(l[0].clone()),
        ("hd", [Term::ImproperList(l, _)]) => Ok(l[0].clone()),
        ("tl", [Term::List(l)]) if !l.is_empty() => Ok(Term::List(l[1..].to_vec())),
        ("tl", [Term::ImproperList(l, t)]) => {
            Ok(Term::improper_list(l[1..].to_vec(), (**t).clone()))
        }
        ("abs", [a]) => match a {
            Term::Float(x) => Ok(Term::Float(x.abs())),
            _ => big(a).map(|b| Term::big_int(b.abs())).ok_or_else(badarg),
        },
        ("max", [a, b]) => Ok(if compare(a, b).is_lt() { b } else { a }.clone()),
        ("min", [a, b]) => Ok(if compare(a, b).is_gt() { b } else { a }.clone()),
        ("float", [a]) => float_of(a).map(Term::Float).ok_or_else(badarg),
        ("round" | "trunc", [a]) => match a {
            Term::Float(x) => {
                let y = if f == "round" { x.round() } else { x.trunc() };
                Ok(BigInt::from_f64(y).map_or(Term::Int(0), Term::big_int))
            }
            _ if big(a).is_some() => Ok(a.clone()),
            _ => Err(badarg()),
        },
        ("atom_to_list", [Term::Atom(a)]) => Ok(string(a.as_str())),
        ("atom_to_binary", [Term::Atom(a)]) => Ok(Term::binary(a.as_str())),
        ("atom_to_binary", [Term::Atom(a), _]) => Ok(Term::binary(a.as_str())),
        ("list_to_atom", [l]) => match chars(l) {
            Some(s) if s.chars().count() <= Atom::MAX_CHARS => Ok(Term::atom(s)),
            Some(_) => Err(system_limit()),
            None => Err(badarg()),
        },
        ("binary_to_atom" | "binary_to_existing_atom", [Term::Binary(b), ..])
            if args.len() <= 2 =>
        {
            match std::str::from_utf8(b) {
                Ok(s) if s.chars().count() <= Atom::MAX_CHARS => Ok(Term::atom(s)),
                Ok(_) => Err(system_limit()),
                Err(_) => Err(badarg()),
            }
        }
        ("integer_to_list", [a]) => big(a).map(|b| string(&b.to_string())).ok_or_else(badarg),
        ("integer_to_binary", [a]) => big(a)
            .map(|b| Term::binary(b.to_string()))
            .ok_or_else(badarg),
        ("list_to_integer", [l]) => chars(l).and_then(|s| parse_int(&s)).ok_or_else(badarg),
        ("binary_to_integer", [Term::Binary(b)]) => std::str::from_utf8(b)
            .ok()
            .and_then(parse_int)
            .ok_or_else(badarg),
        ("binary_to_list", [Term::Binary(b)]) => check_len(b.len())
            .map(|()| Term::List(b.iter().map(|x| Term::Int(i64::from(*x))).collect())),
        ("list_to_binary" | "iolist_to_binary", [l]) => {
            let mut out = Vec::new();
            if let Term::Binary(b) = l {
                return Some(Ok(Term::Binary(b.clone())));
            }
            iolist(l, &mut out, 0)
                .map(|()| Term::binary(out))
                .ok_or_else(badarg)
        }
        ("tuple_to_list", [Term::Tuple(t)]) => Ok(Term::List(t.clone())),
        ("list_to_tuple", [l]) => list(l).map(|l| Term::Tuple(l.to_vec())).ok_or_else(badarg),
        ("term_to_binary", [t]) => Ok(Term::Binary(t.encode())),
        ("binary_to_term", [Term::Binary(b)]) => Term::decode(b).map_err(|_| badarg()),
        ("map_get", [k, Term::Map(m)]) => m
            .get(k)
            .cloned()
            .ok_or_else(|| error(Term::tuple(vec![Term::atom("badkey"), k.clone()]))),
        ("map_get", [_, m]) => Err(error(Term::tuple(vec![Term::atom("badmap"), m.clone()]))),
        ("is_map_key", [k, Term::Map(m)]) => Ok(boolean(m.get(k).is_some())),
        ("error", [r]) => Err(error(r.clone())),
        ("exit", [r]) => Err(Exception {
            class: Class::Exit,
            reason: r.clone(),
            call: None,
        }),
        ("throw", [r]) => Err(Exception {
            class: Class::Throw,
            reason: r.clone(),
            call: None,
        }),
        _ if arity_known(f, args.len()) => Err(badarg()),
        _ => return None,
    };
    Some(r)
}

/// Whether `f/arity` is one of the BIFs above (so wrong arguments are `badarg`, not undef).
fn arity_known(f: &str, arity: usize) -> bool {
    matches!(
        (f, arity),
        (
            "length" | "tuple_size" | "map_size" | "byte_size" | "hd" | "tl" | "atom_to_list",
            1
        ) | (
            "binary_to_list" | "tuple_to_list" | "binary_to_term" | "binary_to_integer",
            1
        ) | (
            "atom_to_binary" | "binary_to_atom" | "binary_to_existing_atom",
            1 | 2
        ) | ("element" | "is_map_key", 2)
            | ("setelement", 3)
    )
}

fn parse_int(s: &str) -> Option<Term> {
    let digits = s.strip_prefix(['-', '+']).unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 100_000 {
        return None;
    }
    s.parse::<BigInt>().ok().map(Term::big_int)
}

/// The auto-imported BIFs: callable without a module.
pub(super) fn auto_imported(f: &str) -> bool {
    f.starts_with("is_")
        || matches!(
            f,
            "length"
                | "tuple_size"
                | "map_size"
                | "byte_size"
                | "element"
                | "setelement"
                | "hd"
                | "tl"
                | "abs"
                | "max"
                | "min"
                | "float"
                | "round"
                | "trunc"
                | "atom_to_list"
                | "atom_to_binary"
                | "list_to_atom"
                | "binary_to_atom"
                | "binary_to_existing_atom"
                | "integer_to_list"
                | "integer_to_binary"
                | "list_to_integer"
                | "binary_to_integer"
                | "binary_to_list"
                | "list_to_binary"
                | "iolist_to_binary"
                | "tuple_to_list"
                | "list_to_tuple"
                | "term_to_binary"
                | "binary_to_term"
                | "map_get"
                | "error"
                | "exit"
                | "throw"
        )
}

/// A function of `lists`, `maps` or `proplists` done here; `None` when it is not.
pub(super) fn library(m: &str, f: &str, args: &[Term]) -> Option<R> {
    let r = match m {
        "lists" => lists(f, args)?,
        "maps" => maps(f, args)?,
        "proplists" => proplists(f, args)?,
        _ => return None,
    };
    Some(r.map_err(|mut e| {
        if e.reason.is_atom("function_clause") {
            e.call = Some(Box::new((Atom::new(m), Atom::new(f), args.to_vec())));
        }
        e
    }))
}

fn function_clause() -> Exception {
    error(Term::atom("function_clause"))
}

/// The proper list, or `function_clause`.
fn proper(t: &Term) -> Result<&[Term], Exception> {
    list(t).ok_or_else(function_clause)
}

fn usize_of(t: &Term) -> Option<usize> {
    t.as_i64().and_then(|i| usize::try_from(i).ok())
}

fn lists(f: &str, args: &[Term]) -> Option<R> {
    let fc = || Err(function_clause());
    Some(match (f, args) {
        ("reverse", [l]) => proper(l).map(|l| Term::List(l.iter().rev().cloned().collect())),
        ("reverse", [l, tail]) => {
            proper(l).map(|l| Term::improper_list(l.iter().rev().cloned().collect(), tail.clone()))
        }
        ("seq", [from, to]) => seq(from, to, &Term::Int(1)),
        ("seq", [from, to, step]) => seq(from, to, step),
        ("member", [x, l]) => proper(l).map(|l| boolean(l.contains(x))),
        ("append", [a, b]) => binary("++", a, b).map_err(|_| function_clause()),
        ("append", [ls]) => {
            let ls = match proper(ls) {
                Ok(ls) => ls,
                Err(e) => return Some(Err(e)),
            };
            let mut out = Vec::new();
            for l in ls {
                match list(l) {
                    Some(l) => out.extend_from_slice(l),
                    None => return Some(fc()),
                }
                if let Err(e) = check_len(out.len()) {
                    return Some(Err(e));
                }
            }
            Ok(Term::List(out))
        }
        ("nth", [n, l]) => match (usize_of(n), list(l)) {
            (Some(n), Some(l)) if n >= 1 && n <= l.len() => Ok(l[n - 1].clone()),
            _ => fc(),
        },
        ("nthtail", [n, l]) => match (usize_of(n), list(l)) {
            (Some(n), Some(l)) if n <= l.len() => Ok(Term::List(l[n..].to_vec())),
            _ => fc(),
        },
        ("sum", [l]) => proper(l).and_then(|l| {
            l.iter()
                .try_fold(Term::Int(0), |acc, x| binary("+", &acc, x))
        }),
        ("max" | "min", [l]) => match list(l) {
            Some(l) if !l.is_empty() => {
                let pick = l.iter().skip(1).fold(&l[0], |best, x| {
                    let o = compare(x, best);
                    if (f == "max" && o.is_gt()) || (f == "min" && o.is_lt()) {
                        x
                    } else {
                        best
                    }
                });
                Ok(pick.clone())
            }
            _ => fc(),
        },
        ("sort", [l]) => proper(l).map(|l| {
            let mut v = l.to_vec();
            v.sort_by(compare);
            Term::List(v)
        }),
        ("usort", [l]) => proper(l).map(|l| {
            let mut v = l.to_vec();
            v.sort_by(compare);
            v.dedup_by(|a, b| compare(a, b).is_eq());
            Term::List(v)
        }),
        ("last", [l]) => match list(l) {
            Some([.., last]) => Ok(last.clone()),
            _ => fc(),
        },
        ("flatten", [l]) => proper(l).and_then(|l| {
            let mut out = Vec::new();
            flatten(l, &mut out, 0)?;
            Ok(Term::List(out))
        }),
        ("zip", [a, b]) => match (list(a), list(b)) {
            (Some(a), Some(b)) if a.len() == b.len() => Ok(Term::List(
                a.iter()
                    .zip(b)
                    .map(|(x, y)| Term::tuple(vec![x.clone(), y.clone()]))
                    .collect(),
            )),
            _ => fc(),
        },
        ("duplicate", [n, x]) => match usize_of(n) {
            Some(n) if n <= MAX_LIST_LEN => Ok(Term::List(vec![x.clone(); n])),
            Some(_) => Err(system_limit()),
            None => fc(),
        },
        ("sublist", [l, n]) => match (list(l), usize_of(n)) {
            (Some(l), Some(n)) => Ok(Term::List(l[..n.min(l.len())].to_vec())),
            _ => fc(),
        },
        ("sublist", [l, start, n]) => match (list(l), usize_of(start), usize_of(n)) {
            (Some(l), Some(s), Some(n)) if s >= 1 && s <= l.len() + 1 => {
                let from = s - 1;
                Ok(Term::List(l[from..(from + n).min(l.len())].to_vec()))
            }
            _ => fc(),
        },
        ("split", [n, l]) => match (usize_of(n), list(l)) {
            (Some(n), Some(l)) if n <= l.len() => Ok(Term::tuple(vec![
                Term::List(l[..n].to_vec()),
                Term::List(l[n..].to_vec()),
            ])),
            _ => Err(badarg()),
        },
        ("delete", [x, l]) => proper(l).map(|l| {
            let mut v = l.to_vec();
            if let Some(i) = v.iter().position(|e| e == x) {
                v.remove(i);
            }
            Term::List(v)
        }),
        ("keyfind", [k, n, l]) => match (usize_of(n), list(l)) {
            (Some(n), Some(l)) if n >= 1 => Ok(l
                .iter()
                .find(|t| key_of(t, n).is_some_and(|x| compare(x, k).is_eq()))
                .cloned()
                .unwrap_or_else(|| boolean(false))),
            _ => Err(badarg()),
        },
        ("keydelete", [k, n, l]) => match (usize_of(n), list(l)) {
            (Some(n), Some(l)) if n >= 1 => {
                let mut v = l.to_vec();
                if let Some(i) = v
                    .iter()
                    .position(|t| key_of(t, n).is_some_and(|x| compare(x, k).is_eq()))
                {
                    v.remove(i);
                }
                Ok(Term::List(v))
            }
            _ => fc(),
        },
        ("keystore", [k, n, l, new]) => match (usize_of(n), list(l), new) {
            (Some(n), Some(l), Term::Tuple(_)) if n >= 1 => {
                let mut v = l.to_vec();
                match v
                    .iter()
                    .position(|t| key_of(t, n).is_some_and(|x| compare(x, k).is_eq()))
                {
                    Some(i) => v[i] = new.clone(),
                    None => v.push(new.clone()),
                }
                Ok(Term::List(v))
            }
            _ => fc(),
        },
        _ => return None,
    })
}

/// Element `n` (1-based) of a tuple.
fn key_of(t: &Term, n: usize) -> Option<&Term> {
    t.as_tuple()?.get(n - 1)
}

fn flatten(items: &[Term], out: &mut Vec<Term>, depth: usize) -> Result<(), Exception> {
    if depth > super::MAX_NESTING * 4 {
        return Err(system_limit());
    }
    for i in items {
        match i {
            Term::List(inner) => flatten(inner, out, depth + 1)?,
            Term::ImproperList(..) => return Err(function_clause()),
            other => out.push(other.clone()),
        }
        check_len(out.len())?;
    }
    Ok(())
}

fn seq(from: &Term, to: &Term, step: &Term) -> R {
    let (Some(a), Some(b), Some(s)) = (from.as_i64(), to.as_i64(), step.as_i64()) else {
        return Err(function_clause());
    };
    let bad = (s > 0 && b < a - 1) || (s < 0 && b > a + 1) || (s == 0 && a != b);
    if bad {
        return Err(function_clause());
    }
    if s == 0 {
        return Ok(Term::list(vec![Term::Int(a)]));
    }
    let n = ((i128::from(b) - i128::from(a)) / i128::from(s) + 1).max(0);
    if n > MAX_LIST_LEN as i128 {
        return Err(system_limit());
    }
    Ok(Term::List(
        (0..n as i64).map(|i| Term::Int(a + i * s)).collect(),
    ))
}

fn badmap(m: &Term) -> Exception {
    error(Term::tuple(vec![Term::atom("badmap"), m.clone()]))
}

fn badkey(k: &Term) -> Exception {
    error(Term::tuple(vec![Term::atom("badkey"), k.clone()]))
}

fn maps(f: &str, args: &[Term]) -> Option<R> {
    let map_arg = match (f, args) {
        ("new", []) => return Some(Ok(Term::Map(Map::new()))),
        ("from_list", [l]) => {
            return Some(match list(l) {
                Some(l) => l
                    .iter()
                    .map(|kv| match kv.as_tuple() {
                        Some([k, v]) => Ok((k.clone(), v.clone())),
                        _ => Err(badarg()),
                    })
                    .collect::<Result<Vec<_>, _>>()
                    .map(|e| Term::Map(Map::from_entries(e))),
                None => Err(badarg()),
            })
        }
        ("get" | "find" | "is_key" | "remove", [_, m]) | ("get", [_, m, _]) => m,
        ("put" | "update", [_, _, m]) => m,
        ("keys" | "values" | "to_list" | "size", [m]) => m,
        ("merge", [a, b]) => {
            return Some(match (a, b) {
                (Term::Map(x), Term::Map(y)) => {
                    let mut out = x.clone();
                    for (k, v) in y.iter() {
                        out.insert(k.clone(), v.clone());
                    }
                    Ok(Term::Map(out))
                }
                (Term::Map(_), other) | (other, _) => Err(badmap(other)),
            })
        }
        _ => return None,
    };
    let Term::Map(m) = map_arg else {
        return Some(Err(badmap(map_arg)));
    };
    Some(match (f, args) {
        ("get", [k, _]) => m.get(k).cloned().ok_or_else(|| badkey(k)),
        ("get", [k, _, default]) => Ok(m.get(k).cloned().unwrap_or_else(|| default.clone())),
        ("find", [k, _]) => Ok(m.get(k).map_or_else(
            || Term::atom("error"),
            |v| Term::tuple(vec![Term::atom("ok"), v.clone()]),
        )),
        ("is_key", [k, _]) => Ok(boolean(m.get(k).is_some())),
        ("remove", [k, _]) => {
            let mut out = m.clone();
            out.remove(k);
            Ok(Term::Map(out))
        }
        ("put", [k, v, _]) => {
            let mut out = m.clone();
            out.insert(k.clone(), v.clone());
            Ok(Term::Map(out))
        }
        ("update", [k, v, _]) => {
            if m.get(k).is_none() {
                return Some(Err(badkey(k)));
            }
            let mut out = m.clone();
            out.insert(k.clone(), v.clone());
            Ok(Term::Map(out))
        }
        ("keys", _) => Ok(Term::List(m.iter().map(|(k, _)| k.clone()).collect())),
        ("values", _) => Ok(Term::List(m.iter().map(|(_, v)| v.clone()).collect())),
        ("to_list", _) => Ok(Term::List(
            m.iter()
                .map(|(k, v)| Term::tuple(vec![k.clone(), v.clone()]))
                .collect(),
        )),
        ("size", _) => Ok(Term::Int(m.len() as i64)),
        _ => return None,
    })
}

/// A proplist entry's key and value: `{K, V}` (first two elements of a tuple) or an atom `K`
/// (standing for `{K, true}`).
fn prop(entry: &Term) -> Option<(&Term, Term)> {
    match entry {
        Term::Atom(_) => Some((entry, boolean(true))),
        Term::Tuple(t) if !t.is_empty() => Some((&t[0], t.get(1).cloned().unwrap_or(Term::NIL))),
        _ => None,
    }
}

fn proplists(f: &str, args: &[Term]) -> Option<R> {
    let (key, l) = match args {
        [k, l] | [k, l, _] => (k, l),
        _ => return None,
    };
    let items = match list(l) {
        Some(items) => items,
        None => return Some(Err(function_clause())),
    };
    let find = || {
        items
            .iter()
            .find(|e| prop(e).is_some_and(|(k, _)| k == key))
    };
    Some(match (f, args) {
        ("get_value", [_, _]) => Ok(find()
            .and_then(prop)
            .map_or_else(|| Term::atom("undefined"), |(_, v)| v)),
        ("get_value", [_, _, default]) => Ok(find()
            .and_then(prop)
            .map_or_else(|| default.clone(), |(_, v)| v)),
        ("lookup", [_, _]) => Ok(match find() {
            Some(Term::Atom(a)) => Term::tuple(vec![Term::Atom(a.clone()), boolean(true)]),
            Some(t) => t.clone(),
            None => Term::atom("none"),
        }),
        ("get_all_values", [_, _]) => Ok(Term::List(
            items
                .iter()
                .filter_map(prop)
                .filter(|(k, _)| *k == key)
                .map(|(_, v)| v)
                .collect(),
        )),
        ("delete", [_, _]) => Ok(Term::List(
            items
                .iter()
                .filter(|e| prop(e).is_none_or(|(k, _)| k != key))
                .cloned()
                .collect(),
        )),
        _ => return None,
    })
}
