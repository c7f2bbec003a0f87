/*
 * PostgreSQL with libpq, driven by weft's readiness waits (weft/pg.h).
 *
 * libpq's asynchronous protocol calls never block once the connection is
 * in non-blocking mode: each one does what the socket allows and says
 * whether it needs more. A call here loops over them and, where libpq
 * needs the socket, suspends the task in wf_wait_readable /
 * wf_wait_writable (one-shot waits: nothing stays registered, so libpq may
 * close and reopen its socket, as it does while trying hosts).
 *
 * Sending. PQflush returns 1 while output is left. libpq asks its caller
 * to wait for readability and writability together then, because a server
 * blocked on sending us results stops reading; weft's waits take one
 * direction, so the write wait is cut into FLUSH_SLICE_MS slices and
 * PQflush, which reads what has come in whenever it cannot write, runs
 * between them. The slices only matter when both directions are full (a
 * long pipeline with large results).
 *
 * Handles. A wf_pg is never given back to malloc: a closed one goes to
 * the end of a free list and is reused only once QUARANTINE others are
 * queued before it, so a stale handle reads as closed (state DEAD) for a
 * long while, without touching freed memory. The state is also the
 * one-task-at-a-time rule: a call moves it from IDLE to BUSY with one
 * compare-and-swap and back when it returns.
 */
#include <arpa/inet.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <libpq-fe.h>
#include <weft.h>

#include "weft/pg.h"

#define PG_MAGIC 0x67707766u /* "fwpg" */
#define FLUSH_SLICE_MS 10
#define QUARANTINE 64

enum { ST_DEAD = 0, ST_IDLE = 1, ST_BUSY = 2 };

struct wf_pg {
	uint32_t magic;
	int state; /* ST_*, atomic */
	wf_pg *next_free;
	PGconn *conn;
	bool broken;
	int syncs; /* pipeline syncs sent whose PGRES_PIPELINE_SYNC is unread */
	char *errmsg; /* NULL: "" */
	char sqlstate[6];
};

/* ---- handles ------------------------------------------------------------ */

static pthread_mutex_t free_mu = PTHREAD_MUTEX_INITIALIZER;
static wf_pg *free_head, *free_tail;
static size_t free_count;

static wf_pg *pg_alloc(void)
{
	wf_pg *c = NULL;
	pthread_mutex_lock(&free_mu);
	if (free_count > QUARANTINE) {
		c = free_head;
		free_head = c->next_free;
		if (free_head == NULL)
			free_tail = NULL;
		free_count--;
	}
	pthread_mutex_unlock(&free_mu);
	if (c == NULL) {
		c = calloc(1, sizeof(*c));
		if (c == NULL)
			return NULL;
		c->magic = PG_MAGIC;
	}
	c->next_free = NULL;
	c->conn = NULL;
	c->broken = false;
	c->syncs = 0;
	c->errmsg = NULL;
	c->sqlstate[0] = '\0';
	return c; /* still ST_DEAD: published by pg_publish */
}

static void pg_publish(wf_pg *c) { __atomic_store_n(&c->state, ST_IDLE, __ATOMIC_RELEASE); }

/* c is ST_DEAD already (nobody else may claim it). */
static void pg_free(wf_pg *c)
{
	free(c->errmsg);
	c->errmsg = NULL;
	c->conn = NULL;
	pthread_mutex_lock(&free_mu);
	c->next_free = NULL;
	if (free_tail != NULL)
		free_tail->next_free = c;
	else
		free_head = c;
	free_tail = c;
	free_count++;
	pthread_mutex_unlock(&free_mu);
}

static bool pg_live(const wf_pg *c)
{
	return c != NULL && c->magic == PG_MAGIC &&
	       __atomic_load_n(&c->state, __ATOMIC_ACQUIRE) != ST_DEAD;
}

/* Claims c for one call: 0, WF_EINVAL, WF_EBUSY. */
static int pg_acquire(wf_pg *c)
{
	if (c == NULL || c->magic != PG_MAGIC)
		return WF_EINVAL;
	int expect = ST_IDLE;
	if (__atomic_compare_exchange_n(&c->state, &expect, ST_BUSY, false, __ATOMIC_ACQUIRE,
					__ATOMIC_ACQUIRE))
		return 0;
	return expect == ST_BUSY ? WF_EBUSY : WF_EINVAL;
}

