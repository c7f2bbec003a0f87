/*
 * Seeing inside a runtime: the metrics add up, the task list shows what
 * is alive and nothing that finished (8 workers, tasks coming and going),
 * a deadlock on two locks is readable from the dump alone, debug mode's
 * reports (a task blocking its worker, reported while it runs; handles
 * never joined; objects never freed), the hooks, the exception handler,
 * the JSON, and the dump on SIGUSR1.
 */
#include <criterion/criterion.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>

#include "rt_check.h"
#include "weft.h"

/* Waits (20 s at most) until the task named `name` waits on `what`. */
static bool until_waiting(const char *name, const char *what)
{
	static wf_task_info info[256];
	for (int i = 0; i < 4000; i++) {
		size_t count;
		int n = wf_task_list(wf_runtime_current(), info, 256, &count);
		for (int k = 0; k < n; k++)
			if (strcmp(info[k].name, name) == 0 && info[k].state == WF_TASK_WAITING &&
			    strcmp(info[k].waits_on, what) == 0)
				return true;
		wf_sleep(5);
	}
	return false;
}

/* ---- metrics ---------------------------------------------------------------- */

static void *tiny(void *arg)
{
	wf_yield();
	return arg;
}

static void *metrics_main(void *arg)
{
	(void)arg;
	enum { N = 2000 };
	static wf_task *t[N];
	for (int i = 0; i < N; i++)
		t[i] = wf_spawn(tiny, NULL);
	for (int i = 0; i < N; i++)
		CHECK_RC(wf_join(t[i], NULL), 0);
	CHECK_RC(wf_sleep(5), 0); /* a timer fires, a worker parks */
	wf_metrics m;
	wf_worker_metrics w[4];
	wf_runtime *rt = wf_runtime_current();
	CHECK_RC(wf_runtime_metrics(rt, &m, w, 4), 2);
	CHECK_RC(wf_runtime_metrics(NULL, &m, NULL, 0), WF_EINVAL);
	CHECK_RC(wf_runtime_metrics(rt, &m, NULL, 1), WF_EINVAL);
	CHECK_EQ(m.workers, 2);
	/* Everything joined: only this task is alive. */
	CHECK_EQ(m.live, 1);
	CHECK(m.spawned >= N + 1);
	CHECK_EQ(m.spawned, m.finished + m.live);
	CHECK(m.injected >= 1); /* this task came from wf_run */
	CHECK(m.polls >= N);
	CHECK(m.timers_fired >= 1);
	CHECK(m.busy_workers >= 1); /* this one */
	CHECK(m.uptime_ns > 0);
	uint64_t spawned = 0, finished = 0, polls = 0;
	for (int i = 0; i < 2; i++) {
		spawned += w[i].spawned;
		finished += w[i].finished;
		polls += w[i].polls;
	}
	CHECK_EQ(finished, m.finished);
	CHECK_EQ(polls, m.polls);
	CHECK_EQ(spawned + 1, m.spawned); /* + the submitted main task */
	return NULL;
}

Test(observe, metrics_add_up)
{
	run_weft(2, metrics_main, NULL);
}

/* ---- the task list under churn --------------------------------------------- */

#define SLEEPERS 50

struct churn {
	wf_event *release;
	int stop; /* atomic */
};

static void *sleeper(void *arg)
{
	struct churn *c = arg;
	return (void *)(intptr_t)wf_event_wait(c->release, WF_FOREVER);
}

static void *churner(void *arg)
{
	struct churn *c = arg;
	while (!__atomic_load_n(&c->stop, __ATOMIC_ACQUIRE)) {
		wf_task *k[8];
		for (int i = 0; i < 8; i++)
			k[i] = wf_spawn(tiny, NULL);
		for (int i = 0; i < 8; i++)
			wf_join(k[i], NULL);
	}
	return NULL;
}

