//! Spawnable kinds: ractor actors that other nodes (Erlang's `spawn/4` and
//! `erlang:spawn_request/5`, or [`crate::Node::spawn_on`] from another node of ours) start on
//! this node by name.
//!
//! A kind is registered with [`crate::Node::spawnable`] (or [`crate::Node::spawnable_with`]
//! for a version and requirements): an actor type `A` with `A: Default`, whose messages are an
//! [`ErlangMessage`] (so Erlang can send to it and call it) and whose `Arguments` convert from
//! the Erlang argument list of the spawn.
//!
//! # Names and versions
//! A kind is `name` or `name/N` (`counter/2`): a bare name registers version 1. Spawning
//! `name/N` starts that version; spawning a bare `name` starts the highest version registered.
//! Several versions run side by side. From Erlang the kind is the module of the MFA:
//! `spawn(Node, counter, start, [5])`, or `spawn(Node, 'counter/2', start, [5])`. The function
//! name is not looked at: `start` by convention, any atom works.
//!
//! # Arguments
//! The spawn's argument list `[A1, ..., An]` converts to `A::Arguments` with [`FromTerm`]: for
//! one argument, from `A1` itself when that converts (`[5]` gives an `i64` of 5), else from
//! the list; for any other number, from the list, else from the tuple `{A1, ..., An}`.
//!
//! # Failures, as OTP's
//! An Erlang spawn of a function that is undefined, or that crashes at once, still gives a
//! pid, whose link or monitor then fires. A spawn here does the same, with a reason that names
//! the problem, and nothing is left running:
//! - unknown kind (and no rpc function `Kind:Function/N` either; one that exists runs as a
//!   short-lived process, see [`crate::processes`]): `{undef, [{Kind, Function, Args, []}]}`;
//! - arguments that do not convert: `{function_clause, [{Kind, Function, Args, [{reason,
//!   Text}]}]}`;
//! - the actor's `pre_start` failing: `{start_failed, Text}`.
//!
//! A spawn from a node the admin guard ([`crate::NodeConfig::admin_allow`]) refuses is
//! answered with the error `not_allowed` (`erlang:spawn_request/5` gives `{spawn_reply, Ref,
//! error, not_allowed}`; `spawn/4` logs that it cannot start and returns a pid that is not
//! alive), and nothing starts.
//!
//! # Requirements
//! A kind may require capabilities of the node it runs on (`gpu = yes`); a node declares its
//! capabilities with [`crate::NodeConfig::capabilities`]. Placement ([`crate::placement`])
//! only picks nodes that have the kind and satisfy its requirements there.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use ractor::Actor;

use crate::core::Core;
use crate::etf::{Atom, ConversionError, FromTerm, Term, ToTerm};
use crate::message::ErlangMessage;
use crate::network::BoxFuture;
use crate::registry::LocalActor;

/// Why a kind could not be registered or started.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum KindError {
    /// The name is empty, not a valid atom, or its version is not a positive integer.
    #[error("bad kind name {0:?}: expected name or name/N (N >= 1)")]
    BadName(String),
    /// No such kind here.
    #[error("unknown kind {0}")]
    Unknown(String),
    /// The arguments do not convert to the kind's.
    #[error("arguments {args} do not fit kind {kind}: {error}")]
    BadArgs {
        /// The kind.
        kind: String,
        /// The arguments given.
        args: Term,
        /// Why they do not convert.
        error: ConversionError,
    },
    /// The actor did not start.
    #[error("kind {kind} did not start: {reason}")]
    StartFailed {
        /// The kind.
        kind: String,
        /// ractor's error.
        reason: String,
    },
}

impl KindError {
    /// The exit reason an Erlang process would have (see the module docs), for a spawn of
    /// `kind:function(args)`.
    pub fn exit_reason(&self, kind: &Atom, function: &Atom, args: &[Term]) -> Term {
        let frame = |extra: Vec<Term>| {
            Term::list(vec![Term::tuple(vec![
                Term::Atom(kind.clone()),
                Term::Atom(function.clone()),
                Term::list(args.to_vec()),
                Term::list(extra),
            ])])
        };
        match self {
            KindError::BadName(_) | KindError::Unknown(_) => {
                Term::tuple(vec![Term::atom("undef"), frame(Vec::new())])
            }
            KindError::BadArgs { error, .. } => Term::tuple(vec![
                Term::atom("function_clause"),
                frame(vec![Term::tuple(vec![
                    Term::atom("reason"),
                    Term::binary(error.to_string()),
                ])]),
            ]),
            KindError::StartFailed { reason, .. } => {
                Term::tuple(vec![Term::atom("start_failed"), Term::binary(reason)])
            }
        }
    }
}

