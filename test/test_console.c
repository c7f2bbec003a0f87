/*
 * The live console (WEFT_CONSOLE): a runtime whose every worker is blocked
 * by a task that never suspends still answers /api/metrics and /api/tasks
 * with valid JSON naming its tasks; unknown paths, other methods, garbage,
 * oversized requests and foreign Host headers get their error and the
 * console goes on; a non-loopback address fails the start. Then, when
 * chromium is installed, the page itself: chromium loads it headless and
 * the DOM it dumps holds what the page's script drew from the API.
 */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "console.h"
#include "rt_check.h"
#include "weft.h"

extern char **environ;

/* ---- a plain HTTP client ---------------------------------------------------- */

typedef struct reply {
	int status;
	char *raw;  /* the whole answer, NUL-terminated */
	char *body; /* inside raw */
} reply;

static int dial(int port)
{
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(fd, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0, "connect: %s",
		     strerror(errno));
	return fd;
}

/* Sends len bytes of req, then reads the answer until the server closes
 * (5 s at most). half_close: shut our side down after sending. */
static reply exchange(int port, const char *req, size_t len, bool half_close)
{
	int fd = dial(port);
	size_t off = 0;
	while (off < len) {
		ssize_t k = send(fd, req + off, len - off, MSG_NOSIGNAL);
		if (k <= 0)
			break; /* the server may answer and close early */
		off += (size_t)k;
	}
	if (half_close)
		shutdown(fd, SHUT_WR);
	size_t cap = 1 << 16, n = 0;
	char *buf = malloc(cap + 1);
	cr_assert_not_null(buf);
	uint64_t deadline = mono_ns() + 5000000000u;
	for (;;) {
		uint64_t now = mono_ns();
		cr_assert_lt(now, deadline, "the console did not close the connection");
		struct pollfd p = {.fd = fd, .events = POLLIN};
		if (poll(&p, 1, (int)((deadline - now) / 1000000u) + 1) <= 0)
			continue;
		if (n == cap) {
			cap *= 2;
			buf = realloc(buf, cap + 1);
			cr_assert_not_null(buf);
		}
		ssize_t k = recv(fd, buf + n, cap - n, 0);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	close(fd);
	buf[n] = '\0';
	reply r = {.status = -1, .raw = buf, .body = strstr(buf, "\r\n\r\n")};
	if (r.body != NULL)
		r.body += 4;
	sscanf(buf, "HTTP/1.1 %d", &r.status);
	return r;
}

static reply get(int port, const char *path)
{
	char req[512];
	int k = snprintf(req, sizeof(req), "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n\r\n", path,
			 port);
	return exchange(port, req, (size_t)k, false);
}

static size_t count_of(const char *s, const char *part)
{
	size_t n = 0;
	for (const char *p = s; (p = strstr(p, part)) != NULL; p += strlen(part))
		n++;
	return n;
}

/* ---- a small JSON syntax check ------------------------------------------- */

static const char *json_value(const char *p, int depth);

static const char *ws(const char *p)
{
	while (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t')
		p++;
	return p;
}

static const char *json_string(const char *p)
{
	if (*p++ != '"')
		return NULL;
	for (; *p != '"'; p++) {
		if ((unsigned char)*p < 0x20)
			return NULL;
		if (*p == '\\') {
			p++;
			if (*p == 'u') {
				for (int i = 1; i <= 4; i++)
					if (!isxdigit((unsigned char)p[i]))
						return NULL;
				p += 4;
			} else if (strchr("\"\\/bfnrt", *p) == NULL || *p == '\0') {
				return NULL;
			}
		}
	}
	return p + 1;
}

static const char *json_value(const char *p, int depth)
{
	p = ws(p);
	if (depth > 32)
		return NULL;
	if (*p == '{' || *p == '[') {
		char close = *p == '{' ? '}' : ']';
		p = ws(p + 1);
		if (*p == close)
			return p + 1;
		for (;;) {
			if (close == '}') {
				if ((p = json_string(ws(p))) == NULL)
					return NULL;
				p = ws(p);
				if (*p++ != ':')
					return NULL;
			}
			if ((p = json_value(p, depth + 1)) == NULL)
				return NULL;
			p = ws(p);
			if (*p == close)
				return p + 1;
			if (*p++ != ',')
				return NULL;
		}
	}
	if (*p == '"')
		return json_string(p);
	if (*p == '-' || isdigit((unsigned char)*p)) {
		char *end;
		strtod(p, &end);
		return end;
	}
	for (const char *lit = "true\0false\0null\0"; *lit; lit += strlen(lit) + 1)
		if (strncmp(p, lit, strlen(lit)) == 0)
			return p + strlen(lit);
	return NULL;
}

static bool json_valid(const char *s)
{
	const char *end = s != NULL ? json_value(s, 0) : NULL;
	return end != NULL && *ws(end) == '\0';
}

/* ---- a runtime with tasks to show ---------------------------------------- */

#define WORKERS 2
#define WAITERS 3

static wf_event *gate;
static int release_busy; /* atomic */

static void *waiter(void *arg)
{
	(void)arg;
	return (void *)(intptr_t)wf_event_wait(gate, WF_FOREVER);
}

/* Never suspends until released: it blocks its worker. */
static void *busy(void *arg)
{
	(void)arg;
	while (!__atomic_load_n(&release_busy, __ATOMIC_ACQUIRE))
		usleep(1000);
	return NULL;
}

static size_t tasks_in(wf_runtime *rt, const char *prefix, int state)
{
	wf_task_info v[64];
	size_t count, n = 0;
	int stored = wf_task_list(rt, v, 64, &count);
	for (int i = 0; i < stored; i++)
		if (strncmp(v[i].name, prefix, strlen(prefix)) == 0 && v[i].state == state)
			n++;
	return n;
}

static void *setup_waiters(void *arg)
{
	(void)arg;
	wf_task *t[WAITERS];
	for (int i = 0; i < WAITERS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "console-waiter-%d", i);
		wf_spawn_opts o = WF_SPAWN_OPTS_INIT;
		o.name = name;
		CHECK_RC(wf_spawn_ex(waiter, NULL, &o, &t[i]), 0);
	}
	/* Until they all wait: a join of a task that has not started would
	 * run it inline, not wait for it. */
	uint64_t limit = mono_ns() + 10000000000u;
	while (tasks_in(wf_runtime_current(), "console-waiter-", WF_TASK_WAITING) < WAITERS &&
	       mono_ns() < limit)
		CHECK_RC(wf_sleep(1), 0);
	for (int i = 0; i < WAITERS; i++)
		CHECK_RC(wf_join(t[i], NULL), 0);
	return NULL;
}

static void *setup_busy(void *arg)
{
	(void)arg;
	for (int i = 0; i < WORKERS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "console-busy-%d", i);
		wf_spawn_opts o = WF_SPAWN_OPTS_INIT;
		o.name = name;
		o.detached = true;
		CHECK_RC(wf_spawn_ex(busy, NULL, &o, NULL), 0);
	}
	return NULL;
}

