/*
 * Subprocesses: exit codes and signal deaths, 10 MB through both pipes at
 * once, a child that closes stdin early, a child killed mid-communicate,
 * cancelled waits (child killed, or left running on request), waits from
 * another worker and from a plain thread, many children from four
 * workers, a thousand short children that leave no descriptor and no
 * zombie, orphans reaped by the reaper, missing programs, stale handles,
 * bad options, environment, working directory, stderr merged into stdout.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io_test.h"
#include "rt_check.h"
#include "weft.h"

#define LONG_MS 20000

/* true when this process has no child at all, zombie or not. */
static bool no_children(void)
{
	int st;
	return waitpid(-1, &st, WNOHANG) == -1 && errno == ECHILD;
}

static wf_process *start(const char *cmd, int in, int out, int err, unsigned flags)
{
	wf_process_opts o = WF_PROCESS_OPTS_INIT;
	o.stdin_mode = in;
	o.stdout_mode = out;
	o.stderr_mode = err;
	o.flags = flags;
	wf_process *p = NULL;
	CHECK_RC(wf_process_shell(cmd, &o, &p), 0);
	return p;
}

/* ---- exit codes, signals, lines ----------------------------------------- */

static void *codes_main(void *arg)
{
	(void)arg;
	int rc = 1234;
	wf_process *p = start("exit 3", WF_INHERIT, WF_INHERIT, WF_INHERIT, 0);
	if (p == NULL)
		return NULL;
	CHECK(wf_process_pid(p) > 0);
	CHECK(wf_process_stdin(p) == NULL && wf_process_stdout(p) == NULL &&
	      wf_process_stderr(p) == NULL);
	CHECK_RC(wf_process_wait(p, LONG_MS, &rc), 0);
	CHECK_EQ(rc, 3);
	/* Again, at once, and after reaping a signal is refused. */
	CHECK_RC(wf_process_wait(p, 0, &rc), 0);
	CHECK_EQ(rc, 3);
	CHECK_RC(wf_process_send_signal(p, SIGTERM), -ESRCH);
	CHECK_RC(wf_process_free(p), 0);

	p = start("kill -TERM $$; sleep 5", WF_INHERIT, WF_INHERIT, WF_INHERIT, 0);
	CHECK_RC(wf_process_wait(p, LONG_MS, &rc), 0);
	CHECK_EQ(rc, -SIGTERM);
	CHECK_RC(wf_process_free(p), 0);

	/* SIGPIPE is the child's default again, though weft ignores it
	 * (from the first pipe stream on; here at once). */
	signal(SIGPIPE, SIG_IGN);
	p = start("kill -PIPE $$; exit 7", WF_INHERIT, WF_INHERIT, WF_INHERIT, 0);
	CHECK_RC(wf_process_wait(p, LONG_MS, &rc), 0);
	CHECK_EQ(rc, -SIGPIPE);
	CHECK_RC(wf_process_free(p), 0);

	/* A timeout leaves the child running; terminate ends it. */
	p = start("exec sleep 30", WF_INHERIT, WF_INHERIT, WF_INHERIT, 0);
	CHECK_RC(wf_process_wait(p, 0, &rc), WF_ETIMEDOUT);
	CHECK_RC(wf_process_wait(p, 30, &rc), WF_ETIMEDOUT);
	CHECK_RC(wf_process_terminate(p), 0);
	CHECK_RC(wf_process_wait(p, LONG_MS, &rc), 0);
	CHECK_EQ(rc, -SIGTERM);
	CHECK_RC(wf_process_send_signal(p, 0), -ESRCH);
	CHECK_RC(wf_process_free(p), 0);

	/* Lines read as they come, from argv without a shell. */
	const char *argv[] = {"printf", "a\\nbb\\nccc", NULL};
	wf_process_opts o = {.stdout_mode = WF_PIPE};
	CHECK_RC(wf_process_exec("printf", argv, &o, &p), 0);
	char line[16];
	CHECK_EQ(wf_stream_readline(wf_process_stdout(p), line, sizeof(line), LONG_MS), 2);
	CHECK_EQ(wf_stream_readline(wf_process_stdout(p), line, sizeof(line), LONG_MS), 3);
	CHECK_EQ(wf_stream_readline(wf_process_stdout(p), line, sizeof(line), LONG_MS), 3);
	CHECK(memcmp(line, "ccc", 3) == 0);
	CHECK_EQ(wf_stream_readline(wf_process_stdout(p), line, sizeof(line), LONG_MS), 0);
	CHECK_RC(wf_process_wait(p, LONG_MS, &rc), 0);
	CHECK_EQ(rc, 0);
	CHECK_RC(wf_process_free(p), 0);
	return NULL;
}

