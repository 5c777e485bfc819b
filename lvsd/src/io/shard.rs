//! One shard: a thread with its own io_uring, packet socket, buffer ring and
//! connection table.
//!
//! The receive path is one multishot `RECVMSG` on the shard's packet socket,
//! filling buffers the kernel picks from a registered buffer ring. Each
//! completion is one frame; the loop drains every completion that is ready
//! (the batch), loads the rule and neighbour tables once, runs each frame
//! through [`dataplane::process`], rewrites it in place and queues a
//! `SENDMSG` of that same buffer, then submits the whole batch of sends with
//! one system call. A buffer goes back to the ring when its frame is dropped
//! or passed, or when its send completes.
//!
//! With the XDP backend the shard also owns the AF_XDP sockets
//! ([`super::xsk`]). A multishot poll on each wakes the loop when frames
//! arrive; after the packet socket's completions, each pass takes back the
//! frames the kernel has sent, runs every received frame through the same
//! data path (`dataplane::process_bare`: no virtio-net header, the room for
//! one left unwritten), queues it on the outgoing interface's socket,
//! refills the fill rings and makes one `sendto` per socket with frames to
//! send. While a socket has more than one batch waiting (or within
//! `busy_poll` of the last frame) the loop does not sleep. With several XDP
//! shards, the XDP program steers each frame to the socket of the shard
//! that owns its connection ([`super::xdp`]): a shard only ever sees its own
//! connections' frames, and no shard touches another's table.
//!
//! Ownership of buffers (the safety argument for every raw access here):
//! a buffer belongs to the kernel from the moment its id is published in the
//! ring until a receive completion names it; then to this thread until its
//! id is published again. A buffer handed to a send stays untouched until
//! the send's completion arrives.

use super::sys::Mapping;
use super::xsk::{Action, XskSet};
use crate::conn::ConnTable;
use crate::dataplane::{
    self, Ctx, DropReason, Frame, Interfaces, NeighTable, ShardCounters, Verdict, HEADROOM,
};
use crate::rules::RuleTable;
use crate::stats::bump;
use crate::wire::vnet;
use arc_swap::ArcSwap;
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use lvsd_proto::ConnInfo;
use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU16, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Buffer group id of the shard's ring (one ring per io_uring).
const BGID: u16 = 0;
/// user_data of the multishot receive; a send's user_data is its buffer id.
const UD_RECV: u64 = u64::MAX;
/// user_data of the multishot poll on AF_XDP socket i: UD_XSK + i (above
/// every buffer id, below UD_RECV).
const UD_XSK: u64 = 1 << 32;
/// Marks a local-node write's user_data (its buffer id | UD_LOCAL).
const UD_LOCAL: u64 = 1 << 20;
/// Most frames taken from one AF_XDP socket per pass of the loop.
const XSK_BATCH: u32 = 256;
/// Longest wait for a completion: how late a shard notices a stop request,
/// runs expiry or answers a listing when no traffic comes.
const IDLE_WAIT: Duration = Duration::from_millis(100);
/// Longest wait before a TX ring the kernel turned away is kicked again.
const TX_RETRY_WAIT: Duration = Duration::from_millis(1);
/// The kernel's largest io_uring queues.
const MAX_SQ_ENTRIES: u32 = 32768;
const MAX_CQ_ENTRIES: u32 = 65536;
/// io_uring_recvmsg_out, the header the kernel writes before the name.
const RECVMSG_OUT_LEN: usize = 16;

/// Requests the control thread sends a shard.
pub enum ShardRequest {
    /// Reply with the shard's connection table.
    ListConns(Sender<Vec<ConnInfo>>),
}

