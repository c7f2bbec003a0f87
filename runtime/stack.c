/*
 * Task stacks: see stack.h.
 */
#include "stack.h"
#include "internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#if defined(WF_TSAN)
#include <sanitizer/tsan_interface.h>
#endif
#if defined(WF_ASAN)
#include <sanitizer/asan_interface.h>
/* A task's last frames never return (it switches away for good), so their
 * redzones stay poisoned: clean a stack before it is reused or unmapped. */
#define STACK_UNPOISON(s) __asan_unpoison_memory_region((s)->lo, (s)->size)
#else
#define STACK_UNPOISON(s) ((void)0)
#endif

/* Stacks are mapped a batch at a time: as many as fit in the memory one
 * page-table page maps (PT_SPAN), in a mapping aligned to it, or
 * STACK_BATCH of the larger stacks, unaligned. See stacks_map. */
#define STACK_BATCH 32
#define STACK_BATCH_MAX 128 /* 2 MiB of the smallest stacks (16 KiB + guard) */
#define PT_SPAN ((size_t)2 << 20)

#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
enum { GUARD_UNKNOWN, GUARD_MADVISE, GUARD_MPROTECT, GUARD_NONE };
static int guard_mode; /* atomic; see install_guard */

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
	/* WEFT_STACK_GUARD=0: canaries only (no guard page costs a mapping);
	 * =mprotect: PROT_NONE guards even where the kernel has lighter ones. */
	const char *g = getenv("WEFT_STACK_GUARD");
	if (g != NULL && strcmp(g, "0") == 0)
		guard_mode = GUARD_NONE;
	else if (g != NULL && strcmp(g, "mprotect") == 0)
		guard_mode = GUARD_MPROTECT;
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
		wf__log(WF_LOG_WARN,
			"%zu task stacks near vm.max_map_count: new stacks "
			"come without guard pages; an overflow is detected late, "
			"by a canary",
			budget);
	return false;
}

/* Guard pages. Since Linux 6.13, MADV_GUARD_INSTALL marks a page as a
 * guard in the page tables without splitting the mapping: no limit to
 * worry about, and it takes the mmap lock only for reading. Elsewhere a
 * PROT_NONE page, within the budget above. */

/* Whether reading page faults. madvise's 0 is not proof of a guard: an
 * emulator may accept advice it does not know and do nothing (qemu-user
 * does), which would leave every stack unguarded and, believed guarded,
 * without its canary either. A write(2) from the page to a pipe fails with
 * EFAULT where the page is a guard, without a signal. */
static bool page_faults(const char *page)
{
	int fds[2];
	if (pipe2(fds, O_CLOEXEC) != 0)
		return false; /* cannot tell: the caller takes mprotect */
	ssize_t n = write(fds[1], page, 1);
	int err = errno;
	close(fds[0]);
	close(fds[1]);
	return n < 0 && err == EFAULT;
}

static bool install_guard(char *page)
{
	int mode = __atomic_load_n(&guard_mode, __ATOMIC_RELAXED);
	if (mode == GUARD_NONE)
		return false;
	if (mode != GUARD_MPROTECT) {
		if (madvise(page, page_size, MADV_GUARD_INSTALL) == 0 &&
		    (mode == GUARD_MADVISE || page_faults(page))) {
			__atomic_store_n(&guard_mode, GUARD_MADVISE, __ATOMIC_RELAXED);
			return true;
		}
		if (mode == GUARD_MADVISE)
			return false;
		__atomic_store_n(&guard_mode, GUARD_MPROTECT, __ATOMIC_RELAXED);
	}
	if (!take_guard_slot())
		return false;
	if (mprotect(page, page_size, PROT_NONE) != 0) {
		__atomic_sub_fetch(&n_guarded, 1, __ATOMIC_RELAXED);
		return false;
	}
	return true;
}

/* The guard pages of a whole batch in one system call: process_madvise on
 * the calling thread itself (PIDFD_SELF_THREAD, Linux 6.13+) takes a vector
 * of ranges, where madvise takes one. Otherwise, one madvise per stack. */
static bool guard_batch(char *map, size_t slot, size_t count)
{
#if defined(SYS_process_madvise)
	if (count < 2 || count > STACK_BATCH_MAX ||
	    __atomic_load_n(&guard_mode, __ATOMIC_RELAXED) != GUARD_MADVISE)
		return false;
	struct iovec iov[STACK_BATCH_MAX];
	for (size_t i = 0; i < count; i++) {
		iov[i].iov_base = map + i * slot;
		iov[i].iov_len = page_size;
	}
	long done = syscall(SYS_process_madvise, -10000 /* PIDFD_SELF_THREAD */, iov, count,
			    MADV_GUARD_INSTALL, 0);
	return done == (long)(count * page_size);
#else
	(void)map, (void)slot, (void)count;
	return false;
#endif
}

