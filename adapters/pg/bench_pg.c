/*
 * SELECT 1 through weft/pg.h: TASKS tasks on WORKERS workers, each with a
 * connection of its own, query back to back for T seconds; prints the
 * total rate.
 *
 *   bench_pg CONNINFO [SECONDS [TASKS [WORKERS]]]     (10 20 2)
 *
 * pgbench's counterpart: a file select1.sql holding "SELECT 1;" and
 *   pgbench -n -c 20 -j 2 -T 10 -f select1.sql CONNINFO
 * (-M extended, as wf_pg_query uses the extended protocol).
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <weft.h>
#include <weft/pg.h>

typedef struct bench {
	const char *conninfo;
	unsigned seconds, tasks;
	uint64_t deadline_ns;
	uint64_t ops;
	int failed;
	wf_barrier *ready; /* the clients and main: the clock starts after */
} bench;

static uint64_t now_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *client(void *arg)
{
	bench *b = arg;
	wf_pg *c = NULL;
	char *msg = NULL;
	int rc = wf_pg_connect(b->conninfo, 10000, &c, &msg);
	if (rc != 0) {
		fprintf(stderr, "bench_pg: connect: %s: %s\n", wf_err_name(rc), msg);
		free(msg);
		__atomic_store_n(&b->failed, 1, __ATOMIC_RELAXED);
		wf_barrier_abort(b->ready);
		return NULL;
	}
	if (wf_barrier_wait(b->ready, WF_FOREVER) < 0) {
		wf_pg_close(c);
		return NULL;
	}
	uint64_t n = 0;
	while (now_ns() < __atomic_load_n(&b->deadline_ns, __ATOMIC_RELAXED)) {
		PGresult *r;
		rc = wf_pg_query(c, "SELECT 1", 0, NULL, 10000, &r);
		if (rc != 0) {
			fprintf(stderr, "bench_pg: %s: %s\n", wf_err_name(rc), wf_pg_errmsg(c));
			__atomic_store_n(&b->failed, 1, __ATOMIC_RELAXED);
			break;
		}
		PQclear(r);
		n++;
	}
	__atomic_fetch_add(&b->ops, n, __ATOMIC_RELAXED);
	wf_pg_close(c);
	return NULL;
}

static void *main_task(void *arg)
{
	bench *b = arg;
	wf_task **t = calloc(b->tasks, sizeof(*t));
	if (t == NULL || wf_barrier_new(b->tasks + 1, &b->ready) != 0)
		return wf_fail(WF_ENOMEM, NULL);
	/* Every client connects first; the clock starts once all have. */
	__atomic_store_n(&b->deadline_ns, UINT64_MAX, __ATOMIC_RELAXED);
	for (unsigned i = 0; i < b->tasks; i++)
		t[i] = wf_spawn(client, b);
	wf_barrier_wait(b->ready, WF_FOREVER);
	uint64_t t0 = now_ns();
	__atomic_store_n(&b->deadline_ns, t0 + (uint64_t)b->seconds * 1000000000u,
			 __ATOMIC_RELAXED);
	for (unsigned i = 0; i < b->tasks; i++)
		wf_join(t[i], NULL);
	double secs = (double)(now_ns() - t0) / 1e9;
	free(t);
	wf_barrier_free(b->ready);
	printf("pg_select1 ops_per_s=%.0f\n", (double)b->ops / secs);
	printf("# %llu queries in %.2f s, %u tasks\n", (unsigned long long)b->ops, secs, b->tasks);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s CONNINFO [SECONDS [TASKS [WORKERS]]]\n", argv[0]);
		return 2;
	}
	bench b = {.conninfo = argv[1], .seconds = 10, .tasks = 20};
	if (argc > 2)
		b.seconds = (unsigned)atoi(argv[2]);
	if (argc > 3)
		b.tasks = (unsigned)atoi(argv[3]);
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = argc > 4 ? (unsigned)atoi(argv[4]) : 2;
	int rc = wf_run(&cfg, main_task, &b, NULL);
	return rc == 0 && !b.failed ? 0 : 1;
}
