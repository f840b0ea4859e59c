/*
 * ws_echo_libev.c - reference C WebSocket (RFC 6455) echo server on libev
 * for the berth benchmarks: the plain-C baseline for the WebSocket workloads.
 *
 * Listens on 127.0.0.1:$PORT ($PORT unset or 0 = ephemeral), prints
 * "listening on 127.0.0.1:PORT" when ready. On any path:
 *   - the opening handshake: a GET with "Upgrade: websocket", "Connection:
 *     Upgrade", "Sec-WebSocket-Version: 13" and a Sec-WebSocket-Key is
 *     answered 101 with Sec-WebSocket-Accept = base64(SHA-1(key + GUID));
 *     anything else gets 400 and is closed. No extensions, no subprotocols.
 *   - text and binary frames are echoed frame by frame with the same opcode
 *     and FIN bit, so a fragmented message comes back as the same fragments
 *     (a valid echo of the whole message); ping is answered with a pong of
 *     the same payload, pong is ignored, close is answered with a close
 *     carrying the same status code, then the connection is closed.
 *   - protocol errors (an unmasked client frame, reserved bits, an unknown
 *     opcode, a fragmented or long control frame, a continuation outside a
 *     fragmented message or a new message inside one) are answered with
 *     close 1002; a frame over 16 MiB with close 1009.
 * Not done (a benchmark peer): UTF-8 validation of text frames (the echo
 * returns the same bytes either way), compression, timeouts.
 *
 * Input is buffered per connection until a whole frame is there, unmasked
 * in place and copied once into the output buffer behind its header. When
 * the socket does not take all the output, reading stops and a write
 * watcher drains it (backpressure). Empty buffers are freed, so an idle
 * connection costs one small struct.
 *
 * Build: cc -O2 -Wall -Wextra -o ws_echo_libev ws_echo_libev.c -lev -lcrypto
 */
#include "libev_server.h"

#include <openssl/sha.h>
#include <stdbool.h>
#include <stdint.h>
#include <strings.h>

#define MAX_HEAD 8192         /* the opening handshake request */
#define MAX_FRAME (16u << 20) /* payload of one frame */

enum { OP_CONT = 0, OP_TEXT = 1, OP_BINARY = 2, OP_CLOSE = 8, OP_PING = 9, OP_PONG = 10 };

struct buf {
    unsigned char *p;
    size_t len, off, cap; /* bytes [off, len) are pending */
};

struct conn {
    ev_io rio;
    ev_io wio;
    bool upgraded;    /* the 101 was sent */
    bool in_fragment; /* inside a fragmented data message */
    bool closing;     /* close once the output is written */
    struct buf in, out;
};

static const char GUID[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/* ---------------------------------------------------------------- buffers */

/* A read goes to g_rbuf and is parsed there; only a partial frame left at
 * its end is copied to the connection's own buffer. Output is built in
 * g_stage and written at once; only what the socket does not take is
 * copied to the connection. So the common case copies nothing extra and
 * an idle connection owns no buffer. */
static unsigned char g_rbuf[64 * 1024];
static struct buf g_stage;

static bool buf_reserve(struct buf *b, size_t more)
{
    if (b->cap - b->len >= more)
        return true;
    if (b->off > 0) { /* compact first */
        memmove(b->p, b->p + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->cap - b->len >= more)
            return true;
    }
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more)
        cap *= 2;
    unsigned char *p = realloc(b->p, cap);
    if (!p)
        return false;
    b->p = p;
    b->cap = cap;
    return true;
}

static bool buf_append(struct buf *b, const void *p, size_t n)
{
    if (!buf_reserve(b, n))
        return false;
    memcpy(b->p + b->len, p, n);
    b->len += n;
    return true;
}

/* drop `n` consumed bytes; an emptied buffer gives its memory back */
static void buf_consume(struct buf *b, size_t n)
{
    b->off += n;
    if (b->off < b->len)
        return;
    free(b->p);
    *b = (struct buf){0};
}

/* ------------------------------------------------------------- connection */

static void conn_close(struct ev_loop *loop, struct conn *c)
{
    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    close(c->rio.fd);
    free(c->in.p);
    free(c->out.p);
    free(c);
}

/* write from b what the socket takes; false on a socket error */
static bool write_some(int fd, struct buf *b)
{
    while (b->off < b->len) {
        ssize_t w = write(fd, b->p + b->off, b->len - b->off);
        if (w > 0)
            b->off += (size_t)w;
        else if (w < 0 && errno == EINTR)
            continue;
        else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        else
            return false;
    }
    return true;
}

