/*
 * http_libev.c - reference C HTTP/1.1 server on libev for the berth
 * benchmarks: the plain-C baseline for the "hello" HTTP workload.
 *
 * Listens on 127.0.0.1:$PORT ($PORT unset or 0 = ephemeral), prints
 * "listening on 127.0.0.1:PORT" when ready. Every request is answered with
 *   HTTP/1.1 200 OK / Content-Type: text/plain / Content-Length: 13
 *   Hello, World!
 * on a keep-alive connection. A request is anything up to "\r\n\r\n"; the
 * bytes are scanned with a 4-state matcher kept per connection, so requests
 * split across reads and pipelined requests need no request buffer. Request
 * bodies and "Connection: close" are not handled (this is a benchmark peer).
 *
 * Output needs no buffer either: all responses are the same, so what is left
 * to send is just a byte count into an endless repetition of the response.
 *
 * Build: cc -O2 -Wall -Wextra -o http_libev http_libev.c -lev
 */
#include "libev_server.h"

static const char RESPONSE[] = "HTTP/1.1 200 OK\r\n"
                               "Content-Type: text/plain\r\n"
                               "Content-Length: 13\r\n"
                               "\r\n"
                               "Hello, World!";
#define RESPONSE_LEN (sizeof RESPONSE - 1)
#define RESPONSE_COPIES 512

struct conn {
    ev_io rio;
    ev_io wio;
    unsigned match;  /* how much of "\r\n\r\n" has been seen */
    size_t pending;  /* response bytes still to send */
};

static char g_in[64 * 1024];
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

/* send pending responses; 1 = all sent, 0 = socket full, -1 = error */
static int send_pending(struct conn *c)
{
    while (c->pending > 0) {
        size_t pos = (RESPONSE_LEN - c->pending % RESPONSE_LEN) % RESPONSE_LEN;
        size_t len = sizeof g_out - pos;
        if (len > c->pending)
            len = c->pending;
        ssize_t w = write(c->rio.fd, g_out + pos, len);
        if (w > 0)
            c->pending -= (size_t)w;
        else if (w < 0 && errno == EINTR)
            continue;
        else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        else
            return -1;
    }
    return 1;
}

static void conn_close(struct ev_loop *loop, struct conn *c)
{
    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    close(c->rio.fd);
    free(c);
}

/* send what can be sent; read again only once nothing is pending */
static void conn_output(struct ev_loop *loop, struct conn *c)
{
    int r = send_pending(c);
    if (r < 0) {
        conn_close(loop, c);
    } else if (r == 0) {
        ev_io_stop(loop, &c->rio);
        ev_io_start(loop, &c->wio);
    } else {
        ev_io_stop(loop, &c->wio);
        ev_io_start(loop, &c->rio);
    }
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct conn *c = CONTAINER_OF(w, struct conn, rio);
    ssize_t n = read(w->fd, g_in, sizeof g_in);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(loop, c);
        return;
    }
    size_t requests = count_requests(c, g_in, (size_t)n);
    if (requests == 0)
        return;
    c->pending += requests * RESPONSE_LEN;
    conn_output(loop, c);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    conn_output(loop, CONTAINER_OF(w, struct conn, wio));
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
    for (size_t i = 0; i < RESPONSE_COPIES; i++)
        memcpy(g_out + i * RESPONSE_LEN, RESPONSE, RESPONSE_LEN);
    return bench_serve(on_conn);
}
