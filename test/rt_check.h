/*
 * Checks for code that runs inside weft tasks and on helper threads.
 *
 * Criterion's fatal assertions unwind to the test's own thread, so they
 * must not be used on a worker thread or a task's stack. Code there uses
 * CHECK*, which records the failure (the first message is kept) and goes
 * on; the test's thread then calls check_none_failed() after wf_run.
 * Criterion runs each test in a process of its own, so the record starts
 * empty for every test.
 *
 * run_weft() also checks, in the ASan build, that the runtime left nothing
 * unreachable behind once wf_run returned.
 */
#ifndef WEFT_TEST_RT_CHECK_H
#define WEFT_TEST_RT_CHECK_H

#include <criterion/criterion.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"

#if defined(WF_ASAN)
#include <sanitizer/lsan_interface.h>
#endif

static int check_failures;
static char check_first[512];
static pthread_mutex_t check_mu = PTHREAD_MUTEX_INITIALIZER;

__attribute__((unused, format(printf, 3, 4))) static void check_fail(const char *file, int line,
								   const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&check_mu);
	if (__atomic_fetch_add(&check_failures, 1, __ATOMIC_RELAXED) == 0)
		snprintf(check_first, sizeof(check_first), "%s:%d: %s", file, line, msg);
	pthread_mutex_unlock(&check_mu);
	fprintf(stderr, "%s:%d: check failed: %s\n", file, line, msg);
}

