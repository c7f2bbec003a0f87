/*
 * The fan-out demo: an HTTP/1.1 server on weft whose every answer needs
 * two backends, Redis and PostgreSQL, asked at the same time.
 *
 *   fanout_server [--host H] [--port P] [--threads T] [--requests N]
 *                 [--redis HOST:PORT] [--pg CONNINFO]
 *                 [--redis-conns N] [--pg-conns N] [--timeout MS]
 *                 [--key KEY] [--id ID] [--sql SQL]
 *
 *   GET /[?id=ID&key=KEY]
 *     200 {"key":KEY,"redis":VALUE,"id":ID,"pg":NAME}
 *         VALUE is Redis's GET KEY, NAME the first column of the first row
 *         of SQL run with $1 = ID (by default SELECT name FROM fanout
 *         WHERE id = $1); a missing key or row is null.
 *     502 {"error":"redis: ...; pg: ..."} when a backend failed: refused,
 *         gone, timed out, or answered with an error.
 *
 * Per request, the connection's task spawns two tasks, one per backend,
 * and waits for both with wf_gather (WF_GATHER_ALL: every outcome, so that
 * a 502 names each backend that failed). Each backend has one pool of
 * connections shared by all workers: a wf_queue of slots, each holding a
 * connection or none yet. A task takes a slot (waiting while all are in
 * use), connects if the slot is empty, runs its one command, and puts the
 * slot back. A connection the adapter reports broken is closed and its
 * slot left empty, so the next request connects again; a pooled
 * connection found dead (the server restarted) is replaced and the
 * command tried once more. --timeout bounds each backend's whole part,
 * the wait for a slot, connecting and the command together (1000 ms by
 * default): a backend that does not answer gives a 502, never a hang (a
 * PostgreSQL query that timed out is first cancelled on the server, which
 * the adapter bounds by WF_PG_CANCEL_TIMEOUT_MS).
 *
 * It prints "listening on http://HOST:PORT/ (N workers)" once it accepts
 * (--port 0: a free port), and runs until SIGINT or SIGTERM or until it
 * has answered N requests (--requests), then stops as demo/http_server.c
 * does and closes the pooled connections.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft.h>
#include <weft/pg.h>
#include <weft/redis.h>

#include "http_conn.h"

struct options {
	const char *host;
	unsigned port;
	unsigned threads;
	uint64_t requests; /* 0: no limit */
	char redis_host[256];
	unsigned redis_port;
	const char *pg;
	unsigned redis_conns, pg_conns;
	uint64_t timeout_ms;
	const char *key;
	uint64_t id;
	const char *sql;
};

static struct options opt = {
	.host = "127.0.0.1",
	.port = 8080,
	.redis_host = "127.0.0.1",
	.redis_port = 6379,
	.pg = "host=127.0.0.1 port=5432 dbname=postgres",
	.redis_conns = 8,
	.pg_conns = 4,
	.timeout_ms = 1000,
	.key = "fanout:greeting",
	.id = 1,
	.sql = "SELECT name FROM fanout WHERE id = $1",
};

/* A pooled connection, or none yet (connected on first use). */
struct slot {
	wf_redis *redis;
	wf_pg *pg;
};

static wf_queue *redis_pool, *pg_pool;
static struct slot *slots; /* redis_conns + pg_conns of them */
static uint64_t answered;  /* atomic */
static wf_event *enough;   /* set once --requests are answered */

/* ---- one backend's part of a request ------------------------------------ */

/* What one backend task is asked and what it finds. Lives in the handler's
 * frame, which outlives both tasks (they are always gathered). */
struct part {
	uint64_t deadline_ns;
	const char *key; /* redis */
	char id[24];     /* pg: the parameter, in decimal */
	char *value;     /* malloc'd answer; NULL: null (no such key or row) */
};

static uint64_t left_ms(const struct part *p)
{
	uint64_t now = wf_time_ns();
	return now >= p->deadline_ns ? 0 : (p->deadline_ns - now + 999999) / 1000000;
}

