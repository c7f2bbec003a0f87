/* A risky operation that handles its own error: a fetch under a timeout
 * scope (asyncio.timeout) that falls back to a cached value when the
 * source is too slow. Its caller only ever sees a result. */
#include <stdint.h>
#include <stdio.h>
#include <weft.h>

typedef struct source {
	const char *name;
	uint64_t delay_ms; /* how long the source takes to answer */
} source;

static void *risky_operation(void *arg)
{
	source *s = arg;
	wf_timeout to;
	int rc = wf_timeout_enter(&to, 200);
	if (rc == 0)
		rc = wf_timeout_leave(&to, wf_sleep(s->delay_ms));
	if (rc == WF_ETIMEDOUT) {
		printf("%s: too slow (%s), using the cached value\n", s->name, wf_strerror(rc));
		return "cached";
	}
	if (rc != 0)
		return wf_fail(rc, "fetch failed");
	printf("%s: answered\n", s->name);
	return "fresh";
}

static void *main_task(void *arg)
{
	source fast = {"fast source", 10}, slow = {"slow source", 5000};
	wf_task *tasks[2] = {wf_spawn(risky_operation, &fast), wf_spawn(risky_operation, &slow)};
	wf_outcome out[2];
	int rc = wf_gather(tasks, 2, out, 0);
	printf("gather: %s\n", wf_strerror(rc));
	for (int i = 0; i < 2; i++)
		printf("result %d: %s\n", i, (char *)out[i].value);
	return NULL;
}

int main(void)
{
	int rc = wf_run(NULL, main_task, NULL, NULL);
	return rc == 0 ? 0 : 1;
}