Test(process, exit_codes_signal_deaths_timeouts_and_lines)
{
	run_weft(2, codes_main, NULL);
	cr_assert(no_children());
}

/* ---- big data ------------------------------------------------------------- */

#define BIG ((size_t)10 * 1024 * 1024)

static void *big_main(void *arg)
{
	(void)arg;
	unsigned char *in = malloc(BIG);
	for (size_t i = 0; i < BIG; i++)
		in[i] = pat(i, 7);
	/* tee copies stdin to stdout and to stderr (the same pipe again,
	 * opened through /dev/stderr): all three pipes full at once, and a
	 * child that blocks on either output until it is read. */
	wf_process *p = start("tee /dev/stderr", WF_PIPE, WF_PIPE, WF_PIPE, 0);
	void *out = NULL, *err = NULL;
	size_t outlen = 0, errlen = 0;
	CHECK_RC(wf_process_communicate(p, in, BIG, &out, &outlen, &err, &errlen, 60000), 0);
	CHECK_EQ(outlen, BIG);
	CHECK_EQ(errlen, BIG);
	CHECK(out != NULL && memcmp(out, in, BIG) == 0);
	CHECK(err != NULL && memcmp(err, in, BIG) == 0);
	int rc = -1;
	CHECK_RC(wf_process_wait(p, 0, &rc), 0);
	CHECK_EQ(rc, 0);
	CHECK_RC(wf_process_free(p), 0);
	free(out);
	free(err);

	/* Output only, far more than a pipe holds, on both streams. */
	p = start("head -c 10485760 /dev/zero; head -c 10485760 /dev/zero >&2", WF_INHERIT,
		  WF_PIPE, WF_PIPE, 0);
	CHECK_RC(wf_process_communicate(p, NULL, 0, &out, &outlen, NULL, &errlen, 60000), 0);
	CHECK_EQ(outlen, BIG);
	CHECK_EQ(errlen, BIG);
	CHECK(out != NULL && ((char *)out)[BIG - 1] == 0 && ((char *)out)[BIG] == 0);
	free(out);
	CHECK_RC(wf_process_free(p), 0);
	free(in);
	return NULL;
}

Test(process, ten_mb_each_way_through_both_pipes)
{
	run_weft(4, big_main, NULL);
}

/* ---- stdin closed early, killed mid-communicate ---------------------------- */

static void *killer(void *arg)
{
	wf_process *p = arg;
	wf_sleep(100);
	CHECK_RC(wf_process_kill(p), 0);
	return NULL;
}

static void *early_main(void *arg)
{
	(void)arg;
	size_t n = 4 * 1024 * 1024;
	char *in = calloc(1, n);
	wf_process *p = start("exec 0<&-; echo closed; sleep 0.1", WF_PIPE, WF_PIPE, WF_INHERIT, 0);
	void *out = NULL;
	size_t outlen = 0;
	int rc = wf_process_communicate(p, in, n, &out, &outlen, NULL, NULL, LONG_MS);
	CHECK(rc == -EPIPE || rc == -ECONNRESET);
	CHECK(out != NULL && strcmp(out, "closed\n") == 0);
	free(out);
	int code = -1;
	CHECK_RC(wf_process_wait(p, 0, &code), 0);
	CHECK_EQ(code, 0);
	CHECK_RC(wf_process_free(p), 0);

	/* Killed while communicate reads and writes: what came is kept,
	 * the returncode says SIGKILL. */
	p = start("echo started; exec sleep 30", WF_PIPE, WF_PIPE, WF_PIPE, 0);
	wf_task *k = wf_spawn(killer, p);
	void *err = NULL;
	rc = wf_process_communicate(p, in, n, &out, &outlen, &err, NULL, LONG_MS);
	/* The child may die with input still unsent. */
	CHECK(rc == 0 || rc == -EPIPE || rc == -ECONNRESET);
	wf_join(k, NULL);
	if (rc == 0 || rc == -EPIPE) {
		CHECK(out != NULL && strcmp(out, "started\n") == 0);
		CHECK(err != NULL && *(char *)err == '\0');
	}
	free(out);
	free(err);
	CHECK_RC(wf_process_wait(p, LONG_MS, &code), 0);
	CHECK_EQ(code, -SIGKILL);
	CHECK_RC(wf_process_free(p), 0);
	free(in);
	return NULL;
}

