/*
 * udpload.c - UDP echo load generator for the berth benchmarks.
 *
 * One thread, one epoll loop, S senders (-S, default 16): each is its own
 * UDP socket connect()ed to the server, so the kernel delivers it only
 * datagrams from the server's address. Each sender keeps at most W
 * datagrams in flight (-W, default 8); a datagram whose echo has not come
 * back after --loss-timeout seconds (default 1) is counted lost and its
 * place in the window is freed, so loss never stalls a sender.
 *
 * Every datagram is S bytes (-s, default 64, at least 16) and carries a
 * header (magic, sender number, window slot, sequence number) followed by
 * pseudo-random bytes. Every echo is checked: its length, its header, that
 * it came back to the sender that sent it (else "misrouted"), that it
 * answers a datagram still in flight (an echo after its loss timeout is
 * "late", a duplicate likewise), and all its bytes. sendmmsg/recvmmsg
 * keep the generator's own syscall cost low.
 *
 * Figures, over the measured window (after --warmup): echoes per second
 * (dgrams_per_s, one direction's payload as mb_per_s), latency from send
 * to echo (p50/p99/p99.9 µs), and loss: datagrams sent in the window that
 * never came back (timed out, or still missing --loss-timeout after the
 * window ends), as a count and a fraction of those sent. Loss is not an
 * error (UDP may drop); corrupt or misrouted echoes and socket errors are.
 *
 * With --cpu-pid PID, the CPU seconds of process PID over the measured
 * window are reported as srv_cpu_s.
 *
 * Output: one line on stdout, e.g.
 *   dgrams_per_s=80123 mb_per_s=5.128 loss=0 loss_frac=0.000000 p50_us=… errors=0 …
 * Exit status: 0 = no errors and at least one echo measured, 1 = otherwise,
 * 2 = usage error.
 *
 * Build: cc -O2 -Wall -Wextra -o udpload udpload.c
 */
#include "load_util.h"

#include <getopt.h>
#include <sys/epoll.h>

#define MAGIC 0xBE27D6A1u
#define BATCH 64
#define MAX_EVENTS 64
#define PATTERN_SIZE (64 * 1024 + 256)

struct dgram_head {
    uint32_t magic;
    uint16_t sender;
    uint16_t slot;
    uint64_t seq;
};

/* ---------------------------------------------------------------- options */

struct options {
    const char *host;
    const char *port;
    long senders;
    long size;
    long window;
    double duration;
    double warmup;
    double loss_timeout;
    long cpu_pid;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: udpload -p PORT [options]\n"
        "  -H, --host HOST          server address (default 127.0.0.1)\n"
        "  -p, --port PORT          server port (required)\n"
        "  -S, --senders N          sender sockets (default 16)\n"
        "  -s, --size S             datagram size in bytes, 16..65507 (default 64)\n"
        "  -W, --window W           datagrams in flight per sender (default 8)\n"
        "  -t, --duration SEC       measured time (default 5)\n"
        "  -w, --warmup SEC         unmeasured time before it (default 0)\n"
        "      --loss-timeout SEC   an echo later than this is lost (default 1)\n"
        "      --cpu-pid PID        report the CPU seconds of process PID (the server)\n"
        "  -h, --help\n");
}

static bool parse_option(int opt, const char *arg, struct options *o)
{
    switch (opt) {
    case 'H': o->host = arg; return true;
    case 'p': o->port = arg; return true;
    case 'S': return parse_long(arg, 1, 4096, &o->senders);
    case 's': return parse_long(arg, (long)sizeof(struct dgram_head), 65507, &o->size);
    case 'W': return parse_long(arg, 1, 4096, &o->window);
    case 't': return parse_secs(arg, 0.001, 3600, &o->duration);
    case 'w': return parse_secs(arg, 0, 600, &o->warmup);
    case 'L': return parse_secs(arg, 0.001, 60, &o->loss_timeout);
    case 'P': return parse_long(arg, 1, 1L << 30, &o->cpu_pid);
    default: return false;
    }
}

