/*
 * options.h -- the option tables of berth's API (listen{}, serve{},
 * connect{}, limits{}), each defined once.
 *
 * A table's keys come from its X list below plus, per OPTIONS_TABLES, the
 * limits of LIMITS_LIST (berth_limits.h) of the scopes it takes. From that one
 * definition: options_check validates a whole table (an unknown key is an
 * error naming it and listing the valid ones; each value goes through the
 * validator of its kind, check.h), and core.options describes every table
 * to Lua (berth.serve, berth.connect and the worker's listen check with
 * it; the worker derives its request to the master from the BIND keys).
 * A new key is one line in its list, plus the code that reads it.
 *
 * Columns of X(name, kind, where):
 *   kind   STRING   a string without zero bytes
 *          PORT     an integer 0..65535
 *          UINT     an integer 0..INT_MAX (backlog, fd)
 *          BOOLEAN  true or false
 *          TIME     seconds >= 0, or false (check_time)
 *          LIMIT    a time limit of one connection: seconds >= 0 (0 or
 *                   false: none), or true for the loop's value of the
 *                   limit of that name (berth.limits, the host's option)
 *          FUNCTION a function
 *          HANDLER  a function, or a handler module's name
 *          TABLE    a table (its contents are its reader's business)
 *          TLS      a table of TLS options, a TLSContext, or true (connect);
 *                   socket_tls.c checks what is inside
 *          PROXY    true, false or "optional" (listen's PROXY protocol)
 *          PPVERSION 1 or 2 (the PROXY protocol version connect sends)
 *          SOCKET   a Socket
 *   where  BIND     needed to bind a listener: under --workers the master
 *                   binds it, so the worker sends it in its request
 *          LOCAL    applied where the call is made
 */
#ifndef BERTH_OPTIONS_H
#define BERTH_OPTIONS_H

#include <lua.h>

#include "berth_limits.h"

#define OPTIONS_LISTEN(X)                                                   \
  X(host, STRING, BIND)                                                     \
  X(port, PORT, BIND)                                                       \
  X(path, STRING, BIND)                                                     \
  X(backlog, UINT, BIND)                                                    \
  X(reuseaddr, BOOLEAN, BIND)                                               \
  X(reuseport, BOOLEAN, BIND)                                               \
  X(fd, UINT, LOCAL)                                                        \
  X(name, STRING, BIND)                                                     \
  X(tls, TLS, LOCAL)                                                        \
  X(proxy_protocol, PROXY, LOCAL)                                           \
  X(proxy_trusted, TABLE, LOCAL)

#define OPTIONS_SERVE(X)                                                    \
  OPTIONS_LISTEN(X)                                                         \
  X(handler, HANDLER, LOCAL)                                                \
  X(onerror, FUNCTION, LOCAL)

/* berth.http.serve{}: serve's keys and berth.http's own (lua/berth/http.lua
 * reads them; src/http.c checks their ranges). */
#define OPTIONS_HTTP_SERVE(X)                                               \
  OPTIONS_SERVE(X)                                                          \
  X(max_line, UINT, LOCAL)                                                  \
  X(max_head, UINT, LOCAL)                                                  \
  X(max_headers, UINT, LOCAL)                                               \
  X(max_header_line, UINT, LOCAL)                                           \
  X(max_body, UINT, LOCAL)                                                  \
  X(date, BOOLEAN, LOCAL)                                                   \
  X(require_host, BOOLEAN, LOCAL)                                           \
  X(park_after, TIME, LOCAL)

#define OPTIONS_CONNECT(X)                                                  \
  X(host, STRING, LOCAL)                                                    \
  X(port, PORT, LOCAL)                                                      \
  X(path, STRING, LOCAL)                                                    \
  X(timeout, TIME, LOCAL)                                                   \
  X(tls, TLS, LOCAL)                                                        \
  X(idle_timeout, LIMIT, LOCAL)                                             \
  X(send_timeout, LIMIT, LOCAL)                                             \
  X(proxy_protocol, PPVERSION, LOCAL)                                       \
  X(source, SOCKET, LOCAL)

/* berth.udp{}: a server (host, port or path; the master binds it under
 * --workers) or, with none of them, a client. multicast is {group=,
 * interface=} or a list of them. */
#define OPTIONS_UDP(X)                                                      \
  X(host, STRING, BIND)                                                     \
  X(port, PORT, BIND)                                                       \
  X(path, STRING, BIND)                                                     \
  X(reuseaddr, BOOLEAN, BIND)                                               \
  X(reuseport, BOOLEAN, BIND)                                               \
  X(broadcast, BOOLEAN, BIND)                                               \
  X(multicast, TABLE, BIND)                                                 \
  X(recvbuf, UINT, BIND)                                                    \
  X(sendbuf, UINT, BIND)                                                    \
  X(fd, UINT, LOCAL)                                                        \
  X(name, STRING, BIND)

#define OPTIONS_SERVE_UDP(X)                                                \
  OPTIONS_UDP(X)                                                            \
  X(handler, HANDLER, LOCAL)                                                \
  X(onerror, FUNCTION, LOCAL)

#define OPTIONS_NOTHING(X) /* limits{}: only limits */

/* X(ID, name, keys, limit scopes it takes) */
#define OPTIONS_TABLES(X)                                                   \
  X(LISTEN, "listen", OPTIONS_LISTEN, LIMITS_SCOPE_SERVER)                  \
  X(SERVE, "serve", OPTIONS_SERVE, LIMITS_SCOPE_SERVER)                     \
  X(HTTP_SERVE, "http.serve", OPTIONS_HTTP_SERVE, LIMITS_SCOPE_SERVER)      \
  X(CONNECT, "connect", OPTIONS_CONNECT, 0)                                 \
  X(UDP, "udp", OPTIONS_UDP, LIMITS_SCOPE_DATAGRAM)                         \
  X(SERVE_UDP, "serve_udp", OPTIONS_SERVE_UDP, LIMITS_SCOPE_DATAGRAM)       \
  X(LIMITS, "limits", OPTIONS_NOTHING, LIMITS_ALL)

/* OPT_LISTEN, OPT_SERVE, OPT_HTTP_SERVE, OPT_CONNECT, OPT_UDP, OPT_SERVE_UDP,
 * OPT_LIMITS */
#define OPTIONS_ID_(id, ...) OPT_##id,
enum options_table { OPTIONS_TABLES(OPTIONS_ID_) OPT_NTABLES };
#undef OPTIONS_ID_

/* Raise unless the value at idx is a table of valid options for `t`
 * (messages start with the table's name: "listen: ..."). [-0, +0, v] */
void options_check(lua_State *L, int idx, enum options_table t);

/* core.options: { listen = {key = {kind =, bind =, scope =, ...}}, ...,
 * check = function(name, t [, level]) -> t }. [-0, +1, m] */
void options_open(lua_State *L);

#endif
