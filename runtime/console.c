/*
 * The live console: with WEFT_CONSOLE=127.0.0.1:PORT (or [::1]:PORT,
 * localhost:PORT; PORT 0 picks a free port), each runtime serves on the
 * loopback
 *   GET /              a page that polls the two below every 500 ms and
 *                      shows the workers, the rates, a chart of the last
 *                      minute and the longest-running and longest-waiting
 *                      tasks (self-contained: no script or font from
 *                      elsewhere);
 *   GET /api/metrics   {"metrics":{...},"workers":[...],"history":{...}}
 *   GET /api/tasks     {"tasks":[...],"task_count":n,"states":{...}}; with
 *                      ?top=N only the N longest-running and the N
 *                      longest-waiting tasks.
 * The JSON is observe.c's (wf__observe_json), as wf_runtime_json writes.
 *
 * A plain thread per runtime, not a task: it must answer when every
 * worker is blocked by a task that never suspends, which is when it is
 * needed. It waits in poll() on the listening socket and an eventfd that
 * stops it, with a 100 ms timeout at which it samples what each worker
 * runs (for "running_ns") and, every 500 ms, the counters (for the
 * chart). One request per connection, answered and closed; a request is
 * read for 2 s at most and 8 KiB at most, so a slow or hostile client
 * holds the console up for 2 s at worst and nothing it sends is trusted.
 *
 * Loopback only, and a request whose Host header names anything but the
 * loopback is refused (403): a web page elsewhere cannot reach the console
 * through a DNS name that points at 127.0.0.1. There is no authentication:
 * any process of the machine can read the console (task names, spawn
 * sites), which is why it is off unless asked for.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "console.h"
#include "rt.h"

#define TICK_MS 100        /* samples what the workers run */
#define HISTORY_MS 500     /* samples the counters for the chart */
#define HISTORY_LEN 121    /* a minute of them, and one to diff against */
#define REQUEST_MAX 8192   /* bytes of a request's head */
#define REQUEST_MS 2000    /* to read a request, and to write the answer */
#define TOP_MAX 1000       /* ?top=N at most */

extern const char wf__console_page[];

struct wf__console {
	wf_runtime *rt;
	int lfd;    /* listening */
	int stopfd; /* eventfd: written to stop the thread */
	int port;
	pthread_t thread;
	wf__run_clock *runs;
	wf__history_sample hist[HISTORY_LEN]; /* oldest first */
	size_t nhist;
	uint64_t next_hist_ns;
};

/* ---- WEFT_CONSOLE ---------------------------------------------------------- */

/* Parses "HOST:PORT", "[::1]:PORT" or "PORT" (127.0.0.1) into *sa.
 * WF_EINVAL, logged, for anything else. */
static int parse_spec(const char *spec, struct sockaddr_storage *sa, socklen_t *salen)
{
	char host[64];
	const char *port;
	const char *colon = strrchr(spec, ':');
	if (spec[0] == '[') {
		const char *end = strchr(spec, ']');
		if (end == NULL || end[1] != ':' || (size_t)(end - spec - 1) >= sizeof(host))
			goto bad;
		memcpy(host, spec + 1, (size_t)(end - spec - 1));
		host[end - spec - 1] = '\0';
		port = end + 2;
	} else if (colon == NULL) {
		snprintf(host, sizeof(host), "127.0.0.1");
		port = spec;
	} else {
		if ((size_t)(colon - spec) >= sizeof(host))
			goto refused_long;
		memcpy(host, spec, (size_t)(colon - spec));
		host[colon - spec] = '\0';
		port = colon + 1;
	}
	size_t nd = strspn(port, "0123456789");
	if (nd == 0 || nd > 5 || port[nd] != '\0' || atol(port) > 65535)
		goto bad;
	memset(sa, 0, sizeof(*sa));
	if (strcmp(host, "127.0.0.1") == 0 || strcasecmp(host, "localhost") == 0) {
		struct sockaddr_in *in = (struct sockaddr_in *)sa;
		in->sin_family = AF_INET;
		in->sin_port = htons((uint16_t)atol(port));
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		*salen = sizeof(*in);
		return 0;
	}
	if (strcmp(host, "::1") == 0) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)sa;
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)atol(port));
		in6->sin6_addr = in6addr_loopback;
		*salen = sizeof(*in6);
		return 0;
	}
	wf__log(WF_LOG_ERROR,
		"WEFT_CONSOLE=%s: the console listens on the loopback only (127.0.0.1, ::1 or "
		"localhost), not on \"%s\": it has no authentication",
		spec, host);
	return WF_EINVAL;
