/*
 * benchtool: the load generators and sinks of tests/bench.sh.
 *
 *   benchtool blast IFNAME SRC_MAC DST_MAC SRC_IP DST_IPS DPORT FLOWS COUNT SECONDS RATE THREADS
 *       Sends COUNT raw 60-byte Ethernet/IPv4/UDP frames (at most SECONDS
 *       long, at RATE frames/s, 0 = as fast as it can) out of IFNAME through
 *       an AF_PACKET socket (PACKET_QDISC_BYPASS, sendmmsg, 64 frames per
 *       call), from SRC_IP to the comma-separated DST_IPS (one per flow, in
 *       turn), source ports 1024..1024+FLOWS-1. The 18-byte payload holds a
 *       magic and a sequence number (0, 1, 2, ...). THREADS threads share the
 *       work. Prints "sent N seconds S".
 *
 *   benchtool sink ADDR PORT MAXSEQ SECONDS IDLE_MS
 *       Receives on a UDP socket for at most SECONDS (ending IDLE_MS after
 *       the last datagram once one arrived), counting blast datagrams by
 *       sequence number (each seen at most once, below MAXSEQ). Prints
 *       "received N unique U dup D". Ends early on SIGTERM/SIGINT.
 *
 *   benchtool httpd ADDR PORT SECONDS
 *       A single-threaded epoll HTTP server: every request gets a 3-byte
 *       200 response with "Connection: close"; the server then waits for the
 *       client to close first (so TIME_WAIT stays on the client, whose
 *       tcp_tw_reuse handles it, and no server-side TIME_WAIT from one peer's
 *       run can refuse the next peer's SYNs). Prints "ready" once listening;
 *       exits after SECONDS or on SIGTERM.
 *
 *   benchtool lat ADDR PORT RATE COUNT SECONDS
 *       Latency: COUNT sequential HTTP/1.1 GETs, each on a new connection
 *       (Connection: close), started at RATE per second (at most SECONDS in
 *       all, 1 s timeout each). Prints "ok N err E p50_us A p90_us B p99_us C
 *       max_us D" (connect to the last byte of the response, by its
 *       Content-Length; the client then closes).
 *
 * Everything it does is bounded in count and in time. No code here is
 * copied from elsewhere.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/if_packet.h>
#include <net/ethernet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define FRAME_LEN 60
#define BATCH 64
#define MAGIC 0x4c56 /* "LV" */

