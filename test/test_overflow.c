/*
 * Stack overflow is reported, never silent: a task that recurses without
 * bound must make the process print
 *     weft: stack overflow in task "<name>"
 * on stderr and abort. The overflowing program runs in a child process: this
 * test binary re-executed with OVERFLOW_CHILD=<scenario> in its environment,
 * which a constructor picks up before Criterion starts. The parent checks
 * the child's stderr and that it died of SIGABRT.
 *
 * Scenarios:
 *   fiber   the task runs on its own fiber (guard page below its stack);
 *   inline  the task was joined before it started, so it runs inline on
 *           the joiner's stack: the report still names the running task;
 *   canary  stacks without guard pages (WEFT_STACK_GUARD=0): such a stack
 *           carries a canary in its lowest bytes that every switch checks.
 *           The task recurses to just past the bottom of its stack (into
 *           the spare page below it, so nothing else is hit) and yields:
 *           the switch must see the canary overwritten;
 *   budget  PROT_NONE guard pages (WEFT_STACK_GUARD=mprotect), each of which
 *           costs a mapping: the child keeps enough tasks alive to use up
 *           the guard budget (a quarter of vm.max_map_count); the next
 *           stack comes without a guard, the runtime says so once, and an
 *           overflow on it is still caught by the canary.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <spawn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "rt.h"
#include "rt_check.h"
#include "weft.h"

extern char **environ;

enum { CHILD_RETURNED = 3, CHILD_SETUP_FAILED = 4, CHILD_SKIP = 5 };

/* ---- the child side ------------------------------------------------------------- */

__attribute__((noinline, noclone)) static int recurse(int depth)
{
	volatile char frame[256];
	frame[0] = (char)depth;
	frame[255] = (char)(depth >> 8);
	__asm__ __volatile__("" : : "r"(frame) : "memory");
	/* Not a tail call: the frame stays live across the call. */
	int r = recurse(depth + 1);
	__asm__ __volatile__("" : : "r"(frame) : "memory");
	return r + frame[0] + frame[255];
}

static void *runaway(void *arg)
{
	return (void *)(intptr_t)recurse(0);
}

static void *fiber_main(void *arg)
{
	wf_task *t;
	wf_spawn_opts o = {.name = "runaway"};
	if (wf_spawn_ex(runaway, NULL, &o, &t) != 0)
		_exit(CHILD_SETUP_FAILED);
	/* Let it start on its own fiber before the join. */
	wf_sleep(50);
	wf_join(t, NULL);
	return NULL;
}

static void *inline_main(void *arg)
{
	wf_task *t;
	wf_spawn_opts o = {.name = "runaway-inline"};
	if (wf_spawn_ex(runaway, NULL, &o, &t) != 0)
		_exit(CHILD_SETUP_FAILED);
	wf_join(t, NULL); /* one worker, no suspension since the spawn */
	return NULL;
}

typedef struct idle_crowd {
	wf_future *gate;
	int started; /* atomic */
} idle_crowd;

static void *idle_task(void *arg)
{
	idle_crowd *c = arg;
	__atomic_add_fetch(&c->started, 1, __ATOMIC_RELAXED);
	wf_await(c->gate, NULL);
	return NULL;
}

/* Recurses until a frame reaches the lowest bytes of the stack, which
 * on an unguarded stack hold the canary, without going further than the
 * spare page below it. */
__attribute__((noinline, noclone)) static int dig(const char *lo, int depth)
{
	volatile char frame[256];
	/* Every byte written, as an overflowing frame would write it; the
	 * empty asm keeps the optimiser from reshaping the frames. */
	for (size_t i = 0; i < sizeof(frame); i++)
		frame[i] = (char)0xa5;
	__asm__ __volatile__("" : : "r"(frame) : "memory");
	if ((const char *)frame <= lo + 32)
		return depth;
	int r = dig(lo, depth + 1);
	__asm__ __volatile__("" : : "r"(frame) : "memory");
	return r + frame[0];
}

static void *canary_victim(void *arg)
{
	wf__stack *s = wf__task_get(wf_current())->fiber->stack;
	if (s->guarded) {
		fprintf(stderr, "overflow test: the victim's stack has a guard page\n");
		_exit(CHILD_SETUP_FAILED);
	}
	dig(s->lo, 0);
	wf_yield(); /* the switch checks the canary */
	return NULL;
}

/* Keeps enough tasks alive, each on a guarded stack, to use up stack.c's
 * budget of PROT_NONE guards. */
static void use_up_guards(void)
{
	long max_maps = 65530;
	FILE *f = fopen("/proc/sys/vm/max_map_count", "r");
	if (f != NULL) {
		if (fscanf(f, "%ld", &max_maps) != 1)
			max_maps = 65530;
		fclose(f);
	}
	long n = max_maps / 4 + 64;
	if (n > 40000) {
		fprintf(stderr, "overflow test: vm.max_map_count %ld is too large to use up\n",
			max_maps);
		_exit(CHILD_SKIP);
	}
	idle_crowd *c = calloc(1, sizeof(*c));
	c->gate = wf_future_new();
	wf_spawn_opts o = {.detached = true};
	for (long i = 0; i < n; i++)
		if (wf_spawn_ex(idle_task, c, &o, NULL) != 0)
			_exit(CHILD_SETUP_FAILED);
	for (int k = 0; __atomic_load_n(&c->started, __ATOMIC_RELAXED) < n && k < 60000; k++)
		wf_sleep(1);
	if (__atomic_load_n(&c->started, __ATOMIC_RELAXED) < n)
		_exit(CHILD_SETUP_FAILED);
}

