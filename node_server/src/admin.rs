//! The admin guard: which connected nodes may run code here, stop the node and kill its
//! actors.
//!
//! Off by default: like an Erlang node, this node lets every peer that knows the cookie call
//! any registered function, run `init:stop/0` and send `exit/2` signals. With
//! [`crate::NodeConfig::admin_allow`], only the listed nodes may:
//!
//! | from a node not on the list | what happens |
//! |---|---|
//! | `rpc:call`, `erpc:call`, `rpc:cast`, `erpc:cast` (`SPAWN_REQUEST`) | the function does not run; a call fails with `exit` reason `{not_allowed, CallerNode}`, which `rpc:call` returns as `{badrpc, {'EXIT', {not_allowed, CallerNode}}}` and `erpc:call` raises as `exit:{exception, {not_allowed, CallerNode}}` |
//! | a `rex` call (`{'$gen_call', _, {call, M, F, A, GL}}`, or `{From, {call, M, F, A, GL}}` from `erl_call` and C nodes) | the same: `{badrpc, {'EXIT', {not_allowed, CallerNode}}}` |
//! | `init:stop/0,1` | an rpc call like any other: refused as above, the node keeps running |
//! | `exit(Pid, Reason)` (`EXIT2`) to one of our actors | dropped, with a warning in the log |
//!
//! Everything else works for every node: messages, `gen_server` calls to actors, links,
//! monitors, `net_adm:ping`. An exit signal that comes through a link (a linked remote
//! process died) is delivered as usual: the link itself was consented to.
//!
//! # What identifies a node
//! Whether a connection may act as an admin is decided once, when it is set up:
//! - The peer's full node name (from the distribution handshake, which the cookie
//!   authenticates) must be on the list, compared exactly (case included).
//! - When the node runs mutual TLS (a [`crate::TlsConfig`] with a CA, so rustls verifies the
//!   peer's certificate chain against it in both directions), the connection must be a TLS
//!   connection and the peer's end-entity certificate must carry that same full name as a
//!   subject common name (CN) or as a subjectAltName of type email (rfc822Name, the natural
//!   fit for `name@host`) or DNS name. A certificate for `ops@host` thus lets only the holder
//!   of its key act as `ops@host`, whatever the cookie. Without a CA (TLS that does not
//!   verify peers), certificates are not looked at, and the name alone decides.

use crate::config::NodeConfig;

/// Whether a connection to `peer` may act as an admin. `cert_names` holds the names of the
/// peer's verified certificate when the connection runs mutual TLS, else `None`.
pub(crate) fn allows(config: &NodeConfig, peer: &str, cert_names: Option<&[String]>) -> bool {
    let Some(allow) = &config.admin_allow else {
        return true;
    };
    if !allow.iter().any(|n| n == peer) {
        return false;
    }
    let mutual = config.tls.as_ref().is_some_and(|t| t.mutual);
    if !mutual {
        return true;
    }
    cert_names.is_some_and(|names| names.iter().any(|n| n == peer))
}

/// The names of a TLS peer's end-entity certificate, when the node runs mutual TLS (so the
/// certificate was verified against the CA); `None` otherwise.
pub(crate) fn peer_cert_names(
    config: &NodeConfig,
    tls: &tokio_rustls::rustls::CommonState,
) -> Option<Vec<String>> {
    if !config.tls.as_ref().is_some_and(|t| t.mutual) {
        return None;
    }
    let cert = tls.peer_certificates()?.first()?;
    Some(certificate_names(cert.as_ref()))
}

/// The exit reason of a refused call: `{not_allowed, CallerNode}`.
pub(crate) fn refusal(peer: &crate::etf::Atom) -> crate::etf::Term {
    use crate::etf::Term;
    Term::tuple(vec![Term::atom("not_allowed"), Term::Atom(peer.clone())])
}

/// The names an X.509 certificate (DER) gives its subject: each common name (CN) of the
/// subject, then each subjectAltName of type email (rfc822Name) or DNS name, in the
/// certificate's order. A certificate that does not parse gives no names.
pub fn certificate_names(der: &[u8]) -> Vec<String> {
    let mut names = Vec::new();
    let _ = collect_names(der, &mut names);
    names
}

/// One DER element: its tag, its contents, and what follows it.
fn element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return None;
    }
    Some((tag, &rest[..len], &rest[len..]))
}

/// The elements of a constructed element's contents.
fn elements(mut input: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    std::iter::from_fn(move || {
        let (tag, content, rest) = element(input)?;
        input = rest;
        Some((tag, content))
    })
}

const SEQUENCE: u8 = 0x30;
const SET: u8 = 0x31;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
/// id-at-commonName, 2.5.4.3.
const OID_CN: &[u8] = &[0x55, 0x04, 0x03];
/// id-ce-subjectAltName, 2.5.29.17.
const OID_SAN: &[u8] = &[0x55, 0x1d, 0x11];