static void wait_for_tasks(wf_runtime *rt, const char *prefix, int state, size_t want)
{
	uint64_t deadline = mono_ns() + 10000000000u;
	while (tasks_in(rt, prefix, state) < want) {
		cr_assert_lt(mono_ns(), deadline, "%zu task(s) \"%s*\" never reached state %d",
			     want, prefix, state);
		usleep(2000);
	}
}

typedef struct workload {
	wf_runtime *rt;
	int port;
	wf_future *waiters, *busy;
} workload;

/* A runtime with WAITERS tasks waiting on an event and every worker
 * blocked by a task that never suspends. */
static workload start_workload(void)
{
	workload w = {0};
	wf_set_log(keep_log, NULL);
	cr_assert_eq(setenv("WEFT_CONSOLE", "127.0.0.1:0", 1), 0);
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = WORKERS;
	int rc = wf_runtime_start(&cfg, &w.rt);
	cr_assert_eq(rc, 0, "wf_runtime_start: %s", wf_err_name(rc));
	w.port = wf__console_port(w.rt);
	cr_assert_gt(w.port, 0);
	char url[64];
	snprintf(url, sizeof(url), "console: http://127.0.0.1:%d/", w.port);
	cr_assert(log_has(url), "the URL is logged; the log: %s", logbuf);
	cr_assert_eq(wf_event_new(&gate), 0);
	cr_assert_eq(wf_runtime_submit(w.rt, setup_waiters, NULL, &w.waiters), 0);
	wait_for_tasks(w.rt, "console-waiter-", WF_TASK_WAITING, WAITERS);
	/* And the setup task in its join (not in a sleep whose timer a
	 * blocked worker would hold). */
	uint64_t deadline = mono_ns() + 10000000000u;
	for (bool joining = false; !joining; usleep(2000)) {
		cr_assert_lt(mono_ns(), deadline, "the setup task never joined");
		wf_task_info v[64];
		size_t count;
		int stored = wf_task_list(w.rt, v, 64, &count);
		for (int i = 0; i < stored; i++)
			joining |= v[i].waits_on != NULL && strcmp(v[i].waits_on, "join") == 0;
	}
	cr_assert_eq(wf_runtime_submit(w.rt, setup_busy, NULL, &w.busy), 0);
	wait_for_tasks(w.rt, "console-busy-", WF_TASK_RUNNING, WORKERS);
	return w;
}