static void parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"host", required_argument, 0, 'H'},     {"port", required_argument, 0, 'p'},
        {"senders", required_argument, 0, 'S'},  {"size", required_argument, 0, 's'},
        {"window", required_argument, 0, 'W'},   {"duration", required_argument, 0, 't'},
        {"warmup", required_argument, 0, 'w'},   {"loss-timeout", required_argument, 0, 'L'},
        {"cpu-pid", required_argument, 0, 'P'},  {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *o = (struct options){.host = "127.0.0.1", .senders = 16, .size = 64, .window = 8,
                          .duration = 5, .loss_timeout = 1};
    int opt;
    while ((opt = getopt_long(argc, argv, "H:p:S:s:W:t:w:h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            exit(0);
        }
        if (!parse_option(opt, optarg, o)) {
            if (opt != '?')
                fprintf(stderr, "udpload: bad value for option: %s\n", optarg);
            usage(stderr);
            exit(2);
        }
    }
    if (!o->port || optind != argc) {
        usage(stderr);
        exit(2);
    }
}

/* ---------------------------------------------------------------- senders */

struct slot {
    uint64_t seq;
    uint64_t t0;
    bool busy;
};

struct sender {
    int fd;
    uint16_t id;
    uint64_t next_seq;
    struct slot *slots;   /* window entries */
    unsigned char *bufs;  /* window × size: each slot's datagram as sent */
    uint16_t *free_slots; /* stack of free slot numbers */
    unsigned nfree;
};

struct stats {
    uint64_t measured;  /* correct echoes completed in the measured window */
    uint64_t sent;      /* datagrams sent in the measured window */
    uint64_t lost;      /* of those, never echoed in time */
    uint64_t late;      /* echoes of datagrams already counted lost, duplicates */
    uint64_t corrupt;   /* wrong length, header or bytes */
    uint64_t misrouted; /* echoed to another sender */
    uint64_t sock_errors;
};

static struct options g_opt;
static struct stats g_st;
static struct hist g_hist;
static size_t g_size;
static unsigned char g_pattern[PATTERN_SIZE];
static uint64_t g_measure_from, g_measure_end;
static bool g_draining;

static uint64_t total_errors(void)
{
    return g_st.corrupt + g_st.misrouted + g_st.sock_errors;
}

static void report_once(const char *what, int err)
{
    static bool reported;
    if (!reported)
        fprintf(stderr, "udpload: %s: %s\n", what, strerror(err));
    reported = true;
}

static unsigned char *slot_buf(struct sender *s, unsigned slot)
{
    return s->bufs + (size_t)slot * g_size;
}

static bool in_window(uint64_t t)
{
    return t >= g_measure_from && t < g_measure_end;
}

static void slot_release(struct sender *s, unsigned slot)
{
    s->slots[slot].busy = false;
    s->free_slots[s->nfree++] = (uint16_t)slot;
}

/* fill the window: send a datagram for every free slot */
static void sender_fill(struct sender *s)
{
    while (!g_draining && s->nfree > 0) {
        struct mmsghdr msgs[BATCH];
        struct iovec iov[BATCH];
        unsigned slots[BATCH], k = 0;
        uint64_t t = now_ns();
        while (k < BATCH && s->nfree > 0) {
            unsigned slot = s->free_slots[--s->nfree];
            unsigned char *p = slot_buf(s, slot);
            struct dgram_head h = {.magic = MAGIC, .sender = s->id, .slot = (uint16_t)slot,
                                   .seq = s->next_seq++};
            memcpy(p, &h, sizeof h);
            memcpy(p + sizeof h, g_pattern + h.seq % 256, g_size - sizeof h);
            s->slots[slot] = (struct slot){.seq = h.seq, .t0 = t, .busy = true};
            iov[k] = (struct iovec){.iov_base = p, .iov_len = g_size};
            msgs[k] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[k], .msg_iovlen = 1}};
            slots[k++] = slot;
        }
        int r = sendmmsg(s->fd, msgs, k, MSG_DONTWAIT);
        unsigned sent = r > 0 ? (unsigned)r : 0;
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
            g_st.sock_errors++;
            report_once("send", errno);
        }
        if (in_window(t))
            g_st.sent += sent;
        for (unsigned i = sent; i < k; i++) /* not sent: back to the free stack */
            slot_release(s, slots[i]);
        if (sent < k)
            return; /* retried on the next loop turn */
    }
}

