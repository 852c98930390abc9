//! Node roles carried in a registration's EXTRA field.
//!
//! EPMD stores EXTRA and returns it unchanged with every lookup, so metadata there stays
//! compatible with real epmd and with Erlang nodes, which register an empty EXTRA. This crate
//! writes EXTRA as UTF-8 text of `key=value` fields separated by `;`, and defines one key:
//!
//! ```text
//! roles=httpd,cache
//! ```
//!
//! Role names are non-empty and hold no `,`, `;`, `=` or control characters. An EXTRA that is
//! empty or not in this form (anything another program wrote) simply has no roles.

use bytes::Bytes;

use crate::protocol::MAX_EXTRA_LEN;

/// Why roles cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RoleError {
    /// A role is empty or holds a separator or control character.
    #[error("invalid role name {0:?}")]
    InvalidRole(String),
    /// The encoded roles exceed the EXTRA field's limit.
    #[error("roles take {0} bytes, more than EPMD's limit of {MAX_EXTRA_LEN}")]
    TooLong(usize),
}

/// Whether `role` can be written in EXTRA.
pub fn is_valid_role(role: &str) -> bool {
    !role.is_empty()
        && !role
            .chars()
            .any(|c| matches!(c, ',' | ';' | '=') || c.is_control())
}

/// Encodes roles as EXTRA bytes (`roles=a,b`); no roles gives an empty EXTRA.
pub fn encode_roles<S: AsRef<str>>(roles: &[S]) -> Result<Bytes, RoleError> {
    if roles.is_empty() {
        return Ok(Bytes::new());
    }
    if let Some(bad) = roles.iter().find(|r| !is_valid_role(r.as_ref())) {
        return Err(RoleError::InvalidRole(bad.as_ref().to_owned()));
    }
    let joined: Vec<&str> = roles.iter().map(AsRef::as_ref).collect();
    let text = format!("roles={}", joined.join(","));
    if text.len() > MAX_EXTRA_LEN {
        return Err(RoleError::TooLong(text.len()));
    }
    Ok(Bytes::from(text))
}

/// The roles in an EXTRA field; none when it is empty or holds no `roles=` field.
pub fn decode_roles(extra: &[u8]) -> Vec<String> {
    let Ok(text) = std::str::from_utf8(extra) else {
        return Vec::new();
    };
    text.split(';')
        .find_map(|field| field.strip_prefix("roles="))
        .map(|list| {
            list.split(',')
                .filter(|r| is_valid_role(r))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roundtrip() {
        let extra = encode_roles(&["httpd", "cache"]).unwrap();
        assert_eq!(&extra[..], b"roles=httpd,cache");
        assert_eq!(decode_roles(&extra), vec!["httpd", "cache"]);
        assert!(encode_roles::<&str>(&[]).unwrap().is_empty());
        assert!(decode_roles(b"").is_empty());
        assert!(decode_roles(b"\xff\x00junk").is_empty());
        assert_eq!(decode_roles(b"zone=eu;roles=db"), vec!["db"]);
    }

    #[test]
    fn invalid_roles() {
        assert!(encode_roles(&["a,b"]).is_err());
        assert!(encode_roles(&[""]).is_err());
        assert!(matches!(
            encode_roles(&["x".repeat(300)]),
            Err(RoleError::TooLong(_))
        ));
    }
}