static void stop_workload(workload *w)
{
	__atomic_store_n(&release_busy, 1, __ATOMIC_RELEASE);
	cr_assert_eq(wf_event_set(gate), 0);
	void *res;
	cr_assert_eq(wf_await(w->waiters, &res), 0);
	cr_assert_eq(wf_await(w->busy, &res), 0);
	wf_future_release(w->waiters);
	wf_future_release(w->busy);
	cr_assert_eq(wf_runtime_shutdown(w->rt), 0);
	cr_assert_eq(wf_event_free(gate), 0);
	wf_set_log(NULL, NULL);
	check_none_failed();
	check_no_leaks();
}

/* ---- the API ------------------------------------------------------------------ */

Test(console, answers_while_every_worker_is_blocked, .timeout = 30)
{
	workload w = start_workload();
	usleep(250 * 1000); /* the busy tasks have run for a while */

	reply r = get(w.port, "/api/metrics");
	cr_assert_eq(r.status, 200, "%s", r.raw);
	cr_assert(strstr(r.raw, "Content-Type: application/json\r\n") != NULL, "%s", r.raw);
	cr_assert(strstr(r.raw, "Connection: close\r\n") != NULL);
	cr_assert(json_valid(r.body), "not JSON: %s", r.body);
	cr_assert(strstr(r.body, "\"workers\":2,") != NULL, "%s", r.body);
	cr_assert(strstr(r.body, "\"busy_workers\":2,") != NULL, "%s", r.body);
	cr_assert(strstr(r.body, "{\"id\":0,\"busy\":1,\"parked\":0,") != NULL, "%s", r.body);
	cr_assert(strstr(r.body, "{\"id\":1,\"busy\":1,\"parked\":0,") != NULL, "%s", r.body);
	cr_assert(strstr(r.body, "\"history\":{\"interval_ms\":500,") != NULL, "%s", r.body);
	cr_assert(strstr(r.body, "\"tasks\"") == NULL, "%s", r.body);
	free(r.raw);

	r = get(w.port, "/api/tasks");
	cr_assert_eq(r.status, 200, "%s", r.raw);
	cr_assert(json_valid(r.body), "not JSON: %s", r.body);
	for (int i = 0; i < WAITERS; i++) {
		char name[64];
		snprintf(name, sizeof(name), "\"name\":\"console-waiter-%d\",\"state\":\"waiting\"", i);
		cr_assert(strstr(r.body, name) != NULL, "%s in %s", name, r.body);
	}
	cr_assert(strstr(r.body, "\"name\":\"console-busy-0\",\"state\":\"running\"") != NULL,
		  "%s", r.body);
	cr_assert(strstr(r.body, "\"name\":\"console-busy-1\",\"state\":\"running\"") != NULL,
		  "%s", r.body);
	cr_assert_eq(count_of(r.body, "\"waits_on\":\"event\""), WAITERS, "%s", r.body);
	/* The setup task joins the first waiter, named by the JSON. */
	cr_assert(strstr(r.body, "\"waits_on\":\"join\"") != NULL, "%s", r.body);
	cr_assert(strstr(r.body, "\"waits_task_name\":\"console-waiter-0\"") != NULL, "%s", r.body);
	cr_assert(strstr(r.body, "\"spawned\":\"") != NULL, "%s", r.body);
	cr_assert(strstr(r.body, "\"states\":{\"new\":0,\"running\":2,") != NULL, "%s", r.body);
	/* Each busy task has been seen running, for 100 ms or more. */
	const char *p = r.body;
	for (int i = 0; i < WORKERS; i++) {
		p = strstr(p, "\"running_ns\":");
		cr_assert_not_null(p, "%s", r.body);
		p += strlen("\"running_ns\":");
		cr_assert_geq(strtoull(p, NULL, 10), 100000000ull, "%s", r.body);
	}
	free(r.raw);

	/* ?top=1: the longest-running task and the longest-waiting one. */
	r = get(w.port, "/api/tasks?top=1");
	cr_assert_eq(r.status, 200);
	cr_assert(json_valid(r.body), "not JSON: %s", r.body);
	cr_assert_eq(count_of(r.body, "\"name\":"), 2, "%s", r.body);
	cr_assert(strstr(r.body, "\"name\":\"console-busy-") != NULL, "%s", r.body);
	cr_assert(strstr(r.body, "\"name\":\"console-waiter-") != NULL, "%s", r.body);
	cr_assert(strstr(r.body, "\"task_count\":") != NULL, "%s", r.body);
	free(r.raw);

	/* The page: served, self-contained, and free of runtime data until
	 * its script runs. */
	r = get(w.port, "/");
	cr_assert_eq(r.status, 200);
	cr_assert(strstr(r.raw, "Content-Type: text/html; charset=utf-8\r\n") != NULL);
	cr_assert(strstr(r.body, "<script>") != NULL && strstr(r.body, "/api/tasks") != NULL);
	cr_assert(strstr(r.body, "console-") == NULL);
	cr_assert(strstr(r.body, "data-worker=\"0") == NULL);
	cr_assert(strstr(r.body, "src=") == NULL && strstr(r.body, "href=") == NULL &&
		  strstr(r.body, "@import") == NULL && strstr(r.body, "url(") == NULL,
		  "the page loads nothing from elsewhere");
	free(r.raw);

	stop_workload(&w);
}

