/*
 * wsload.c - WebSocket echo load generator for the berth benchmarks.
 *
 * One thread, one epoll loop, N connections (-c) to a WebSocket echo server
 * (ws_echo_libev.c, ws_echo_node.js, berth's examples/websocket.lua). Each
 * connection does the opening handshake on --path (default /) and checks
 * the 101 and its Sec-WebSocket-Accept, then plays ping-pong like loadgen:
 * one message of S bytes (-s) in a masked client frame, wait for the whole
 * echo, send the next.
 *
 * Messages are binary frames of pseudo-random bytes (--text: text frames of
 * printable ASCII). Client frames are masked, as RFC 6455 requires, each
 * with its own masking key; the frames are built once at start so that the
 * generator spends no time masking. Every echo is checked: unmasked, FIN
 * set at its end, the same opcode, the same length and the same bytes; a
 * server may split it into fragments (continuation frames). A ping from the
 * server is answered with a pong. Anything else (a failed connect or
 * handshake, a wrong byte, an unexpected frame, a close frame, the
 * connection closed) counts as an error.
 *
 * Latency is per message, from the moment it is queued until its echo is
 * complete; only messages completed after the warm-up are counted. With
 * --cpu-pid PID, the CPU seconds of process PID over the measured window
 * are reported as srv_cpu_s.
 *
 * Output: one line on stdout, e.g.
 *   msgs_per_s=51234 mb_per_s=3.28 p50_us=… p99_us=… p999_us=… errors=0 conns=50 …
 * Exit status: 0 = no errors and at least one message, 1 = otherwise,
 * 2 = usage error.
 *
 * Build: cc -O2 -Wall -Wextra -o wsload wsload.c -lcrypto
 */
#include "load_util.h"

#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/sha.h>
#include <strings.h>
#include <sys/epoll.h>

#define MAX_EVENTS 256
#define RBUF_SIZE (256 * 1024)
#define HEAD_MAX 2048

enum { OP_CONT = 0, OP_TEXT = 1, OP_BINARY = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

/* ---------------------------------------------------------------- options */

struct options {
    const char *host;
    const char *port;
    const char *path;
    long conns;
    long size;
    double duration;
    double warmup;
    bool text;
    long cpu_pid;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: wsload -p PORT [options]\n"
        "  -H, --host HOST        server address (default 127.0.0.1)\n"
        "  -p, --port PORT        server port (required)\n"
        "      --path PATH        WebSocket path (default /)\n"
        "  -c, --conns N          connections (default 1)\n"
        "  -s, --size S           message size in bytes (default 64)\n"
        "  -t, --duration SEC     measured time (default 5)\n"
        "  -w, --warmup SEC       unmeasured time before it (default 0)\n"
        "      --text             text frames (printable ASCII) instead of binary\n"
        "      --cpu-pid PID      report the CPU seconds of process PID (the server)\n"
        "  -h, --help\n");
}

static bool parse_option(int opt, const char *arg, struct options *o)
{
    switch (opt) {
    case 'H': o->host = arg; return true;
    case 'p': o->port = arg; return true;
    case 'a': o->path = arg; return *arg == '/' && strlen(arg) < 1024;
    case 'c': return parse_long(arg, 1, 1000000, &o->conns);
    case 's': return parse_long(arg, 1, 16L << 20, &o->size);
    case 't': return parse_secs(arg, 0.001, 3600, &o->duration);
    case 'w': return parse_secs(arg, 0, 600, &o->warmup);
    case 'x': o->text = true; return true;
    case 'P': return parse_long(arg, 1, 1L << 30, &o->cpu_pid);
    default: return false;
    }
}

