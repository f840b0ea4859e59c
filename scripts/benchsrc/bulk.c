/*
 * bulk.c - bulk TCP transfer source and sink for the berth benchmarks'
 * proxy workload: the source pushes a fixed amount of data (default 1 GiB)
 * through the relay under test to the sink, which stands behind it as the
 * relay's upstream.
 *
 *   bulk sink                  listen on 127.0.0.1:$PORT ($PORT unset or 0 =
 *                              ephemeral), print "listening on 127.0.0.1:PORT",
 *                              serve until SIGTERM/SIGINT
 *   bulk source -p PORT [-c N] [-n BYTES] [-T SEC] [--cpu-pid PID]
 *
 * The byte at offset k of every connection's stream is pattern[k % P], a
 * fixed pseudo-random pattern whose length P (1 MiB + 4093) is not a power
 * of two, so a dropped, repeated or reordered block shows. The sink checks
 * every byte as it arrives; at EOF it answers "ok BYTES BAD\n" (bytes
 * received, bytes not matching) back through the relay and closes, so the
 * source learns that its data arrived intact and that the relay passes the
 * half-close and the reverse direction on.
 *
 * The source opens N connections (-c, default 1), splits the bytes between
 * them, writes from the pattern in 1 MiB pieces, half-closes each when its
 * share is sent, and waits for each sink answer. Figures: mb_per_s = bytes
 * / seconds from the first connect to the last answer (MB = 10^6 bytes);
 * with --cpu-pid PID, the CPU seconds of process PID over that time as
 * srv_cpu_s. Errors: failed connects, connections closed early, a missing,
 * short or wrong answer, and not finishing within -T seconds (default 60).
 *
 * Output (source): one line on stdout, e.g.
 *   mb_per_s=2512.3 bytes=1073741824 secs=0.427 conns=1 errors=0 srv_cpu_s=0.410
 * Exit status: 0 = all bytes arrived intact, 1 = otherwise, 2 = usage error.
 *
 * Build: cc -O2 -Wall -Wextra -o bulk bulk.c
 */
#include "load_util.h"

#include <arpa/inet.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>

#define PATTERN_LEN ((1u << 20) + 4093u)
#define CHUNK (1u << 20)
#define MAX_EVENTS 64
#define ANSWER_MAX 64

/* the pattern twice over: any PATTERN_LEN bytes from offset < PATTERN_LEN
 * are contiguous */
static unsigned char *g_pattern2;
static unsigned char g_rbuf[CHUNK];
static int g_ep;

static void pattern_init(void)
{
    g_pattern2 = malloc(2 * (size_t)PATTERN_LEN);
    if (!g_pattern2) {
        perror("bulk: malloc");
        exit(1);
    }
    fill_pattern(g_pattern2, PATTERN_LEN, 0xB0175EEDull);
    memcpy(g_pattern2 + PATTERN_LEN, g_pattern2, PATTERN_LEN);
}

static const unsigned char *pattern_at(uint64_t off)
{
    return g_pattern2 + off % PATTERN_LEN;
}

static void ep_ctl(int op, int fd, uint32_t events, void *ptr)
{
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    if (epoll_ctl(g_ep, op, fd, &ev) < 0) {
        perror("bulk: epoll_ctl");
        exit(1);
    }
}

/* ------------------------------------------------------------------- sink */

struct sink_conn {
    int fd;
    uint64_t received;
    uint64_t bad;
};

static int sink_listen(void)
{
    const char *s = getenv("PORT");
    long port = 0;
    if (s && *s && !parse_long(s, 0, 65535, &port)) {
        fprintf(stderr, "bulk: bad PORT: %s\n", s);
        exit(2);
    }
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof sa;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(fd, 128) < 0 ||
        getsockname(fd, (struct sockaddr *)&sa, &len) < 0) {
        perror("bulk: listen");
        exit(1);
    }
    printf("listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    return fd;
}

static void sink_close(struct sink_conn *c)
{
    close(c->fd);
    free(c);
}

/* EOF: answer with what arrived, then close. The answer is tiny, so a
 * blocking-style single write is enough on a fresh send buffer. */
static void sink_answer(struct sink_conn *c)
{
    char msg[ANSWER_MAX];
    int n = snprintf(msg, sizeof msg, "ok %" PRIu64 " %" PRIu64 "\n", c->received, c->bad);
    if (write(c->fd, msg, (size_t)n) != n)
        perror("bulk: sink answer");
    sink_close(c);
}

static void sink_readable(struct sink_conn *c)
{
    for (int i = 0; i < 16; i++) { /* bounded: other connections get a turn */
        ssize_t n = read(c->fd, g_rbuf, sizeof g_rbuf);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        if (n < 0) {
            sink_close(c); /* reset: the source sees it */
            return;
        }
        if (n == 0) {
            sink_answer(c);
            return;
        }
        /* CHUNK < PATTERN_LEN, so the expected bytes are contiguous */
        if (memcmp(g_rbuf, pattern_at(c->received), (size_t)n) != 0) {
            const unsigned char *exp = pattern_at(c->received);
            for (ssize_t k = 0; k < n; k++)
                c->bad += g_rbuf[k] != exp[k];
        }
        c->received += (uint64_t)n;
    }
}