refused_long:
	wf__log(WF_LOG_ERROR,
		"WEFT_CONSOLE=%s: the console listens on the loopback only (127.0.0.1, ::1 or "
		"localhost)",
		spec);
	return WF_EINVAL;
bad:
	wf__log(WF_LOG_ERROR,
		"WEFT_CONSOLE=%s: expected 127.0.0.1:PORT, [::1]:PORT or localhost:PORT, PORT 0 "
		"(any free port) to 65535",
		spec);
	return WF_EINVAL;
}

/* ---- answering a request ----------------------------------------------------- */

static uint64_t now_ms(void)
{
	return wf__now_ns() / 1000000u;
}

/* Waits for fd to be ready for `events` until deadline (ms); false if not. */
static bool wait_fd(int fd, short events, uint64_t deadline)
{
	for (;;) {
		uint64_t now = now_ms();
		if (now >= deadline)
			return false;
		struct pollfd p = {.fd = fd, .events = events};
		int r = poll(&p, 1, (int)(deadline - now));
		if (r > 0)
			return true;
		if (r < 0 && errno != EINTR)
			return false;
	}
}

static void send_all(int fd, const char *p, size_t n, uint64_t deadline)
{
	while (n > 0) {
		ssize_t k = send(fd, p, n, MSG_NOSIGNAL | MSG_DONTWAIT);
		if (k > 0) {
			p += k;
			n -= (size_t)k;
		} else if (k < 0 && errno == EINTR) {
			continue;
		} else if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!wait_fd(fd, POLLOUT, deadline))
				return;
		} else {
			return;
		}
	}
}

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	default: return "Internal Server Error";
	}
}

static void respond(int fd, int status, const char *type, const char *body, size_t len,
		    uint64_t deadline)
{
	char head[512];
	int k = snprintf(head, sizeof(head),
			 "HTTP/1.1 %d %s\r\n"
			 "Content-Type: %s\r\n"
			 "Content-Length: %zu\r\n"
			 "Cache-Control: no-store\r\n"
			 "X-Content-Type-Options: nosniff\r\n"
			 "%s"
			 "Connection: close\r\n\r\n",
			 status, reason(status), type, len, status == 405 ? "Allow: GET\r\n" : "");
	send_all(fd, head, (size_t)k, deadline);
	send_all(fd, body, len, deadline);
}

static void respond_text(int fd, int status, uint64_t deadline)
{
	char body[64];
	int k = snprintf(body, sizeof(body), "%d %s\n", status, reason(status));
	respond(fd, status, "text/plain; charset=utf-8", body, (size_t)k, deadline);
}

/* The Host header's host names the loopback (or there is none). */
static bool host_ok(const char *head)
{
	for (const char *l = strstr(head, "\r\n"); l != NULL; l = strstr(l + 2, "\r\n")) {
		if (strncasecmp(l + 2, "host:", 5) != 0)
			continue;
		const char *h = l + 7;
		h += strspn(h, " \t");
		size_t n = h[0] == '[' ? strcspn(h, "]") + 1 : strcspn(h, ":\r\n \t");
		return (n == 9 && strncmp(h, "127.0.0.1", 9) == 0) ||
		       (n == 9 && strncasecmp(h, "localhost", 9) == 0) ||
		       (n == 5 && strncmp(h, "[::1]", 5) == 0);
	}
	return true;
}