static void parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"host", required_argument, 0, 'H'},    {"port", required_argument, 0, 'p'},
        {"path", required_argument, 0, 'a'},    {"conns", required_argument, 0, 'c'},
        {"size", required_argument, 0, 's'},    {"duration", required_argument, 0, 't'},
        {"warmup", required_argument, 0, 'w'},  {"text", no_argument, 0, 'x'},
        {"cpu-pid", required_argument, 0, 'P'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *o = (struct options){.host = "127.0.0.1", .path = "/", .conns = 1, .size = 64,
                          .duration = 5};
    int opt;
    while ((opt = getopt_long(argc, argv, "H:p:c:s:t:w:h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            exit(0);
        }
        if (!parse_option(opt, optarg, o)) {
            if (opt != '?')
                fprintf(stderr, "wsload: bad value for option: %s\n", optarg);
            usage(stderr);
            exit(2);
        }
    }
    if (!o->port || optind != argc) {
        usage(stderr);
        exit(2);
    }
}

/* ------------------------------------------------------------- base64/key */

static void base64(const unsigned char *in, size_t n, char *out)
{
    static const char A[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;
    for (size_t i = 0; i < n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)in[i + 1] << 8;
        if (i + 2 < n)
            v |= in[i + 2];
        out[o++] = A[v >> 18];
        out[o++] = A[(v >> 12) & 63];
        out[o++] = i + 1 < n ? A[(v >> 6) & 63] : '=';
        out[o++] = i + 2 < n ? A[v & 63] : '=';
    }
    out[o] = '\0';
}

/* a fresh Sec-WebSocket-Key and the Sec-WebSocket-Accept it calls for */
static void ws_key(uint64_t *rng, char key[25], char accept[29])
{
    static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
    unsigned char raw[16], cat[24 + sizeof GUID - 1], digest[SHA_DIGEST_LENGTH];
    uint64_t a = rng_next(rng), b = rng_next(rng);
    memcpy(raw, &a, 8);
    memcpy(raw + 8, &b, 8);
    base64(raw, sizeof raw, key);
    memcpy(cat, key, 24);
    memcpy(cat + 24, GUID, sizeof GUID - 1);
    SHA1(cat, sizeof cat, digest);
    base64(digest, sizeof digest, accept);
}

/* ---------------------------------------------------------------- payload */

/* g_pattern: g_slots messages of g_size bytes; g_frames: the same messages
 * as complete masked client frames of g_frame_len bytes */
static unsigned char *g_pattern, *g_frames;
static size_t g_size, g_frame_len;
static uint32_t g_slots;

static size_t frame_head(unsigned char *h, unsigned first, size_t n, const unsigned char mask[4])
{
    size_t hl = 2;
    h[0] = (unsigned char)first;
    if (n < 126) {
        h[1] = (unsigned char)(0x80 | n);
    } else if (n <= 0xFFFF) {
        h[1] = 0x80 | 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    } else {
        h[1] = 0x80 | 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    memcpy(h + hl, mask, 4);
    return hl + 4;
}

static void payload_init(size_t size, bool text)
{
    size_t slots = (1u << 20) / size;
    g_slots = (uint32_t)(slots < 16 ? 16 : slots);
    g_size = size;
    unsigned char h[14], mask[4] = {0};
    g_frame_len = frame_head(h, 0, size, mask) + size;
    g_pattern = malloc(g_size * g_slots);
    g_frames = malloc(g_frame_len * g_slots);
    if (!g_pattern || !g_frames) {
        perror("wsload: malloc");
        exit(1);
    }
    fill_pattern(g_pattern, g_size * g_slots, 0x9E3779B97F4A7C15ull);
    if (text)
        for (size_t i = 0; i < g_size * g_slots; i++)
            g_pattern[i] = (unsigned char)(' ' + g_pattern[i] % 95);
    uint64_t rng = 0xA0761D6478BD642Full;
    for (uint32_t k = 0; k < g_slots; k++) {
        uint64_t m = rng_next(&rng);
        memcpy(mask, &m, 4);
        unsigned char *f = g_frames + (size_t)k * g_frame_len;
        size_t hl = frame_head(f, 0x80 | (text ? OP_TEXT : OP_BINARY), size, mask);
        const unsigned char *p = g_pattern + (size_t)k * g_size;
        for (size_t i = 0; i < size; i++)
            f[hl + i] = p[i] ^ mask[i & 3];
    }
}

/* ------------------------------------------------------------ connections */

enum conn_state { C_CONNECTING, C_UPGRADING, C_OPEN, C_DEAD };

struct conn {
    int fd;
    enum conn_state state;
    bool want_out;
    uint64_t rng;
    /* handshake */
    char request[HEAD_MAX];
    size_t req_len, req_off;
    char accept[29];
    char head[HEAD_MAX];
    size_t head_len;
    /* the message in flight */
    bool busy;
    uint32_t slot;
    uint64_t t0;
    size_t sent_off;      /* bytes of its frame sent */
    size_t recv_off;      /* bytes of its echo received */
    bool bad;             /* a wrong byte or frame in its echo */
    unsigned echo_op;     /* opcode of the echo's first frame, 0 = none yet */
    /* the frame being received */
    unsigned char fh[14]; /* its header */
    unsigned fh_len, fh_need;
    uint64_t left;        /* payload bytes still to come */
    unsigned op;
    bool fin;
    unsigned char ctl[125];
    unsigned ctl_len;
    /* a pong to send (masked frame), after the current message frame */
    unsigned char pong[2 + 4 + 125];
    size_t pong_len, pong_off;
};

struct stats {
    uint64_t msgs;
    uint64_t connect_errors;
    uint64_t handshake_errors;
    uint64_t mismatches;     /* echoes with a wrong byte, length or opcode */
    uint64_t protocol;       /* frames no echo server should send */
    uint64_t closed;         /* close frames, EOF, resets */
    uint64_t extra;          /* bytes with no message in flight */
    uint64_t pings;          /* pings from the server (answered; not an error) */
    long established;
};

static int g_ep;
static struct options g_opt;
static struct stats g_st;
static struct hist g_hist;
static const struct addrinfo *g_ai;
static uint64_t g_measure_from;
static bool g_draining;
static unsigned char g_rbuf[RBUF_SIZE];

static uint64_t total_errors(void)
{
    return g_st.connect_errors + g_st.handshake_errors + g_st.mismatches + g_st.protocol +
           g_st.closed + g_st.extra;
}

static void report_once(const char *what, const char *detail)
{
    static bool reported;
    if (!reported)
        fprintf(stderr, "wsload: %s: %s\n", what, detail);
    reported = true;
}

static void ep_set(struct conn *c, uint32_t events, int op)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(g_ep, op, c->fd, &ev) < 0) {
        perror("wsload: epoll_ctl");
        exit(1);
    }
}

