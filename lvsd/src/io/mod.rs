//! The kernel-facing side of the packet path: packet sockets, io_uring
//! shards, the fanout program, ARP resolution, and the nftables table that
//! keeps the kernel from handling lvsd's traffic. Nothing below this module
//! makes a system call or reads the clock.

pub mod bpf;
pub mod fanout;
pub mod ifaces;
pub mod kernel;
pub mod neigh;
pub mod shard;
pub mod sys;
pub mod tun;
pub mod xdp;
pub mod xsk;