Test(console, refuses_what_it_does_not_serve, .timeout = 30)
{
	workload w = start_workload();
	reply r = get(w.port, "/nope");
	cr_assert_eq(r.status, 404, "%s", r.raw);
	free(r.raw);
	r = get(w.port, "/api/metrics/../tasks");
	cr_assert_eq(r.status, 404, "%s", r.raw);
	free(r.raw);

	static const char post[] = "POST /api/tasks HTTP/1.1\r\nHost: 127.0.0.1\r\n"
				   "Content-Length: 5\r\n\r\nhello";
	r = exchange(w.port, post, sizeof(post) - 1, false);
	cr_assert_eq(r.status, 405, "%s", r.raw);
	cr_assert(strstr(r.raw, "Allow: GET\r\n") != NULL, "%s", r.raw);
	free(r.raw);
	static const char head[] = "HEAD / HTTP/1.1\r\n\r\n";
	r = exchange(w.port, head, sizeof(head) - 1, false);
	cr_assert_eq(r.status, 405, "%s", r.raw);
	free(r.raw);

	/* Garbage: a TLS hello, binary with NULs, a broken request line,
	 * a request cut short, nothing at all. */
	static const char tls[] = "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n";
	r = exchange(w.port, tls, sizeof(tls) - 1, false);
	cr_assert_eq(r.status, 400, "%s", r.raw);
	free(r.raw);
	static const char nul[] = "GET /\0 HTTP/1.1\r\n\r\n";
	r = exchange(w.port, nul, sizeof(nul) - 1, false);
	cr_assert_eq(r.status, 400, "%s", r.raw);
	free(r.raw);
	static const char *const bad[] = {
		"GET\r\n\r\n", "GET /\r\n\r\n", "GET  / HTTP/1.1\r\n\r\n", "get / HTTP/1.1\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n", "GET / HTTP/1.1 extra\r\n\r\n", "\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		r = exchange(w.port, bad[i], strlen(bad[i]), false);
		cr_assert_eq(r.status, 400, "%s: %s", bad[i], r.raw);
		free(r.raw);
	}
	r = exchange(w.port, "GET /api/metr", 13, true);
	cr_assert_eq(r.status, 400, "%s", r.raw);
	free(r.raw);
	r = exchange(w.port, "", 0, true);
	cr_assert_eq(r.raw[0], '\0', "%s", r.raw);
	free(r.raw);

	/* Too big: the head is read up to 8 KiB, no further. */
	size_t big = 64 * 1024;
	char *huge = malloc(big);
	cr_assert_not_null(huge);
	memcpy(huge, "GET / HTTP/1.1\r\nX: ", 19);
	memset(huge + 19, 'a', big - 19);
	r = exchange(w.port, huge, big, false);
	cr_assert_eq(r.status, 431, "%s", r.raw);
	free(r.raw);
	free(huge);

	/* A Host that is not the loopback (a DNS name pointed at 127.0.0.1
	 * by a web page elsewhere); none at all is fine. */
	static const char evil[] = "GET /api/tasks HTTP/1.1\r\nHost: evil.example:8080\r\n\r\n";
	r = exchange(w.port, evil, sizeof(evil) - 1, false);
	cr_assert_eq(r.status, 403, "%s", r.raw);
	free(r.raw);
	static const char plain[] = "GET /api/metrics?x=1 HTTP/1.0\r\n\r\n";
	r = exchange(w.port, plain, sizeof(plain) - 1, false);
	cr_assert_eq(r.status, 200, "%s", r.raw);
	free(r.raw);
	static const char local[] = "GET / HTTP/1.1\r\nhost: LOCALHOST\r\n\r\n";
	r = exchange(w.port, local, sizeof(local) - 1, false);
	cr_assert_eq(r.status, 200, "%s", r.raw);
	free(r.raw);

	/* A client that connects and says nothing holds the console up for
	 * 2 s at most; meanwhile the next one waits, then is answered. */
	int idle = dial(w.port);
	uint64_t t0 = mono_ns();
	r = get(w.port, "/api/metrics");
	cr_assert_eq(r.status, 200, "%s", r.raw);
	cr_assert_lt(mono_ns() - t0, 4000000000ull);
	free(r.raw);
	close(idle);

	/* And after all that, it still serves. */
	r = get(w.port, "/api/tasks");
	cr_assert_eq(r.status, 200, "%s", r.raw);
	cr_assert(json_valid(r.body));
	free(r.raw);
	stop_workload(&w);
}

