//! Control messages: the first term of every distribution message, saying what to do with the
//! (optional) payload term that follows.
//!
//! Trace-token (`_TT`) variants decode into the same [`Control`] as their plain form with the
//! token dropped: this node does not take part in sequential tracing.

use crate::etf::{Atom, Pid, Reference, Term};

/// A process addressed by pid or by registered name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ProcessRef {
    /// By pid.
    Pid(Pid),
    /// By name registered on the receiving node.
    Name(Atom),
}

impl ProcessRef {
    fn to_term(&self) -> Term {
        match self {
            ProcessRef::Pid(p) => Term::Pid(p.clone()),
            ProcessRef::Name(a) => Term::Atom(a.clone()),
        }
    }

    fn from_term(t: &Term) -> Option<ProcessRef> {
        match t {
            Term::Pid(p) => Some(ProcessRef::Pid(p.clone())),
            Term::Atom(a) => Some(ProcessRef::Name(a.clone())),
            _ => None,
        }
    }
}

/// A distribution control message.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Control {
    /// `{1, From, To}`: link.
    Link {
        /// The linking process.
        from: Pid,
        /// The process linked to.
        to: Pid,
    },
    /// `{2, Unused, To}` + message.
    Send {
        /// The receiver.
        to: Pid,
    },
    /// `{3, From, To, Reason}`: an exit signal over a link.
    Exit {
        /// The exiting process.
        from: Pid,
        /// The linked process.
        to: Pid,
        /// The reason.
        reason: Term,
    },
    /// `{4, From, To}`: the old unlink.
    Unlink {
        /// The unlinking process.
        from: Pid,
        /// The other process.
        to: Pid,
    },
    /// `{6, From, Unused, ToName}` + message.
    RegSend {
        /// The sender.
        from: Pid,
        /// The registered name on the receiving node.
        to_name: Atom,
    },
    /// `{7, From, To}`: set the group leader of `to`.
    GroupLeader {
        /// The new group leader.
        from: Pid,
        /// The process whose group leader changes.
        to: Pid,
    },
    /// `{8, From, To, Reason}`: `exit(To, Reason)`.
    Exit2 {
        /// The process calling `exit/2`.
        from: Pid,
        /// The target.
        to: Pid,
        /// The reason.
        reason: Term,
    },
    /// `{19, From, To, Ref}`: `From` monitors `To`.
    MonitorP {
        /// The monitoring process.
        from: Pid,
        /// The monitored process.
        to: ProcessRef,
        /// The monitor reference.
        reference: Reference,
    },
    /// `{20, From, To, Ref}`: remove a monitor.
    DemonitorP {
        /// The monitoring process.
        from: Pid,
        /// The monitored process.
        to: ProcessRef,
        /// The monitor reference.
        reference: Reference,
    },
    /// `{21, From, To, Ref, Reason}`: a monitored process exited.
    MonitorPExit {
        /// The monitored process.
        from: ProcessRef,
        /// The monitoring process.
        to: Pid,
        /// The monitor reference.
        reference: Reference,
        /// The exit reason.
        reason: Term,
    },
    /// `{22, From, To}` + message.
    SendSender {
        /// The sender.
        from: Pid,
        /// The receiver.
        to: Pid,
    },
    /// `{24, From, To}` + reason: an exit signal over a link.
    PayloadExit {
        /// The exiting process.
        from: Pid,
        /// The linked process.
        to: Pid,
    },
    /// `{26, From, To}` + reason: `exit(To, Reason)`.
    PayloadExit2 {
        /// The process calling `exit/2`.
        from: Pid,
        /// The target.
        to: Pid,
    },
    /// `{28, From, To, Ref}` + reason: a monitored process exited.
    PayloadMonitorPExit {
        /// The monitored process.
        from: ProcessRef,
        /// The monitoring process.
        to: Pid,
        /// The monitor reference.
        reference: Reference,
    },
    /// `{29, ReqId, From, GroupLeader, {M, F, Arity}, Opts}` + argument list.
    SpawnRequest {
        /// The request ID.
        req_id: Reference,
        /// The requesting process.
        from: Pid,
        /// The group leader for the new process.
        group_leader: Pid,
        /// Module.
        module: Atom,
        /// Function.
        function: Atom,
        /// Arity.
        arity: u32,
        /// Spawn options.
        opts: Term,
    },
    /// `{31, ReqId, To, Flags, Result}`: the new pid, or an error atom.
    SpawnReply {
        /// The request ID.
        req_id: Reference,
        /// The requesting process.
        to: Pid,
        /// Flags: 1 = link made, 2 = monitor made.
        flags: u32,
        /// The new pid or an error reason.
        result: Term,
    },
    /// `{35, Id, From, To}`: unlink with an ID.
    UnlinkId {
        /// The unlink ID.
        id: u64,
        /// The unlinking process.
        from: Pid,
        /// The other process.
        to: Pid,
    },
    /// `{36, Id, From, To}`: acknowledges an `UnlinkId`.
    UnlinkIdAck {
        /// The unlink ID.
        id: u64,
        /// The acknowledging process.
        from: Pid,
        /// The process that unlinked.
        to: Pid,
    },
    /// `{33, From, Alias}` + message: send to a process alias.
    AliasSend {
        /// The sender.
        from: Pid,
        /// The alias.
        alias: Reference,
    },
    /// `{37, Flags, From, To}` (`{37, Flags, From, To, Token}` with [`AltAct::TOKEN`]) +
    /// message or exit reason: OTP 28's alternative activation signal
    /// (`ALTACT_SIG_SEND`, with `DFLAG_ALTACT_SIG`), a message or exit signal to a pid, a
    /// registered name or an alias, possibly a priority one (EEP 76). Once the flag is
    /// agreed, OTP sends every message to an alias this way.
    AltAct {
        /// What kind of signal, to what kind of target.
        flags: AltAct,
        /// The sender.
        from: Pid,
        /// The receiver: a pid, a name ([`AltAct::NAME`]) or an alias ([`AltAct::ALIAS`]).
        to: AltActTarget,
        /// The sequential trace token, with [`AltAct::TOKEN`].
        token: Option<Term>,
    },
}