/* The failure of a part, with its message. */
static void *part_fail(int rc, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void *part_fail(int rc, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* On one line: libpq's messages end in a newline and may hold a
	 * second, tab-indented line. */
	size_t n = 0;
	for (char *c = msg; *c != '\0'; c++) {
		bool space = *c == '\n' || *c == '\t' || *c == '\r';
		if (!space)
			msg[n++] = *c;
		else if (n > 0 && msg[n - 1] != ' ')
			msg[n++] = ' ';
	}
	while (n > 0 && msg[n - 1] == ' ')
		n--;
	msg[n] = '\0';
	return wf_fail(rc, msg);
}

/* The words for a failed call: a timeout says how long it waited. */
static const char *why(int rc, char *buf, size_t cap)
{
	if (rc == WF_ETIMEDOUT)
		snprintf(buf, cap, "timed out (%" PRIu64 " ms)", opt.timeout_ms);
	else
		snprintf(buf, cap, "%s", wf_strerror(rc));
	return buf;
}

/* Takes a slot from pool within the part's time. */
static int take_slot(wf_queue *pool, const struct part *p, struct slot **out)
{
	void *item;
	int rc = wf_queue_get(pool, &item, left_ms(p));
	*out = rc == 0 ? item : NULL;
	return rc;
}

static void *redis_part(void *arg)
{
	struct part *p = arg;
	char w[64];
	struct slot *s;
	int rc = take_slot(redis_pool, p, &s);
	if (rc != 0)
		return part_fail(rc, "redis: no free connection: %s", why(rc, w, sizeof(w)));
	void *fail = NULL;
	for (int attempt = 0;; attempt++) {
		bool reused = s->redis != NULL;
		if (!reused) {
			rc = wf_redis_connect(opt.redis_host, opt.redis_port, left_ms(p), &s->redis);
			if (rc != 0) {
				s->redis = NULL;
				fail = part_fail(rc, "redis: connect to %s:%u: %s", opt.redis_host,
						 opt.redis_port, why(rc, w, sizeof(w)));
				break;
			}
		}
		redisReply *r;
		rc = wf_redis_command(s->redis, &r, left_ms(p), "GET %s", p->key);
		if (rc == 0) {
			if (r->type == REDIS_REPLY_STRING) {
				p->value = malloc(r->len + 1);
				if (p->value == NULL) {
					fail = part_fail(WF_ENOMEM, "redis: out of memory");
				} else {
					memcpy(p->value, r->str, r->len);
					p->value[r->len] = '\0';
				}
			} else if (r->type == REDIS_REPLY_ERROR) {
				fail = part_fail(WF_EIO, "redis: GET %s: %s", p->key, r->str);
			} else if (r->type != REDIS_REPLY_NIL) {
				fail = part_fail(WF_EIO, "redis: GET %s: unexpected reply type %d",
						 p->key, r->type);
			}
			wf_redis_reply_free(r);
			break;
		}
		if (wf_redis_broken(s->redis)) {
			wf_redis_close(s->redis);
			s->redis = NULL;
		}
		/* An idle pooled connection the server dropped: once more on a
		 * new one (GET can be repeated). */
		if (reused && attempt == 0 && (rc == WF_EPIPE || rc == -ECONNRESET))
			continue;
		fail = part_fail(rc, "redis: GET %s: %s", p->key, why(rc, w, sizeof(w)));
		break;
	}
	wf_queue_put_nowait(redis_pool, s); /* unbounded: cannot fail */
	return fail;
}

static void *pg_part(void *arg)
{
	struct part *p = arg;
	char w[64];
	struct slot *s;
	int rc = take_slot(pg_pool, p, &s);
	if (rc != 0)
		return part_fail(rc, "pg: no free connection: %s", why(rc, w, sizeof(w)));
	void *fail = NULL;
	for (int attempt = 0;; attempt++) {
		bool reused = s->pg != NULL;
		if (!reused) {
			char *msg = NULL;
			rc = wf_pg_connect(opt.pg, left_ms(p), &s->pg, &msg);
			if (rc != 0) {
				s->pg = NULL;
				fail = part_fail(rc, "pg: connect: %s",
						 msg != NULL && rc != WF_ETIMEDOUT ? msg
										   : why(rc, w, sizeof(w)));
				free(msg);
				break;
			}
		}
		const char *params[] = {p->id};
		PGresult *r;
		rc = wf_pg_query(s->pg, opt.sql, 1, params, left_ms(p), &r);
		if (rc == 0) {
			if (PQntuples(r) > 0 && PQnfields(r) > 0 && !PQgetisnull(r, 0, 0)) {
				p->value = strdup(PQgetvalue(r, 0, 0));
				if (p->value == NULL)
					fail = part_fail(WF_ENOMEM, "pg: out of memory");
			}
			PQclear(r);
			break;
		}
		/* A lost connection is broken; a timed-out query whose
		 * cancellation could not be cleaned up too. */
		char msg[256];
		if (rc == WF_EIO || rc == -ECONNRESET)
			snprintf(msg, sizeof(msg), "%s", wf_pg_errmsg(s->pg));
		else
			snprintf(msg, sizeof(msg), "query: %s", why(rc, w, sizeof(w)));
		if (wf_pg_broken(s->pg)) {
			wf_pg_close(s->pg);
			s->pg = NULL;
		}
		/* An idle pooled connection the server dropped: once more on a
		 * new one (the SELECT can be repeated). */
		if (reused && attempt == 0 && rc == -ECONNRESET)
			continue;
		fail = part_fail(rc, "pg: %s", msg);
		break;
	}
	wf_queue_put_nowait(pg_pool, s);
	return fail;
}

/* ---- the answer ---------------------------------------------------------- */

/* The body of an answer, per worker thread: http_conn.c copies it as soon
 * as the handler returns, before this thread runs another handler. Reached
 * through a function that is not inlined, called after the handler's last
 * suspension: the task may have moved to another worker meanwhile, and
 * each call must see its own thread's buffer. */
struct body {
	char p[32 * 1024];
	size_t len;
	bool over;
};

static __attribute__((noinline)) struct body *this_thread_body(void)
{
	static __thread struct body b;
	b.len = 0;
	b.over = false;
	return &b;
}

static void put(struct body *b, const char *s, size_t n)
{
	if (b->over || n > sizeof(b->p) - b->len) {
		b->over = true;
		return;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
}

static void puts_(struct body *b, const char *s)
{
	put(b, s, strlen(s));
}

/* s as a JSON string, or null. */
static void put_json(struct body *b, const char *s)
{
	if (s == NULL) {
		puts_(b, "null");
		return;
	}
	put(b, "\"", 1);
	for (const unsigned char *c = (const unsigned char *)s; *c != '\0'; c++) {
		char esc[8];
		if (*c == '"' || *c == '\\') {
			esc[0] = '\\';
			esc[1] = (char)*c;
			put(b, esc, 2);
		} else if (*c < 0x20) {
			snprintf(esc, sizeof(esc), "\\u%04x", *c);
			put(b, esc, 6);
		} else {
			put(b, (const char *)c, 1);
		}
	}
	put(b, "\"", 1);
}

static void answer_text(http_response *resp, int status, const char *text)
{
	resp->status = status;
	resp->content_type = "text/plain";
	resp->body = text;
	resp->body_len = strlen(text);
}

static void answer_json(http_response *resp, int status, struct body *b)
{
	if (b->over) {
		b->len = 0;
		b->over = false;
		puts_(b, "{\"error\":\"the answer is over the demo's 32 KiB bound\"}");
		status = 502;
	}
	put(b, "\n", 1);
	resp->status = status;
	resp->content_type = "application/json";
	resp->body = b->p;
	resp->body_len = b->len;
}

/* GET /?id=ID&key=KEY: the query's two optional parameters, taken as they
 * are (no percent-decoding: ID is digits, KEY letters, digits and
 * ":_.-"). false: a malformed query. */
static bool parse_query(const char *q, uint64_t *id, char *key, size_t keycap)
{
	while (*q != '\0') {
		size_t n = strcspn(q, "&");
		if (n > 3 && memcmp(q, "id=", 3) == 0) {
			uint64_t v = 0;
			for (size_t i = 3; i < n; i++) {
				if (q[i] < '0' || q[i] > '9' || v > (UINT64_MAX - 9) / 10)
					return false;
				v = v * 10 + (uint64_t)(q[i] - '0');
			}
			*id = v;
		} else if (n > 4 && memcmp(q, "key=", 4) == 0) {
			if (n - 4 >= keycap)
				return false;
			for (size_t i = 4; i < n; i++)
				if (strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					   "0123456789:_.-",
					   q[i]) == NULL)
					return false;
			memcpy(key, q + 4, n - 4);
			key[n - 4] = '\0';
		} else if (n > 0) {
			return false;
		}
		q += n;
		if (*q == '&')
			q++;
	}
	return true;
}

static void fanout(const http_request *req, http_response *resp, void *arg)
{
	(void)arg;
	size_t path_len = strcspn(req->target, "?");
	if (path_len != 1 || req->target[0] != '/') {
		answer_text(resp, 404, "Not Found\n");
		return;
	}
	if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "HEAD") != 0) {
		answer_text(resp, 405, "Method Not Allowed\n");
		return;
	}
	uint64_t id = opt.id;
	char key[129];
	snprintf(key, sizeof(key), "%s", opt.key);
	if (req->target[1] == '?' && !parse_query(req->target + 2, &id, key, sizeof(key))) {
		answer_text(resp, 400, "Bad Request: GET /?id=DIGITS&key=[A-Za-z0-9:_.-]{1,128}\n");
		return;
	}

	uint64_t deadline = wf_time_ns() + opt.timeout_ms * 1000000;
	struct part rp = {.deadline_ns = deadline, .key = key};
	struct part pp = {.deadline_ns = deadline};
	snprintf(pp.id, sizeof(pp.id), "%" PRIu64, id);
	wf_task *tasks[2] = {wf_spawn(redis_part, &rp), wf_spawn(pg_part, &pp)};
	wf_outcome out[2] = {{0}};
	int rc;
	if (tasks[0] != NULL && tasks[1] != NULL) {
		rc = wf_gather(tasks, 2, out, WF_GATHER_ALL);
	} else {
		/* Out of memory: the one that started is waited for. */
		for (int i = 0; i < 2; i++)
			if (tasks[i] != NULL)
				wf_join(tasks[i], NULL);
		rc = WF_ENOMEM;
	}

	struct body *b = this_thread_body();
	if (rc != 0) {
		/* Cancelled (the server is shutting down) or out of memory. */
		puts_(b, "{\"error\":");
		put_json(b, wf_strerror(rc));
		puts_(b, "}");
		answer_json(resp, 503, b);
	} else if (out[0].err != 0 || out[1].err != 0) {
		char msg[1100];
		msg[0] = '\0';
		for (int i = 0; i < 2; i++) {
			if (out[i].err == 0)
				continue;
			size_t n = strlen(msg);
			snprintf(msg + n, sizeof(msg) - n, "%s%s", n > 0 ? "; " : "",
				 out[i].msg != NULL ? out[i].msg : wf_strerror(out[i].err));
		}
		puts_(b, "{\"error\":");
		put_json(b, msg);
		puts_(b, "}");
		answer_json(resp, 502, b);
	} else {
		char idtext[32];
		snprintf(idtext, sizeof(idtext), "%" PRIu64, id);
		puts_(b, "{\"key\":");
		put_json(b, key);
		puts_(b, ",\"redis\":");
		put_json(b, rp.value);
		puts_(b, ",\"id\":");
		puts_(b, idtext);
		puts_(b, ",\"pg\":");
		put_json(b, pp.value);
		puts_(b, "}");
		answer_json(resp, 200, b);
	}
	wf_outcomes_clear(out, 2);
	free(rp.value);
	free(pp.value);
}

