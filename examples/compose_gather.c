/* asyncio.gather: two tasks that each sleep one second, gathered. They
 * sleep at the same time, so the whole takes about one second, not two. */
#include <stdio.h>
#include <time.h>
#include <weft.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *say_hello(void *arg)
{
	const char *name = arg;
	int rc = wf_sleep(1000);
	if (rc != 0)
		return wf_fail(rc, "sleep interrupted");
	printf("Hello, %s!\n", name);
	return (void *)name;
}

static void *main_task(void *arg)
{
	double start = now_s();
	wf_task *tasks[2] = {wf_spawn(say_hello, "Alice"), wf_spawn(say_hello, "Bob")};
	wf_outcome out[2];
	int rc = wf_gather(tasks, 2, out, 0); /* results in argument order */
	if (rc != 0)
		return wf_fail(rc, "gather failed");
	printf("greeted %s and %s\n", (char *)out[0].value, (char *)out[1].value);
	printf("took %.1f s\n", now_s() - start);
	return NULL;
}

int main(void)
{
	int rc = wf_run(NULL, main_task, NULL, NULL);
	if (rc != 0)
		fprintf(stderr, "error: %s\n", wf_strerror(rc));
	return rc == 0 ? 0 : 1;
}