/// A kind's name split: (name, version) where the version is `None` for a bare name.
pub fn parse_kind(kind: &str) -> Result<(String, Option<u32>), KindError> {
    let bad = || KindError::BadName(kind.to_owned());
    let (name, version) = match kind.rsplit_once('/') {
        Some((name, v)) => {
            let v: u32 = v.parse().map_err(|_| bad())?;
            if v == 0 {
                return Err(bad());
            }
            (name, Some(v))
        }
        None => (kind, None),
    };
    if name.is_empty() || name.chars().count() > Atom::MAX_CHARS || name.contains('/') {
        return Err(bad());
    }
    Ok((name.to_owned(), version))
}

/// What registers a kind: its name (with an optional version) and the capabilities it
/// requires of a node.
#[derive(Debug, Clone)]
pub struct KindSpec {
    name: String,
    requires: Vec<(String, String)>,
}

impl KindSpec {
    /// A kind called `name` (`counter`, or `counter/2` for version 2).
    pub fn new(name: impl Into<String>) -> KindSpec {
        KindSpec {
            name: name.into(),
            requires: Vec::new(),
        }
    }

    /// Requires capability `key` = `value` of the node it runs on.
    pub fn requires(mut self, key: impl Into<String>, value: impl Into<String>) -> KindSpec {
        self.requires.push((key.into(), value.into()));
        self
    }
}

/// A registered kind as `node_server:kinds/0` lists it: the map `#{name => <<"counter">>,
/// version => 1, requires => [{<<"gpu">>, <<"yes">>}]}`.
#[derive(Debug, Clone, PartialEq, Eq, ToTerm, FromTerm)]
pub struct KindInfo {
    /// The kind's name, without version.
    pub name: String,
    /// Its version.
    pub version: u32,
    /// The capabilities it requires, as (key, value).
    pub requires: Vec<(String, String)>,
}

impl KindInfo {
    /// `name/version`.
    pub fn full_name(&self) -> String {
        format!("{}/{}", self.name, self.version)
    }
}

/// Converts the spawn's arguments and returns the future that starts the actor.
type Start = dyn Fn(
        &Arc<Core>,
        &[Term],
    ) -> Result<BoxFuture<'static, Result<Arc<LocalActor>, String>>, ConversionError>
    + Send
    + Sync;

struct Kind {
    info: KindInfo,
    start: Box<Start>,
}

/// The kinds registered on a node (a service slot of the core).
#[derive(Default)]
pub(crate) struct Kinds {
    by_name: RwLock<BTreeMap<String, BTreeMap<u32, Arc<Kind>>>>,
}

/// Converts a spawn's argument list to `T` (see the module docs).
fn convert_args<T: FromTerm>(args: &[Term]) -> Result<T, ConversionError> {
    let list = Term::list(args.to_vec());
    match args {
        // The argument's own error says more than the list's.
        [one] => T::from_term(one).or_else(|e| T::from_term(&list).map_err(|_| e)),
        _ => T::from_term(&list)
            .or_else(|e| T::from_term(&Term::tuple(args.to_vec())).map_err(|_| e)),
    }
}

impl Kinds {
    /// The kinds of `core`, made on first use.
    pub fn of(core: &Core) -> Arc<Kinds> {
        core.services.get_or_insert(Kinds::default)
    }

    /// Registers actor type `A`, made by `make` for each spawn, as `spec` (replacing the
    /// same name and version). `make` gives `None` when the node is stopping.
    pub fn register<A>(
        &self,
        spec: KindSpec,
        make: impl Fn(&Arc<Core>) -> Option<A> + Send + Sync + 'static,
    ) -> Result<KindInfo, KindError>
    where
        A: Actor,
        A::Msg: ErlangMessage,
        A::Arguments: FromTerm,
    {
        self.register_converted(
            spec,
            move |core| make(core).ok_or_else(|| "the node is stopping".to_owned()),
            convert_args::<A::Arguments>,
        )
    }

    /// [`Kinds::register`] with the spawn's argument list converted by `convert` instead of
    /// [`FromTerm`] (see the module docs), and a `make` that says why it cannot make the
    /// actor (the spawn fails with that text).
    pub fn register_converted<A>(
        &self,
        spec: KindSpec,
        make: impl Fn(&Arc<Core>) -> Result<A, String> + Send + Sync + 'static,
        convert: impl Fn(&[Term]) -> Result<A::Arguments, ConversionError> + Send + Sync + 'static,
    ) -> Result<KindInfo, KindError>
    where
        A: Actor,
        A::Msg: ErlangMessage,
    {
        let (name, version) = parse_kind(&spec.name)?;
        let info = KindInfo {
            name: name.clone(),
            version: version.unwrap_or(1),
            requires: spec.requires,
        };
        let start: Box<Start> = Box::new(move |core, args| {
            let arguments: A::Arguments = convert(args)?;
            let handler = make(core);
            let core = core.clone();
            Ok(Box::pin(async move {
                let handler = handler?;
                // Children of the node server: they stop with the node, and their exits reach
                // the router's rules as every watched actor's do.
                let started = match core.server.get() {
                    Some(server) => A::spawn_linked(None, handler, arguments, server.clone()).await,
                    None => A::spawn(None, handler, arguments).await,
                };
                let (actor, _) = started.map_err(|e| e.to_string())?;
                Ok(core.router.expose(&actor))
            }))
        });
        crate::write(&self.by_name).entry(name).or_default().insert(
            info.version,
            Arc::new(Kind {
                info: info.clone(),
                start,
            }),
        );
        Ok(info)
    }

