/*
 * Task stacks: see stack.h.
 */
#include "stack.h"

#include <stdint.h>
#include <stdio.h>
#include <sys/mman.h>
#include <unistd.h>

static size_t page_size = 4096;
static size_t guard_budget = 16384; /* guarded stacks allowed at once */
static size_t n_mapped;  /* atomic */
static size_t n_guarded; /* atomic */
static int warned;       /* atomic */

void wf__stacks_global_init(void)
{
	long ps = sysconf(_SC_PAGESIZE);
	if (ps > 0)
		page_size = (size_t)ps;
	long max_maps = 65530;
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	if (f != NULL) {
		if (fscanf(f, "%ld", &max_maps) != 1)
			max_maps = 65530;
		fclose(f);
	}
	/* Each guarded stack takes two mappings; leave half of the limit to
	 * the rest of the program (libraries, malloc arenas, its own mmaps). */
	size_t budget = (size_t)max_maps / 4;
	__atomic_store_n(&guard_budget, budget, __ATOMIC_RELAXED);
}

static size_t round_up(size_t n, size_t to) { return (n + to - 1) / to * to; }

static bool take_guard_slot(void)
{
	size_t budget = __atomic_load_n(&guard_budget, __ATOMIC_RELAXED);
	size_t n = __atomic_add_fetch(&n_guarded, 1, __ATOMIC_RELAXED);
	if (n <= budget)
		return true;
	__atomic_sub_fetch(&n_guarded, 1, __ATOMIC_RELAXED);
	if (!__atomic_exchange_n(&warned, 1, __ATOMIC_RELAXED))
		fprintf(stderr,
			"weft: %zu task stacks near vm.max_map_count: new stacks "
			"come without guard pages; an overflow is detected late, "
			"by a canary\n",
			budget);
	return false;
}

static wf__stack *stack_map(size_t size)
{
	size_t usable = round_up(size, page_size);
	bool guarded = take_guard_slot();
	size_t maplen = usable + (guarded ? page_size : 0);
	char *map = mmap(NULL, maplen, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (map == MAP_FAILED)
		goto fail;
	if (guarded && mprotect(map, page_size, PROT_NONE) != 0) {
		munmap(map, maplen);
		goto fail;
	}
	wf__stack *s = (wf__stack *)(map + maplen - round_up(sizeof(wf__stack), 64));
	s->map = map;
	s->maplen = maplen;
	s->lo = map + (guarded ? page_size : 0);
	s->size = (size_t)((char *)s - s->lo);
	s->guarded = guarded;
	s->next = NULL;
	__atomic_add_fetch(&n_mapped, 1, __ATOMIC_RELAXED);
	return s;
fail:
	if (guarded)
		__atomic_sub_fetch(&n_guarded, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void stack_unmap(wf__stack *s)
{
	if (s->guarded)
		__atomic_sub_fetch(&n_guarded, 1, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&n_mapped, 1, __ATOMIC_RELAXED);
	munmap(s->map, s->maplen);
}

wf__stack *wf__stack_get(wf__stack_cache *c, size_t size)
{
	if (size == c->stack_size && c->head != NULL) {
		wf__stack *s = c->head;
		c->head = s->next;
		c->count--;
		return s;
	}
	return stack_map(size);
}

void wf__stack_put(wf__stack_cache *c, wf__stack *s)
{
	/* Only the cache's own size is kept; a stack whose canary was hit is
	 * never reused (the task was reported already). */
	if (s->maplen - (s->guarded ? page_size : 0) != round_up(c->stack_size, page_size) ||
	    !wf__stack_canary_ok(s)) {
		stack_unmap(s);
		return;
	}
	s->next = c->head;
	c->head = s;
	c->count++;
}

void wf__stack_cache_trim(wf__stack_cache *c, size_t keep)
{
	while (c->count > keep) {
		wf__stack *s = c->head;
		c->head = s->next;
		c->count--;
		stack_unmap(s);
	}
}

size_t wf__stacks_mapped(void) { return __atomic_load_n(&n_mapped, __ATOMIC_RELAXED); }
size_t wf__stacks_guarded(void) { return __atomic_load_n(&n_guarded, __ATOMIC_RELAXED); }
