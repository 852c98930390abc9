//! The EPMD wire protocol, sans IO: requests and replies as values, decoded from and encoded to
//! byte buffers.
//!
//! Decoders take a [`BytesMut`] that a driver fills from the socket and consume what they
//! decode.
//! Requests are framed `[Len:16][Tag][Body]`; replies carry no length and some run until the
//! server closes the socket (`NAMES`, `DUMP`). Decoding returns `Ok(None)` when more bytes are
//! needed and a [`ProtocolError`] when the bytes can never form a valid message.

use bytes::{Buf, BufMut, Bytes, BytesMut};

/// The port EPMD listens on unless told otherwise.
pub const DEFAULT_PORT: u16 = 4369;
/// The largest request body the server accepts (real epmd's input buffer is 1024 bytes).
pub const MAX_REQUEST_LEN: usize = 1021;
/// The longest node name, in characters.
pub const MAX_NAME_CHARS: usize = 255;
/// The most bytes of EXTRA data a registration may carry.
pub const MAX_EXTRA_LEN: usize = 255;

/// Request tags.
mod tag {
    pub const ALIVE2_REQ: u8 = 120;
    pub const ALIVE2_X_RESP: u8 = 118;
    pub const ALIVE2_RESP: u8 = 121;
    pub const PORT_PLEASE2_REQ: u8 = 122;
    pub const PORT2_RESP: u8 = 119;
    pub const NAMES_REQ: u8 = 110;
    pub const DUMP_REQ: u8 = 100;
    pub const KILL_REQ: u8 = 107;
    pub const STOP_REQ: u8 = 115;
}

/// Why bytes are not a valid EPMD message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A request's length field is 0 or above [`MAX_REQUEST_LEN`].
    #[error("request length {0} is out of range 1..={MAX_REQUEST_LEN}")]
    BadLength(usize),
    /// An unknown request or reply tag.
    #[error("unknown tag {0}")]
    UnknownTag(u8),
    /// A request's body does not match its tag's layout.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A node name that is empty, too long, not UTF-8 or holds a NUL byte.
    #[error("invalid node name")]
    BadName,
}

/// Whether a node takes part in the full mesh (`normal`, as `erl -sname`) or only in the
/// connections it makes itself (`hidden`, as `erl -hidden` or C nodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeType {
    /// Tag 77: a normal Erlang node.
    Normal,
    /// Tag 72: a hidden node.
    Hidden,
    /// Any other tag, kept as sent.
    Other(u8),
}

impl NodeType {
    /// The wire byte.
    pub fn to_byte(self) -> u8 {
        match self {
            NodeType::Normal => 77,
            NodeType::Hidden => 72,
            NodeType::Other(b) => b,
        }
    }

    /// From the wire byte.
    pub fn from_byte(b: u8) -> NodeType {
        match b {
            77 => NodeType::Normal,
            72 => NodeType::Hidden,
            b => NodeType::Other(b),
        }
    }
}

/// What a node registers, and what a lookup returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// The name before the `@`.
    pub name: String,
    /// The port its distribution listener accepts on.
    pub port: u16,
    /// Normal or hidden.
    pub node_type: NodeType,
    /// 0 for TCP/IPv4 (the only value in use).
    pub protocol: u8,
    /// Highest distribution version the node speaks (6 for OTP 23+).
    pub high_version: u16,
    /// Lowest distribution version the node speaks.
    pub low_version: u16,
    /// Opaque data returned to lookups unchanged. See [`crate::roles`] for the encoding of
    /// roles in it; Erlang nodes leave it empty.
    pub extra: Bytes,
}

impl NodeInfo {
    /// A normal node of distribution version 6 on `port`, with no extra data.
    pub fn new(name: impl Into<String>, port: u16) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            port,
            node_type: NodeType::Normal,
            protocol: 0,
            high_version: 6,
            low_version: 6,
            extra: Bytes::new(),
        }
    }
}

