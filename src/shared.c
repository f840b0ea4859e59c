/*
 * shared.c -- this process's share of its berth group: the shared region
 * (shm.c), its member slot, connection ids, and the shared dictionaries
 * of berth.shared (class berth.SharedDict, on shdict.c). Also core.shared,
 * what the master and the worker call to set the region up.
 *
 * One region and one slot per process, whatever its loops: the state is
 * process-wide (statics, under a mutex where loops in other threads could
 * race to create it). How a process gets its region:
 *   - the master (`berth --workers N`) creates it before it spawns any
 *     worker (core.shared.create), claims a slot for each worker it
 *     starts and passes the region's descriptor over the worker's channel;
 *     it retires a slot when it tells its worker to drain, and frees it
 *     (its counters folded into the retired totals) once it reaped it;
 *   - a worker attaches to that descriptor at start, in the slot the
 *     master claimed for it (core.shared.attach);
 *   - a single process, or a library user, gets a region of its own the
 *     first time anything needs one (a dictionary, the bus, a connection
 *     id, a metric), and claims slot 0 of it.
 * A worker whose master sent no region refuses (core.shared.disable)
 * instead of making a private one: a dictionary only one worker sees
 * would be a silent bug.
 *
 * Dictionaries never block the loop: every operation takes the
 * dictionary's lock for the hash lookup and the copy only (shdict.h). A
 * SharedDict is a handle (a zone's address in this process); it needs no
 * loop and nothing to close.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "core.h"
#include "monotime.h"
#include "shdict.h"
#include "shm.h"
#include "shmetrics.h"

#define SHARED_DICT_DEFAULT ((size_t)4 << 20)
#define SHARED_NAME_MAX (SHM_NAME_MAX - 5) /* "dict." + name */
#define SHARED_KEYS_DEFAULT 1024
#define SHARED_GETBUF 256

static pthread_mutex_t shared_mu = PTHREAD_MUTEX_INITIALIZER;
static struct shm shared_shm = SHM_INIT;
static int shared_ok;            /* shared_shm is mapped */
static int shared_self = -1;     /* our member slot */
static int shared_master;        /* we made it for workers (no slot used) */
static size_t shared_size;       /* for a region made here; 0: default */
static char shared_refusal[160]; /* why this process may have none */
static _Atomic uint64_t shared_conns; /* connection ids handed out */

/* --- the region ------------------------------------------------------ */

/* Make a region for this process alone and take slot 0 of it. Caller
 * holds shared_mu. 0 or -errno. */
static int shared_make_own(void) {
  int rc = shm_create(&shared_shm, shared_size);
  if (rc < 0)
    return rc;
  int slot = shm_member_claim(&shared_shm, 0, getpid());
  if (slot < 0) {
    shm_close(&shared_shm);
    return slot;
  }
  shared_self = slot;
  shared_ok = 1;
  return 0;
}

struct shm *shared_region(lua_State *L) {
  pthread_mutex_lock(&shared_mu);
  int rc = 0;
  if (!shared_ok && shared_refusal[0] == '\0')
    rc = shared_make_own();
  int ok = shared_ok;
  pthread_mutex_unlock(&shared_mu);
  if (!ok && shared_refusal[0] != '\0')
    luaL_error(L, "berth: no shared memory: %s", shared_refusal);
  if (!ok)
    luaL_error(L, "berth: cannot create the shared region: %s",
               strerror(-rc));
  return &shared_shm;
}

int shared_slot(void) {
  return shared_self;
}

uint64_t shared_connid(lua_State *L) {
  struct shm *r = shared_region(L);
  struct shm_member *m = shm_member(r, shared_self);
  if (m == NULL)
    luaL_error(L, "berth: this process has no member slot (the master)");
  uint64_t n = atomic_fetch_add(&shared_conns, 1) + 1;
  uint64_t id = shm_conn_id(atomic_load(&m->instance), n);
  if (id == 0)
    luaL_error(L, "berth: out of connection ids");
  return id;
}

/* --- core.shared: set-up by the master and the worker ------------------ */

/* create([size]) -> fd: the master's region, made before its workers.
 * The master takes a slot too (worker 0, never LIVE: it receives no
 * message), where its own counters live. */
