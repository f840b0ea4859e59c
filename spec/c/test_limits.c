/*
 * test_limits.c -- C unit tests for src/berth_limits.h: what the one
 * definition of the limits expands to (struct limits, LIMITS_DEFAULT,
 * LIMITS_NONE, LIMITS_N), with no Lua involved.
 */
#include <string.h>

#include "berth_limits.h"
#include "check.h"

static void test_server_defaults(void) {
  struct limits l = LIMITS_DEFAULT;
  CHECK(l.max_connections == LIMITS_NONE_SIZE);
  CHECK(l.maxline == 64 * 1024);
  CHECK(l.max_input == 8u << 20);
  CHECK(l.max_output == 1u << 20);
  CHECK(l.idle_timeout == 60);
  CHECK(l.message_timeout == 30);
  CHECK(l.send_timeout == 60);
  CHECK(l.cpu_budget == 0); /* the library's loop: off */
}

static void test_connected_defaults(void) {
  struct limits l = LIMITS_NONE;
  CHECK(l.max_connections == LIMITS_NONE_SIZE);
  CHECK(l.maxline == 64 * 1024); /* lines stay bounded on connect too */
  CHECK(l.max_input == LIMITS_NONE_SIZE);
  CHECK(l.max_output == LIMITS_NONE_SIZE);
  CHECK(l.idle_timeout == 0 && l.message_timeout == 0 && l.send_timeout == 0);
}

/* Every row has its own field, of its kind's type, and names are unique. */
static void test_rows(void) {
  static const char *const names[] = {
#define NAME_(name, ...) #name,
    LIMITS_LIST(NAME_)
#undef NAME_
  };
  CHECK(LIMITS_N == sizeof names / sizeof names[0]);
  for (int i = 0; i < LIMITS_N; i++)
    for (int j = i + 1; j < LIMITS_N; j++)
      CHECK(strcmp(names[i], names[j]) != 0);
#define SIZE_OF_(name, kind, ...)                                          \
  CHECK(sizeof(((struct limits *)0)->name) == sizeof(LIMITS_CTYPE_##kind));
  LIMITS_LIST(SIZE_OF_)
#undef SIZE_OF_
}

/* Host options start with "--" and have a help line. */
static void test_host_columns(void) {
#define HOST_(name, kind, scope, server, connected, host, option, help)    \
  CHECK(strncmp(option, "--", 2) == 0 && strlen(help) > 10);
  LIMITS_LIST(HOST_)
#undef HOST_
  CHECK(LIMITS_STORE_TIME(LIMITS_NONE_VALUE) == 0);
  CHECK(LIMITS_STORE_SIZE(LIMITS_NONE_VALUE) == LIMITS_NONE_SIZE);
}

int main(void) {
  RUN(test_server_defaults);
  RUN(test_connected_defaults);
  RUN(test_rows);
  RUN(test_host_columns);
  return CHECK_DONE();
}
