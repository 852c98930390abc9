//! EPMD: the Erlang port mapper daemon and its client (arriving with the EPMD issue).
#![forbid(unsafe_code)]
