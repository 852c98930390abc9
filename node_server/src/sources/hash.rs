//! [`ModuleHash`]: a module's name, `sha256:<64 hex>` of its bytes.

use sha2::{Digest, Sha256};

use super::SourceError;

/// The SHA-256 of a module's bytes, written `sha256:<64 lowercase hex>`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModuleHash([u8; 32]);

impl ModuleHash {
    /// The hash of `bytes`.
    pub fn of(bytes: &[u8]) -> ModuleHash {
        ModuleHash(Sha256::digest(bytes).into())
    }

    /// The 32 bytes of the digest.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl std::fmt::Display for ModuleHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("sha256:")?;
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl std::fmt::Debug for ModuleHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::str::FromStr for ModuleHash {
    type Err = SourceError;

    /// `sha256:` and 64 hex digits (either case).
    fn from_str(s: &str) -> Result<ModuleHash, SourceError> {
        let bad = || SourceError::BadHash(s.chars().take(100).collect());
        let hex = s.strip_prefix("sha256:").ok_or_else(bad)?.as_bytes();
        if hex.len() != 64 {
            return Err(bad());
        }
        let digit = |c: u8| (c as char).to_digit(16).ok_or_else(bad);
        let mut out = [0u8; 32];
        for (i, pair) in hex.chunks_exact(2).enumerate() {
            // Two hex digits are below 256.
            out[i] = (digit(pair[0])? * 16 + digit(pair[1])?) as u8;
        }
        Ok(ModuleHash(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_print_and_parse_back() {
        let h = ModuleHash::of(b"abc");
        let s = h.to_string();
        assert_eq!(
            s,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(s.parse::<ModuleHash>().unwrap(), h);
        assert_eq!(
            s.to_uppercase()
                .replace("SHA256", "sha256")
                .parse::<ModuleHash>()
                .unwrap(),
            h
        );
        for bad in [
            "",
            "sha256:",
            "md5:00",
            &s[..70],
            &format!("{s}0"),
            &s.replace('b', "g"),
        ] {
            assert!(
                matches!(bad.parse::<ModuleHash>(), Err(SourceError::BadHash(_))),
                "{bad}"
            );
        }
    }
}