/// The flags of an `ALTACT_SIG_SEND` (the low byte of its `Flags`; OTP ignores the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AltAct(pub u8);

impl AltAct {
    /// A priority signal (EEP 76): ahead of ordinary messages for a receiver that enabled
    /// priority messages on the alias it was sent to, ordinary otherwise.
    pub const PRIORITY: AltAct = AltAct(1);
    /// A trace token follows `To` in the control tuple.
    pub const TOKEN: AltAct = AltAct(2);
    /// `To` is an alias.
    pub const ALIAS: AltAct = AltAct(4);
    /// `To` is a registered name.
    pub const NAME: AltAct = AltAct(8);
    /// An exit signal whose reason is the payload, not a message.
    pub const EXIT: AltAct = AltAct(16);

    /// Whether every flag of `other` is set.
    pub fn contains(self, other: AltAct) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for AltAct {
    type Output = AltAct;
    fn bitor(self, rhs: AltAct) -> AltAct {
        AltAct(self.0 | rhs.0)
    }
}

/// Where an `ALTACT_SIG_SEND` goes.
#[derive(Debug, Clone, PartialEq)]
pub enum AltActTarget {
    /// A process by pid.
    Pid(Pid),
    /// A registered name on the receiving node.
    Name(Atom),
    /// A process alias.
    Alias(Reference),
}

/// A control message that could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid control message: {0}")]
pub struct ControlError(pub String);

fn pid(t: &Term) -> Option<Pid> {
    match t {
        Term::Pid(p) => Some(p.clone()),
        _ => None,
    }
}

fn reference(t: &Term) -> Option<Reference> {
    match t {
        Term::Reference(r) => Some((**r).clone()),
        _ => None,
    }
}

fn atom(t: &Term) -> Option<Atom> {
    t.as_atom().cloned()
}

fn uint(t: &Term) -> Option<u64> {
    match t {
        Term::Int(i) => u64::try_from(*i).ok(),
        Term::BigInt(b) => u64::try_from(b).ok(),
        _ => None,
    }
}

impl Control {
    /// Whether a payload term follows this control message.
    pub fn has_payload(&self) -> bool {
        matches!(
            self,
            Control::Send { .. }
                | Control::RegSend { .. }
                | Control::SendSender { .. }
                | Control::PayloadExit { .. }
                | Control::PayloadExit2 { .. }
                | Control::PayloadMonitorPExit { .. }
                | Control::SpawnRequest { .. }
                | Control::AliasSend { .. }
                | Control::AltAct { .. }
        )
    }

