/*
 * libev_server.h - shared plumbing for the C libev reference servers of the
 * berth benchmarks (echo_libev.c, http_libev.c): the listening socket on
 * 127.0.0.1:$PORT, the "listening on 127.0.0.1:PORT" announcement and a
 * nonblocking accept4 loop that backs off for 100 ms when out of descriptors.
 *
 * Header-only on purpose: each server is built from a single .c file with
 *   cc -O2 -Wall -Wextra -o NAME NAME.c -lev
 */
#ifndef BENCH_LIBEV_SERVER_H
#define BENCH_LIBEV_SERVER_H

#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* the struct that holds an ev_io member, from a pointer to that member */
#define CONTAINER_OF(ptr, type, member) \
    ((type *)(void *)((char *)(ptr) - offsetof(type, member)))

typedef void (*bench_on_conn)(struct ev_loop *loop, int fd);

struct bench_acceptor {
    ev_io io;
    ev_timer pause;
    bench_on_conn on_conn;
};

static void bench_die(const char *what)
{
    perror(what);
    exit(1);
}

/* port from $PORT (default 0 = ephemeral) */
static int bench_env_port(void)
{
    const char *s = getenv("PORT");
    char *end;
    long port = s && *s ? strtol(s, &end, 10) : 0;
    if (s && *s && (*end || port < 0 || port > 65535)) {
        fprintf(stderr, "bad PORT: %s\n", s);
        exit(2);
    }
    return (int)port;
}

/* a nonblocking listening socket on 127.0.0.1:port; announces the port */
static int bench_listen(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        bench_die("socket");
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        bench_die("bind");
    if (listen(fd, 4096) < 0)
        bench_die("listen");
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        bench_die("getsockname");
    printf("listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    return fd;
}

static void bench_accept_resume(struct ev_loop *loop, ev_timer *w, int revents)
{
    (void)revents;
    struct bench_acceptor *a = CONTAINER_OF(w, struct bench_acceptor, pause);
    ev_io_start(loop, &a->io);
}

static void bench_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)revents;
    struct bench_acceptor *a = CONTAINER_OF(w, struct bench_acceptor, io);
    for (;;) {
        int fd = accept4(w->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd >= 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            a->on_conn(loop, fd);
            continue;
        }
        if (errno == EINTR || errno == ECONNABORTED)
            continue;
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
            perror("accept4"); /* retry after a pause instead of spinning */
            ev_io_stop(loop, &a->io);
            ev_timer_start(loop, &a->pause);
        } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
            perror("accept4");
        }
        return;
    }
}

/* listen on $PORT, accept forever, hand every new connection to on_conn */
static int bench_serve(bench_on_conn on_conn)
{
    static struct bench_acceptor acceptor;
    struct ev_loop *loop = EV_DEFAULT;
    signal(SIGPIPE, SIG_IGN);
    acceptor.on_conn = on_conn;
    ev_io_init(&acceptor.io, bench_accept_cb, bench_listen(bench_env_port()), EV_READ);
    ev_timer_init(&acceptor.pause, bench_accept_resume, 0.1, 0.);
    ev_io_start(loop, &acceptor.io);
    ev_run(loop, 0);
    return 0;
}

#endif