/// Everything a shard thread needs.
pub struct ShardParams {
    pub id: usize,
    pub socket: OwnedFd,
    pub ifaces: Arc<ArcSwap<Interfaces>>,
    pub rules: Arc<ArcSwap<RuleTable>>,
    pub neigh: Arc<ArcSwap<NeighTable>>,
    /// This shard's counters (the control thread reads them).
    pub counters: Arc<ShardCounters>,
    /// Connections the shard's table holds at most.
    pub conn_capacity: usize,
    pub stop: Arc<AtomicBool>,
    pub requests: Receiver<ShardRequest>,
    /// The clock's origin, shared by every shard.
    pub epoch: Instant,
    /// Number of receive buffers: a power of two, at most 32768.
    pub buffers: u16,
    /// Bytes per receive buffer.
    pub buffer_size: usize,
    /// When set, this shard keeps the fanout program in step with the VIPs.
    pub fanout_owner: bool,
    /// The TUN device that hands local-node packets to the director's own
    /// stack (shared by every shard: writes to it are atomic).
    pub local_tun: Option<std::os::fd::RawFd>,
    /// The AF_XDP sockets this shard serves (XDP backend), beside its
    /// packet socket, which then sees only what the XDP program passes.
    pub xsk: Option<XskSet>,
    /// How long to keep polling the AF_XDP sockets after the last frame
    /// before sleeping.
    pub busy_poll: Duration,
}

/// The provided-buffer ring and the buffers it hands out.
struct BufRing {
    ring: Mapping,
    bufs: Mapping,
    entries: u16,
    buf_size: usize,
    /// Our copy of the tail; published to the kernel by `publish`.
    tail: u16,
}

impl BufRing {
    fn new(entries: u16, buf_size: usize) -> io::Result<Self> {
        let ring = Mapping::anonymous(usize::from(entries) * size_of::<types::BufRingEntry>())?;
        let bufs = Mapping::anonymous(usize::from(entries) * buf_size)?;
        let mut r = BufRing {
            ring,
            bufs,
            entries,
            buf_size,
            tail: 0,
        };
        for bid in 0..entries {
            r.push(bid);
        }
        r.publish();
        Ok(r)
    }

    fn buf_ptr(&self, bid: u16) -> *mut u8 {
        // SAFETY: bid < entries, so the offset stays inside `bufs`.
        unsafe { self.bufs.ptr.add(usize::from(bid) * self.buf_size) }
    }

    /// Queues buffer `bid` for the kernel; visible after `publish`.
    fn push(&mut self, bid: u16) {
        let mask = self.entries - 1;
        let idx = usize::from(self.tail & mask);
        // SAFETY: idx < entries and the ring holds `entries` entries; the
        // kernel only reads entries between its head and the published tail,
        // and this one is past the published tail.
        unsafe {
            let e = &mut *self.ring.ptr.cast::<types::BufRingEntry>().add(idx);
            e.set_addr(self.buf_ptr(bid) as u64);
            e.set_len(u32::try_from(self.buf_size).unwrap_or(u32::MAX));
            e.set_bid(bid);
        }
        self.tail = self.tail.wrapping_add(1);
    }

    /// Makes every pushed buffer visible to the kernel.
    fn publish(&self) {
        // SAFETY: the tail field lives in the first entry's reserved bytes;
        // the ring is page aligned, so the pointer is aligned for AtomicU16.
        unsafe {
            let base = self.ring.ptr.cast::<types::BufRingEntry>();
            let tail = types::BufRingEntry::tail(base)
                .cast_mut()
                .cast::<AtomicU16>();
            (*tail).store(self.tail, Ordering::Release);
        }
    }
}

/// Per-buffer send state: must stay put while a send is in flight.
struct SendSlots {
    msgs: Vec<libc::msghdr>,
    iovs: Vec<libc::iovec>,
    addrs: Vec<libc::sockaddr_ll>,
}

/// The shard's io_uring, sized for `buffers` receive buffers.
fn new_ring(buffers: u16) -> io::Result<IoUring> {
    // Within the kernel's limits (IORING_MAX_ENTRIES, IORING_MAX_CQ_ENTRIES)
    // at the largest `buffers` the config allows; the submission queue
    // needs room for one batch only (`push` submits when it is full).
    let cq_size = (u32::from(buffers) * 2 + 64).min(MAX_CQ_ENTRIES);
    let entries = (u32::from(buffers) + 64).min(MAX_SQ_ENTRIES);
    // Completion work runs when this thread asks for events, not by
    // interrupting it (and the kernel never wakes it for that while it
    // runs): kernel 6.1+; older kernels get the default.
    match IoUring::builder()
        .setup_cqsize(cq_size)
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_taskrun_flag()
        .build(entries)
    {
        Ok(r) => Ok(r),
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder()
            .setup_cqsize(cq_size)
            .setup_single_issuer()
            .build(entries),
        Err(e) => Err(e),
    }
}

