/*
 * Workloads of the combinators (include/weft/compose.h), beside the spec's.
 *
 * group_many: gather_many's work through a task group. 1000 rounds (the
 * last takes any remainder of N); in each the root enters a group, spawns
 * 1000 tasks into it that each store 1 in their own slot (a group keeps no
 * results: that is asyncio's TaskGroup too), leaves the group (which waits
 * for all of them) and adds the slots up. Its ops_per_s set beside
 * gather_many's and spawn_many's gives the cost of a group per task.
 *
 * gather_call_many: the same rounds gathered with one wf_gather call.
 */
#include <stdint.h>
#include <stdlib.h>

#include "bench.h"

#define ROUND 1000

static void *store_one(void *arg)
{
	*(uint64_t *)arg = 1;
	return NULL;
}

static int run_group_many(wf_bench_run *run)
{
	uint64_t *slots = calloc(ROUND, sizeof(*slots));
	if (slots == NULL)
		return WF_ENOMEM;
	int err = 0;
	uint64_t total = 0;
	for (uint64_t left = run->n; left > 0 && err == 0;) {
		size_t size = left < ROUND ? (size_t)left : ROUND;
		wf_group *g;
		err = wf_group_enter(&g);
		if (err != 0)
			break;
		for (size_t i = 0; i < size && err == 0; i++)
			err = wf_group_spawn(g, store_one, &slots[i], NULL, NULL);
		int rc = wf_group_leave(g, NULL, NULL);
		if (err == 0)
			err = rc;
		for (size_t i = 0; i < size; i++) {
			total += slots[i];
			slots[i] = 0;
		}
		left -= size;
	}
	run->check = total;
	free(slots);
	return err;
}

WF_BENCH_DEFINE(group_many, .name = "group_many", .default_n = 1000000, .fn = run_group_many)

static void *return_one(void *arg)
{
	return (void *)(uintptr_t)1;
}

static int run_gather_call_many(wf_bench_run *run)
{
	wf_task **tasks = malloc(ROUND * sizeof(*tasks));
	wf_outcome *out = malloc(ROUND * sizeof(*out));
	if (tasks == NULL || out == NULL) {
		free(tasks);
		free(out);
		return WF_ENOMEM;
	}
	int err = 0;
	uint64_t total = 0;
	for (uint64_t left = run->n; left > 0 && err == 0;) {
		size_t size = left < ROUND ? (size_t)left : ROUND;
		size_t spawned = 0;
		for (; spawned < size; spawned++)
			if ((tasks[spawned] = wf_spawn(return_one, NULL)) == NULL) {
				err = WF_ENOMEM;
				break;
			}
		int rc = wf_gather(tasks, spawned, out, 0);
		if (err == 0)
			err = rc;
		for (size_t i = 0; i < spawned; i++)
			total += (uintptr_t)out[i].value;
		left -= size;
	}
	run->check = total;
	free(tasks);
	free(out);
	return err;
}

WF_BENCH_DEFINE(gather_call_many, .name = "gather_call_many", .default_n = 1000000,
		.fn = run_gather_call_many)
