/*
 * relay_splice.c - reference C TCP relay on libev for the berth benchmarks'
 * proxy workload: every connection accepted on 127.0.0.1:$PORT is relayed to
 * the upstream $UPSTREAM_HOST:$UPSTREAM_PORT (host default 127.0.0.1; or
 * $UPSTREAM=host:port, the variable examples/proxy.lua reads), with the
 * bytes moved by splice(2) through a pipe per direction, so they never
 * enter this process's memory.
 *
 * Prints "listening on 127.0.0.1:PORT" when ready ($PORT unset or 0 =
 * ephemeral). Per direction: splice from the source socket into the pipe,
 * from the pipe into the destination socket, until neither moves; then wait
 * for the destination to become writable if the pipe still holds bytes,
 * else for the source to become readable. (Not both: a full pipe would make
 * the readable source wake the loop for nothing.) EOF from one side is
 * passed on as shutdown(SHUT_WR) once its pipe is empty (half-close); the
 * relay ends when both directions have, or at once on any error, or when
 * the upstream connect fails.
 *
 * Pipes are enlarged to PIPE_BYTES (F_SETPIPE_SZ; the default is 64 KiB):
 * more bytes per splice call, fewer calls.
 *
 * Build: cc -O2 -Wall -Wextra -o relay_splice relay_splice.c -lev
 */
#include "libev_server.h"

#include <fcntl.h>
#include <netdb.h>
#include <stdbool.h>

#define PIPE_BYTES (1024 * 1024)

struct relay;

struct direction {
    ev_io rio;       /* source readable */
    ev_io wio;       /* destination writable */
    int from, to;
    int pipe[2];
    size_t in_pipe;  /* bytes in the pipe */
    size_t cap;      /* pipe capacity */
    bool eof;        /* the source has ended */
    bool done;       /* ... and its EOF was passed on */
    struct relay *r;
};

struct relay {
    struct direction up;   /* client -> upstream */
    struct direction down; /* upstream -> client */
    ev_io connecting;      /* upstream connect in progress */
    int cfd, ufd;
};

static struct addrinfo *g_upstream;

static void dir_stop(struct ev_loop *loop, struct direction *d)
{
    ev_io_stop(loop, &d->rio);
    ev_io_stop(loop, &d->wio);
    if (d->pipe[0] >= 0)
        close(d->pipe[0]);
    if (d->pipe[1] >= 0)
        close(d->pipe[1]);
}

static void relay_close(struct ev_loop *loop, struct relay *r)
{
    ev_io_stop(loop, &r->connecting);
    dir_stop(loop, &r->up);
    dir_stop(loop, &r->down);
    close(r->cfd);
    close(r->ufd);
    free(r);
}

/* move what can be moved; false on an error (the relay must end) */
static bool dir_move(struct direction *d)
{
    const unsigned flags = SPLICE_F_MOVE | SPLICE_F_NONBLOCK;
    for (;;) {
        bool moved = false;
        if (!d->eof && d->in_pipe < d->cap) {
            ssize_t n = splice(d->from, NULL, d->pipe[1], NULL, d->cap - d->in_pipe, flags);
            if (n > 0) {
                d->in_pipe += (size_t)n;
                moved = true;
            } else if (n == 0) {
                d->eof = true;
            } else if (errno != EAGAIN && errno != EINTR) {
                return false;
            }
        }
        if (d->in_pipe > 0) {
            ssize_t n = splice(d->pipe[0], NULL, d->to, NULL, d->in_pipe, flags);
            if (n > 0) {
                d->in_pipe -= (size_t)n;
                moved = true;
            } else if (n < 0 && errno != EAGAIN && errno != EINTR) {
                return false;
            }
        }
        if (!moved)
            return true;
    }
}

/* run one direction, then wait for the one thing that lets it go on */
static void dir_run(struct ev_loop *loop, struct direction *d)
{
    struct relay *r = d->r;
    if (!dir_move(d)) {
        relay_close(loop, r);
        return;
    }
    if (d->eof && d->in_pipe == 0 && !d->done) {
        shutdown(d->to, SHUT_WR);
        d->done = true;
    }
    if (r->up.done && r->down.done) {
        relay_close(loop, r);
        return;
    }
    if (d->in_pipe > 0) {
        ev_io_stop(loop, &d->rio);
        ev_io_start(loop, &d->wio);
    } else {
        ev_io_stop(loop, &d->wio);
        if (d->eof)
            ev_io_stop(loop, &d->rio);
        else
            ev_io_start(loop, &d->rio);
    }
}

