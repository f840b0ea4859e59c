/*
 * tlsload.c - TLS handshake load generator for the berth benchmarks.
 *
 * One thread, one epoll loop, OpenSSL 3 in non-blocking mode, against an
 * HTTPS "hello" server (https_libev.c, nginx, berth's examples/http.lua with
 * TLS_CERT/TLS_KEY).
 *
 *   handshakes (default)  N concurrent connections (-c), each a loop of:
 *                         connect -> TLS handshake -> one request
 *                         "GET PATH HTTP/1.1" with "Connection: close" ->
 *                         the whole response -> close_notify + close -> again.
 *                         A cycle counts once its response is complete and
 *                         correct; figure: handshakes_per_s.
 *   resumed (--resume)    the same, but each connection offers the session
 *                         it got last (a TLS 1.3 ticket, or a TLS 1.2 ticket
 *                         or session id), so after its first cycle every
 *                         handshake should be a resumption; resumed_frac says
 *                         how many were.
 *   idle (--idle N)       opens N connections, each doing the handshake and
 *                         one keep-alive request (so the server has finished
 *                         its side of the handshake), prints "idle_ready
 *                         conns=N errors=E", holds them for --hold seconds
 *                         (or until SIGTERM/SIGINT) and closes them. With
 *                         --idle 1 --hold 0 it is a probe: exit status 0 iff
 *                         the server speaks TLS and answers 200.
 *
 * A response is correct when its status is 200, it has a Content-Length and
 * its body is "Hello, World!" (--body changes the expected body). Anything
 * else, a failed connect or handshake, a connection closed early, or a cycle
 * longer than --timeout counts as an error. The certificate is not verified
 * unless --cafile is given (verification is client-side CPU that the server
 * does not spend). Latency is per cycle, from connect() to the last byte of
 * the response, for cycles completed after the warm-up.
 *
 * With --cpu-pid PID, the CPU seconds of process PID over the measured
 * window are reported as srv_cpu_s.
 *
 * Output: one line on stdout, e.g.
 *   handshakes_per_s=4210 resumed_frac=0.000 p50_us=… p99_us=… p999_us=… errors=0 …
 * Exit status: 0 = no errors and at least one cycle, 1 = otherwise, 2 = usage.
 *
 * Build: cc -O2 -Wall -Wextra -o tlsload tlsload.c -lssl -lcrypto
 */
#include "load_util.h"

#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/epoll.h>

#define MAX_EVENTS 256
#define RESP_MAX 4096
#define IDLE_CONNECT_BATCH 256

/* ---------------------------------------------------------------- options */

struct options {
    const char *host;
    const char *port;
    const char *sni;
    const char *path;
    const char *body;
    const char *cafile;
    long conns;
    double duration;
    double warmup;
    double timeout;
    long idle;
    double hold;
    bool resume;
    int max_version; /* 0 = OpenSSL's highest */
    long cpu_pid;
};

static void usage(FILE *f)
{
    fprintf(f,
        "usage: tlsload -p PORT [options]\n"
        "  -H, --host HOST        server address (default 127.0.0.1)\n"
        "  -p, --port PORT        server port (required)\n"
        "  -c, --conns N          concurrent connections (default 50)\n"
        "  -t, --duration SEC     measured time (default 5)\n"
        "  -w, --warmup SEC       unmeasured time before it (default 0)\n"
        "      --resume           resume the previous session on every new connection\n"
        "      --sni NAME         server name sent (default localhost; also the Host header)\n"
        "      --path PATH        request target (default /)\n"
        "      --body TEXT        expected response body (default \"Hello, World!\")\n"
        "      --cafile FILE      verify the server certificate against FILE\n"
        "      --tls-max 1.2|1.3  highest TLS version offered (default 1.3)\n"
        "      --timeout SEC      longest connect-to-response cycle (default 10)\n"
        "  -i, --idle N           idle mode: open N connections and hold them\n"
        "      --hold SEC         idle mode: hold time (default: --duration)\n"
        "      --cpu-pid PID      report the CPU seconds of process PID (the server)\n"
        "  -h, --help\n");
}