/* ---- the server ----------------------------------------------------------- */

static void on_answered(unsigned n, void *arg)
{
	(void)arg;
	uint64_t total = __atomic_add_fetch(&answered, n, __ATOMIC_RELAXED);
	if (opt.requests != 0 && total >= opt.requests && total - n < opt.requests)
		wf_event_set(enough);
}

static const http_conn_config http_cfg = {
	.handler = fanout,
	.idle_timeout_ms = 30000,
	.on_answered = on_answered,
};

/* Every connection has ended, so every slot is back in its pool. */
static void close_pools(void)
{
	for (unsigned i = 0; i < opt.redis_conns + opt.pg_conns; i++) {
		if (slots[i].redis != NULL)
			wf_redis_close(slots[i].redis);
		if (slots[i].pg != NULL)
			wf_pg_close(slots[i].pg);
	}
	if (redis_pool != NULL)
		wf_queue_free(redis_pool);
	if (pg_pool != NULL)
		wf_queue_free(pg_pool);
	free(slots);
}

static void *main_task(void *arg)
{
	const http_conn_config *cfg = arg;
	slots = calloc(opt.redis_conns + opt.pg_conns, sizeof(*slots));
	if (slots == NULL || wf_queue_new(NULL, &redis_pool) != 0 ||
	    wf_queue_new(NULL, &pg_pool) != 0 || wf_event_new(&enough) != 0) {
		close_pools();
		return wf_fail(WF_ENOMEM, "pools");
	}
	for (unsigned i = 0; i < opt.redis_conns + opt.pg_conns; i++)
		wf_queue_put_nowait(i < opt.redis_conns ? redis_pool : pg_pool, &slots[i]);

	wf_server *srv;
	int rc = wf_start_server(opt.host, opt.port, http_conn_serve, (void *)cfg, NULL, &srv);
	if (rc != 0) {
		fprintf(stderr, "fanout_server: cannot listen on %s:%u: %s\n", opt.host, opt.port,
			wf_strerror(rc));
		wf_event_free(enough);
		close_pools();
		return wf_fail(rc, "listen");
	}
	printf("listening on http://%s:%d/ (%u workers)\n", opt.host, wf_server_port(srv),
	       wf_runtime_workers(wf_runtime_current()));
	fflush(stdout);
	rc = wf_event_wait(enough, WF_FOREVER);
	if (rc == WF_ECANCELED) /* SIGINT or SIGTERM */
		wf_uncancel();
	else if (rc != 0)
		fprintf(stderr, "fanout_server: waiting for a stop: %s\n", wf_strerror(rc));
	rc = http_server_shut_down(srv);
	wf_event_free(enough);
	close_pools();
	fprintf(stderr, "fanout_server: stopped after %" PRIu64 " answers\n",
		__atomic_load_n(&answered, __ATOMIC_RELAXED));
	return rc == 0 ? NULL : wf_fail(rc, "shutting down");
}

