/*
 * Task stacks: mmap'd, touched lazily, kept in a per-worker cache.
 *
 * A stack is a private anonymous mapping; its pages cost memory only once
 * touched, so an idle task costs about the pages its frames reach. Stacks
 * are mapped a batch at a time (30 of the default 64 KiB, in a 2 MiB-aligned
 * mapping of their own; stack.c says why) into the worker's cache. The
 * lowest page of each is a guard that turns an overflow into a SIGSEGV,
 * reported with the task's name: where the kernel has MADV_GUARD_INSTALL
 * (Linux 6.13+) the guard lives in the page tables and costs no mapping
 * (a batch's guards go in with one process_madvise);
 * elsewhere it is a PROT_NONE page, which splits the mapping, and the
 * kernel caps mappings at vm.max_map_count (65530 by default), so past a
 * budget of a quarter of that, stacks come without a guard and carry a
 * canary instead: their lowest WF__CANARY_BYTES must stay zero, and every
 * switch away from such a stack checks them. Reading the never-written
 * canary maps the shared zero page: it costs no memory.
 *
 * The struct describing a stack lives at the top of the stack itself (the
 * page the first frames touch anyway), so a stack is one allocation.
 */
#ifndef WEFT_RUNTIME_STACK_H
#define WEFT_RUNTIME_STACK_H

#include <stdbool.h>
#include <stddef.h>

#define WF__CANARY_BYTES 64

typedef struct wf__stack {
	char *map;      /* the whole mapping, guard included */
	size_t maplen;
	char *lo;       /* lowest usable byte */
	size_t size;    /* usable bytes, from lo up to this struct */
	size_t capacity; /* the size asked for, rounded up to pages: a stack
			  * asked for with n bytes has capacity >= n */
	bool guarded;
	struct wf__stack *next; /* cache list */
	void *tsan_fiber;       /* ThreadSanitizer's context, kept with the stack */
	unsigned tsan_uses;     /* tasks run on it since its fiber was made */
} wf__stack;

typedef struct wf__stack_cache {
	wf__stack *head;
	size_t count;
	size_t stack_size; /* the size this cache holds */
} wf__stack_cache;

/* Reads vm.max_map_count and the page size; once per process. */
void wf__stacks_global_init(void);

wf__stack *wf__stack_get(wf__stack_cache *c, size_t size);
void wf__stack_put(wf__stack_cache *c, wf__stack *s);
/* Unmaps cached stacks beyond keep. */
void wf__stack_cache_trim(wf__stack_cache *c, size_t keep);

/* true if the canary of an unguarded stack is intact (always for guarded). */
static inline bool wf__stack_canary_ok(const wf__stack *s)
{
	if (s->guarded)
		return true;
	const unsigned long *p = (const unsigned long *)s->lo;
	unsigned long acc = 0;
	for (size_t i = 0; i < WF__CANARY_BYTES / sizeof(long); i++)
		acc |= p[i];
	return acc == 0;
}

/* true if addr is in s's guard page. */
static inline bool wf__stack_in_guard(const wf__stack *s, const void *addr)
{
	const char *a = addr;
	return s->guarded && a >= s->map && a < s->lo;
}

/* Process-wide counts, for tests and the bench. */
size_t wf__stacks_mapped(void);
size_t wf__stacks_guarded(void);

#endif
