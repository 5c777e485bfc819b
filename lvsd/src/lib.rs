//! lvsd: a Linux Virtual Server director in user space.
//!
//! Layers, from the wire up (see docs/architecture.md):
//! - [`wire`]: zero-copy header views and checksums; no allocation, no I/O.
//! - [`rules`]: the immutable rule table the data path reads through one
//!   `ArcSwap`, and the draft it is built from.
//! - [`sched`]: the schedulers behind one trait.
//! - [`conn`]: the per-shard connection table, TCP states and expiry.
//! - [`forward`]: rewrite one packet for one connection.
//! - [`dataplane`]: one frame in, one verdict out; time is an argument.
//! - [`io`]: io_uring shards and packet sockets, the only kernel-facing part
//!   of the packet path.
//! - [`admin`], [`config`]: the control path.

pub mod admin;
pub mod config;
pub mod conn;
pub mod daemon;
pub mod dataplane;
pub mod forward;
pub mod io;
pub mod rules;
pub mod sched;
pub mod stats;
pub mod wire;
