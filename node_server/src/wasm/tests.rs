//! Tests of wasm actors.