/// Runs a shard until `stop` is set. Errors are fatal to the shard (and the
/// daemon): they come from setting up the ring, not from packets.
pub fn run(p: ShardParams) -> io::Result<()> {
    let mut ring = new_ring(p.buffers)?;
    if !ring.params().is_feature_ext_arg() {
        return Err(io::Error::other(
            "io_uring lacks IORING_FEAT_EXT_ARG (kernel 5.11+ needed)",
        ));
    }
    let mut probe = io_uring::Probe::new();
    ring.submitter().register_probe(&mut probe)?;
    if !probe.is_supported(opcode::RecvMsgMulti::CODE) || !probe.is_supported(opcode::SendMsg::CODE)
    {
        return Err(io::Error::other(
            "io_uring lacks RECVMSG/SENDMSG (kernel 6.0+ needed)",
        ));
    }
    let mut bufs = BufRing::new(p.buffers, p.buffer_size)?;
    // SAFETY: the ring memory is page aligned, holds `buffers` entries, and
    // outlives the registration (it is unregistered before `bufs` drops:
    // see the end of this function).
    unsafe {
        ring.submitter()
            .register_buf_ring_with_flags(bufs.ring.ptr as u64, p.buffers, BGID, 0)?;
    }

    let fd = p.socket.as_raw_fd();
    // The receive template: room for the sender's sockaddr_ll and, after it,
    // the headroom a tunnel's outer header needs; no control data. The kernel
    // puts the frame after the whole name area.
    let mut recv_msg: Box<libc::msghdr> = Box::new(
        // SAFETY: msghdr is plain old data; zero is a valid empty header.
        unsafe { std::mem::zeroed() },
    );
    let name_len = size_of::<libc::sockaddr_ll>() + HEADROOM;
    recv_msg.msg_namelen = u32::try_from(name_len).unwrap_or(0);

    let n = usize::from(p.buffers);
    let mut slots = SendSlots {
        // SAFETY: plain old data, zero-initialised.
        msgs: (0..n).map(|_| unsafe { std::mem::zeroed() }).collect(),
        iovs: (0..n)
            .map(|_| libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            })
            .collect(),
        addrs: (0..n).map(|_| super::sys::zeroed_sll()).collect(),
    };

    let now_ms = |epoch: Instant| u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut table = ConnTable::new(p.conn_capacity, now_ms(p.epoch));
    let mut recv_armed = false;
    let mut xsk = p.xsk;
    let mut xsk_armed = vec![false; xsk.as_ref().map_or(0, |x| x.sockets.len())];
    let mut xsk_busy = false;
    let mut xsk_unsent = false;
    let mut xsk_last_work = Instant::now();
    let mut stats_at = 0u64;
    let mut completions: Vec<(u64, i32, u32)> =
        Vec::with_capacity(ring.params().cq_entries() as usize);
    let mut fanout_vips: Option<Vec<std::net::Ipv4Addr>> = None;
    let mut fanout_generation = 0u64;
    let mut fanout_retry_at = 0u64;
    let ts = types::Timespec::from(IDLE_WAIT);
    let retry = types::Timespec::from(TX_RETRY_WAIT);
    let c = &*p.counters;

    let icmp_budget = dataplane::IcmpBudget::new();
    while !p.stop.load(Ordering::Relaxed) {
        if !recv_armed {
            let e = opcode::RecvMsgMulti::new(types::Fd(fd), &*recv_msg, BGID)
                .build()
                .user_data(UD_RECV);
            push(&mut ring, &e)?;
            recv_armed = true;
        }
        if let Some(x) = &xsk {
            for (i, sock) in x.sockets.iter().enumerate() {
                if !xsk_armed[i] {
                    let e = opcode::PollAdd::new(types::Fd(sock.raw_fd()), libc::POLLIN as u32)
                        .multi(true)
                        .build()
                        .user_data(UD_XSK + i as u64);
                    push(&mut ring, &e)?;
                    xsk_armed[i] = true;
                }
            }
        }
        // With AF_XDP frames still waiting, or within the busy-poll time
        // after the last ones, look again without sleeping (and without a
        // system call when there is nothing to submit and no completion
        // work queued).
        let spin = xsk.is_some()
            && (xsk_busy || (!p.busy_poll.is_zero() && xsk_last_work.elapsed() < p.busy_poll));
        // Spinning, still enter when completion work waits: deferred work
        // runs only then (the taskrun flag says so).
        if !spin || !ring.submission().is_empty() || ring.submission().taskrun() {
            let args = types::SubmitArgs::new().timespec(if xsk_unsent { &retry } else { &ts });
            match ring.submitter().submit_with_args(usize::from(!spin), &args) {
                Ok(_) => {}
                // A timeout, a full completion queue (drained below), or a
                // passing shortage: the loop goes on.
                Err(e)
                    if transient(&e)
                        || matches!(e.raw_os_error(), Some(libc::ETIME) | Some(libc::EBUSY)) =>
                {
                    if matches!(e.raw_os_error(), Some(libc::EAGAIN) | Some(libc::ENOMEM)) {
                        // Not in a tight loop while the kernel is short.
                        std::thread::sleep(Duration::from_micros(100));
                    }
                }
                Err(e) => return Err(e),
            }
        }

        // One batch: one clock read, one load of each table.
        let now = now_ms(p.epoch);
        let rules = p.rules.load();
        let neigh = p.neigh.load();
        let ifaces = p.ifaces.load();
        // Only when the rules changed: a new program needs a system call.
        // A program the kernel refused is tried again a second later.
        if p.fanout_owner && rules.generation != fanout_generation && now >= fanout_retry_at {
            if update_fanout(fd, &rules, &mut fanout_vips) {
                fanout_generation = rules.generation;
            } else {
                fanout_retry_at = now + 1000;
            }
        }
        let conns = &mut table;
        conns.expire(now);
        if now >= stats_at {
            // The kernel's counters, a system call per socket: now and then.
            stats_at = now + 500;
            // The packet socket's drops, which the read resets.
            if let Ok(d) = super::sys::packet_drops(fd) {
                bump(&c.socket_full, u64::from(d));
            }
            if let Some(x) = xsk.as_ref() {
                let (full, empty) = x.kernel_drops();
                c.xdp_ring_full.store(full, Ordering::Relaxed);
                c.xdp_fill_empty.store(empty, Ordering::Relaxed);
            }
        }
        while let Ok(req) = p.requests.try_recv() {
            match req {
                ShardRequest::ListConns(reply) => {
                    let _ = reply.send(conns.list(now));
                }
            }
        }
        let ctx = Ctx {
            shard: p.id,
            now,
            rules: &rules,
            neigh: &neigh,
            ifaces: &ifaces,
            icmp: &icmp_budget,
        };

        completions.clear();
        completions.extend(
            ring.completion()
                .map(|e| (e.user_data(), e.result(), e.flags())),
        );
        let mut returned = 0usize;
        for &(ud, res, flags) in &completions {
            if (UD_XSK..UD_RECV).contains(&ud) {
                if !cqueue::more(flags) {
                    let i = usize::try_from(ud - UD_XSK).unwrap_or(usize::MAX);
                    if let Some(a) = xsk_armed.get_mut(i) {
                        *a = false;
                    }
                }
                continue;
            }
            if ud != UD_RECV {
                // A send (or a local-node write) finished: its buffer goes
                // back. Bytes are counted without the virtio-net header, as
                // the XDP path counts them.
                let bid = u16::try_from(ud & !UD_LOCAL).unwrap_or(0);
                let header = if ud & UD_LOCAL == 0 {
                    vnet::HEADER_LEN
                } else {
                    0
                };
                if res < 0 {
                    bump(&c.drops[DropReason::TxError as usize], 1);
                } else {
                    bump(&c.tx_frames, 1);
                    let n = usize::try_from(res).unwrap_or(0).saturating_sub(header);
                    bump(&c.tx_bytes, n as u64);
                }
                bufs.push(bid);
                returned += 1;
                continue;
            }
            if !cqueue::more(flags) {
                recv_armed = false;
            }
            let Some(bid) = cqueue::buffer_select(flags) else {
                continue; // an error such as ENOBUFS: re-armed above
            };
            if bid >= p.buffers {
                // Not a buffer of ours: nothing to give back.
                tracing::error!("shard {}: receive completion names buffer {bid}", p.id);
                continue;
            }
            if res < 0 {
                bufs.push(bid);
                returned += 1;
                continue;
            }
            let len = usize::try_from(res).unwrap_or(0).min(p.buffer_size);
            // SAFETY: the completion hands buffer `bid` to this thread (see
            // the module docs); the slice is the whole buffer.
            let buf = unsafe { std::slice::from_raw_parts_mut(bufs.buf_ptr(bid), p.buffer_size) };
            let verdict = match types::RecvMsgOut::parse(&buf[..len], &recv_msg) {
                Err(()) => {
                    bump(&c.rx_frames, 1);
                    Some(Verdict::Drop(DropReason::Truncated))
                }
                Ok(out) if out.is_payload_truncated() => {
                    bump(&c.rx_frames, 1);
                    Some(Verdict::Drop(DropReason::Truncated))
                }
                Ok(out) => {
                    let name = out.name_data();
                    let ifindex = if name.len() >= 8 {
                        i32::from_ne_bytes([name[4], name[5], name[6], name[7]])
                    } else {
                        0
                    };
                    let plen = out.payload_data().len();
                    let off = RECVMSG_OUT_LEN + name_len;
                    bump(&c.rx_frames, 1);
                    bump(&c.rx_bytes, plen.saturating_sub(vnet::HEADER_LEN) as u64);
                    match u32::try_from(ifindex).ok().and_then(|i| ifaces.slot(i)) {
                        None => Some(Verdict::Pass),
                        Some(slot) if off + plen <= len => {
                            let mut frame = Frame {
                                buf: &mut *buf,
                                start: off,
                                len: plen,
                            };
                            let v = dataplane::process(&ctx, conns, slot, &mut frame);
                            if let Verdict::Refuse { why, .. } = v {
                                bump(&c.drops[why as usize], 1);
                            }
                            match v {
                                Verdict::Forward { iface } | Verdict::Refuse { iface, .. } => {
                                    match ifaces.list.get(usize::from(iface)).map(|i| i.ifindex) {
                                        Some(ifx) => {
                                            let bytes = frame.bytes();
                                            queue_send(&mut ring, &mut slots, fd, bid, bytes, ifx)?;
                                            None
                                        }
                                        None => Some(Verdict::Drop(DropReason::NoNeighbor)),
                                    }
                                }
                                Verdict::Local => match p.local_tun {
                                    Some(tun) => {
                                        let bytes = frame.bytes();
                                        let e = opcode::Write::new(
                                            types::Fd(tun),
                                            bytes.as_ptr(),
                                            u32::try_from(bytes.len()).unwrap_or(0),
                                        )
                                        .build()
                                        .user_data(u64::from(bid) | UD_LOCAL);
                                        push(&mut ring, &e)?;
                                        None
                                    }
                                    None => Some(Verdict::Drop(DropReason::NoNeighbor)),
                                },
                                v => Some(v),
                            }
                        }
                        Some(_) => Some(Verdict::Drop(DropReason::Truncated)),
                    }
                }
            };
            if let Some(v) = verdict {
                match v {
                    Verdict::Drop(r) => bump(&c.drops[r as usize], 1),
                    Verdict::Pass => bump(&c.passed, 1),
                    Verdict::Forward { .. } | Verdict::Refuse { .. } | Verdict::Local => {}
                }
                bufs.push(bid);
                returned += 1;
            }
        }
        if returned > 0 {
            bufs.publish();
        }
        if let Some(x) = xsk.as_mut() {
            let pass = xsk_pass(x, c, &ctx, conns, p.local_tun);
            xsk_busy = pass.busy;
            xsk_unsent = pass.unsent;
            if pass.frames > 0 && !p.busy_poll.is_zero() {
                xsk_last_work = Instant::now();
            }
        } else {
            c.conns.store(conns.len() as u64, Ordering::Relaxed);
        }
    }
    table.clear();
    c.conns.store(0, Ordering::Relaxed);
    // Closing the ring cancels its requests later, in the kernel's own
    // time; taking the buffer ring back first (synchronous) means no
    // receive can still pick a buffer once the memory is unmapped.
    if let Err(e) = ring.submitter().unregister_buf_ring(BGID) {
        tracing::warn!("shard {}: unregistering its buffer ring: {e}", p.id);
    }
    drop(ring);
    drop(bufs);
    Ok(())
}