static int shared_create(lua_State *L) {
  size_t size = check_size(L, 1, "shared.create: size", shared_size);
  pthread_mutex_lock(&shared_mu);
  int rc = shared_ok ? -EEXIST : shm_create(&shared_shm, size);
  if (rc == 0 && (rc = shm_member_claim(&shared_shm, 0, getpid())) < 0)
    shm_close(&shared_shm);
  if (rc >= 0) {
    shared_self = rc;
    shared_ok = 1;
    shared_master = 1;
    rc = 0;
  }
  pthread_mutex_unlock(&shared_mu);
  if (rc < 0)
    return util_failerr(L, -rc);
  lua_pushinteger(L, shm_fd(&shared_shm));
  return 1;
}

/* attach(fd, slot): a worker's region, in the slot its master claimed. */
static int shared_attach(lua_State *L) {
  int fd = (int)check_integer(L, 1, "shared.attach: fd", -1, 0, INT32_MAX);
  int slot = (int)check_integer(L, 2, "shared.attach: slot", -1, 0,
                                SHM_MEMBERS - 1);
  pthread_mutex_lock(&shared_mu);
  int rc = shared_ok ? -EEXIST : shm_attach(&shared_shm, fd);
  struct shm_member *m = rc == 0 ? shm_member(&shared_shm, slot) : NULL;
  if (m != NULL && atomic_load(&m->state) == SHM_FREE)
    rc = -ESRCH; /* not claimed for us */
  if (rc == 0) {
    shm_member_set_pid(&shared_shm, slot, getpid());
    shared_self = slot;
    shared_ok = 1;
  } else if (rc != -EEXIST && shared_shm.base != NULL) {
    shm_close(&shared_shm);
  }
  pthread_mutex_unlock(&shared_mu);
  if (rc < 0)
    return util_failerr(L, -rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* disable(reason): this process must not make a region of its own. */
static int shared_disable(lua_State *L) {
  const char *why = luaL_checkstring(L, 1);
  pthread_mutex_lock(&shared_mu);
  snprintf(shared_refusal, sizeof shared_refusal, "%s", why);
  pthread_mutex_unlock(&shared_mu);
  return 0;
}

/* setsize(bytes): the size of a region made here later. */
static int shared_setsize(lua_State *L) {
  size_t size = check_size(L, 1, "shared.setsize: size", 0);
  pthread_mutex_lock(&shared_mu);
  int made = shared_ok;
  if (!made)
    shared_size = size;
  pthread_mutex_unlock(&shared_mu);
  if (made && size != shared_shm.size)
    return luaL_error(L, "shared memory: the region exists already (%d "
                      "MiB)", (int)(shared_shm.size >> 20));
  lua_pushinteger(L, (lua_Integer)(made ? shared_shm.size : size));
  return 1;
}

static struct shm *shared_master_region(lua_State *L) {
  if (!shared_ok || !shared_master)
    luaL_error(L, "shared: only the master claims and frees slots");
  return &shared_shm;
}

/* claim(worker) -> slot: a STARTING slot for worker number `worker`. */
static int shared_claim(lua_State *L) {
  struct shm *r = shared_master_region(L);
  int worker = (int)check_integer(L, 1, "shared.claim: worker", 0, 0,
                                  INT32_MAX);
  int slot = shm_member_claim(r, worker, 0);
  if (slot < 0)
    return util_failerr(L, -slot);
  lua_pushinteger(L, slot);
  return 1;
}

static int shared_checkslot(lua_State *L, int idx) {
  return (int)check_integer(L, idx, "shared: slot", -1, 0, SHM_MEMBERS - 1);
}

static int shared_setpid(lua_State *L) {
  struct shm *r = shared_master_region(L);
  shm_member_set_pid(r, shared_checkslot(L, 1), (pid_t)luaL_checkinteger(L, 2));
  return 0;
}

/* retire(slot): the worker drains (it keeps receiving until it exits). */
static int shared_retire(lua_State *L) {
  struct shm *r = shared_master_region(L);
  lua_pushboolean(L, shm_member_retire(r, shared_checkslot(L, 1)) == 0);
  return 1;
}

/* release(slot): the worker was reaped. Its counters join the retired
 * totals before the slot is freed (shmetrics.h: in that order). */
static int shared_release(lua_State *L) {
  struct shm *r = shared_master_region(L);
  int slot = shared_checkslot(L, 1);
  struct shmetrics m;
  if (shmetrics_attach(&m, r, NULL) == 0)
    shmetrics_retire(&m, slot);
  lua_pushboolean(L, shm_member_free(r, slot) == 0);
  return 1;
}

static int shared_fd(lua_State *L) {
  if (!shared_ok)
    return 0;
  lua_pushinteger(L, shm_fd(&shared_shm));
  return 1;
}

/* info() -> {slot=, worker=, instance=, size=, members=}, or nil when
 * this process has no region yet (it is not made by asking). */
static int shared_info(lua_State *L) {
  if (!shared_ok)
    return 0;
  struct shm *r = &shared_shm;
  struct shm_member *self = shm_member(r, shared_self);
  int live = 0;
  for (int i = 0; i < SHM_MEMBERS; i++)
    live += shm_state_receives(atomic_load(&shm_member(r, i)->state));
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, shared_self);
  lua_setfield(L, -2, "slot");
  lua_pushinteger(L, self ? atomic_load(&self->worker) : -1);
  lua_setfield(L, -2, "worker");
  lua_pushinteger(L, self ? (lua_Integer)atomic_load(&self->instance) : 0);
  lua_setfield(L, -2, "instance");
  lua_pushinteger(L, (lua_Integer)r->size);
  lua_setfield(L, -2, "size");
  lua_pushinteger(L, live);
  lua_setfield(L, -2, "members");
  lua_pushboolean(L, shared_master);
  lua_setfield(L, -2, "master");
  return 1;
}

/* worker() -> this process's worker number: 1..N in a worker, 0 in a
 * single process (which gets its region now if it has none). */
static int shared_worker(lua_State *L) {
  struct shm *r = shared_region(L);
  struct shm_member *self = shm_member(r, shared_self);
  lua_pushinteger(L, self ? atomic_load(&self->worker) : 0);
  return 1;
}

/* --- SharedDict ----------------------------------------------------- */

static struct shdict *sd_check(lua_State *L) {
  return luaL_checkudata(L, 1, CLS_SHDICT);
}

/* nil, code (shdict_errcode), errno-like number. */
static int sd_fail(lua_State *L, int rc) {
  lua_pushnil(L);
  lua_pushstring(L, shdict_errcode(rc));
  lua_pushstring(L, shdict_strerror(rc));
  return 3;
}

static const char *sd_key(lua_State *L, size_t *len) {
  const char *k = luaL_checklstring(L, 2, len);
  if (*len == 0 || *len > SHDICT_KEY_MAX)
    luaL_argerror(L, 2, "a key is 1 to 65535 bytes");
  return k;
}

/* The value at idx as a shdict_val; raises for other types. */
static void sd_toval(lua_State *L, int idx, struct shdict_val *v,
                     const char *api) {
  memset(v, 0, sizeof *v);
  switch (lua_type(L, idx)) {
  case LUA_TSTRING:
    v->type = SHDICT_STR;
    v->s = lua_tolstring(L, idx, &v->len);
    break;
  case LUA_TNUMBER:
    if (lua_isinteger(L, idx)) {
      v->type = SHDICT_INT;
      v->n.i = lua_tointeger(L, idx);
    } else {
      v->type = SHDICT_FLOAT;
      v->n.f = lua_tonumber(L, idx);
    }
    break;
  case LUA_TBOOLEAN:
    v->type = SHDICT_BOOL;
    v->n.b = lua_toboolean(L, idx);
    break;
  default:
    check_fail(L, idx, api, "a string, number or boolean");
  }
}

static void sd_pushval(lua_State *L, const struct shdict_val *v) {
  switch (v->type) {
  case SHDICT_STR: lua_pushlstring(L, v->s, v->len); break;
  case SHDICT_INT: lua_pushinteger(L, v->n.i); break;
  case SHDICT_FLOAT: lua_pushnumber(L, v->n.f); break;
  case SHDICT_BOOL: lua_pushboolean(L, v->n.b); break;
  default: lua_pushnil(L); break;
  }
}

/* An absolute expiry from a ttl at idx: nil, 0, false or math.huge is
 * none (0 here). */
static double sd_expiry(lua_State *L, int idx, const char *what,
                        double now) {
  double ttl = check_time(L, idx, what, 0);
  return ttl > 0 && !isinf(ttl) ? now + ttl : 0;
}

/* Get into a small buffer, or one as big as the value says it needs;
 * the value may change size between the two: then try again. */
static int sd_get(lua_State *L, struct shdict *d, const char *k, size_t klen,
                  struct shdict_val *v) {
  char small[SHARED_GETBUF];
  double now = monotime_now();
  int rc = shdict_get(d, k, klen, now, v, small, sizeof small);
  if (rc == 0) {
    sd_pushval(L, v);
    return 0;
  }
  while (rc == -ENOBUFS) {
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, v->len);
    size_t want = v->len;
    rc = shdict_get(d, k, klen, now, v, p, want);
    if (rc == 0) {
      luaL_pushresultsize(&b, v->type == SHDICT_STR ? v->len : 0);
      if (v->type != SHDICT_STR) {
        lua_pop(L, 1);
        sd_pushval(L, v);
      }
      return 0;
    }
    lua_pop(L, 1); /* the buffer's box */
  }
  return rc;
}

