//! The Erlang distribution protocol: handshake, flags, packet framing and control messages.
//!
//! Everything here is sans IO: state machines and codecs over byte buffers, driven by the
//! session tasks in [`crate::session`].

pub mod atom_cache;
pub mod control;
pub mod flags;
pub(crate) mod frame_pool;
pub mod handshake;
pub mod packet;

pub use flags::DistFlags;
