/*
 * Embedding weft in a program that is not built around it: a plain main()
 * (and any thread of its own) starts a runtime in the background, hands it
 * work with wf_runtime_submit (asyncio's run_coroutine_threadsafe), waits
 * for the results on the futures it gets back (a plain thread blocks where
 * a task would suspend), and stops it with wf_runtime_shutdown, which
 * cancels what still runs.
 *
 * Python:
 *     loop = asyncio.new_event_loop()
 *     threading.Thread(target=loop.run_forever, daemon=True).start()
 *     fut = asyncio.run_coroutine_threadsafe(square(7), loop)
 *     print(fut.result())
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <weft.h>

static wf_runtime *rt;

/* A task: runs on one of the runtime's workers. */
static void *square(void *arg)
{
	intptr_t n = (intptr_t)arg;
	if (wf_sleep(50) != 0)
		return NULL; /* cancelled: its outcome is WF_ECANCELED */
	return (void *)(n * n);
}

/* A task that would run forever: the shutdown cancels it. */
static void *forever(void *arg)
{
	wf_sleep(WF_FOREVER);
	return NULL;
}

/* A thread of the program's own, submitting too. */
static void *other_thread(void *arg)
{
	wf_future *f;
	intptr_t *result = arg;
	*result = -1;
	if (wf_runtime_submit(rt, square, (void *)(intptr_t)9, &f) != 0)
		return NULL;
	void *v;
	if (wf_await(f, &v) == 0) /* blocks this thread */
		*result = (intptr_t)v;
	wf_future_release(f);
	return NULL;
}

int main(void)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	int rc = wf_runtime_start(&cfg, &rt);
	if (rc != 0) {
		fprintf(stderr, "wf_runtime_start: %s\n", wf_strerror(rc));
		return 1;
	}
	printf("runtime started with %u workers\n", wf_runtime_workers(rt));
	printf("main is a task: %s\n", wf_current() == NULL ? "no" : "yes");

	pthread_t th;
	intptr_t from_thread;
	int trc = pthread_create(&th, NULL, other_thread, &from_thread);

	wf_future *fs[3];
	int submitted = 0;
	for (intptr_t n = 1; n <= 3; n++, submitted++) {
		rc = wf_runtime_submit(rt, square, (void *)n, &fs[submitted]);
		if (rc != 0) {
			fprintf(stderr, "wf_runtime_submit: %s\n", wf_strerror(rc));
			break;
		}
	}
	for (int i = 0; i < submitted; i++) {
		void *v;
		rc = wf_await(fs[i], &v);
		if (rc == 0)
			printf("square(%d) = %d\n", i + 1, (int)(intptr_t)v);
		else
			printf("square(%d): %s\n", i + 1, wf_strerror(rc));
		wf_future_release(fs[i]);
	}
	if (trc == 0) {
		pthread_join(th, NULL);
		printf("from another thread: square(9) = %d\n", (int)from_thread);
	}

	wf_future *bg;
	rc = wf_runtime_submit(rt, forever, NULL, &bg);
	if (rc != 0)
		bg = NULL;
	rc = wf_runtime_shutdown(rt); /* cancels forever(), waits for it */
	printf("shutdown: %s\n", wf_strerror(rc));
	if (bg != NULL) {
		/* The future is the caller's: complete, and still readable. */
		printf("the endless task: %s\n", wf_err_name(wf_future_result(bg, NULL)));
		wf_future_release(bg);
	}
	return rc == 0 ? 0 : 1;
}
