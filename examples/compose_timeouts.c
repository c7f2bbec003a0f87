/*
 * Timeouts, in weft, four ways:
 *  - a timeout scope (asyncio.timeout) around several waits: past the
 *    deadline the wait in progress returns WF_ECANCELED, and leaving the
 *    scope turns that into WF_ETIMEDOUT;
 *  - the same scope moved further before it expires (reschedule), which
 *    then lets the work finish;
 *  - an await with a deadline (wf_await_timeout): the future is left
 *    pending, and can still be awaited later;
 *  - wait_for on a task (asyncio.wait_for): the task is cancelled at the
 *    deadline and waited for.
 *
 * Python:
 *     async with asyncio.timeout(0.3):
 *         await asyncio.sleep(0.1)
 *         await asyncio.sleep(1)              # TimeoutError
 *
 *     await asyncio.wait_for(slow(), 0.1)     # TimeoutError, slow cancelled
 */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

/* Two steps under one deadline. */
static int two_steps(uint64_t first_ms, uint64_t second_ms, int *steps)
{
	*steps = 0;
	int rc = wf_sleep(first_ms);
	if (rc != 0)
		return rc;
	(*steps)++;
	rc = wf_sleep(second_ms);
	if (rc != 0)
		return rc;
	(*steps)++;
	return 0;
}

static int slow_saw; /* what the slow task's sleep returned */

static void *slow(void *arg)
{
	slow_saw = wf_sleep(5000);
	return slow_saw == 0 ? "finished" : wf_fail(slow_saw, "slow");
}

static void *main_task(void *arg)
{
	/* 1. The scope expires during the second step. */
	wf_timeout to;
	int steps;
	int rc = wf_timeout_enter(&to, 300);
	if (rc != 0)
		return wf_fail(rc, "timeout_enter");
	rc = wf_timeout_leave(&to, two_steps(100, 1000, &steps));
	printf("scope of 300 ms: %s after %d step(s), expired: %s\n", wf_err_name(rc), steps,
	       wf_timeout_expired(&to) ? "yes" : "no");

	/* 2. The same, given more time before its deadline. */
	rc = wf_timeout_enter(&to, 300);
	if (rc != 0)
		return wf_fail(rc, "timeout_enter");
	int step_rc = wf_sleep(100);
	if (step_rc == 0)
		step_rc = wf_timeout_reschedule(&to, 2000); /* 2 s from now */
	if (step_rc == 0)
		step_rc = wf_sleep(400); /* past the first deadline */
	rc = wf_timeout_leave(&to, step_rc);
	printf("rescheduled scope: %s, expired: %s\n", wf_err_name(rc),
	       wf_timeout_expired(&to) ? "yes" : "no");

	/* 3. An await with a deadline leaves the future pending. */
	wf_future *f = wf_future_new();
	if (f == NULL)
		return wf_fail(WF_ENOMEM, "future");
	void *value;
	rc = wf_await_timeout(f, &value, 100);
	printf("await_timeout: %s, future still pending: %s\n", wf_err_name(rc),
	       wf_future_done(f) ? "no" : "yes");
	wf_future_set(f, "late value");
	rc = wf_await_timeout(f, &value, 100);
	printf("await_timeout once set: %s, %s\n", wf_err_name(rc),
	       rc == 0 ? (const char *)value : "-");
	wf_future_release(f);

	/* 4. wait_for cancels the task at the deadline. */
	wf_task *t = wf_spawn(slow, NULL);
	if (t == NULL)
		return wf_fail(WF_ENOMEM, "spawn");
	rc = wf_wait_for(t, &value, 100); /* gives the handle back */
	printf("wait_for: %s; the task's sleep returned %s\n", wf_err_name(rc),
	       wf_err_name(slow_saw));
	return NULL;
}

int main(void)
{
	int rc = wf_run(NULL, main_task, NULL, NULL);
	if (rc != 0)
		fprintf(stderr, "wf_run: %s\n", wf_strerror(rc));
	return rc == 0 ? 0 : 1;
}
