/*
 * https_libev.c - reference C HTTPS/1.1 server on libev + OpenSSL 3 for the
 * berth benchmarks: http_libev.c over TLS, the plain-C baseline for the
 * HTTPS keep-alive, handshake and idle-TLS-connection workloads.
 *
 * Certificate chain and key (PEM) come from $TLS_CERT and $TLS_KEY (make a
 * pair with scripts/mkcerts). Listens on 127.0.0.1:$PORT ($PORT unset or
 * 0 = ephemeral), prints "listening on 127.0.0.1:PORT" when ready and
 * answers every request (anything up to "\r\n\r\n") with
 *   HTTP/1.1 200 OK / Content-Type: text/plain / Content-Length: 13
 *   Hello, World!
 * on a keep-alive connection, like http_libev.c. "Connection: close" is not
 * honoured: the client closes.
 *
 * TLS: TLS 1.2 and 1.3 with OpenSSL's default ciphers, key exchange on
 * X25519 or P-256, session tickets on (resumption), renegotiation off, and
 * SSL_MODE_RELEASE_BUFFERS so that an idle connection holds no record
 * buffers. Everything is non-blocking: one ev_io per connection waits for
 * whatever OpenSSL last asked for (WANT_READ or WANT_WRITE), whether in
 * SSL_do_handshake, SSL_read or SSL_write, and the connection's state is
 * simply re-run from the top on every event.
 *
 * TLS_BIO=queue switches the transport to berth's design (src/tls.c), so
 * the two can be measured against each other on the same server: OpenSSL
 * reads straight from the descriptor as with SSL_set_fd, but writes go
 * through a BIO that sends at once and queues what the kernel refuses in a
 * per-connection buffer, drained on EV_WRITE; SSL_write then never
 * returns WANT_WRITE. Default: SSL_set_fd.
 *
 * Build: cc -O2 -Wall -Wextra -o https_libev https_libev.c -lev -lssl -lcrypto
 */
#include "libev_server.h"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <stdbool.h>

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 13\r\n"
                               "\r\n"
                               "Hello, World!";
#define RESPONSE_LEN (sizeof RESPONSE - 1)
#define RESPONSE_COPIES 512

struct conn {
    ev_io io;         /* the one watcher; its events follow OpenSSL's wants */
    SSL *ssl;
    char *q;          /* TLS_BIO=queue: encrypted bytes the kernel refused */
    size_t qlen, qcap;
    bool established; /* handshake done */
    unsigned match;   /* how much of "\r\n\r\n" has been seen */
    size_t pending;   /* response bytes still to send */
};

static SSL_CTX *g_ctx;
static char g_in[16 * 1024]; /* one TLS record at most per SSL_read */
static char g_out[RESPONSE_LEN * RESPONSE_COPIES];

/* feed bytes to the end-of-head matcher; returns complete requests seen */
static size_t count_requests(struct conn *c, const char *p, size_t n)
{
    static const char END[4] = {'\r', '\n', '\r', '\n'};
    size_t requests = 0;
    unsigned m = c->match;
    for (size_t i = 0; i < n; i++) {
        if (p[i] == END[m])
            m++;
        else
            m = p[i] == '\r';
        if (m == 4) {
            requests++;
            m = 0;
        }
    }
    c->match = m;
    return requests;
}

static BIO_METHOD *g_queue_bio; /* NULL: SSL_set_fd */

static int queue_write(BIO *b, const char *p, int len)
{
    struct conn *c = BIO_get_data(b);
    size_t sent = 0;
    BIO_clear_retry_flags(b);
    if (c->qlen == 0) {
        ssize_t n = send(c->io.fd, p, (size_t)len, MSG_NOSIGNAL);
        if (n < 0 && errno != EAGAIN)
            return len; /* the connection is gone: the next read says so */
        sent = n > 0 ? (size_t)n : 0;
    }
    if (sent < (size_t)len) {
        size_t need = c->qlen + (size_t)len - sent;
        if (need > c->qcap) {
            char *q = realloc(c->q, need * 2);
            if (!q)
                return -1;
            c->q = q;
            c->qcap = need * 2;
        }
        memcpy(c->q + c->qlen, p + sent, (size_t)len - sent);
        c->qlen = need;
    }
    return len;
}

static int queue_read(BIO *b, char *p, int len)
{
    struct conn *c = BIO_get_data(b);
    BIO_clear_retry_flags(b);
    ssize_t n = recv(c->io.fd, p, (size_t)len, 0);
    if (n < 0 && errno == EAGAIN)
        BIO_set_retry_read(b);
    return n < 0 ? -1 : (int)n;
}

static long queue_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)b; (void)num; (void)ptr;
    return cmd == BIO_CTRL_FLUSH;
}