    /// Reads the control messages of ordinary sends (`SEND`, `REG_SEND`, `SEND_SENDER`,
    /// `ALIAS_SEND`) and of the monitors a call sets up (`MONITOR_P`, `DEMONITOR_P`) straight
    /// from their bytes, without building a term first; `None` for any other message or a
    /// surprise in the bytes, which [`Control::from_term`] then handles.
    pub(crate) fn read_common(f: &mut crate::etf::Fields<'_>) -> Option<Control> {
        let process = |f: &mut crate::etf::Fields<'_>| {
            if f.at_pid() {
                f.pid().map(ProcessRef::Pid)
            } else {
                f.atom().map(ProcessRef::Name)
            }
        };
        let arity = f.small_tuple()?;
        match (f.small_int()?, arity) {
            (2, 3) => {
                // The unused field is '' (or, from old nodes, a pid).
                f.atom()?;
                Some(Control::Send { to: f.pid()? })
            }
            (6, 4) => {
                let from = f.pid()?;
                f.atom()?;
                Some(Control::RegSend {
                    from,
                    to_name: f.atom()?,
                })
            }
            (22, 3) => Some(Control::SendSender {
                from: f.pid()?,
                to: f.pid()?,
            }),
            (33, 3) => Some(Control::AliasSend {
                from: f.pid()?,
                alias: f.reference()?,
            }),
            // ALTACT_SIG_SEND without a token: how OTP 28+ sends every reply to an alias.
            (37, 4) => {
                let flags = AltAct(f.small_int()?);
                if flags.contains(AltAct::TOKEN) {
                    return None;
                }
                let from = f.pid()?;
                let to = match (flags.contains(AltAct::ALIAS), flags.contains(AltAct::NAME)) {
                    (true, false) => AltActTarget::Alias(f.reference()?),
                    (false, true) => AltActTarget::Name(f.atom()?),
                    (false, false) => AltActTarget::Pid(f.pid()?),
                    (true, true) => return None,
                };
                Some(Control::AltAct {
                    flags,
                    from,
                    to,
                    token: None,
                })
            }
            (19, 4) => Some(Control::MonitorP {
                from: f.pid()?,
                to: process(f)?,
                reference: f.reference()?,
            }),
            (20, 4) => Some(Control::DemonitorP {
                from: f.pid()?,
                to: process(f)?,
                reference: f.reference()?,
            }),
            _ => None,
        }
    }

    /// Writes the control messages [`Control::read_common`] reads (no version byte) without
    /// building their term, atoms through `atoms`; the same bytes as encoding
    /// [`Control::to_term`]. `false` (nothing written) for the others.
    pub(crate) fn write_common<A: crate::etf::AtomWriter>(
        &self,
        out: &mut bytes::BytesMut,
        atoms: &mut A,
    ) -> bool {
        let (arity, op) = match self {
            Control::Send { .. } => (3, 2),
            Control::RegSend { .. } => (4, 6),
            Control::SendSender { .. } => (3, 22),
            Control::AliasSend { .. } => (3, 33),
            Control::MonitorP { .. } => (4, 19),
            Control::DemonitorP { .. } => (4, 20),
            _ => return false,
        };
        crate::etf::encode_pieces(out, atoms, None, |w| {
            w.tuple(arity);
            w.small_int(op);
            match self {
                Control::Send { to } => {
                    w.atom(&Atom::EMPTY);
                    w.pid(to);
                }
                Control::RegSend { from, to_name } => {
                    w.pid(from);
                    w.atom(&Atom::EMPTY);
                    w.atom(to_name);
                }
                Control::SendSender { from, to } => {
                    w.pid(from);
                    w.pid(to);
                }
                Control::AliasSend { from, alias } => {
                    w.pid(from);
                    w.reference(alias);
                }
                Control::MonitorP {
                    from,
                    to,
                    reference,
                }
                | Control::DemonitorP {
                    from,
                    to,
                    reference,
                } => {
                    w.pid(from);
                    match to {
                        ProcessRef::Pid(pid) => w.pid(pid),
                        ProcessRef::Name(name) => w.atom(name),
                    }
                    w.reference(reference);
                }
                // Not among the shapes matched above.
                _ => {}
            }
        });
        true
    }