Test(process, stdin_closed_early_and_killed_mid_communicate)
{
	run_weft(2, early_main, NULL);
	cr_assert(no_children());
}

/* ---- cancellation ---------------------------------------------------------- */

struct waiter_arg {
	wf_process *p;
	int rc;
	bool communicate;
};

static void *waiter(void *arg)
{
	struct waiter_arg *w = arg;
	if (w->communicate)
		w->rc = wf_process_communicate(w->p, NULL, 0, NULL, NULL, NULL, NULL, WF_FOREVER);
	else
		w->rc = wf_process_wait(w->p, WF_FOREVER, NULL);
	return NULL;
}

static void cancel_one(bool communicate, unsigned flags)
{
	wf_process *p = start("exec sleep 30", WF_PIPE, WF_PIPE, WF_PIPE, flags);
	struct waiter_arg w = {.p = p, .communicate = communicate};
	wf_task *t = wf_spawn(waiter, &w);
	wf_sleep(50);
	CHECK_RC(wf_process_wait(p, 0, NULL), WF_ETIMEDOUT);
	CHECK_RC(wf_cancel(t), 0);
	wf_join(t, NULL);
	CHECK_RC(w.rc, WF_ECANCELED);
	int code = 0;
	if (flags & WF_PROCESS_KEEP_ON_CANCEL) {
		/* Left running: still there a while later. */
		wf_sleep(30);
		CHECK_RC(wf_process_wait(p, 0, &code), WF_ETIMEDOUT);
		CHECK_RC(wf_process_kill(p), 0);
	}
	CHECK_RC(wf_process_wait(p, LONG_MS, &code), 0);
	CHECK_EQ(code, -SIGKILL);
	CHECK_RC(wf_process_free(p), 0);
}

static void *cancel_main(void *arg)
{
	(void)arg;
	cancel_one(false, 0);
	cancel_one(false, WF_PROCESS_KEEP_ON_CANCEL);
	cancel_one(true, 0);
	cancel_one(true, WF_PROCESS_KEEP_ON_CANCEL);

	/* communicate's own timeout leaves the child running. */
	wf_process *p = start("echo hi; exec sleep 30", WF_INHERIT, WF_PIPE, WF_INHERIT, 0);
	void *out = (void *)1;
	CHECK_RC(wf_process_communicate(p, NULL, 0, &out, NULL, NULL, NULL, 100), WF_ETIMEDOUT);
	CHECK(out == NULL);
	CHECK_RC(wf_process_wait(p, 0, NULL), WF_ETIMEDOUT);
	/* What came stays in the stream. */
	char line[8];
	CHECK_EQ(wf_stream_readline(wf_process_stdout(p), line, sizeof(line), LONG_MS), 3);
	CHECK_RC(wf_process_kill(p), 0);
	int code = 0;
	CHECK_RC(wf_process_wait(p, LONG_MS, &code), 0);
	CHECK_EQ(code, -SIGKILL);
	CHECK_RC(wf_process_free(p), 0);
	return NULL;
}

Test(process, cancelled_waits_kill_or_keep_the_child)
{
	run_weft(2, cancel_main, NULL);
	cr_assert(no_children());
}

/* ---- other workers, plain threads ------------------------------------------ */

