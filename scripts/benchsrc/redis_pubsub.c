/*
 * redis_pubsub.c -- Redis pub/sub throughput, what scripts/bench-workers
 * compares berth's bus with (what users run today between workers): one
 * connection SUBSCRIBEs to a channel, another PUBLISHes N messages of SIZE
 * bytes, pipelined with at most WINDOW unanswered, and the subscriber
 * counts what arrives. One process, non-blocking sockets and poll(), so
 * the client is never the bottleneck (C, no parsing beyond counting).
 *
 *   redis_pubsub PORT N SIZE WINDOW
 *   -> "delivered N in S s: R msg/s, publisher acks A"
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int dial(int port) {
  struct sockaddr_in a;
  memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_port = htons((unsigned short)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  if (fd < 0 || connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
    perror("connect");
    exit(1);
  }
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static void send_all(int fd, const char *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno != EINTR) {
      perror("write");
      exit(1);
    }
    if (w > 0) {
      p += w;
      n -= (size_t)w;
    }
  }
}

int main(int argc, char **argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: redis_pubsub PORT N SIZE WINDOW\n");
    return 2;
  }
  int port = atoi(argv[1]);
  long n = atol(argv[2]), size = atol(argv[3]), window = atol(argv[4]);
  int sub = dial(port), pub = dial(port);
  static const char subscribe[] = "*2\r\n$9\r\nSUBSCRIBE\r\n$5\r\nbench\r\n";
  send_all(sub, subscribe, sizeof subscribe - 1);
  char buf[1 << 16];
  ssize_t got = read(sub, buf, sizeof buf); /* the confirmation */
  if (got <= 0 || !memmem(buf, (size_t)got, "subscribe", 9)) {
    fprintf(stderr, "no SUBSCRIBE confirmation\n");
    return 1;
  }
  /* One PUBLISH command, and the size of one delivered message. */
  char head[64];
  int hl = snprintf(head, sizeof head, "*3\r\n$7\r\nPUBLISH\r\n$5\r\nbench\r\n$%ld\r\n",
                    size);
  size_t cmdlen = (size_t)hl + (size_t)size + 2;
  char *cmd = malloc(cmdlen);
  memcpy(cmd, head, (size_t)hl);
  memset(cmd + hl, 'x', (size_t)size);
  memcpy(cmd + hl + size, "\r\n", 2);
  char mhead[64];
  int ml = snprintf(mhead, sizeof mhead, "*3\r\n$7\r\nmessage\r\n$5\r\nbench\r\n$%ld\r\n",
                    size);
  long msglen = ml + size + 2;
  fcntl(pub, F_SETFL, O_NONBLOCK);
  fcntl(sub, F_SETFL, O_NONBLOCK);
  long sent = 0, acked = 0, bytes = 0, delivered = 0;
  size_t pending = 0, off = 0; /* bytes of the current batch to write */
  char *out = malloc(cmdlen * (size_t)window);
  double t0 = now();
  while (delivered < n) {
    if (pending == 0 && sent < n && sent - acked < window) {
      long k = window - (sent - acked);
      if (k > n - sent)
        k = n - sent;
      for (long i = 0; i < k; i++)
        memcpy(out + (size_t)i * cmdlen, cmd, cmdlen);
      pending = (size_t)k * cmdlen;
      off = 0;
      sent += k;
    }
    if (pending > 0) {
      ssize_t w = write(pub, out + off, pending);
      if (w > 0) {
        off += (size_t)w;
        pending -= (size_t)w;
      }
    }
    struct pollfd p[2] = {{pub, POLLIN | (pending ? POLLOUT : 0), 0},
                          {sub, POLLIN, 0}};
    if (poll(p, 2, 5000) <= 0) {
      fprintf(stderr, "stalled: sent %ld acked %ld delivered %ld\n", sent,
              acked, delivered);
      return 1;
    }
    if (p[0].revents & POLLIN) {
      ssize_t r = read(pub, buf, sizeof buf);
      for (ssize_t i = 0; i < r; i++)
        acked += buf[i] == '\n'; /* ":<subscribers>\r\n" per PUBLISH */
    }
    if (p[1].revents & POLLIN) {
      ssize_t r = read(sub, buf, sizeof buf);
      if (r > 0)
        bytes += r;
      delivered = bytes / msglen;
    }
  }
  double t = now() - t0;
  printf("delivered %ld in %.3f s: %.0f msg/s, publisher acks %ld\n", delivered,
         t, (double)delivered / t, acked);
  return 0;
}
