/*
 * loadgen.c - TCP echo load generator for the berth benchmarks.
 *
 * One thread, one epoll loop, N client connections to an echo server.
 *
 *   ping-pong  (-d 1)  each connection sends one message of S bytes, waits for
 *                      the whole echo, then sends the next one;
 *   pipelined  (-d D)  each connection keeps D messages in flight;
 *   idle       (--idle N) opens N connections, prints "idle_ready ...", holds
 *                      them open for --hold seconds (or until SIGTERM/SIGINT),
 *                      then closes them (for RSS-per-connection measurements).
 *
 * Message content is pseudo-random; by default every message ends with '\n'
 * so that line-oriented echo servers work too (--no-newline turns that off).
 * Every echoed byte is compared with what was sent; a message with any wrong
 * byte is counted as an error, as are failed connects, connections closed by
 * the server and bytes the server sent that were never sent to it.
 *
 * Latency is measured per message, from the moment it is queued for sending
 * until its last echoed byte is read (in ping-pong mode: the round trip).
 * Only messages completed after the warm-up are counted.
 *
 * With --cpu-pid PID, the CPU seconds (utime + stime) that process PID used
 * over the measured window are reported as srv_cpu_s (not in idle mode: the
 * driver measures that itself once the server holds the connections).
 *
 * Output: one line on stdout, e.g.
 *   msgs_per_s=51234 mb_per_s=3.28 p50_us=18.2 p99_us=40.1 p999_us=61.0 errors=0 ...
 * Exit status: 0 = no errors (and, unless idle, at least one message),
 *              1 = errors or nothing measured, 2 = usage error.
 *
 * Build: cc -O2 -Wall -Wextra -o loadgen loadgen.c
 */
#include "load_util.h"

#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/uio.h>

#define MAX_EVENTS 256
#define MAX_IOV 64
#define RBUF_SIZE (256 * 1024)
#define IDLE_CONNECT_BATCH 256
#define IDLE_CONNECT_TIMEOUT_S 30.0

/* ---------------------------------------------------------------- options */

struct options {
    const char *host;
    const char *port;
    long conns;
    long size;
    long depth;
    double duration;
    double warmup;
    long idle;       /* > 0: idle mode with this many connections */
    double hold;     /* idle mode: seconds to hold the connections */
    bool newline;    /* end every message with '\n' */
    long cpu_pid;    /* > 0: report this process's CPU seconds */
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: loadgen -p PORT [options]\n"
        "  -H, --host HOST        server address (default 127.0.0.1)\n"
        "  -p, --port PORT        server port (required)\n"
        "  -c, --conns N          connections (default 1)\n"
        "  -s, --size S           message size in bytes (default 64)\n"
        "  -d, --depth D          messages in flight per connection (default 1 = ping-pong)\n"
        "  -t, --duration SEC     measured time, 0 < SEC <= 3600 (default 5)\n"
        "  -w, --warmup SEC       unmeasured time before it (default 0)\n"
        "  -i, --idle N           idle mode: open N connections and hold them\n"
        "      --hold SEC         idle mode: hold time (default: --duration)\n"
        "      --no-newline       do not end messages with '\\n'\n"
        "      --cpu-pid PID      report the CPU seconds of process PID (the server)\n"
        "  -h, --help\n");
}

static bool parse_option(int opt, const char *arg, struct options *o)
{
    switch (opt) {
    case 'H': o->host = arg; return true;
    case 'p': o->port = arg; return true;
    case 'c': return parse_long(arg, 1, 1000000, &o->conns);
    case 's': return parse_long(arg, 1, 16L << 20, &o->size);
    case 'd': return parse_long(arg, 1, 4096, &o->depth);
    case 't': return parse_secs(arg, 0.001, 3600, &o->duration);
    case 'w': return parse_secs(arg, 0, 600, &o->warmup);
    case 'i': return parse_long(arg, 1, 1000000, &o->idle);
    case 'o': return parse_secs(arg, 0, 3600, &o->hold);
    case 'n': o->newline = false; return true;
    case 'P': return parse_long(arg, 1, 1L << 30, &o->cpu_pid);
    default: return false;
    }
}