    /// Removes version `version` of kind `name` (a bare name then picks the highest left);
    /// whether it was there.
    #[cfg_attr(not(feature = "wasm"), allow(dead_code))]
    pub fn remove(&self, name: &str, version: u32) -> bool {
        let mut by_name = crate::write(&self.by_name);
        let Some(versions) = by_name.get_mut(name) else {
            return false;
        };
        let removed = versions.remove(&version).is_some();
        if versions.is_empty() {
            by_name.remove(name);
        }
        removed
    }

    /// The versions of kind `name` registered now, in order.
    #[cfg_attr(not(feature = "wasm"), allow(dead_code))]
    pub fn versions(&self, name: &str) -> Vec<u32> {
        crate::read(&self.by_name)
            .get(name)
            .map(|v| v.keys().copied().collect())
            .unwrap_or_default()
    }

    /// Every kind, by name then version.
    pub fn list(&self) -> Vec<KindInfo> {
        crate::read(&self.by_name)
            .values()
            .flat_map(|versions| versions.values().map(|k| k.info.clone()))
            .collect()
    }

    /// The kind `kind` names (a bare name: its highest version).
    fn find(&self, kind: &str) -> Result<Arc<Kind>, KindError> {
        let (name, version) = parse_kind(kind)?;
        let by_name = crate::read(&self.by_name);
        let versions = by_name
            .get(&name)
            .ok_or_else(|| KindError::Unknown(kind.to_owned()))?;
        match version {
            Some(v) => versions.get(&v).cloned(),
            None => versions.values().next_back().cloned(),
        }
        .ok_or_else(|| KindError::Unknown(kind.to_owned()))
    }

    /// Whether `kind` names a registered kind.
    pub fn contains(&self, kind: &str) -> bool {
        self.find(kind).is_ok()
    }

    /// Starts `kind` with `args` on `core`'s node: the exposed actor.
    pub fn start(
        &self,
        core: &Arc<Core>,
        kind: &str,
        args: &[Term],
    ) -> BoxFuture<'static, Result<Arc<LocalActor>, KindError>> {
        let found = self.find(kind).and_then(|k| {
            (k.start)(core, args)
                .map(|start| (k.info.full_name(), start))
                .map_err(|error| KindError::BadArgs {
                    kind: kind.to_owned(),
                    args: Term::list(args.to_vec()),
                    error,
                })
        });
        Box::pin(async move {
            let (kind, start) = found?;
            start
                .await
                .map_err(|reason| KindError::StartFailed { kind, reason })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_with_an_optional_positive_version() {
        assert_eq!(parse_kind("counter"), Ok(("counter".into(), None)));
        assert_eq!(parse_kind("counter/2"), Ok(("counter".into(), Some(2))));
        for bad in [
            "",
            "/2",
            "counter/",
            "counter/0",
            "counter/x",
            "a/b/2",
            "counter/-1",
        ] {
            assert!(parse_kind(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn arguments_convert_from_one_argument_the_list_or_the_tuple() {
        assert_eq!(convert_args::<i64>(&[Term::Int(5)]), Ok(5));
        assert_eq!(
            convert_args::<Vec<i64>>(&[Term::Int(5)]),
            Ok(vec![5]),
            "the list when the one argument does not fit"
        );
        assert_eq!(
            convert_args::<(i64, String)>(&[Term::Int(1), Term::binary("x")]),
            Ok((1, "x".to_owned())),
            "the tuple of several"
        );
        assert!(convert_args::<i64>(&[Term::atom("x")]).is_err());
        assert!(convert_args::<i64>(&[]).is_err());
    }

    #[test]
    fn exit_reasons_name_the_problem() {
        let (k, f) = (Atom::new("counter"), Atom::new("start"));
        let args = [Term::atom("x")];
        let undef = KindError::Unknown("counter".into()).exit_reason(&k, &f, &args);
        assert_eq!(undef.to_string(), "{undef,[{counter,start,[x],[]}]}");
        let bad = KindError::BadArgs {
            kind: "counter".into(),
            args: Term::list(args.to_vec()),
            error: ConversionError::new("an integer", &Term::atom("x")),
        }
        .exit_reason(&k, &f, &args);
        assert!(
            bad.to_string()
                .starts_with("{function_clause,[{counter,start,[x],[{reason,"),
            "{bad}"
        );
    }
}
