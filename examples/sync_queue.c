/*
 * asyncio.Queue, in weft: a producer puts jobs on a bounded queue, three
 * consumers take them, mark each one done, and stop on a sentinel. The
 * producer's join returns once every job has been marked done.
 *
 * The tutorial's version never ends by itself: its workers loop forever
 * (`while True: await queue.get()`), so once queue.join() has returned,
 * main has to cancel them and gather the cancellations. Here the
 * producer puts one sentinel per consumer after the jobs, and each
 * consumer returns when it takes one: every task ends on its own, with
 * nothing to cancel. (wf_queue_shutdown, Python 3.13's Queue.shutdown, is
 * the other way: gets take what is left, then fail with WF_ESHUTDOWN.)
 *
 * Python:
 *     async def consumer(name, q):
 *         while True:
 *             job = await q.get()
 *             if job is None:          # the sentinel
 *                 q.task_done()
 *                 return
 *             total[name] += job
 *             q.task_done()
 *
 *     async def main():
 *         q = asyncio.Queue(maxsize=4)
 *         consumers = [asyncio.create_task(consumer(n, q)) for n in "abc"]
 *         for job in range(1, 21):
 *             await q.put(job)
 *         for _ in consumers:
 *             await q.put(None)
 *         await q.join()
 *         await asyncio.gather(*consumers) */
#include <stdint.h>
#include <stdio.h>

#include <weft.h>

#define JOBS 20
#define CONSUMERS 3
#define SENTINEL NULL /* jobs are 1..JOBS, never NULL */

static wf_queue *q;
static long total; /* atomic */

static void *consumer(void *arg)
{
	long mine = 0;
	for (;;) {
		void *job;
		int rc = wf_queue_get(q, &job, WF_FOREVER);
		if (rc != 0)
			return wf_fail(rc, "get");
		if (job == SENTINEL) {
			wf_queue_task_done(q);
			break;
		}
		mine += (intptr_t)job;
		wf_queue_task_done(q);
	}
	__atomic_fetch_add(&total, mine, __ATOMIC_RELAXED);
	return NULL;
}

static void *main_task(void *arg)
{
	(void)arg;
	wf_queue_opts opts = {.kind = WF_QUEUE_FIFO, .maxsize = 4};
	int rc = wf_queue_new(&opts, &q);
	if (rc != 0)
		return wf_fail(rc, "queue");
	wf_task *consumers[CONSUMERS];
	for (int i = 0; i < CONSUMERS; i++)
		if ((consumers[i] = wf_spawn(consumer, NULL)) == NULL)
			return wf_fail(WF_ENOMEM, "spawn");
	for (intptr_t job = 1; job <= JOBS; job++)
		wf_queue_put(q, (void *)job, WF_FOREVER); /* waits while full */
	for (int i = 0; i < CONSUMERS; i++)
		wf_queue_put(q, SENTINEL, WF_FOREVER);
	rc = wf_queue_join(q, WF_FOREVER);
	printf("join: %s, %zu left in the queue\n", rc == 0 ? "every job done" : wf_strerror(rc),
	       wf_queue_qsize(q));
	int failed = 0;
	for (int i = 0; i < CONSUMERS; i++)
		failed += wf_join(consumers[i], NULL) != 0;
	printf("consumers stopped: %d of %d\n", CONSUMERS - failed, CONSUMERS);
	printf("sum of jobs: %ld\n", total);
	wf_queue_free(q);
	return NULL;
}

int main(void)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	return wf_run(&cfg, main_task, NULL, NULL) == 0 ? 0 : 1;
}