static void serve_json(struct wf__console *c, int fd, unsigned parts, size_t top,
		       uint64_t deadline)
{
	wf__run_clock_sample(c->rt, c->runs);
	wf__json_extra x = {.runs = c->runs,
			    .hist = c->hist,
			    .nhist = c->nhist,
			    .hist_interval_ms = HISTORY_MS};
	char *body;
	size_t len;
	if (wf__observe_json(c->rt, parts, &x, top, &body, &len) != 0) {
		respond_text(fd, 500, deadline);
		return;
	}
	respond(fd, 200, "application/json", body, len, deadline);
	free(body);
}

/* ?top=N in a query string: N (at most TOP_MAX), or 0. */
static size_t query_top(const char *q)
{
	for (const char *p = q; p != NULL && *p != '\0'; p = strchr(p, '&'), p = p ? p + 1 : p) {
		if (strncmp(p, "top=", 4) != 0)
			continue;
		size_t v = 0;
		for (p += 4; *p >= '0' && *p <= '9'; p++)
			if ((v = v * 10 + (size_t)(*p - '0')) > TOP_MAX)
				v = TOP_MAX;
		return v;
	}
	return 0;
}

static void serve(struct wf__console *c, int fd)
{
	uint64_t deadline = now_ms() + REQUEST_MS;
	char req[REQUEST_MAX + 1];
	size_t len = 0;
	char *end = NULL;
	while (end == NULL && len < REQUEST_MAX) {
		ssize_t k = recv(fd, req + len, REQUEST_MAX - len, MSG_DONTWAIT);
		if (k > 0) {
			len += (size_t)k;
			req[len] = '\0';
			if (memchr(req, '\0', len) != NULL) { /* no NUL in a request */
				respond_text(fd, 400, deadline);
				return;
			}
			end = strstr(req, "\r\n\r\n");
		} else if (k == 0) {
			break;
		} else if (errno == EINTR) {
			continue;
		} else if (errno != EAGAIN && errno != EWOULDBLOCK) {
			return;
		} else if (!wait_fd(fd, POLLIN, deadline)) {
			break;
		}
	}
	if (end == NULL) {
		if (len == REQUEST_MAX)
			respond_text(fd, 431, deadline);
		else if (len > 0)
			respond_text(fd, 400, deadline);
		return;
	}
	end[2] = '\0'; /* the head, each line ending in \r\n */
	/* The request line: METHOD SP TARGET SP HTTP/1.x */
	char *sp1 = strchr(req, ' ');
	char *sp2 = sp1 != NULL ? strchr(sp1 + 1, ' ') : NULL;
	char *eol = strstr(req, "\r\n");
	if (sp1 == NULL || sp2 == NULL || sp2 > eol || sp1 == req || sp2 == sp1 + 1 ||
	    strncmp(sp2 + 1, "HTTP/1.", 7) != 0 || sp2 + 9 != eol) {
		respond_text(fd, 400, deadline);
		return;
	}
	for (const char *p = req; p < sp1; p++)
		if (*p < 'A' || *p > 'Z') {
			respond_text(fd, 400, deadline);
			return;
		}
	*sp1 = '\0';
	*sp2 = '\0';
	char *target = sp1 + 1;
	if (!host_ok(eol)) {
		respond_text(fd, 403, deadline);
		return;
	}
	if (strcmp(req, "GET") != 0) {
		respond_text(fd, 405, deadline);
		return;
	}
	char *query = strchr(target, '?');
	if (query != NULL)
		*query++ = '\0';
	if (strcmp(target, "/") == 0 || strcmp(target, "/index.html") == 0)
		respond(fd, 200, "text/html; charset=utf-8", wf__console_page,
			strlen(wf__console_page), deadline);
	else if (strcmp(target, "/api/metrics") == 0)
		serve_json(c, fd, WF__JSON_METRICS, 0, deadline);
	else if (strcmp(target, "/api/tasks") == 0)
		serve_json(c, fd, WF__JSON_TASKS | WF__JSON_SUMMARY, query_top(query), deadline);
	else
		respond_text(fd, 404, deadline);
}

/* Closes a connection once the answer is sent: what the client still
 * sends (a body, more garbage) is read and dropped for a moment, so that
 * closing with unread data does not reset the connection before the
 * client has read the answer. */
