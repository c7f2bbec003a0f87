/*
 * asyncio.Lock, in weft: two tasks each print a block of lines, yielding to
 * the scheduler between lines. Under the lock the blocks never interleave,
 * even on several workers: each task prints its whole block while the
 * other waits for the lock.
 *
 * Python:
 *     lock = asyncio.Lock()
 *
 *     async def worker(name):
 *         async with lock:
 *             for i in range(3):
 *                 print(f"{name}: line {i}")
 *                 await asyncio.sleep(0)
 *
 *     async def main():
 *         await asyncio.gather(worker("A"), worker("B"))
 */
#include <stdio.h>

#include <weft.h>

static wf_lock *lock;
static char sequence[8]; /* who printed each line, in order */
static int nlines;        /* guarded by lock */

static void *worker(void *arg)
{
	const char *name = arg;
	int rc = wf_lock_acquire(lock, WF_FOREVER);
	if (rc != 0)
		return wf_fail(rc, "lock");
	for (int i = 0; i < 3; i++) {
		printf("%s: line %d\n", name, i);
		fflush(stdout);
		sequence[nlines++] = name[0];
		wf_yield(); /* the other task runs, but cannot enter */
	}
	wf_lock_release(lock);
	return NULL;
}

static void *main_task(void *arg)
{
	(void)arg;
	int rc = wf_lock_new(&lock);
	if (rc != 0)
		return wf_fail(rc, "lock");
	wf_task *a = wf_spawn(worker, "A");
	wf_task *b = wf_spawn(worker, "B");
	if (a == NULL || b == NULL)
		return wf_fail(WF_ENOMEM, "spawn");
	int ra = wf_join(a, NULL), rb = wf_join(b, NULL);
	wf_lock_free(lock);
	printf("sequence: %s (%s)\n", sequence, ra == 0 && rb == 0 ? "ok" : "failed");
	return NULL;
}

int main(void)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	return wf_run(&cfg, main_task, NULL, NULL) == 0 ? 0 : 1;
}
