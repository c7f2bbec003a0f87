/*
 * An inline join honours the joiner's stack size.
 *
 * Property: a task spawned with a 16 KiB stack that joins, before it
 * starts, a child that asked for the default stack (64 KiB) and uses about
 * 40 KiB of it, gets the child's result; nothing overflows. A child runs
 * inline on its joiner's stack only if that stack is at least as large as
 * the one the child would get. The failure guarded against: the child
 * runs inline on the 16 KiB stack and the process dies with weft's
 * "stack overflow" report.
 *
 * Each scenario runs in a child process (this test binary re-executed
 * with INLINE_STACK_CHILD=<workers> in its environment, picked up by a
 * constructor before Criterion starts), so that an overflow or a hang is
 * a clean failure of the test: the parent checks the exit status and the
 * child's stderr, and kills a child that does not end in time.
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
#include <time.h>
#include <unistd.h>

#include "rt_check.h"
#include "weft.h"

extern char **environ;

static const unsigned worker_counts[] = {1, 2, 3, 8};
#define NCOUNTS (sizeof(worker_counts) / sizeof(worker_counts[0]))

enum { CHILD_OK = 0, CHILD_WRONG = 3, CHILD_SETUP_FAILED = 4 };

#define SMALL_STACK (16 * 1024)
/* How much stack the child uses: well past 16 KiB, well within 64 KiB. */
#define CHILD_USES (40 * 1024)
#define BATCH 8

/* The failure is not a race: a few rounds show it. */
#if defined(WF_ASAN) || defined(WF_TSAN) || !defined(__OPTIMIZE__)
#define ROUNDS 8
#define CHILD_LIMIT_S 120
#else
#define ROUNDS 40
#define CHILD_LIMIT_S 30
#endif

/* ---- the child side ------------------------------------------------------ */

/* Recurses until `want` bytes of stack below `top` are in use, each frame
 * with a written 1 KiB buffer; returns the depth reached. (Frame
 * addresses, not the buffers': a sanitizer may keep those elsewhere.) */
__attribute__((noinline, noclone)) static long use_stack(const char *top, size_t want, long depth)
{
	volatile char buf[1024];
	buf[0] = (char)depth;
	buf[sizeof(buf) - 1] = (char)(depth >> 8);
	__asm__ __volatile__("" : : "r"(buf) : "memory");
	long r = depth;
	const char *here = __builtin_frame_address(0);
	if (here > top || (size_t)(top - here) < want)
		r = use_stack(top, want, depth + 1);
	__asm__ __volatile__("" : : "r"(buf) : "memory");
	return r + (buf[0] - (char)depth);
}

static int wrong; /* atomic */

static void *deep_child(void *arg)
{
	long depth = use_stack(__builtin_frame_address(0), CHILD_USES, 1);
	if (depth < 2) {
		__atomic_add_fetch(&wrong, 1, __ATOMIC_RELAXED);
		fprintf(stderr, "inline stack test: the recursion went %ld deep only\n", depth);
	}
	return (void *)((uintptr_t)arg * 5 + 1);
}

/* The joiner, on a 16 KiB stack: spawns the deep child (default stack)
 * and joins it at once, before it could start anywhere. */
static void *small_joiner(void *arg)
{
	uintptr_t n = (uintptr_t)arg;
	wf_task *t = wf_spawn(deep_child, (void *)n);
	if (t == NULL) {
		fprintf(stderr, "inline stack test: wf_spawn failed\n");
		_exit(CHILD_SETUP_FAILED);
	}
	void *res = NULL;
	int rc = wf_join(t, &res);
	if (rc != 0 || res != (void *)(n * 5 + 1)) {
		__atomic_add_fetch(&wrong, 1, __ATOMIC_RELAXED);
		fprintf(stderr, "inline stack test: join: %s, result %p\n", wf_err_name(rc), res);
	}
	return (void *)(n * 3);
}

static void *child_main(void *arg)
{
	uintptr_t rounds = (uintptr_t)test_iters(ROUNDS);
	for (uintptr_t round = 0; round < rounds; round++) {
		wf_task *j[BATCH];
		for (uintptr_t i = 0; i < BATCH; i++) {
			wf_spawn_opts o = {.name = "small-joiner", .stack_size = SMALL_STACK};
			if (wf_spawn_ex(small_joiner, (void *)(round * BATCH + i), &o, &j[i]) != 0) {
				fprintf(stderr, "inline stack test: wf_spawn_ex failed\n");
				_exit(CHILD_SETUP_FAILED);
			}
		}
		for (uintptr_t i = 0; i < BATCH; i++) {
			void *res = NULL;
			int rc = wf_join(j[i], &res);
			if (rc != 0 || res != (void *)((round * BATCH + i) * 3)) {
				__atomic_add_fetch(&wrong, 1, __ATOMIC_RELAXED);
				fprintf(stderr, "inline stack test: joiner: %s\n", wf_err_name(rc));
			}
		}
	}
	return NULL;
}