/// What one pass over the AF_XDP sockets did.
struct XskPass {
    /// Frames received.
    frames: u32,
    /// A socket had more than one batch, or a fill ring was taken: look
    /// again at once.
    busy: bool,
    /// A TX ring still holds frames: kick it again soon.
    unsent: bool,
}

/// One pass over the AF_XDP sockets: take back sent frames, run every
/// received frame through the data path against this shard's table
/// (`conns`), refill, send.
fn xsk_pass(
    x: &mut XskSet,
    c: &ShardCounters,
    ctx: &Ctx,
    conns: &mut ConnTable,
    local_tun: Option<std::os::fd::RawFd>,
) -> XskPass {
    x.reclaim();
    let mut busy = false;
    let mut total = 0;
    let mut rx_bytes = 0u64;
    for i in 0..x.sockets.len() {
        let slot = x.sockets[i].slot;
        let n = x.receive(i, XSK_BATCH, |buf, off, len| {
            rx_bytes += len as u64;
            handle(ctx, conns, c, local_tun, slot, buf, off, len)
        });
        busy |= n == XSK_BATCH;
        total += n;
    }
    // Counted once per pass, not per frame.
    bump(&c.rx_frames, u64::from(total));
    bump(&c.rx_xdp_frames, u64::from(total));
    bump(&c.rx_bytes, rx_bytes);
    c.conns.store(conns.len() as u64, Ordering::Relaxed);
    for i in 0..x.sockets.len() {
        busy |= !x.refill(i);
    }
    let unsent = x.flush();
    let (frames, bytes, failed) = x.take_stats();
    bump(&c.tx_frames, frames);
    bump(&c.tx_bytes, bytes);
    bump(&c.drops[DropReason::TxError as usize], failed);
    XskPass {
        frames: total,
        busy,
        unsent,
    }
}