static void conn_kill(struct conn *c, uint64_t *counter, const char *what, const char *detail)
{
    if (counter) {
        (*counter)++;
        report_once(what, detail);
    }
    if (c->fd >= 0)
        close(c->fd);
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

/* write p[*off, n); false on a socket error (the connection is dead) */
static bool send_some(struct conn *c, const unsigned char *p, size_t n, size_t *off)
{
    while (*off < n) {
        ssize_t w = write(c->fd, p + *off, n - *off);
        if (w > 0) {
            *off += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            return true;
        } else {
            conn_kill(c, &g_st.closed, "write", strerror(errno));
            return false;
        }
    }
    return true;
}

static const unsigned char *msg_frame(const struct conn *c)
{
    return g_frames + (size_t)c->slot * g_frame_len;
}

/* send: the rest of a started message frame, a pending pong, the message */
static void conn_flush(struct conn *c)
{
    if (c->busy && c->sent_off > 0 && !send_some(c, msg_frame(c), g_frame_len, &c->sent_off))
        return;
    bool frame_done = !c->busy || c->sent_off == g_frame_len || c->sent_off == 0;
    if (frame_done && c->pong_off < c->pong_len) {
        if (!send_some(c, c->pong, c->pong_len, &c->pong_off))
            return;
        if (c->pong_off == c->pong_len)
            c->pong_off = c->pong_len = 0;
    }
    if (c->busy && c->pong_len == 0 && !send_some(c, msg_frame(c), g_frame_len, &c->sent_off))
        return;
    conn_want_out(c, (c->busy && c->sent_off < g_frame_len) || c->pong_len > 0);
}

static void conn_next(struct conn *c, uint64_t t)
{
    if (g_draining || c->busy)
        return;
    c->busy = true;
    c->slot = (uint32_t)(rng_next(&c->rng) % g_slots);
    c->t0 = t;
    c->sent_off = c->recv_off = 0;
    c->bad = false;
    c->echo_op = 0;
}

static void msg_complete(struct conn *c, uint64_t t)
{
    if (c->bad || c->recv_off != g_size)
        g_st.mismatches++;
    else if (t >= g_measure_from) {
        g_st.msgs++;
        hist_add(&g_hist, t - c->t0);
    }
    c->busy = false;
}

/* a control frame's payload is complete */
static void control_frame(struct conn *c)
{
    if (c->op == OP_PING) {
        g_st.pings++;
        uint64_t m = rng_next(&c->rng);
        unsigned char mask[4];
        memcpy(mask, &m, 4);
        size_t hl = frame_head(c->pong, 0x80 | OP_PONG, c->ctl_len, mask);
        for (unsigned i = 0; i < c->ctl_len; i++)
            c->pong[hl + i] = c->ctl[i] ^ mask[i & 3];
        c->pong_len = hl + c->ctl_len; /* a newer ping replaces an unsent pong */
        c->pong_off = 0;
    } else if (c->op == OP_CLOSE) {
        conn_kill(c, &g_st.closed, "frame", "close frame from the server");
    } /* a pong is ignored */
}

/* a frame header is complete: check it against the message in flight */
static bool frame_begin(struct conn *c)
{
    unsigned b0 = c->fh[0], b1 = c->fh[1];
    c->op = b0 & 0x0F;
    c->fin = b0 & 0x80;
    uint64_t n = b1 & 0x7F;
    if (n == 126)
        n = (uint64_t)c->fh[2] << 8 | c->fh[3];
    else if (n == 127) {
        n = 0;
        for (int i = 0; i < 8; i++)
            n = n << 8 | c->fh[2 + i];
    }
    c->left = n;
    c->ctl_len = 0;
    if ((b0 & 0x70) || (b1 & 0x80)) {
        conn_kill(c, &g_st.protocol, "frame", "reserved bits or a masked server frame");
        return false;
    }
    if (c->op >= 8) {
        if (!c->fin || n > 125 || c->op > OP_PONG) {
            conn_kill(c, &g_st.protocol, "frame", "bad control frame");
            return false;
        }
        return true;
    }
    if (!c->busy || c->sent_off == 0) {
        conn_kill(c, &g_st.extra, "frame", "data frame with no message in flight");
        return false;
    }
    unsigned want = g_opt.text ? OP_TEXT : OP_BINARY;
    if ((c->echo_op == 0 && c->op != want) || (c->echo_op != 0 && c->op != OP_CONT) ||
        c->recv_off + n > g_size)
        c->bad = true;
    if (c->echo_op == 0)
        c->echo_op = c->op;
    return true;
}

/* a data or control frame ended */
static void frame_end(struct conn *c, uint64_t t)
{
    if (c->op >= 8)
        control_frame(c);
    else if (c->fin)
        msg_complete(c, t);
}

/* feed received bytes through the frame parser */
static void conn_consume(struct conn *c, const unsigned char *p, size_t n, uint64_t t)
{
    while (n > 0 && c->state == C_OPEN) {
        if (c->fh_len < c->fh_need) { /* header bytes */
            c->fh[c->fh_len++] = *p++;
            n--;
            if (c->fh_len == 2) {
                unsigned l7 = c->fh[1] & 0x7F;
                c->fh_need = 2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0);
            }
            if (c->fh_len < c->fh_need)
                continue;
            if (!frame_begin(c))
                return;
            if (c->left > 0)
                continue;
        } else { /* payload bytes */
            size_t take = n < c->left ? n : (size_t)c->left;
            if (c->op >= 8) {
                memcpy(c->ctl + c->ctl_len, p, take);
                c->ctl_len += (unsigned)take;
            } else if (!c->bad) {
                if (memcmp(g_pattern + (size_t)c->slot * g_size + c->recv_off, p, take) != 0)
                    c->bad = true;
                c->recv_off += take;
            }
            p += take;
            n -= take;
            c->left -= take;
            if (c->left > 0)
                continue;
        }
        frame_end(c, t); /* header complete and no payload left */
        c->fh_len = 0;
        c->fh_need = 2;
    }
}

