//! Derive macros that make Rust types Erlang terms (arriving with the typed-messages issue).
#![forbid(unsafe_code)]
