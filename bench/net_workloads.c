/*
 * The spec's networking workloads: echo_rr (a RESULT line like every
 * other workload) and http_hello (a server for the wrk load test of
 * scripts/bench and the peers' http_load.sh; no RESULT line).
 *
 * echo_rr: a server started with wf_start_server (one SO_REUSEPORT
 * listener per worker, each connection's handler on the worker its
 * packets arrive from, here its client's) and 50 client tasks on the same runtime, each with its own
 * connection, 64-byte messages, one in flight per connection. As in the
 * peers, the listener is set up before the clock starts; connecting is
 * timed. A round trip counts when the echo equals what was sent.
 *
 * http_hello: the request handling of demo/http_conn.c (llhttp) on
 * 127.0.0.1:PORT, answering every request as the Go and Tokio peers do,
 * until SIGTERM or SIGINT.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#ifdef WEFT_BENCH_HTTP
#include "http_conn.h"
#endif

#define ECHO_CONNS 50
#define ECHO_MSG 64
/* The peers give the whole run 120 s, and so does this one (alarm): a
 * wedged connection ends the run instead of hanging it. The round trips
 * themselves wait without a timeout, as the peers' do, so the figure is
 * the I/O path's and not also the timer heap's. */
#define ECHO_LIMIT_MS 120000

static void echo_handler(wf_stream *s, void *arg)
{
	char buf[4096];
	for (;;) {
		ssize_t n = wf_stream_read(s, buf, sizeof(buf), WF_FOREVER);
		if (n <= 0)
			return;
		/* drain returns at once under the high-water mark: it costs
		 * nothing here and bounds the buffer for any other client. */
		if (wf_stream_write(s, buf, (size_t)n) != 0 ||
		    wf_stream_drain(s, WF_FOREVER) != 0)
			return;
	}
}

struct echo_client {
	unsigned port;
	unsigned index;
	uint64_t rounds;
	uint64_t ok;
	int err;
};

static void *echo_client(void *arg)
{
	struct echo_client *c = arg;
	wf_stream *s;
	c->err = wf_open_connection("127.0.0.1", c->port, ECHO_LIMIT_MS, &s);
	if (c->err != 0)
		return NULL;
	unsigned char msg[ECHO_MSG] = {0}, buf[ECHO_MSG];
	for (uint64_t r = 0; r < c->rounds; r++) {
		/* The round and the connection, as the peers write them. */
		for (int i = 0; i < 8; i++)
			msg[i] = (unsigned char)(r >> (8 * i));
		msg[8] = (unsigned char)c->index;
		c->err = wf_stream_write(s, msg, sizeof(msg));
		if (c->err == 0)
			c->err = wf_stream_readexactly(s, buf, sizeof(buf), NULL, WF_FOREVER);
		if (c->err != 0)
			break;
		if (memcmp(buf, msg, sizeof(msg)) == 0)
			c->ok++;
	}
	wf_stream_close(s, ECHO_LIMIT_MS);
	return NULL;
}

static int run_echo_rr(wf_bench_run *run)
{
	wf_server *srv;
	int rc = wf_start_server("127.0.0.1", 0, echo_handler, NULL, NULL, &srv);
	if (rc != 0) {
		fprintf(stderr, "echo_rr: listen on 127.0.0.1: %s\n", wf_strerror(rc));
		return rc;
	}
	unsigned port = (unsigned)wf_server_port(srv);
	struct echo_client clients[ECHO_CONNS];
	wf_task *tasks[ECHO_CONNS];
	alarm(ECHO_LIMIT_MS / 1000); /* SIGALRM ends a wedged run */
	wf_bench_clock_start(run);
	for (unsigned i = 0; i < ECHO_CONNS; i++) {
		clients[i] = (struct echo_client){
			.port = port,
			.index = i,
			.rounds = wf_bench_share(run->n, ECHO_CONNS, i),
		};
		tasks[i] = wf_spawn(echo_client, &clients[i]);
		if (tasks[i] == NULL) {
			rc = WF_ENOMEM;
			clients[i].err = WF_ENOMEM;
		}
	}
	uint64_t total = 0;
	for (unsigned i = 0; i < ECHO_CONNS; i++) {
		if (tasks[i] != NULL)
			wf_join(tasks[i], NULL);
		total += clients[i].ok;
		if (clients[i].err != 0 && clients[i].err != WF_ENOMEM)
			fprintf(stderr, "echo_rr: client %u: %s (%s)\n", i,
				wf_strerror(clients[i].err), wf_err_name(clients[i].err));
	}
	wf_bench_clock_stop(run);
	alarm(0);
	run->check = total;
	/* The clients closed their ends: the handlers see the end of the
	 * stream and return; close_clients ends any that did not. */
	wf_server_close(srv);
	if (wf_server_wait_closed(srv, 5000) != 0) {
		wf_server_abort_clients(srv);
		wf_server_wait_closed(srv, WF_FOREVER);
	}
	return rc;
}

WF_BENCH_DEFINE(echo_rr, .name = "echo_rr", .default_n = 200000, .fn = run_echo_rr)

#ifdef WEFT_BENCH_HTTP
static const http_conn_config hello_cfg = {.handler = http_hello_handler};

static void *http_hello_root(void *arg)
{
	unsigned port = *(unsigned *)arg;
	wf_server *srv;
	int rc = wf_start_server("127.0.0.1", port, http_conn_serve, (void *)&hello_cfg, NULL,
				 &srv);
	if (rc != 0) {
		fprintf(stderr, "http_hello: listen on 127.0.0.1:%u: %s\n", port, wf_strerror(rc));
		return wf_fail(rc, "listen");
	}
	/* wf_run cancels this wait at SIGTERM or SIGINT (cancel_on_signals);
	 * handled, so the run ends with 0, as scripts/bench expects. */
	if (wf_sleep(WF_FOREVER) == WF_ECANCELED)
		wf_uncancel();
	/* Asked to stop: like the peers, end now, not when wrk's keep-alive
	 * connections are done. */
	wf_server_close(srv);
	wf_server_abort_clients(srv);
	wf_server_wait_closed(srv, 2000);
	return NULL;
}

int wf_bench_http_hello(unsigned threads, unsigned port)
{
	wf_config cfg;
	wf_config_init(&cfg);
	cfg.workers = threads;
	cfg.cancel_on_signals = WF_SIG_INT | WF_SIG_TERM;
	int rc = wf_run(&cfg, http_hello_root, &port, NULL);
	return rc == 0 ? 0 : 1;
}
#else
int wf_bench_http_hello(unsigned threads, unsigned port)
{
	fprintf(stderr, "http_hello: weft-bench was built without llhttp (Debian: node-llhttp)\n");
	return 2;
}
#endif
