/*
 * asyncio.Event, in weft: three waiters block on an event until a task
 * sets it; all three wake at once. A wait with a timeout on an event that
 * is never set returns WF_ETIMEDOUT.
 *
 * Python:
 *     async def waiter(event, name):
 *         await event.wait()
 *         print(f"{name} woke up")
 *
 *     async def main():
 *         event = asyncio.Event()
 *         tasks = [asyncio.create_task(waiter(event, n)) for n in "ABC"]
 *         await asyncio.sleep(0.1)
 *         event.set()
 *         await asyncio.gather(*tasks)
 */
#include <stdio.h>
#include <stdlib.h>
#include <weft.h>

#define WAITERS 3

static wf_event *event;
static int set_yet; /* atomic: 1 once main is about to set the event */

static void *waiter(void *arg)
{
	int rc = wf_event_wait(event, 10000);
	if (rc != 0)
		return wf_fail(rc, "wait");
	/* Woken by the set, never before it. */
	int after = __atomic_load_n(&set_yet, __ATOMIC_ACQUIRE);
	printf("%s woke up %s the set\n", (const char *)arg, after ? "after" : "BEFORE");
	return NULL;
}

static void *main_task(void *arg)
{
	int rc = wf_event_new(&event);
	if (rc != 0)
		return wf_fail(rc, "event");
	static const char *names[WAITERS] = {"A", "B", "C"};
	wf_task *tasks[WAITERS];
	for (int i = 0; i < WAITERS; i++)
		tasks[i] = wf_spawn(waiter, (void *)names[i]);
	wf_sleep(100); /* they are all waiting by now */
	printf("is_set before: %s\n", wf_event_is_set(event) ? "yes" : "no");
	fflush(stdout);
	__atomic_store_n(&set_yet, 1, __ATOMIC_RELEASE);
	wf_event_set(event); /* wakes every waiter */
	rc = wf_gather(tasks, WAITERS, NULL, 0);
	printf("gather: %s; is_set after: %s\n", wf_strerror(rc),
	       wf_event_is_set(event) ? "yes" : "no");

	/* Cleared again, a wait cannot succeed: a timeout bounds it. */
	wf_event_clear(event);
	rc = wf_event_wait(event, 50);
	printf("wait on the cleared event: %s\n", wf_err_name(rc));
	wf_event_free(event);
	return NULL;
}

int main(void)
{
	int rc = wf_run(NULL, main_task, NULL, NULL);
	if (rc != 0)
		fprintf(stderr, "wf_run: %s\n", wf_strerror(rc));
	return rc == 0 ? 0 : 1;
}
