/*
 * asyncio.as_completed, in weft: three fetches that take 400, 100 and
 * 250 ms, handled in the order they finish, not the order they were
 * started. The iterator only looks at the tasks; each is joined once it
 * has been handed out (at once: it has finished).
 *
 * Python:
 *     async def fetch(name, ms):
 *         await asyncio.sleep(ms / 1000)
 *         return name
 *
 *     async def main():
 *         coros = [fetch("slow", 400), fetch("fast", 100), fetch("medium", 250)]
 *         for next_done in asyncio.as_completed(coros):
 *             print(await next_done)
 */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

#define N 3

struct fetch {
	const char *name;
	uint64_t ms;
};

static void *fetch(void *arg)
{
	const struct fetch *f = arg;
	int rc = wf_sleep(f->ms);
	return rc == 0 ? (void *)f->name : wf_fail(rc, "fetch");
}

static void *main_task(void *arg)
{
	static const struct fetch fetches[N] = {{"slow", 400}, {"fast", 100}, {"medium", 250}};
	wf_task *tasks[N];
	for (int i = 0; i < N; i++)
		if ((tasks[i] = wf_spawn(fetch, (void *)&fetches[i])) == NULL)
			return wf_fail(WF_ENOMEM, "spawn"); /* wf_run cancels the others */
	wf_as_completed *ac;
	int rc = wf_as_completed_new(tasks, N, &ac);
	if (rc != 0)
		return wf_fail(rc, "as_completed");
	size_t i;
	int got = 0;
	while ((rc = wf_as_completed_next(ac, 5000, &i)) == 0) {
		void *name;
		int jrc = wf_join(tasks[i], &name); /* finished: returns at once */
		tasks[i] = NULL;
		if (jrc != 0)
			printf("task %zu failed: %s\n", i, wf_strerror(jrc));
		else
			printf("finished: task %zu, %s (%llu ms)\n", i, (const char *)name,
			       (unsigned long long)fetches[i].ms);
		got++;
	}
	wf_as_completed_free(ac);
	/* WF_EOF: every task was handed out. Another code (a timeout) leaves
	 * some running: wf_run cancels and awaits them. */
	printf("iterator ended: %s after %d tasks\n", wf_err_name(rc), got);
	return rc == WF_EOF ? NULL : wf_fail(rc, "as_completed_next");
}

int main(void)
{
	int rc = wf_run(NULL, main_task, NULL, NULL);
	if (rc != 0)
		fprintf(stderr, "wf_run: %s\n", wf_strerror(rc));
	return rc == 0 ? 0 : 1;
}
