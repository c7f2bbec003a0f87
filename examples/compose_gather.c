/*
 * asyncio.gather: two tasks that each sleep one second, gathered. They
 * sleep at the same time, so the whole takes about one second, not two;
 * the results come back in the order the tasks were passed.
 *
 * Python:
 *     async def say_hello(name):
 *         await asyncio.sleep(1)
 *         print(f"Hello, {name}!")
 *         return name
 *
 *     async def main():
 *         a, b = await asyncio.gather(say_hello("Alice"), say_hello("Bob"))
 */
#include <stdbool.h>
#include <stdio.h>
#include <time.h>
#include <weft.h>

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* When each greeter's sleep began and ended. */
static double slept[2][2];

static void *say_hello(void *arg)
{
	const char *name = arg;
	double *when = slept[name[0] == 'B'];
	when[0] = now_s();
	int rc = wf_sleep(1000);
	if (rc != 0)
		return wf_fail(rc, "sleep interrupted");
	when[1] = now_s();
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
	double took = now_s() - start;
	/* The sleeps overlapped: each began before the other ended. (The
	 * whole takes about one second; on a loaded machine a little more,
	 * so the time itself is not what shows it.) */
	bool together = slept[0][0] < slept[1][1] && slept[1][0] < slept[0][1];
	printf("%s, in %.1f s\n", together ? "slept at the same time" : "slept one after the other",
	       took);
	return NULL;
}

int main(void)
{
	int rc = wf_run(NULL, main_task, NULL, NULL);
	if (rc != 0)
		fprintf(stderr, "error: %s\n", wf_strerror(rc));
	return rc == 0 ? 0 : 1;
}