static void pg_release(wf_pg *c) { __atomic_store_n(&c->state, ST_IDLE, __ATOMIC_RELEASE); }

/* ---- errors ------------------------------------------------------------- */

/* A malloc'd copy of msg without its trailing newlines (NULL if out of
 * memory). */
static char *trimmed(const char *msg)
{
	if (msg == NULL)
		msg = "";
	size_t n = strlen(msg);
	while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == '\r'))
		n--;
	char *s = malloc(n + 1);
	if (s != NULL) {
		memcpy(s, msg, n);
		s[n] = '\0';
	}
	return s;
}

static void set_err(wf_pg *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set_err(wf_pg *c, const char *fmt, ...)
{
	char buf[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	free(c->errmsg);
	c->errmsg = trimmed(buf);
}

static void clear_err(wf_pg *c)
{
	free(c->errmsg);
	c->errmsg = NULL;
	c->sqlstate[0] = '\0';
}

static void set_sqlstate(wf_pg *c, const PGresult *r)
{
	const char *s = PQresultErrorField(r, PG_DIAG_SQLSTATE);
	snprintf(c->sqlstate, sizeof(c->sqlstate), "%s", s != NULL ? s : "");
}

/* The connection is gone: c is broken from now on. */
static int lost(wf_pg *c, const char *msg)
{
	c->broken = true;
	if (msg == NULL || msg[0] == '\0')
		msg = PQerrorMessage(c->conn);
	if (msg == NULL || msg[0] == '\0')
		msg = "connection to the server lost";
	set_err(c, "%s", msg);
	return -ECONNRESET;
}

/* A libpq send call returned 0: the connection is bad, or libpq refused
 * the arguments. */
static int send_failed(wf_pg *c)
{
	if (PQstatus(c->conn) == CONNECTION_BAD)
		return lost(c, NULL);
	set_err(c, "%s", PQerrorMessage(c->conn));
	return WF_EINVAL;
}

/* ---- time and waits ----------------------------------------------------- */

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uint64_t deadline_after(uint64_t timeout_ms)
{
	if (timeout_ms == WF_FOREVER)
		return WF_FOREVER;
	uint64_t now = now_ms();
	return timeout_ms > WF_FOREVER - 1 - now ? WF_FOREVER - 1 : now + timeout_ms;
}

/* Milliseconds left before deadline (0: passed; a wait of 0 only polls). */
static uint64_t remaining(uint64_t deadline)
{
	if (deadline == WF_FOREVER)
		return WF_FOREVER;
	uint64_t now = now_ms();
	return deadline > now ? deadline - now : 0;
}

static int wait_sock(wf_pg *c, bool write, uint64_t ms)
{
	int fd = PQsocket(c->conn);
	if (fd < 0)
		return lost(c, NULL);
	int rc = write ? wf_wait_writable(fd, ms) : wf_wait_readable(fd, ms);
	if (rc == -EBADF)
		return lost(c, NULL);
	return rc;
}

/* Sends everything libpq holds. */
static int flush(wf_pg *c, uint64_t deadline)
{
	for (;;) {
		int f = PQflush(c->conn);
		if (f == 0)
			return 0;
		if (f < 0)
			return lost(c, NULL);
		uint64_t left = remaining(deadline);
		uint64_t slice = left < FLUSH_SLICE_MS ? left : FLUSH_SLICE_MS;
		int rc = wait_sock(c, true, slice);
		if (rc == WF_ETIMEDOUT && left > slice)
			continue; /* a slice: PQflush reads what came in */
		if (rc != 0)
			return rc;
	}
}

/* The next PGresult (NULL: the end of the current statement's results),
 * waiting for the server as long as libpq is busy. A task that would wait
 * first lets the other runnable tasks go (wf_yield) and reads once: with
 * many tasks the answer has often come meanwhile, and the read saves the
 * wait's registration, sleep and removal. */
static int next_result(wf_pg *c, uint64_t deadline, PGresult **res)
{
	*res = NULL;
	if (PQisBusy(c->conn)) {
		int rc = wf_yield();
		if (rc != 0)
			return rc;
		if (!PQconsumeInput(c->conn))
			return lost(c, NULL);
	}
	while (PQisBusy(c->conn)) {
		int rc = wait_sock(c, false, remaining(deadline));
		if (rc != 0)
			return rc;
		if (!PQconsumeInput(c->conn))
			return lost(c, NULL);
	}
	*res = PQgetResult(c->conn);
	if (*res == NULL && PQstatus(c->conn) == CONNECTION_BAD)
		return lost(c, NULL);
	return 0;
}

/* ---- cancelling on the server ------------------------------------------- */

typedef struct cancel_job {
	PGcancel *cancel;
	char err[256];
} cancel_job;

static void cancel_job_free(cancel_job *j)
{
	if (j != NULL) {
		PQfreeCancel(j->cancel);
		free(j);
	}
}

/* On a pool thread: PQcancel connects to the server and waits for it. */
static void *cancel_job_run(void *arg)
{
	cancel_job *j = arg;
	if (!PQcancel(j->cancel, j->err, (int)sizeof(j->err)))
		return wf_blocking_fail(WF_EIO, j->err);
	return j;
}

static void cancel_job_drop(void *arg, void *value)
{
	(void)value;
	cancel_job_free(arg);
}

/* A task of its own, so that wf_wait_for bounds it: cancelling it makes
 * wf_to_thread return at once, and the pool call's drop frees the job. */
static void *cancel_task(void *arg)
{
	cancel_job *j = arg;
	wf_call_opts o = WF_CALL_OPTS_INIT;
	o.drop = cancel_job_drop;
	char *msg = NULL;
	int rc = wf_to_thread_ex(cancel_job_run, j, &o, NULL, &msg);
	if (rc == WF_ECANCELED) /* the drop owns j */
		return wf_fail(rc, "cancel request abandoned");
	cancel_job_free(j);
	if (rc != 0) {
		wf_fail(rc, msg != NULL ? msg : wf_strerror(rc));
		free(msg);
		return NULL;
	}
	return NULL;
}

/* Sends a cancel request for what c's backend runs, within deadline. */
static int send_cancel(wf_pg *c, uint64_t deadline, char *why, size_t cap)
{
	cancel_job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return WF_ENOMEM;
	j->cancel = PQgetCancel(c->conn);
	if (j->cancel == NULL) {
		free(j);
		snprintf(why, cap, "no cancel key");
		return WF_EIO;
	}
	wf_task *t;
	int rc = wf_spawn_ex(cancel_task, j, NULL, &t);
	if (rc != 0) {
		cancel_job_free(j);
		return rc;
	}
	rc = wf_wait_for(t, NULL, remaining(deadline));
	if (rc != 0)
		snprintf(why, cap, "cancel request: %s", wf_strerror(rc));
	return rc;
}

/* After a statement or pipeline of c timed out or was cancelled (rc):
 * finishes sending, asks the server to cancel, reads and drops every
 * result still coming, and leaves pipeline mode. On any failure c is
 * broken. The message says what happened either way. */
static void abandon(wf_pg *c, int rc, bool pipeline, bool cancel)
{
	const char *what = rc == WF_ETIMEDOUT ? "timed out" : wf_strerror(rc);
	if (c->broken)
		return; /* the connection was lost: its message stays */
	uint64_t deadline = deadline_after(WF_PG_CANCEL_TIMEOUT_MS);
	char why[300] = "";
	int r = flush(c, deadline);
	if (r == 0 && cancel)
		r = send_cancel(c, deadline, why, sizeof(why));
	if (r == 0 && pipeline && c->syncs == 0) {
		if (PQpipelineSync(c->conn))
			c->syncs++;
		else
			r = lost(c, NULL);
		if (r == 0)
			r = flush(c, deadline);
	}
	while (r == 0) {
		PGresult *res;
		r = next_result(c, deadline, &res);
		if (r != 0)
			break;
		if (res == NULL) {
			if (!pipeline)
				break;
			continue; /* the end of one statement of the pipeline */
		}
		ExecStatusType st = PQresultStatus(res);
		PQclear(res);
		if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
			r = WF_ENOSYS;
			snprintf(why, sizeof(why), "a COPY cannot be drained");
			break;
		}
		if (pipeline && st == PGRES_PIPELINE_SYNC && --c->syncs == 0)
			break;
	}
	if (r == 0 && pipeline && !PQexitPipelineMode(c->conn)) {
		r = WF_EIO;
		snprintf(why, sizeof(why), "leaving pipeline mode: %s", PQerrorMessage(c->conn));
	}
	if (r == 0) {
		set_err(c, "%s; the statement was cancelled on the server", what);
		return;
	}
	if (why[0] == '\0')
		snprintf(why, sizeof(why), "%s", c->errmsg != NULL ? c->errmsg : wf_strerror(r));
	c->broken = true;
	set_err(c, "%s; cancelling the statement on the server failed (%s): the connection is broken",
		what, why);
}

/* ---- connecting --------------------------------------------------------- */

static bool is_numeric_addr(const char *h)
{
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* Resolves every name of the host list into a hostaddr list (malloc'd in
 * *out; NULL when no entry needs an address: sockets only). */
static int resolve_hosts(const char *hosts, uint64_t deadline, char **out, char *err, size_t cap)
{
	*out = NULL;
	size_t cap_out = strlen(hosts) * 2 + 64, len = 0;
	char *list = malloc(cap_out);
	char *copy = strdup(hosts);
	if (list == NULL || copy == NULL) {
		free(list);
		free(copy);
		return WF_ENOMEM;
	}
	bool any = false;
	int rc = 0;
	char *p = copy;
	/* strsep keeps empty entries, as libpq's lists do. */
	for (char *h; (h = strsep(&p, ",")) != NULL;) {
		char addr[INET6_ADDRSTRLEN] = "";
		if (h[0] == '\0' || h[0] == '/' || h[0] == '@') {
			/* a Unix socket directory (or the default): no address */
		} else if (is_numeric_addr(h)) {
			snprintf(addr, sizeof(addr), "%s", h);
		} else {
			struct addrinfo hints;
			memset(&hints, 0, sizeof(hints));
			hints.ai_family = AF_UNSPEC;
			hints.ai_socktype = SOCK_STREAM;
			hints.ai_flags = AI_ADDRCONFIG;
			struct addrinfo *ai = NULL;
			rc = wf_getaddrinfo(h, NULL, &hints, remaining(deadline), &ai);
			if (rc == 0 && ai == NULL)
				rc = WF_ENONAME;
			if (rc != 0) {
				snprintf(err, cap, "could not resolve \"%s\": %s", h, wf_strerror(rc));
				break;
			}
			const void *a = ai->ai_family == AF_INET6
						? (const void *)&((struct sockaddr_in6 *)ai->ai_addr)->sin6_addr
						: (const void *)&((struct sockaddr_in *)ai->ai_addr)->sin_addr;
			inet_ntop(ai->ai_family, a, addr, sizeof(addr));
			wf_freeaddrinfo(ai);
		}
		size_t n = strlen(addr);
		if (len + n + 2 > cap_out) {
			cap_out = (len + n + 2) * 2;
			char *nl = realloc(list, cap_out);
			if (nl == NULL) {
				rc = WF_ENOMEM;
				break;
			}
			list = nl;
		}
		if (len > 0 || h != copy)
			list[len++] = ',';
		memcpy(list + len, addr, n);
		len += n;
		list[len] = '\0';
		any = any || n > 0;
	}
	free(copy);
	if (rc != 0 || !any) {
		free(list);
		return rc;
	}
	*out = list;
	return 0;
}

static int connect_fail(int rc, char **errmsg, const char *msg)
{
	if (errmsg != NULL)
		*errmsg = trimmed(msg != NULL && msg[0] != '\0' ? msg : wf_strerror(rc));
	return rc;
}

int wf_pg_connect(const char *conninfo, uint64_t timeout_ms, wf_pg **out, char **errmsg)
{
	if (errmsg != NULL)
		*errmsg = NULL;
	if (out != NULL)
		*out = NULL;
	if (conninfo == NULL || out == NULL)
		return connect_fail(WF_EINVAL, errmsg, "conninfo and out are required");
	if (wf_current() == NULL)
		return connect_fail(WF_ENOTTASK, errmsg, NULL);
	uint64_t deadline = deadline_after(timeout_ms);

	char *perr = NULL;
	PQconninfoOption *opts = PQconninfoParse(conninfo, &perr);
	if (opts == NULL) {
		int rc = connect_fail(perr != NULL ? WF_EINVAL : WF_ENOMEM, errmsg, perr);
		PQfreemem(perr);
		return rc;
	}
	size_t nopts = 0;
	const char *host = NULL, *hostaddr = NULL;
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		nopts++;
		if (o->val != NULL && o->val[0] != '\0') {
			if (strcmp(o->keyword, "host") == 0)
				host = o->val;
			else if (strcmp(o->keyword, "hostaddr") == 0)
				hostaddr = o->val;
		}
	}
	bool host_from_env = false;
	if (host == NULL && (host = getenv("PGHOST")) != NULL && host[0] != '\0')
		host_from_env = true;
	if (hostaddr == NULL)
		hostaddr = getenv("PGHOSTADDR");

	char *resolved = NULL;
	int rc = 0;
	char err[512] = "";
	if ((hostaddr == NULL || hostaddr[0] == '\0') && host != NULL && host[0] != '\0')
		rc = resolve_hosts(host, deadline, &resolved, err, sizeof(err));
	const char **kw = calloc(nopts + 3, sizeof(*kw));
	const char **vals = calloc(nopts + 3, sizeof(*vals));
	if (rc == 0 && (kw == NULL || vals == NULL))
		rc = WF_ENOMEM;
	if (rc != 0) {
		free(kw);
		free(vals);
		free(resolved);
		PQconninfoFree(opts);
		return connect_fail(rc, errmsg, err);
	}
	size_t k = 0;
	for (PQconninfoOption *o = opts; o->keyword != NULL; o++) {
		if (o->val == NULL || o->val[0] == '\0')
			continue;
		if (resolved != NULL && strcmp(o->keyword, "hostaddr") == 0)
			continue;
		kw[k] = o->keyword;
		vals[k++] = o->val;
	}
	if (host_from_env && resolved != NULL) {
		kw[k] = "host";
		vals[k++] = host;
	}
	if (resolved != NULL) {
		kw[k] = "hostaddr";
		vals[k++] = resolved;
	}
	PGconn *conn = PQconnectStartParams(kw, vals, 0);
	free(kw);
	free(vals);
	free(resolved);
	PQconninfoFree(opts);
	if (conn == NULL)
		return connect_fail(WF_ENOMEM, errmsg, NULL);

	PostgresPollingStatusType st = PGRES_POLLING_WRITING;
	rc = PQstatus(conn) == CONNECTION_BAD ? WF_EIO : 0;
	while (rc == 0 && st != PGRES_POLLING_OK) {
		if (st == PGRES_POLLING_FAILED) {
			rc = WF_EIO;
			break;
		}
		int fd = PQsocket(conn);
		if (fd < 0) {
			rc = WF_EIO;
			break;
		}
		uint64_t ms = remaining(deadline);
		rc = st == PGRES_POLLING_READING ? wf_wait_readable(fd, ms) : wf_wait_writable(fd, ms);
		if (rc != 0) {
			snprintf(err, sizeof(err), "connecting: %s", wf_strerror(rc));
			break;
		}
		st = PQconnectPoll(conn);
	}
	if (rc == 0 && PQsetnonblocking(conn, 1) != 0)
		rc = WF_EIO;
	wf_pg *c = rc == 0 ? pg_alloc() : NULL;
	if (rc == 0 && c == NULL)
		rc = WF_ENOMEM;
	if (rc != 0) {
		rc = connect_fail(rc, errmsg, err[0] != '\0' ? err : PQerrorMessage(conn));
		PQfinish(conn);
		return rc;
	}
	c->conn = conn;
	pg_publish(c);
	*out = c;
	return 0;
}

int wf_pg_close(wf_pg *c)
{
	if (c == NULL || c->magic != PG_MAGIC)
		return WF_EINVAL;
	int expect = ST_IDLE;
	if (!__atomic_compare_exchange_n(&c->state, &expect, ST_DEAD, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE))
		return expect == ST_BUSY ? WF_EBUSY : WF_EINVAL;
	PQfinish(c->conn);
	pg_free(c);
	return 0;
}

/* ---- statements --------------------------------------------------------- */

static bool copy_status(ExecStatusType st)
{
	return st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH;
}

/* A statement's error result: WF_EIO, or -ECONNRESET when the connection
 * went with it. prefix (may be NULL) names the statement. */
static int result_error(wf_pg *c, const PGresult *r, const char *prefix)
{
	const char *msg = PQresultErrorMessage(r);
	if (PQstatus(c->conn) == CONNECTION_BAD) {
		set_sqlstate(c, r);
		return lost(c, msg);
	}
	if (prefix != NULL)
		set_err(c, "%s: %s", prefix, msg);
	else
		set_err(c, "%s", msg);
	set_sqlstate(c, r);
	return WF_EIO;
}

/* Reads one query's results up to their end. */
static int collect_one(wf_pg *c, uint64_t deadline, PGresult **out)
{
	PGresult *last = NULL;
	int err = 0;
	for (;;) {
		PGresult *r;
		int rc = next_result(c, deadline, &r);
		if (rc != 0) {
			PQclear(last);
			return rc;
		}
		if (r == NULL)
			break;
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
			/* Several statements (simple protocol): the last one's,
			 * as PQexec. */
			PQclear(last);
			last = r;
			continue;
		}
		if (copy_status(st)) {
			PQclear(r);
			PQclear(last);
			c->broken = true;
			set_err(c, "COPY is not supported: the connection is broken");
			return WF_ENOSYS;
		}
		if (err == 0)
			err = result_error(c, r, NULL);
		PQclear(r);
		if (err == -ECONNRESET)
			break;
	}
	if (err == 0 && last == NULL) {
		set_err(c, "the server sent no result");
		err = WF_EIO;
	}
	if (err != 0) {
		PQclear(last);
		return err;
	}
	*out = last;
	return 0;
}

