/*
 * The runner of the Criterion stand-in (see criterion/criterion.h): runs
 * every registered Test() in a child process of its own, in suite and
 * name order, and reports like Criterion.
 *
 * A test passes when its process exits with status 0 (or dies of the
 * .signal, or exits with the .exit_code, its options ask for). A failed
 * fatal check exits with status 1 at once; failed non-fatal checks make
 * the process exit with 1 when the test returns; cr_skip_test exits with
 * SKIP_STATUS. Anything else fails the test: another status (66 is
 * ThreadSanitizer's, after a report), a signal, or the time limit (SIGALRM
 * from the child's own alarm).
 *
 * Command line (Criterion's, the part ctest and developers use):
 *   --filter=<glob>  only tests whose "suite/name" matches
 *   --timeout=<s>    default per-test limit in seconds (0: none)
 *   --verbose        print passing tests too
 *   --list, -l       list the tests and exit
 *   --jobs=<n>, -j<n>  accepted; tests run one at a time
 */
#include <errno.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "criterion/criterion.h"

#define SKIP_STATUS 77

static struct crs_test *tests;
static size_t ntests;
static int expect_failed; /* atomic: a non-fatal check failed */

void crs_register(struct crs_test *t)
{
	t->next = tests;
	tests = t;
	ntests++;
}

static void vreport(const char *file, int line, const char *what, const char *dflt,
		    const char *fmt, va_list ap)
{
	char msg[2048];
	if (fmt != NULL && fmt[0] != '\0')
		vsnprintf(msg, sizeof(msg), fmt, ap);
	else
		snprintf(msg, sizeof(msg), "%s", dflt);
	/* One write, so that reports from several threads do not mix. */
	char out[2300];
	int n = snprintf(out, sizeof(out), "[----] %s:%d: %s\n[----]   %s\n", file, line, what, msg);
	if (n > 0)
		(void)!write(2, out, (size_t)n < sizeof(out) ? (size_t)n : sizeof(out) - 1);
}

void crs_fail(int fatal, const char *file, int line, const char *dflt, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vreport(file, line, fatal ? "Assertion Failed" : "Expectation Failed", dflt, fmt, ap);
	va_end(ap);
	if (fatal) {
		fflush(NULL);
		_exit(1);
	}
	__atomic_store_n(&expect_failed, 1, __ATOMIC_RELAXED);
}

void crs_skip(const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "[----] skipped: %s\n", msg);
	fflush(NULL);
	_exit(SKIP_STATUS);
}

void crs_log(const char *level, const char *fmt, ...)
{
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	fprintf(stderr, "[%s] %s\n", level, msg);
}

/* ---- running ------------------------------------------------------------ */

static int cmp_tests(const void *a, const void *b)
{
	const struct crs_test *x = *(struct crs_test *const *)a, *y = *(struct crs_test *const *)b;
	int c = strcmp(x->suite, y->suite);
	return c != 0 ? c : strcmp(x->name, y->name);
}

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void run_in_child(const struct crs_test *t, double timeout)
{
	if (timeout > 0)
		alarm((unsigned)(timeout + 0.999));
	if (t->init != NULL)
		t->init();
	t->fn();
	if (t->fini != NULL)
		t->fini();
	fflush(NULL);
	_exit(__atomic_load_n(&expect_failed, __ATOMIC_RELAXED) ? 1 : 0);
}

enum outcome { PASSED, FAILED, CRASHED, SKIPPED };

static enum outcome judge(const struct crs_test *t, int status, char *why, size_t len)
{
	why[0] = '\0';
	if (WIFSIGNALED(status)) {
		int sig = WTERMSIG(status);
		if (t->signal != 0 && sig == t->signal)
			return PASSED;
		if (sig == SIGALRM) {
			snprintf(why, len, "timed out");
			return FAILED;
		}
		snprintf(why, len, "CRASH! (signal %d, %s)", sig, strsignal(sig));
		return CRASHED;
	}
	int code = WEXITSTATUS(status);
	if (t->signal != 0) {
		snprintf(why, len, "exited with %d instead of dying of signal %d", code, t->signal);
		return FAILED;
	}
	if (code == t->exit_code)
		return PASSED;
	if (code == SKIP_STATUS && t->exit_code == 0)
		return SKIPPED;
	snprintf(why, len, "exited with status %d%s", code,
		 code == 66 ? " (a ThreadSanitizer report)" : "");
	return FAILED;
}

