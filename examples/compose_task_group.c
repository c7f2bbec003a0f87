/*
 * asyncio.TaskGroup, in weft: tasks spawned into a group are all awaited
 * when the group is left. When one fails, the group cancels the others
 * and leaving it gives the failure (asyncio raises an ExceptionGroup); a
 * task group never leaves a child running behind it.
 *
 * Python:
 *     async def main():
 *         async with asyncio.TaskGroup() as tg:
 *             t1 = tg.create_task(work("one", 0.1))
 *             t2 = tg.create_task(work("two", 0.2))
 *         print(t1.result(), t2.result())
 *
 *         try:
 *             async with asyncio.TaskGroup() as tg:
 *                 tg.create_task(fail_soon())
 *                 tg.create_task(work("sleeper", 5))   # cancelled
 *         except* OSError as eg:
 *             print(eg.exceptions)
 */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

struct work {
	const char *name;
	uint64_t ms;
	int outcome; /* what the child saw: written by it, read after the leave */
};

static void *work(void *arg)
{
	struct work *w = arg;
	w->outcome = wf_sleep(w->ms);
	if (w->outcome != 0)
		return NULL; /* cancelled: its outcome is WF_ECANCELED */
	return (void *)w->name;
}

static void *fail_soon(void *arg)
{
	if (wf_sleep(50) != 0)
		return NULL;
	return wf_fail(WF_EIO, "the disk is gone");
}

static void *main_task(void *arg)
{
	/* Every child is awaited by wf_group_leave, so their arguments can
	 * live on this stack. */
	struct work one = {.name = "one", .ms = 100}, two = {.name = "two", .ms = 200};
	wf_group *g;
	int rc = wf_group_enter(&g);
	if (rc != 0)
		return wf_fail(rc, "group_enter");
	rc = wf_group_spawn(g, work, &one, NULL, NULL);
	if (rc == 0)
		rc = wf_group_spawn(g, work, &two, NULL, NULL);
	if (rc != 0)
		wf_group_cancel(g); /* the leave below still awaits what started */
	int lrc = wf_group_leave(g, NULL, NULL); /* waits for both */
	if (rc == 0)
		rc = lrc;
	if (rc != 0)
		return wf_fail(rc, "first group");
	printf("first group: %s and %s both completed (%s, %s)\n", one.name, two.name,
	       wf_strerror(one.outcome), wf_strerror(two.outcome));

	/* One child fails: the sleeper is cancelled, the leave reports it. */
	struct work sleeper = {.name = "sleeper", .ms = 5000};
	rc = wf_group_enter(&g);
	if (rc != 0)
		return wf_fail(rc, "group_enter");
	wf_spawn_opts named = {.name = "fail_soon"};
	rc = wf_group_spawn(g, fail_soon, NULL, &named, NULL);
	if (rc == 0)
		rc = wf_group_spawn(g, work, &sleeper, NULL, NULL);
	if (rc != 0)
		wf_group_cancel(g);
	wf_failure *failures;
	size_t nfailures;
	lrc = wf_group_leave(g, &failures, &nfailures);
	printf("second group: %s, %zu failure(s)\n", wf_err_name(lrc), nfailures);
	for (size_t i = 0; i < nfailures; i++)
		printf("  %s: %s (%s)\n", failures[i].name, wf_err_name(failures[i].err),
		       failures[i].msg != NULL ? failures[i].msg : "");
	wf_failures_free(failures, nfailures);
	printf("the sleeper's sleep: %s\n", wf_err_name(sleeper.outcome));
	return NULL;
}

int main(void)
{
	char *why = NULL;
	int rc = wf_run_ex(NULL, main_task, NULL, NULL, &why);
	if (rc != 0)
		fprintf(stderr, "compose_task_group: %s: %s\n", why ? why : "failed", wf_strerror(rc));
	free(why);
	return rc == 0 ? 0 : 1;
}