static volatile sig_atomic_t stop_flag;
static void on_signal(int s) { (void)s; stop_flag = 1; }
static void catch_signals(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void die(const char *what) {
    perror(what);
    exit(1);
}

static int parse_mac(const char *s, uint8_t mac[6]) {
    unsigned v[6];
    if (sscanf(s, "%x:%x:%x:%x:%x:%x", &v[0], &v[1], &v[2], &v[3], &v[4], &v[5]) != 6)
        return -1;
    for (int i = 0; i < 6; i++) mac[i] = (uint8_t)v[i];
    return 0;
}

static uint32_t sum16(const uint8_t *p, size_t n) {
    uint32_t s = 0;
    for (size_t i = 0; i + 1 < n; i += 2) s += (uint32_t)(p[i] << 8 | p[i + 1]);
    if (n & 1) s += (uint32_t)p[n - 1] << 8;
    return s;
}
static uint16_t fold(uint32_t s) {
    while (s >> 16) s = (s & 0xffff) + (s >> 16);
    return (uint16_t)s;
}

/* ---------------------------------------------------------------- blast */

struct blast {
    int ifindex;
    uint8_t src_mac[6], dst_mac[6];
    uint32_t src_ip;           /* network order */
    uint32_t dst_ips[64];      /* network order */
    int n_dst;
    uint16_t dport;
    uint32_t flows;
    uint64_t count;            /* frames for this thread */
    double seconds, rate;      /* rate per thread */
    uint64_t seq0, seq_step;   /* this thread's sequence numbers */
    uint64_t sent;
};

static void build_frame(uint8_t *f, const struct blast *b, uint32_t flow, uint64_t seq) {
    memcpy(f, b->dst_mac, 6);
    memcpy(f + 6, b->src_mac, 6);
    f[12] = 0x08; f[13] = 0x00;
    uint8_t *ip = f + 14;
    uint32_t dst = b->dst_ips[flow % (uint32_t)b->n_dst];
    ip[0] = 0x45; ip[1] = 0;
    ip[2] = 0; ip[3] = 46;                 /* 20 + 8 + 18 */
    ip[4] = (uint8_t)(seq >> 8); ip[5] = (uint8_t)seq;
    ip[6] = 0x40; ip[7] = 0;               /* DF */
    ip[8] = 64; ip[9] = 17;
    ip[10] = 0; ip[11] = 0;
    memcpy(ip + 12, &b->src_ip, 4);
    memcpy(ip + 16, &dst, 4);
    uint16_t c = (uint16_t)~fold(sum16(ip, 20));
    ip[10] = (uint8_t)(c >> 8); ip[11] = (uint8_t)c;
    uint8_t *udp = ip + 20;
    uint16_t sport = (uint16_t)(1024 + flow);
    udp[0] = (uint8_t)(sport >> 8); udp[1] = (uint8_t)sport;
    udp[2] = (uint8_t)(b->dport >> 8); udp[3] = (uint8_t)b->dport;
    udp[4] = 0; udp[5] = 26;
    udp[6] = 0; udp[7] = 0;
    uint8_t *pl = udp + 8;
    pl[0] = MAGIC >> 8; pl[1] = MAGIC & 0xff;
    for (int i = 0; i < 8; i++) pl[2 + i] = (uint8_t)(seq >> (56 - 8 * i));
    memset(pl + 10, 0, 8);
    /* UDP checksum over the pseudo-header and the datagram. */
    uint32_t s = sum16(ip + 12, 8) + 17 + 26 + sum16(udp, 26);
    c = (uint16_t)~fold(s);
    if (c == 0) c = 0xffff;
    udp[6] = (uint8_t)(c >> 8); udp[7] = (uint8_t)c;
}

static void *blast_thread(void *arg) {
    struct blast *b = arg;
    int fd = socket(AF_PACKET, SOCK_RAW, 0); /* protocol 0: send only */
    if (fd < 0) die("socket(AF_PACKET)");
    int one = 1;
    if (setsockopt(fd, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one) < 0)
        die("PACKET_QDISC_BYPASS");
    int sndbuf = 4 << 20;
    setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &sndbuf, sizeof sndbuf);
    struct sockaddr_ll sll;
    memset(&sll, 0, sizeof sll);
    sll.sll_family = AF_PACKET;
    sll.sll_ifindex = b->ifindex;
    sll.sll_halen = 6;
    memcpy(sll.sll_addr, b->dst_mac, 6);

    static __thread uint8_t frames[BATCH][FRAME_LEN];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = frames[i];
        iov[i].iov_len = FRAME_LEN;
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
        msgs[i].msg_hdr.msg_name = &sll;
        msgs[i].msg_hdr.msg_namelen = sizeof sll;
    }
    double t0 = now_s(), deadline = t0 + b->seconds;
    uint64_t i = 0;
    uint32_t flow = (uint32_t)(b->seq0 % b->flows);
    while (i < b->count && !stop_flag) {
        double t = now_s();
        if (t >= deadline) break;
        if (b->rate > 0) {
            double due = t0 + (double)i / b->rate;
            if (due > t) {
                double d = due - t;
                struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
                nanosleep(&ts, NULL);
                continue;
            }
        }
        unsigned n = BATCH;
        if (b->count - i < n) n = (unsigned)(b->count - i);
        if (b->rate > 0 && b->rate < 20000 && n > 8) n = 8; /* smoother at low rates */
        for (unsigned k = 0; k < n; k++) {
            build_frame(frames[k], b, flow, b->seq0 + (i + k) * b->seq_step);
            if (++flow == b->flows) flow = 0;
        }
        int r = sendmmsg(fd, msgs, n, 0);
        if (r < 0) {
            if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) {
                /* Rewind the flows of the frames not sent. */
                flow = (uint32_t)((flow + b->flows * 64 - n) % b->flows);
                continue;
            }
            die("sendmmsg");
        }
        if ((unsigned)r < n) flow = (uint32_t)((flow + b->flows * 64 - (n - (unsigned)r)) % b->flows);
        i += (uint64_t)r;
    }
    b->sent = i;
    close(fd);
    return NULL;
}

