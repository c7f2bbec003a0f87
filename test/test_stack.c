/*
 * Task stacks: every stack's lowest page is a guard that really faults,
 * however it was installed. Stacks given back: a trim of a worker's stack
 * cache unmaps exactly the stacks it drops (in runs of adjacent ones, one
 * munmap per run) and none of those it keeps, however the cache's list
 * interleaves them in memory; a runtime that ran thousands of suspended
 * tasks at once leaves none of their stacks mapped once wf_run returns; and
 * so it does with every kind of batch (aligned ones of 16 and 64 KiB
 * stacks, unaligned ones of 256 KiB) while its tasks yield, join children
 * inline, are
 * cancelled and woken from a plain thread.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "rt_check.h"
#include "stack.h"
#include "weft.h"

/* Whether the page holding p is mapped: mincore fails with ENOMEM on an
 * unmapped range (and succeeds on a mapped page, touched or not). */
static bool page_mapped(const void *p)
{
	long ps = sysconf(_SC_PAGESIZE);
	uintptr_t page = (uintptr_t)p & ~(uintptr_t)(ps - 1);
	unsigned char vec;
	if (mincore((void *)page, (size_t)ps, &vec) == 0)
		return true;
	cr_assert_eq(errno, ENOMEM, "mincore: %s", strerror(errno));
	return false;
}

/* Whether reading the page at p faults, without taking the fault: write(2)
 * from it to a pipe fails with EFAULT on a guard page. */
static bool page_faults(const void *p)
{
	int fds[2];
	cr_assert_eq(pipe(fds), 0, "pipe: %s", strerror(errno));
	ssize_t n = write(fds[1], p, 1);
	int err = errno;
	close(fds[0]);
	close(fds[1]);
	cr_assert(n == 1 || err == EFAULT, "write: %s", strerror(err));
	return n < 0;
}

/* Every stack's lowest page is a guard that really faults, whichever way
 * the runtime installed it (one madvise, a batch's process_madvise, or
 * mprotect where the kernel lacks MADV_GUARD_INSTALL or an emulator
 * accepts it without doing it), and its usable bytes start right above. */
Test(stack, every_stack_has_a_guard_that_faults)
{
	wf__stacks_global_init();
	wf__stack_cache c = {.head = NULL, .count = 0, .stack_size = 64 * 1024};
	enum { N = 100 }; /* four batches: the first installs its guards one by one */
	wf__stack *s[N + 1];
	for (int i = 0; i < N; i++)
		cr_assert_not_null(s[i] = wf__stack_get(&c, c.stack_size));
	s[N] = wf__stack_get(&c, 24 * 1024); /* a size of its own: mapped alone */
	cr_assert_not_null(s[N]);
	for (int i = 0; i <= N; i++) {
		cr_assert(s[i]->guarded, "stack %d has no guard page", i);
		cr_assert(page_faults(s[i]->map), "stack %d: its guard page can be read", i);
		cr_assert_eq(s[i]->lo, s[i]->map + sysconf(_SC_PAGESIZE));
		cr_assert(!page_faults(s[i]->lo), "stack %d: its lowest usable page faults", i);
		s[i]->lo[0] = 1; /* and it is writable */
	}
	for (int i = 0; i <= N; i++)
		wf__stack_put(&c, s[i]);
	wf__stack_cache_trim(&c, 0);
	cr_assert_eq(c.count, 0);
}

#define N_STACKS 300 /* ten batches of 30 (each 2 MiB-aligned, apart), eleven of 32 elsewhere */