/* The top page of every stack of a batch, where its header sits and a
 * task's first frames go, faulted in with one system call (MADV_POPULATE_
 * WRITE through process_madvise on the calling thread, as the guards):
 * a page fault per new stack costs more than the rest of a spawn, and on
 * a virtual machine much more. Nothing to do if refused: the pages fault
 * in as they are touched, as before. */
static void populate_tops(char *map, size_t slot, size_t count)
{
#if defined(SYS_process_madvise) && defined(MADV_POPULATE_WRITE)
	if (count < 2 || count > STACK_BATCH_MAX)
		return;
	struct iovec iov[STACK_BATCH_MAX];
	for (size_t i = 0; i < count; i++) {
		iov[i].iov_base = map + (i + 1) * slot - page_size;
		iov[i].iov_len = page_size;
	}
	(void)syscall(SYS_process_madvise, -10000 /* PIDFD_SELF_THREAD */, iov, count,
		      MADV_POPULATE_WRITE, 0);
#else
	(void)map, (void)slot, (void)count;
#endif
}

static wf__stack *stack_init(char *map, size_t maplen, bool guarded)
{
	wf__stack *s = (wf__stack *)(map + maplen - round_up(sizeof(wf__stack), 64));
	s->map = map;
	s->maplen = maplen;
	s->lo = map + page_size; /* the guard page, or the canary's page */
	s->size = (size_t)((char *)s - s->lo);
	s->capacity = maplen - page_size;
	s->guarded = guarded;
	s->next = NULL;
#if defined(WF_TSAN)
	/* Creating a TSan fiber is slow: one per stack, not one per task. */
	s->tsan_fiber = __tsan_create_fiber(0);
	s->tsan_uses = 0;
#else
	s->tsan_fiber = NULL;
#endif
	return s;
}

/* How many stacks of slot bytes (guard included) a batch holds, and
 * whether its mapping is aligned to PT_SPAN. */
static size_t batch_count(size_t slot, bool *aligned)
{
	/* Up to 124 KiB stacks: larger ones would make batches so small
	 * that the extra system calls of each (the alignment's two munmaps)
	 * cost more than the alignment saves (256 KiB stacks, 7 to a batch,
	 * ran idle_tasks 25% slower aligned). */
	*aligned = page_size == 4096 && slot * 16 <= PT_SPAN;
	if (!*aligned)
		return STACK_BATCH;
	size_t n = PT_SPAN / slot;
	return n < STACK_BATCH_MAX ? n : STACK_BATCH_MAX;
}

/* An anonymous mapping of len bytes starting on a PT_SPAN boundary, or
 * MAP_FAILED: mapped PT_SPAN larger, then the ends given back. */
static char *map_aligned(size_t len, int prot, int flags)
{
	char *m = mmap(NULL, len + PT_SPAN, prot, flags, -1, 0);
	if (m == MAP_FAILED)
		return m;
	char *start = (char *)(((uintptr_t)m + PT_SPAN - 1) & ~(uintptr_t)(PT_SPAN - 1));
	char *end = m + len + PT_SPAN;
	if (start > m)
		munmap(m, (size_t)(start - m));
	if (end > start + len)
		munmap(start + len, (size_t)(end - (start + len)));
	return start;
}

/* Maps a batch of stacks of `size` usable bytes in one mmap (one system
 * call and one mmap-lock write for the lot) and returns them as a list,
 * their number in *count (1 if single). Every stack keeps its lowest page
 * for the guard; without one, that page holds the canary.
 *
 * A batch owns whole page-table pages: its mapping starts on a 2 MiB
 * boundary and holds as many stacks as fit in 2 MiB (30 of 64 KiB), so
 * that populating their tops fills a page-table page no task has touched
 * yet. With shadow page tables (a virtual machine), entries written into
 * a page-table page the program already uses cost far more than those of
 * a fresh one (the hypervisor write-protects what it shadows), and the
 * unaligned batches straddled 2 MiB boundaries, each populate writing
 * into its predecessor's page: `idle_tasks` runs 20-25% faster aligned.
 * (Two page-table pages to a batch, 60 stacks, ran slower than the
 * unaligned batches of 32 did.) Stacks are never on huge pages
 * (MADV_NOHUGEPAGE: a 2 MiB page would make all of a batch resident). */