__attribute__((constructor)) static void inline_stack_child(void)
{
	const char *mode = getenv("INLINE_STACK_CHILD");
	if (mode == NULL)
		return;
	/* No core file if it dies; and never hang. */
	struct rlimit no_core = {0, 0};
	setrlimit(RLIMIT_CORE, &no_core);
	alarm(CHILD_LIMIT_S);
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = (unsigned)atoi(mode);
	int rc = wf_run(&cfg, child_main, NULL, NULL);
	if (rc != 0) {
		fprintf(stderr, "inline stack test: wf_run: %s\n", wf_err_name(rc));
		_exit(CHILD_WRONG);
	}
	_exit(__atomic_load_n(&wrong, __ATOMIC_RELAXED) ? CHILD_WRONG : CHILD_OK);
}

/* ---- the parent side ------------------------------------------------------ */

typedef struct child_result {
	int status;
	bool killed; /* it did not end in time */
	char err[8192];
} child_result;

static void run_child(unsigned workers, child_result *r)
{
	int fds[2];
	cr_assert_eq(pipe(fds), 0);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
	posix_spawn_file_actions_addclose(&fa, fds[0]);
	posix_spawn_file_actions_addclose(&fa, fds[1]);

	size_t n = 0;
	while (environ[n] != NULL)
		n++;
	char **env = calloc(n + 2, sizeof(char *));
	cr_assert_not_null(env);
	char var[64];
	snprintf(var, sizeof(var), "INLINE_STACK_CHILD=%u", workers);
	size_t k = 0;
	for (size_t i = 0; i < n; i++)
		if (strncmp(environ[i], "INLINE_STACK_CHILD=", 19) != 0)
			env[k++] = environ[i];
	env[k++] = var;
	env[k] = NULL;

	char *argv[] = {"test_inline_stack", NULL};
	pid_t pid;
	int rc = posix_spawn(&pid, "/proc/self/exe", &fa, NULL, argv, env);
	posix_spawn_file_actions_destroy(&fa);
	free(env);
	close(fds[1]);
	cr_assert_eq(rc, 0, "posix_spawn: %s", strerror(rc));

	/* Read its stderr until it closes (the child's exit, or its kill by
	 * its own alarm); the parent's own limit is a little longer. */
	memset(r, 0, sizeof(*r));
	size_t len = 0;
	struct timespec t0;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	for (;;) {
		struct timespec now;
		clock_gettime(CLOCK_MONOTONIC, &now);
		if (now.tv_sec - t0.tv_sec > CHILD_LIMIT_S + 20) {
			kill(pid, SIGKILL);
			r->killed = true;
			break;
		}
		fd_set rd;
		FD_ZERO(&rd);
		FD_SET(fds[0], &rd);
		struct timeval tv = {.tv_sec = 1};
		int s = select(fds[0] + 1, &rd, NULL, NULL, &tv);
		if (s < 0 && errno == EINTR)
			continue;
		if (s <= 0)
			continue;
		char sink[4096];
		char *dst = len < sizeof(r->err) - 1 ? r->err + len : sink;
		size_t room = len < sizeof(r->err) - 1 ? sizeof(r->err) - 1 - len : sizeof(sink);
		ssize_t got = read(fds[0], dst, room);
		if (got < 0 && errno == EINTR)
			continue;
		if (got <= 0)
			break;
		if (dst != sink)
			len += (size_t)got;
	}
	r->err[len] = '\0';
	close(fds[0]);
	while (waitpid(pid, &r->status, 0) < 0 && errno == EINTR)
		;
}

Test(inline_stack, inline_join_honours_the_joiners_stack_size, .timeout = 4 * (CHILD_LIMIT_S + 30))
{
	for (size_t i = 0; i < NCOUNTS; i++) {
		child_result r;
		run_child(worker_counts[i], &r);
		cr_assert(!r.killed, "%u workers: the child did not end within %d s (a hang):\n%s",
			  worker_counts[i], CHILD_LIMIT_S + 20, r.err);
		cr_assert(strstr(r.err, "stack overflow") == NULL,
			  "%u workers: a child joined inline overflowed its joiner's 16 KiB "
			  "stack:\n%s",
			  worker_counts[i], r.err);
		cr_assert(WIFEXITED(r.status),
			  "%u workers: the child died of signal %d:\n%s", worker_counts[i],
			  WIFSIGNALED(r.status) ? WTERMSIG(r.status) : 0, r.err);
		cr_assert_eq(WEXITSTATUS(r.status), CHILD_OK, "%u workers: the child exited with %d:\n%s",
			     worker_counts[i], WEXITSTATUS(r.status), r.err);
	}
}