Test(stack, trim_unmaps_exactly_the_stacks_it_drops)
{
	wf__stacks_global_init();
	size_t before = wf__stacks_mapped();
	wf__stack_cache c = {.head = NULL, .count = 0, .stack_size = 64 * 1024};
	static wf__stack *all[N_STACKS];
	for (int i = 0; i < N_STACKS; i++) {
		all[i] = wf__stack_get(&c, c.stack_size);
		cr_assert_not_null(all[i]);
	}
	cr_assert_eq(wf__stacks_mapped() - before, N_STACKS + c.count);
	/* Back in an order that interleaves kept and dropped stacks in
	 * memory: every third one first (the trim pops the newest first, so
	 * these stay), then the rest in a stride that scatters them. */
	for (int i = 0; i < N_STACKS; i += 3)
		wf__stack_put(&c, all[i]);
	size_t kept = c.count;
	for (int k = 0; k < N_STACKS; k++) {
		int i = (k * 7) % N_STACKS;
		if (i % 3 != 0)
			wf__stack_put(&c, all[i]);
	}
	/* The header sits in the stack: read it while it is there. */
	static char *map[N_STACKS];
	static size_t maplen[N_STACKS];
	for (int i = 0; i < N_STACKS; i++) {
		map[i] = all[i]->map;
		maplen[i] = all[i]->maplen;
	}
	size_t mapped = wf__stacks_mapped();
	wf__stack_cache_trim(&c, kept);
	cr_assert_eq(c.count, kept);
	cr_assert_eq(mapped - wf__stacks_mapped(), N_STACKS - N_STACKS / 3);

	bool in_cache[N_STACKS] = {false};
	size_t listed = 0;
	for (wf__stack *s = c.head; s != NULL; s = s->next, listed++)
		for (int i = 0; i < N_STACKS; i++)
			if (all[i] == s)
				in_cache[i] = true;
	cr_assert_eq(listed, kept);
	for (int i = 0; i < N_STACKS; i++) {
		if (i % 3 == 0) {
			cr_assert(in_cache[i], "stack %d was to be kept", i);
			/* Still whole: every page below the header writable. */
			for (char *p = all[i]->lo; p < (char *)all[i]; p += 4096)
				*(volatile char *)p = 1;
			cr_assert(page_mapped(all[i]->lo));
			cr_assert(page_mapped(all[i]));
		} else {
			cr_assert(!page_mapped(map[i]), "stack %d: guard still mapped", i);
			cr_assert(!page_mapped(map[i] + maplen[i] / 2), "stack %d: middle still mapped",
				  i);
			cr_assert(!page_mapped(map[i] + maplen[i] - 1), "stack %d: top still mapped", i);
		}
	}
	wf__stack_cache_trim(&c, 0);
	cr_assert_eq(c.count, 0);
	cr_assert_null(c.head);
	cr_assert_eq(wf__stacks_mapped(), before);
	for (int i = 0; i < N_STACKS; i++)
		cr_assert(!page_mapped(map[i] + maplen[i] - 1), "stack %d still mapped", i);
}

/* ---- a runtime gives every stack back ---------------------------------- */

#define N_IDLE 3000

struct idle {
	int n; /* tasks, at most N_IDLE */
	wf_event *go;
	uintptr_t frame[N_IDLE]; /* an address in each task's stack */
};

struct idle_arg {
	struct idle *st;
	int i;
};

static void *idle_task(void *arg)
{
	struct idle_arg *a = arg;
	/* The frame itself (a local may live on ASan's fake stack). */
	__atomic_store_n(&a->st->frame[a->i], (uintptr_t)__builtin_frame_address(0),
			 __ATOMIC_RELEASE);
	CHECK_RC(wf_event_wait(a->st->go, WF_FOREVER), 0);
	return NULL;
}

/* Until each of n tasks has recorded its frame (just before it waits on
 * the event); bounded, like every wait in the tests. */
static void wait_all_suspended(const uintptr_t *frame, long n)
{
	for (int spins = 0; spins < 100000; spins++) {
		long started = 0;
		for (long i = 0; i < n; i++)
			started += __atomic_load_n(&frame[i], __ATOMIC_ACQUIRE) != 0;
		if (started == n)
			return;
		wf_sleep(1);
	}
}

static void *idle_main(void *arg)
{
	struct idle *st = arg;
	static struct idle_arg args[N_IDLE];
	static wf_task *tasks[N_IDLE];
	CHECK_RC(wf_event_new(&st->go), 0);
	for (int i = 0; i < st->n; i++) {
		args[i] = (struct idle_arg){st, i};
		tasks[i] = wf_spawn(idle_task, &args[i]);
		CHECK(tasks[i] != NULL);
	}
	/* Every task on its own stack before any of them ends. */
	wait_all_suspended(st->frame, st->n);
	CHECK_RC(wf_event_set(st->go), 0);
	for (int i = 0; i < st->n; i++)
		CHECK_RC(wf_join(tasks[i], NULL), 0);
	CHECK_RC(wf_event_free(st->go), 0);
	return NULL;
}

Test(stack, a_runtime_leaves_no_stack_mapped)
{
	static struct idle st;
	size_t before = wf__stacks_mapped();
	st.n = (int)test_iters_min(N_IDLE, 200);
	for (unsigned workers = 1; workers <= 4; workers *= 2) {
		memset(st.frame, 0, sizeof(st.frame));
		run_weft(workers, idle_main, &st);
		cr_assert_eq(wf__stacks_mapped(), before, "%u workers: %zu stacks left mapped",
			     workers, wf__stacks_mapped() - before);
		for (int i = 0; i < st.n; i++) {
			cr_assert_neq(st.frame[i], 0, "task %d never ran", i);
			cr_assert(!page_mapped((void *)st.frame[i]),
				  "%u workers: the stack of task %d is still mapped", workers, i);
		}
	}
}

