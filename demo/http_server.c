/*
 * A multicore HTTP/1.1 server on weft: one listening socket per worker
 * (SO_REUSEPORT spreads the connections), one task per connection, the
 * request handling of http_conn.c (llhttp; keep-alive, pipelining, bodies,
 * bounded requests).
 *
 *   http_server [--host H] [--port P] [--threads T] [--requests N]
 *               [--seconds S] [--max-request BYTES]
 *               [--cert CHAIN.pem [--key KEY.pem]]
 *
 *   GET  /        "Hello, World!" (text/plain)
 *   GET  /worker  the worker that served the request
 *   POST /echo    the request's body back
 *
 * With --cert (and --key, unless the key is in the same file) it serves
 * HTTPS instead (wf_start_tls_server): the same handler on TLS streams.
 *
 * It prints "listening on http://HOST:PORT/" once it accepts (--port 0:
 * a free port), and runs until SIGINT or SIGTERM, until it has answered N
 * requests (--requests) or for S seconds (--seconds), then stops accepting,
 * lets the open connections finish for a second and closes them.
 *
 * SIGINT and SIGTERM cancel the main task (wf_config.cancel_on_signals):
 * its wait returns WF_ECANCELED, it handles that and shuts down as for
 * the other reasons, and the program exits with status 0. A second
 * signal during the shutdown ends the process at once.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft.h>

#include "http_conn.h"

struct options {
	const char *host;
	unsigned port;
	unsigned threads;
	uint64_t requests; /* 0: no limit */
	uint64_t seconds;  /* 0: no limit */
	size_t max_request;
	const char *cert, *key; /* HTTPS when cert is set */
};

static struct options opt = {.host = "127.0.0.1", .port = 8080, .max_request = 64 * 1024};
static uint64_t answered; /* atomic */
/* Set when --requests have been answered; lives while the server does. */
static wf_event *enough;

static void route(const http_request *req, http_response *resp, void *arg)
{
	static const char not_found[] = "Not Found\n", not_allowed[] = "Method Not Allowed\n";
	size_t path_len = strcspn(req->target, "?");
	bool get = strcmp(req->method, "GET") == 0 || strcmp(req->method, "HEAD") == 0;
	resp->content_type = "text/plain";
	if (path_len == 1 && req->target[0] == '/') {
		if (get) {
			http_hello_handler(req, resp, arg);
			return;
		}
	} else if (path_len == 5 && memcmp(req->target, "/echo", 5) == 0) {
		if (strcmp(req->method, "POST") == 0 || strcmp(req->method, "PUT") == 0) {
			resp->content_type = "application/octet-stream";
			resp->body = req->body;
			resp->body_len = req->body_len;
			return;
		}
	} else if (path_len == 7 && memcmp(req->target, "/worker", 7) == 0) {
		if (get) {
			/* The handler's frame outlives the copy of the body. */
			static __thread char text[32];
			int n = snprintf(text, sizeof(text), "worker %d\n", wf_worker_id());
			resp->body = text;
			resp->body_len = (size_t)n;
			return;
		}
	} else {
		resp->status = 404;
		resp->body = not_found;
		resp->body_len = sizeof(not_found) - 1;
		return;
	}
	resp->status = 405;
	resp->body = not_allowed;
	resp->body_len = sizeof(not_allowed) - 1;
}

static void on_answered(unsigned n, void *arg)
{
	uint64_t total = __atomic_add_fetch(&answered, n, __ATOMIC_RELAXED);
	if (opt.requests != 0 && total >= opt.requests && total - n < opt.requests)
		wf_event_set(enough);
}

static const http_conn_config http_cfg = {
	.handler = route,
	.idle_timeout_ms = 30000,
	.on_answered = on_answered,
};