/* ------------------------------------------------------------- handshake */

static void conn_start(struct conn *c)
{
    c->fd = socket(g_ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_kill(c, &g_st.connect_errors, "socket", strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->state = C_CONNECTING;
    if (connect(c->fd, g_ai->ai_addr, g_ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        conn_kill(c, &g_st.connect_errors, "connect", strerror(errno));
        return;
    }
    ep_set(c, EPOLLOUT, EPOLL_CTL_ADD);
    c->want_out = true;
}

static void conn_connected(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        conn_kill(c, &g_st.connect_errors, "connect", strerror(err));
        return;
    }
    char key[25];
    ws_key(&c->rng, key, c->accept);
    int n = snprintf(c->request, sizeof c->request,
                     "GET %s HTTP/1.1\r\nHost: %s:%s\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Key: %s\r\n"
                     "Sec-WebSocket-Version: 13\r\n\r\n",
                     g_opt.path, g_opt.host, g_opt.port, key);
    c->req_len = (size_t)n;
    c->req_off = 0;
    c->state = C_UPGRADING;
    if (send_some(c, (const unsigned char *)c->request, c->req_len, &c->req_off))
        conn_want_out(c, c->req_off < c->req_len);
}

/* the value of header `name` in the response head (NUL-terminated) */
static const char *header(const char *head, const char *name, size_t *vlen)
{
    size_t nlen = strlen(name);
    for (const char *line = strstr(head, "\r\n"); line; line = strstr(line, "\r\n")) {
        line += 2;
        if (strncasecmp(line, name, nlen) != 0 || line[nlen] != ':')
            continue;
        const char *v = line + nlen + 1, *end = strstr(v, "\r\n");
        while (*v == ' ' || *v == '\t')
            v++;
        if (!end)
            end = v + strlen(v);
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        *vlen = (size_t)(end - v);
        return v;
    }
    return NULL;
}

/* response bytes: once the head is complete, check it and open */
static void conn_upgrade_read(struct conn *c, const unsigned char *p, size_t n, uint64_t t)
{
    size_t room = sizeof c->head - 1 - c->head_len, take = n < room ? n : room;
    memcpy(c->head + c->head_len, p, take);
    c->head_len += take;
    c->head[c->head_len] = '\0';
    char *end = strstr(c->head, "\r\n\r\n");
    if (!end) {
        if (c->head_len >= sizeof c->head - 1)
            conn_kill(c, &g_st.handshake_errors, "handshake", "response head too long");
        return;
    }
    size_t head_len = (size_t)(end - c->head) + 4, alen;
    end[2] = '\0';
    const char *acc = header(c->head, "Sec-WebSocket-Accept", &alen);
    if (strncmp(c->head, "HTTP/1.1 101", 12) != 0 || !acc || alen != 28 ||
        memcmp(acc, c->accept, 28) != 0) {
        conn_kill(c, &g_st.handshake_errors, "handshake", "no 101 with the right accept key");
        return;
    }
    c->state = C_OPEN;
    c->fh_len = 0;
    c->fh_need = 2;
    g_st.established++;
    size_t rest = c->head_len - head_len; /* frame bytes right behind the head */
    size_t from = take - rest;
    conn_next(c, t);
    conn_consume(c, p + from, n - from, t);
    if (c->state == C_OPEN)
        conn_flush(c);
}

/* ------------------------------------------------------------------ loop */

static void conn_readable(struct conn *c)
{
    ssize_t r = read(c->fd, g_rbuf, sizeof g_rbuf);
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (r <= 0) {
        conn_kill(c, &g_st.closed, "read", r < 0 ? strerror(errno) : "closed by the server");
        return;
    }
    uint64_t t = now_ns();
    if (c->state == C_UPGRADING) {
        conn_upgrade_read(c, g_rbuf, (size_t)r, t);
        return;
    }
    conn_consume(c, g_rbuf, (size_t)r, t);
    if (c->state != C_OPEN)
        return;
    conn_next(c, t);
    conn_flush(c);
}

static void on_event(struct conn *c, uint32_t ev)
{
    if (c->state == C_CONNECTING) {
        conn_connected(c);
        return;
    }
    if (c->state == C_UPGRADING && (ev & EPOLLOUT)) {
        if (send_some(c, (const unsigned char *)c->request, c->req_len, &c->req_off))
            conn_want_out(c, c->req_off < c->req_len);
        if (c->state != C_UPGRADING)
            return;
    }
    if (ev & (EPOLLIN | EPOLLERR | EPOLLHUP))
        conn_readable(c);
    if (c->state == C_OPEN && (ev & EPOLLOUT))
        conn_flush(c);
}

static int run(void)
{
    struct conn *cs = calloc((size_t)g_opt.conns, sizeof *cs);
    if (!cs) {
        perror("wsload: calloc");
        return 1;
    }
    uint64_t start = now_ns();
    g_measure_from = start + secs_to_ns(g_opt.warmup);
    uint64_t end = g_measure_from + secs_to_ns(g_opt.duration);
    struct cpu_window cpu = {.pid = g_opt.cpu_pid};
    bool cpu_begun = false;
    for (long i = 0; i < g_opt.conns; i++) {
        cs[i].fd = -1;
        cs[i].rng = 0x9E3779B97F4A7C15ull * (uint64_t)(i + 1) | 1;
        conn_start(&cs[i]);
    }
    struct epoll_event evs[MAX_EVENTS];
    while (!g_stop && now_ns() < end) {
        if (!cpu_begun && now_ns() >= g_measure_from) {
            cpu_begin(&cpu);
            cpu_begun = true;
        }
        int n = epoll_wait(g_ep, evs, MAX_EVENTS, wait_ms(end));
        if (n < 0 && errno != EINTR) {
            perror("wsload: epoll_wait");
            exit(1);
        }
        for (int i = 0; i < n; i++)
            on_event(evs[i].data.ptr, evs[i].events);
    }
    uint64_t stop = now_ns();
    cpu_end(&cpu);
    g_draining = true;
    double secs = stop > g_measure_from ? (double)(stop - g_measure_from) / 1e9 : 0;
    double rate = secs > 0 ? (double)g_st.msgs / secs : 0;
    printf("msgs_per_s=%.0f mb_per_s=%.3f", rate, rate * (double)g_size / 1e6);
    hist_print(stdout, &g_hist);
    printf(" errors=%llu conns=%ld msgs=%llu secs=%.3f size=%zu connect_errors=%llu"
           " handshake_errors=%llu mismatches=%llu protocol=%llu closed=%llu extra=%llu"
           " pings=%llu",
           (unsigned long long)total_errors(), g_st.established, (unsigned long long)g_st.msgs,
           secs, g_size, (unsigned long long)g_st.connect_errors,
           (unsigned long long)g_st.handshake_errors, (unsigned long long)g_st.mismatches,
           (unsigned long long)g_st.protocol, (unsigned long long)g_st.closed,
           (unsigned long long)g_st.extra, (unsigned long long)g_st.pings);
    cpu_print(stdout, &cpu);
    printf("\n");
    fflush(stdout);
    for (long i = 0; i < g_opt.conns; i++)
        if (cs[i].fd >= 0)
            close(cs[i].fd);
    free(cs);
    return total_errors() == 0 && g_st.msgs > 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv, &g_opt);
    setup_signals();
    struct addrinfo *ai = resolve("wsload", g_opt.host, g_opt.port, SOCK_STREAM);
    g_ai = ai;
    raise_nofile(g_opt.conns + 64);
    payload_init((size_t)g_opt.size, g_opt.text);
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) {
        perror("wsload: epoll_create1");
        return 1;
    }
    int rc = run();
    freeaddrinfo(ai);
    free(g_pattern);
    free(g_frames);
    close(g_ep);
    return rc;
}