/* get(key) -> value, or nil when absent or expired. */
static int sd_lget(lua_State *L) {
  struct shdict *d = sd_check(L);
  size_t klen;
  const char *k = sd_key(L, &klen);
  struct shdict_val v;
  int rc = sd_get(L, d, k, klen, &v);
  if (rc == -ENOENT) {
    lua_pushnil(L);
    return 1;
  }
  return rc < 0 ? sd_fail(L, rc) : 1;
}

/* ttl(key) -> seconds left (math.huge for none), or nil when absent. */
static int sd_lttl(lua_State *L) {
  struct shdict *d = sd_check(L);
  size_t klen;
  const char *k = sd_key(L, &klen);
  struct shdict_val v;
  double now = monotime_now();
  int rc = sd_get(L, d, k, klen, &v);
  if (rc == -ENOENT) {
    lua_pushnil(L);
    return 1;
  }
  if (rc < 0)
    return sd_fail(L, rc);
  lua_pop(L, 1);
  lua_pushnumber(L, v.expires > 0 ? v.expires - now : HUGE_VAL);
  return 1;
}

/* set/add/replace(key, value [, ttl]) -> true, nil, evicted (whether
 * live entries were pushed out to make room) | nil, code, message.
 * set(key, nil) deletes. */
static int sd_store(lua_State *L, int mode, const char *api) {
  struct shdict *d = sd_check(L);
  size_t klen;
  const char *k = sd_key(L, &klen);
  double now = monotime_now();
  if (mode == SHDICT_SET && lua_isnoneornil(L, 3)) {
    shdict_delete(d, k, klen, now);
    lua_pushboolean(L, 1);
    return 1;
  }
  struct shdict_val v;
  sd_toval(L, 3, &v, api);
  double expires = sd_expiry(L, 4, api, now);
  uint64_t before = d->evicted;
  int rc = shdict_set(d, k, klen, &v, expires, mode, now);
  if (rc < 0)
    return sd_fail(L, rc);
  lua_pushboolean(L, 1);
  lua_pushnil(L);
  lua_pushboolean(L, d->evicted != before);
  return 3;
}

