/* A task that fails: the task that awaits it receives the error, with its
 * message (asyncio: the exception is raised again by `await task`). */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

static void *failing_task(void *arg)
{
	if (wf_sleep(100) != 0)
		return NULL;
	return wf_fail(WF_EINVAL, "something went wrong");
}

static void *main_task(void *arg)
{
	wf_task *t = wf_spawn(failing_task, NULL);
	char *msg = NULL;
	int rc = wf_join_ex(t, NULL, &msg);
	if (rc != 0)
		printf("caught %s: %s\n", wf_err_name(rc), msg != NULL ? msg : wf_strerror(rc));
	free(msg);

	/* The same through gather: the first failure comes back. */
	wf_task *tasks[2] = {wf_spawn(failing_task, NULL), wf_spawn(failing_task, NULL)};
	wf_outcome out[2];
	rc = wf_gather(tasks, 2, out, WF_GATHER_ALL); /* every outcome */
	for (int i = 0; i < 2; i++)
		printf("task %d: %s (%s)\n", i, wf_err_name(out[i].err), out[i].msg);
	wf_outcomes_clear(out, 2);
	return NULL;
}

int main(void)
{
	int rc = wf_run(NULL, main_task, NULL, NULL);
	return rc == 0 ? 0 : 1;
}
