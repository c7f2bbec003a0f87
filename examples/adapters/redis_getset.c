/*
 * SET and GET against a Redis server from weft tasks (the Redis adapter,
 * adapters/redis): ten tasks each write a key and read it back over a
 * connection of their own, while their workers stay free for other work.
 *
 *   redis_getset [host [port]]     (default 127.0.0.1 6379)
 *
 * Exits 0 when every value came back, 1 otherwise (no server: the
 * connection error is printed).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft.h>
#include <weft/redis.h>

#define TASKS 10
#define TIMEOUT_MS 2000

static const char *host = "127.0.0.1";
static unsigned port = 6379;

static void *getset(void *arg)
{
	int id = (int)(intptr_t)arg;
	wf_redis *c;
	int rc = wf_redis_connect(host, port, TIMEOUT_MS, &c);
	if (rc != 0)
		return wf_fail(rc, "connect");
	char key[32], val[32];
	snprintf(key, sizeof(key), "weft:example:%d", id);
	snprintf(val, sizeof(val), "value %d", id);

	redisReply *r;
	rc = wf_redis_command(c, &r, TIMEOUT_MS, "SET %s %s", key, val);
	if (rc == 0) {
		wf_redis_reply_free(r);
		rc = wf_redis_command(c, &r, TIMEOUT_MS, "GET %s", key);
	}
	if (rc != 0) {
		wf_redis_close(c);
		return wf_fail(rc, "SET/GET");
	}
	int same = r->type == REDIS_REPLY_STRING && strcmp(r->str, val) == 0;
	printf("task %d on worker %d: %s = \"%s\"\n", id, wf_worker_id(), key,
	       r->type == REDIS_REPLY_STRING ? r->str : "(not a string)");
	wf_redis_reply_free(r);
	wf_redis_close(c);
	return same ? NULL : wf_fail(WF_EIO, "the value read differs");
}

static void *main_task(void *arg)
{
	wf_task *t[TASKS];
	for (int i = 0; i < TASKS; i++)
		t[i] = wf_spawn(getset, (void *)(intptr_t)i);
	int bad = 0;
	for (int i = 0; i < TASKS; i++) {
		char *msg = NULL;
		int rc = t[i] != NULL ? wf_join_ex(t[i], NULL, &msg) : WF_ENOMEM;
		if (rc != 0) {
			fprintf(stderr, "task %d: %s: %s\n", i, msg ? msg : "", wf_strerror(rc));
			bad++;
		}
		free(msg);
	}
	return bad ? wf_fail(WF_EIO, "some tasks failed") : NULL;
}

int main(int argc, char **argv)
{
	if (argc > 1)
		host = argv[1];
	if (argc > 2)
		port = (unsigned)strtoul(argv[2], NULL, 10);
	int rc = wf_run(NULL, main_task, NULL, NULL);
	printf("%s\n", rc == 0 ? "all values read back" : "some values were not read back");
	return rc == 0 ? 0 : 1;
}
