/*
 * A coroutine that sleeps between two prints, in weft: "hello", one
 * second's sleep, "world". The sleep suspends the task, not its worker
 * thread, which could run other tasks meanwhile.
 *
 * Python:
 *     async def main():
 *         print("hello")
 *         await asyncio.sleep(1)
 *         print("world")
 *
 *     asyncio.run(main())
 */
#include <stdio.h>
#include <time.h>
#include <weft.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *main_task(void *arg)
{
	double start = now_s();
	printf("hello\n");
	fflush(stdout); /* shown before the sleep, even into a pipe */
	int rc = wf_sleep(1000);
	if (rc != 0)
		return wf_fail(rc, "sleep");
	printf("world\n");
	double took = now_s() - start;
	/* A sleep never ends early; a loaded machine may make it late. */
	if (took >= 0.99)
		printf("slept a second\n");
	else
		printf("slept %.3f s\n", took);
	return NULL;
}

int main(void)
{
	int rc = wf_run(NULL, main_task, NULL, NULL);
	if (rc != 0)
		fprintf(stderr, "wf_run: %s\n", wf_strerror(rc));
	return rc == 0 ? 0 : 1;
}