    /// Reads a control tuple.
    pub fn from_term(term: &Term) -> Result<Control, ControlError> {
        let bad = || ControlError(term.to_string());
        let t = term.as_tuple().ok_or_else(bad)?;
        let op = t.first().and_then(Term::as_i64).ok_or_else(bad)?;
        let get = |i: usize| t.get(i).ok_or_else(bad);
        let p = |i: usize| get(i).and_then(|x| pid(x).ok_or_else(bad));
        let r = |i: usize| get(i).and_then(|x| reference(x).ok_or_else(bad));
        let pr = |i: usize| get(i).and_then(|x| ProcessRef::from_term(x).ok_or_else(bad));
        let arity = |n: usize| if t.len() == n { Ok(()) } else { Err(bad()) };
        Ok(match op {
            1 => {
                arity(3)?;
                Control::Link {
                    from: p(1)?,
                    to: p(2)?,
                }
            }
            // SEND and SEND_TT
            2 | 12 => Control::Send { to: p(2)? },
            3 | 13 => Control::Exit {
                from: p(1)?,
                to: p(2)?,
                reason: get(3)?.clone(),
            },
            4 => Control::Unlink {
                from: p(1)?,
                to: p(2)?,
            },
            6 | 16 => Control::RegSend {
                from: p(1)?,
                to_name: get(3).and_then(|x| atom(x).ok_or_else(bad))?,
            },
            7 => Control::GroupLeader {
                from: p(1)?,
                to: p(2)?,
            },
            8 | 18 => Control::Exit2 {
                from: p(1)?,
                to: p(2)?,
                reason: get(3)?.clone(),
            },
            19 => Control::MonitorP {
                from: p(1)?,
                to: pr(2)?,
                reference: r(3)?,
            },
            20 => Control::DemonitorP {
                from: p(1)?,
                to: pr(2)?,
                reference: r(3)?,
            },
            21 => Control::MonitorPExit {
                from: pr(1)?,
                to: p(2)?,
                reference: r(3)?,
                reason: get(4)?.clone(),
            },
            22 | 23 => Control::SendSender {
                from: p(1)?,
                to: p(2)?,
            },
            24 | 25 => Control::PayloadExit {
                from: p(1)?,
                to: p(2)?,
            },
            26 | 27 => Control::PayloadExit2 {
                from: p(1)?,
                to: p(2)?,
            },
            28 => Control::PayloadMonitorPExit {
                from: pr(1)?,
                to: p(2)?,
                reference: r(3)?,
            },
            29 | 30 => {
                let mfa = get(4)?.as_tuple().ok_or_else(bad)?;
                let [m, f, a] = mfa else { return Err(bad()) };
                Control::SpawnRequest {
                    req_id: r(1)?,
                    from: p(2)?,
                    group_leader: p(3)?,
                    module: atom(m).ok_or_else(bad)?,
                    function: atom(f).ok_or_else(bad)?,
                    arity: uint(a)
                        .and_then(|a| u32::try_from(a).ok())
                        .ok_or_else(bad)?,
                    opts: get(5)?.clone(),
                }
            }
            31 | 32 => Control::SpawnReply {
                req_id: r(1)?,
                to: p(2)?,
                flags: get(3)
                    .ok()
                    .and_then(uint)
                    .and_then(|f| u32::try_from(f).ok())
                    .ok_or_else(bad)?,
                result: get(4)?.clone(),
            },
            33 | 34 => Control::AliasSend {
                from: p(1)?,
                alias: r(2)?,
            },
            37 => {
                // At least {37, Flags, From, To}; OTP allows more elements for later use.
                let flags = get(1)
                    .ok()
                    .and_then(|f| match f {
                        Term::Int(i) => Some(*i as u8),
                        Term::BigInt(b) => Some(b.to_bytes_le().1.first().copied().unwrap_or(0)),
                        _ => None,
                    })
                    .map(AltAct)
                    .ok_or_else(bad)?;
                let to = get(3)?;
                let to = match (flags.contains(AltAct::ALIAS), flags.contains(AltAct::NAME)) {
                    (true, true) => return Err(bad()),
                    (true, false) => AltActTarget::Alias(reference(to).ok_or_else(bad)?),
                    (false, true) => AltActTarget::Name(atom(to).ok_or_else(bad)?),
                    (false, false) => AltActTarget::Pid(pid(to).ok_or_else(bad)?),
                };
                let token = if flags.contains(AltAct::TOKEN) {
                    Some(get(4)?.clone())
                } else {
                    None
                };
                Control::AltAct {
                    flags,
                    from: p(2)?,
                    to,
                    token,
                }
            }
            35 => Control::UnlinkId {
                id: get(1).ok().and_then(uint).ok_or_else(bad)?,
                from: p(2)?,
                to: p(3)?,
            },
            36 => Control::UnlinkIdAck {
                id: get(1).ok().and_then(uint).ok_or_else(bad)?,
                from: p(2)?,
                to: p(3)?,
            },
            _ => return Err(bad()),
        })
    }