static int run_sink(void)
{
    int lfd = sink_listen();
    ep_ctl(EPOLL_CTL_ADD, lfd, EPOLLIN, NULL);
    struct epoll_event evs[MAX_EVENTS];
    while (!g_stop) {
        int n = epoll_wait(g_ep, evs, MAX_EVENTS, 100);
        if (n < 0 && errno != EINTR) {
            perror("bulk: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr) {
                sink_readable(evs[i].data.ptr);
                continue;
            }
            int fd;
            while ((fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                struct sink_conn *c = calloc(1, sizeof *c);
                if (!c) {
                    close(fd);
                    continue;
                }
                c->fd = fd;
                ep_ctl(EPOLL_CTL_ADD, fd, EPOLLIN, c);
            }
        }
    }
    close(lfd);
    return 0;
}

/* ----------------------------------------------------------------- source */

struct options {
    const char *host;
    const char *port;
    long conns;
    long long bytes;
    double timeout;
    long cpu_pid;
};

enum src_state { S_CONNECTING, S_SENDING, S_WAITING, S_DONE, S_FAILED };

struct src_conn {
    int fd;
    enum src_state state;
    uint64_t quota, sent;
    char answer[ANSWER_MAX];
    size_t answer_len;
};

static struct options g_opt;
static long g_failed;

static void report_once(const char *what, const char *detail)
{
    static bool reported;
    if (!reported)
        fprintf(stderr, "bulk: %s: %s\n", what, detail);
    reported = true;
}

static void src_fail(struct src_conn *c, const char *what, const char *detail)
{
    report_once(what, detail);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = S_FAILED;
    g_failed++;
}

static void src_send(struct src_conn *c)
{
    while (c->sent < c->quota) {
        uint64_t left = c->quota - c->sent;
        size_t n = left < CHUNK ? (size_t)left : CHUNK;
        ssize_t w = write(c->fd, pattern_at(c->sent), n);
        if (w > 0) {
            c->sent += (uint64_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return;
        } else {
            src_fail(c, "write", w < 0 ? strerror(errno) : "no progress");
            return;
        }
    }
    shutdown(c->fd, SHUT_WR);
    c->state = S_WAITING;
    ep_ctl(EPOLL_CTL_MOD, c->fd, EPOLLIN, c);
}

static void src_answer(struct src_conn *c)
{
    size_t room = sizeof c->answer - 1 - c->answer_len;
    ssize_t n = read(c->fd, c->answer + c->answer_len, room);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        src_fail(c, "read", strerror(errno));
        return;
    }
    if (n > 0 && (size_t)n < room) {
        c->answer_len += (size_t)n;
        return;
    }
    c->answer[c->answer_len + (size_t)(n > 0 ? n : 0)] = '\0';
    uint64_t got = 0, bad = 1;
    if (n > 0 || sscanf(c->answer, "ok %" SCNu64 " %" SCNu64 "\n", &got, &bad) != 2) {
        src_fail(c, "answer", n > 0 ? "too long" : "missing or unreadable");
        return;
    }
    if (got != c->quota || bad != 0) {
        char why[128];
        snprintf(why, sizeof why, "sink got %" PRIu64 " of %" PRIu64 " bytes, %" PRIu64 " wrong",
                 got, c->quota, bad);
        src_fail(c, "answer", why);
        return;
    }
    close(c->fd);
    c->fd = -1;
    c->state = S_DONE;
}

static void src_event(struct src_conn *c)
{
    if (c->state == S_CONNECTING) {
        int err = 0;
        socklen_t len = sizeof err;
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
            err = errno;
        if (err) {
            src_fail(c, "connect", strerror(err));
            return;
        }
        c->state = S_SENDING;
    }
    if (c->state == S_SENDING)
        src_send(c);
    else if (c->state == S_WAITING)
        src_answer(c);
}

static void src_start(struct src_conn *c, const struct addrinfo *ai)
{
    c->fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        src_fail(c, "socket", strerror(errno));
        return;
    }
    c->state = S_CONNECTING;
    if (connect(c->fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        src_fail(c, "connect", strerror(errno));
        return;
    }
    ep_ctl(EPOLL_CTL_ADD, c->fd, EPOLLOUT, c);
}

static void source_usage(FILE *f)
{
    fprintf(f,
        "usage: bulk sink\n"
        "       bulk source -p PORT [options]\n"
        "  -H, --host HOST      relay address (default 127.0.0.1)\n"
        "  -p, --port PORT      relay port (required)\n"
        "  -c, --conns N        connections sharing the bytes (default 1)\n"
        "  -n, --bytes N        bytes in all (default 1073741824 = 1 GiB)\n"
        "  -T, --timeout SEC    give up after SEC seconds (default 60)\n"
        "      --cpu-pid PID    report the CPU seconds of process PID (the relay)\n"
        "  -h, --help\n");
}

static void source_args(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"host", required_argument, 0, 'H'},  {"port", required_argument, 0, 'p'},
        {"conns", required_argument, 0, 'c'}, {"bytes", required_argument, 0, 'n'},
        {"timeout", required_argument, 0, 'T'}, {"cpu-pid", required_argument, 0, 'P'},
        {"help", no_argument, 0, 'h'},        {0, 0, 0, 0},
    };
    g_opt = (struct options){.host = "127.0.0.1", .conns = 1, .bytes = 1LL << 30, .timeout = 60};
    int opt;
    long v;
    while ((opt = getopt_long(argc, argv, "H:p:c:n:T:h", longopts, NULL)) != -1) {
        bool ok = true;
        switch (opt) {
        case 'H': g_opt.host = optarg; break;
        case 'p': g_opt.port = optarg; break;
        case 'c': ok = parse_long(optarg, 1, 10000, &g_opt.conns); break;
        case 'n': ok = parse_long(optarg, 1, 1L << 50, &v); g_opt.bytes = v; break;
        case 'T': ok = parse_secs(optarg, 0.1, 3600, &g_opt.timeout); break;
        case 'P': ok = parse_long(optarg, 1, 1L << 30, &g_opt.cpu_pid); break;
        case 'h': source_usage(stdout); exit(0);
        default: ok = false;
        }
        if (!ok) {
            source_usage(stderr);
            exit(2);
        }
    }
    if (!g_opt.port || optind != argc) {
        source_usage(stderr);
        exit(2);
    }
}

