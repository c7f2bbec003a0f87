/*
 * weft-bench: runs the workloads of the benchmark spec on weft, with the
 * same command line and output as the peer programs (Tokio, Go, ...):
 *
 *   weft-bench <workload|all> [threads] [n]
 *   weft-bench list
 *   weft-bench http_hello THREADS PORT
 *
 * threads: worker threads of the runtime (0 or absent: all cores);
 * n: the workload's N (absent: its default). One RESULT line per workload
 * on stdout and nothing else there; exit 1 if a check is wrong or a run
 * fails, 2 on a bad command line (usage on stderr). `list` prints the name
 * of every workload, one per line. `http_hello` is a server for a load
 * generator (wrk), not a workload: it runs until killed and prints no
 * RESULT line, as the peers' http_hello does.
 *
 * Each workload gets a fresh runtime (wf_run), so that no run inherits the
 * stacks, caches or resident memory of the one before; the clock runs
 * inside the root task, so runtime start-up and shutdown are not timed.
 */
#include <errno.h>
#include <inttypes.h>
#include <sched.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"

#define MAX_BENCHES 64
#define MAX_THREADS 1024

/* Workloads are listed and run in the spec's order; any others after them,
 * by name. Constructors register in link order, which says nothing. */
static const char *const spec_order[] = {
	"fib",         "spawn_many",    "yield_many", "ping_pong",   "chained_spawn",
	"queue_mpmc",  "blocking_pool", "echo_rr",    "idle_tasks",  "gather_many",
	"lock_contended", "switch",     "spawn_process",
};

static const wf_bench *registry[MAX_BENCHES];
static size_t n_benches;
static int registry_overflow;

void wf_bench_register(const wf_bench *b)
{
	if (n_benches == MAX_BENCHES) {
		registry_overflow = 1;
		return;
	}
	registry[n_benches++] = b;
}

uint64_t wf_bench_now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void wf_bench_clock_start(wf_bench_run *run)
{
	run->t0_ns = wf_bench_now_ns();
}

void wf_bench_clock_stop(wf_bench_run *run)
{
	run->t1_ns = wf_bench_now_ns();
}

void wf_bench_extra(wf_bench_run *run, const char *fmt, ...)
{
	size_t len = strlen(run->extra);
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(run->extra + len, sizeof(run->extra) - len, fmt, ap);
	va_end(ap);
}

int64_t wf_bench_rss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return -errno;
	char line[256];
	int64_t kib = WF_EIO;
	while (fgets(line, sizeof(line), f) != NULL) {
		long long v;
		if (sscanf(line, "VmRSS: %lld", &v) == 1) {
			kib = v;
			break;
		}
	}
	fclose(f);
	return kib;
}

uint64_t wf_bench_fib_serial(uint64_t n)
{
	uint64_t a = 0, b = 1;
	for (uint64_t i = 0; i < n; i++) {
		uint64_t t = a + b;
		a = b;
		b = t;
	}
	return a;
}

static size_t spec_rank(const char *name)
{
	size_t n = sizeof(spec_order) / sizeof(spec_order[0]);
	for (size_t i = 0; i < n; i++)
		if (strcmp(spec_order[i], name) == 0)
			return i;
	return n;
}

static int bench_cmp(const void *a, const void *b)
{
	const wf_bench *x = *(const wf_bench *const *)a;
	const wf_bench *y = *(const wf_bench *const *)b;
	size_t rx = spec_rank(x->name), ry = spec_rank(y->name);
	if (rx != ry)
		return rx < ry ? -1 : 1;
	return strcmp(x->name, y->name);
}

/* Sorts the registry; false (with a message) if it is not usable. */
static bool registry_check(void)
{
	if (registry_overflow) {
		fprintf(stderr, "weft-bench: more than %d workloads registered\n", MAX_BENCHES);
		return false;
	}
	qsort(registry, n_benches, sizeof(registry[0]), bench_cmp);
	for (size_t i = 0; i < n_benches; i++) {
		const wf_bench *b = registry[i];
		if (b->name == NULL || b->fn == NULL || strcmp(b->name, "all") == 0 ||
		    strcmp(b->name, "list") == 0) {
			fprintf(stderr, "weft-bench: bad workload record \"%s\"\n",
				b->name ? b->name : "(null)");
			return false;
		}
		if (i > 0 && strcmp(registry[i - 1]->name, b->name) == 0) {
			fprintf(stderr, "weft-bench: workload \"%s\" registered twice\n", b->name);
			return false;
		}
	}
	return true;
}

static void usage(FILE *to, const char *argv0)
{
	fprintf(to, "usage: %s <workload|all> [threads] [n]\n", argv0);
	fprintf(to, "       %s list\n", argv0);
	fprintf(to, "       %s http_hello THREADS PORT\n", argv0);
	fprintf(to, "  threads: worker threads of the runtime (0 or absent: all cores)\n");
	fprintf(to, "  n:       the workload's N (absent: its default)\n");
	fprintf(to, "workloads:");
	for (size_t i = 0; i < n_benches; i++)
		fprintf(to, " %s", registry[i]->name);
	fprintf(to, "\n");
}

