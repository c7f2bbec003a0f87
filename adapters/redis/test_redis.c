/*
 * The Redis adapter against a real server: each test starts a
 * redis-server of its own on a free loopback port (no persistence, in a
 * temporary directory), waits until it answers PING, and kills it at the
 * end. Without redis-server (Debian: redis-server), or when it cannot
 * start, every test is skipped with the reason: never passed.
 *
 * Tasks use the CHECK* macros of test/rt_check.h (Criterion's asserts
 * must not run on a worker).
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "rt_check.h"
#include "weft/redis.h"

/* ms: a call that should answer at once, with room for a loaded machine
 * and the sanitizers (which bound nothing here: the timing checks have
 * their own numbers). */
#define T 10000

static pid_t server_pid = -1;
static unsigned server_port;
static char server_dir[64];

static bool on_path(const char *prog)
{
	const char *path = getenv("PATH");
	if (path == NULL)
		path = "/usr/local/bin:/usr/bin:/bin";
	char buf[4096];
	for (const char *p = path; *p != '\0';) {
		const char *e = strchr(p, ':');
		size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
		snprintf(buf, sizeof(buf), "%.*s/%s", (int)n, p, prog);
		if (access(buf, X_OK) == 0)
			return true;
		p += n + (e != NULL);
	}
	return false;
}

