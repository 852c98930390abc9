//! What a session's writer sends: the items of its queue, and the `gen_server` call and reply
//! messages it writes from their parts rather than as terms built first.

use bytes::{Bytes, BytesMut};

use crate::dist::control::Control;
use crate::dist::packet;
use crate::etf::{Atom, Pid, Reference, Term};

/// What the writer task sends.
#[derive(Debug)]
pub(crate) enum Outgoing {
    Message(Control, Option<Term>),
    /// A control message and a payload already encoded (with its 131).
    Raw(Control, Bytes),
    /// A control message already encoded (its body, without 131) and a payload already
    /// encoded (with its 131): what a proxy sends, encoding its control once. The payload is
    /// the serialized message's own buffer, copied into the write buffer (shared when 64 KiB
    /// or more, see `packet::Shares`) and freed.
    Prepared(Bytes, Vec<u8>),
    /// A `gen_server` call's request, written from its parts.
    Call(Control, GenCall),
    /// A `gen_server` reply `{Tag, Reply}`, written from its parts.
    Reply(Control, GenReply),
    /// Answered once everything queued before it is written (a graceful stop).
    Flush(tokio::sync::oneshot::Sender<()>),
}

/// The message of a `gen_server` call, `{'$gen_call', {From, [alias | Ref]}, Request}`,
/// written from its parts rather than built as a term first.
#[derive(Debug)]
pub(crate) struct GenCall {
    /// The calling process.
    pub from: Pid,
    /// The call's monitor reference, also its reply alias.
    pub mref: Reference,
    /// The request.
    pub request: CallRequest,
}

/// A call's request: a term, or a term already encoded by the caller (a proxy's call, which
/// ractor serialized), sent without decoding it.
#[derive(Debug)]
pub(crate) enum CallRequest {
    Term(Term),
    /// The encoding without its version byte 131.
    Encoded(Bytes),
}

impl From<Term> for CallRequest {
    fn from(t: Term) -> Self {
        CallRequest::Term(t)
    }
}

impl GenCall {
    /// The same message as a term.
    #[cfg(test)]
    pub(crate) fn to_term(&self) -> Term {
        let tag = Term::improper_list(vec![Term::atom("alias")], Term::from(self.mref.clone()));
        Term::tuple(vec![
            Term::atom("$gen_call"),
            Term::tuple(vec![Term::Pid(self.from.clone()), tag]),
            match &self.request {
                CallRequest::Term(t) => t.clone(),
                CallRequest::Encoded(b) => {
                    Term::decode_slice(&[&[131u8][..], b].concat()).expect("a valid body")
                }
            },
        ])
    }
}

impl packet::Payload for GenCall {
    fn write_body<A: crate::etf::AtomWriter>(
        &self,
        out: &mut BytesMut,
        atoms: &mut A,
        share: Option<crate::etf::Share<'_>>,
    ) {
        const GEN_CALL: Atom = Atom::from_static("$gen_call");
        crate::etf::encode_pieces(out, atoms, share, |w| {
            w.tuple(3);
            w.atom(&GEN_CALL);
            w.tuple(2);
            w.pid(&self.from);
            alias_tag(w, &self.mref);
            match &self.request {
                CallRequest::Term(t) => w.term(t),
                CallRequest::Encoded(body) => w.encoded(body),
            }
        });
    }
}

/// Writes the call tag `[alias | Ref]`.
fn alias_tag<A: crate::etf::AtomWriter>(w: &mut crate::etf::Pieces<'_, '_, A>, r: &Reference) {
    const ALIAS: Atom = Atom::from_static("alias");
    w.list(1);
    w.atom(&ALIAS);
    w.reference(r);
}

/// The tag of a `gen_server` call, read once when the call arrives.
#[derive(Debug, Clone)]
pub(crate) enum ReplyTag {
    /// `[alias | Ref]` (OTP 24 and later): the reply goes to the alias.
    Alias(Reference),
    /// Any other tag (a plain reference from older callers), answered to the caller's pid.
    Other(Term),
}

impl ReplyTag {
    pub(crate) fn new(tag: &Term) -> ReplyTag {
        match tag {
            Term::ImproperList(head, tail) if head.len() == 1 && head[0].is_atom("alias") => {
                match &**tail {
                    Term::Reference(r) => ReplyTag::Alias((**r).clone()),
                    _ => ReplyTag::Other(tag.clone()),
                }
            }
            _ => ReplyTag::Other(tag.clone()),
        }
    }
}

/// A `gen_server` reply, `{Tag, Reply}`, written from its parts.
#[derive(Debug)]
pub(crate) struct GenReply {
    pub(crate) tag: ReplyTag,
    pub(crate) reply: Term,
}

impl packet::Payload for GenReply {
    fn write_body<A: crate::etf::AtomWriter>(
        &self,
        out: &mut BytesMut,
        atoms: &mut A,
        share: Option<crate::etf::Share<'_>>,
    ) {
        crate::etf::encode_pieces(out, atoms, share, |w| {
            w.tuple(2);
            match &self.tag {
                ReplyTag::Alias(r) => alias_tag(w, r),
                ReplyTag::Other(tag) => w.term(tag),
            }
            w.term(&self.reply);
        });
    }
}