static int sd_lset(lua_State *L) {
  return sd_store(L, SHDICT_SET, "set: value");
}

static int sd_ladd(lua_State *L) {
  return sd_store(L, SHDICT_ADD, "add: value");
}

static int sd_lreplace(lua_State *L) {
  return sd_store(L, SHDICT_REPLACE, "replace: value");
}

/* incr(key, n [, init [, init_ttl]]) -> the new value | nil, code, msg */
static int sd_lincr(lua_State *L) {
  struct shdict *d = sd_check(L);
  size_t klen;
  const char *k = sd_key(L, &klen);
  struct shdict_val delta, init, out;
  if (lua_type(L, 3) != LUA_TNUMBER)
    check_fail(L, 3, "incr: n", "a number");
  sd_toval(L, 3, &delta, "incr: n");
  int has_init = !lua_isnoneornil(L, 4);
  if (has_init && lua_type(L, 4) != LUA_TNUMBER)
    check_fail(L, 4, "incr: init", "a number");
  if (has_init)
    sd_toval(L, 4, &init, "incr: init");
  double now = monotime_now();
  double expires = sd_expiry(L, 5, "incr: init_ttl", now);
  memset(&out, 0, sizeof out);
  int rc = shdict_incr(d, k, klen, &delta, has_init ? &init : NULL, expires,
                       now, &out);
  if (rc < 0)
    return sd_fail(L, rc);
  sd_pushval(L, &out);
  return 1;
}

