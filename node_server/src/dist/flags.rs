//! Distribution capability flags exchanged in the handshake.

use std::fmt;
use std::ops::{BitAnd, BitOr};

/// A set of distribution flags (`DFLAG_*` in OTP).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DistFlags(pub u64);

macro_rules! flags {
    ($($(#[$doc:meta])* $name:ident = $value:expr;)*) => {
        impl DistFlags {
            $($(#[$doc])* pub const $name: DistFlags = DistFlags($value);)*

            const NAMES: &'static [(&'static str, u64)] = &[$((stringify!($name), $value)),*];
        }
    };
}

flags! {
    /// The node is visible (part of the mesh), not hidden.
    PUBLISHED = 0x1;
    /// The atom cache in the distribution header.
    ATOM_CACHE = 0x2;
    /// Extended references.
    EXTENDED_REFERENCES = 0x4;
    /// Distributed monitors.
    DIST_MONITOR = 0x8;
    /// Funs with tags.
    FUN_TAGS = 0x10;
    /// Monitors by registered name.
    DIST_MONITOR_NAME = 0x20;
    /// Hidden atom cache (obsolete).
    HIDDEN_ATOM_CACHE = 0x40;
    /// `NEW_FUN_EXT`.
    NEW_FUN_TAGS = 0x80;
    /// Extended pids and ports.
    EXTENDED_PIDS_PORTS = 0x100;
    /// `EXPORT_EXT`.
    EXPORT_PTR_TAG = 0x200;
    /// Bit binaries.
    BIT_BINARIES = 0x400;
    /// `NEW_FLOAT_EXT`.
    NEW_FLOATS = 0x800;
    /// Unicode I/O.
    UNICODE_IO = 0x1000;
    /// The distribution header with atom cache.
    DIST_HDR_ATOM_CACHE = 0x2000;
    /// `SMALL_ATOM_EXT`.
    SMALL_ATOM_TAGS = 0x4000;
    /// UTF-8 atoms.
    UTF8_ATOMS = 0x10000;
    /// `MAP_EXT`.
    MAP_TAG = 0x20000;
    /// 32-bit creations.
    BIG_CREATION = 0x40000;
    /// `SEND_SENDER`.
    SEND_SENDER = 0x80000;
    /// Sequential trace labels of any term.
    BIG_SEQTRACE_LABELS = 0x100000;
    /// `EXIT` signals with payload.
    EXIT_PAYLOAD = 0x400000;
    /// Fragmented messages.
    FRAGMENTS = 0x800000;
    /// The OTP 23 handshake (`'N'` messages, complement).
    HANDSHAKE_23 = 0x1000000;
    /// `UNLINK_ID` / `UNLINK_ID_ACK`.
    UNLINK_ID = 0x2000000;
    /// `SPAWN_REQUEST` / `SPAWN_REPLY`.
    SPAWN = 1 << 32;
    /// Dynamic node names.
    NAME_ME = 1 << 33;
    /// `NEW_PID_EXT` / `V4_PORT_EXT` (64-bit port IDs).
    V4_NC = 1 << 34;
    /// OTP 25's mandatory flags in one bit (`DFLAG_MANDATORY_25_DIGEST`, bit 26 in OTP's
    /// `dist.hrl`; the protocol document's `1 bsl 36` is another, internal flag): a peer that
    /// sets it has all of [`DistFlags::MANDATORY_25`] (see [`DistFlags::expand_digest`]).
    MANDATORY_25_DIGEST = 0x4000000;
    /// Process aliases (`ALIAS_SEND`).
    ALIAS = 1 << 35;
    /// OTP 28's alternative activation signals (`ALTACT_SIG_SEND`: priority messages of EEP
    /// 76, and every send to an alias).
    ALTACT_SIG = 1 << 37;
}

impl DistFlags {
    /// What OTP 25 refuses to connect without (`DFLAG_DIST_MANDATORY`).
    pub const MANDATORY_25: DistFlags = DistFlags(
        Self::EXTENDED_REFERENCES.0
            | Self::FUN_TAGS.0
            | Self::NEW_FUN_TAGS.0
            | Self::EXTENDED_PIDS_PORTS.0
            | Self::EXPORT_PTR_TAG.0
            | Self::BIT_BINARIES.0
            | Self::NEW_FLOATS.0
            | Self::UTF8_ATOMS.0
            | Self::MAP_TAG.0
            | Self::BIG_CREATION.0
            | Self::HANDSHAKE_23.0,
    );

    /// What this node requires of a peer: OTP 25's set plus OTP 26's additions.
    pub const REQUIRED: DistFlags =
        DistFlags(Self::MANDATORY_25.0 | Self::V4_NC.0 | Self::UNLINK_ID.0);

    /// What this node offers (without [`DistFlags::PUBLISHED`], which depends on the node type).
    pub const OFFERED: DistFlags = DistFlags(
        Self::REQUIRED.0
            | Self::DIST_MONITOR.0
            | Self::DIST_MONITOR_NAME.0
            | Self::DIST_HDR_ATOM_CACHE.0
            | Self::SMALL_ATOM_TAGS.0
            | Self::UNICODE_IO.0
            | Self::FRAGMENTS.0
            | Self::EXIT_PAYLOAD.0
            | Self::SEND_SENDER.0
            | Self::BIG_SEQTRACE_LABELS.0
            | Self::SPAWN.0
            | Self::ALIAS.0
            | Self::MANDATORY_25_DIGEST.0
            | Self::ALTACT_SIG.0,
    );

    /// The flags a peer has, with [`DistFlags::MANDATORY_25_DIGEST`] read as the flags it
    /// stands for (as OTP's `dist_util` reads it).
    pub fn expand_digest(self) -> DistFlags {
        if self.contains(Self::MANDATORY_25_DIGEST) {
            DistFlags(self.0 | Self::MANDATORY_25.0)
        } else {
            self
        }
    }

    /// Whether every flag of `other` is set here.
    pub fn contains(self, other: DistFlags) -> bool {
        self.0 & other.0 == other.0
    }

    /// The flags of `required` missing here.
    pub fn missing(self, required: DistFlags) -> DistFlags {
        DistFlags(required.0 & !self.0)
    }

    /// Whether no flag is set.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl BitAnd for DistFlags {
    type Output = DistFlags;
    fn bitand(self, rhs: DistFlags) -> DistFlags {
        DistFlags(self.0 & rhs.0)
    }
}

impl BitOr for DistFlags {
    type Output = DistFlags;
    fn bitor(self, rhs: DistFlags) -> DistFlags {
        DistFlags(self.0 | rhs.0)
    }
}

impl fmt::Debug for DistFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DistFlags({:#x}: ", self.0)?;
        let mut first = true;
        let mut known = 0;
        for (name, bit) in Self::NAMES {
            known |= bit;
            if self.0 & bit != 0 {
                if !first {
                    f.write_str("|")?;
                }
                f.write_str(name)?;
                first = false;
            }
        }
        if self.0 & !known != 0 {
            write!(f, "{}{:#x}", if first { "" } else { "|" }, self.0 & !known)?;
        }
        f.write_str(")")
    }
}

impl fmt::Display for DistFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mandatory_matches_otp() {
        assert_eq!(DistFlags::MANDATORY_25.0, 0x1070F94);
        assert!(DistFlags::OFFERED.contains(DistFlags::REQUIRED));
        assert_eq!(DistFlags::MANDATORY_25_DIGEST.0, 0x0400_0000);
        assert_eq!(DistFlags::ALTACT_SIG.0, 0x20_0000_0000);
        assert_eq!(
            DistFlags::MANDATORY_25_DIGEST.expand_digest(),
            DistFlags::MANDATORY_25_DIGEST | DistFlags::MANDATORY_25
        );
        assert_eq!(DistFlags::V4_NC.expand_digest(), DistFlags::V4_NC);
        assert_eq!(
            format!("{:?}", DistFlags::PUBLISHED | DistFlags(1 << 50)),
            "DistFlags(0x4000000000001: PUBLISHED|0x4000000000000)"
        );
    }
}
