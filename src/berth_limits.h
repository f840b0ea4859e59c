/*
 * berth_limits.h -- every safety limit of berth, defined once.
 *
 * (Not "limits.h": with -Isrc, which the host, the unit tests, the fuzz
 * builds and scripts/lint use, that name would shadow the C library's
 * <limits.h> for every file, luaconf.h included.)
 *
 * LIMITS_LIST is the one definition. Everything about a limit is derived
 * from its row: the field of struct limits, the LIMITS_DEFAULT (servers)
 * and LIMITS_NONE (connected sockets) initialisers, reading and pushing a
 * Lua table of limits (limits.c: berth.limits{}, listen{...},
 * server:limits()), the keys listen{} and limits{} accept (options.c), and
 * the host's --option, its parsing and its line in --help (host.c).
 * Adding a limit is one row here (plus the code that enforces it).
 *
 * Contract: no lua.h here (the host and pure C tests expand the list too).
 * The Lua-side functions (limits_read, limits_push) are in core.h.
 *
 * Columns of X(name, kind, scope, server, connected, host, option, help):
 *   name       the Lua key and the struct limits field
 *   kind       SIZE  bytes: a positive integer, false for none; the host
 *                    takes N[k|M|G]
 *              COUNT a positive integer, false for none; the host takes N
 *              TIME  seconds: a number >= 0, 0 or false for none; the host
 *                    takes N[ms|s|m|h]
 *   scope      SERVER copied into each server, and from it into each
 *                     accepted socket; listen{} accepts it
 *              DATAGRAM copied into each Datagram; udp{} accepts it
 *              LOOP   one value per loop (berth.limits{} only)
 *   server     the library default for servers (or for the loop)
 *   connected  the value sockets made by connect/adopt get
 *   host       the default of the `berth` executable
 *   option     the host's command-line option
 *   help       one line for --help: what the limit bounds
 * A default of LIMITS_NONE means no limit. The unit of each kind (bytes,
 * seconds, a number) follows from the kind, so it has no column.
 */
#ifndef BERTH_LIMITS_H
#define BERTH_LIMITS_H

#include <stddef.h>

#define LIMITS_NONE_VALUE (-1)

#define LIMITS_LIST(X)                                                      \
  X(max_connections, COUNT, SERVER, LIMITS_NONE_VALUE, LIMITS_NONE_VALUE,   \
    LIMITS_NONE_VALUE, "--max-connections",                                 \
    "open connections per server")                                          \
  X(maxline, SIZE, SERVER, 64 * 1024, 64 * 1024, 64 * 1024, "--max-line",   \
    "longest line or delimited read")                                       \
  X(max_input, SIZE, SERVER, 8 << 20, LIMITS_NONE_VALUE, 8 << 20,           \
    "--max-input", "largest read(n) / read(\"a\")")                         \
  X(max_output, SIZE, SERVER, 1 << 20, LIMITS_NONE_VALUE, 1 << 20,          \
    "--max-output", "write buffer per connection")                          \
  X(idle_timeout, TIME, SERVER, 60, LIMITS_NONE_VALUE, 60,                  \
    "--idle-timeout", "close a connection idle this long")                  \
  X(message_timeout, TIME, SERVER, 30, LIMITS_NONE_VALUE, 30,               \
    "--message-timeout", "a started line must arrive within this")          \
  X(send_timeout, TIME, SERVER, 60, LIMITS_NONE_VALUE, 60,                  \
    "--send-timeout", "close when output makes no progress this long")      \
  X(handshake_timeout, TIME, SERVER, 10, LIMITS_NONE_VALUE, 10,             \
    "--handshake-timeout", "close a TLS connection still handshaking "      \
    "this long")                                                            \
  X(proxy_timeout, TIME, SERVER, 5, LIMITS_NONE_VALUE, 5,                   \
    "--proxy-timeout", "close a connection without a PROXY header by "      \
    "then")                                                                 \
  X(drain_delay, TIME, LOOP, LIMITS_NONE_VALUE, LIMITS_NONE_VALUE,          \
    LIMITS_NONE_VALUE, "--drain-delay", "health says 503 this long before "  \
    "listeners close")                                                      \
  X(cpu_budget, TIME, LOOP, LIMITS_NONE_VALUE, LIMITS_NONE_VALUE, 5,        \
    "--cpu-budget", "end a task that runs this long without yielding")      \
  X(max_datagram, SIZE, DATAGRAM, 64 * 1024, 64 * 1024, 64 * 1024,          \
    "--max-datagram", "largest datagram received whole")                    \
  X(max_queue, COUNT, DATAGRAM, 256, 256, 256, "--max-queue",               \
    "datagrams received, not yet handled, per UDP socket")

/* The kinds and scopes, as values (LIMITS_KIND(SIZE), LIMITS_SCOPE(LOOP)). */
enum limits_kind { LIMITS_KIND_SIZE, LIMITS_KIND_COUNT, LIMITS_KIND_TIME };
enum limits_scope { LIMITS_SCOPE_SERVER = 1, LIMITS_SCOPE_LOOP = 2,
                    LIMITS_SCOPE_DATAGRAM = 4 };
#define LIMITS_KIND(k) LIMITS_KIND_##k
#define LIMITS_SCOPE(s) LIMITS_SCOPE_##s
#define LIMITS_ALL                                                          \
  (LIMITS_SCOPE_SERVER | LIMITS_SCOPE_LOOP | LIMITS_SCOPE_DATAGRAM)

/* How each kind is stored: sizes and counts as size_t, (size_t)-1 for
 * none; times in seconds as a double, 0 for none. */
#define LIMITS_CTYPE_SIZE size_t
#define LIMITS_CTYPE_COUNT size_t
#define LIMITS_CTYPE_TIME double
#define LIMITS_STORE_SIZE(v) ((size_t)(v))
#define LIMITS_STORE_COUNT(v) ((size_t)(v))
#define LIMITS_STORE_TIME(v) ((v) > 0 ? (double)(v) : 0.0)
#define LIMITS_NONE_SIZE ((size_t)-1)

/* A server's limits are copied into every socket it accepts; the loop's
 * copy holds the defaults for new servers and the loop-scope values. */
struct limits {
#define LIMITS_FIELD_(name, kind, ...) LIMITS_CTYPE_##kind name;
  LIMITS_LIST(LIMITS_FIELD_)
#undef LIMITS_FIELD_
};

#define LIMITS_INIT_SERVER_(name, kind, scope, server, connected, ...)      \
  .name = LIMITS_STORE_##kind(server),
#define LIMITS_INIT_CONNECTED_(name, kind, scope, server, connected, ...)   \
  .name = LIMITS_STORE_##kind(connected),

/* Initialisers: (struct limits)LIMITS_DEFAULT, (struct limits)LIMITS_NONE */
#define LIMITS_DEFAULT {LIMITS_LIST(LIMITS_INIT_SERVER_)}
#define LIMITS_NONE {LIMITS_LIST(LIMITS_INIT_CONNECTED_)}

/* How many limits there are (a constant expression). */
#define LIMITS_COUNT_ONE_(...) +1
#define LIMITS_N (0 LIMITS_LIST(LIMITS_COUNT_ONE_))

#endif