/* ---- WEFT_CONSOLE's value --------------------------------------------------- */

static int start_with(const char *spec, int *port)
{
	cr_assert_eq(setenv("WEFT_CONSOLE", spec, 1), 0);
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = 1;
	wf_runtime *rt;
	int rc = wf_runtime_start(&cfg, &rt);
	if (rc == 0) {
		*port = wf__console_port(rt);
		cr_assert_eq(wf_runtime_shutdown(rt), 0);
	}
	return rc;
}

Test(console, serves_the_loopback_only, .timeout = 30)
{
	wf_set_log(keep_log, NULL);
	int port = -1;
	static const char *const refused[] = {"0.0.0.0:0", "192.168.1.1:8080", "example.com:80",
					      "[::]:0", "127.0.0.2:0", ":0"};
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++) {
		loglen = 0;
		logbuf[0] = '\0';
		cr_assert_eq(start_with(refused[i], &port), WF_EINVAL, "%s", refused[i]);
		char want[128];
		snprintf(want, sizeof(want), "WEFT_CONSOLE=%s: the console listens on the loopback only",
			 refused[i]);
		cr_assert(log_has(want), "%s: the log: %s", refused[i], logbuf);
	}
	static const char *const malformed[] = {"127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:80x",
						"[::1]", "[::1]0", "localhost:-1", "abc"};
	for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++) {
		loglen = 0;
		logbuf[0] = '\0';
		cr_assert_eq(start_with(malformed[i], &port), WF_EINVAL, "%s", malformed[i]);
		cr_assert(log_has("expected 127.0.0.1:PORT"), "%s: the log: %s", malformed[i],
			  logbuf);
	}
	/* Empty: no console. */
	port = -1;
	cr_assert_eq(start_with("", &port), 0);
	cr_assert_eq(port, 0);
	port = 0;
	cr_assert_eq(start_with("localhost:0", &port), 0);
	cr_assert_gt(port, 0);
	/* A port that is taken fails the start, with the reason. */
	int fd = socket(AF_INET, SOCK_STREAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET};
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(fd, 1), 0);
	socklen_t len = sizeof(sa);
	cr_assert_eq(getsockname(fd, (struct sockaddr *)&sa, &len), 0);
	char spec[64];
	snprintf(spec, sizeof(spec), "127.0.0.1:%d", ntohs(sa.sin_port));
	cr_assert_eq(start_with(spec, &port), -EADDRINUSE);
	cr_assert(log_has(": bind: "), "the log: %s", logbuf);
	close(fd);
	wf_set_log(NULL, NULL);
}

/* ---- the page, in a browser -------------------------------------------------- */

