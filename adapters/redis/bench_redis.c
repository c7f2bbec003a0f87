/*
 * bench_redis <port> [gets] [host]: GETs of one key from 50 tasks on 2
 * workers, each task on a connection of its own (as redis-benchmark's 50
 * clients are), against a running server; prints
 * "redis_get ops_per_s=<n>". Compare with
 *   redis-benchmark -t get -c 50 -n 100000 -q -p <port>
 * run against the same server in the same minute.
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <weft.h>
#include <weft/redis.h>

#define TASKS 50

static const char *host = "127.0.0.1";
static unsigned port;
static long per_task;

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *getter(void *arg)
{
	wf_redis *c = arg;
	for (long i = 0; i < per_task; i++) {
		redisReply *r;
		int rc = wf_redis_command(c, &r, 5000, "GET key:__rand_int__");
		if (rc != 0)
			return wf_fail(rc, "GET");
		wf_redis_reply_free(r);
	}
	return NULL;
}

static void *main_task(void *arg)
{
	wf_redis *conns[TASKS];
	for (int i = 0; i < TASKS; i++) {
		int rc = wf_redis_connect(host, port, 5000, &conns[i]);
		if (rc != 0)
			return wf_fail(rc, "connect");
	}
	redisReply *r;
	if (wf_redis_command(conns[0], &r, 5000, "SET key:__rand_int__ xxx") == 0)
		wf_redis_reply_free(r);
	wf_task *t[TASKS];
	double t0 = now_s();
	for (int i = 0; i < TASKS; i++)
		t[i] = wf_spawn(getter, conns[i]);
	int bad = 0;
	for (int i = 0; i < TASKS; i++)
		bad += t[i] == NULL || wf_join(t[i], NULL) != 0;
	double dt = now_s() - t0;
	for (int i = 0; i < TASKS; i++)
		wf_redis_close(conns[i]);
	if (bad)
		return wf_fail(WF_EIO, "some GETs failed");
	printf("redis_get ops_per_s=%.0f\n", (double)(per_task * TASKS) / dt);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: %s <port> [gets (100000)] [host (127.0.0.1)]\n", argv[0]);
		return 2;
	}
	port = (unsigned)strtoul(argv[1], NULL, 10);
	long n = argc > 2 ? strtol(argv[2], NULL, 10) : 100000;
	if (argc > 3)
		host = argv[3];
	per_task = n / TASKS > 0 ? n / TASKS : 1;
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 2;
	char *msg = NULL;
	int rc = wf_run_ex(&cfg, main_task, NULL, NULL, &msg);
	if (rc != 0)
		fprintf(stderr, "bench_redis: %s: %s\n", msg ? msg : "", wf_strerror(rc));
	free(msg);
	return rc == 0 ? 0 : 1;
}