int main(int argc, char **argv)
{
	const char *filter = NULL;
	double default_timeout = 0;
	int verbose = 0, list = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = strchr(a, '=');
		if (strncmp(a, "--filter", 8) == 0)
			filter = v != NULL ? v + 1 : (i + 1 < argc ? argv[++i] : NULL);
		else if (strncmp(a, "--timeout", 9) == 0)
			default_timeout = atof(v != NULL ? v + 1 : (i + 1 < argc ? argv[++i] : "0"));
		else if (strncmp(a, "--verbose", 9) == 0)
			verbose = 1;
		else if (strcmp(a, "--list") == 0 || strcmp(a, "-l") == 0)
			list = 1;
		else if (strcmp(a, "--jobs") == 0)
			i++; /* its value */
		else if (strncmp(a, "--jobs=", 7) == 0 || strncmp(a, "-j", 2) == 0)
			;
		else
			fprintf(stderr, "[----] ignoring option %s\n", a);
	}

	struct crs_test **all = calloc(ntests ? ntests : 1, sizeof(*all));
	if (all == NULL)
		return 2;
	size_t n = 0;
	for (struct crs_test *t = tests; t != NULL; t = t->next)
		all[n++] = t;
	qsort(all, n, sizeof(*all), cmp_tests);

	if (list) {
		for (size_t i = 0; i < n; i++)
			printf("%s: %s\n", all[i]->suite, all[i]->name);
		return 0;
	}

	fprintf(stderr, "[----] Criterion stand-in for the TSan build\n");
	size_t tested = 0, passed = 0, failed = 0, crashed = 0, skipped = 0;
	for (size_t i = 0; i < n; i++) {
		const struct crs_test *t = all[i];
		char id[512];
		snprintf(id, sizeof(id), "%s/%s", t->suite, t->name);
		if (filter != NULL && fnmatch(filter, id, 0) != 0)
			continue;
		if (t->disabled) {
			fprintf(stderr, "[SKIP] %s::%s: disabled\n", t->suite, t->name);
			skipped++;
			continue;
		}
		double timeout = t->timeout > 0 ? t->timeout : default_timeout;
		fflush(NULL);
		double t0 = now_s();
		pid_t pid = fork();
		if (pid < 0) {
			perror("fork");
			return 2;
		}
		if (pid == 0)
			run_in_child(t, timeout);
		int status;
		while (waitpid(pid, &status, 0) < 0)
			if (errno != EINTR) {
				perror("waitpid");
				return 2;
			}
		double dt = now_s() - t0;
		char why[256];
		tested++;
		switch (judge(t, status, why, sizeof(why))) {
		case PASSED:
			passed++;
			if (verbose)
				fprintf(stderr, "[PASS] %s::%s: (%.2fs)\n", t->suite, t->name, dt);
			break;
		case SKIPPED:
			tested--;
			skipped++;
			fprintf(stderr, "[SKIP] %s::%s\n", t->suite, t->name);
			break;
		case CRASHED:
			crashed++;
			/* fall through */
		case FAILED:
			failed++;
			fprintf(stderr, "[FAIL] %s::%s: %s (%.2fs)\n", t->suite, t->name, why, dt);
			break;
		}
	}
	fprintf(stderr,
		"[====] Synthesis: Tested: %zu | Passing: %zu | Failing: %zu | Crashing: %zu | "
		"Skipped: %zu\n",
		tested, passed, failed, crashed, skipped);
	free(all);
	return failed != 0;
}