impl NodeInfo {
    /// Appends the fields ALIVE2_REQ and PORT2_RESP share: port, type, protocol, versions,
    /// name and extra, each length-prefixed where the format says so.
    fn encode_fields(&self, out: &mut BytesMut) {
        out.put_u16(self.port);
        out.put_u8(self.node_type.to_byte());
        out.put_u8(self.protocol);
        out.put_u16(self.high_version);
        out.put_u16(self.low_version);
        out.put_u16(self.name.len() as u16);
        out.put_slice(self.name.as_bytes());
        out.put_u16(self.extra.len() as u16);
        out.put_slice(&self.extra);
    }
}

/// A request to EPMD.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    /// `ALIVE2_REQ`: register a node for as long as this connection stays open.
    Alive2(NodeInfo),
    /// `PORT_PLEASE2_REQ`: look a node up by name.
    PortPlease2(String),
    /// `NAMES_REQ`: list registered names.
    Names,
    /// `DUMP_REQ`: list everything, for debugging.
    Dump,
    /// `KILL_REQ`: stop the daemon.
    Kill,
    /// `STOP_REQ`: unregister a node by name.
    Stop(String),
}

fn check_name(raw: &[u8]) -> Result<String, ProtocolError> {
    let name = std::str::from_utf8(raw).map_err(|_| ProtocolError::BadName)?;
    if name.is_empty() || raw.contains(&0) || name.chars().count() > MAX_NAME_CHARS {
        return Err(ProtocolError::BadName);
    }
    Ok(name.to_owned())
}

impl Request {
    /// Decodes one framed request from the front of `buf`, consuming it; `Ok(None)` (consuming
    /// nothing) when the frame is not complete yet.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([buf[0], buf[1]]));
        if len == 0 || len > MAX_REQUEST_LEN {
            return Err(ProtocolError::BadLength(len));
        }
        if buf.len() < 2 + len {
            return Ok(None);
        }
        let frame = buf.split_to(2 + len);
        Request::decode_body(&frame[2..]).map(Some)
    }

    /// Decodes a request body (tag and fields, without the length).
    pub fn decode_body(body: &[u8]) -> Result<Request, ProtocolError> {
        let (&tag, rest) = body.split_first().ok_or(ProtocolError::BadLength(0))?;
        match tag {
            tag::ALIVE2_REQ => decode_alive2(rest).map(Request::Alive2),
            tag::PORT_PLEASE2_REQ => {
                // Old clients NUL-terminate the name.
                let name = rest.strip_suffix(&[0]).unwrap_or(rest);
                check_name(name).map(Request::PortPlease2)
            }
            tag::NAMES_REQ => Ok(Request::Names),
            tag::DUMP_REQ => Ok(Request::Dump),
            tag::KILL_REQ => Ok(Request::Kill),
            tag::STOP_REQ => check_name(rest.strip_suffix(&[0]).unwrap_or(rest)).map(Request::Stop),
            other => Err(ProtocolError::UnknownTag(other)),
        }
    }

    /// Appends the framed request to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        let start = out.len();
        out.put_u16(0);
        match self {
            Request::Alive2(info) => {
                out.put_u8(tag::ALIVE2_REQ);
                info.encode_fields(out);
            }
            Request::PortPlease2(name) => {
                out.put_u8(tag::PORT_PLEASE2_REQ);
                out.put_slice(name.as_bytes());
            }
            Request::Names => out.put_u8(tag::NAMES_REQ),
            Request::Dump => out.put_u8(tag::DUMP_REQ),
            Request::Kill => out.put_u8(tag::KILL_REQ),
            Request::Stop(name) => {
                out.put_u8(tag::STOP_REQ);
                out.put_slice(name.as_bytes());
            }
        }
        let len = (out.len() - start - 2) as u16;
        out[start..start + 2].copy_from_slice(&len.to_be_bytes());
    }
}

fn decode_alive2(b: &[u8]) -> Result<NodeInfo, ProtocolError> {
    const WHAT: &str = "ALIVE2_REQ";
    if b.len() < 12 {
        return Err(ProtocolError::Malformed(WHAT));
    }
    let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let name_len = usize::from(u16_at(8));
    let name_end = 10 + name_len;
    if b.len() < name_end + 2 {
        return Err(ProtocolError::Malformed(WHAT));
    }
    let name = check_name(&b[10..name_end])?;
    let extra_len = usize::from(u16_at(name_end));
    if extra_len > MAX_EXTRA_LEN || b.len() < name_end + 2 + extra_len {
        return Err(ProtocolError::Malformed(WHAT));
    }
    Ok(NodeInfo {
        name,
        port: u16_at(0),
        node_type: NodeType::from_byte(b[2]),
        protocol: b[3],
        high_version: u16_at(4),
        low_version: u16_at(6),
        extra: Bytes::copy_from_slice(&b[name_end + 2..name_end + 2 + extra_len]),
    })
}