static int cmd_blast(int argc, char **argv) {
    if (argc != 12) {
        fprintf(stderr, "usage: blast IFNAME SRC_MAC DST_MAC SRC_IP DST_IPS DPORT FLOWS COUNT SECONDS RATE THREADS\n");
        return 2;
    }
    struct blast proto;
    memset(&proto, 0, sizeof proto);
    proto.ifindex = (int)if_nametoindex(argv[1]);
    if (!proto.ifindex) die(argv[1]);
    if (parse_mac(argv[2], proto.src_mac) || parse_mac(argv[3], proto.dst_mac)) {
        fprintf(stderr, "bad MAC\n");
        return 2;
    }
    if (inet_pton(AF_INET, argv[4], &proto.src_ip) != 1) { fprintf(stderr, "bad SRC_IP\n"); return 2; }
    char *ips = strdup(argv[5]), *save = NULL;
    for (char *t = strtok_r(ips, ",", &save); t && proto.n_dst < 64; t = strtok_r(NULL, ",", &save)) {
        if (inet_pton(AF_INET, t, &proto.dst_ips[proto.n_dst++]) != 1) { fprintf(stderr, "bad DST_IP %s\n", t); return 2; }
    }
    free(ips);
    if (proto.n_dst == 0) { fprintf(stderr, "no DST_IPS\n"); return 2; }
    proto.dport = (uint16_t)atoi(argv[6]);
    proto.flows = (uint32_t)strtoul(argv[7], NULL, 10);
    uint64_t count = strtoull(argv[8], NULL, 10);
    proto.seconds = atof(argv[9]);
    double rate = atof(argv[10]);
    int threads = atoi(argv[11]);
    if (proto.flows < 1 || proto.flows > 60000 || threads < 1 || threads > 16 || proto.seconds <= 0 || proto.seconds > 600) {
        fprintf(stderr, "flows 1..60000, threads 1..16, seconds (0, 600]\n");
        return 2;
    }
    catch_signals();
    pthread_t th[16];
    struct blast b[16];
    double t0 = now_s();
    for (int t = 0; t < threads; t++) {
        b[t] = proto;
        b[t].count = count / (uint64_t)threads + ((uint64_t)t < count % (uint64_t)threads);
        b[t].rate = rate / threads;
        b[t].seq0 = (uint64_t)t;
        b[t].seq_step = (uint64_t)threads;
        pthread_create(&th[t], NULL, blast_thread, &b[t]);
    }
    uint64_t sent = 0;
    for (int t = 0; t < threads; t++) {
        pthread_join(th[t], NULL);
        sent += b[t].sent;
    }
    printf("sent %llu seconds %.3f\n", (unsigned long long)sent, now_s() - t0);
    return 0;
}

/* ----------------------------------------------------------------- sink */