/// Runs one AF_XDP frame (`buf[off..off + len]`, received on interface slot
/// `slot`) through the data path and says what becomes of it.
#[allow(clippy::too_many_arguments)] // the pass's state, split for borrowing
fn handle(
    ctx: &Ctx,
    conns: &mut ConnTable,
    c: &ShardCounters,
    local_tun: Option<std::os::fd::RawFd>,
    slot: u16,
    buf: &mut [u8],
    off: usize,
    len: usize,
) -> Action {
    // The data path's frames start with room for a virtio-net header; an
    // AF_XDP frame has none (no offloads), and the room is the headroom
    // before it, left unwritten (`process_bare`).
    let Some(start) = off.checked_sub(vnet::HEADER_LEN) else {
        bump(&c.drops[DropReason::Truncated as usize], 1);
        return Action::Recycle;
    };
    let mut frame = Frame {
        buf,
        start,
        len: len + vnet::HEADER_LEN,
    };
    let v = dataplane::process_bare(ctx, conns, slot, &mut frame);
    if let Verdict::Refuse { why, .. } = v {
        bump(&c.drops[why as usize], 1);
    }
    match v {
        Verdict::Forward { iface } | Verdict::Refuse { iface, .. } => Action::Send {
            slot: iface,
            start: frame.start + vnet::HEADER_LEN,
            len: frame.len.saturating_sub(vnet::HEADER_LEN),
        },
        Verdict::Local => {
            match local_tun {
                Some(tun) => {
                    let bytes = frame.bytes();
                    // SAFETY: writes `bytes` to our TUN descriptor.
                    let r = unsafe { libc::write(tun, bytes.as_ptr().cast(), bytes.len()) };
                    if r < 0 {
                        bump(&c.drops[DropReason::TxError as usize], 1);
                    } else {
                        // Counted as sent, as on the packet path.
                        bump(&c.tx_frames, 1);
                        bump(&c.tx_bytes, bytes.len() as u64);
                    }
                }
                None => bump(&c.drops[DropReason::NoNeighbor as usize], 1),
            }
            Action::Recycle
        }
        Verdict::Drop(r) => {
            bump(&c.drops[r as usize], 1);
            Action::Recycle
        }
        Verdict::Pass => {
            // Only frames the XDP program chose come here, and the kernel
            // never sees them: passing is losing.
            bump(&c.passed, 1);
            Action::Recycle
        }
    }
}

