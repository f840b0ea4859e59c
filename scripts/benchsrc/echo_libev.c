/*
 * echo_libev.c - reference C echo server on libev for the berth benchmarks:
 * the "how fast can a plain single-threaded C program do it" baseline that
 * the other echo servers are compared with.
 *
 * Listens on 127.0.0.1:$PORT ($PORT unset or 0 = ephemeral), prints
 * "listening on 127.0.0.1:PORT" when ready, and echoes every byte back.
 * Reads go to one shared buffer and are written straight back; only when the
 * socket does not take everything is the rest copied to a per-connection
 * buffer, reading stops and a write watcher drains it. An idle connection
 * costs one small struct.
 *
 * Build: cc -O2 -Wall -Wextra -o echo_libev echo_libev.c -lev
 */
#include "libev_server.h"

struct conn {
    ev_io rio;      /* read watcher, active unless output is pending */
    ev_io wio;      /* write watcher, active while output is pending */
    char *pend;     /* unwritten output */
    size_t plen, poff;
};

static char g_buf[64 * 1024];

static void conn_close(struct ev_loop *loop, struct conn *c)
{
    ev_io_stop(loop, &c->rio);
    ev_io_stop(loop, &c->wio);
    close(c->rio.fd);
    free(c->pend);
    free(c);
}

/* write what the socket takes; returns bytes written or -1 on error */
static ssize_t write_some(int fd, const char *p, size_t n)
{
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w > 0) {
            done += (size_t)w;
        } else if (w < 0 && errno == EINTR) {
            continue;
        } else if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            break;
        } else {
            return -1;
        }
    }
    return (ssize_t)done;
}

/* keep the unwritten rest and switch from reading to writing */
static int conn_defer(struct ev_loop *loop, struct conn *c, const char *p, size_t n)
{
    c->pend = malloc(n);
    if (!c->pend)
        return -1;
    memcpy(c->pend, p, n);
    c->plen = n;
    c->poff = 0;
    ev_io_stop(loop, &c->rio);
    ev_io_start(loop, &c->wio);
    return 0;
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct conn *c = CONTAINER_OF(w, struct conn, rio);
    ssize_t n = read(w->fd, g_buf, sizeof g_buf);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n <= 0) {
        conn_close(loop, c);
        return;
    }
    ssize_t done = write_some(w->fd, g_buf, (size_t)n);
    if (done < 0 || (done < n && conn_defer(loop, c, g_buf + done, (size_t)(n - done)) < 0))
        conn_close(loop, c);
}

static void on_write(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct conn *c = CONTAINER_OF(w, struct conn, wio);
    ssize_t done = write_some(w->fd, c->pend + c->poff, c->plen - c->poff);
    if (done < 0) {
        conn_close(loop, c);
        return;
    }
    c->poff += (size_t)done;
    if (c->poff < c->plen)
        return;
    free(c->pend);
    c->pend = NULL;
    ev_io_stop(loop, &c->wio);
    ev_io_start(loop, &c->rio);
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
