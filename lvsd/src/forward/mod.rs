//! Rewriting one packet for one connection: one module per forwarding
//! method, no I/O, no lookups. The caller has validated the headers.

pub mod nat;