static void *list_main(void *arg)
{
	(void)arg;
	struct churn c = {0};
	CHECK_RC(wf_event_new(&c.release), 0);
	wf_task *s[SLEEPERS], *ch[4];
	for (int i = 0; i < SLEEPERS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "sleeper-%d", i);
		wf_spawn_opts o = {.name = name};
		CHECK_RC(wf_spawn_ex(sleeper, &c, &o, &s[i]), 0);
	}
	for (int i = 0; i < 4; i++)
		ch[i] = wf_spawn(churner, &c);
	static wf_task_info info[4096];
	size_t count = 0;
	/* Until every sleeper waits (a loaded machine may take a while to
	 * start them all). */
	uint64_t limit = mono_ns() + 30000000000ull;
	for (int waiting = 0; waiting < SLEEPERS && mono_ns() < limit;) {
		CHECK_RC(wf_sleep(5), 0);
		int n = wf_task_list(wf_runtime_current(), info, 4096, &count);
		waiting = 0;
		for (int i = 0; i < n; i++)
			waiting += strncmp(info[i].name, "sleeper-", 8) == 0 &&
				   info[i].state == WF_TASK_WAITING;
	}
	for (int round = 0; round < 20; round++) {
		int n = wf_task_list(wf_runtime_current(), info, 4096, &count);
		CHECK(n >= 0 && (size_t)n == count);
		int seen[SLEEPERS] = {0};
		for (int i = 0; i < n; i++) {
			int k;
			if (sscanf(info[i].name, "sleeper-%d", &k) == 1 && k >= 0 && k < SLEEPERS) {
				seen[k]++;
				CHECK_EQ(info[i].state, WF_TASK_WAITING);
				CHECK(info[i].waits_on != NULL && strcmp(info[i].waits_on, "event") == 0);
				CHECK(info[i].spawn_file != NULL &&
				      strstr(info[i].spawn_file, "test_observe.c") != NULL);
			}
			for (int j = 0; j < i; j++)
				CHECK(info[j].id != info[i].id);
		}
		for (int k = 0; k < SLEEPERS; k++)
			CHECK_EQ(seen[k], 1);
		CHECK_RC(wf_yield(), 0);
	}
	size_t dummy;
	CHECK_RC(wf_task_list(NULL, NULL, 0, &dummy), WF_EINVAL);
	CHECK_RC(wf_task_list(wf_runtime_current(), NULL, 0, NULL), WF_EINVAL);
	CHECK_RC(wf_event_set(c.release), 0);
	for (int i = 0; i < SLEEPERS; i++)
		CHECK_RC(wf_join(s[i], NULL), 0);
	__atomic_store_n(&c.stop, 1, __ATOMIC_RELEASE);
	for (int i = 0; i < 4; i++)
		CHECK_RC(wf_join(ch[i], NULL), 0);
	/* Finished tasks are never listed. */
	int n = wf_task_list(wf_runtime_current(), info, 4096, &count);
	CHECK_EQ(n, 1);
	CHECK(strncmp(info[0].name, "sleeper", 7) != 0);
	CHECK_EQ(info[0].state, WF_TASK_RUNNING);
	CHECK_RC(wf_event_free(c.release), 0);
	return NULL;
}

Test(observe, task_list_shows_the_live_and_not_the_finished)
{
	run_weft(8, list_main, NULL);
}

/* ---- a deadlock, diagnosed from the dump ------------------------------------ */

struct dl {
	wf_lock *l1, *l2;
	wf_barrier *both;
};

static void *take_then(wf_lock *first, wf_lock *second, wf_barrier *both)
{
	if (wf_lock_acquire(first, WF_FOREVER) != 0)
		return NULL;
	wf_barrier_wait(both, WF_FOREVER);
	int rc = wf_lock_acquire(second, WF_FOREVER); /* never: the other holds it */
	if (rc == 0)
		wf_lock_release(second);
	wf_lock_release(first);
	return (void *)(intptr_t)rc;
}

static void *dl_a(void *arg)
{
	struct dl *d = arg;
	return take_then(d->l1, d->l2, d->both);
}

static void *dl_b(void *arg)
{
	struct dl *d = arg;
	return take_then(d->l2, d->l1, d->both);
}