static int cmd_sink(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: sink ADDR PORT MAXSEQ SECONDS IDLE_MS\n");
        return 2;
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1) { fprintf(stderr, "bad ADDR\n"); return 2; }
    uint64_t maxseq = strtoull(argv[3], NULL, 10);
    double seconds = atof(argv[4]);
    int idle_ms = atoi(argv[5]);
    if (maxseq > (1ull << 33) || seconds <= 0 || seconds > 3600) { fprintf(stderr, "MAXSEQ <= 2^33, SECONDS (0, 3600]\n"); return 2; }
    uint8_t *seen = calloc(maxseq / 8 + 1, 1);
    if (!seen) die("calloc");
    int fd = socket(AF_INET, SOCK_DGRAM, 0);
    if (fd < 0) die("socket");
    int rcv = 16 << 20;
    setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &rcv, sizeof rcv);
    if (bind(fd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    catch_signals();
    printf("ready\n");
    fflush(stdout);
    static uint8_t bufs[BATCH][64];
    struct mmsghdr msgs[BATCH];
    struct iovec iov[BATCH];
    memset(msgs, 0, sizeof msgs);
    for (int i = 0; i < BATCH; i++) {
        iov[i].iov_base = bufs[i];
        iov[i].iov_len = sizeof bufs[i];
        msgs[i].msg_hdr.msg_iov = &iov[i];
        msgs[i].msg_hdr.msg_iovlen = 1;
    }
    uint64_t received = 0, unique = 0, dup = 0, other = 0;
    double deadline = now_s() + seconds, last = 0;
    while (!stop_flag) {
        double t = now_s();
        if (t >= deadline) break;
        if (received > 0 && (t - last) * 1000 >= idle_ms) break;
        struct pollfd p = {fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        int n = recvmmsg(fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n <= 0) continue;
        last = now_s();
        for (int k = 0; k < n; k++) {
            received++;
            const uint8_t *pl = bufs[k];
            if (msgs[k].msg_len < 10 || (pl[0] << 8 | pl[1]) != MAGIC) { other++; continue; }
            uint64_t seq = 0;
            for (int i = 0; i < 8; i++) seq = seq << 8 | pl[2 + i];
            if (seq >= maxseq) { other++; continue; }
            uint8_t bit = (uint8_t)(1u << (seq & 7));
            if (seen[seq >> 3] & bit) dup++;
            else { seen[seq >> 3] |= bit; unique++; }
        }
    }
    printf("received %llu unique %llu dup %llu other %llu\n", (unsigned long long)received,
           (unsigned long long)unique, (unsigned long long)dup, (unsigned long long)other);
    return 0;
}

/* ---------------------------------------------------------------- httpd */

static const char RESPONSE[] =
    "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n";

static int cmd_httpd(int argc, char **argv) {
    if (argc != 4) {
        fprintf(stderr, "usage: httpd ADDR PORT SECONDS\n");
        return 2;
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1) { fprintf(stderr, "bad ADDR\n"); return 2; }
    double seconds = atof(argv[3]);
    if (seconds <= 0 || seconds > 7200) { fprintf(stderr, "SECONDS (0, 7200]\n"); return 2; }
    int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (lfd < 0) die("socket");
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(lfd, (struct sockaddr *)&a, sizeof a) < 0) die("bind");
    if (listen(lfd, 4096) < 0) die("listen");
    int ep = epoll_create1(0);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = lfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev);
    catch_signals();
    printf("ready\n");
    fflush(stdout);
    double deadline = now_s() + seconds;
    struct epoll_event evs[256];
    char buf[4096];
    unsigned long long served = 0;
    while (!stop_flag && now_s() < deadline) {
        int n = epoll_wait(ep, evs, 256, 100);
        for (int i = 0; i < n; i++) {
            int fd = evs[i].data.fd;
            if (fd == lfd) {
                for (int k = 0; k < 256; k++) {
                    int c = accept4(lfd, NULL, NULL, SOCK_NONBLOCK);
                    if (c < 0) break;
                    struct epoll_event cev = {.events = EPOLLIN | EPOLLRDHUP, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &cev);
                }
                continue;
            }
            /* A request that fits one read (wrk's and lat's do): answer, then
             * wait for the client's close (read 0) or an error. */
            ssize_t r = read(fd, buf, sizeof buf);
            if (r > 0 && memmem(buf, (size_t)r, "\r\n\r\n", 4)) {
                ssize_t w = write(fd, RESPONSE, sizeof RESPONSE - 1);
                (void)w;
                served++;
                continue;
            } else if (r < 0 && errno == EAGAIN) {
                continue;
            } else if (r > 0) {
                continue; /* partial head: wait for the rest */
            }
            close(fd); /* EOF or error; epoll forgets a closed descriptor */
        }
    }
    fprintf(stderr, "httpd: served %llu\n", served);
    return 0;
}

/* ------------------------------------------------------------------ lat */

static int cmp_u32(const void *x, const void *y) {
    uint32_t a = *(const uint32_t *)x, b = *(const uint32_t *)y;
    return a < b ? -1 : a > b;
}