/* Decimal digits only (no sign, no blanks), within uint64_t. */
static bool parse_u64(const char *s, uint64_t *out)
{
	if (*s < '0' || *s > '9')
		return false;
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = v;
	return true;
}

/* The CPUs this process may run on, as Tokio's available_parallelism and
 * Go's NumCPU count them. */
static unsigned cores(void)
{
	cpu_set_t set;
	if (sched_getaffinity(0, sizeof(set), &set) == 0 && CPU_COUNT(&set) > 0)
		return (unsigned)CPU_COUNT(&set);
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	return n > 0 ? (unsigned)n : 1;
}

static void *bench_root(void *arg)
{
	wf_bench_run *run = arg;
	run->t1_ns = 0;
	run->t0_ns = wf_bench_now_ns();
	int err = run->bench->fn(run);
	if (run->t1_ns == 0)
		run->t1_ns = wf_bench_now_ns();
	if (err < 0)
		return wf_fail(err, "workload could not run");
	return NULL;
}

/* Runs b once and prints its line; false if the run failed or its check
 * is wrong. */
static bool run_bench(const wf_bench *b, unsigned threads, uint64_t n)
{
	wf_bench_run run = {
		.bench = b,
		.threads = b->threads ? b->threads : threads,
		.n = n,
	};
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = run.threads;
	int err = wf_run(&cfg, bench_root, &run, NULL);
	if (err < 0) {
		fprintf(stderr, "weft-bench: %s: %s (%s)\n", b->name, wf_strerror(err),
			wf_err_name(err));
		return false;
	}
	double wall_s = (double)(run.t1_ns - run.t0_ns) / 1e9;
	if (wall_s <= 0)
		wall_s = 1e-9;
	uint64_t ops = b->ops ? b->ops(n) : n;
	printf("RESULT workload=%s threads=%u n=%" PRIu64 " wall_s=%.6f ops_per_s=%.0f "
	       "check=%" PRIu64 "%s\n",
	       b->name, run.threads, n, wall_s, (double)ops / wall_s, run.check, run.extra);
	fflush(stdout);
	uint64_t want = b->expected ? b->expected(n) : n;
	if (run.check != want) {
		fprintf(stderr, "CHECK FAILED: workload=%s check=%" PRIu64 " expected=%" PRIu64 "\n",
			b->name, run.check, want);
		return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	const char *argv0 = argc > 0 ? argv[0] : "weft-bench";
	if (!registry_check())
		return 1;
	if (argc < 2 || argc > 4) {
		usage(stderr, argv0);
		return 2;
	}
	const char *which = argv[1];
	if (strcmp(which, "-h") == 0 || strcmp(which, "--help") == 0) {
		usage(stdout, argv0);
		return 0;
	}
	if (strcmp(which, "list") == 0) {
		if (argc != 2) {
			usage(stderr, argv0);
			return 2;
		}
		for (size_t i = 0; i < n_benches; i++)
			printf("%s\n", registry[i]->name);
		return 0;
	}

	if (strcmp(which, "http_hello") == 0) {
		uint64_t t, port;
		if (argc != 4 || !parse_u64(argv[2], &t) || t > MAX_THREADS ||
		    !parse_u64(argv[3], &port) || port < 1 || port > 65535) {
			usage(stderr, argv0);
			return 2;
		}
		return wf_bench_http_hello(t > 0 ? (unsigned)t : cores(), (unsigned)port);
	}

	unsigned threads = cores();
	if (argc > 2) {
		uint64_t t;
		if (!parse_u64(argv[2], &t) || t > MAX_THREADS) {
			fprintf(stderr, "bad threads: %s\n", argv[2]);
			usage(stderr, argv0);
			return 2;
		}
		if (t > 0)
			threads = (unsigned)t;
	}
	bool have_n = false;
	uint64_t n_arg = 0;
	if (argc > 3) {
		if (!parse_u64(argv[3], &n_arg)) {
			fprintf(stderr, "bad n: %s\n", argv[3]);
			usage(stderr, argv0);
			return 2;
		}
		have_n = true;
	}

	bool all = strcmp(which, "all") == 0, ran = false, ok = true;
	for (size_t i = 0; i < n_benches; i++) {
		const wf_bench *b = registry[i];
		if (!all && strcmp(which, b->name) != 0)
			continue;
		ran = true;
		if (!run_bench(b, threads, have_n ? n_arg : b->default_n))
			ok = false;
	}
	if (!ran) {
		fprintf(stderr, "unknown workload: %s\n", which);
		usage(stderr, argv0);
		return 2;
	}
	return ok ? 0 : 1;
}
