/*
 * Errors are never lost: a task that gather left running (after the first
 * failure) and that fails later is reported as never joined; in debug mode
 * (WF_DEBUG_CHECKS) a future released before anyone completed it, or that
 * failed and was never awaited, is reported; a future whose outcome was
 * seen, or a runtime without the flag, reports nothing.
 */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rt_check.h"
#include "weft.h"

static void run_with(unsigned debug, wf_fn fn)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	cfg.debug = debug;
	cr_assert_eq(wf_run(&cfg, fn, NULL, NULL), 0);
	check_none_failed();
}

static int count(const char *hay, const char *needle)
{
	int n = 0;
	for (const char *p = hay; (p = strstr(p, needle)) != NULL; p++)
		n++;
	return n;
}

/* ---- gather's detached children ------------------------------------------- */

static void *fail_now(void *arg)
{
	return wf_fail(WF_EIO, "first");
}

/* Holds its own reference to the gate: it may start after the main task
 * let go of it (gather detached it). */
static int late_started;

static void *fail_later(void *arg)
{
	__atomic_store_n(&late_started, 1, __ATOMIC_SEQ_CST);
	wf_await(arg, NULL);
	wf_future_release(arg);
	return wf_fail(WF_EPIPE, "the late one");
}

static void *gather_left_main(void *arg)
{
	wf_future *gate = wf_future_new();
	wf_spawn_opts o = {.name = "latecomer"};
	wf_task *ts[2];
	CHECK_RC(wf_spawn_ex(fail_later, wf_future_retain(gate), &o, &ts[0]), 0);
	ts[1] = wf_spawn(fail_now, NULL);
	CHECK_RC(wf_gather(ts, 2, NULL, 0), WF_EIO);
	/* Once started, the latecomer fails even if the runtime's shutdown
	 * cancels it (its failure wins), and the shutdown waits for it. */
	while (!__atomic_load_n(&late_started, __ATOMIC_SEQ_CST))
		wf_sleep(1);
	wf_future_set(gate, NULL);
	wf_future_release(gate);
	return NULL;
}

Test(errors, gather_leaves_no_failure_unreported)
{
	stderr_capture c;
	stderr_capture_begin(&c);
	run_with(0, gather_left_main);
	char *err = stderr_capture_end(&c);
	cr_expect(strstr(err, "weft: task \"latecomer\" failed: the late one, never joined") != NULL,
		  "stderr: %s", err);
	free(err);
}

/* ---- futures, debug mode ------------------------------------------------------ */

static void *futures_main(void *arg)
{
	/* Released while pending. */
	wf_future *f = wf_future_new();
	wf_future_release(f);
	/* Failed, never awaited. */
	f = wf_future_new();
	wf_future_fail(f, WF_EIO, "lost error");
	wf_future_release(f);
	/* Failed without a message. */
	f = wf_future_new();
	wf_future_fail(f, WF_EPIPE, NULL);
	wf_future_release(f);
	/* Seen: awaited, or read. */
	f = wf_future_new();
	wf_future_fail(f, WF_EIO, "seen error");
	CHECK_RC(wf_await(f, NULL), WF_EIO);
	wf_future_release(f);
	f = wf_future_new();
	wf_future_fail(f, WF_EIO, "read error");
	CHECK_RC(wf_future_result(f, NULL), WF_EIO);
	wf_future_release(f);
	/* Succeeded, or cancelled: nothing to report. */
	f = wf_future_new();
	wf_future_set(f, NULL);
	wf_future_release(f);
	f = wf_future_new();
	wf_future_cancel(f);
	wf_future_release(f);
	/* A second owner keeps it alive: only the last release counts. */
	f = wf_future_new();
	wf_future_retain(f);
	wf_future_release(f);
	wf_future_set(f, NULL);
	wf_future_release(f);
	/* A shielded task that fails, its future never awaited. */
	wf_future *sf;
	CHECK_RC(wf_shield(wf_spawn(fail_now, NULL), &sf), 0);
	while (!wf_future_done(sf))
		wf_sleep(1);
	wf_future_release(sf);
	return NULL;
}

Test(errors, debug_reports_futures_nobody_will_see)
{
	stderr_capture c;
	stderr_capture_begin(&c);
	run_with(WF_DEBUG_CHECKS, futures_main);
	char *err = stderr_capture_end(&c);
	cr_expect_eq(count(err, "released while pending: never completed"), 1, "stderr: %s", err);
	cr_expect_eq(count(err, "failed: lost error, never awaited"), 1, "stderr: %s", err);
	cr_expect_eq(count(err, "failed: broken pipe, never awaited"), 1, "stderr: %s", err);
	cr_expect_eq(count(err, "failed: first, never awaited"), 1, "stderr: %s", err);
	cr_expect_eq(count(err, "seen error"), 0, "stderr: %s", err);
	cr_expect_eq(count(err, "read error"), 0, "stderr: %s", err);
	cr_expect_eq(count(err, "weft: future"), 4, "stderr: %s", err);
	free(err);
}

Test(errors, no_report_without_debug_checks)
{
	stderr_capture c;
	stderr_capture_begin(&c);
	run_with(0, futures_main);
	char *err = stderr_capture_end(&c);
	cr_expect_eq(count(err, "weft: future"), 0, "stderr: %s", err);
	free(err);
}