/* TLS_BIO=queue: send what is queued; the queue's memory goes when empty */
static void queue_flush(struct conn *c)
{
    size_t off = 0;
    while (off < c->qlen) {
        ssize_t n = send(c->io.fd, c->q + off, c->qlen - off, MSG_NOSIGNAL);
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    memmove(c->q, c->q + off, c->qlen - off);
    c->qlen -= off;
    if (c->qlen == 0) {
        free(c->q);
        c->q = NULL;
        c->qcap = 0;
    }
}

static void conn_close(struct ev_loop *loop, struct conn *c)
{
    ev_io_stop(loop, &c->io);
    free(c->q);
    SSL_free(c->ssl);
    close(c->io.fd);
    free(c);
    ERR_clear_error(); /* SSL_get_error needs an empty queue before each call */
}

/* wait for `events` (EV_READ or EV_WRITE), and to drain the queue */
static void conn_wait(struct ev_loop *loop, struct conn *c, int events)
{
    if (c->qlen > 0)
        events |= EV_WRITE;
    if ((c->io.events & (EV_READ | EV_WRITE)) == events && ev_is_active(&c->io))
        return;
    ev_io_stop(loop, &c->io);
    ev_io_set(&c->io, c->io.fd, events);
    ev_io_start(loop, &c->io);
}

/* after an SSL call returned rc <= 0: wait for what OpenSSL wants, or close */
static void conn_blocked(struct ev_loop *loop, struct conn *c, int rc)
{
    switch (SSL_get_error(c->ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        conn_wait(loop, c, EV_READ);
        return;
    case SSL_ERROR_WANT_WRITE:
        conn_wait(loop, c, EV_WRITE);
        return;
    case SSL_ERROR_ZERO_RETURN:
        SSL_shutdown(c->ssl); /* answer the peer's close_notify, best effort */
        conn_close(loop, c);
        return;
    default: /* EOF without close_notify, reset, protocol error */
        conn_close(loop, c);
        return;
    }
}

/*
 * Run the connection as far as it goes: finish the handshake, send what is
 * pending, then read and count requests. Output first, and no reading while
 * output is pending, so an SSL_write that wants a retry is retried with the
 * same arguments (OpenSSL requires that).
 */
static void conn_run(struct ev_loop *loop, struct conn *c)
{
    if (!c->established) {
        int rc = SSL_do_handshake(c->ssl);
        if (rc != 1) {
            conn_blocked(loop, c, rc);
            return;
        }
        c->established = true;
    }
    for (;;) {
        if (c->pending > 0) {
            size_t pos = (RESPONSE_LEN - c->pending % RESPONSE_LEN) % RESPONSE_LEN;
            size_t len = sizeof g_out - pos;
            if (len > c->pending)
                len = c->pending;
            int w = SSL_write(c->ssl, g_out + pos, (int)len);
            if (w <= 0) {
                conn_blocked(loop, c, w);
                return;
            }
            c->pending -= (size_t)w;
            continue;
        }
        int n = SSL_read(c->ssl, g_in, (int)sizeof g_in);
        if (n <= 0) {
            conn_blocked(loop, c, n);
            return;
        }
        c->pending += count_requests(c, g_in, (size_t)n) * RESPONSE_LEN;
    }
}

static void on_io(struct ev_loop *loop, ev_io *w, int revents)
{
    struct conn *c = CONTAINER_OF(w, struct conn, io);
    if ((revents & EV_WRITE) && c->qlen > 0) {
        queue_flush(c);
        if (c->qlen > 0)
            return;
    }
    conn_run(loop, c);
}

static void on_conn(struct ev_loop *loop, int fd)
{
    struct conn *c = calloc(1, sizeof *c);
    SSL *ssl = c ? SSL_new(g_ctx) : NULL;
    BIO *b = ssl && g_queue_bio ? BIO_new(g_queue_bio) : NULL;
    if (!ssl || (g_queue_bio ? !b : SSL_set_fd(ssl, fd) != 1)) {
        SSL_free(ssl);
        free(c);
        close(fd);
        ERR_clear_error();
        return;
    }
    if (b) {
        BIO_set_data(b, c);
        BIO_set_init(b, 1);
        SSL_set_bio(ssl, b, b);
    }
    c->ssl = ssl;
    SSL_set_accept_state(ssl);
    ev_io_init(&c->io, on_io, fd, EV_READ);
    conn_run(loop, c); /* the ClientHello may be there already */
}

static SSL_CTX *tls_context(void)
{
    const char *cert = getenv("TLS_CERT"), *key = getenv("TLS_KEY");
    if (!cert || !*cert || !key || !*key) {
        fprintf(stderr, "https_libev: set TLS_CERT and TLS_KEY to PEM files\n");
        exit(2);
    }
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx || SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1 ||
        SSL_CTX_set1_groups_list(ctx, "X25519:P-256") != 1 ||
        SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
        ERR_print_errors_fp(stderr);
        fprintf(stderr, "https_libev: cannot set up TLS with %s and %s\n", cert, key);
        exit(1);
    }
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS | SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
    /* tickets are on by default (no SSL_OP_NO_TICKET); the id context lets
     * the stateful cache resume TLS 1.2 clients that send no ticket */
    static const unsigned char SID_CTX[] = "https_libev";
    SSL_CTX_set_session_id_context(ctx, SID_CTX, sizeof SID_CTX - 1);
    return ctx;
}

int main(void)
{
    for (size_t i = 0; i < RESPONSE_COPIES; i++)
        memcpy(g_out + i * RESPONSE_LEN, RESPONSE, RESPONSE_LEN);
    g_ctx = tls_context();
    const char *bio = getenv("TLS_BIO");
    if (bio && strcmp(bio, "queue") == 0) {
        g_queue_bio = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "queue");
        if (!g_queue_bio || !BIO_meth_set_write(g_queue_bio, queue_write) ||
            !BIO_meth_set_read(g_queue_bio, queue_read) ||
            !BIO_meth_set_ctrl(g_queue_bio, queue_ctrl))
            return 1;
    }
    return bench_serve(on_conn);
}