static void finish(int fd)
{
	shutdown(fd, SHUT_WR);
	uint64_t deadline = now_ms() + 200;
	char sink[4096];
	size_t drained = 0;
	while (drained < 65536 && wait_fd(fd, POLLIN, deadline)) {
		ssize_t k = recv(fd, sink, sizeof(sink), MSG_DONTWAIT);
		if (k <= 0 && !(k < 0 && (errno == EINTR || errno == EAGAIN)))
			break;
		if (k > 0)
			drained += (size_t)k;
	}
	close(fd);
}

/* ---- the thread ---------------------------------------------------------------- */

static void sample_history(struct wf__console *c)
{
	wf_metrics m;
	wf_runtime_metrics(c->rt, &m, NULL, 0);
	if (c->nhist == HISTORY_LEN) {
		memmove(c->hist, c->hist + 1, (HISTORY_LEN - 1) * sizeof(c->hist[0]));
		c->nhist--;
	}
	c->hist[c->nhist++] = (wf__history_sample){.uptime_ns = m.uptime_ns,
						   .spawned = m.spawned,
						   .finished = m.finished,
						   .steals = m.steals,
						   .inbox = m.inbox,
						   .polls = m.polls};
}

static void *console_main(void *arg)
{
	struct wf__console *c = arg;
	struct pollfd p[2] = {{.fd = c->stopfd, .events = POLLIN}, {.fd = c->lfd, .events = POLLIN}};
	nfds_t np = 2;
	for (;;) {
		int r = poll(p, np, TICK_MS);
		if (r < 0 && errno != EINTR)
			break;
		if (p[0].revents != 0)
			break;
		wf__run_clock_sample(c->rt, c->runs);
		uint64_t now = wf__now_ns();
		if (now >= c->next_hist_ns) {
			sample_history(c);
			c->next_hist_ns = now + (uint64_t)HISTORY_MS * 1000000u;
		}
		np = 2;
		if (r > 0 && p[1].revents != 0) {
			int fd = accept4(c->lfd, NULL, NULL, SOCK_CLOEXEC);
			if (fd >= 0) {
				serve(c, fd);
				finish(fd);
			} else if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
				   errno != ECONNABORTED) {
				np = 1; /* out of descriptors, say: wait a tick */
			}
		}
	}
	return NULL;
}