static void on_readable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    dir_run(loop, CONTAINER_OF(w, struct direction, rio));
}

static void on_writable(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    dir_run(loop, CONTAINER_OF(w, struct direction, wio));
}

static bool dir_init(struct direction *d, struct relay *r, int from, int to)
{
    d->r = r;
    d->from = from;
    d->to = to;
    ev_io_init(&d->rio, on_readable, from, EV_READ);
    ev_io_init(&d->wio, on_writable, to, EV_WRITE);
    if (pipe2(d->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
        d->pipe[0] = d->pipe[1] = -1;
        return false;
    }
    fcntl(d->pipe[1], F_SETPIPE_SZ, PIPE_BYTES); /* best effort */
    int cap = fcntl(d->pipe[1], F_GETPIPE_SZ);
    d->cap = cap > 0 ? (size_t)cap : 65536;
    return true;
}

/* the upstream connection is up: start both directions */
static void relay_start(struct ev_loop *loop, struct relay *r)
{
    if (!dir_init(&r->up, r, r->cfd, r->ufd) || !dir_init(&r->down, r, r->ufd, r->cfd)) {
        relay_close(loop, r);
        return;
    }
    ev_io_start(loop, &r->up.rio);
    ev_io_start(loop, &r->down.rio);
}

static void on_connected(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct relay *r = CONTAINER_OF(w, struct relay, connecting);
    ev_io_stop(loop, w);
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(r->ufd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        relay_close(loop, r);
        return;
    }
    relay_start(loop, r);
}

static void on_conn(struct ev_loop *loop, int cfd)
{
    struct relay *r = calloc(1, sizeof *r);
    int ufd = socket(g_upstream->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (!r || ufd < 0) {
        free(r);
        if (ufd >= 0)
            close(ufd);
        close(cfd);
        return;
    }
    r->cfd = cfd;
    r->ufd = ufd;
    r->up.pipe[0] = r->up.pipe[1] = r->down.pipe[0] = r->down.pipe[1] = -1;
    ev_io_init(&r->up.rio, on_readable, cfd, EV_READ); /* stoppable before dir_init */
    ev_io_init(&r->up.wio, on_writable, ufd, EV_WRITE);
    ev_io_init(&r->down.rio, on_readable, ufd, EV_READ);
    ev_io_init(&r->down.wio, on_writable, cfd, EV_WRITE);
    ev_io_init(&r->connecting, on_connected, ufd, EV_WRITE);
    int one = 1;
    setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(ufd, g_upstream->ai_addr, g_upstream->ai_addrlen) == 0) {
        relay_start(loop, r);
    } else if (errno == EINPROGRESS) {
        ev_io_start(loop, &r->connecting);
    } else {
        relay_close(loop, r);
    }
}

/* the upstream address from the environment; exits when it is missing */
static struct addrinfo *upstream(void)
{
    const char *host = getenv("UPSTREAM_HOST"), *port = getenv("UPSTREAM_PORT");
    static char buf[256];
    const char *both = getenv("UPSTREAM");
    if ((!port || !*port) && both && strlen(both) < sizeof buf) {
        strcpy(buf, both); /* host:port or [v6]:port */
        char *colon = strrchr(buf, ':');
        if (colon) {
            *colon = '\0';
            port = colon + 1;
            host = buf;
            if (*host == '[' && colon[-1] == ']') {
                colon[-1] = '\0';
                host++;
            }
        }
    }
    if (!port || !*port) {
        fprintf(stderr, "relay_splice: set UPSTREAM_PORT (and UPSTREAM_HOST) or UPSTREAM\n");
        exit(2);
    }
    if (!host || !*host)
        host = "127.0.0.1";
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *ai = NULL;
    int rc = getaddrinfo(host, port, &hints, &ai);
    if (rc != 0) {
        fprintf(stderr, "relay_splice: %s:%s: %s\n", host, port, gai_strerror(rc));
        exit(2);
    }
    return ai;
}

int main(void)
{
    g_upstream = upstream();
    return bench_serve(on_conn);
}