static wf__stack *stacks_map(size_t size, bool single, size_t *count)
{
	size_t slot = round_up(size, page_size) + page_size;
	bool aligned = false;
	size_t n = single ? 1 : batch_count(slot, &aligned);
	int prot = PROT_READ | PROT_WRITE;
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK;
	char *map = aligned ? map_aligned(slot * n, prot, flags)
			    : mmap(NULL, slot * n, prot, flags, -1, 0);
	if (map == MAP_FAILED)
		return NULL;
#if defined(MADV_NOHUGEPAGE)
	if (aligned)
		(void)madvise(map, slot * n, MADV_NOHUGEPAGE);
#endif
	bool all_guarded = guard_batch(map, slot, n);
	populate_tops(map, slot, n);
	wf__stack *list = NULL;
	for (size_t i = n; i-- > 0;) {
		char *m = map + i * slot;
		wf__stack *s = stack_init(m, slot, all_guarded || install_guard(m));
		s->next = list;
		list = s;
	}
	__atomic_add_fetch(&n_mapped, n, __ATOMIC_RELAXED);
	*count = n;
	return list;
}

/* What unmapping s leaves to do but the munmap itself: its counts, its
 * TSan fiber, its ASan poison. Its struct (in the mapping) is read here
 * for the last time. */
static void stack_forget(wf__stack *s)
{
	if (s->guarded && __atomic_load_n(&guard_mode, __ATOMIC_RELAXED) == GUARD_MPROTECT)
		__atomic_sub_fetch(&n_guarded, 1, __ATOMIC_RELAXED);
	__atomic_sub_fetch(&n_mapped, 1, __ATOMIC_RELAXED);
#if defined(WF_TSAN)
	__tsan_destroy_fiber(s->tsan_fiber);
#endif
	STACK_UNPOISON(s);
}

static void stack_unmap(wf__stack *s)
{
	char *map = s->map;
	size_t len = s->maplen;
	stack_forget(s);
	munmap(map, len);
}

wf__stack *wf__stack_get(wf__stack_cache *c, size_t size)
{
	size_t n;
	if (size != c->stack_size)
		return stacks_map(size, true, &n);
	if (c->head == NULL) {
		wf__stack *list = stacks_map(size, false, &n);
		if (list == NULL)
			return NULL;
		c->head = list->next;
		c->count += n - 1;
		list->next = NULL;
		return list;
	}
	wf__stack *s = c->head;
	c->head = s->next;
	c->count--;
	STACK_UNPOISON(s);
	return s;
}

void wf__stack_put(wf__stack_cache *c, wf__stack *s)
{
	/* Only the cache's own size is kept; a stack whose canary was hit is
	 * never reused (the task was reported already). */
	if (s->maplen != round_up(c->stack_size, page_size) + page_size ||
	    !wf__stack_canary_ok(s)) {
		stack_unmap(s);
		return;
	}
	s->next = c->head;
	c->head = s;
	c->count++;
}

static int by_address(const void *a, const void *b)
{
	const char *x = (*(wf__stack *const *)a)->map, *y = (*(wf__stack *const *)b)->map;
	return x < y ? -1 : x > y;
}

/* Stacks are unmapped a chunk at a time, sorted by address, each run of
 * adjacent ones (a batch is one mapping) with one munmap: every munmap is
 * a system call, a split of the batch's mapping and a TLB shoot-down that
 * interrupts every core the program runs on. One at a time, giving back
 * the stacks of 100 000 tasks took 0.9 s of interrupts. */
#define TRIM_CHUNK 512

void wf__stack_cache_trim(wf__stack_cache *c, size_t keep)
{
	wf__stack *chunk[TRIM_CHUNK];
	while (c->count > keep) {
		size_t n = 0;
		while (c->count > keep && n < TRIM_CHUNK) {
			chunk[n++] = c->head;
			c->head = c->head->next;
			c->count--;
		}
		qsort(chunk, n, sizeof(chunk[0]), by_address);
		for (size_t i = 0; i < n;) {
			char *start = chunk[i]->map;
			char *end = start;
			while (i < n && chunk[i]->map == end) {
				end += chunk[i]->maplen;
				stack_forget(chunk[i++]);
			}
			munmap(start, (size_t)(end - start));
		}
	}
}

size_t wf__stacks_mapped(void) { return __atomic_load_n(&n_mapped, __ATOMIC_RELAXED); }
size_t wf__stacks_guarded(void) { return __atomic_load_n(&n_guarded, __ATOMIC_RELAXED); }
