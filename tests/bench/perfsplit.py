#!/usr/bin/env python3
"""Splits perf samples of lvsd's shard threads (or any thread-name prefix) by
what the thread was doing, from each sample's call chain.

    perf script -i perf.data -F comm,tid,ip,sym,dso | perfsplit.py [PREFIX]

PREFIX defaults to "lvsd-shard". The categories (first that matches, the
chain read from the root towards the leaf where it says so):

- user: lvsd's own code (the leaf is in user space)
- send: delivery downstream, in softirq run inside the send (veth, bridge,
  the real server's stack): work the kernel would do for any director
- send: packet socket (packet_sendmsg down to the veth, without the above)
- send: AF_XDP (xsk_sendmsg: skb alloc, copy, veth xmit, without the above)
- receive: io_uring receive completions (copying frames into ring buffers)
- wait: sleeping in io_uring_enter, context switches
- other kernel (the leaf function named)

Prints each category's share of the threads' samples and of all samples.
Standard library only.
"""
import sys
from collections import Counter


def classify(frames):
    """frames: [(sym, dso)] leaf first."""
    if not frames:
        return "unknown"
    leaf_sym, leaf_dso = frames[0]
    if "kernel" not in leaf_dso:
        return "user: lvsd code" if "lvsd" in leaf_dso else "user: libc and other libraries"
    syms = [s for s, _ in frames]
    names = set(syms)
    if names & {"io_cqring_wait", "schedule", "__schedule", "schedule_hrtimeout_range_clock"} and not names & {
        "packet_sendmsg", "io_recvmsg", "io_recvmsg_multishot"}:
        return "wait: sleeping in io_uring_enter / context switch"
    # Downstream softirq nested under the send.
    senders = {"packet_sendmsg", "io_sendmsg", "packet_snd", "xsk_sendmsg", "__xsk_generic_xmit"}
    if names & senders and names & {"net_rx_action", "process_backlog"}:
        return "send: downstream delivery in softirq (veth, bridge, real server)"
    if names & {"xsk_sendmsg", "__xsk_generic_xmit"}:
        return "send: AF_XDP (skb alloc, copy, veth xmit)"
    if names & {"packet_sendmsg", "io_sendmsg", "packet_snd", "packet_direct_xmit", "__dev_direct_xmit"}:
        return "send: packet socket (skb alloc, copy, veth xmit)"
    if names & {"io_recvmsg", "io_recvmsg_multishot", "packet_recvmsg", "io_recv_finish"}:
        return "receive: io_uring RECVMSG completions (copy to ring buffers)"
    if names & {"net_rx_action", "handle_softirqs", "do_softirq"}:
        return "softirq (other)"
    if names & {"io_submit_sqes", "io_uring_enter", "__do_sys_io_uring_enter", "io_cqring_wait"}:
        return "io_uring (other)"
    return "other kernel: " + leaf_sym


def main():
    prefix = sys.argv[1] if len(sys.argv) > 1 else "lvsd-shard"
    total = 0
    counts = Counter()
    comm, frames = None, []

    def flush():
        nonlocal total
        if comm is None:
            return
        total += 1
        if comm.startswith(prefix):
            counts[classify(frames)] += 1

    for line in sys.stdin:
        if not line.strip():
            flush()
            comm, frames = None, []
            continue
        if not line[0].isspace():
            flush()
            comm, frames = line.split()[0], []
            continue
        parts = line.split(None, 1)
        if len(parts) < 2:
            continue
        rest = parts[1].rstrip()
        dso = ""
        if rest.endswith(")") and "(" in rest:
            rest, dso = rest.rsplit("(", 1)
            dso = dso[:-1]
        sym = rest.strip().split("+0x")[0]
        frames.append((sym, dso))
    flush()
    mine = sum(counts.values())
    print("%d samples of %s* threads, %d samples in all" % (mine, prefix, total))
    for cat, n in counts.most_common():
        print("  %5.1f%% of %s* (%4.1f%% of all)  %s" % (100.0 * n / max(mine, 1), prefix, 100.0 * n / max(total, 1), cat))


if __name__ == "__main__":
    main()
