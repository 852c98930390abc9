//! The messages `global_name_server`s exchange, as typed values.
//!
//! Everything a name server receives is a [`GnsMsg`]: `gen_server` casts (`{'$gen_cast',
//! Cast}`), calls (`{'$gen_call', {Pid, Tag}, Call}`) and the plain messages OTP sends with
//! `erlang:send` (`init_connect_ack`, `cancel_connect`, `whereis`, `lost_connection`,
//! `remove_connection`). The derives give each variant its tagged tuple; [`GnsMsg::decode`]
//! never fails (what no variant takes is `Other`).

use crate::etf::{Atom, FromTerm, Pid, Term, ToTerm};

/// `{Vsn, Tag}` of an `init_connect`.
#[derive(Debug, Clone, PartialEq, crate::etf::ToTerm, crate::etf::FromTerm)]
pub(crate) struct VsnTag(pub i64, pub Term);

/// `{locker, no_longer_a_pid, Known, TheLocker}` of an `init_connect`.
#[derive(Debug, Clone, PartialEq, crate::etf::ToTerm, crate::etf::FromTerm)]
#[term(record, tag = "locker")]
pub(crate) struct LockerInfo(pub Term, pub Term, pub Pid);

/// `{Name, Pid, Method}`: a registered name as the `exchange` and `insert` operations carry it.
#[derive(Debug, Clone, PartialEq, crate::etf::ToTerm, crate::etf::FromTerm)]
pub(crate) struct NameItem(pub Term, pub Pid, pub Term);

/// `{Name, Pid, RegNode}`: a name registered by an external (C) node through `RegNode`.
#[derive(Debug, Clone, PartialEq, crate::etf::ToTerm, crate::etf::FromTerm)]
pub(crate) struct ExtItem(pub Term, pub Pid, pub Atom);

/// `{ResourceId, LockRequesterId}`.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, crate::etf::ToTerm, crate::etf::FromTerm,
)]
pub(crate) struct LockId(pub Term, pub Term);

/// `{Pid, Tag}`: who made a call; the reply is `{Tag, Reply}` sent to `Pid`.
#[derive(Debug, Clone, PartialEq, crate::etf::ToTerm, crate::etf::FromTerm)]
pub(crate) struct From(pub Pid, pub Term);

/// An operation on the name table after a clash resolution.
#[derive(Debug, Clone, PartialEq, crate::etf::ToTerm, crate::etf::FromTerm)]
pub(crate) enum Op {
    /// `{insert, {Name, Pid, Method}}`.
    Insert(NameItem),
    /// `{delete, Name}`.
    Delete(Term),
}

/// The casts between name servers (the body of `{'$gen_cast', Body}`).
#[derive(Debug, Clone, PartialEq, crate::etf::ToTerm, crate::etf::FromTerm)]
pub(crate) enum Cast {
    /// `{init_connect, {Vsn, Tag}, Node, {locker, _, Known, Locker}}`.
    InitConnect(VsnTag, Atom, LockerInfo),
    /// `{lock_set, Locker, IsSet, Known, ReceiversTag}` (the version 7+ form).
    LockSet(Pid, bool, Term, Term),
    /// `{exchange, Node, Names, NamesExt, ReceiversTag}`.
    Exchange(Atom, Vec<NameItem>, Term, Term),
    /// `{resolved, Node, OpsForReceiver, Known, Unused, NamesExt, ReceiversTag}`.
    Resolved(Atom, Vec<Op>, Term, Term, Vec<ExtItem>, Term),
    /// `{new_nodes, Node, Ops, NamesExt, NewNodes, ExtraInfo}`.
    NewNodes(Atom, Vec<Op>, Vec<ExtItem>, Term, Term),
    /// `{in_sync, Node, IsKnown}`.
    InSync(Atom, Term),
    /// `{async_del_name, Name, Pid}` (sent by R13B and older nodes).
    AsyncDelName(Term, Pid),
    /// `{async_del_lock, ResourceId, Pid}` (sent by R13B and older nodes).
    AsyncDelLock(Term, Pid),
    /// Anything else.
    #[term(other)]
    Other(Term),
}

/// The calls a name server answers.
#[derive(Debug, Clone, PartialEq, crate::etf::ToTerm, crate::etf::FromTerm)]
pub(crate) enum Call {
    /// `{set_lock, {ResourceId, LockRequesterId}}` -> `true | false`, the caller holds it.
    SetLock(LockId),
    /// `{del_lock, Id}` -> `true`.
    DelLock(LockId),
    /// `{register, Name, Pid, Method}` -> `yes`.
    Register(Term, Pid, Term),
    /// `{register_ext, Name, Pid, Method, RegNode}` -> `yes`.
    RegisterExt(Term, Pid, Term, Atom),
    /// `{unregister, Name}` -> `ok`.
    Unregister(Term),
    /// `get_known` -> `[{Node, Vsn}]`.
    GetKnown,
    /// `get_synced` -> `[Node]`.
    GetSynced,
    /// `get_protocol_version` -> `Vsn`.
    GetProtocolVersion,
    /// `get_names_ext` -> `[{Name, Pid, RegNode}]`.
    GetNamesExt,
    /// Anything else: no reply, as OTP's server.
    #[term(other)]
    Other(Term),
}