/* output is written (or kept): read again only once none is left */
static void conn_settle(struct ev_loop *loop, struct conn *c)
{
    if (c->out.off < c->out.len) {
        ev_io_stop(loop, &c->rio);
        ev_io_start(loop, &c->wio);
        return;
    }
    ev_io_stop(loop, &c->wio);
    if (c->closing)
        conn_close(loop, c);
    else
        ev_io_start(loop, &c->rio);
}

/* write what was staged; keep the rest in the connection */
static void conn_output(struct ev_loop *loop, struct conn *c)
{
    bool ok = write_some(c->rio.fd, &g_stage);
    if (ok && g_stage.off < g_stage.len)
        ok = buf_append(&c->out, g_stage.p + g_stage.off, g_stage.len - g_stage.off);
    g_stage.len = g_stage.off = 0;
    if (!ok) {
        conn_close(loop, c);
        return;
    }
    conn_settle(loop, c);
}

/* ------------------------------------------------------------- handshake */

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

/* the value of header `name` (trimmed) in a request head, or NULL */
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
        while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
            end--;
        *vlen = (size_t)(end - v);
        return v;
    }
    return NULL;
}

/* does a comma-separated header value contain `token` (any case)? */
static bool has_token(const char *v, size_t vlen, const char *token)
{
    size_t tlen = strlen(token);
    for (size_t i = 0; i + tlen <= vlen; i++)
        if (strncasecmp(v + i, token, tlen) == 0 &&
            (i == 0 || v[i - 1] == ',' || v[i - 1] == ' ') &&
            (i + tlen == vlen || v[i + tlen] == ',' || v[i + tlen] == ' '))
            return true;
    return false;
}

