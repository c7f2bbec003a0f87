/*
 * A future completed by another task, in weft: the main task makes a
 * future, starts a task that sets it after a pause, and awaits it; the
 * await suspends the main task until the value is there. A second future
 * is failed instead, and its awaiter gets the code and the message.
 *
 * Python:
 *     async def set_after(fut, delay, value):
 *         await asyncio.sleep(delay)
 *         fut.set_result(value)
 *
 *     async def main():
 *         fut = asyncio.get_running_loop().create_future()
 *         asyncio.create_task(set_after(fut, 1, "... world"))
 *         print("hello ...")
 *         print(await fut)
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <weft.h>

struct setter {
	wf_future *fut; /* a reference of the setter's own */
	uint64_t delay_ms;
	const char *value; /* NULL: fail the future instead */
};

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *set_after(void *arg)
{
	struct setter *s = arg;
	int rc = wf_sleep(s->delay_ms);
	if (rc == 0 && s->value != NULL)
		rc = wf_future_set(s->fut, (void *)s->value);
	else if (rc == 0)
		rc = wf_future_fail(s->fut, WF_EIO, "the source went away");
	else
		wf_future_cancel(s->fut); /* cancelled: nobody waits forever */
	wf_future_release(s->fut);
	return rc == 0 ? NULL : wf_fail(rc, "set_after");
}

/* Starts set_after on a future and returns the caller's reference. */
static wf_future *start_setter(struct setter *s, uint64_t delay_ms, const char *value)
{
	wf_future *fut = wf_future_new();
	if (fut == NULL)
		return NULL;
	/* Two owners: the setter releases its reference, the caller its own,
	 * in whichever order they finish. */
	*s = (struct setter){wf_future_retain(fut), delay_ms, value};
	wf_task *t = wf_spawn(set_after, s);
	if (t == NULL) {
		wf_future_release(fut);
		wf_future_release(fut);
		return NULL;
	}
	wf_detach(t); /* its outcome is the future's: no need to join it */
	return fut;
}

static void *main_task(void *arg)
{
	struct setter s1, s2; /* live until main returns, after both awaits */
	double start = now_s();
	wf_future *fut = start_setter(&s1, 1000, "... world");
	if (fut == NULL)
		return wf_fail(WF_ENOMEM, "future");
	printf("hello ...\n");
	fflush(stdout);
	void *value;
	int rc = wf_await(fut, &value); /* suspends until set_after sets it */
	wf_future_release(fut);
	if (rc != 0)
		return wf_fail(rc, "await");
	double took = now_s() - start;
	printf("%s\n", (const char *)value);
	if (took >= 0.99) /* never early; a loaded machine may make it late */
		printf("the value came after a second\n");
	else
		printf("the value came after %.3f s\n", took);

	/* The same, failed: the awaiter gets the error and its message. */
	fut = start_setter(&s2, 100, NULL);
	if (fut == NULL)
		return wf_fail(WF_ENOMEM, "future");
	rc = wf_await(fut, &value);
	printf("second future: %s (%s)\n", wf_err_name(rc),
	       wf_future_errmsg(fut) != NULL ? wf_future_errmsg(fut) : wf_strerror(rc));
	wf_future_release(fut);
	return NULL;
}

int main(void)
{
	char *why = NULL;
	int rc = wf_run_ex(NULL, main_task, NULL, NULL, &why);
	if (rc != 0)
		fprintf(stderr, "future_set: %s: %s\n", why ? why : "failed", wf_strerror(rc));
	free(why);
	return rc == 0 ? 0 : 1;
}