int wf__console_start(wf_runtime *rt, const char *spec, wf__console **out)
{
	*out = NULL;
	struct sockaddr_storage sa;
	socklen_t salen;
	int rc = parse_spec(spec, &sa, &salen);
	if (rc != 0)
		return rc;
	struct wf__console *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return WF_ENOMEM;
	c->rt = rt;
	c->lfd = c->stopfd = -1;
	c->runs = calloc(rt->nworkers, sizeof(*c->runs));
	if (c->runs == NULL) {
		rc = WF_ENOMEM;
		goto fail;
	}
	const char *what = "socket";
	c->lfd = socket(sa.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->lfd < 0)
		goto sys_fail;
	int one = 1;
	setsockopt(c->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	what = "bind";
	if (bind(c->lfd, (struct sockaddr *)&sa, salen) != 0)
		goto sys_fail;
	what = "listen";
	if (listen(c->lfd, 16) != 0)
		goto sys_fail;
	what = "getsockname";
	salen = sizeof(sa);
	if (getsockname(c->lfd, (struct sockaddr *)&sa, &salen) != 0)
		goto sys_fail;
	c->port = ntohs(sa.ss_family == AF_INET ? ((struct sockaddr_in *)&sa)->sin_port
						: ((struct sockaddr_in6 *)&sa)->sin6_port);
	what = "eventfd";
	c->stopfd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (c->stopfd < 0)
		goto sys_fail;
	sample_history(c);
	c->next_hist_ns = wf__now_ns() + (uint64_t)HISTORY_MS * 1000000u;
	/* Every signal blocked: the program's handlers run on its threads. */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	rc = -pthread_create(&c->thread, NULL, console_main, c);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	if (rc != 0) {
		wf__log(WF_LOG_ERROR, "WEFT_CONSOLE=%s: cannot start its thread: %s", spec,
			wf_strerror(rc));
		goto fail;
	}
	wf__log(WF_LOG_INFO, "console: http://%s:%d/",
		sa.ss_family == AF_INET ? "127.0.0.1" : "[::1]", c->port);
	*out = c;
	return 0;
sys_fail:
	rc = -errno;
	wf__log(WF_LOG_ERROR, "WEFT_CONSOLE=%s: %s: %s", spec, what, wf_strerror(rc));
fail:
	if (c->lfd >= 0)
		close(c->lfd);
	if (c->stopfd >= 0)
		close(c->stopfd);
	free(c->runs);
	free(c);
	return rc;
}

void wf__console_stop(wf__console *c)
{
	uint64_t one = 1;
	while (write(c->stopfd, &one, sizeof(one)) < 0 && errno == EINTR)
		;
	pthread_join(c->thread, NULL);
	close(c->lfd);
	close(c->stopfd);
	free(c->runs);
	free(c);
}

int wf__console_port_of(const wf__console *c)
{
	return c->port;
}

/* ---- the page ------------------------------------------------------------------ */

/* Self-contained: its style and script are here, nothing is fetched but
 * the API. It shows no runtime data until its script has run. */
const char wf__console_page[] =
	"<!doctype html>\n"
	"<html lang=\"en\">\n"
	"<head>\n"
	"<meta charset=\"utf-8\">\n"
	"<meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\n"
	"<title>weft console</title>\n"
	"<style>\n"
	":root{--bg:#f5f6f8;--card:#fff;--ink:#111827;--mute:#6b7280;--line:#e5e7eb;--a:#2563eb;--b:#db2777}\n"
	"*{box-sizing:border-box}\n"
	"body{margin:0;font:13px/1.45 system-ui,-apple-system,\"Segoe UI\",Roboto,\"Helvetica Neue\",Arial,sans-serif;background:var(--bg);color:var(--ink)}\n"
	"header{display:flex;align-items:baseline;gap:14px;padding:10px 20px;background:#111827;color:#f9fafb}\n"
	"header h1{font-size:15px;margin:0;font-weight:600;letter-spacing:.02em}\n"
	"header .sub{color:#9ca3af}\n"
	"#status{margin-left:auto;color:#d1d5db}\n"
	".dot{display:inline-block;width:8px;height:8px;border-radius:50%;margin-right:6px;background:#9ca3af}\n"
	".dot.ok{background:#22c55e}.dot.bad{background:#ef4444}\n"
	"main{padding:14px 20px 24px;display:grid;gap:14px;grid-template-columns:minmax(0,1.25fr) minmax(0,1fr)}\n"
	".card{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 14px;min-width:0}\n"
	".wide{grid-column:1/-1}\n"
	"h2{font-size:11px;text-transform:uppercase;letter-spacing:.06em;color:var(--mute);margin:0 0 8px;font-weight:600}\n"
	".stats{display:grid;grid-template-columns:repeat(6,minmax(0,1fr));gap:12px}\n"
	".stat b{display:block;font-size:22px;font-weight:600;font-variant-numeric:tabular-nums}\n"
	".stat span{color:var(--mute);font-size:12px}\n"
	"table{width:100%;border-collapse:collapse;font-variant-numeric:tabular-nums}\n"
	"th{text-align:left;color:var(--mute);font-weight:500;border-bottom:1px solid var(--line);padding:3px 6px;white-space:nowrap}\n"
	"td{padding:3px 6px;border-bottom:1px solid #f1f2f4;white-space:nowrap;overflow:hidden;text-overflow:ellipsis;max-width:260px}\n"
	".num{text-align:right}\n"
	".pill{display:inline-block;min-width:62px;text-align:center;padding:0 8px;border-radius:9px;font-size:11px;color:#fff}\n"
	".busy{background:#16a34a}.blocking{background:#dc2626}.parked{background:#9ca3af}.searching{background:#d97706}\n"
	"td.task{max-width:170px}\n"
	"tr.blocked td{background:#fef2f2}\n"
	".site,.id{color:var(--mute);font-family:ui-monospace,SFMono-Regular,Menlo,monospace;font-size:12px}\n"
	".empty{color:var(--mute)}\n"
	"svg{width:100%;height:auto;display:block}\n"
	"svg text{fill:var(--mute);font-size:10px}\n"
	".legend{float:right;text-transform:none;letter-spacing:0;font-weight:500}\n"
	".legend i{display:inline-block;width:12px;height:3px;margin:0 5px 3px 12px;vertical-align:middle}\n"
	"</style>\n"
	"</head>\n"
	"<body>\n"
	"<header><h1>weft console</h1><span class=\"sub\" id=\"sub\">connecting&hellip;</span><span id=\"status\"></span></header>\n"
	"<main>\n"
	"<section class=\"card wide\"><div class=\"stats\" id=\"stats\"></div></section>\n"
	"<section class=\"card\"><h2>Workers</h2>\n"
	"<table><thead><tr><th>#</th><th>state</th><th>running</th><th class=\"num\">polls/s</th><th class=\"num\">steals/s</th><th class=\"num\">wakes/s</th><th class=\"num\">queue</th></tr></thead><tbody id=\"workers\"></tbody></table></section>\n"
	"<section class=\"card\"><h2>The last minute <span class=\"legend\"><i style=\"background:var(--a)\"></i>tasks/s<i style=\"background:var(--b)\"></i>steals/s</span></h2>\n"
	"<svg id=\"chart\" viewBox=\"0 0 560 190\" role=\"img\" aria-label=\"tasks and steals per second\"></svg></section>\n"
	"<section class=\"card wide\"><h2>Longest-running tasks, without suspending</h2>\n"
	"<table><thead><tr><th>task</th><th class=\"num\">id</th><th class=\"num\">worker</th><th>state</th><th>waits on</th><th class=\"num\">for</th><th>spawned at</th></tr></thead><tbody id=\"running\"></tbody></table></section>\n"
	"<section class=\"card wide\"><h2>Longest-waiting tasks</h2>\n"
	"<table><thead><tr><th>task</th><th class=\"num\">id</th><th class=\"num\">worker</th><th>state</th><th>waits on</th><th class=\"num\">for</th><th>spawned at</th></tr></thead><tbody id=\"waiting\"></tbody></table></section>\n"
	"</main>\n"
	"<script>\n"
	"'use strict';\n"
	"const $ = id => document.getElementById(id);\n"
	"const esc = s => String(s).replace(/[&<>\"']/g, c => '&#' + c.charCodeAt(0) + ';');\n"
	"function dur(ns) {\n"
	"  const ms = ns / 1e6;\n"
	"  if (ms < 1000) return Math.round(ms) + ' ms';\n"
	"  const s = ms / 1e3;\n"
	"  if (s < 60) return s.toFixed(1) + ' s';\n"
	"  const m = Math.floor(s / 60);\n"
	"  if (m < 60) return m + ' min ' + Math.floor(s % 60) + ' s';\n"
	"  return Math.floor(m / 60) + ' h ' + (m % 60) + ' min';\n"
	"}\n"
	"function fmt(x) {\n"
	"  if (x >= 1e6) return (x / 1e6).toFixed(1) + 'M';\n"
	"  if (x >= 1e4) return (x / 1e3).toFixed(1) + 'k';\n"
	"  if (x >= 100) return String(Math.round(x));\n"
	"  return x === Math.round(x) ? String(x) : x.toFixed(1);\n"
	"}\n"
	"function nice(v) {\n"
	"  const e = Math.pow(10, Math.floor(Math.log10(v))), f = v / e;\n"
	"  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * e;\n"
	"}\n"
	"/* Rates between the server's samples of the counters (history). */\n"
	"function rates(h) {\n"
	"  const S = h.samples, F = h.fields, ix = {}, out = [];\n"
	"  F.forEach((n, i) => { ix[n] = i; });\n"
	"  for (let i = 1; i < S.length; i++) {\n"
	"    const dt = (S[i][ix.uptime_ms] - S[i - 1][ix.uptime_ms]) / 1e3;\n"
	"    if (dt <= 0) continue;\n"
	"    const r = k => Math.max(0, S[i][ix[k]] - S[i - 1][ix[k]]) / dt;\n"
	"    out.push({t: S[i][ix.uptime_ms], tasks: r('finished'), spawned: r('spawned'),\n"
	"              steals: r('steals'), inbox: r('inbox'), polls: r('polls')});\n"
	"  }\n"
	"  return out;\n"
	"}\n"
	"function chart(rs) {\n"
	"  const W = 560, H = 190, L = 44, R = 10, T = 8, B = 22, pw = W - L - R, ph = H - T - B;\n"
	"  const now = rs.length ? rs[rs.length - 1].t : 0;\n"
	"  const recent = rs.filter(r => now - r.t <= 60000);\n"
	"  let max = 1;\n"
	"  for (const r of recent) max = Math.max(max, r.tasks, r.steals);\n"
	"  max = nice(max);\n"
	"  const x = t => L + pw * (1 - (now - t) / 60000), y = v => T + ph * (1 - v / max);\n"
	"  let s = '';\n"
	"  for (let i = 0; i <= 4; i++) {\n"
	"    const yy = y(max * i / 4).toFixed(1);\n"
	"    s += '<line x1=\"' + L + '\" x2=\"' + (W - R) + '\" y1=\"' + yy + '\" y2=\"' + yy + '\" stroke=\"' + (i ? '#eef0f3' : '#d1d5db') + '\"/>';\n"
	"    s += '<text x=\"' + (L - 6) + '\" y=\"' + (+yy + 3) + '\" text-anchor=\"end\">' + fmt(max * i / 4) + '</text>';\n"
	"  }\n"
	"  for (const [label, ago] of [['60 s ago', 60000], ['45 s', 45000], ['30 s', 30000], ['15 s', 15000], ['now', 0]])\n"
	"    s += '<text x=\"' + x(now - ago).toFixed(1) + '\" y=\"' + (H - 6) + '\" text-anchor=\"' + (ago === 60000 ? 'start' : ago ? 'middle' : 'end') + '\">' + label + '</text>';\n"
	"  const line = (k, color) => {\n"
	"    if (recent.length < 2) return '';\n"
	"    const pts = recent.map(r => x(r.t).toFixed(1) + ',' + y(r[k]).toFixed(1));\n"
	"    return '<polyline fill=\"none\" stroke=\"' + color + '\" stroke-width=\"1.8\" stroke-linejoin=\"round\" points=\"' + pts.join(' ') + '\"/>';\n"
	"  };\n"
	"  $('chart').innerHTML = s + line('steals', '#db2777') + line('tasks', '#2563eb');\n"
	"}\n"
	"function waits(k) {\n"
	"  if (!k.waits_on) return '';\n"
	"  let s = esc(k.waits_on);\n"
	"  if (k.waits_task) s += (k.waits_on === 'join' ? ' of ' : ' held by ') + (k.waits_task_name ? esc(k.waits_task_name) + ' ' : '') +\n"
	"    '<span class=\"id\">#' + k.waits_task + '</span>';\n"
	"  return s;\n"
	"}\n"
	"function taskRows(list, ns) {\n"
	"  if (!list.length) return '<tr><td colspan=\"7\" class=\"empty\">none</td></tr>';\n"
	"  return list.map(k => '<tr><td title=\"' + esc(k.name) + '\">' + esc(k.name) + '</td><td class=\"num id\">#' + k.id +\n"
	"    '</td><td class=\"num\">' + (k.worker >= 0 ? k.worker : '&ndash;') + '</td><td>' + esc(k.state) +\n"
	"    '</td><td>' + waits(k) + '</td><td class=\"num\">' + dur(k[ns] || 0) + '</td><td class=\"site\" title=\"' +\n"
	"    esc(k.spawned || '') + '\">' + esc(k.spawned || '') + '</td></tr>').join('');\n"
	"}\n"
	"let prev = null;\n"
	"function render(m, t) {\n"
	"  const M = m.metrics, up = M.uptime_ns, rs = rates(m.history), last = rs.length ? rs[rs.length - 1] : null;\n"
	"  const st = t.states;\n"
	"  $('sub').textContent = M.workers + ' workers \\u00b7 up ' + dur(up) + ' \\u00b7 blocking pool: ' + M.pool_threads +\n"
	"    ' threads, ' + M.pool_idle + ' idle, ' + M.pool_queued + ' queued';\n"
	"  const stat = (v, label) => '<div class=\"stat\"><b>' + v + '</b><span>' + label + '</span></div>';\n"
	"  $('stats').innerHTML =\n"
	"    stat(fmt(t.task_count), 'live tasks: ' + st.running + ' running, ' + st.waiting + ' waiting, ' + (st.runnable + st.new) + ' runnable') +\n"
	"    stat(fmt(last ? last.tasks : 0), 'tasks finished/s') +\n"
	"    stat(fmt(last ? last.steals : 0), 'steals/s') +\n"
	"    stat(fmt(last ? last.inbox : 0), 'wake-ups/s (inbox)') +\n"
	"    stat(fmt(last ? last.polls : 0), 'polls/s') +\n"
	"    stat(M.busy_workers + ' / ' + M.workers, 'workers busy');\n"
	"  const on = {};\n"
	"  for (const k of t.tasks) if (k.state === 'running' && k.worker >= 0) on[k.worker] = k;\n"
	"  const dt = prev ? (up - prev.up) / 1e9 : 0;\n"
	"  $('workers').innerHTML = m.workers.map(w => {\n"
	"    const p = prev && prev.w[w.id], r = k => p && dt > 0 ? Math.max(0, w[k] - p[k]) / dt : 0;\n"
	"    const k = w.busy ? on[w.id] : null, blocked = k && k.running_ns >= 1e9;\n"
	"    const state = blocked ? 'blocking' : w.busy ? 'busy' : w.parked ? 'parked' : 'searching';\n"
	"    const task = k ? esc(k.name) + ' <span class=\"id\">#' + k.id + (k.running_ns >= 1e8 ? ', ' + dur(k.running_ns) : '') + '</span>' : '';\n"
	"    return '<tr data-worker=\"' + w.id + '\"' + (blocked ? ' class=\"blocked\" title=\"this task has not suspended for ' + dur(k.running_ns) + ': it blocks its worker\"' : '') +\n"
	"      '><td>' + w.id + '</td><td><span class=\"pill ' + state + '\">' + state + '</span></td><td class=\"task\">' + task +\n"
	"      '</td><td class=\"num\">' + fmt(r('polls')) + '</td><td class=\"num\">' + fmt(r('steals')) + '</td><td class=\"num\">' +\n"
	"      fmt(r('inbox')) + '</td><td class=\"num\">' + w.queue_depth + '</td></tr>';\n"
	"  }).join('');\n"
	"  prev = {up: up, w: m.workers};\n"
	"  chart(rs);\n"
	"  $('running').innerHTML = taskRows(t.tasks.filter(k => k.state === 'running'), 'running_ns');\n"
	"  $('waiting').innerHTML = taskRows(t.tasks.filter(k => k.state === 'waiting'), 'waiting_ns');\n"
	"}\n"
	"async function get(url) {\n"
	"  const r = await fetch(url, {cache: 'no-store'});\n"
	"  if (!r.ok) throw new Error(url + ': ' + r.status);\n"
	"  return r.json();\n"
	"}\n"
	"async function poll() {\n"
	"  try {\n"
	"    const [m, t] = await Promise.all([get('/api/metrics'), get('/api/tasks?top=10')]);\n"
	"    render(m, t);\n"
	"    $('status').innerHTML = '<span class=\"dot ok\"></span>live, every 500 ms';\n"
	"  } catch (e) {\n"
	"    $('status').innerHTML = '<span class=\"dot bad\"></span>no answer: has the runtime ended?';\n"
	"  }\n"
	"  setTimeout(poll, 500);\n"
	"}\n"
	"poll();\n"
	"</script>\n"
	"</body>\n"
	"</html>\n";