static bool in_task(void) { return wf_current() != NULL; }

int wf_pg_query_params(wf_pg *c, const char *sql, int nparams, const Oid *types,
		       const char *const *values, const int *lengths, const int *formats,
		       int result_format, uint64_t timeout_ms, PGresult **out)
{
	if (out != NULL)
		*out = NULL;
	if (c == NULL || sql == NULL || out == NULL || nparams < 0 ||
	    (values == NULL && nparams > 0) || result_format < 0 || result_format > 1)
		return WF_EINVAL;
	if (!in_task())
		return WF_ENOTTASK;
	int rc = pg_acquire(c);
	if (rc != 0)
		return rc;
	clear_err(c);
	if (c->broken) {
		set_err(c, "the connection is broken");
		pg_release(c);
		return -ECONNRESET;
	}
	uint64_t deadline = deadline_after(timeout_ms);
	/* Without parameters, the simple protocol: one message instead of
	 * five, and less work for the server. */
	int sent = nparams == 0 && result_format == 0
			   ? PQsendQuery(c->conn, sql)
			   : PQsendQueryParams(c->conn, sql, nparams, types, values, lengths, formats,
					       result_format);
	if (!sent) {
		rc = send_failed(c);
	} else {
		rc = flush(c, deadline);
		if (rc == 0)
			rc = collect_one(c, deadline, out);
		if (rc == WF_ETIMEDOUT || rc == WF_ECANCELED)
			abandon(c, rc, false, true);
	}
	pg_release(c);
	return rc;
}

