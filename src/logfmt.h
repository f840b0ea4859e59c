/*
 * logfmt.h -- one log record: its text or JSON line, and the one write(2)
 * that puts it on stderr.
 *
 * Contract: no lua.h here (unit-tested and fuzzed alone). Every record is
 * formatted whole into memory and written with a single write(2), so that
 * records from several processes sharing one stderr never mix inside a
 * line: a pipe takes a write of at most PIPE_BUF (4096) bytes atomically,
 * a file opened with O_APPEND any write.
 *
 * Two formats:
 *   text  2026-11-21T07:10:00.123Z 4242/w2 [info] 127.0.0.1:5000: message
 *         (time UTC with milliseconds; the process id, "/wN" in worker N,
 *         "/master" in the master; the level; the peer of the connection
 *         being handled, if any). A message of several lines continues on
 *         lines that start with a tab, so a line that does not is always
 *         the start of a record.
 *   json  {"time":"2026-...Z","level":"info","pid":4242,"worker":2,
 *         "peer":"127.0.0.1:5000","message":"..."} on one line; "master":
 *         true in the master. Always valid JSON and valid UTF-8: a byte
 *         that is not part of a well-formed UTF-8 sequence becomes \ufffd.
 *
 * The process's identity and format (logfmt_setup) are process-wide, like
 * stderr itself: set them once at start-up, before any thread runs.
 */
#ifndef BERTH_LOGFMT_H
#define BERTH_LOGFMT_H

#include <stddef.h>

enum logfmt_format { LOGFMT_TEXT, LOGFMT_JSON };

struct logfmt_record {
  double time;       /* seconds since the epoch */
  const char *level; /* "error", "warn", "info", "debug" */
  long pid;
  int worker;        /* > 0: worker number `worker`; 0: not a worker */
  int master;        /* non-zero: the master of --workers */
  const char *peer;  /* the connection's peer ("host:port"), or NULL */
  const char *msg;   /* msglen bytes, any bytes */
  size_t msglen;
};

/* Format `r` as one line (ending in "\n") into out[0..cap), NUL-terminated
 * when cap > 0; returns the length the whole line needs (as snprintf), so
 * a caller whose buffer was too small can retry with a larger one. */
size_t logfmt_format(char *out, size_t cap, enum logfmt_format f,
                     const struct logfmt_record *r);

/* "text" or "json"; -EINVAL for anything else. */
int logfmt_parse(const char *name);
/* The name of a format. */
const char *logfmt_name(enum logfmt_format f);

/* Write p[0..n) to fd in one write(2) (more only if the kernel takes part
 * of it, which for n <= PIPE_BUF on a blocking pipe it does not): 0 or
 * -errno. Retried on EINTR; on EAGAIN it waits up to 100 ms for room. */
int logfmt_write(int fd, const char *p, size_t n);

/* The process-wide settings: format, worker number (0: none), master. */
void logfmt_setup(enum logfmt_format f, int worker, int master);
enum logfmt_format logfmt_current(void);
int logfmt_worker(void);
int logfmt_master(void);

/* Format a record of this process (now, getpid(), the settings above) and
 * write it to stderr in one write. `peer` may be NULL. Returns 0 or
 * -errno (-ENOMEM: nothing written). */
int logfmt_emit(const char *level, const char *peer, const char *msg,
                size_t msglen);

#endif