/// The reply to `ALIVE2_REQ`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alive2Response {
    /// 0 when registered; anything else means refused (the name is taken).
    pub result: u8,
    /// The creation the node must stamp on its pids, ports and references.
    pub creation: u32,
    /// `ALIVE2_X_RESP` (32-bit creation, for nodes of version 6) rather than `ALIVE2_RESP`.
    pub extended: bool,
}

impl Alive2Response {
    /// Appends the reply to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        if self.extended {
            out.put_u8(tag::ALIVE2_X_RESP);
            out.put_u8(self.result);
            out.put_u32(self.creation);
        } else {
            out.put_u8(tag::ALIVE2_RESP);
            out.put_u8(self.result);
            out.put_u16(self.creation as u16);
        }
    }

    /// Decodes the reply from the front of `buf`.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Alive2Response>, ProtocolError> {
        if buf.is_empty() {
            return Ok(None);
        }
        let extended = match buf[0] {
            tag::ALIVE2_X_RESP => true,
            tag::ALIVE2_RESP => false,
            other => return Err(ProtocolError::UnknownTag(other)),
        };
        let need = if extended { 6 } else { 4 };
        if buf.len() < need {
            return Ok(None);
        }
        buf.advance(1);
        let result = buf.get_u8();
        let creation = if extended {
            buf.get_u32()
        } else {
            u32::from(buf.get_u16())
        };
        Ok(Some(Alive2Response {
            result,
            creation,
            extended,
        }))
    }
}

/// Appends the reply to `PORT_PLEASE2_REQ` to `out`: the node, or "not found".
pub fn encode_port2_response(node: Option<&NodeInfo>, out: &mut BytesMut) {
    out.put_u8(tag::PORT2_RESP);
    match node {
        None => out.put_u8(1),
        Some(info) => {
            out.put_u8(0);
            info.encode_fields(out);
        }
    }
}

/// Decodes the reply to `PORT_PLEASE2_REQ`: `Some(None)` is "not found".
pub fn decode_port2_response(
    buf: &mut BytesMut,
) -> Result<Option<Option<NodeInfo>>, ProtocolError> {
    let b = &buf[..];
    if b.len() < 2 {
        return Ok(None);
    }
    if b[0] != tag::PORT2_RESP {
        return Err(ProtocolError::UnknownTag(b[0]));
    }
    if b[1] != 0 {
        buf.advance(2);
        return Ok(Some(None));
    }
    if b.len() < 12 {
        return Ok(None);
    }
    let u16_at = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
    let name_end = 12 + usize::from(u16_at(10));
    if b.len() < name_end + 2 {
        return Ok(None);
    }
    let extra_end = name_end + 2 + usize::from(u16_at(name_end));
    if b.len() < extra_end {
        return Ok(None);
    }
    let info = NodeInfo {
        name: check_name(&b[12..name_end])?,
        port: u16_at(2),
        node_type: NodeType::from_byte(b[4]),
        protocol: b[5],
        high_version: u16_at(6),
        low_version: u16_at(8),
        extra: Bytes::copy_from_slice(&b[name_end + 2..extra_end]),
    };
    buf.advance(extra_end);
    Ok(Some(Some(info)))
}

/// Appends one `NAMES` line, exactly as real epmd writes it.
pub fn encode_names_line(name: &str, port: u16, out: &mut BytesMut) {
    out.put_slice(b"name ");
    out.put_slice(name.as_bytes());
    out.put_slice(b" at port ");
    out.put_slice(port.to_string().as_bytes());
    out.put_u8(b'\n');
}

/// The parsed reply to `NAMES_REQ`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// The port the daemon says it listens on.
    pub epmd_port: u32,
    /// Registered names and their distribution ports.
    pub nodes: Vec<(String, u16)>,
    /// The text after the port, as sent.
    pub text: String,
}