/* delete(key) -> whether a live entry was there. */
static int sd_ldelete(lua_State *L) {
  struct shdict *d = sd_check(L);
  size_t klen;
  const char *k = sd_key(L, &klen);
  lua_pushboolean(L, shdict_delete(d, k, klen, monotime_now()) == 0);
  return 1;
}

/* Push the keys of one scan batch (buf: [uint16 len][bytes]...) into
 * the array at idx, up to max; returns the new count. */
static lua_Integer sd_pushkeys(lua_State *L, int idx, const unsigned char *p,
                               size_t used, lua_Integer n, lua_Integer max) {
  size_t at = 0;
  while (at + 2 <= used && (max == 0 || n < max)) {
    uint16_t len16;
    memcpy(&len16, p + at, 2); /* the host's order, as shdict_keys wrote it */
    size_t len = len16;
    lua_pushlstring(L, (const char *)p + at + 2, len);
    lua_rawseti(L, idx, ++n);
    at += 2 + len;
  }
  return n;
}

/* keys([max]) -> the live keys, at most max (default 1024; 0: all). The
 * scan takes the lock one batch of buckets at a time. */
static int sd_lkeys(lua_State *L) {
  struct shdict *d = sd_check(L);
  lua_Integer max = check_integer(L, 2, "keys: max", SHARED_KEYS_DEFAULT, 0,
                                  INT32_MAX);
  lua_newtable(L);
  int t = lua_gettop(L);
  size_t cursor = 0, bufsize = 64 << 10;
  unsigned char *buf = lua_newuserdatauv(L, bufsize, 0);
  lua_Integer n = 0;
  double now = monotime_now();
  do {
    size_t used = 0;
    int rc = shdict_keys(d, now, &cursor, buf, bufsize, &used);
    if (rc == -ENOBUFS) { /* one bucket holds more: a bigger buffer */
      bufsize *= 4;
      buf = lua_newuserdatauv(L, bufsize, 0);
      continue;
    }
    if (rc < 0)
      return sd_fail(L, rc);
    n = sd_pushkeys(L, t, buf, used, n, max);
  } while (cursor != 0 && (max == 0 || n < max));
  lua_settop(L, t);
  return 1;
}

static int sd_lflush_all(lua_State *L) {
  int rc = shdict_flush_all(sd_check(L));
  if (rc < 0)
    return sd_fail(L, rc);
  lua_pushboolean(L, 1);
  return 1;
}

/* flush_expired([max]) -> how many expired entries were reclaimed. */
static int sd_lflush_expired(lua_State *L) {
  struct shdict *d = sd_check(L);
  lua_Integer max = check_integer(L, 2, "flush_expired: max", 0, 0,
                                  INT32_MAX);
  int rc = shdict_flush_expired(d, monotime_now(), (size_t)max);
  if (rc < 0)
    return sd_fail(L, rc);
  lua_pushinteger(L, rc);
  return 1;
}

static void sd_setint(lua_State *L, const char *k, uint64_t v) {
  lua_pushinteger(L, (lua_Integer)v);
  lua_setfield(L, -2, k);
}

