/*
 * asyncio.create_task, in weft: two tasks are created at once, one says
 * "hello" after one second, the other "world" after two, and the main task
 * awaits both. They wait at the same time, so the whole takes about two
 * seconds, not three; each join hands back its task's result.
 *
 * Python:
 *     async def say_after(delay, what):
 *         await asyncio.sleep(delay)
 *         print(what)
 *         return len(what)
 *
 *     async def main():
 *         task1 = asyncio.create_task(say_after(1, "hello"))
 *         task2 = asyncio.create_task(say_after(2, "world"))
 *         print("started")
 *         n1 = await task1
 *         n2 = await task2
 *         print("finished")
 */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <weft.h>

struct say {
	uint64_t delay_ms;
	const char *what;
	double began, ended; /* the sleep's */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *say_after(void *arg)
{
	struct say *s = arg;
	s->began = now_s();
	int rc = wf_sleep(s->delay_ms);
	if (rc != 0)
		return wf_fail(rc, "sleep");
	s->ended = now_s();
	printf("%s\n", s->what);
	fflush(stdout);
	return (void *)(uintptr_t)strlen(s->what);
}

static void *main_task(void *arg)
{
	/* On main's stack: main joins both tasks before it returns. */
	struct say hello = {1000, "hello", 0, 0}, world = {2000, "world", 0, 0};
	double start = now_s();
	wf_task *task1 = wf_spawn(say_after, &hello); /* scheduled, running soon */
	wf_task *task2 = wf_spawn(say_after, &world);
	if (task1 == NULL || task2 == NULL)
		return wf_fail(WF_ENOMEM, "spawn"); /* wf_run cancels and awaits the other */
	printf("started\n");
	fflush(stdout);
	void *n1, *n2;
	int rc1 = wf_join(task1, &n1); /* await task1 */
	int rc2 = wf_join(task2, &n2);
	if (rc1 != 0 || rc2 != 0)
		return wf_fail(rc1 != 0 ? rc1 : rc2, "a task failed");
	double took = now_s() - start;
	printf("results: %zu and %zu\n", (size_t)(uintptr_t)n1, (size_t)(uintptr_t)n2);
	/* About two seconds, not three: the sleeps overlapped, each began
	 * before the other ended (what shows it; the time itself grows a
	 * little on a loaded machine). */
	bool together = hello.began < world.ended && world.began < hello.ended;
	printf("finished after %.1f s: %s\n", took,
	       together ? "the two waits overlapped" : "one wait after the other");
	return NULL;
}

int main(void)
{
	char *why = NULL;
	int rc = wf_run_ex(NULL, main_task, NULL, NULL, &why);
	if (rc != 0)
		fprintf(stderr, "task_create: %s: %s\n", why ? why : "failed", wf_strerror(rc));
	free(why);
	return rc == 0 ? 0 : 1;
}