#define CHECK(cond)                                                            \
	((cond) ? 1 : (check_fail(__FILE__, __LINE__, "%s", #cond), 0))

/* Integer equality, with both values in the message. */
#define CHECK_EQ(a, b)                                                         \
	__extension__({                                                        \
		long long check_a_ = (long long)(a), check_b_ = (long long)(b); \
		check_a_ == check_b_                                           \
			? 1                                                    \
			: (check_fail(__FILE__, __LINE__, "%s == %s (%lld != %lld)", \
				      #a, #b, check_a_, check_b_),             \
			   0);                                                 \
	})

/* Return codes, named. */
#define CHECK_RC(rc, want)                                                     \
	__extension__({                                                        \
		int check_r_ = (rc), check_w_ = (want);                        \
		check_r_ == check_w_                                           \
			? 1                                                    \
			: (check_fail(__FILE__, __LINE__, "%s: got %s (%d), want %s (%d)", \
				      #rc, wf_err_name(check_r_), check_r_,    \
				      wf_err_name(check_w_), check_w_),        \
			   0);                                                 \
	})

/* true once a check failed: long loops stop early rather than repeat a
 * failure that may cost a timeout each time. */
__attribute__((unused)) static bool check_any_failed(void)
{
	return __atomic_load_n(&check_failures, __ATOMIC_RELAXED) != 0;
}

__attribute__((unused)) static void check_none_failed(void)
{
	pthread_mutex_lock(&check_mu);
	int n = __atomic_load_n(&check_failures, __ATOMIC_RELAXED);
	pthread_mutex_unlock(&check_mu);
	cr_assert_eq(n, 0, "%d check(s) failed; first: %s", n, check_first);
}

/* In the ASan build: nothing the program allocated is unreachable now.
 * (LeakSanitizer's own check at exit comes after Criterion has recorded
 * the test's result, so it could not fail the test.) */
__attribute__((unused)) static void check_no_leaks(void)
{
#if defined(WF_ASAN)
	cr_assert_eq(__lsan_do_recoverable_leak_check(), 0,
		     "LeakSanitizer found leaks (report above)");
#endif
}

/* Runs main_fn as the main task of a runtime with `workers` workers and
 * hooks (NULL: none), and returns its result; the run itself must
 * succeed. */
__attribute__((unused)) static void *run_weft_hooks(unsigned workers, const wf_hooks *hooks,
						    wf_fn main_fn, void *arg)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = workers;
	cfg.hooks = hooks;
	void *res = NULL;
	int rc = wf_run(&cfg, main_fn, arg, &res);
	cr_assert_eq(rc, 0, "wf_run: %s (%d)", wf_err_name(rc), rc);
	check_none_failed();
	check_no_leaks();
	return res;
}

/* run_weft_hooks without hooks. */
__attribute__((unused)) static void *run_weft(unsigned workers, wf_fn main_fn, void *arg)
{
	return run_weft_hooks(workers, NULL, main_fn, arg);
}

/* n scaled by WEFT_TEST_SCALE (a percentage, default 100; never below 1).
 * For the iteration counts of stress loops only: scripts/test's aarch64
 * stage runs the suites under qemu, several times slower than the host,
 * and sets it lower so that the stage fits CI's time budget; the loops
 * still run the same paths, only fewer times. Above 100 it runs them
 * longer, for a soak by hand. */
__attribute__((unused)) static inline long test_iters(long n)
{
	const char *s = getenv("WEFT_TEST_SCALE");
	long pct = s != NULL && *s != '\0' ? strtol(s, NULL, 10) : 100;
	if (pct <= 0 || pct == 100)
		return n;
	long r = n * pct / 100;
	return r > 0 ? r : 1;
}

/* test_iters(n), but never below min (nor above n when n < min): for
 * loops whose iterations take turns at variants (it % k) or need a few
 * rounds to reach every path, so that a low WEFT_TEST_SCALE still runs
 * each variant. */
__attribute__((unused)) static inline long test_iters_min(long n, long min)
{
	long r = test_iters(n);
	if (min > n)
		min = n;
	return r < min ? min : r;
}

__attribute__((unused)) static uint64_t mono_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A small xorshift generator for racy delays. */
__attribute__((unused)) static uint32_t rng_next(uint64_t *s)
{
	uint64_t x = *s;
	x ^= x << 13;
	x ^= x >> 7;
	x ^= x << 17;
	*s = x;
	return (uint32_t)(x >> 32);
}

/* A busy delay of about n loop iterations: it neither sleeps nor yields,
 * so the racing side lands at a random point of the other's progress. */
__attribute__((unused)) static void spin(unsigned n)
{
	for (volatile unsigned i = 0; i < n; i++)
		__asm__ __volatile__("" ::: "memory");
}

/* Redirects fd 2 to a temporary file until stderr_capture_end, which
 * returns what was written (malloc'd; the caller frees) and restores it. */
typedef struct stderr_capture {
	int saved;
	FILE *file;
} stderr_capture;

__attribute__((unused)) static void stderr_capture_begin(stderr_capture *c)
{
	fflush(stderr);
	c->file = tmpfile();
	cr_assert_not_null(c->file);
	c->saved = dup(2);
	cr_assert_geq(c->saved, 0);
	cr_assert_geq(dup2(fileno(c->file), 2), 0);
}

__attribute__((unused)) static char *stderr_capture_end(stderr_capture *c)
{
	fflush(stderr);
	dup2(c->saved, 2);
	close(c->saved);
	int fd = fileno(c->file);
	off_t n = lseek(fd, 0, SEEK_END);
	if (n < 0)
		n = 0;
	char *s = calloc(1, (size_t)n + 1);
	cr_assert_not_null(s);
	ssize_t got = pread(fd, s, (size_t)n, 0);
	s[got > 0 ? got : 0] = '\0';
	fclose(c->file);
	return s;
}

/* A log function for wf_set_log that keeps every line (in logbuf, up to
 * 64 KiB), and a search in what it kept. */
__attribute__((unused)) static pthread_mutex_t log_mu = PTHREAD_MUTEX_INITIALIZER;
__attribute__((unused)) static char logbuf[65536];
__attribute__((unused)) static size_t loglen;

__attribute__((unused)) static void keep_log(int level, const char *msg, void *arg)
{
	(void)level;
	(void)arg;
	pthread_mutex_lock(&log_mu);
	int k = snprintf(logbuf + loglen, sizeof(logbuf) - loglen, "%s\n", msg);
	if (k > 0 && loglen + (size_t)k < sizeof(logbuf))
		loglen += (size_t)k;
	pthread_mutex_unlock(&log_mu);
}

__attribute__((unused)) static bool log_has(const char *part)
{
	pthread_mutex_lock(&log_mu);
	bool has = strstr(logbuf, part) != NULL;
	pthread_mutex_unlock(&log_mu);
	return has;
}

#endif