static bool on_path(const char *prog, char *out, size_t cap)
{
	const char *path = getenv("PATH");
	if (path == NULL)
		return false;
	for (const char *p = path; *p != '\0';) {
		size_t n = strcspn(p, ":");
		snprintf(out, cap, "%.*s/%s", (int)n, p, prog);
		if (n > 0 && access(out, X_OK) == 0)
			return true;
		p += n + (p[n] == ':');
	}
	return false;
}

/* Runs chromium on url; its standard output (the DOM), malloc'd. */
static char *dump_dom(const char *chromium, const char *url)
{
	char profile[] = "/tmp/weft-console-XXXXXX";
	cr_assert_not_null(mkdtemp(profile));
	char user_data[128];
	snprintf(user_data, sizeof(user_data), "--user-data-dir=%s", profile);
	char *const argv[] = {(char *)chromium,
			      "--headless",
			      "--no-sandbox",
			      "--disable-gpu",
			      "--no-first-run",
			      "--disable-extensions",
			      "--disable-dev-shm-usage",
			      user_data,
			      "--virtual-time-budget=4000",
			      "--dump-dom",
			      (char *)url,
			      NULL};
	int out[2];
	cr_assert_eq(pipe2(out, O_CLOEXEC), 0);
	posix_spawn_file_actions_t fa;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, out[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	posix_spawnattr_t at;
	posix_spawnattr_init(&at);
	posix_spawnattr_setpgroup(&at, 0); /* its own group, to stop it whole */
	sigset_t none;
	sigemptyset(&none);
	posix_spawnattr_setsigmask(&at, &none);
	posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK);
	pid_t pid;
	int rc = posix_spawn(&pid, chromium, &fa, &at, argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	close(out[1]);
	cr_assert_eq(rc, 0, "posix_spawn %s: %s", chromium, strerror(rc));
	size_t cap = 1 << 16, n = 0;
	char *dom = malloc(cap + 1);
	cr_assert_not_null(dom);
	uint64_t deadline = mono_ns() + 20000000000u;
	bool timed_out = false;
	for (;;) {
		uint64_t now = mono_ns();
		if (now >= deadline) {
			timed_out = true;
			break;
		}
		struct pollfd p = {.fd = out[0], .events = POLLIN};
		if (poll(&p, 1, (int)((deadline - now) / 1000000u) + 1) <= 0)
			continue;
		if (n == cap) {
			cap *= 2;
			dom = realloc(dom, cap + 1);
			cr_assert_not_null(dom);
		}
		ssize_t k = read(out[0], dom + n, cap - n);
		if (k <= 0)
			break;
		n += (size_t)k;
	}
	dom[n] = '\0';
	close(out[0]);
	if (timed_out)
		kill(-pid, SIGKILL);
	int status;
	waitpid(pid, &status, 0);
	kill(-pid, SIGKILL); /* whatever of it is left */
	char rm[160];
	snprintf(rm, sizeof(rm), "rm -rf '%s'", profile);
	if (system(rm) != 0)
		fprintf(stderr, "could not remove %s\n", profile);
	cr_assert(!timed_out, "chromium did not finish in 20 s");
	return dom;
}

Test(console, the_page_shows_live_data_in_a_browser, .timeout = 30)
{
	char chromium[4096];
	if (!on_path("chromium", chromium, sizeof(chromium)))
		cr_skip_test("chromium is not installed: the page was not checked in a browser "
			     "(apt-get install chromium)");
	workload w = start_workload();
	usleep(1200 * 1000); /* history enough for a line on the chart */
	char url[64];
	snprintf(url, sizeof(url), "http://127.0.0.1:%d/", w.port);
	char *dom = dump_dom(chromium, url);
	stop_workload(&w);
	/* Rows and names the page's script made from the API's answers: the
	 * page as served holds none of them (the first test checks). */
	cr_assert(strstr(dom, "<tr data-worker=\"0\"") != NULL, "no worker row: %s", dom);
	cr_assert(strstr(dom, "<tr data-worker=\"1\"") != NULL, "no worker row: %s", dom);
	cr_assert(strstr(dom, "console-busy-0") != NULL, "no running task: %s", dom);
	cr_assert(strstr(dom, "console-waiter-0") != NULL, "no waiting task: %s", dom);
	cr_assert(strstr(dom, "class=\"pill blocking\"") != NULL, "no blocked worker: %s", dom);
	cr_assert(strstr(dom, "<polyline") != NULL, "no chart: %s", dom);
	cr_assert(strstr(dom, "dot ok") != NULL, "the page did not reach the API: %s", dom);
	free(dom);
}