/// Pushes an entry, submitting first if the queue is full.
fn push(ring: &mut IoUring, e: &squeue::Entry) -> io::Result<()> {
    let mut retries = 0;
    loop {
        // SAFETY: every pointer in `e` (msghdr, buffers) stays valid until its
        // completion, as the callers guarantee.
        if unsafe { ring.submission().push(e) }.is_ok() {
            return Ok(());
        }
        match ring.submit() {
            Ok(_) => {}
            // The kernel short of memory for requests, or a signal: tried
            // again for up to a tenth of a second before the shard gives up.
            Err(err) if transient(&err) && retries < 100 => {
                retries += 1;
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(err) => return Err(err),
        }
    }
}

/// Errors of `io_uring_enter` that pass: a signal, or the kernel short of
/// memory for the moment.
fn transient(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EINTR) | Some(libc::EAGAIN) | Some(libc::ENOMEM)
    )
}

fn queue_send(
    ring: &mut IoUring,
    slots: &mut SendSlots,
    fd: i32,
    bid: u16,
    frame: &mut [u8],
    ifindex: u32,
) -> io::Result<()> {
    let i = usize::from(bid);
    let sll = &mut slots.addrs[i];
    sll.sll_family = super::sys::AF_PACKET_FAMILY;
    sll.sll_ifindex = i32::try_from(ifindex).unwrap_or(0);
    slots.iovs[i] = libc::iovec {
        iov_base: frame.as_mut_ptr().cast(),
        iov_len: frame.len(),
    };
    let m = &mut slots.msgs[i];
    m.msg_name = (sll as *mut libc::sockaddr_ll).cast();
    m.msg_namelen = u32::try_from(size_of::<libc::sockaddr_ll>()).unwrap_or(0);
    m.msg_iov = &mut slots.iovs[i];
    m.msg_iovlen = 1;
    let e = opcode::SendMsg::new(types::Fd(fd), m)
        .build()
        .user_data(u64::from(bid));
    push(ring, &e)
}

