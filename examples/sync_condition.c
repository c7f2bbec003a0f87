/*
 * asyncio.Condition, in weft: three consumers wait on a condition until
 * there is stock to take; a producer adds one item at a time and notifies
 * one waiter per item. Each consumer takes exactly one item. The
 * condition's lock guards the stock: a waiter releases it while it waits
 * and holds it again when the wait returns.
 *
 * Python:
 *     async def consumer(cond, name):
 *         async with cond:
 *             await cond.wait_for(lambda: stock)
 *             item = stock.pop(0)
 *             print(f"{name} took item {item}")
 *
 *     async def producer(cond):
 *         for item in (1, 2, 3):
 *             await asyncio.sleep(0.05)
 *             async with cond:
 *                 stock.append(item)
 *                 cond.notify(1)
 */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

#define CONSUMERS 3

static wf_cond *cond;
/* Guarded by the condition's lock. */
static int stock[CONSUMERS], nstock, ntaken;

static bool have_stock(void *arg)
{
	return nstock > 0; /* called with the lock held */
}

static void *consumer(void *arg)
{
	const char *name = arg;
	wf_lock *lock = wf_cond_lock(cond);
	int rc = wf_lock_acquire(lock, WF_FOREVER);
	if (rc != 0)
		return wf_fail(rc, "lock");
	/* Waits (lock released meanwhile) until the predicate holds; a
	 * wake-up that finds the stock taken already waits again. */
	rc = wf_cond_wait_for(cond, have_stock, NULL, 10000);
	if (rc == 0) {
		int item = stock[--nstock];
		ntaken++;
		printf("%s took item %d\n", name, item);
	}
	wf_lock_release(lock); /* held again after the wait, whatever it returned */
	return rc == 0 ? NULL : wf_fail(rc, "wait_for");
}

static void *producer(void *arg)
{
	wf_lock *lock = wf_cond_lock(cond);
	for (int item = 1; item <= CONSUMERS; item++) {
		int rc = wf_sleep(50);
		if (rc == 0)
			rc = wf_lock_acquire(lock, WF_FOREVER);
		if (rc != 0)
			return wf_fail(rc, "producer");
		stock[nstock++] = item;
		wf_cond_notify(cond, 1); /* one item: one consumer */
		wf_lock_release(lock);
	}
	return NULL;
}

static void *main_task(void *arg)
{
	int rc = wf_cond_new(NULL, &cond); /* with a lock of its own */
	if (rc != 0)
		return wf_fail(rc, "cond");
	static const char *names[CONSUMERS] = {"consumer A", "consumer B", "consumer C"};
	wf_task *tasks[CONSUMERS + 1];
	for (int i = 0; i < CONSUMERS; i++)
		tasks[i] = wf_spawn(consumer, (void *)names[i]);
	tasks[CONSUMERS] = wf_spawn(producer, NULL);
	wf_outcome out[CONSUMERS + 1];
	rc = wf_gather(tasks, CONSUMERS + 1, out, WF_GATHER_ALL);
	int failed = 0;
	for (int i = 0; i <= CONSUMERS; i++)
		failed += out[i].err != 0;
	wf_outcomes_clear(out, CONSUMERS + 1);
	printf("%d taken, %d left, %d task(s) failed\n", ntaken, nstock, failed);
	wf_cond_free(cond);
	return rc == 0 ? NULL : wf_fail(rc, "gather");
}

int main(void)
{
	int rc = wf_run(NULL, main_task, NULL, NULL);
	if (rc != 0)
		fprintf(stderr, "wf_run: %s\n", wf_strerror(rc));
	return rc == 0 ? 0 : 1;
}
