/*
 * asyncio.Semaphore, in weft: six downloads share a semaphore of two
 * permits, so no more than two run at once, whatever the number of
 * workers. A bounded semaphore (asyncio.BoundedSemaphore) refuses a
 * release it never gave out.
 *
 * Python:
 *     sem = asyncio.Semaphore(2)
 *
 *     async def download(i):
 *         async with sem:
 *             await asyncio.sleep(0.05)
 *
 *     async def main():
 *         await asyncio.gather(*(download(i) for i in range(6)))
 */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

#define DOWNLOADS 6
#define PERMITS 2

static wf_sem *sem;
static int inside, most; /* atomic: holders now, and the most at once */

static void *download(void *arg)
{
	int rc = wf_sem_acquire(sem, 10000);
	if (rc != 0)
		return wf_fail(rc, "acquire");
	int now = __atomic_add_fetch(&inside, 1, __ATOMIC_ACQ_REL);
	int seen = __atomic_load_n(&most, __ATOMIC_RELAXED);
	while (now > seen && !__atomic_compare_exchange_n(&most, &seen, now, false,
							   __ATOMIC_RELAXED, __ATOMIC_RELAXED))
		;
	rc = wf_sleep(50); /* the download */
	__atomic_sub_fetch(&inside, 1, __ATOMIC_ACQ_REL);
	wf_sem_release(sem);
	return rc == 0 ? NULL : wf_fail(rc, "download");
}

static void *main_task(void *arg)
{
	int rc = wf_sem_new(PERMITS, &sem);
	if (rc != 0)
		return wf_fail(rc, "sem");
	wf_task *tasks[DOWNLOADS];
	for (int i = 0; i < DOWNLOADS; i++)
		tasks[i] = wf_spawn(download, NULL);
	rc = wf_gather(tasks, DOWNLOADS, NULL, 0);
	printf("%d downloads: %s; at most %d at once; %u permits free\n", DOWNLOADS,
	       wf_strerror(rc), most, wf_sem_value(sem));
	wf_sem_free(sem);

	/* A bounded semaphore catches a release too many. */
	wf_sem *bounded;
	rc = wf_sem_new_bounded(1, &bounded);
	if (rc != 0)
		return wf_fail(rc, "bounded sem");
	int r1 = wf_sem_acquire(bounded, 0);
	int r2 = wf_sem_try_acquire(bounded); /* none left */
	int r3 = wf_sem_release(bounded);
	int r4 = wf_sem_release(bounded); /* one more than acquired */
	printf("bounded: acquire %s, try_acquire %s, release %s, release again %s\n",
	       wf_err_name(r1), wf_err_name(r2), wf_err_name(r3), wf_err_name(r4));
	wf_sem_free(bounded);
	return NULL;
}

int main(void)
{
	int rc = wf_run(NULL, main_task, NULL, NULL);
	if (rc != 0)
		fprintf(stderr, "wf_run: %s\n", wf_strerror(rc));
	return rc == 0 ? 0 : 1;
}