/* ---- every kind of batch under load ------------------------------------ */

/* Stacks of 16 KiB (102 to an aligned batch), the default 64 KiB (30) and
 * 256 KiB (unaligned batches of 32), at 1 and 3 workers: thousands of
 * tasks alive at once, each doing one of four things before it suspends
 * (yields, a child spawned and joined inline on its stack, a plain wait, a
 * wait a plain thread cancels), woken by a plain thread. Every outcome is
 * as the task's kind says, and no stack is left mapped. */
#define N_MIXED 1200

struct mixed {
	wf_event *go;
	wf_task *tasks[N_MIXED];
	uintptr_t frame[N_MIXED];
	int child_ran; /* atomic */
};

static struct mixed mx;

static void *mixed_child(void *arg)
{
	(void)arg;
	__atomic_add_fetch(&mx.child_ran, 1, __ATOMIC_RELAXED);
	return (void *)(uintptr_t)7;
}

static void *mixed_task(void *arg)
{
	int i = *(int *)arg;
	switch (i % 4) {
	case 0:
		for (int k = 0; k < 3; k++)
			CHECK_RC(wf_yield(), 0);
		break;
	case 1: {
		wf_task *c = wf_spawn(mixed_child, NULL);
		void *res = NULL;
		CHECK(c != NULL);
		CHECK_RC(wf_join(c, &res), 0);
		CHECK(res == (void *)(uintptr_t)7);
		break;
	}
	default:
		break;
	}
	__atomic_store_n(&mx.frame[i], (uintptr_t)__builtin_frame_address(0), __ATOMIC_RELEASE);
	int rc = wf_event_wait(mx.go, WF_FOREVER);
	CHECK_RC(rc, i % 4 == 3 ? WF_ECANCELED : 0);
	return (void *)(uintptr_t)(i + 1);
}

static void *mixed_waker(void *arg)
{
	long n = (long)(intptr_t)arg;
	for (long i = 3; i < n; i += 4)
		CHECK_RC(wf_cancel(mx.tasks[i]), 0);
	CHECK_RC(wf_event_set(mx.go), 0);
	return NULL;
}

static void *mixed_main(void *arg)
{
	long n = (long)(intptr_t)arg;
	static int index[N_MIXED];
	CHECK_RC(wf_event_new(&mx.go), 0);
	for (long i = 0; i < n; i++) {
		index[i] = (int)i;
		mx.tasks[i] = wf_spawn(mixed_task, &index[i]);
		CHECK(mx.tasks[i] != NULL);
	}
	/* Every task suspended on the event before the plain thread cancels
	 * some and wakes the rest. */
	wait_all_suspended(mx.frame, n);
	pthread_t th;
	CHECK(pthread_create(&th, NULL, mixed_waker, (void *)(intptr_t)n) == 0);
	for (long i = 0; i < n; i++) {
		void *res = NULL;
		int rc = wf_join(mx.tasks[i], &res);
		if (i % 4 == 3) {
			CHECK_RC(rc, WF_ECANCELED);
		} else {
			CHECK_RC(rc, 0);
			CHECK(res == (void *)(uintptr_t)(i + 1));
		}
	}
	pthread_join(th, NULL);
	CHECK_RC(wf_event_free(mx.go), 0);
	return NULL;
}

Test(stack, batches_of_every_kind_under_load)
{
	static const size_t kib[] = {16, 64, 256};
	long n = test_iters_min(N_MIXED, 120);
	size_t before = wf__stacks_mapped();
	for (size_t k = 0; k < sizeof(kib) / sizeof(kib[0]); k++) {
		for (unsigned workers = 1; workers <= 3; workers += 2) {
			memset(mx.frame, 0, sizeof(mx.frame));
			mx.child_ran = 0;
			wf_config cfg;
			wf_config_init(&cfg);
			cfg.workers = workers;
			cfg.stack_size = kib[k] * 1024;
			int rc = wf_run(&cfg, mixed_main, (void *)(intptr_t)n, NULL);
			cr_assert_eq(rc, 0, "wf_run: %s", wf_err_name(rc));
			check_none_failed();
			check_no_leaks();
			cr_assert_eq(__atomic_load_n(&mx.child_ran, __ATOMIC_RELAXED), (n + 2) / 4,
				     "%zu KiB, %u workers: children", kib[k], workers);
			cr_assert_eq(wf__stacks_mapped(), before, "%zu KiB, %u workers: %zu stacks left",
				     kib[k], workers, wf__stacks_mapped() - before);
			for (long i = 0; i < n; i++)
				cr_assert(!page_mapped((void *)mx.frame[i]),
					  "%zu KiB, %u workers: task %ld's stack still mapped", kib[k],
					  workers, i);
		}
	}
}
