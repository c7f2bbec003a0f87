/*
 * Callbacks on the loop and a repeating timer, in weft: call_soon,
 * call_later and call_at run callbacks by their deadlines (each as a task
 * of its own, so a callback may suspend), a cancelled one never runs, a
 * plain thread schedules one with call_soon_threadsafe's form, and an
 * interval ticks on a fixed schedule.
 *
 * Python:
 *     loop.call_later(0.2, print, "200 ms")
 *     h = loop.call_later(0.1, print, "never"); h.cancel()
 *     loop.call_at(loop.time() + 0.1, print, "100 ms")
 *     loop.call_soon(print, "soon")
 */
#include <pthread.h>
#include <stdio.h>
#include <weft.h>

static wf_event *done;

static void say(void *arg)
{
	printf("%s\n", (const char *)arg);
	fflush(stdout);
}

static void last(void *arg)
{
	say(arg);
	wf_event_set(done);
}

static void *plain_thread(void *arg)
{
	/* A thread that is not a task names the runtime. */
	wf_call_soon(arg, say, "from a plain thread", NULL);
	return NULL;
}

static void *main_task(void *arg)
{
	(void)arg;
	wf_event_new(&done);
	wf_timer *never;
	uint64_t t0 = wf_time_ns();
	wf_call_later(NULL, 300, last, "300 ms", NULL);
	wf_call_later(NULL, 100, say, "100 ms", NULL);
	wf_call_at(NULL, t0 + 200 * 1000000ull, say, "200 ms (call_at)", NULL);
	wf_call_later(NULL, 150, say, "never printed", &never);
	wf_call_soon(NULL, say, "soon", NULL);
	printf("cancel: %s\n", wf_timer_cancel(never) == 0 ? "ok" : "too late");
	wf_timer_free(never);
	pthread_t th;
	pthread_create(&th, NULL, plain_thread, wf_runtime_current());
	pthread_join(th, NULL);
	wf_event_wait(done, WF_FOREVER);
	wf_event_free(done);

	/* Ticks at 0, 50, 100 and 150 ms. */
	wf_interval *iv;
	wf_interval_new(50, WF_TICK_BURST, &iv);
	uint64_t start = wf_time_ns();
	for (int i = 0; i < 4; i++) {
		wf_interval_tick(iv);
		uint64_t ms = (wf_time_ns() - start) / 1000000;
		printf("tick %d %s\n", i, ms >= (uint64_t)i * 50 ? "on time" : "early");
	}
	wf_interval_free(iv);
	return NULL;
}

int main(void)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 1; /* one worker: the callbacks print in deadline order */
	int rc = wf_run(&cfg, main_task, NULL, NULL);
	if (rc != 0)
		fprintf(stderr, "call_later: %s\n", wf_strerror(rc));
	return rc == 0 ? 0 : 1;
}