int wf_pg_query(wf_pg *c, const char *sql, int nparams, const char *const *params,
		uint64_t timeout_ms, PGresult **out)
{
	return wf_pg_query_params(c, sql, nparams, NULL, params, NULL, NULL, 0, timeout_ms, out);
}

/* ---- pipelines ---------------------------------------------------------- */

/* Reads the results of n statements and the sync's. */
static int collect_pipeline(wf_pg *c, size_t n, uint64_t deadline, PGresult **results)
{
	int err = 0;
	for (size_t i = 0; i < n; i++) {
		PGresult *r;
		int rc = next_result(c, deadline, &r);
		if (rc != 0)
			return rc;
		if (r == NULL) {
			set_err(c, "statement %zu: no result", i);
			return lost(c, c->errmsg);
		}
		ExecStatusType st = PQresultStatus(r);
		if (st == PGRES_TUPLES_OK || st == PGRES_COMMAND_OK || st == PGRES_EMPTY_QUERY) {
			results[i] = r;
		} else if (copy_status(st)) {
			PQclear(r);
			c->broken = true;
			set_err(c, "statement %zu: COPY is not supported: the connection is broken", i);
			return WF_ENOSYS;
		} else if (st == PGRES_PIPELINE_ABORTED) {
			PQclear(r);
			if (err == 0) {
				set_err(c, "statement %zu: pipeline aborted", i);
				err = WF_EIO;
			}
		} else {
			char prefix[48];
			snprintf(prefix, sizeof(prefix), "statement %zu", i);
			int e = result_error(c, r, err == 0 ? prefix : NULL);
			PQclear(r);
			if (e == -ECONNRESET)
				return e;
			if (err == 0)
				err = e;
		}
		/* The NULL that ends statement i's results. */
		for (;;) {
			rc = next_result(c, deadline, &r);
			if (rc != 0)
				return rc;
			if (r == NULL)
				break;
			PQclear(r);
		}
	}
	for (;;) {
		PGresult *r;
		int rc = next_result(c, deadline, &r);
		if (rc != 0)
			return rc;
		if (r == NULL)
			continue;
		ExecStatusType st = PQresultStatus(r);
		PQclear(r);
		if (st == PGRES_PIPELINE_SYNC) {
			c->syncs--;
			break;
		}
	}
	if (!PQexitPipelineMode(c->conn))
		return lost(c, NULL);
	return err;
}