static void parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"host", required_argument, 0, 'H'},
        {"port", required_argument, 0, 'p'},
        {"conns", required_argument, 0, 'c'},
        {"size", required_argument, 0, 's'},
        {"depth", required_argument, 0, 'd'},
        {"duration", required_argument, 0, 't'},
        {"warmup", required_argument, 0, 'w'},
        {"idle", required_argument, 0, 'i'},
        {"hold", required_argument, 0, 'o'},
        {"no-newline", no_argument, 0, 'n'},
        {"cpu-pid", required_argument, 0, 'P'},
        {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *o = (struct options){.host = "127.0.0.1", .conns = 1, .size = 64, .depth = 1,
                          .duration = 5, .hold = -1, .newline = true};
    int opt;
    while ((opt = getopt_long(argc, argv, "H:p:c:s:d:t:w:i:h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            exit(0);
        }
        if (!parse_option(opt, optarg, o)) {
            if (opt != '?')
                fprintf(stderr, "loadgen: bad value for -%c: %s\n", opt, optarg);
            usage(stderr);
            exit(2);
        }
    }
    if (!o->port || optind != argc) {
        usage(stderr);
        exit(2);
    }
    if (o->hold < 0)
        o->hold = o->duration;
}

static struct hist g_hist;

/* ---------------------------------------------------------------- payload */

/* g_pattern holds g_slots messages of g_size bytes each; a message is a slot */
static unsigned char *g_pattern;
static size_t g_size;
static uint32_t g_slots;

static void pattern_init(size_t size, bool newline)
{
    size_t slots = (1u << 20) / size;
    g_slots = (uint32_t)(slots < 16 ? 16 : slots);
    g_size = size;
    g_pattern = malloc(g_size * g_slots);
    if (!g_pattern) {
        perror("loadgen: malloc");
        exit(1);
    }
    fill_pattern(g_pattern, g_size * g_slots, 0x9E3779B97F4A7C15ull);
    if (newline)
        for (uint32_t k = 0; k < g_slots; k++)
            g_pattern[(size_t)k * g_size + g_size - 1] = '\n';
}

static const unsigned char *slot_data(uint32_t slot)
{
    return g_pattern + (size_t)slot * g_size;
}

/* ------------------------------------------------------------ connections */

enum conn_state { C_CONNECTING, C_OPEN, C_DEAD };

struct msg {
    uint32_t slot;
    uint64_t t0;
};

struct conn {
    int fd;
    enum conn_state state;
    bool want_out;     /* EPOLLOUT is registered */
    bool bad;          /* the message being received has a wrong byte */
    uint64_t rng;
    struct msg *ring;  /* depth entries */
    unsigned head;     /* oldest message not yet fully echoed */
    unsigned count;    /* messages queued (sent or not) */
    unsigned nsent;    /* messages from head that are fully sent */
    size_t sent_off;   /* bytes sent of message head+nsent */
    size_t recv_off;   /* bytes received of message head */
};

struct stats {
    uint64_t msgs;           /* measured, correct messages */
    uint64_t connect_errors;
    uint64_t mismatches;
    uint64_t closed;         /* closed by the server / socket errors */
    uint64_t extra;          /* unexpected bytes from the server */
    long established;
};

static int g_ep;
static struct options g_opt;
static struct stats g_st;
static uint64_t g_measure_from; /* completions before this are warm-up */
static bool g_draining;         /* no new messages are queued */
static unsigned char g_rbuf[RBUF_SIZE];

static uint64_t total_errors(void)
{
    return g_st.connect_errors + g_st.mismatches + g_st.closed + g_st.extra;
}

static void report_once(const char *what, int err)
{
    static bool reported;
    if (!reported)
        fprintf(stderr, "loadgen: %s: %s\n", what, strerror(err));
    reported = true;
}

static void ep_set(struct conn *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(g_ep, op, c->fd, &ev) < 0) {
        perror("loadgen: epoll_ctl");
        exit(1);
    }
}

