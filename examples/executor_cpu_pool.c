/*
 * A CPU-bound computation on a user pool (asyncio's
 * loop.run_in_executor(ThreadPoolExecutor(max_workers=2), ...)): the sum
 * of i*i for i < 1000000, cut into 4 slices computed on a pool of 2
 * threads named "cpu-0" and "cpu-1" (top -H shows them), while the task
 * that awaits them is suspended.
 *
 * The tutorial runs CPU-bound code in a ProcessPoolExecutor because
 * Python's threads take turns under the GIL. C threads have no such lock:
 * the pool's two threads compute on two cores at once, so a thread pool
 * is all a CPU-bound call needs, and its arguments and results are shared
 * memory, not pickled copies.
 *
 * Python:
 *     def sum_squares(lo, hi):
 *         return sum(i * i for i in range(lo, hi))
 *
 *     async def main():
 *         loop = asyncio.get_running_loop()
 *         with concurrent.futures.ThreadPoolExecutor(2) as pool:
 *             parts = await asyncio.gather(*(
 *                 loop.run_in_executor(pool, sum_squares, lo, lo + 250000)
 *                 for lo in range(0, 1000000, 250000)))
 *         print(sum(parts))
 */
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>

#include <weft.h>

#define LIMIT 1000000u
#define SLICES 4u

typedef struct slice {
	uint64_t lo, hi;
} slice;

static void *sum_squares(void *arg)
{
	const slice *s = arg;
	uint64_t sum = 0;
	for (uint64_t i = s->lo; i < s->hi; i++)
		sum += i * i;
	return (void *)(uintptr_t)sum;
}

static void *main_task(void *arg)
{
	(void)arg;
	wf_pool *pool;
	int rc = wf_pool_new("cpu", 2, &pool);
	if (rc != 0)
		return wf_fail(rc, "wf_pool_new");
	/* The slices live on this task's stack: it awaits every call, and
	 * nothing cancels it, so they outlive the calls. */
	slice slices[SLICES];
	wf_future *parts[SLICES];
	unsigned n = 0;
	for (; n < SLICES; n++) {
		slices[n].lo = LIMIT / SLICES * n;
		slices[n].hi = LIMIT / SLICES * (n + 1);
		rc = wf_run_in_executor(pool, sum_squares, &slices[n], &parts[n]);
		if (rc != 0)
			break;
	}
	uint64_t total = 0;
	for (unsigned i = 0; i < n; i++) {
		void *v;
		int r = wf_await(parts[i], &v);
		if (r == 0)
			total += (uintptr_t)v;
		else if (rc == 0)
			rc = r;
		wf_future_release(parts[i]);
	}
	wf_pool_shutdown(pool, WF_POOL_WAIT);
	if (rc != 0)
		return wf_fail(rc, "run_in_executor");
	printf("sum of i*i for i < %u = %" PRIu64 "\n", LIMIT, total);
	return NULL;
}

int main(void)
{
	int rc = wf_run(NULL, main_task, NULL, NULL);
	if (rc != 0) {
		fprintf(stderr, "wf_run: %s\n", wf_strerror(rc));
		return 1;
	}
	return 0;
}