static void *wait_elsewhere(void *arg)
{
	struct waiter_arg *w = arg;
	/* Pinned: the wake must come to worker 1, across threads. */
	CHECK_RC(wf_move_to_worker(1), 0);
	CHECK_RC(wf_pin(true), 0);
	int code = -1;
	w->rc = wf_process_wait(w->p, LONG_MS, &code);
	CHECK_EQ(code, 5);
	CHECK_EQ(wf_worker_id(), 1);
	return NULL;
}

static void *plain_wait(void *arg)
{
	struct waiter_arg *w = arg;
	int code = -1;
	w->rc = wf_process_wait(w->p, LONG_MS, &code);
	CHECK_EQ(code, 5);
	return NULL;
}

#define PAR_TASKS 32

static void *par_child(void *arg)
{
	unsigned i = (unsigned)(uintptr_t)arg;
	CHECK_RC(wf_move_to_worker(i % 4), 0);
	for (int k = 0; k < 4 && !check_any_failed(); k++) {
		char cmd[64];
		snprintf(cmd, sizeof(cmd), "echo %u; exit %u", i, (i + (unsigned)k) % 100);
		wf_process *p = start(cmd, WF_DEVNULL, WF_PIPE, WF_INHERIT, 0);
		if (p == NULL)
			return NULL;
		/* The wait may well run on another worker than the start:
		 * hop between them. */
		CHECK_RC(wf_move_to_worker((i + 1) % 4), 0);
		void *out = NULL;
		CHECK_RC(wf_process_communicate(p, NULL, 0, &out, NULL, NULL, NULL, LONG_MS), 0);
		CHECK_EQ(atoi(out != NULL ? out : "-1"), i);
		free(out);
		int code = -1;
		CHECK_RC(wf_process_wait(p, 0, &code), 0);
		CHECK_EQ(code, (i + (unsigned)k) % 100);
		CHECK_RC(wf_process_free(p), 0);
		CHECK_RC(wf_move_to_worker(i % 4), 0);
	}
	return NULL;
}

static void *workers_main(void *arg)
{
	(void)arg;
	/* Started on worker 0, waited for by a task on worker 1 and by a
	 * plain thread at once. */
	CHECK_RC(wf_move_to_worker(0), 0);
	wf_process *p = start("sleep 0.1; exit 5", WF_INHERIT, WF_INHERIT, WF_INHERIT, 0);
	struct waiter_arg w1 = {.p = p}, w2 = {.p = p};
	wf_task *t = wf_spawn(wait_elsewhere, &w1);
	pthread_t th;
	pthread_create(&th, NULL, plain_wait, &w2);
	wf_join(t, NULL);
	pthread_join(th, NULL);
	CHECK_RC(w1.rc, 0);
	CHECK_RC(w2.rc, 0);
	CHECK_RC(wf_process_free(p), 0);

	wf_task *ts[PAR_TASKS];
	for (unsigned i = 0; i < PAR_TASKS; i++)
		ts[i] = wf_spawn(par_child, (void *)(uintptr_t)i);
	for (unsigned i = 0; i < PAR_TASKS; i++)
		wf_join(ts[i], NULL);
	return NULL;
}

Test(process, children_started_and_awaited_on_four_workers)
{
	run_weft(4, workers_main, NULL);
	cr_assert(no_children());
}

/* ---- no leaks, no zombies ---------------------------------------------------- */