static void usage(FILE *to)
{
	fprintf(to,
		"usage: fanout_server [--host H] [--port P] [--threads T] [--requests N]\n"
		"                     [--redis HOST:PORT] [--pg CONNINFO]\n"
		"                     [--redis-conns N] [--pg-conns N] [--timeout MS]\n"
		"                     [--key KEY] [--id ID] [--sql SQL]\n");
}

static bool number(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	if (s == NULL || *s < '0' || *s > '9')
		return false;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end != '\0' || errno != 0 || v > max)
		return false;
	*out = v;
	return true;
}

/* HOST:PORT, [V6]:PORT or HOST (port 6379). */
static bool host_port(const char *s, char *host, size_t cap, unsigned *port)
{
	if (s == NULL || *s == '\0')
		return false;
	const char *end, *colon;
	if (s[0] == '[') {
		end = strchr(s, ']');
		if (end == NULL || (end[1] != '\0' && end[1] != ':'))
			return false;
		colon = end[1] == ':' ? end + 1 : NULL;
		s++;
	} else {
		colon = strrchr(s, ':');
		end = colon != NULL ? colon : s + strlen(s);
	}
	uint64_t p = 6379;
	if ((size_t)(end - s) >= cap || (colon != NULL && !number(colon + 1, 65535, &p)))
		return false;
	memcpy(host, s, (size_t)(end - s));
	host[end - s] = '\0';
	*port = (unsigned)p;
	return true;
}