static bool parse_option(int opt, const char *arg, struct options *o)
{
    switch (opt) {
    case 'H': o->host = arg; return true;
    case 'p': o->port = arg; return true;
    case 'c': return parse_long(arg, 1, 100000, &o->conns);
    case 't': return parse_secs(arg, 0.001, 3600, &o->duration);
    case 'w': return parse_secs(arg, 0, 600, &o->warmup);
    case 'i': return parse_long(arg, 1, 1000000, &o->idle);
    case 'o': return parse_secs(arg, 0, 3600, &o->hold);
    case 'r': o->resume = true; return true;
    case 'S': o->sni = arg; return true;
    case 'a': o->path = arg; return *arg == '/';
    case 'b': o->body = arg; return true;
    case 'C': o->cafile = arg; return true;
    case 'T': return parse_secs(arg, 0.01, 600, &o->timeout);
    case 'P': return parse_long(arg, 1, 1L << 30, &o->cpu_pid);
    case 'm':
        if (strcmp(arg, "1.2") == 0)
            o->max_version = TLS1_2_VERSION;
        else if (strcmp(arg, "1.3") == 0)
            o->max_version = TLS1_3_VERSION;
        else
            return false;
        return true;
    default: return false;
    }
}

static void parse_args(int argc, char **argv, struct options *o)
{
    static const struct option longopts[] = {
        {"host", required_argument, 0, 'H'},   {"port", required_argument, 0, 'p'},
        {"conns", required_argument, 0, 'c'},  {"duration", required_argument, 0, 't'},
        {"warmup", required_argument, 0, 'w'}, {"idle", required_argument, 0, 'i'},
        {"hold", required_argument, 0, 'o'},   {"resume", no_argument, 0, 'r'},
        {"sni", required_argument, 0, 'S'},    {"path", required_argument, 0, 'a'},
        {"body", required_argument, 0, 'b'},   {"cafile", required_argument, 0, 'C'},
        {"timeout", required_argument, 0, 'T'}, {"cpu-pid", required_argument, 0, 'P'},
        {"tls-max", required_argument, 0, 'm'}, {"help", no_argument, 0, 'h'},
        {0, 0, 0, 0},
    };
    *o = (struct options){.host = "127.0.0.1", .sni = "localhost", .path = "/",
                          .body = "Hello, World!", .conns = 50, .duration = 5,
                          .timeout = 10, .hold = -1};
    int opt;
    while ((opt = getopt_long(argc, argv, "H:p:c:t:w:i:h", longopts, NULL)) != -1) {
        if (opt == 'h') {
            usage(stdout);
            exit(0);
        }
        if (!parse_option(opt, optarg, o)) {
            if (opt != '?')
                fprintf(stderr, "tlsload: bad value for option: %s\n", optarg);
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

/* ------------------------------------------------------------ connections */

enum conn_state { C_FREE, C_CONNECTING, C_HANDSHAKE, C_REQUEST, C_RESPONSE, C_IDLE };

struct conn {
    int fd;
    enum conn_state state;
    uint32_t events;      /* registered epoll events, 0 = not registered */
    SSL *ssl;
    SSL_SESSION *session; /* --resume: the last session the server gave */
    uint64_t t0;          /* connect() time */
    size_t resp_len;
    char resp[RESP_MAX];
};

struct stats {
    uint64_t cycles;     /* measured, correct cycles */
    uint64_t resumed;    /* of which resumed a session */
    uint64_t connect_errors;
    uint64_t tls_errors; /* handshake or record layer failures */
    uint64_t bad;        /* wrong or unparsable responses */
    uint64_t closed;     /* closed by the server before the response ended */
    uint64_t timeouts;
    uint64_t extra;      /* idle mode: bytes from the server after the response */
    long established;    /* idle mode: connections that got their response */
};

static int g_ep;
static struct options g_opt;
static struct stats g_st;
static struct hist g_hist;
static SSL_CTX *g_ctx;
static const struct addrinfo *g_ai;
static char g_request[512];
static int g_request_len;
static uint64_t g_measure_from;
static bool g_draining;
static long g_busy; /* connections between connect() and their end or idle */

static uint64_t total_errors(void)
{
    return g_st.connect_errors + g_st.tls_errors + g_st.bad + g_st.closed + g_st.timeouts +
           g_st.extra;
}

static void report_once(const char *what, const char *detail)
{
    static bool reported;
    if (!reported)
        fprintf(stderr, "tlsload: %s: %s\n", what, detail);
    reported = true;
}

static void ep_want(struct conn *c, uint32_t events)
{
    if (c->events == events)
        return;
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(g_ep, c->events ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) < 0) {
        perror("tlsload: epoll_ctl");
        exit(1);
    }
    c->events = events;
}

/* end the connection (close_notify first when `polite`) */
static void conn_end(struct conn *c, bool polite)
{
    if (c->state != C_FREE && c->state != C_IDLE)
        g_busy--;
    if (c->ssl) {
        if (polite)
            SSL_shutdown(c->ssl); /* one try: a benchmark does not wait for the reply */
        SSL_free(c->ssl);
        c->ssl = NULL;
    }
    if (c->fd >= 0)
        close(c->fd); /* also leaves the epoll set */
    c->fd = -1;
    c->events = 0;
    c->state = C_FREE;
    ERR_clear_error();
}

static void conn_fail(struct conn *c, uint64_t *counter, const char *what, const char *detail)
{
    (*counter)++;
    report_once(what, detail);
    conn_end(c, false);
}

/* the reason of a failed SSL call, for the first error report */
static const char *ssl_reason(SSL *ssl, int rc)
{
    static char buf[256];
    int err = SSL_get_error(ssl, rc);
    unsigned long e = ERR_peek_error();
    if (e)
        ERR_error_string_n(e, buf, sizeof buf);
    else if (err == SSL_ERROR_SYSCALL)
        snprintf(buf, sizeof buf, "%s", errno ? strerror(errno) : "unexpected EOF");
    else if (err == SSL_ERROR_ZERO_RETURN)
        snprintf(buf, sizeof buf, "close_notify from the server");
    else
        snprintf(buf, sizeof buf, "SSL error %d", err);
    return buf;
}

/* after an SSL call returned rc <= 0: wait if it only wants I/O, else fail */
static bool ssl_wait(struct conn *c, int rc, uint64_t *counter, const char *what)
{
    int err = SSL_get_error(c->ssl, rc);
    if (err == SSL_ERROR_WANT_READ) {
        ep_want(c, EPOLLIN);
        return true;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
        ep_want(c, EPOLLOUT);
        return true;
    }
    conn_fail(c, counter, what, ssl_reason(c->ssl, rc));
    return false;
}

/* --resume: OpenSSL hands every new session (TLS 1.3: every ticket) here */
static int on_new_session(SSL *ssl, SSL_SESSION *sess)
{
    struct conn *c = SSL_get_app_data(ssl);
    if (!c)
        return 0;
    SSL_SESSION_free(c->session);
    c->session = sess;
    return 1; /* we keep the reference */
}

static void conn_start(struct conn *c)
{
    c->resp_len = 0;
    c->t0 = now_ns();
    c->events = 0;
    c->state = C_CONNECTING;
    g_busy++;
    c->fd = socket(g_ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        conn_fail(c, &g_st.connect_errors, "socket", strerror(errno));
        return;
    }
    int one = 1;
    setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(c->fd, g_ai->ai_addr, g_ai->ai_addrlen) < 0 && errno != EINPROGRESS) {
        conn_fail(c, &g_st.connect_errors, "connect", strerror(errno));
        return;
    }
    ep_want(c, EPOLLOUT);
}

/* the TCP connect finished: set up the TLS client side */
static bool conn_connected(struct conn *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
        err = errno;
    if (err) {
        conn_fail(c, &g_st.connect_errors, "connect", strerror(err));
        return false;
    }
    c->ssl = SSL_new(g_ctx);
    if (!c->ssl || SSL_set_fd(c->ssl, c->fd) != 1 ||
        SSL_set_tlsext_host_name(c->ssl, g_opt.sni) != 1 ||
        (g_opt.cafile && SSL_set1_host(c->ssl, g_opt.sni) != 1) ||
        (c->session && SSL_set_session(c->ssl, c->session) != 1)) {
        conn_fail(c, &g_st.tls_errors, "SSL setup", ERR_error_string(ERR_get_error(), NULL));
        return false;
    }
    SSL_set_app_data(c->ssl, c);
    SSL_set_connect_state(c->ssl);
    c->state = C_HANDSHAKE;
    return true;
}

/* 1 = a complete, correct response; 0 = need more; -1 = wrong */
static int response_check(const struct conn *c)
{
    const char *r = c->resp, *end = memmem(r, c->resp_len, "\r\n\r\n", 4);
    if (!end)
        return c->resp_len < RESP_MAX ? 0 : -1;
    size_t head = (size_t)(end - r) + 4;
    if (c->resp_len < 12 || memcmp(r, "HTTP/1.", 7) != 0 || memcmp(r + 8, " 200", 4) != 0)
        return -1;
    /* Content-Length, in any case, at the start of a header line */
    long clen = -1;
    for (const char *p = memchr(r, '\n', head); p && p < end; p = memchr(p + 1, '\n', (size_t)(end - p))) {
        if (strncasecmp(p + 1, "content-length:", 15) == 0) {
            clen = strtol(p + 16, NULL, 10);
            break;
        }
    }
    size_t blen = strlen(g_opt.body);
    if (clen < 0 || (size_t)clen != blen)
        return -1;
    if (c->resp_len < head + blen)
        return 0;
    if (c->resp_len > head + blen || memcmp(r + head, g_opt.body, blen) != 0)
        return -1;
    return 1;
}

/* a cycle ended with a correct response */
static void conn_done(struct conn *c)
{
    uint64_t t = now_ns();
    if (g_opt.idle > 0) {
        c->state = C_IDLE;
        g_busy--;
        g_st.established++;
        ep_want(c, EPOLLIN | EPOLLRDHUP);
        return;
    }
    if (t >= g_measure_from) {
        g_st.cycles++;
        g_st.resumed += SSL_session_reused(c->ssl) == 1;
        hist_add(&g_hist, t - c->t0);
    }
    conn_end(c, true);
    if (!g_draining)
        conn_start(c);
}

/* run the connection until it blocks or ends */
static void conn_run(struct conn *c)
{
    for (;;) {
        switch (c->state) {
        case C_CONNECTING:
            if (!conn_connected(c))
                return;
            break;
        case C_HANDSHAKE: {
            int rc = SSL_do_handshake(c->ssl);
            if (rc != 1) {
                ssl_wait(c, rc, &g_st.tls_errors, "handshake");
                return;
            }
            c->state = C_REQUEST;
            break;
        }
        case C_REQUEST: {
            int w = SSL_write(c->ssl, g_request, g_request_len);
            if (w <= 0) {
                ssl_wait(c, w, &g_st.tls_errors, "write");
                return;
            }
            c->state = C_RESPONSE; /* no partial writes: w is the whole request */
            break;
        }
        case C_RESPONSE: {
            int n = SSL_read(c->ssl, c->resp + c->resp_len, (int)(RESP_MAX - c->resp_len));
            if (n <= 0) {
                int err = SSL_get_error(c->ssl, n);
                if (err == SSL_ERROR_ZERO_RETURN || err == SSL_ERROR_SYSCALL)
                    conn_fail(c, &g_st.closed, "response", "closed before its end");
                else
                    ssl_wait(c, n, &g_st.tls_errors, "read");
                return;
            }
            c->resp_len += (size_t)n;
            int ok = response_check(c);
            if (ok < 0) {
                conn_fail(c, &g_st.bad, "response", "not a 200 with the expected body");
                return;
            }
            if (ok > 0) {
                conn_done(c); /* idle, or a new cycle waiting for its connect */
                return;
            }
            break;
        }
        case C_IDLE: {
            char buf[256];
            int n = SSL_read(c->ssl, buf, sizeof buf);
            if (n > 0)
                conn_fail(c, &g_st.extra, "idle", "unexpected bytes from the server");
            else if (SSL_get_error(c->ssl, n) != SSL_ERROR_WANT_READ)
                conn_fail(c, &g_st.closed, "idle", "closed by the server");
            return;
        }
        case C_FREE:
            return;
        }
    }
}

/* end the cycles that have run longer than --timeout */
static void expire(struct conn *cs, long n, bool restart)
{
    uint64_t t = now_ns(), limit = secs_to_ns(g_opt.timeout);
    for (long i = 0; i < n; i++) {
        struct conn *c = &cs[i];
        if (c->state == C_FREE || c->state == C_IDLE || t - c->t0 < limit)
            continue;
        conn_fail(c, &g_st.timeouts, "timeout", "no complete response in time");
        if (restart && !g_draining)
            conn_start(c);
    }
}

static void poll_once(uint64_t deadline)
{
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(g_ep, evs, MAX_EVENTS, wait_ms(deadline));
    if (n < 0 && errno != EINTR) {
        perror("tlsload: epoll_wait");
        exit(1);
    }
    for (int i = 0; i < n; i++)
        conn_run(evs[i].data.ptr);
}

static struct conn *conns_alloc(long n)
{
    struct conn *cs = calloc((size_t)n, sizeof *cs);
    if (!cs) {
        perror("tlsload: calloc");
        exit(1);
    }
    for (long i = 0; i < n; i++)
        cs[i].fd = -1;
    return cs;
}

static void conns_free(struct conn *cs, long n)
{
    for (long i = 0; i < n; i++) {
        conn_end(&cs[i], false);
        SSL_SESSION_free(cs[i].session);
    }
    free(cs);
}

/* ------------------------------------------------------------- load modes */

static int run_load(void)
{
    struct conn *cs = conns_alloc(g_opt.conns);
    uint64_t start = now_ns();
    g_measure_from = start + secs_to_ns(g_opt.warmup);
    uint64_t end = g_measure_from + secs_to_ns(g_opt.duration), next_expire = start;
    struct cpu_window cpu = {.pid = g_opt.cpu_pid};
    bool cpu_begun = false;
    for (long i = 0; i < g_opt.conns; i++)
        conn_start(&cs[i]);
    while (!g_stop && now_ns() < end) {
        if (!cpu_begun && now_ns() >= g_measure_from) {
            cpu_begin(&cpu);
            cpu_begun = true;
        }
        poll_once(end);
        if (now_ns() >= next_expire) {
            expire(cs, g_opt.conns, true);
            next_expire = now_ns() + 100000000u;
        }
    }
    uint64_t stop = now_ns();
    cpu_end(&cpu);
    g_draining = true;
    double secs = stop > g_measure_from ? (double)(stop - g_measure_from) / 1e9 : 0;
    double rate = secs > 0 ? (double)g_st.cycles / secs : 0;
    printf("handshakes_per_s=%.0f resumed_frac=%.3f", rate,
           g_st.cycles ? (double)g_st.resumed / (double)g_st.cycles : 0.0);
    hist_print(stdout, &g_hist);
    printf(" errors=%llu conns=%ld handshakes=%llu resumed=%llu secs=%.3f connect_errors=%llu"
           " tls_errors=%llu bad=%llu closed=%llu timeouts=%llu",
           (unsigned long long)total_errors(), g_opt.conns, (unsigned long long)g_st.cycles,
           (unsigned long long)g_st.resumed, secs, (unsigned long long)g_st.connect_errors,
           (unsigned long long)g_st.tls_errors, (unsigned long long)g_st.bad,
           (unsigned long long)g_st.closed, (unsigned long long)g_st.timeouts);
    cpu_print(stdout, &cpu);
    printf("\n");
    fflush(stdout);
    conns_free(cs, g_opt.conns);
    return total_errors() == 0 && g_st.cycles > 0 ? 0 : 1;
}

static void idle_print(const char *tag)
{
    printf("%s conns=%ld errors=%llu connect_errors=%llu tls_errors=%llu bad=%llu closed=%llu"
           " timeouts=%llu extra=%llu\n",
           tag, g_st.established, (unsigned long long)total_errors(),
           (unsigned long long)g_st.connect_errors, (unsigned long long)g_st.tls_errors,
           (unsigned long long)g_st.bad, (unsigned long long)g_st.closed,
           (unsigned long long)g_st.timeouts, (unsigned long long)g_st.extra);
    fflush(stdout);
}

static int run_idle(void)
{
    struct conn *cs = conns_alloc(g_opt.idle);
    long next = 0;
    uint64_t next_expire = now_ns();
    /* at most IDLE_CONNECT_BATCH handshakes in progress at once */
    while (!g_stop && (next < g_opt.idle || g_busy > 0)) {
        while (next < g_opt.idle && g_busy < IDLE_CONNECT_BATCH)
            conn_start(&cs[next++]);
        poll_once(now_ns() + 100000000u);
        if (now_ns() >= next_expire) {
            expire(cs, next, false);
            next_expire = now_ns() + 100000000u;
        }
    }
    idle_print("idle_ready");
    uint64_t end = now_ns() + secs_to_ns(g_opt.hold);
    while (!g_stop && now_ns() < end)
        poll_once(end);
    idle_print("idle");
    conns_free(cs, g_opt.idle);
    return total_errors() == 0 && g_st.established == g_opt.idle ? 0 : 1;
}

/* ------------------------------------------------------------------ setup */

static SSL_CTX *client_context(void)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set_max_proto_version(ctx, g_opt.max_version) != 1 ||
        SSL_CTX_set1_groups_list(ctx, "X25519:P-256") != 1) {
        ERR_print_errors_fp(stderr);
        exit(1);
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    if (g_opt.cafile) {
        if (SSL_CTX_load_verify_locations(ctx, g_opt.cafile, NULL) != 1) {
            ERR_print_errors_fp(stderr);
            exit(2);
        }
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    }
    if (g_opt.resume) {
        /* sessions live in struct conn, not in OpenSSL's client cache */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(ctx, on_new_session);
    } else {
        /* a full handshake each time; the server still issues its tickets,
         * as it would to a browser, and they are dropped */
        SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    }
    return ctx;
}

int main(int argc, char **argv)
{
    parse_args(argc, argv, &g_opt);
    setup_signals();
    g_request_len = snprintf(g_request, sizeof g_request,
                             "GET %s HTTP/1.1\r\nHost: %s\r\n%s\r\n", g_opt.path, g_opt.sni,
                             g_opt.idle > 0 ? "" : "Connection: close\r\n");
    if (g_request_len <= 0 || (size_t)g_request_len >= sizeof g_request) {
        fprintf(stderr, "tlsload: --path or --sni too long\n");
        return 2;
    }
    struct addrinfo *ai = resolve("tlsload", g_opt.host, g_opt.port, SOCK_STREAM);
    g_ai = ai;
    raise_nofile((g_opt.idle > 0 ? g_opt.idle : g_opt.conns) + 64);
    g_ctx = client_context();
    g_ep = epoll_create1(EPOLL_CLOEXEC);
    if (g_ep < 0) {
        perror("tlsload: epoll_create1");
        return 1;
    }
    int rc = g_opt.idle > 0 ? run_idle() : run_load();
    SSL_CTX_free(g_ctx);
    freeaddrinfo(ai);
    close(g_ep);
    return rc;
}