int wf_pg_pipeline(wf_pg *c, const wf_pg_stmt *stmts, size_t n, uint64_t timeout_ms,
		   PGresult **results)
{
	if (results != NULL)
		for (size_t i = 0; i < n; i++)
			results[i] = NULL;
	if (c == NULL || stmts == NULL || n == 0 || results == NULL)
		return WF_EINVAL;
	for (size_t i = 0; i < n; i++)
		if (stmts[i].sql == NULL || stmts[i].nparams < 0 ||
		    (stmts[i].params == NULL && stmts[i].nparams > 0))
			return WF_EINVAL;
	if (!in_task())
		return WF_ENOTTASK;
	int rc = pg_acquire(c);
	if (rc != 0)
		return rc;
	clear_err(c);
	if (c->broken) {
		set_err(c, "the connection is broken");
		pg_release(c);
		return -ECONNRESET;
	}
	uint64_t deadline = deadline_after(timeout_ms);
	if (!PQenterPipelineMode(c->conn)) {
		rc = send_failed(c);
		pg_release(c);
		return rc;
	}
	c->syncs = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!PQsendQueryParams(c->conn, stmts[i].sql, stmts[i].nparams, NULL,
				       stmts[i].params, NULL, NULL, 0))
			rc = send_failed(c);
	}
	if (rc == 0) {
		if (PQpipelineSync(c->conn))
			c->syncs++;
		else
			rc = lost(c, NULL);
	}
	if (rc == 0)
		rc = flush(c, deadline);
	if (rc == 0)
		rc = collect_pipeline(c, n, deadline, results);
	if (rc == WF_ETIMEDOUT || rc == WF_ECANCELED) {
		abandon(c, rc, true, true);
	} else if (rc == WF_EINVAL) {
		/* libpq refused a statement's arguments: the ones before it
		 * were queued; run the sync and drop their results. */
		char *msg = c->errmsg != NULL ? strdup(c->errmsg) : NULL;
		abandon(c, rc, true, false);
		if (!c->broken && msg != NULL)
			set_err(c, "%s", msg);
		free(msg);
	}
	if (rc != 0)
		for (size_t i = 0; i < n; i++) {
			PQclear(results[i]);
			results[i] = NULL;
		}
	pg_release(c);
	return rc;
}

/* ---- accessors ---------------------------------------------------------- */

const char *wf_pg_errmsg(const wf_pg *c)
{
	if (!pg_live(c))
		return NULL;
	return c->errmsg != NULL ? c->errmsg : "";
}

const char *wf_pg_sqlstate(const wf_pg *c)
{
	if (!pg_live(c))
		return NULL;
	return c->sqlstate;
}

bool wf_pg_broken(const wf_pg *c) { return pg_live(c) && c->broken; }

PGconn *wf_pg_conn(wf_pg *c) { return pg_live(c) ? c->conn : NULL; }
