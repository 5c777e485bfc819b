//! Memory per connection-table entry, and insert and lookup cost, at 1 M
//! and 10 M entries.
//!
//! ```text
//! cargo bench -p lvsd --bench conn_memory            # 1 M and 10 M
//! cargo bench -p lvsd --bench conn_memory -- 1000000 # one size
//! ```
//!
//! Run as a test (`cargo test --benches`) it only checks 10,000 entries.
//!
//! Each size runs in a child process of its own (the allocator keeps freed
//! memory, so one process could not measure two sizes cleanly). The child
//! reads VmRSS from /proc/self/status, builds a `ConnTable` with that
//! capacity, inserts N connections (distinct clients), reads VmRSS again,
//! then looks every inbound key up in a scattered order. Sizes that would
//! not fit in half of MemAvailable (estimated at 1 KiB per entry) are
//! skipped with a note. Prints one line per size:
//! `entries N rss_bytes_per_entry B insert_ns I lookup_ns L peak_rss_mib P
//! huge_mib H` (H: anonymous memory on transparent huge pages).

use lvsd::conn::{ConnTable, Key, NewConn};
use lvsd::rules::{DestState, ServiceState, DEFAULT_TIMEOUTS};
use lvsd_proto::{Method, Protocol};
use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddr};
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

/// A `kB` field of /proc/self/status (VmRSS, VmHWM) or /proc/meminfo, in bytes.
fn kb_field(path: &str, name: &str) -> u64 {
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

fn client(i: u32) -> SocketAddr {
    // 65536 ports per client address, addresses from 198.18.64.0 upwards
    // (10 M entries need 153 addresses).
    let ip = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 64, 0)) + (i >> 16));
    let port = u16::try_from(i & 0xffff).unwrap_or(0);
    SocketAddr::from((ip, port))
}

fn run_one(n: u32) {
    let vip: SocketAddr = "198.19.0.100:80".parse().expect("literal");
    let dests: Vec<(SocketAddr, Arc<DestState>)> = (0..3u8)
        .map(|i| {
            (
                SocketAddr::from((Ipv4Addr::new(198, 18, 1, 11 + i), 8080)),
                Arc::new(DestState::new(1)),
            )
        })
        .collect();
    let svc = Arc::new(ServiceState::new(1));
    let before = kb_field("/proc/self/status", "VmRSS:");
    let mut t = ConnTable::new(n as usize, 0);
    let start = Instant::now();
    for i in 0..n {
        let (addr, state) = &dests[(i % 3) as usize];
        let c = NewConn {
            protocol: Protocol::Tcp,
            method: Method::Nat,
            client: client(i),
            vip,
            dest_addr: *addr,
            client_iface: 0,
            client_mac: [2, 0, 198, 18, 0, 2],
            dest: state.clone(),
            service: svc.clone(),
        };
        if t.insert(c, 0, &DEFAULT_TIMEOUTS).is_err() {
            eprintln!("conn_memory: insert {i} refused");
            std::process::exit(1);
        }
    }
    let insert_ns = start.elapsed().as_nanos() as f64 / f64::from(n);
    let after = kb_field("/proc/self/status", "VmRSS:");
    // Scattered order: a large odd stride modulo n visits keys far apart.
    let stride: u64 = 2_654_435_761;
    let start = Instant::now();
    let mut found = 0u64;
    for k in 0..u64::from(n) {
        let i = u32::try_from(k.wrapping_mul(stride) % u64::from(n)).unwrap_or(0);
        let key = Key {
            protocol: Protocol::Tcp,
            src: client(i),
            dst: vip,
        };
        found += u64::from(black_box(t.lookup_in(&key)).is_some());
    }
    let lookup_ns = start.elapsed().as_nanos() as f64 / f64::from(n);
    assert_eq!(found, u64::from(n), "every key is found");
    let peak = kb_field("/proc/self/status", "VmHWM:");
    let huge = kb_field("/proc/self/smaps_rollup", "AnonHugePages:");
    println!(
        "entries {n} rss_bytes_per_entry {:.0} insert_ns {insert_ns:.0} lookup_ns {lookup_ns:.0} peak_rss_mib {} huge_mib {}",
        (after.saturating_sub(before)) as f64 / f64::from(n),
        peak >> 20,
        huge >> 20
    );
    black_box(&t);
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(n) = args.iter().find_map(|a| a.strip_prefix("--child=")) {
        run_one(n.parse().expect("--child=N"));
        return;
    }
    // `cargo bench` passes `--bench`; plain numbers choose the sizes.
    // Without either (`cargo test --benches`), a small smoke run.
    let mut sizes: Vec<u32> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if sizes.is_empty() {
        sizes = if args.iter().any(|a| a == "--bench") {
            vec![1_000_000, 10_000_000]
        } else {
            vec![10_000]
        };
    }
    // The layout per entry is described in lvsd/src/conn/mod.rs; this
    // measures what it costs in resident memory.
    println!("IPv4 TCP connections, one table per size, each in its own process");
    let exe = std::env::current_exe().expect("own path");
    for n in sizes {
        let avail = kb_field("/proc/meminfo", "MemAvailable:");
        if u64::from(n) * 1024 > avail / 2 {
            println!(
                "entries {n}: skipped, needs ~{} MiB and only {} MiB are available",
                (u64::from(n) * 1024) >> 20,
                avail >> 20
            );
            continue;
        }
        let status = Command::new(&exe)
            .arg(format!("--child={n}"))
            .status()
            .expect("running the child");
        if !status.success() {
            eprintln!("conn_memory: {n} entries failed: {status}");
            std::process::exit(1);
        }
    }
}