static void *main_task(void *arg)
{
	http_conn_config *cfg = arg;
	wf_server *srv;
	int rc = wf_event_new(&enough);
	if (rc != 0)
		return wf_fail(rc, "event");
	if (opt.cert != NULL) {
		/* HTTPS: the same handler; the streams are TLS. */
		wf_tls_opts to = WF_TLS_OPTS_INIT;
		to.cert_file = opt.cert;
		to.key_file = opt.key;
		wf_tls_ctx *tls;
		char *why = NULL;
		rc = wf_tls_ctx_new_server(&to, &tls, &why);
		if (rc != 0) {
			fprintf(stderr, "http_server: %s: %s\n", opt.cert, why != NULL ? why : wf_strerror(rc));
			free(why);
			wf_event_free(enough);
			return wf_fail(rc, "TLS");
		}
		rc = wf_start_tls_server(opt.host, opt.port, tls, http_conn_serve, cfg, NULL, &srv);
		wf_tls_ctx_free(tls); /* the server holds its own reference */
	} else {
		rc = wf_start_server(opt.host, opt.port, http_conn_serve, cfg, NULL, &srv);
	}
	if (rc != 0) {
		fprintf(stderr, "http_server: cannot listen on %s:%u: %s\n", opt.host, opt.port,
			wf_strerror(rc));
		wf_event_free(enough);
		return wf_fail(rc, "listen");
	}
	printf("listening on %s://%s:%d/ (%u workers)\n", opt.cert != NULL ? "https" : "http",
	       opt.host, wf_server_port(srv),
	       wf_runtime_workers(wf_runtime_current()));
	fflush(stdout);
	rc = wf_event_wait(enough, opt.seconds ? opt.seconds * 1000 : WF_FOREVER);
	/* SIGINT or SIGTERM: handled here, so that the shutdown's waits are
	 * not cancelled too and the program ends as for the other reasons. */
	if (rc == WF_ECANCELED)
		wf_uncancel();
	else if (rc != 0 && rc != WF_ETIMEDOUT)
		fprintf(stderr, "http_server: waiting for a stop: %s\n", wf_strerror(rc));
	rc = http_server_shut_down(srv);
	/* Every connection has ended: nobody sets the event any more. */
	wf_event_free(enough);
	fprintf(stderr, "http_server: stopped after %" PRIu64 " answers\n",
		__atomic_load_n(&answered, __ATOMIC_RELAXED));
	return rc == 0 ? NULL : wf_fail(rc, "shutting down");
}

static void usage(FILE *to)
{
	fprintf(to, "usage: http_server [--host H] [--port P] [--threads T] [--requests N]\n"
		    "                   [--seconds S] [--max-request BYTES]\n"
		    "                   [--cert CHAIN.pem [--key KEY.pem]]\n");
}

static bool number(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	if (s == NULL || *s < '0' || *s > '9')
		return false;
	unsigned long long v = strtoull(s, &end, 10);
	if (*end != '\0' || v > max)
		return false;
	*out = v;
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
		} else if (strcmp(a, "--seconds") == 0 && number(v, UINT64_MAX / 1000, &x)) {
			opt.seconds = x;
		} else if (strcmp(a, "--max-request") == 0 && number(v, SIZE_MAX / 2, &x) && x > 0) {
			opt.max_request = (size_t)x;
		} else if (strcmp(a, "--cert") == 0 && v != NULL) {
			opt.cert = v;
		} else if (strcmp(a, "--key") == 0 && v != NULL) {
			opt.key = v;
		} else {
			fprintf(stderr, "http_server: bad argument %s%s%s\n", a, v ? " " : "",
				v ? v : "");
			usage(stderr);
			return 2;
		}
		i++;
	}
	if (opt.key != NULL && opt.cert == NULL) {
		fprintf(stderr, "http_server: --key needs --cert\n");
		return 2;
	}
	http_conn_config cfg = http_cfg;
	cfg.max_request = opt.max_request;
	wf_config wcfg;
	wf_config_init(&wcfg);
	if (opt.threads != 0)
		wcfg.workers = opt.threads;
	/* Caught even if the shell started us with SIGINT ignored (`cmd &`
	 * without job control). */
	wcfg.cancel_on_signals = WF_SIG_INT | WF_SIG_TERM;
	char *msg = NULL;
	int rc = wf_run_ex(&wcfg, main_task, &cfg, NULL, &msg);
	if (rc != 0)
		fprintf(stderr, "http_server: %s (%s)\n", msg ? msg : "failed", wf_strerror(rc));
	free(msg);
	return rc == 0 ? 0 : 1;
}