static int sd_lstats(lua_State *L) {
  struct shdict_stats st;
  int rc = shdict_stats(sd_check(L), &st);
  if (rc < 0)
    return sd_fail(L, rc);
  lua_createtable(L, 0, 10);
  sd_setint(L, "capacity", st.capacity);
  sd_setint(L, "used", st.used);
  sd_setint(L, "entries", st.entries);
  sd_setint(L, "max_entry", st.max_entry);
  sd_setint(L, "page_size", st.page_size);
  sd_setint(L, "evictions", st.evictions);
  sd_setint(L, "expired", st.expired);
  sd_setint(L, "steals", st.steals);
  sd_setint(L, "resets", st.resets);
  sd_setint(L, "recoveries", st.recoveries);
  return 1;
}

static int sd__tostring(lua_State *L) {
  sd_check(L);
  lua_getiuservalue(L, 1, 1);
  lua_pushfstring(L, "SharedDict (%s)", lua_tostring(L, -1));
  return 1;
}

/* registry[&sd_cache]: name -> SharedDict, so one name is one handle. */
static char sd_cache;

/* dict(name [, size]) -> SharedDict. The first process of the group to
 * ask makes it with `size` bytes; later callers get it as it was made. */
static int sd_open(lua_State *L) {
  size_t len;
  const char *name = luaL_checklstring(L, 1, &len);
  if (len == 0 || len > SHARED_NAME_MAX || strlen(name) != len)
    luaL_argerror(L, 1, "a name is 1 to 58 bytes, no zero byte");
  size_t size = check_size(L, 2, "shared: size", SHARED_DICT_DEFAULT);
  if (size < shdict_min_size() || size > UINT32_MAX)
    return luaL_error(L, "shared: size must be at least %d bytes and below "
                      "4 GiB (got %I)", (int)shdict_min_size(),
                      (lua_Integer)size);
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &sd_cache) != LUA_TTABLE) {
    lua_pop(L, 1);
    lua_newtable(L);
    lua_pushvalue(L, -1);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &sd_cache);
  }
  if (lua_getfield(L, -1, name) == LUA_TUSERDATA)
    return 1;
  lua_pop(L, 1);
  struct shm *r = shared_region(L);
  struct shdict *d = lua_newuserdatauv(L, sizeof *d, 1);
  memset(d, 0, sizeof *d);
  lua_pushvalue(L, 1);
  lua_setiuservalue(L, -2, 1);
  char zone[SHM_NAME_MAX + 1];
  snprintf(zone, sizeof zone, "dict.%s", name);
  int rc = shdict_attach(d, r, zone, size, NULL, NULL);
  if (rc < 0)
    return luaL_error(L, "shared: cannot make dictionary %s: %s", name,
                      rc == -ENOSPC ? "the shared region is full"
                                    : shdict_strerror(rc));
  luaL_setmetatable(L, CLS_SHDICT);
  lua_pushvalue(L, -1);
  lua_setfield(L, -3, name);
  return 1;
}

static const luaL_Reg sd_meta[] = {
  {"__tostring", sd__tostring}, {NULL, NULL}
};
static const luaL_Reg sd_methods[] = {
  {"get", sd_lget}, {"set", sd_lset}, {"add", sd_ladd},
  {"replace", sd_lreplace}, {"incr", sd_lincr}, {"delete", sd_ldelete},
  {"keys", sd_lkeys}, {"ttl", sd_lttl}, {"flush_all", sd_lflush_all},
  {"flush_expired", sd_lflush_expired}, {"stats", sd_lstats},
  {NULL, NULL}
};

static const luaL_Reg shared_funcs[] = {
  {"dict", sd_open},
  {"create", shared_create},
  {"attach", shared_attach},
  {"disable", shared_disable},
  {"setsize", shared_setsize},
  {"claim", shared_claim},
  {"setpid", shared_setpid},
  {"retire", shared_retire},
  {"release", shared_release},
  {"fd", shared_fd},
  {"info", shared_info},
  {"worker", shared_worker},
  {NULL, NULL}
};

void shared_open(lua_State *L) {
  if (luaL_getmetatable(L, CLS_SHDICT) == LUA_TNIL) {
    util_newclass(L, CLS_SHDICT, sd_meta, sd_methods);
    lua_pop(L, 1);
  }
  lua_pop(L, 1);
  luaL_newlib(L, shared_funcs);
}