static void *deadlock_main(void *arg)
{
	(void)arg;
	struct dl d;
	CHECK_RC(wf_lock_new(&d.l1), 0);
	CHECK_RC(wf_lock_new(&d.l2), 0);
	CHECK_RC(wf_barrier_new(2, &d.both), 0);
	wf_spawn_opts oa = {.name = "holder-of-l1"}, ob = {.name = "holder-of-l2"};
	wf_task *a, *b;
	CHECK_RC(wf_spawn_ex(dl_a, &d, &oa, &a), 0);
	CHECK_RC(wf_spawn_ex(dl_b, &d, &ob, &b), 0);
	CHECK(until_waiting("holder-of-l1", "lock"));
	CHECK(until_waiting("holder-of-l2", "lock"));
	FILE *f = tmpfile();
	CHECK(f != NULL);
	CHECK_RC(wf_task_dump(wf_runtime_current(), f), 0);
	CHECK_RC(wf_task_dump(NULL, f), WF_EINVAL);
	long len = ftell(f);
	char *text = calloc(1, (size_t)len + 1);
	rewind(f);
	CHECK(fread(text, 1, (size_t)len, f) == (size_t)len);
	fclose(f);
	/* Each waits on the lock the other holds, and the dump says so. */
	wf_task_info info[16];
	size_t count;
	int n = wf_task_list(wf_runtime_current(), info, 16, &count);
	uint64_t ida = 0, idb = 0;
	for (int i = 0; i < n; i++) {
		if (strcmp(info[i].name, "holder-of-l1") == 0)
			ida = info[i].id;
		if (strcmp(info[i].name, "holder-of-l2") == 0)
			idb = info[i].id;
	}
	char want[128];
	snprintf(want, sizeof(want), "\"holder-of-l1\" waiting");
	CHECK(strstr(text, want) != NULL);
	snprintf(want, sizeof(want), "held by #%llu \"holder-of-l2\"", (unsigned long long)idb);
	const char *la = strstr(text, "\"holder-of-l1\" waiting");
	CHECK(la != NULL && strstr(la, want) != NULL && strstr(la, want) < strchr(la, '\n'));
	snprintf(want, sizeof(want), "held by #%llu \"holder-of-l1\"", (unsigned long long)ida);
	const char *lb = strstr(text, "\"holder-of-l2\" waiting");
	CHECK(lb != NULL && strstr(lb, want) != NULL && strstr(lb, want) < strchr(lb, '\n'));
	CHECK(strstr(text, "on lock 0x") != NULL);
	CHECK(strstr(text, "spawned at ") != NULL);
	if (check_any_failed())
		fprintf(stderr, "the dump:\n%s", text);
	free(text);
	/* Break it: cancel both; the lock waits return WF_ECANCELED. */
	wf_cancel(a);
	wf_cancel(b);
	wf_join(a, NULL);
	wf_join(b, NULL);
	CHECK_RC(wf_lock_free(d.l1), 0);
	CHECK_RC(wf_lock_free(d.l2), 0);
	CHECK_RC(wf_barrier_free(d.both), 0);
	return NULL;
}

Test(observe, a_deadlock_is_readable_from_the_dump)
{
	run_weft(2, deadlock_main, NULL);
}

/* ---- debug mode --------------------------------------------------------------- */

static int hog_running; /* atomic */
static int reported_while_running; /* atomic */

static void watch_log(int level, const char *msg, void *arg)
{
	keep_log(level, msg, arg);
	if (strstr(msg, "without suspending") != NULL &&
	    __atomic_load_n(&hog_running, __ATOMIC_ACQUIRE))
		__atomic_store_n(&reported_while_running, 1, __ATOMIC_RELEASE);
}

static void *hog(void *arg)
{
	(void)arg;
	__atomic_store_n(&hog_running, 1, __ATOMIC_RELEASE);
	uint64_t end = mono_ns() + 400 * 1000000ull;
	while (mono_ns() < end && !__atomic_load_n(&reported_while_running, __ATOMIC_ACQUIRE))
		spin(1000);
	/* Give the watchdog a little more time than the threshold if it
	 * has not spoken yet; the test fails if it never does. */
	__atomic_store_n(&hog_running, 0, __ATOMIC_RELEASE);
	return NULL;
}

static void *forgotten(void *arg)
{
	return arg;
}