/// Everything that reaches `global_name_server`.
#[derive(Debug, Clone, PartialEq, crate::etf::ToTerm, crate::etf::FromTerm)]
pub(crate) enum GnsMsg {
    /// `{'$gen_cast', Body}`.
    #[term(rename = "$gen_cast")]
    GenCast(Cast),
    /// `{'$gen_call', {Pid, Tag}, Request}`.
    #[term(rename = "$gen_call")]
    GenCall(From, Call),
    /// `{init_connect_ack, Node, HisMyTag, HisHisTag}`.
    InitConnectAck(Atom, Term, Term),
    /// `{cancel_connect, Node, ReceiversTag}`.
    CancelConnect(Atom, Term),
    /// `{whereis, Name, {Pid, Tag}}`.
    Whereis(Term, From),
    /// `{lost_connection, NodeA, XCreationA, OpIdA, NodeB}`: A lost its connection to B.
    LostConnection(Atom, Term, Term, Atom),
    /// `{remove_connection, Node}`: Node asks us to disconnect from it.
    RemoveConnection(Atom),
    /// Anything else.
    #[term(other)]
    Other(Term),
}

impl GnsMsg {
    /// Reads a message (never fails: unknown shapes are `Other`).
    pub(crate) fn decode(term: &Term) -> GnsMsg {
        GnsMsg::from_term(term).unwrap_or_else(|_| GnsMsg::Other(term.clone()))
    }

    /// The message as a term.
    pub(crate) fn encode(&self) -> Term {
        self.to_term()
    }
}

/// A cast as the full message `{'$gen_cast', Body}`.
pub(crate) fn cast(body: Cast) -> Term {
    GnsMsg::GenCast(body).encode()
}

/// `[Node]` or `[{Node, Vsn}]` as node names.
pub(crate) fn node_names(list: &Term) -> Vec<Atom> {
    let Term::List(items) = list else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|t| match t {
            Term::Atom(a) => Some(a.clone()),
            other => match other.as_tuple() {
                Some([Term::Atom(a), _]) => Some(a.clone()),
                _ => None,
            },
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::machine::tests::pid;
    use super::*;

    #[test]
    fn casts_read_and_write_otp_shapes() {
        let text = "{'$gen_cast',{exchange,a@h,[{n,P,m}],[],7}}";
        let p = pid("a@h", 5);
        let term = match Term::parse(&text.replace('P', "0")) {
            Ok(Term::Tuple(mut t)) => {
                // Put a real pid in place of the 0.
                if let Term::Tuple(body) = &mut t[1] {
                    body[2] = Term::list(vec![Term::tuple(vec![
                        Term::atom("n"),
                        Term::Pid(p.clone()),
                        Term::atom("m"),
                    ])]);
                }
                Term::Tuple(t)
            }
            other => panic!("{other:?}"),
        };
        let msg = GnsMsg::decode(&term);
        assert_eq!(
            msg,
            GnsMsg::GenCast(Cast::Exchange(
                Atom::new("a@h"),
                vec![NameItem(Term::atom("n"), p, Term::atom("m"))],
                Term::NIL,
                Term::Int(7)
            ))
        );
        assert_eq!(msg.encode(), term);
    }

    #[test]
    fn calls_and_unknown_messages() {
        let from = From(pid("b@h", 1), Term::Int(3));
        let call = GnsMsg::GenCall(
            from.clone(),
            Call::SetLock(LockId(Term::atom("r"), Term::atom("q"))),
        );
        let term = call.encode();
        assert!(term.to_string().starts_with("{'$gen_call',{"), "{term}");
        assert_eq!(GnsMsg::decode(&term), call);
        assert_eq!(
            GnsMsg::decode(&GnsMsg::GenCall(from.clone(), Call::GetKnown).encode()),
            GnsMsg::GenCall(from, Call::GetKnown)
        );
        let odd = Term::tuple(vec![Term::atom("odd"), Term::Int(1)]);
        assert_eq!(GnsMsg::decode(&odd), GnsMsg::Other(odd));
        let op = Op::Delete(Term::atom("x"));
        assert_eq!(op.to_term().to_string(), "{delete,x}");
    }
}