static void *thousand_main(void *arg)
{
	(void)arg;
	int before = fd_count();
	long n = test_iters(1000);
	const char *argv[] = {"true", NULL};
	wf_process_opts o = {.stdin_mode = WF_PIPE, .stdout_mode = WF_PIPE, .stderr_mode = WF_PIPE};
	for (long i = 0; i < n && !check_any_failed(); i++) {
		wf_process *p = NULL;
		/* Half with pipes, half without. */
		if (!CHECK_RC(wf_process_exec("/bin/true", argv, i % 2 ? &o : NULL, &p), 0))
			break;
		int code = -1;
		CHECK_RC(wf_process_wait(p, LONG_MS, &code), 0);
		CHECK_EQ(code, 0);
		CHECK_RC(wf_process_free(p), 0);
	}
	CHECK_EQ(fd_count(), before);
	CHECK(no_children());

	/* A program that does not exist: a code, no child, no descriptor. */
	wf_process *p = (wf_process *)1;
	const char *nargv[] = {"weft-no-such-program", NULL};
	CHECK_RC(wf_process_exec("weft-no-such-program", nargv, &o, &p), -ENOENT);
	CHECK(p == NULL);
	CHECK_RC(wf_process_exec("/nonexistent/prog", nargv, NULL, &p), -ENOENT);
	wf_process_opts bad_cwd = {.cwd = "/nonexistent-dir"};
	CHECK_RC(wf_process_exec("/bin/true", argv, &bad_cwd, &p), -ENOENT);
	CHECK_RC(wf_process_exec("/etc/passwd", argv, NULL, &p), -EACCES);
	CHECK_EQ(fd_count(), before);
	CHECK(no_children());
	/* The shell runs, the command it cannot find is its 127. */
	p = start("weft-no-such-program", WF_INHERIT, WF_DEVNULL, WF_DEVNULL, 0);
	int code = -1;
	CHECK_RC(wf_process_wait(p, LONG_MS, &code), 0);
	CHECK_EQ(code, 127);
	CHECK_RC(wf_process_free(p), 0);
	return NULL;
}

Test(process, a_thousand_children_leave_no_descriptor_and_no_zombie)
{
	run_weft(2, thousand_main, NULL);
	cr_assert(no_children());
}

static void *warm_up(void *arg) { return arg; }

static void *orphan_main(void *arg)
{
	(void)arg;
	/* Freed while running, never waited for: the reaper takes them. */
	pid_t pids[8];
	for (int i = 0; i < 8; i++) {
		wf_process *p = start(i % 2 ? "exec sleep 0.2" : "exit 0", WF_PIPE, WF_PIPE,
				      WF_PIPE, 0);
		pids[i] = wf_process_pid(p);
		CHECK_RC(wf_process_free(p), 0);
	}
	/* One freed while another task waits for it. The waiter may not
	 * have started waiting by the time of the free (a slow machine):
	 * then it finds the handle stale, and the round is tried again. */
	int rc = WF_EINVAL;
	for (int round = 0; round < 10 && rc == WF_EINVAL; round++) {
		wf_process *p = start("exec sleep 0.2", WF_INHERIT, WF_INHERIT, WF_INHERIT, 0);
		struct waiter_arg w = {.p = p};
		wf_task *t = wf_spawn(waiter, &w);
		wf_sleep(20 + 20 * (unsigned)round);
		CHECK_RC(wf_process_free(p), 0);
		wf_join(t, NULL);
		rc = w.rc;
	}
	CHECK_RC(rc, WF_ECLOSED);
	(void)pids;
	return NULL;
}

Test(process, freed_children_are_reaped_even_after_the_runtime)
{
	/* A first runtime leaves what libuv keeps process-wide open. */
	run_weft(2, warm_up, NULL);
	int before = fd_count();
	run_weft(2, orphan_main, NULL);
	/* Some outlive the runtime: the reaper has them, and goes away
	 * with the last one, its descriptors with it. */
	uint64_t t0 = mono_ns();
	while (!no_children() && mono_ns() - t0 < 10000000000ull)
		usleep(10000);
	cr_assert(no_children());
	while (fd_count() != before && mono_ns() - t0 < 10000000000ull)
		usleep(10000);
	cr_assert_eq(fd_count(), before);
}

/* ---- options, handles, errors ------------------------------------------------ */

