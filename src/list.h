/*
 * list.h -- an intrusive doubly linked list (the Linux kernel's shape): a
 * `struct link` inside each member, a `struct link` head in the owner.
 *
 * Contract: no lua.h here. An empty list is a head linked to itself, so
 * insert and remove never test for NULL; a removed link is reset to point
 * at itself, so removing twice is harmless (idempotent destroys rely on it).
 */
#ifndef BERTH_LIST_H
#define BERTH_LIST_H

#include <stddef.h>

struct link {
  struct link *next, *prev;
};

static inline void link_init(struct link *l) {
  l->next = l->prev = l;
}

static inline int link_empty(const struct link *head) {
  return head->next == head;
}

/* Put `l` first in the list at `head`. */
static inline void link_push(struct link *head, struct link *l) {
  l->next = head->next;
  l->prev = head;
  head->next->prev = l;
  head->next = l;
}

static inline void link_remove(struct link *l) {
  l->prev->next = l->next;
  l->next->prev = l->prev;
  link_init(l);
}

/* The struct of `type` whose `member` is the link `l`. */
#define link_entry(l, type, member) \
  ((type *)(void *)((char *)(l) - offsetof(type, member)))

#endif