static void conn_kill(struct conn *c, uint64_t *counter)
{
    if (counter)
        (*counter)++;
    if (c->fd >= 0)
        close(c->fd); /* also removes it from the epoll set */
    c->fd = -1;
    c->state = C_DEAD;
}

static void conn_want_out(struct conn *c, bool on)
{
    if (c->want_out == on)
        return;
    c->want_out = on;
    ep_set(c, EPOLLIN | (on ? EPOLLOUT : 0), EPOLL_CTL_MOD);
}

static struct msg *ring_at(struct conn *c, unsigned i)
{
    return &c->ring[(c->head + i) % (unsigned)g_opt.depth];
}

static void conn_refill(struct conn *c, uint64_t t)
{
    while (!g_draining && c->count < (unsigned)g_opt.depth) {
        struct msg *m = ring_at(c, c->count++);
        m->slot = (uint32_t)(rng_next(&c->rng) % g_slots);
        m->t0 = t;
    }
}

/* write as much of the queued, unsent messages as the socket takes */
static void conn_flush(struct conn *c)
{
    while (c->nsent < c->count) {
        struct iovec iov[MAX_IOV];
        int n = 0;
        size_t off = c->sent_off;
        for (unsigned i = c->nsent; i < c->count && n < MAX_IOV; i++, off = 0) {
            iov[n].iov_base = (void *)(slot_data(ring_at(c, i)->slot) + off);
            iov[n].iov_len = g_size - off;
            n++;
        }
        ssize_t w = writev(c->fd, iov, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            report_once("write", errno);
            conn_kill(c, &g_st.closed);
            return;
        }
        size_t left = (size_t)w;
        while (left > 0) {
            size_t room = g_size - c->sent_off;
            size_t take = left < room ? left : room;
            c->sent_off += take;
            left -= take;
            if (c->sent_off == g_size) {
                c->nsent++;
                c->sent_off = 0;
            }
        }
    }
    conn_want_out(c, c->nsent < c->count);
}

static void msg_complete(struct conn *c, uint64_t t)
{
    struct msg *m = ring_at(c, 0);
    if (c->bad)
        g_st.mismatches++;
    else if (t >= g_measure_from) {
        g_st.msgs++;
        hist_add(&g_hist, t - m->t0);
    }
    c->head = (c->head + 1) % (unsigned)g_opt.depth;
    c->count--;
    c->nsent--;
    c->recv_off = 0;
    c->bad = false;
}

/* bytes of the head message that were sent but not yet received */
static size_t head_expected(struct conn *c)
{
    if (c->count == 0)
        return 0;
    size_t sent = c->nsent > 0 ? g_size : c->sent_off;
    return sent - c->recv_off;
}

/* verify echoed bytes; returns false if the server sent unexpected bytes */
static bool conn_consume(struct conn *c, const unsigned char *p, size_t n, uint64_t t)
{
    while (n > 0) {
        size_t want = head_expected(c);
        if (want == 0)
            return false;
        size_t take = n < want ? n : want;
        const unsigned char *exp = slot_data(ring_at(c, 0)->slot) + c->recv_off;
        if (memcmp(exp, p, take) != 0)
            c->bad = true;
        c->recv_off += take;
        p += take;
        n -= take;
        if (c->recv_off == g_size)
            msg_complete(c, t);
    }
    return true;
}

static void conn_readable(struct conn *c)
{
    ssize_t r = read(c->fd, g_rbuf, sizeof g_rbuf);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (r <= 0) {
        if (r < 0)
            report_once("read", errno);
        conn_kill(c, &g_st.closed);
        return;
    }
    uint64_t t = now_ns();
    if (!conn_consume(c, g_rbuf, (size_t)r, t)) {
        conn_kill(c, &g_st.extra);
        return;
    }
    conn_refill(c, t);
    conn_flush(c);
}

