/*
 * asyncio.Barrier, in weft: three tasks finish a first phase at different
 * times and meet at a barrier; none starts the second phase before all
 * three have arrived. Each wait returns the task's arrival index (0, 1,
 * 2). Then a barrier of two that only one task reaches: its wait times out
 * and breaks the barrier, and later waits get WF_EBROKEN until a reset.
 *
 * Python:
 *     async def worker(barrier, ms):
 *         await asyncio.sleep(ms / 1000)      # phase 1
 *         index = await barrier.wait()
 *         ...                                 # phase 2
 *
 *     async def main():
 *         barrier = asyncio.Barrier(3)
 *         await asyncio.gather(*(worker(barrier, ms) for ms in (30, 60, 90)))
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

#define PARTIES 3

static wf_barrier *barrier;
static int arrived;   /* atomic: tasks done with phase 1 */
static int all_there; /* atomic: phase-2 starts that saw every arrival */
static int index_seen[PARTIES]; /* atomic */

static void *worker(void *arg)
{
	int rc = wf_sleep((uint64_t)(uintptr_t)arg); /* phase 1 */
	if (rc != 0)
		return wf_fail(rc, "phase 1");
	__atomic_add_fetch(&arrived, 1, __ATOMIC_ACQ_REL);
	int index = wf_barrier_wait(barrier, 10000);
	if (index < 0)
		return wf_fail(index, "barrier");
	/* Phase 2: every party has finished phase 1 by now. */
	if (__atomic_load_n(&arrived, __ATOMIC_ACQUIRE) == PARTIES)
		__atomic_add_fetch(&all_there, 1, __ATOMIC_RELAXED);
	__atomic_add_fetch(&index_seen[index], 1, __ATOMIC_RELAXED);
	return NULL;
}

static void *main_task(void *arg)
{
	int rc = wf_barrier_new(PARTIES, &barrier);
	if (rc != 0)
		return wf_fail(rc, "barrier");
	wf_task *tasks[PARTIES];
	for (int i = 0; i < PARTIES; i++)
		tasks[i] = wf_spawn(worker, (void *)(uintptr_t)(30 * (i + 1)));
	rc = wf_gather(tasks, PARTIES, NULL, 0);
	printf("gather: %s\n", wf_strerror(rc));
	printf("phase 2 started with all %d arrived: %d of %d\n", PARTIES, all_there, PARTIES);
	printf("arrival indices handed out: %d %d %d (each once)\n", index_seen[0], index_seen[1],
	       index_seen[2]);
	wf_barrier_free(barrier);

	/* A party that never comes: the wait times out and breaks it. */
	rc = wf_barrier_new(2, &barrier);
	if (rc != 0)
		return wf_fail(rc, "barrier");
	int r1 = wf_barrier_wait(barrier, 50);
	int r2 = wf_barrier_wait(barrier, 50);
	bool broken = wf_barrier_broken(barrier);
	wf_barrier_reset(barrier);
	printf("lonely wait: %s; next wait: %s; broken: %s; after reset: %s\n", wf_err_name(r1),
	       wf_err_name(r2), broken ? "yes" : "no", wf_barrier_broken(barrier) ? "broken" : "whole");
	wf_barrier_free(barrier);
	return NULL;
}

int main(void)
{
	int rc = wf_run(NULL, main_task, NULL, NULL);
	if (rc != 0)
		fprintf(stderr, "wf_run: %s\n", wf_strerror(rc));
	return rc == 0 ? 0 : 1;
}