/* One request on a new connection; returns microseconds or -1. */
static long one_request(const struct sockaddr_in *a, const char *req, size_t req_len) {
    double t0 = now_s(), deadline = t0 + 1.0;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) return -1;
    long result = -1;
    if (connect(fd, (const struct sockaddr *)a, sizeof *a) < 0 && errno != EINPROGRESS) goto out;
    struct pollfd p = {fd, POLLOUT, 0};
    if (poll(&p, 1, 1000) != 1 || (p.revents & (POLLERR | POLLHUP))) goto out;
    if (write(fd, req, req_len) != (ssize_t)req_len) goto out;
    char buf[1024];
    size_t got = 0;
    for (;;) {
        int left = (int)((deadline - now_s()) * 1000);
        if (left <= 0) goto out;
        p.events = POLLIN;
        if (poll(&p, 1, left) != 1) goto out;
        ssize_t r = read(fd, buf + got, sizeof buf - 1 - got);
        if (r == 0) goto out; /* closed before the whole response */
        if (r < 0) {
            if (errno == EAGAIN) continue;
            goto out;
        }
        got += (size_t)r;
        buf[got] = 0;
        char *end = strstr(buf, "\r\n\r\n");
        char *cl = strcasestr(buf, "\r\nContent-Length:");
        if (end && cl && cl < end) {
            size_t body = (size_t)strtoul(cl + 17, NULL, 10);
            if (got >= (size_t)(end + 4 - buf) + body) break;
        }
        if (got >= sizeof buf - 1) goto out;
    }
    if (memcmp(buf, "HTTP/1.1 200", 12) == 0)
        result = (long)((now_s() - t0) * 1e6);
out:
    close(fd);
    return result;
}

static int cmd_lat(int argc, char **argv) {
    if (argc != 6) {
        fprintf(stderr, "usage: lat ADDR PORT RATE COUNT SECONDS\n");
        return 2;
    }
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)atoi(argv[2]));
    if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1) { fprintf(stderr, "bad ADDR\n"); return 2; }
    double rate = atof(argv[3]);
    long count = atol(argv[4]);
    double seconds = atof(argv[5]);
    if (rate <= 0 || count < 1 || count > 10000000 || seconds <= 0 || seconds > 600) {
        fprintf(stderr, "RATE > 0, COUNT 1..1e7, SECONDS (0, 600]\n");
        return 2;
    }
    catch_signals();
    char req[256];
    int req_len = snprintf(req, sizeof req,
                           "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", argv[1]);
    uint32_t *us = calloc((size_t)count, sizeof *us);
    long ok = 0, err = 0;
    double t0 = now_s(), deadline = t0 + seconds;
    for (long i = 0; i < count && !stop_flag; i++) {
        double due = t0 + (double)i / rate, t = now_s();
        if (t >= deadline) break;
        if (due > t) {
            double d = due - t;
            struct timespec ts = {(time_t)d, (long)((d - (double)(time_t)d) * 1e9)};
            nanosleep(&ts, NULL);
        }
        long r = one_request(&a, req, (size_t)req_len);
        if (r < 0) err++;
        else us[ok++] = (uint32_t)r;
    }
    qsort(us, (size_t)ok, sizeof *us, cmp_u32);
#define PCT(p) (ok ? us[(size_t)((double)(ok - 1) * (p))] : 0)
    printf("ok %ld err %ld p50_us %u p90_us %u p99_us %u max_us %u\n", ok, err, PCT(0.50),
           PCT(0.90), PCT(0.99), ok ? us[ok - 1] : 0);
    return 0;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (argc >= 2 && strcmp(argv[1], "blast") == 0) return cmd_blast(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "sink") == 0) return cmd_sink(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "httpd") == 0) return cmd_httpd(argc - 1, argv + 1);
    if (argc >= 2 && strcmp(argv[1], "lat") == 0) return cmd_lat(argc - 1, argv + 1);
    fprintf(stderr, "usage: benchtool blast|sink|httpd|lat ... (see the source)\n");
    return 2;
}