/// Re-programs the fanout group when the set of IPv4 VIPs changed; false
/// when the kernel refused the program (to be tried again).
fn update_fanout(
    fd: i32,
    rules: &RuleTable,
    current: &mut Option<Vec<std::net::Ipv4Addr>>,
) -> bool {
    let mut vips: Vec<std::net::Ipv4Addr> = rules
        .vips
        .iter()
        .filter_map(|ip| match ip {
            std::net::IpAddr::V4(v4) => Some(*v4),
            std::net::IpAddr::V6(_) => None,
        })
        .collect();
    vips.sort_unstable();
    if current.as_ref() == Some(&vips) {
        return true;
    }
    match super::fanout::program(&vips) {
        Some(prog) => {
            if let Err(e) = super::sys::set_fanout_program(fd, &prog) {
                tracing::error!("cannot program the shard fanout: {e}");
                return false;
            }
        }
        None => tracing::error!(
            "{} VIPs exceed the fanout program's limit of {}; new connections may land on the wrong shard",
            vips.len(),
            super::fanout::MAX_VIPS
        ),
    }
    *current = Some(vips);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every buffer count the config accepts gives a ring the kernel
    /// makes (32,768 buffers once asked for queues beyond its limits).
    #[test]
    fn rings_for_every_buffer_count() {
        for shift in 3..=15 {
            let buffers = 1u16 << shift;
            if let Err(e) = new_ring(buffers) {
                panic!("{buffers} buffers: {e}");
            }
        }
    }
}