/* check one echo that arrived on sender s at time t */
static void sender_echo(struct sender *s, const unsigned char *p, size_t len, int flags,
                        uint64_t t)
{
    struct dgram_head h;
    if (len != g_size || (flags & MSG_TRUNC) || len < sizeof h) {
        g_st.corrupt++;
        return;
    }
    memcpy(&h, p, sizeof h);
    if (h.magic != MAGIC || h.slot >= (unsigned)g_opt.window) {
        g_st.corrupt++;
        return;
    }
    if (h.sender != s->id) {
        g_st.misrouted++;
        return;
    }
    struct slot *sl = &s->slots[h.slot];
    if (!sl->busy || sl->seq != h.seq) {
        if (h.seq < s->next_seq)
            g_st.late++;
        else
            g_st.corrupt++;
        return;
    }
    if (memcmp(p, slot_buf(s, h.slot), g_size) != 0)
        g_st.corrupt++;
    else if (in_window(t)) {
        g_st.measured++;
        hist_add(&g_hist, t - sl->t0);
    }
    slot_release(s, h.slot);
}

static void sender_readable(struct sender *s)
{
    static unsigned char bufs[BATCH][65536];
    for (;;) {
        struct mmsghdr msgs[BATCH];
        struct iovec iov[BATCH];
        for (unsigned i = 0; i < BATCH; i++) {
            iov[i] = (struct iovec){.iov_base = bufs[i], .iov_len = g_size + 1};
            msgs[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
        }
        int n = recvmmsg(s->fd, msgs, BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) {
                g_st.sock_errors++; /* e.g. ECONNREFUSED: nothing listens */
                report_once("recv", errno);
            }
            return;
        }
        uint64_t t = now_ns();
        for (int i = 0; i < n; i++)
            sender_echo(s, bufs[i], msgs[i].msg_len, msgs[i].msg_hdr.msg_flags, t);
        if (n < BATCH)
            return;
    }
}

/* datagrams in flight for longer than the loss timeout are lost */
static void sender_expire(struct sender *s, uint64_t t)
{
    uint64_t limit = secs_to_ns(g_opt.loss_timeout);
    for (unsigned i = 0; i < (unsigned)g_opt.window; i++) {
        struct slot *sl = &s->slots[i];
        if (sl->busy && t - sl->t0 >= limit) {
            if (in_window(sl->t0))
                g_st.lost++;
            slot_release(s, i);
        }
    }
}

static long sender_busy(const struct sender *s)
{
    return g_opt.window - (long)s->nfree;
}

static struct sender *senders_open(const struct addrinfo *ai, int ep)
{
    struct sender *ss = calloc((size_t)g_opt.senders, sizeof *ss);
    if (!ss) {
        perror("udpload: calloc");
        exit(1);
    }
    for (long i = 0; i < g_opt.senders; i++) {
        struct sender *s = &ss[i];
        s->id = (uint16_t)i;
        s->slots = calloc((size_t)g_opt.window, sizeof *s->slots);
        s->bufs = malloc((size_t)g_opt.window * g_size);
        s->free_slots = malloc((size_t)g_opt.window * sizeof *s->free_slots);
        s->fd = socket(ai->ai_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (!s->slots || !s->bufs || !s->free_slots || s->fd < 0 ||
            connect(s->fd, ai->ai_addr, ai->ai_addrlen) < 0) {
            perror("udpload: sender setup");
            exit(1);
        }
        for (long k = g_opt.window - 1; k >= 0; k--)
            s->free_slots[s->nfree++] = (uint16_t)k;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = s};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, s->fd, &ev) < 0) {
            perror("udpload: epoll_ctl");
            exit(1);
        }
    }
    return ss;
}

static void senders_close(struct sender *ss)
{
    for (long i = 0; i < g_opt.senders; i++) {
        close(ss[i].fd);
        free(ss[i].slots);
        free(ss[i].bufs);
        free(ss[i].free_slots);
    }
    free(ss);
}