/// Parses a whole `NAMES` reply (the server closed the socket after it).
pub fn parse_names(reply: &[u8]) -> Result<Names, ProtocolError> {
    if reply.len() < 4 {
        return Err(ProtocolError::Malformed("NAMES reply"));
    }
    let epmd_port = u32::from_be_bytes([reply[0], reply[1], reply[2], reply[3]]);
    let text = String::from_utf8_lossy(&reply[4..]).into_owned();
    let nodes = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("name ")?;
            let (name, port) = rest.rsplit_once(" at port ")?;
            Some((name.to_owned(), port.trim().parse().ok()?))
        })
        .collect();
    Ok(Names {
        epmd_port,
        nodes,
        text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alive2_roundtrip() {
        let mut info = NodeInfo::new("foo", 4000);
        info.extra = Bytes::from_static(b"roles=a,b");
        let mut out = BytesMut::new();
        Request::Alive2(info.clone()).encode(&mut out);
        let mut partial = out.clone().split_to(5);
        assert_eq!(Request::decode(&mut partial).unwrap(), None);
        assert_eq!(
            Request::decode(&mut out).unwrap(),
            Some(Request::Alive2(info))
        );
        assert!(out.is_empty());
    }

    #[test]
    fn requests_roundtrip() {
        for r in [
            Request::PortPlease2("n".into()),
            Request::Names,
            Request::Dump,
            Request::Kill,
            Request::Stop("x".into()),
        ] {
            let mut out = BytesMut::new();
            r.encode(&mut out);
            assert_eq!(Request::decode(&mut out).unwrap(), Some(r));
        }
    }

    #[test]
    fn bad_requests() {
        let mut b = BytesMut::from(&[0, 0][..]);
        assert_eq!(Request::decode(&mut b), Err(ProtocolError::BadLength(0)));
        let mut b = BytesMut::from(&[0xff, 0xff][..]);
        assert_eq!(
            Request::decode(&mut b),
            Err(ProtocolError::BadLength(65535))
        );
        let mut b = BytesMut::from(&[0, 1, 1][..]);
        assert_eq!(Request::decode(&mut b), Err(ProtocolError::UnknownTag(1)));
        let mut b = BytesMut::from(&[0, 3, 120, 0, 1][..]);
        assert_eq!(
            Request::decode(&mut b),
            Err(ProtocolError::Malformed("ALIVE2_REQ"))
        );
        let mut b = BytesMut::from(&[0, 1, 122][..]);
        assert_eq!(Request::decode(&mut b), Err(ProtocolError::BadName));
        let mut b = BytesMut::from(&[0, 3, 122, 0xff, 0xfe][..]);
        assert_eq!(Request::decode(&mut b), Err(ProtocolError::BadName));
        // A name length that runs past the body.
        let mut b = BytesMut::from(&[0, 13, 120, 0, 1, 77, 0, 0, 6, 0, 6, 0, 200, b'a', 0][..]);
        assert_eq!(
            Request::decode(&mut b),
            Err(ProtocolError::Malformed("ALIVE2_REQ"))
        );
    }

    #[test]
    fn responses_roundtrip() {
        let mut out = BytesMut::new();
        let r = Alive2Response {
            result: 0,
            creation: 0xdead_beef,
            extended: true,
        };
        r.encode(&mut out);
        assert_eq!(Alive2Response::decode(&mut out).unwrap(), Some(r));

        let info = NodeInfo::new("n", 1);
        let mut out = BytesMut::new();
        encode_port2_response(Some(&info), &mut out);
        assert_eq!(decode_port2_response(&mut out).unwrap(), Some(Some(info)));
        let mut out = BytesMut::new();
        encode_port2_response(None, &mut out);
        assert_eq!(decode_port2_response(&mut out).unwrap(), Some(None));
    }

    #[test]
    fn names_parse() {
        let mut out = BytesMut::new();
        out.put_u32(4369);
        encode_names_line("a", 1, &mut out);
        encode_names_line("b c", 2, &mut out);
        let names = parse_names(&out).unwrap();
        assert_eq!(names.epmd_port, 4369);
        assert_eq!(names.nodes, vec![("a".into(), 1), ("b c".into(), 2)]);
    }
}