static void *canary_main(void *arg)
{
	if (arg != NULL) {
#if defined(WF_TSAN)
		/* Thousands of fibers, each with TSan's state: too much memory
		 * for a test. The other builds run this scenario. */
		fprintf(stderr, "overflow test: not using up the guard budget under TSan\n");
		_exit(CHILD_SKIP);
#else
		use_up_guards();
#endif
	}
	wf_task *t;
	wf_spawn_opts vo = {.name = "canary-victim"};
	if (wf_spawn_ex(canary_victim, NULL, &vo, &t) != 0)
		_exit(CHILD_SETUP_FAILED);
	wf_yield(); /* not inline: it needs a stack of its own */
	wf_join(t, NULL);
	return NULL;
}

__attribute__((constructor)) static void overflow_child(void)
{
	const char *mode = getenv("OVERFLOW_CHILD");
	if (mode == NULL)
		return;
	/* No core files from the expected abort; and never hang. */
	struct rlimit no_core = {0, 0};
	setrlimit(RLIMIT_CORE, &no_core);
	alarm(120);
	wf_config cfg;
	wf_config_init(&cfg);
	wf_fn fn;
	void *arg = NULL;
	if (strcmp(mode, "fiber") == 0) {
		cfg.workers = 2;
		fn = fiber_main;
	} else if (strcmp(mode, "inline") == 0) {
		cfg.workers = 1;
		fn = inline_main;
	} else if (strcmp(mode, "canary") == 0) {
		cfg.workers = 2;
		fn = canary_main;
	} else if (strcmp(mode, "budget") == 0) {
		/* One worker: stacks are mapped 32 at a time into per-worker
		 * caches, and a second worker could still hold guarded stacks
		 * mapped before the budget ran out. */
		cfg.workers = 1;
		cfg.stack_size = 16 * 1024; /* the smallest: the crowd is large */
		fn = canary_main;
		arg = "use up the guards";
	} else {
		_exit(CHILD_SETUP_FAILED);
	}
	int rc = wf_run(&cfg, fn, arg, NULL);
	fprintf(stderr, "overflow test: wf_run returned %d: the overflow went unnoticed\n", rc);
	_exit(CHILD_RETURNED);
}

/* ---- the parent side ------------------------------------------------------------ */

typedef struct child_result {
	int status;
	char err[8192];
} child_result;

static void run_child(const char *mode, const char *extra_env, child_result *r)
{
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
	posix_spawn_file_actions_addclose(&fa, fds[0]);
	posix_spawn_file_actions_addclose(&fa, fds[1]);

	/* The same environment plus the scenario. */
	size_t n = 0;
	while (environ[n] != NULL)
		n++;
	char **env = calloc(n + 3, sizeof(char *));
	cr_assert_not_null(env);
	char var[64];
	snprintf(var, sizeof(var), "OVERFLOW_CHILD=%s", mode);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "OVERFLOW_CHILD=", 15) != 0 &&
		    strncmp(environ[i], "WEFT_STACK_GUARD=", 17) != 0)
			env[k++] = environ[i];
	env[k++] = var;
	if (extra_env != NULL)
		env[k++] = (char *)extra_env;
	env[k] = NULL;

	char *argv[] = {"test_overflow", NULL};
	pid_t pid;
	int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	free(env);
	close(fds[1]);
	cr_assert_eq(rc, 0, "posix_spawn: %s", strerror(rc));

	size_t len = 0;
	for (;;) {
		ssize_t got = read(fds[0], r->err + len, sizeof(r->err) - 1 - len);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		len += (size_t)got;
		if (len == sizeof(r->err) - 1) {
			char sink[4096]; /* keep draining, keep the start */
			while (read(fds[0], sink, sizeof(sink)) > 0)
				;
			break;
		}
	}
	r->err[len] = '\0';
	close(fds[0]);
	while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR)
		;
}

static void expect_report(const char *mode, const char *extra_env, const char *task_name)
{
	child_result r;
	run_child(mode, extra_env, &r);
	if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == CHILD_SKIP)
		cr_skip_test("%s", r.err);
	char want[128];
	snprintf(want, sizeof(want), "weft: stack overflow in task \"%s\"", task_name);
	cr_assert(strstr(r.err, want) != NULL, "no '%s' on the child's stderr:\n%s", want, r.err);
	cr_assert(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT,
		  "the child did not die of SIGABRT (status %#x):\n%s", r.status, r.err);
}

Test(overflow, reported_on_a_guarded_fiber)
{
	expect_report("fiber", NULL, "runaway");
}

Test(overflow, reported_when_running_inline)
{
	expect_report("inline", NULL, "runaway-inline");
}

Test(overflow, reported_by_the_canary_of_an_unguarded_stack)
{
	expect_report("canary", "WEFT_STACK_GUARD=0", "canary-victim");
}

Test(overflow, guards_run_out_near_max_map_count)
{
	child_result r;
	run_child("budget", "WEFT_STACK_GUARD=mprotect", &r);
	if (WIFEXITED(r.status) && WEXITSTATUS(r.status) == CHILD_SKIP)
		cr_skip_test("%s", r.err);
	cr_assert(strstr(r.err, "near vm.max_map_count") != NULL,
		  "the runtime did not say that stacks come without guard pages:\n%s", r.err);
	cr_assert(strstr(r.err, "weft: stack overflow in task \"canary-victim\"") != NULL,
		  "no report on the child's stderr:\n%s", r.err);
	cr_assert(WIFSIGNALED(r.status) && WTERMSIG(r.status) == SIGABRT,
		  "the child did not die of SIGABRT (status %#x):\n%s", r.status, r.err);
}