static void *debug_main(void *arg)
{
	(void)arg;
	wf_spawn_opts o = {.name = "hog"};
	wf_task *h;
	CHECK_RC(wf_spawn_ex(hog, NULL, &o, &h), 0);
	CHECK_RC(wf_join(h, NULL), 0);
	/* Left behind on purpose: a handle never joined, a lock never freed. */
	wf_spawn_opts of = {.name = "forgotten"};
	wf_task *t;
	CHECK_RC(wf_spawn_ex(forgotten, NULL, &of, &t), 0);
	wf_lock *l;
	CHECK_RC(wf_lock_new(&l), 0);
	CHECK_RC(wf_sleep(10), 0);
	return NULL;
}

Test(observe, debug_mode_reports)
{
	wf_set_log(watch_log, NULL);
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	cfg.debug = WF_DEBUG_CHECKS;
	cfg.slow_task_ms = 50;
	cr_assert_eq(wf_run(&cfg, debug_main, NULL, NULL), 0);
	wf_set_log(NULL, NULL);
	check_none_failed();
	cr_assert(__atomic_load_n(&reported_while_running, __ATOMIC_ACQUIRE),
		  "no report while the task ran; log:\n%s", logbuf);
	cr_assert(log_has("debug: task \"hog\" (#"), "log:\n%s", logbuf);
	cr_assert(log_has("test_observe.c:"), "log:\n%s", logbuf);
	cr_assert(log_has("without suspending: it blocks that worker"), "log:\n%s", logbuf);
	cr_assert(log_has("debug: task \"forgotten\" (#"), "log:\n%s", logbuf);
	cr_assert(log_has("its handle was never joined or detached"), "log:\n%s", logbuf);
	cr_assert(log_has("debug: 1 lock object(s) made while the runtime ran were never freed"),
		  "log:\n%s", logbuf);
	/* Off by default: the same run without debug mode says nothing. */
	loglen = 0;
	logbuf[0] = '\0';
	__atomic_store_n(&reported_while_running, 0, __ATOMIC_RELEASE);
	wf_set_log(watch_log, NULL);
	cfg.debug = 0;
	cr_assert_eq(wf_run(&cfg, debug_main, NULL, NULL), 0);
	wf_set_log(NULL, NULL);
	cr_assert(!log_has("debug:"), "log:\n%s", logbuf);
}

/* ---- hooks and the exception handler ---------------------------------------- */

struct counts {
	int spawn, start, suspend, resume, end, tstart, tstop; /* atomic */
};

static void h_spawn(uint64_t id, void *a) { (void)id; __atomic_add_fetch(&((struct counts *)a)->spawn, 1, __ATOMIC_RELAXED); }
static void h_start(uint64_t id, void *a) { (void)id; __atomic_add_fetch(&((struct counts *)a)->start, 1, __ATOMIC_RELAXED); }
static void h_suspend(uint64_t id, void *a) { (void)id; __atomic_add_fetch(&((struct counts *)a)->suspend, 1, __ATOMIC_RELAXED); }
static void h_resume(uint64_t id, void *a) { (void)id; __atomic_add_fetch(&((struct counts *)a)->resume, 1, __ATOMIC_RELAXED); }
static void h_end(uint64_t id, int outcome, void *a) { (void)id; (void)outcome; __atomic_add_fetch(&((struct counts *)a)->end, 1, __ATOMIC_RELAXED); }
static void h_tstart(unsigned w, void *a) { (void)w; __atomic_add_fetch(&((struct counts *)a)->tstart, 1, __ATOMIC_RELAXED); }
static void h_tstop(unsigned w, void *a) { (void)w; __atomic_add_fetch(&((struct counts *)a)->tstop, 1, __ATOMIC_RELAXED); }

static void *napper(void *arg)
{
	wf_sleep(1);
	return arg;
}

static void *hooks_main(void *arg)
{
	(void)arg;
	wf_task *t[100];
	for (int i = 0; i < 100; i++)
		t[i] = wf_spawn(napper, NULL);
	for (int i = 0; i < 100; i++)
		CHECK_RC(wf_join(t[i], NULL), 0);
	return NULL;
}

static char exc_name[64];
static int exc_err;
static char exc_msg[64];

static void on_exception(const char *name, uint64_t id, int err, const char *msg, void *arg)
{
	(void)id;
	(void)arg;
	snprintf(exc_name, sizeof(exc_name), "%s", name);
	exc_err = err;
	snprintf(exc_msg, sizeof(exc_msg), "%s", msg != NULL ? msg : "");
}