/* A loopback port nothing listens on now. */
static unsigned free_port(void)
{
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	unsigned port = 0;
	if (fd >= 0 && bind(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	if (fd >= 0)
		close(fd);
	return port;
}

/* true once a plain blocking client gets +PONG from the server. */
static bool server_answers(unsigned port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct timeval tv = {.tv_sec = 1};
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	char buf[16] = {0};
	bool ok = connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0 &&
		  write(fd, "PING\r\n", 6) == 6 && read(fd, buf, sizeof(buf) - 1) >= 5 &&
		  strncmp(buf, "+PONG", 5) == 0;
	close(fd);
	return ok;
}

/* Starts redis-server on server_port; false (with why) if it does not
 * answer within 3 s. */
static bool server_spawn(char *why, size_t cap)
{
	pid_t parent = getpid();
	pid_t pid = fork();
	if (pid < 0) {
		snprintf(why, cap, "fork: %s", strerror(errno));
		return false;
	}
	if (pid == 0) {
		/* Never outlive the test, whatever becomes of it. */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(1);
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		char port[16];
		snprintf(port, sizeof(port), "%u", server_port);
		execlp("redis-server", "redis-server", "--port", port, "--bind", "127.0.0.1",
		       "--save", "", "--appendonly", "no", "--daemonize", "no", "--dir",
		       server_dir, (char *)NULL);
		_exit(127);
	}
	server_pid = pid;
	for (int i = 0; i < 300; i++) {
		if (server_answers(server_port))
			return true;
		int st;
		if (waitpid(pid, &st, WNOHANG) == pid) {
			server_pid = -1;
			snprintf(why, cap, "redis-server exited at start (status %d)", st);
			return false;
		}
		usleep(10000);
	}
	snprintf(why, cap, "redis-server did not answer on port %u within 3 s", server_port);
	return false;
}

static void server_kill(void)
{
	if (server_pid <= 0)
		return;
	kill(server_pid, SIGKILL);
	waitpid(server_pid, NULL, 0);
	server_pid = -1;
}

static void teardown(void)
{
	server_kill();
	if (server_dir[0] != '\0')
		rmdir(server_dir);
}

/* Every test begins here: a server of its own, or a skip that says why. */
static void start_or_skip(void)
{
	if (!on_path("redis-server"))
		cr_skip_test("redis-server is not installed (Debian: redis-server): nothing to test "
			     "the Redis adapter against");
	snprintf(server_dir, sizeof(server_dir), "/tmp/weft-redis-XXXXXX");
	if (mkdtemp(server_dir) == NULL)
		cr_skip_test("mkdtemp: %s", strerror(errno));
	server_port = free_port();
	char why[160];
	if (server_port == 0 || !server_spawn(why, sizeof(why)))
		cr_skip_test("redis-server cannot start: %s", server_port ? why : "no free port");
}

static uint64_t ms_since(uint64_t t0) { return (mono_ns() - t0) / 1000000u; }

TestSuite(redis, .fini = teardown, .timeout = 30);

/* ------------------------------------------------------------------------
 * SET / GET and reply types
 * ---------------------------------------------------------------------- */

static bool is_str(const redisReply *r, const char *s)
{
	return r != NULL && r->type == REDIS_REPLY_STRING && r->len == strlen(s) &&
	       memcmp(r->str, s, r->len) == 0;
}

static bool is_status(const redisReply *r, const char *s)
{
	return r != NULL && r->type == REDIS_REPLY_STATUS && strcmp(r->str, s) == 0;
}

static void *t_set_get(void *arg)
{
	wf_redis *c = NULL;
	if (!CHECK_RC(wf_redis_connect("127.0.0.1", server_port, T, &c), 0))
		return NULL;
	redisReply *r;
	CHECK_RC(wf_redis_command(c, &r, T, "SET %s %s", "greeting", "hello"), 0);
	CHECK(is_status(r, "OK"));
	wf_redis_reply_free(r);
	CHECK_RC(wf_redis_command(c, &r, T, "GET %s", "greeting"), 0);
	CHECK(is_str(r, "hello"));
	wf_redis_reply_free(r);

	/* Binary-safe values. */
	const char bin[] = {'a', 0, 'b', '\r', '\n', (char)0xff};
	CHECK_RC(wf_redis_command(c, &r, T, "SET bin %b", bin, sizeof(bin)), 0);
	wf_redis_reply_free(r);
	CHECK_RC(wf_redis_command(c, &r, T, "GET bin"), 0);
	CHECK(r != NULL && r->type == REDIS_REPLY_STRING && r->len == sizeof(bin) &&
	      memcmp(r->str, bin, sizeof(bin)) == 0);
	wf_redis_reply_free(r);

	/* Nil, integers, arrays, an error reply (a success of the call). */
	CHECK_RC(wf_redis_command(c, &r, T, "GET no-such-key"), 0);
	CHECK(r != NULL && r->type == REDIS_REPLY_NIL);
	wf_redis_reply_free(r);
	for (int i = 1; i <= 3; i++) {
		CHECK_RC(wf_redis_command(c, &r, T, "INCR counter"), 0);
		CHECK(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == i);
		wf_redis_reply_free(r);
	}
	CHECK_RC(wf_redis_command(c, &r, T, "MGET greeting no-such-key"), 0);
	CHECK(r != NULL && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
	      is_str(r->element[0], "hello") && r->element[1]->type == REDIS_REPLY_NIL);
	wf_redis_reply_free(r);
	CHECK_RC(wf_redis_command(c, &r, T, "NO-SUCH-COMMAND x"), 0);
	CHECK(r != NULL && r->type == REDIS_REPLY_ERROR);
	wf_redis_reply_free(r);
	CHECK(!wf_redis_broken(c));

	/* An argument vector, and a value of 1 MiB (many reads, many
	 * writes). */
	size_t big = 1 << 20;
	char *v = malloc(big);
	for (size_t i = 0; i < big; i++)
		v[i] = (char)(i * 31 + 7);
	const char *argv[] = {"SET", "big", v};
	const size_t lens[] = {3, 3, big};
	CHECK_RC(wf_redis_command_argv(c, &r, T, 3, argv, lens), 0);
	CHECK(is_status(r, "OK"));
	wf_redis_reply_free(r);
	const char *get[] = {"GET", "big"};
	CHECK_RC(wf_redis_command_argv(c, &r, T, 2, get, NULL), 0);
	CHECK(r != NULL && r->type == REDIS_REPLY_STRING && r->len == big &&
	      memcmp(r->str, v, big) == 0);
	wf_redis_reply_free(r);
	free(v);
	CHECK_RC(wf_redis_close(c), 0);

	/* A name goes through the resolver. */
	if (CHECK_RC(wf_redis_connect("localhost", server_port, T, &c), 0)) {
		CHECK_RC(wf_redis_command(c, &r, T, "GET greeting"), 0);
		CHECK(is_str(r, "hello"));
		wf_redis_reply_free(r);
		CHECK_RC(wf_redis_close(c), 0);
	}
	return NULL;
}

Test(redis, set_get)
{
	start_or_skip();
	run_weft(2, t_set_get, NULL);
}

/* ------------------------------------------------------------------------
 * Pipelines
 * ---------------------------------------------------------------------- */

static void *t_pipeline(void *arg)
{
	enum { N = 1000 };
	wf_redis *c = NULL;
	if (!CHECK_RC(wf_redis_connect(NULL, server_port, T, &c), 0))
		return NULL;
	redisReply *r;
	CHECK_RC(wf_redis_get_reply(c, &r, T), WF_EINVAL); /* nothing owed */
	for (int i = 0; i < N; i++)
		CHECK_RC(wf_redis_append(c, "SET key:%d value-%d", i, i * 7), 0);
	CHECK_EQ(wf_redis_pending(c), N);
	/* A command would take a pipelined reply for its own. */
	CHECK_RC(wf_redis_command(c, &r, T, "PING"), WF_EINVAL);
	for (int i = 0; i < N; i++) {
		if (!CHECK_RC(wf_redis_get_reply(c, &r, T), 0))
			break;
		CHECK(is_status(r, "OK"));
		wf_redis_reply_free(r);
	}
	CHECK_EQ(wf_redis_pending(c), 0);
	for (int i = 0; i < N; i++) {
		char key[32];
		snprintf(key, sizeof(key), "key:%d", i);
		const char *argv[] = {"GET", key};
		CHECK_RC(wf_redis_append_argv(c, 2, argv, NULL), 0);
	}
	for (int i = 0; i < N; i++) {
		if (!CHECK_RC(wf_redis_get_reply(c, &r, T), 0))
			break;
		char want[32];
		snprintf(want, sizeof(want), "value-%d", i * 7);
		if (!CHECK(is_str(r, want)))
			fprintf(stderr, "reply %d\n", i);
		wf_redis_reply_free(r);
	}
	CHECK_RC(wf_redis_get_reply(c, &r, T), WF_EINVAL);
	CHECK_RC(wf_redis_command(c, &r, T, "DBSIZE"), 0);
	CHECK(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == N);
	wf_redis_reply_free(r);
	CHECK_RC(wf_redis_close(c), 0);
	return NULL;
}

Test(redis, pipeline_1000)
{
	start_or_skip();
	run_weft(2, t_pipeline, NULL);
}

/* ------------------------------------------------------------------------
 * 1000 concurrent GETs (100 under TSan) from tasks on 2 workers, through
 * a pool of 16 connections: a connection per task would need 1000
 * descriptors here and 1000 clients in the server (more than a default
 * `ulimit -n` of 1024 leaves), and a pool is what a program would use. The pool is a wf_queue
 * of handles: a task takes one, makes its call, puts it back, so each
 * connection serves one task at a time and many over its life, whichever
 * worker they run on.
 * ---------------------------------------------------------------------- */

/* Under TSan, timed waits of many tasks at once are slow (200 tasks that
 * each sleep 1 ms five times take some 8 s there, 50 ms in a Debug
 * build), and every wait here is timed: the TSan build runs 100 GETs,
 * the others the full thousand. */
#if defined(WF_TSAN)
enum { GETS = 100, POOL = 16 };
#else
enum { GETS = 1000, POOL = 16 };
#endif

typedef struct getter {
	wf_queue *pool;
	unsigned workers_seen; /* atomic bit set */
	int moved;              /* atomic: tasks that ran on two workers */
	uint64_t gets_ms;
} getter;

static getter g_shared;

static void *t_one_get(void *arg)
{
	int key = (int)(intptr_t)arg;
	int w0 = wf_worker_id();
	void *item;
	if (!CHECK_RC(wf_queue_get(g_shared.pool, &item, 3 * T), 0))
		return NULL;
	wf_redis *c = item;
	redisReply *r;
	if (CHECK_RC(wf_redis_command(c, &r, T, "GET k%d", key), 0)) {
		char want[32];
		snprintf(want, sizeof(want), "v%d", key);
		CHECK(is_str(r, want));
		wf_redis_reply_free(r);
	}
	CHECK_RC(wf_queue_put(g_shared.pool, c, T), 0);
	int w1 = wf_worker_id();
	__atomic_fetch_or(&g_shared.workers_seen, (1u << w0) | (1u << w1), __ATOMIC_RELAXED);
	if (w0 != w1)
		__atomic_fetch_add(&g_shared.moved, 1, __ATOMIC_RELAXED);
	return NULL;
}

static void *t_concurrent(void *arg)
{
	wf_redis *conns[POOL] = {0};
	CHECK_RC(wf_queue_new(NULL, &g_shared.pool), 0);
	for (int i = 0; i < POOL; i++)
		if (!CHECK_RC(wf_redis_connect("127.0.0.1", server_port, T, &conns[i]), 0))
			goto out;
	/* The values, in one pipeline. */
	redisReply *r;
	for (int i = 0; i < GETS; i++)
		CHECK_RC(wf_redis_append(conns[0], "SET k%d v%d", i, i), 0);
	for (int i = 0; i < GETS; i++) {
		if (!CHECK_RC(wf_redis_get_reply(conns[0], &r, T), 0))
			goto out;
		wf_redis_reply_free(r);
	}
	for (int i = 0; i < POOL; i++)
		CHECK_RC(wf_queue_put(g_shared.pool, conns[i], 0), 0);
	uint64_t t0 = mono_ns();
	static wf_task *tasks[GETS];
	for (int i = 0; i < GETS; i++)
		CHECK(tasks[i] = wf_spawn(t_one_get, (void *)(intptr_t)i));
	for (int i = 0; i < GETS; i++)
		if (tasks[i] != NULL)
			CHECK_RC(wf_join(tasks[i], NULL), 0);
	CHECK_EQ(wf_queue_qsize(g_shared.pool), POOL);
	g_shared.gets_ms = ms_since(t0);
out:
	for (int i = 0; i < POOL; i++)
		if (conns[i] != NULL)
			CHECK_RC(wf_redis_close(conns[i]), 0);
	wf_queue_free(g_shared.pool);
	return NULL;
}

Test(redis, concurrent_gets_two_workers)
{
	start_or_skip();
	uint64_t t0 = mono_ns();
	run_weft(2, t_concurrent, NULL);
	cr_log_info("%d GETs over %d connections in %llu ms (%llu ms with the set-up); %d tasks "
		    "changed worker", GETS, POOL, (unsigned long long)g_shared.gets_ms,
		    (unsigned long long)ms_since(t0), g_shared.moved);
	cr_assert_eq(g_shared.workers_seen, 3u, "the GETs ran on both workers (seen: %#x)",
		     g_shared.workers_seen);
}

/* ------------------------------------------------------------------------
 * Publish/subscribe
 * ---------------------------------------------------------------------- */

enum { MSGS = 20 };

static void *t_publisher(void *arg)
{
	wf_redis *c = NULL;
	if (!CHECK_RC(wf_redis_connect("127.0.0.1", server_port, T, &c), 0))
		return NULL;
	redisReply *r;
	for (int i = 0; i < MSGS; i++) {
		CHECK_RC(wf_redis_command(c, &r, T, "PUBLISH news msg-%d", i), 0);
		CHECK(r != NULL && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
		wf_redis_reply_free(r);
	}
	CHECK_RC(wf_redis_command(c, &r, T, "PUBLISH ev.door open"), 0);
	wf_redis_reply_free(r);
	CHECK_RC(wf_redis_close(c), 0);
	return NULL;
}

static void *t_pubsub(void *arg)
{
	wf_redis *c = NULL;
	if (!CHECK_RC(wf_redis_connect("127.0.0.1", server_port, T, &c), 0))
		return NULL;
	redisReply *r;
	CHECK_RC(wf_redis_next_message(c, &r, 10), WF_EINVAL); /* not subscribed */
	const char *ch[] = {"news", "weather"};
	CHECK_RC(wf_redis_subscribe(c, ch, 2, false, T), 0);
	const char *pat[] = {"ev.*"};
	CHECK_RC(wf_redis_subscribe(c, pat, 1, true, T), 0);
	/* Nothing published yet: a timeout that leaves the connection as it
	 * was. */
	uint64_t t0 = mono_ns();
	CHECK_RC(wf_redis_next_message(c, &r, 100), WF_ETIMEDOUT);
	CHECK(ms_since(t0) >= 90 && ms_since(t0) < 2000);
	CHECK(!wf_redis_broken(c));
	CHECK_RC(wf_redis_command(c, &r, T, "GET x"), WF_EINVAL);
	CHECK_RC(wf_redis_append(c, "GET x"), WF_EINVAL);

	wf_task *pub = wf_spawn(t_publisher, NULL);
	CHECK(pub != NULL);
	for (int i = 0; i < MSGS; i++) {
		if (!CHECK_RC(wf_redis_next_message(c, &r, T), 0))
			break;
		char want[32];
		snprintf(want, sizeof(want), "msg-%d", i);
		CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 3 &&
		      is_str(r->element[0], "message") && is_str(r->element[1], "news") &&
		      is_str(r->element[2], want));
		wf_redis_reply_free(r);
	}
	if (CHECK_RC(wf_redis_next_message(c, &r, T), 0)) {
		CHECK(r->type == REDIS_REPLY_ARRAY && r->elements == 4 &&
		      is_str(r->element[0], "pmessage") && is_str(r->element[1], "ev.*") &&
		      is_str(r->element[2], "ev.door") && is_str(r->element[3], "open"));
		wf_redis_reply_free(r);
	}
	if (pub != NULL)
		CHECK_RC(wf_join(pub, NULL), 0);
	CHECK_RC(wf_redis_next_message(c, &r, 0), WF_ETIMEDOUT);
	CHECK_RC(wf_redis_close(c), 0);
	return NULL;
}

Test(redis, pubsub)
{
	start_or_skip();
	run_weft(2, t_pubsub, NULL);
}

/* ------------------------------------------------------------------------
 * The server killed during a query; then restarted
 * ---------------------------------------------------------------------- */

static void *t_killer(void *arg)
{
	wf_sleep(150);
	kill(server_pid, SIGKILL);
	/* Gone for good (its listening socket too) once reaped. */
	waitpid(server_pid, NULL, 0);
	server_pid = -1;
	return NULL;
}

static void *t_killed(void *arg)
{
	wf_redis *c = NULL;
	if (!CHECK_RC(wf_redis_connect("127.0.0.1", server_port, T, &c), 0))
		return NULL;
	wf_task *k = wf_spawn(t_killer, NULL);
	redisReply *r;
	uint64_t t0 = mono_ns();
	/* Blocks in the server until it dies. */
	int rc = wf_redis_command(c, &r, 10000, "BLPOP no-such-list 0");
	CHECK(rc == WF_EPIPE || rc == -ECONNRESET);
	CHECK(r == NULL);
	CHECK(ms_since(t0) < 3000);
	CHECK(wf_redis_broken(c));
	CHECK_RC(wf_redis_command(c, &r, T, "PING"), WF_EPIPE);
	CHECK_RC(wf_redis_append(c, "PING"), WF_EPIPE);
	CHECK_RC(wf_redis_close(c), 0);
	CHECK_RC(wf_join(k, NULL), 0);
	/* Nobody listens now. */
	wf_redis *d = NULL;
	CHECK_RC(wf_redis_connect("127.0.0.1", server_port, T, &d), -ECONNREFUSED);
	CHECK(d == NULL);
	return NULL;
}

static void *t_after_restart(void *arg)
{
	wf_redis *c = NULL;
	if (!CHECK_RC(wf_redis_connect("127.0.0.1", server_port, T, &c), 0))
		return NULL;
	redisReply *r;
	CHECK_RC(wf_redis_command(c, &r, T, "SET again yes"), 0);
	wf_redis_reply_free(r);
	CHECK_RC(wf_redis_command(c, &r, T, "GET again"), 0);
	CHECK(is_str(r, "yes"));
	wf_redis_reply_free(r);
	CHECK_RC(wf_redis_close(c), 0);
	return NULL;
}

Test(redis, server_killed_mid_query)
{
	start_or_skip();
	run_weft(2, t_killed, NULL);
	char why[160];
	cr_assert(server_spawn(why, sizeof(why)), "restart: %s", why);
	run_weft(2, t_after_restart, NULL);
}

/* ------------------------------------------------------------------------
 * A server that stops answering (SIGSTOP): timeouts, in bounded time
 * ---------------------------------------------------------------------- */

static void *t_stopped(void *arg)
{
	wf_redis *c = NULL;
	if (!CHECK_RC(wf_redis_connect("127.0.0.1", server_port, T, &c), 0))
		return NULL;
	redisReply *r;
	CHECK_RC(wf_redis_command(c, &r, T, "SET k v"), 0);
	wf_redis_reply_free(r);
	kill(server_pid, SIGSTOP);
	uint64_t t0 = mono_ns();
	CHECK_RC(wf_redis_command(c, &r, 200, "GET k"), WF_ETIMEDOUT);
	uint64_t took = ms_since(t0);
	CHECK(took >= 190 && took < 1500);
	/* The reply may still come: the connection cannot be trusted. */
	CHECK(wf_redis_broken(c));
	CHECK_RC(wf_redis_command(c, &r, T, "GET k"), WF_EPIPE);
	CHECK_RC(wf_redis_close(c), 0);

	/* The kernel still completes connections to a stopped server. A
	 * pipeline times out the same way; timeout 0 does not wait at all. */
	if (CHECK_RC(wf_redis_connect("127.0.0.1", server_port, T, &c), 0)) {
		CHECK_RC(wf_redis_append(c, "GET k"), 0);
		t0 = mono_ns();
		CHECK_RC(wf_redis_get_reply(c, &r, 0), WF_ETIMEDOUT);
		CHECK(ms_since(t0) < 500);
		CHECK_RC(wf_redis_get_reply(c, &r, 100), WF_EPIPE);
		CHECK_RC(wf_redis_close(c), 0);
	}
	kill(server_pid, SIGCONT);
	if (CHECK_RC(wf_redis_connect("127.0.0.1", server_port, T, &c), 0)) {
		CHECK_RC(wf_redis_command(c, &r, T, "GET k"), 0);
		CHECK(is_str(r, "v"));
		wf_redis_reply_free(r);
		CHECK_RC(wf_redis_close(c), 0);
	}
	return NULL;
}

Test(redis, stopped_server_times_out)
{
	start_or_skip();
	run_weft(2, t_stopped, NULL);
}

/* ------------------------------------------------------------------------
 * Cancellation, and a second task on a connection in use
 * ---------------------------------------------------------------------- */

typedef struct blocked {
	wf_redis *c;
	int rc;
	wf_event *started;
} blocked;

static void *t_blpop(void *arg)
{
	blocked *b = arg;
	redisReply *r = NULL;
	wf_event_set(b->started);
	b->rc = wf_redis_command(b->c, &r, WF_FOREVER, "BLPOP no-such-list 0");
	CHECK(r == NULL);
	return NULL;
}

static void *t_cancel(void *arg)
{
	blocked b = {0};
	if (!CHECK_RC(wf_redis_connect("127.0.0.1", server_port, T, &b.c), 0))
		return NULL;
	CHECK_RC(wf_event_new(&b.started), 0);
	wf_task *t = wf_spawn(t_blpop, &b);
	CHECK_RC(wf_event_wait(b.started, T), 0);
	wf_sleep(100); /* into its wait */
	redisReply *r;
	/* In use by the other task. */
	CHECK_RC(wf_redis_command(b.c, &r, T, "PING"), WF_EBUSY);
	CHECK(r == NULL);
	CHECK_RC(wf_redis_append(b.c, "PING"), WF_EBUSY);
	CHECK_RC(wf_redis_get_reply(b.c, &r, T), WF_EBUSY);
	CHECK_RC(wf_redis_close(b.c), WF_EBUSY);
	CHECK(!wf_redis_broken(b.c));

	uint64_t t0 = mono_ns();
	CHECK_RC(wf_cancel(t), 0);
	CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
	CHECK(ms_since(t0) < 1000);
	CHECK_RC(b.rc, WF_ECANCELED);
	CHECK(wf_redis_broken(b.c));
	CHECK_RC(wf_redis_command(b.c, &r, T, "PING"), WF_EPIPE);
	CHECK_RC(wf_redis_close(b.c), 0);
	wf_event_free(b.started);
	return NULL;
}

Test(redis, cancel_and_busy)
{
	start_or_skip();
	run_weft(2, t_cancel, NULL);
}

/* ------------------------------------------------------------------------
 * Bad input, closed handles, plain threads
 * ---------------------------------------------------------------------- */

static void *t_bad(void *arg)
{
	wf_redis *c = NULL;
	redisReply *r = (redisReply *)1;
	CHECK_RC(wf_redis_connect("127.0.0.1", server_port, T, NULL), WF_EINVAL);
	CHECK_RC(wf_redis_connect("127.0.0.1", 70000, T, &c), WF_EINVAL);
	CHECK_RC(wf_redis_command(NULL, &r, T, "PING"), WF_EINVAL);
	CHECK(r == NULL);
	CHECK_RC(wf_redis_get_reply(NULL, &r, T), WF_EINVAL);
	CHECK_RC(wf_redis_next_message(NULL, &r, T), WF_EINVAL);
	CHECK_RC(wf_redis_append(NULL, "PING"), WF_EINVAL);
	CHECK_RC(wf_redis_close(NULL), WF_EINVAL);
	CHECK_RC(wf_redis_close((wf_redis *)(uintptr_t)0x123456789), WF_EINVAL);
	CHECK(wf_redis_broken(NULL));
	CHECK_EQ(wf_redis_pending(NULL), 0);
	wf_redis_reply_free(NULL);

	if (!CHECK_RC(wf_redis_connect("127.0.0.1", server_port, T, &c), 0))
		return NULL;
	CHECK_RC(wf_redis_command(c, NULL, T, "PING"), WF_EINVAL);
	CHECK_RC(wf_redis_command(c, &r, T, NULL), WF_EINVAL);
	CHECK_RC(wf_redis_append(c, NULL), WF_EINVAL);
	CHECK_RC(wf_redis_command_argv(c, &r, T, 0, NULL, NULL), WF_EINVAL);
	const char *holes[] = {"GET", NULL};
	CHECK_RC(wf_redis_command_argv(c, &r, T, 2, holes, NULL), WF_EINVAL);
	CHECK_RC(wf_redis_append_argv(c, 2, holes, NULL), WF_EINVAL);
	CHECK_RC(wf_redis_subscribe(c, NULL, 1, false, T), WF_EINVAL);
	const char *none[] = {NULL};
	CHECK_RC(wf_redis_subscribe(c, none, 1, false, T), WF_EINVAL);
	CHECK_RC(wf_redis_subscribe(c, holes, 0, false, T), WF_EINVAL);
	const char *ch_news[] = {"news"};
	CHECK_RC(wf_redis_next_message(c, &r, T), WF_EINVAL);
	CHECK_RC(wf_redis_get_reply(c, &r, T), WF_EINVAL);
	CHECK(!wf_redis_broken(c)); /* none of that touched the connection */
	CHECK_RC(wf_redis_command(c, &r, T, "PING"), 0);
	CHECK(is_status(r, "PONG"));
	wf_redis_reply_free(r);

	/* A closed handle, every time, even once its slot serves another
	 * connection. */
	CHECK_RC(wf_redis_close(c), 0);
	wf_redis *d = NULL;
	CHECK_RC(wf_redis_connect("127.0.0.1", server_port, T, &d), 0);
	CHECK(d != c);
	for (int i = 0; i < 2; i++) {
		CHECK_RC(wf_redis_close(c), WF_EINVAL);
		CHECK_RC(wf_redis_command(c, &r, T, "PING"), WF_EINVAL);
		CHECK_RC(wf_redis_append(c, "PING"), WF_EINVAL);
		CHECK_RC(wf_redis_get_reply(c, &r, T), WF_EINVAL);
		CHECK_RC(wf_redis_subscribe(c, ch_news, 1, false, T), WF_EINVAL);
		CHECK_RC(wf_redis_next_message(c, &r, T), WF_EINVAL);
		CHECK(wf_redis_broken(c));
		CHECK_EQ(wf_redis_pending(c), 0);
	}
	CHECK_RC(wf_redis_append(d, "PING"), 0);
	CHECK_EQ(wf_redis_pending(d), 1);
	/* d goes back to the test's thread, open. */
	return d;
}

Test(redis, bad_input)
{
	start_or_skip();
	wf_redis *c = NULL;
	redisReply *r;
	cr_assert_eq(wf_redis_connect("127.0.0.1", server_port, T, &c), WF_ENOTTASK);
	wf_redis *d = run_weft(1, t_bad, NULL);
	cr_assert_not_null(d);
	/* From a plain thread: [task] calls refuse, close works. */
	cr_assert_eq(wf_redis_get_reply(d, &r, T), WF_ENOTTASK);
	cr_assert_eq(wf_redis_command(d, &r, T, "PING"), WF_ENOTTASK);
	cr_assert_eq(wf_redis_close(d), 0);
	cr_assert_eq(wf_redis_close(d), WF_EINVAL);
}
