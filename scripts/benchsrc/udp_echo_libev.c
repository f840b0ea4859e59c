/*
 * udp_echo_libev.c - reference C UDP echo server on libev for the berth
 * benchmarks: the plain-C baseline for the UDP workloads.
 *
 * Binds 127.0.0.1:$PORT ($PORT unset or 0 = ephemeral), prints
 * "listening on 127.0.0.1:PORT" when ready, and sends every datagram back
 * to where it came from with one recvfrom(2) and one sendto(2) each, no
 * batching (that is what a minimal server does). An echo that the socket
 * buffer does not take is dropped, as UDP allows; the load generator
 * counts it as lost.
 *
 * Build: cc -O2 -Wall -Wextra -o udp_echo_libev udp_echo_libev.c -lev
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <ev.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

/* datagrams per readiness callback: bounds one callback's work */
#define BATCH 64

static void die(const char *what)
{
    perror(what);
    exit(1);
}

/* port from $PORT (default 0 = ephemeral) */
static int env_port(void)
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

static int udp_bind(int port)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (bind(fd, (struct sockaddr *)&sa, sizeof sa) < 0)
        die("bind");
    socklen_t len = sizeof sa;
    if (getsockname(fd, (struct sockaddr *)&sa, &len) < 0)
        die("getsockname");
    printf("listening on 127.0.0.1:%d\n", ntohs(sa.sin_port));
    fflush(stdout);
    return fd;
}

static void on_read(struct ev_loop *loop, ev_io *w, int revents)
{
    (void)loop;
    (void)revents;
    static char buf[64 * 1024]; /* the largest UDP payload fits */
    for (int i = 0; i < BATCH; i++) {
        struct sockaddr_storage from;
        socklen_t len = sizeof from;
        ssize_t n = recvfrom(w->fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                perror("recvfrom");
            return;
        }
        /* a full send buffer or an unreachable peer loses this echo only */
        sendto(w->fd, buf, (size_t)n, 0, (struct sockaddr *)&from, len);
    }
}

int main(void)
{
    static ev_io io;
    struct ev_loop *loop = EV_DEFAULT;
    ev_io_init(&io, on_read, udp_bind(env_port()), EV_READ);
    ev_io_start(loop, &io);
    ev_run(loop, 0);
    return 0;
}
