/*
 * asyncio's to_thread, in weft: a blocking function (it sleeps 2 s and
 * returns a string) runs on the default blocking pool while the task that
 * awaits it is suspended, and another task keeps printing meanwhile.
 *
 * The runtime has a single worker on purpose: the ticker can only tick
 * while the call is in flight because that worker is not the one blocked.
 *
 * Python:
 *     def blocking_io():
 *         time.sleep(2)
 *         return "done"
 *
 *     async def ticker():
 *         while True:
 *             print("tick"); await asyncio.sleep(0.5)
 *
 *     async def main():
 *         t = asyncio.create_task(ticker())
 *         result = await asyncio.to_thread(blocking_io)
 *         t.cancel()
 */
#include <stdio.h>
#include <time.h>

#include <weft.h>

static int ticks;

static void *blocking_io(void *arg)
{
	(void)arg;
	printf("blocking_io: sleeping 2 s on a pool thread\n");
	fflush(stdout);
	struct timespec ts = {2, 0};
	while (nanosleep(&ts, &ts) != 0)
		;
	return "done";
}

static void *ticker(void *arg)
{
	(void)arg;
	for (;;) {
		printf("tick %d\n", ++ticks);
		fflush(stdout);
		if (wf_sleep(500) != 0) /* cancelled */
			return NULL;
	}
}

static void *main_task(void *arg)
{
	(void)arg;
	wf_task *t = wf_spawn(ticker, NULL);
	if (t == NULL)
		return wf_fail(WF_ENOMEM, "spawn");
	void *result = NULL;
	int rc = wf_to_thread(blocking_io, NULL, &result);
	int seen = ticks; /* one worker: the ticker is not running now */
	wf_cancel(t);
	wf_join(t, NULL);
	if (rc != 0)
		return wf_fail(rc, "to_thread");
	printf("blocking_io returned: %s\n", (const char *)result);
	printf("ticks while it ran: %s\n", seen >= 2 ? "yes" : "no");
	return NULL;
}

int main(void)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 1;
	int rc = wf_run(&cfg, main_task, NULL, NULL);
	if (rc != 0) {
		fprintf(stderr, "wf_run: %s\n", wf_strerror(rc));
		return 1;
	}
	return 0;
}
