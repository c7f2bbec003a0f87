/*
 * The live console (docs/observe.md): a program with a mixed workload to
 * watch in a browser. WEFT_CONSOLE=127.0.0.1:PORT makes every runtime
 * serve a page on the loopback; this program sets 127.0.0.1:0 (any free
 * port) when the environment says nothing, and the runtime logs the URL:
 *
 *     $ WEFT_CONSOLE=127.0.0.1:8765 ./console_demo 60
 *     weft: console: http://127.0.0.1:8765/
 *
 * For the given number of seconds (default 10) it runs
 *   - an acceptor spawning bursts of short "request" tasks, which yield,
 *     sleep a little and hand a line to a queue (tasks/s, steals, wake-ups);
 *   - a log writer waiting on that queue, pinned to worker 0, so that
 *     requests on other workers wake it there;
 *   - a migration holding a lock for a long while, and connections
 *     waiting for it (the page names the holder);
 *   - a report builder that every 2 s computes for 2.5 s without
 *     suspending: it blocks its worker, and the page shows it;
 *   - a task that waits for the end on an event, the longest wait of all.
 * Not run by ctest (it runs for seconds and serves a port).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <weft.h>

static int stopping; /* atomic */
static wf_queue *lines;
static wf_lock *schema;
static wf_event *done;

static bool stop_now(void)
{
	return __atomic_load_n(&stopping, __ATOMIC_RELAXED) != 0;
}

/* wf_spawn_ex with a name, recording the caller's line as the spawn site
 * (the console shows it). */
#ifdef __FILE_NAME__
#define spawn_named(fn, arg, name, detached) spawn_named_at(fn, arg, name, detached, __FILE_NAME__, __LINE__)
#else
#define spawn_named(fn, arg, name, detached) spawn_named_at(fn, arg, name, detached, __FILE__, __LINE__)
#endif

static wf_task *spawn_named_at(wf_fn fn, void *arg, const char *name, bool detached,
			       const char *file, int line)
{
	wf_spawn_opts o = WF_SPAWN_OPTS_INIT;
	o.name = name;
	o.detached = detached;
	wf_task *t = NULL;
	if (wf_spawn_ex_at(fn, arg, &o, detached ? NULL : &t, file, line) != 0)
		fprintf(stderr, "console_demo: cannot spawn %s\n", name);
	return t;
}

static void *request(void *arg)
{
	uintptr_t n = (uintptr_t)arg;
	for (int i = 0; i < 3; i++)
		wf_yield();
	wf_sleep(1 + n % 4);
	if (n % 8 == 0)
		wf_queue_put(lines, (void *)n, WF_FOREVER);
	return NULL;
}

static void *acceptor(void *arg)
{
	(void)arg;
	uintptr_t n = 0;
	while (!stop_now()) {
		int burst = 20 + (int)(n / 20 % 30);
		for (int i = 0; i < burst; i++, n++) {
			char name[32];
			snprintf(name, sizeof(name), "request-%lu", (unsigned long)n);
			spawn_named(request, (void *)n, name, true);
		}
		wf_sleep(2);
	}
	return NULL;
}

static void *log_writer(void *arg)
{
	(void)arg;
	/* Pinned to worker 0: requests on the other workers that hand it a
	 * line wake it there (wake-ups, the "inbox" counter). */
	wf_move_to_worker(0);
	wf_pin(true);
	void *item;
	unsigned long written = 0;
	while (wf_queue_get(lines, &item, WF_FOREVER) == 0)
		written++;
	return (void *)written;
}

static void *migration(void *arg)
{
	(void)arg;
	wf_lock_acquire(schema, WF_FOREVER);
	while (!stop_now())
		wf_sleep(50);
	wf_lock_release(schema);
	return NULL;
}

static void *connection(void *arg)
{
	(void)arg;
	if (wf_lock_acquire(schema, WF_FOREVER) == 0)
		wf_lock_release(schema);
	return NULL;
}

/* Computes without suspending: its worker runs nothing else meanwhile. */
static void *report_builder(void *arg)
{
	(void)arg;
	volatile double acc = 0;
	while (!stop_now()) {
		wf_sleep(2000);
		struct timespec t0, t;
		clock_gettime(CLOCK_MONOTONIC, &t0);
		do {
			for (int i = 0; i < 100000; i++)
				acc += i * 0.5;
			clock_gettime(CLOCK_MONOTONIC, &t);
		} while ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000 < 2500);
	}
	return NULL;
}

static void *shutdown_watch(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)wf_event_wait(done, WF_FOREVER);
}

static void *cache_refresh(void *arg)
{
	(void)arg;
	while (!stop_now())
		wf_sleep(700);
	return NULL;
}

static void *demo_main(void *arg)
{
	int seconds = *(int *)arg;
	wf_task *t[12];
	int n = 0;
	t[n++] = spawn_named(shutdown_watch, NULL, "shutdown-watch", false);
	t[n++] = spawn_named(migration, NULL, "schema-migration", false);
	wf_sleep(20); /* the migration takes the lock first */
	for (int i = 0; i < 3; i++) {
		char name[32];
		snprintf(name, sizeof(name), "db-conn-%d", i);
		t[n++] = spawn_named(connection, NULL, name, false);
	}
	t[n++] = spawn_named(log_writer, NULL, "log-writer", false);
	t[n++] = spawn_named(cache_refresh, NULL, "cache-refresh", false);
	t[n++] = spawn_named(report_builder, NULL, "report-builder", false);
	t[n++] = spawn_named(acceptor, NULL, "acceptor", false);
	wf_sleep((uint64_t)seconds * 1000);
	__atomic_store_n(&stopping, 1, __ATOMIC_RELAXED);
	wf_event_set(done);
	for (int i = n - 1; i >= 0; i--) {
		if (t[i] == NULL)
			continue;
		if (i == 5) /* the log writer: it ends once the queue is shut down and empty */
			wf_queue_shutdown(lines, false);
		wf_join(t[i], NULL);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int seconds = argc > 1 ? atoi(argv[1]) : 10;
	if (seconds <= 0)
		seconds = 10;
	setenv("WEFT_CONSOLE", "127.0.0.1:0", 0); /* unless set already */
	if (wf_queue_new(NULL, &lines) != 0 || wf_lock_new(&schema) != 0 || wf_event_new(&done) != 0)
		return 1;
	printf("console_demo: running for %d s; open the console's URL (logged on stderr) in a "
	       "browser\n",
	       seconds);
	fflush(stdout);
	int rc = wf_run(NULL, demo_main, &seconds, NULL);
	wf_queue_free(lines);
	wf_lock_free(schema);
	wf_event_free(done);
	if (rc != 0) {
		fprintf(stderr, "console_demo: %s\n", wf_strerror(rc));
		return 1;
	}
	printf("console_demo: done\n");
	return 0;
}