static int run_source(void)
{
    struct addrinfo *ai = resolve("bulk", g_opt.host, g_opt.port, SOCK_STREAM);
    struct src_conn *cs = calloc((size_t)g_opt.conns, sizeof *cs);
    if (!cs) {
        perror("bulk: calloc");
        return 1;
    }
    uint64_t share = (uint64_t)g_opt.bytes / (uint64_t)g_opt.conns;
    struct cpu_window cpu = {.pid = g_opt.cpu_pid};
    cpu_begin(&cpu);
    uint64_t start = now_ns(), deadline = start + secs_to_ns(g_opt.timeout);
    for (long i = 0; i < g_opt.conns; i++) {
        cs[i].quota = share + (i == 0 ? (uint64_t)g_opt.bytes % (uint64_t)g_opt.conns : 0);
        src_start(&cs[i], ai);
    }
    long open = g_opt.conns;
    struct epoll_event evs[MAX_EVENTS];
    while (open > 0 && !g_stop && now_ns() < deadline) {
        int n = epoll_wait(g_ep, evs, MAX_EVENTS, wait_ms(deadline));
        if (n < 0 && errno != EINTR) {
            perror("bulk: epoll_wait");
            return 1;
        }
        for (int i = 0; i < n; i++)
            src_event(evs[i].data.ptr);
        open = 0;
        for (long i = 0; i < g_opt.conns; i++)
            open += cs[i].state != S_DONE && cs[i].state != S_FAILED;
    }
    uint64_t stop = now_ns();
    cpu_end(&cpu);
    long timeouts = 0;
    uint64_t delivered = 0;
    for (long i = 0; i < g_opt.conns; i++) {
        if (cs[i].state == S_DONE)
            delivered += cs[i].quota;
        else if (cs[i].state != S_FAILED)
            timeouts++;
        if (cs[i].fd >= 0)
            close(cs[i].fd);
    }
    if (timeouts)
        report_once("timeout", "not all bytes confirmed in time");
    double secs = (double)(stop - start) / 1e9;
    printf("mb_per_s=%.1f bytes=%" PRIu64 " secs=%.3f conns=%ld errors=%ld failed=%ld timeouts=%ld",
           secs > 0 ? (double)delivered / secs / 1e6 : 0.0, delivered, secs, g_opt.conns,
           g_failed + timeouts, g_failed, timeouts);
    cpu_print(stdout, &cpu);
    printf("\n");
    fflush(stdout);
    free(cs);
    freeaddrinfo(ai);
    return g_failed + timeouts == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || (strcmp(argv[1], "sink") != 0 && strcmp(argv[1], "source") != 0)) {
        source_usage(stderr);
        return 2;
    }
    bool sink = strcmp(argv[1], "sink") == 0;
    if (!sink)
        source_args(argc - 1, argv + 1);
    else if (argc != 2) {
        source_usage(stderr);
        return 2;
    }
    setup_signals();
    pattern_init();
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) {
        perror("bulk: epoll_create1");
        return 1;
    }
    int rc = sink ? run_sink() : run_source();
    close(g_ep);
    free(g_pattern2);
    return rc;
}