/* answer the request head (NUL-terminated); false = it was refused */
static bool handshake(const char *head)
{
    size_t ulen, clen, vlen, klen;
    const char *up = header(head, "Upgrade", &ulen), *conn = header(head, "Connection", &clen);
    const char *ver = header(head, "Sec-WebSocket-Version", &vlen);
    const char *key = header(head, "Sec-WebSocket-Key", &klen);
    if (strncmp(head, "GET ", 4) != 0 || !up || !has_token(up, ulen, "websocket") || !conn ||
        !has_token(conn, clen, "upgrade") || !ver || vlen != 2 || memcmp(ver, "13", 2) != 0 ||
        !key || klen != 24) {
        static const char BAD[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
                                  "Connection: close\r\n\r\n";
        buf_append(&g_stage, BAD, sizeof BAD - 1);
        return false;
    }
    unsigned char cat[24 + sizeof GUID - 1], digest[SHA_DIGEST_LENGTH];
    memcpy(cat, key, 24);
    memcpy(cat + 24, GUID, sizeof GUID - 1);
    SHA1(cat, sizeof cat, digest);
    char accept[29], resp[160];
    base64(digest, sizeof digest, accept);
    int n = snprintf(resp, sizeof resp,
                     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n", accept);
    return buf_append(&g_stage, resp, (size_t)n);
}

/* ---------------------------------------------------------------- frames */

/* queue a server frame (never masked) */
static bool frame_out(unsigned first_byte, const unsigned char *p, size_t n)
{
    unsigned char h[10];
    size_t hl = 2;
    h[0] = (unsigned char)first_byte;
    if (n < 126) {
        h[1] = (unsigned char)n;
    } else if (n <= 0xFFFF) {
        h[1] = 126;
        h[2] = (unsigned char)(n >> 8);
        h[3] = (unsigned char)n;
        hl = 4;
    } else {
        h[1] = 127;
        for (int i = 0; i < 8; i++)
            h[2 + i] = (unsigned char)((uint64_t)n >> (56 - 8 * i));
        hl = 10;
    }
    if (!buf_reserve(&g_stage, hl + n))
        return false;
    memcpy(g_stage.p + g_stage.len, h, hl);
    memcpy(g_stage.p + g_stage.len + hl, p, n);
    g_stage.len += hl + n;
    return true;
}

/* send close with `code` (0 = no status) and stop reading for good */
static void close_with(struct conn *c, unsigned code)
{
    unsigned char st[2] = {(unsigned char)(code >> 8), (unsigned char)code};
    frame_out(0x80 | OP_CLOSE, st, code ? 2 : 0);
    c->closing = true;
}

static void unmask(unsigned char *p, size_t n, const unsigned char key[4])
{
    uint64_t k8;
    unsigned char kk[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
    memcpy(&k8, kk, 8);
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t v;
        memcpy(&v, p + i, 8);
        v ^= k8;
        memcpy(p + i, &v, 8);
    }
    for (; i < n; i++)
        p[i] ^= key[i & 3];
}

/* act on one complete, unmasked frame; false = the connection is closing */
static bool frame_in(struct conn *c, unsigned b0, unsigned char *p, size_t n)
{
    unsigned op = b0 & 0x0F;
    bool fin = b0 & 0x80;
    switch (op) {
    case OP_CONT:
    case OP_TEXT:
    case OP_BINARY:
        if ((op == OP_CONT) != c->in_fragment) {
            close_with(c, 1002);
            return false;
        }
        c->in_fragment = !fin;
        if (!frame_out(b0, p, n)) {
            close_with(c, 1011);
            return false;
        }
        return true;
    case OP_PING:
        frame_out(0x80 | OP_PONG, p, n);
        return true;
    case OP_PONG:
        return true;
    case OP_CLOSE:
        if (n == 1) {
            close_with(c, 1002);
        } else {
            frame_out(0x80 | OP_CLOSE, p, n >= 2 ? 2 : 0);
            c->closing = true;
        }
        return false;
    default:
        close_with(c, 1002);
        return false;
    }
}

/* answer every complete frame in p[0, len); returns the bytes consumed */
static size_t frames(struct conn *c, unsigned char *p, size_t len)
{
    size_t used = 0;
    while (!c->closing && len - used >= 2) {
        unsigned char *f = p + used;
        size_t avail = len - used;
        unsigned b0 = f[0], b1 = f[1], op = b0 & 0x0F;
        uint64_t n = b1 & 0x7F;
        size_t hl = n == 126 ? 4 : n == 127 ? 10 : 2;
        if ((b0 & 0x70) || !(b1 & 0x80) || (op >= 3 && op <= 7) || op > 10 ||
            (op >= 8 && (!(b0 & 0x80) || n > 125))) {
            close_with(c, 1002); /* reserved bits, unmasked, unknown op, bad control */
            break;
        }
        if (avail < hl + 4)
            break;
        if (hl == 4) {
            n = (uint64_t)f[2] << 8 | f[3];
        } else if (hl == 10) {
            n = 0;
            for (int i = 0; i < 8; i++)
                n = n << 8 | f[2 + i];
        }
        if (n > MAX_FRAME) {
            close_with(c, 1009);
            break;
        }
        if (avail < hl + 4 + n)
            break;
        unsigned char *payload = f + hl + 4;
        unmask(payload, (size_t)n, f + hl);
        used += hl + 4 + (size_t)n;
        if (!frame_in(c, b0, payload, (size_t)n))
            break;
    }
    return used;
}

/* the opening handshake, if the whole request head is in p[0, len);
 * returns the bytes consumed */
static size_t opening(struct conn *c, unsigned char *p, size_t len)
{
    unsigned char *end = memmem(p, len, "\r\n\r\n", 4);
    if (!end) {
        if (len >= MAX_HEAD) {
            static const char BIG[] = "HTTP/1.1 431 Request Header Fields Too Large\r\n"
                                      "Content-Length: 0\r\nConnection: close\r\n\r\n";
            buf_append(&g_stage, BIG, sizeof BIG - 1);
            c->closing = true;
        }
        return 0;
    }
    end[2] = '\0'; /* the head as a string, ending with its last "\r\n" */
    size_t used = (size_t)(end - p) + 4;
    if (!handshake((const char *)p)) {
        c->closing = true;
        return used;
    }
    c->upgraded = true;
    return used + frames(c, p + used, len - used); /* frames right behind it */
}

static size_t consume(struct conn *c, unsigned char *p, size_t len)
{
    return c->upgraded ? frames(c, p, len) : opening(c, p, len);
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct conn *c = CONTAINER_OF(w, struct conn, rio);
    ssize_t n = read(w->fd, g_rbuf, sizeof g_rbuf);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(loop, c);
        return;
    }
    bool ok = true;
    if (c->in.len == 0) { /* the common case: parse in place, keep a partial frame */
        size_t used = consume(c, g_rbuf, (size_t)n);
        if (used < (size_t)n && !c->closing)
            ok = buf_append(&c->in, g_rbuf + used, (size_t)n - used);
    } else if ((ok = buf_append(&c->in, g_rbuf, (size_t)n))) {
        buf_consume(&c->in, consume(c, c->in.p + c->in.off, c->in.len - c->in.off));
    }
    if (!ok)
        c->closing = true;
    conn_output(loop, c);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct conn *c = CONTAINER_OF(w, struct conn, wio);
    if (!write_some(w->fd, &c->out)) {
        conn_close(loop, c);
        return;
    }
    if (c->out.off == c->out.len)
        buf_consume(&c->out, 0);
    conn_settle(loop, c);
}

static void on_conn(struct ev_loop *loop, int fd)
{
    struct conn *c = calloc(1, sizeof *c);
    if (!c) {
        close(fd);
        return;
    }
    ev_io_init(&c->rio, on_read, fd, EV_READ);
    ev_io_init(&c->wio, on_write, fd, EV_WRITE);
    ev_io_start(loop, &c->rio);
}

int main(void)
{
    return bench_serve(on_conn);
}