    /// The control tuple.
    pub fn to_term(&self) -> Term {
        let int = |i: i64| Term::Int(i);
        let pid = |p: &Pid| Term::Pid(p.clone());
        let rf = |r: &Reference| Term::from(r.clone());
        let empty = || Term::Atom(Atom::EMPTY);
        Term::Tuple(match self {
            Control::Link { from, to } => vec![int(1), pid(from), pid(to)],
            Control::Send { to } => vec![int(2), empty(), pid(to)],
            Control::Exit { from, to, reason } => vec![int(3), pid(from), pid(to), reason.clone()],
            Control::Unlink { from, to } => vec![int(4), pid(from), pid(to)],
            Control::RegSend { from, to_name } => {
                vec![int(6), pid(from), empty(), Term::Atom(to_name.clone())]
            }
            Control::GroupLeader { from, to } => vec![int(7), pid(from), pid(to)],
            Control::Exit2 { from, to, reason } => vec![int(8), pid(from), pid(to), reason.clone()],
            Control::MonitorP {
                from,
                to,
                reference,
            } => vec![int(19), pid(from), to.to_term(), rf(reference)],
            Control::DemonitorP {
                from,
                to,
                reference,
            } => vec![int(20), pid(from), to.to_term(), rf(reference)],
            Control::MonitorPExit {
                from,
                to,
                reference,
                reason,
            } => vec![
                int(21),
                from.to_term(),
                pid(to),
                rf(reference),
                reason.clone(),
            ],
            Control::SendSender { from, to } => vec![int(22), pid(from), pid(to)],
            Control::PayloadExit { from, to } => vec![int(24), pid(from), pid(to)],
            Control::PayloadExit2 { from, to } => vec![int(26), pid(from), pid(to)],
            Control::PayloadMonitorPExit {
                from,
                to,
                reference,
            } => vec![int(28), from.to_term(), pid(to), rf(reference)],
            Control::SpawnRequest {
                req_id,
                from,
                group_leader,
                module,
                function,
                arity,
                opts,
            } => vec![
                int(29),
                rf(req_id),
                pid(from),
                pid(group_leader),
                Term::Tuple(vec![
                    Term::Atom(module.clone()),
                    Term::Atom(function.clone()),
                    int(i64::from(*arity)),
                ]),
                opts.clone(),
            ],
            Control::SpawnReply {
                req_id,
                to,
                flags,
                result,
            } => vec![
                int(31),
                rf(req_id),
                pid(to),
                int(i64::from(*flags)),
                result.clone(),
            ],
            Control::UnlinkId { id, from, to } => vec![
                int(35),
                Term::from(num_bigint::BigInt::from(*id)),
                pid(from),
                pid(to),
            ],
            Control::UnlinkIdAck { id, from, to } => vec![
                int(36),
                Term::from(num_bigint::BigInt::from(*id)),
                pid(from),
                pid(to),
            ],
            Control::AliasSend { from, alias } => vec![int(33), pid(from), rf(alias)],
            Control::AltAct {
                flags,
                from,
                to,
                token,
            } => {
                let to = match to {
                    AltActTarget::Pid(p) => pid(p),
                    AltActTarget::Name(n) => Term::Atom(n.clone()),
                    AltActTarget::Alias(r) => rf(r),
                };
                let mut t = vec![int(37), int(i64::from(flags.0)), pid(from), to];
                t.extend(token.clone());
                t
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(id: u32) -> Pid {
        Pid {
            node: Atom::new("a@h"),
            id,
            serial: 0,
            creation: 1,
        }
    }

    #[test]
    fn roundtrip() {
        let r = Reference::new(Atom::new("a@h"), 1, &[1, 2, 3]).unwrap();
        let all = vec![
            Control::Link {
                from: p(1),
                to: p(2),
            },
            Control::Send { to: p(2) },
            Control::RegSend {
                from: p(1),
                to_name: Atom::new("net_kernel"),
            },
            Control::MonitorP {
                from: p(1),
                to: ProcessRef::Name(Atom::new("x")),
                reference: r.clone(),
            },
            Control::MonitorPExit {
                from: ProcessRef::Pid(p(2)),
                to: p(1),
                reference: r.clone(),
                reason: Term::atom("noproc"),
            },
            Control::SpawnRequest {
                req_id: r.clone(),
                from: p(1),
                group_leader: p(3),
                module: Atom::new("erpc"),
                function: Atom::new("execute_call"),
                arity: 4,
                opts: Term::NIL,
            },
            Control::UnlinkId {
                id: u64::MAX,
                from: p(1),
                to: p(2),
            },
            Control::AliasSend {
                from: p(1),
                alias: r.clone(),
            },
            Control::AltAct {
                flags: AltAct::PRIORITY | AltAct::ALIAS,
                from: p(1),
                to: AltActTarget::Alias(r.clone()),
                token: None,
            },
            Control::AltAct {
                flags: AltAct::NAME | AltAct::EXIT | AltAct::TOKEN,
                from: p(1),
                to: AltActTarget::Name(Atom::new("x")),
                token: Some(Term::atom("tok")),
            },
            Control::AltAct {
                flags: AltAct(0),
                from: p(1),
                to: AltActTarget::Pid(p(2)),
                token: None,
            },
        ];
        for c in all {
            assert_eq!(Control::from_term(&c.to_term()).unwrap(), c);
        }
        // ALTACT_SIG_SEND: alias and name at once, or a target of the wrong type, is an error;
        // unknown high flag bits and extra elements are not.
        let alt = |flags: i64, to: Term| {
            Control::from_term(&Term::tuple(vec![
                Term::Int(37),
                Term::Int(flags),
                Term::Pid(p(1)),
                to,
                Term::atom("future"),
            ]))
        };
        assert!(alt(12, Term::atom("x")).is_err());
        assert!(alt(4, Term::atom("x")).is_err());
        assert!(alt(8, Term::Pid(p(2))).is_err());
        assert_eq!(
            alt(0x108, Term::atom("x")).unwrap(),
            Control::AltAct {
                flags: AltAct::NAME,
                from: p(1),
                to: AltActTarget::Name(Atom::new("x")),
                token: None,
            }
        );
        assert!(Control::from_term(&Term::tuple(vec![Term::Int(99)])).is_err());
        assert!(Control::from_term(&Term::atom("x")).is_err());
        assert!(Control::from_term(&Term::tuple(vec![Term::Int(2)])).is_err());
    }
}