static void *opts_main(void *arg)
{
	(void)arg;
	const char *env[] = {"WEFT_TEST_VAR=hello there", NULL};
	wf_process_opts o = {.env = env, .cwd = "/tmp", .stdout_mode = WF_PIPE,
			     .stderr_mode = WF_STDOUT};
	wf_process *p = NULL;
	CHECK_RC(wf_process_shell("echo \"$WEFT_TEST_VAR\"; pwd; echo err >&2; env | wc -l >&2", &o,
				  &p),
		 0);
	CHECK(wf_process_stderr(p) == NULL);
	void *out = NULL, *err = (void *)1;
	size_t len = 0;
	CHECK_RC(wf_process_communicate(p, NULL, 0, &out, &len, &err, NULL, LONG_MS), 0);
	CHECK(err == NULL);
	/* sh adds PWD (and maybe SHLVL, _) to the one variable given. */
	CHECK(out != NULL && strncmp(out, "hello there\n/tmp\nerr\n", 21) == 0);
	CHECK(out != NULL && atoi((char *)out + 21) <= 4);
	free(out);
	CHECK_RC(wf_process_free(p), 0);

	/* stdin from /dev/null. */
	p = start("cat; echo end", WF_DEVNULL, WF_PIPE, WF_INHERIT, 0);
	CHECK_RC(wf_process_communicate(p, NULL, 0, &out, &len, NULL, NULL, LONG_MS), 0);
	CHECK(out != NULL && strcmp(out, "end\n") == 0);
	free(out);
	/* Input with no stdin pipe. */
	CHECK_RC(wf_process_communicate(p, "x", 1, NULL, NULL, NULL, NULL, LONG_MS), WF_EINVAL);
	CHECK_RC(wf_process_free(p), 0);

	/* Stale handles: every call, every time. */
	CHECK_RC(wf_process_free(p), WF_EINVAL);
	CHECK_RC(wf_process_wait(p, 0, NULL), WF_EINVAL);
	CHECK_RC(wf_process_kill(p), WF_EINVAL);
	CHECK_RC(wf_process_send_signal(p, SIGTERM), WF_EINVAL);
	CHECK_RC(wf_process_pid(p), WF_EINVAL);
	CHECK(wf_process_stdout(p) == NULL);
	CHECK_RC(wf_process_communicate(p, NULL, 0, NULL, NULL, NULL, NULL, 0), WF_EINVAL);
	CHECK_RC(wf_process_wait(NULL, 0, NULL), WF_EINVAL);
	CHECK_RC(wf_process_free((wf_process *)(uintptr_t)0x12345), WF_EINVAL);
	/* A new process does not make the old handle live again. */
	wf_process *q = start("exit 0", WF_INHERIT, WF_INHERIT, WF_INHERIT, 0);
	CHECK_RC(wf_process_wait(p, 0, NULL), WF_EINVAL);
	CHECK_RC(wf_process_wait(q, LONG_MS, NULL), 0);
	CHECK_RC(wf_process_free(q), 0);

	/* Bad options. */
	const char *argv[] = {"true", NULL};
	wf_process_opts bad = WF_PROCESS_OPTS_INIT;
	bad.reserved[5] = 1;
	CHECK_RC(wf_process_exec("true", argv, &bad, &p), WF_EINVAL);
	wf_process_opts bad2 = {.stdin_mode = WF_STDOUT};
	CHECK_RC(wf_process_exec("true", argv, &bad2, &p), WF_EINVAL);
	wf_process_opts bad3 = {.stderr_mode = 9};
	CHECK_RC(wf_process_exec("true", argv, &bad3, &p), WF_EINVAL);
	wf_process_opts bad4 = {.flags = 2};
	CHECK_RC(wf_process_exec("true", argv, &bad4, &p), WF_EINVAL);
	const char *empty[] = {NULL};
	CHECK_RC(wf_process_exec("true", empty, NULL, &p), WF_EINVAL);
	CHECK_RC(wf_process_exec(NULL, argv, NULL, &p), WF_EINVAL);
	CHECK_RC(wf_process_shell(NULL, NULL, &p), WF_EINVAL);
	CHECK_RC(wf_process_shell("true", NULL, NULL), WF_EINVAL);
	return NULL;
}

Test(process, options_env_cwd_merged_stderr_stale_handles)
{
	run_weft(2, opts_main, NULL);
	/* Outside a task. */
	wf_process *p;
	cr_assert_eq(wf_process_shell("true", NULL, &p), WF_ENOTTASK);
	cr_assert(no_children());
}