int main(int argc, char **argv)
{
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t x;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			return 0;
		} else if (strcmp(a, "--host") == 0 && v != NULL) {
			opt.host = v;
		} else if (strcmp(a, "--port") == 0 && number(v, 65535, &x)) {
			opt.port = (unsigned)x;
		} else if (strcmp(a, "--threads") == 0 && number(v, WF_WORKERS_MAX, &x)) {
			opt.threads = (unsigned)x;
		} else if (strcmp(a, "--requests") == 0 && number(v, UINT64_MAX, &x)) {
			opt.requests = x;
		} else if (strcmp(a, "--redis") == 0 &&
			   host_port(v, opt.redis_host, sizeof(opt.redis_host), &opt.redis_port)) {
		} else if (strcmp(a, "--pg") == 0 && v != NULL) {
			opt.pg = v;
		} else if (strcmp(a, "--redis-conns") == 0 && number(v, 4096, &x) && x > 0) {
			opt.redis_conns = (unsigned)x;
		} else if (strcmp(a, "--pg-conns") == 0 && number(v, 4096, &x) && x > 0) {
			opt.pg_conns = (unsigned)x;
		} else if (strcmp(a, "--timeout") == 0 && number(v, 3600 * 1000, &x) && x > 0) {
			opt.timeout_ms = x;
		} else if (strcmp(a, "--key") == 0 && v != NULL && strlen(v) <= 128) {
			opt.key = v;
		} else if (strcmp(a, "--id") == 0 && number(v, UINT64_MAX, &x)) {
			opt.id = x;
		} else if (strcmp(a, "--sql") == 0 && v != NULL) {
			opt.sql = v;
		} else {
			fprintf(stderr, "fanout_server: bad argument %s%s%s\n", a, v ? " " : "",
				v ? v : "");
			usage(stderr);
			return 2;
		}
		i++;
	}
	wf_config wcfg;
	wf_config_init(&wcfg);
	if (opt.threads != 0)
		wcfg.workers = opt.threads;
	wcfg.cancel_on_signals = WF_SIG_INT | WF_SIG_TERM;
	char *msg = NULL;
	int rc = wf_run_ex(&wcfg, main_task, (void *)&http_cfg, NULL, &msg);
	if (rc != 0)
		fprintf(stderr, "fanout_server: %s (%s)\n", msg ? msg : "failed", wf_strerror(rc));
	free(msg);
	return rc == 0 ? 0 : 1;
}