/* ---------------------------------------------------------------- connect */

/* start a nonblocking connect; on failure the connection is dead */
static void conn_start(struct conn *c, const struct addrinfo *ai)
{
    c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        report_once("socket", errno);
        conn_kill(c, &g_st.connect_errors);
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = C_CONNECTING;
    if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        report_once("connect", errno);
        conn_kill(c, &g_st.connect_errors);
        return;
    }
    ep_set(c, EPOLLOUT, EPOLL_CTL_ADD);
}

/* the connect finished (EPOLLOUT/EPOLLERR); returns true if it succeeded */
static bool conn_connected(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        report_once("connect", err);
        conn_kill(c, &g_st.connect_errors);
        return false;
    }
    c->state = C_OPEN;
    c->want_out = false;
    ep_set(c, EPOLLIN, EPOLL_CTL_MOD);
    g_st.established++;
    return true;
}

static struct conn *conns_alloc(long n, long depth)
{
    struct conn *cs = calloc((size_t)n, sizeof *cs);
    if (!cs) {
        perror("loadgen: calloc");
        exit(1);
    }
    for (long i = 0; i < n; i++) {
        cs[i].fd = -1;
        cs[i].state = C_DEAD;
        cs[i].rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1) | 1;
        if (depth > 0 && !(cs[i].ring = calloc((size_t)depth, sizeof(struct msg)))) {
            perror("loadgen: calloc");
            exit(1);
        }
    }
    return cs;
}

static void conns_close(struct conn *cs, long n)
{
    for (long i = 0; i < n; i++) {
        if (cs[i].fd >= 0)
            close(cs[i].fd);
        free(cs[i].ring);
    }
    free(cs);
}

/* ------------------------------------------------------------- load modes */

static void load_event(struct conn *c, uint32_t ev)
{
    if (c->state == C_CONNECTING) {
        if (conn_connected(c)) {
            uint64_t t = now_ns();
            conn_refill(c, t);
            conn_flush(c);
        }
        return;
    }
    if (c->state != C_OPEN)
        return;
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
        conn_readable(c);
    if (c->state == C_OPEN && (ev & EPOLLOUT))
        conn_flush(c);
}

static void print_load_result(double secs, const struct cpu_window *cpu)
{
    double rate = secs > 0 ? (double)g_st.msgs / secs : 0;
    printf("msgs_per_s=%.0f mb_per_s=%.3f", rate, rate * (double)g_size / 1e6);
    hist_print(stdout, &g_hist);
    printf(" errors=%llu conns=%ld msgs=%llu secs=%.3f size=%ld depth=%ld connect_errors=%llu"
           " mismatches=%llu closed=%llu extra=%llu",
           (unsigned long long)total_errors(), g_st.established,
           (unsigned long long)g_st.msgs, secs, g_opt.size, g_opt.depth,
           (unsigned long long)g_st.connect_errors, (unsigned long long)g_st.mismatches,
           (unsigned long long)g_st.closed, (unsigned long long)g_st.extra);
    cpu_print(stdout, cpu);
    printf("\n");
    fflush(stdout);
}

static int run_load(const struct addrinfo *ai)
{
    struct conn *cs = conns_alloc(g_opt.conns, g_opt.depth);
    uint64_t start = now_ns();
    g_measure_from = start + secs_to_ns(g_opt.warmup);
    uint64_t end = g_measure_from + secs_to_ns(g_opt.duration);
    struct cpu_window cpu = {.pid = g_opt.cpu_pid};
    bool cpu_begun = false;
    for (long i = 0; i < g_opt.conns; i++)
        conn_start(&cs[i], ai);

    struct epoll_event evs[MAX_EVENTS];
    while (!g_stop && now_ns() < end) {
        if (!cpu_begun && now_ns() >= g_measure_from) {
            cpu_begin(&cpu);
            cpu_begun = true;
        }
        int n = epoll_wait(g_ep, evs, MAX_EVENTS, wait_ms(end));
        if (n < 0 && errno != EINTR) {
            perror("loadgen: epoll_wait");
            exit(1);
        }
        for (int i = 0; i < n; i++)
            load_event(evs[i].data.ptr, evs[i].events);
    }
    uint64_t stop = now_ns();
    cpu_end(&cpu);
    double secs = stop > g_measure_from ? (double)(stop - g_measure_from) / 1e9 : 0;
    g_draining = true;
    print_load_result(secs, &cpu);
    conns_close(cs, g_opt.conns);
    return total_errors() == 0 && g_st.msgs > 0 ? 0 : 1;
}