fn collect_names(der: &[u8], names: &mut Vec<String>) -> Option<()> {
    let (SEQUENCE, cert, _) = element(der)? else {
        return None;
    };
    let (SEQUENCE, tbs, _) = element(cert)? else {
        return None;
    };
    let mut fields = elements(tbs).peekable();
    // [0] version, when present; then serial, signature, issuer, validity, subject.
    if fields.peek().is_some_and(|(tag, _)| *tag == 0xa0) {
        fields.next();
    }
    let (_serial, _signature, _issuer, _validity) = (
        fields.next()?,
        fields.next()?,
        fields.next()?,
        fields.next()?,
    );
    let (SEQUENCE, subject) = fields.next()? else {
        return None;
    };
    for (tag, rdn) in elements(subject) {
        if tag != SET {
            continue;
        }
        for (tag, attribute) in elements(rdn) {
            if tag != SEQUENCE {
                continue;
            }
            let mut parts = elements(attribute);
            if let (Some((OID, oid)), Some((_, value))) = (parts.next(), parts.next()) {
                if oid == OID_CN {
                    if let Ok(text) = std::str::from_utf8(value) {
                        names.push(text.to_owned());
                    }
                }
            }
        }
    }
    // The rest: public key, optional unique ids, then [3] extensions.
    let (_, extensions) = fields.find(|(tag, _)| *tag == 0xa3)?;
    let (SEQUENCE, extensions, _) = element(extensions)? else {
        return None;
    };
    for (tag, extension) in elements(extensions) {
        if tag != SEQUENCE {
            continue;
        }
        let mut parts = elements(extension);
        let Some((OID, OID_SAN)) = parts.next() else {
            continue;
        };
        let Some((_, value)) = parts.find(|(tag, _)| *tag == OCTET_STRING) else {
            continue;
        };
        let (SEQUENCE, general_names, _) = element(value)? else {
            continue;
        };
        for (tag, name) in elements(general_names) {
            // [1] rfc822Name and [2] dNSName, both IA5String.
            if tag == 0x81 || tag == 0x82 {
                if let Ok(text) = std::str::from_utf8(name) {
                    names.push(text.to_owned());
                }
            }
        }
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `openssl req -x509 -newkey ec ... -subj "/O=Test/CN=ops@host.example"
    /// -addext "subjectAltName=email:admin@vm,DNS:host.example,URI:erlang://uri@vm"`.
    const CERT: &str = "-----BEGIN CERTIFICATE-----
MIIB4TCCAYegAwIBAgIUZGnbZl3JMJYQ2YfdoB/Fs6NpUAIwCgYIKoZIzj0EAwIw
KjENMAsGA1UECgwEVGVzdDEZMBcGA1UEAwwQb3BzQGhvc3QuZXhhbXBsZTAgFw0y
NjExMjgxNTU1NThaGA8yMTI2MTEwNDE1NTU1OFowKjENMAsGA1UECgwEVGVzdDEZ
MBcGA1UEAwwQb3BzQGhvc3QuZXhhbXBsZTBZMBMGByqGSM49AgEGCCqGSM49AwEH
A0IABEXIjMStmrlCGDzrFrN4cUz5Bs4RjqhqHp+AdCjO4NsdYp+KC6GWyK02D110
N4YcqVQ3WrRW7jYWA4GEJVNe4+ajgYgwgYUwHQYDVR0OBBYEFDLVQEHD0RJjgQ4N
x7MsRI+rE4cCMB8GA1UdIwQYMBaAFDLVQEHD0RJjgQ4Nx7MsRI+rE4cCMA8GA1Ud
EwEB/wQFMAMBAf8wMgYDVR0RBCswKYEIYWRtaW5Adm2CDGhvc3QuZXhhbXBsZYYP
ZXJsYW5nOi8vdXJpQHZtMAoGCCqGSM49BAMCA0gAMEUCIQDPLeNVSsig8AhpaHhE
QrogkGQ8sJndeqSoFMXB7IvChwIgSDg3/wUcIqQ76GXeAHhzSpQUDSOeGyDaJn48
rZIIblQ=
-----END CERTIFICATE-----
";

    fn der() -> Vec<u8> {
        rustls_pemfile::certs(&mut CERT.as_bytes())
            .next()
            .unwrap()
            .unwrap()
            .to_vec()
    }

    #[test]
    fn names_of_a_certificate() {
        assert_eq!(
            certificate_names(&der()),
            vec!["ops@host.example", "admin@vm", "host.example"]
        );
    }

    #[test]
    fn garbage_and_truncation_give_no_names() {
        assert!(certificate_names(b"").is_empty());
        assert!(certificate_names(b"\x30\x84\xff\xff\xff\xff").is_empty());
        let der = der();
        for cut in 0..der.len() {
            // No panic on any prefix; the names found are a prefix of the full list.
            let names = certificate_names(&der[..cut]);
            assert!(names.len() <= 3);
        }
    }

    #[test]
    fn the_guard_checks_names_and_certificates() {
        let open = NodeConfig::new("a@h");
        assert!(allows(&open, "anyone@h", None));
        let guarded = NodeConfig::new("a@h").admin_allow(["ops@h"]);
        assert!(allows(&guarded, "ops@h", None));
        assert!(!allows(&guarded, "other@h", None));
        assert!(!allows(&guarded, "OPS@h", None));
    }
}