static void *fails(void *arg)
{
	(void)arg;
	return wf_fail(WF_EIO, "disk gone");
}

static void *exc_main(void *arg)
{
	(void)arg;
	wf_spawn_opts o = {.name = "doomed", .detached = true};
	CHECK_RC(wf_spawn_ex(fails, NULL, &o, NULL), 0);
	CHECK_RC(wf_sleep(20), 0);
	return NULL;
}

Test(observe, hooks_and_the_exception_handler)
{
	struct counts c = {0};
	wf_hooks h = {.thread_start = h_tstart, .thread_stop = h_tstop, .task_spawn = h_spawn,
		      .task_start = h_start, .task_suspend = h_suspend, .task_resume = h_resume,
		      .task_end = h_end, .arg = &c};
	run_weft_hooks(2, &h, hooks_main, NULL);
	cr_assert_eq(c.tstart, 2);
	cr_assert_eq(c.tstop, 2);
	cr_assert_geq(c.spawn, 101);
	cr_assert_eq(c.spawn, c.start);
	cr_assert_eq(c.start, c.end);
	cr_assert_geq(c.suspend, 100);
	cr_assert_eq(c.suspend, c.resume);
	/* A hooks struct with reserved words set is refused. */
	h.reserved[0] = 1;
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	cfg.hooks = &h;
	cr_assert_eq(wf_run(&cfg, hooks_main, NULL, NULL), WF_EINVAL);

	wf_set_exception_handler(on_exception, NULL);
	cr_assert_eq(wf_run(NULL, exc_main, NULL, NULL), 0);
	wf_set_exception_handler(NULL, NULL);
	cr_assert_str_eq(exc_name, "doomed");
	cr_assert_eq(exc_err, WF_EIO);
	cr_assert_str_eq(exc_msg, "disk gone");
}

/* ---- JSON and SIGUSR1 ------------------------------------------------------------ */

static void *json_waiter(void *arg)
{
	return (void *)(intptr_t)wf_event_wait(arg, WF_FOREVER);
}

static void *json_main2(void *arg)
{
	(void)arg;
	wf_event *e;
	CHECK_RC(wf_event_new(&e), 0);
	wf_spawn_opts o = {.name = "quote\"d"};
	wf_task *t;
	CHECK_RC(wf_spawn_ex(json_waiter, e, &o, &t), 0);
	CHECK(until_waiting("quote\"d", "event"));
	char *js = NULL;
	CHECK_RC(wf_runtime_json(wf_runtime_current(), &js), 0);
	CHECK_RC(wf_runtime_json(NULL, &js), WF_EINVAL);
	CHECK(js != NULL && strncmp(js, "{\"metrics\":{\"workers\":2,", 24) == 0);
	CHECK(js != NULL && strstr(js, "\"name\":\"quote\\\"d\",\"state\":\"waiting\"") != NULL);
	CHECK(js != NULL && strstr(js, "\"waits_on\":\"event\"") != NULL);
	CHECK(js != NULL && strstr(js, "\"workers\":[{\"id\":0,") != NULL);
	if (check_any_failed() && js != NULL)
		fprintf(stderr, "%s\n", js);
	free(js);

	/* The dump on SIGUSR1 (the config asked for it). */
	raise(SIGUSR1);
	/* The dump is logged line by line from the signal watcher's task:
	 * wait for the task's own line, not only the header. */
	for (int i = 0; i < 400 && !log_has("\"quote\"d\" waiting"); i++)
		wf_sleep(5);
	CHECK(log_has("SIGUSR1: task dump"));
	CHECK(log_has("\"quote\"d\" waiting"));
	CHECK_RC(wf_event_set(e), 0);
	CHECK_RC(wf_join(t, NULL), 0);
	CHECK_RC(wf_event_free(e), 0);
	return NULL;
}

Test(observe, json_and_the_dump_on_sigusr1)
{
	loglen = 0;
	wf_set_log(keep_log, NULL);
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	cfg.debug = WF_DEBUG_DUMP_ON_SIGUSR1;
	cr_assert_eq(wf_run(&cfg, json_main2, NULL, NULL), 0);
	wf_set_log(NULL, NULL);
	check_none_failed();
}