/* idle mode: connect in batches, then watch for the server closing */
static void idle_event(struct conn *c, long *pending)
{
    if (c->state == C_CONNECTING) {
        (*pending)--;
        if (conn_connected(c))
            ep_set(c, EPOLLIN | EPOLLRDHUP, EPOLL_CTL_MOD);
        return;
    }
    if (c->state != C_OPEN)
        return;
    ssize_t r = read(c->fd, g_rbuf, sizeof g_rbuf);
    if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
        conn_kill(c, &g_st.closed);
    else if (r > 0)
        g_st.extra++;
}

static void idle_poll(long *pending, uint64_t deadline)
{
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(g_ep, evs, MAX_EVENTS, wait_ms(deadline));
    if (n < 0 && errno != EINTR) {
        perror("loadgen: epoll_wait");
        exit(1);
    }
    for (int i = 0; i < n; i++)
        idle_event(evs[i].data.ptr, pending);
}

static void idle_connect_all(struct conn *cs, const struct addrinfo *ai)
{
    uint64_t deadline = now_ns() + secs_to_ns(IDLE_CONNECT_TIMEOUT_S);
    long next = 0, pending = 0;
    while (!g_stop && (next < g_opt.idle || pending > 0) && now_ns() < deadline) {
        while (next < g_opt.idle && pending < IDLE_CONNECT_BATCH) {
            conn_start(&cs[next++], ai);
            if (cs[next - 1].state == C_CONNECTING)
                pending++;
        }
        idle_poll(&pending, deadline);
    }
    for (long i = 0; i < g_opt.idle; i++) /* timed out or never started */
        if (cs[i].state == C_CONNECTING || (i >= next && !g_stop))
            conn_kill(&cs[i], &g_st.connect_errors);
}

static int run_idle(const struct addrinfo *ai)
{
    struct conn *cs = conns_alloc(g_opt.idle, 0);
    idle_connect_all(cs, ai);
    printf("idle_ready conns=%ld errors=%llu\n", g_st.established,
           (unsigned long long)total_errors());
    fflush(stdout);

    uint64_t end = now_ns() + secs_to_ns(g_opt.hold);
    long pending = 0;
    while (!g_stop && now_ns() < end)
        idle_poll(&pending, end);
    conns_close(cs, g_opt.idle);
    printf("idle conns=%ld errors=%llu connect_errors=%llu closed=%llu extra=%llu\n",
           g_st.established, (unsigned long long)total_errors(),
           (unsigned long long)g_st.connect_errors, (unsigned long long)g_st.closed,
           (unsigned long long)g_st.extra);
    fflush(stdout);
    return total_errors() == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv, &g_opt);
    setup_signals();
    struct addrinfo *ai = resolve("loadgen", g_opt.host, g_opt.port, SOCK_STREAM);
    raise_nofile((g_opt.idle > 0 ? g_opt.idle : g_opt.conns) + 64);
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) {
        perror("loadgen: epoll_create1");
        return 1;
    }
    int rc;
    if (g_opt.idle > 0) {
        rc = run_idle(ai);
    } else {
        pattern_init((size_t)g_opt.size, g_opt.newline);
        rc = run_load(ai);
    }
    freeaddrinfo(ai);
    free(g_pattern);
    close(g_ep);
    return rc;
}
