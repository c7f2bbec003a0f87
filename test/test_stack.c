/*
 * Task stacks given back: a trim of a worker's stack cache unmaps exactly
 * the stacks it drops (in runs of adjacent ones, one munmap per run) and
 * none of those it keeps, however the cache's list interleaves them in
 * memory; and a runtime that ran thousands of suspended tasks at once
 * leaves none of their stacks mapped once wf_run returns.
 */
#include <criterion/criterion.h>
#include <errno.h>
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

static void *idle_main(void *arg)
{
	struct idle *st = arg;
	static struct idle_arg args[N_IDLE];
	static wf_task *tasks[N_IDLE];
	CHECK_RC(wf_event_new(&st->go), 0);
	for (int i = 0; i < N_IDLE; i++) {
		args[i] = (struct idle_arg){st, i};
		tasks[i] = wf_spawn(idle_task, &args[i]);
		CHECK(tasks[i] != NULL);
	}
	/* Every task on its own stack before any of them ends. */
	for (int spins = 0; spins < 100000; spins++) {
		int started = 0;
		for (int i = 0; i < N_IDLE; i++)
			started += __atomic_load_n(&st->frame[i], __ATOMIC_ACQUIRE) != 0;
		if (started == N_IDLE)
			break;
		wf_sleep(1);
	}
	CHECK_RC(wf_event_set(st->go), 0);
	for (int i = 0; i < N_IDLE; i++)
		CHECK_RC(wf_join(tasks[i], NULL), 0);
	CHECK_RC(wf_event_free(st->go), 0);
	return NULL;
}

Test(stack, a_runtime_leaves_no_stack_mapped)
{
	static struct idle st;
	size_t before = wf__stacks_mapped();
	for (unsigned workers = 1; workers <= 4; workers *= 2) {
		memset(st.frame, 0, sizeof(st.frame));
		run_weft(workers, idle_main, &st);
		cr_assert_eq(wf__stacks_mapped(), before, "%u workers: %zu stacks left mapped",
			     workers, wf__stacks_mapped() - before);
		for (int i = 0; i < N_IDLE; i++) {
			cr_assert_neq(st.frame[i], 0, "task %d never ran", i);
			cr_assert(!page_mapped((void *)st.frame[i]),
				  "%u workers: the stack of task %d is still mapped", workers, i);
		}
	}
}