/* one loop turn: wait for echoes, check them, expire, refill */
static void turn(int ep, struct sender *ss, uint64_t deadline, uint64_t *next_expire)
{
    struct epoll_event evs[MAX_EVENTS];
    uint64_t soon = now_ns() + 10000000u; /* refill unsent windows within 10 ms */
    int n = epoll_wait(ep, evs, MAX_EVENTS, wait_ms(deadline < soon ? deadline : soon));
    if (n < 0 && errno != EINTR) {
        perror("udpload: epoll_wait");
        exit(1);
    }
    for (int i = 0; i < n; i++)
        sender_readable(evs[i].data.ptr);
    uint64_t t = now_ns();
    bool expire = t >= *next_expire;
    if (expire)
        *next_expire = t + 10000000u;
    for (long i = 0; i < g_opt.senders; i++) {
        if (expire)
            sender_expire(&ss[i], t);
        sender_fill(&ss[i]);
    }
}

static int run(const struct addrinfo *ai)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) {
        perror("udpload: epoll_create1");
        return 1;
    }
    struct sender *ss = senders_open(ai, ep);
    uint64_t start = now_ns(), next_expire = start;
    g_measure_from = start + secs_to_ns(g_opt.warmup);
    g_measure_end = g_measure_from + secs_to_ns(g_opt.duration);
    struct cpu_window cpu = {.pid = g_opt.cpu_pid};
    bool cpu_begun = false;
    for (long i = 0; i < g_opt.senders; i++)
        sender_fill(&ss[i]);
    while (!g_stop && now_ns() < g_measure_end) {
        if (!cpu_begun && now_ns() >= g_measure_from) {
            cpu_begin(&cpu);
            cpu_begun = true;
        }
        turn(ep, ss, g_measure_end, &next_expire);
    }
    uint64_t stop = now_ns();
    cpu_end(&cpu);
    /* drain: no new datagrams; what is still missing after the loss timeout is lost */
    g_draining = true;
    uint64_t drain_end = stop + secs_to_ns(g_opt.loss_timeout) + 1000000u;
    for (;;) {
        long busy = 0;
        for (long i = 0; i < g_opt.senders; i++)
            busy += sender_busy(&ss[i]);
        if (busy == 0 || g_stop || now_ns() >= drain_end)
            break;
        turn(ep, ss, drain_end, &next_expire);
    }
    for (long i = 0; i < g_opt.senders; i++)
        sender_expire(&ss[i], UINT64_MAX / 2);

    double secs = stop > g_measure_from ? (double)(stop - g_measure_from) / 1e9 : 0;
    double rate = secs > 0 ? (double)g_st.measured / secs : 0;
    printf("dgrams_per_s=%.0f mb_per_s=%.3f loss=%llu loss_frac=%.6f", rate,
           rate * (double)g_size / 1e6, (unsigned long long)g_st.lost,
           g_st.sent ? (double)g_st.lost / (double)g_st.sent : 0.0);
    hist_print(stdout, &g_hist);
    printf(" errors=%llu senders=%ld window=%ld size=%zu dgrams=%llu sent=%llu late=%llu"
           " corrupt=%llu misrouted=%llu sock_errors=%llu secs=%.3f",
           (unsigned long long)total_errors(), g_opt.senders, g_opt.window, g_size,
           (unsigned long long)g_st.measured, (unsigned long long)g_st.sent,
           (unsigned long long)g_st.late, (unsigned long long)g_st.corrupt,
           (unsigned long long)g_st.misrouted, (unsigned long long)g_st.sock_errors, secs);
    cpu_print(stdout, &cpu);
    printf("\n");
    fflush(stdout);
    senders_close(ss);
    close(ep);
    return total_errors() == 0 && g_st.measured > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv, &g_opt);
    setup_signals();
    g_size = (size_t)g_opt.size;
    fill_pattern(g_pattern, sizeof g_pattern, 0x5DEECE66Dull);
    struct addrinfo *ai = resolve("udpload", g_opt.host, g_opt.port, SOCK_DGRAM);
    int rc = run(ai);
    freeaddrinfo(ai);
    return rc;
}
