/*
 * A multicore TCP echo server on weft: one listening socket per worker,
 * one task per connection that reads what arrives and writes it back.
 *
 *   echo_server [--host H] [--port P] [--threads T] [--seconds S]
 *
 * It prints "listening on HOST:PORT" once it accepts (--port 0: a free
 * port), and runs until SIGINT or SIGTERM or for S seconds (--seconds).
 * Try it with `nc 127.0.0.1 7000`.
 *
 * Stopping: wf_run is told to cancel the main task at SIGINT or SIGTERM
 * (wf_config.cancel_on_signals), so the main task's wait simply returns
 * WF_ECANCELED; it then shuts the server down and returns, and the
 * program exits with status 0. A second signal during that shutdown ends
 * the process at once.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <weft.h>

static const char *host = "127.0.0.1";
static unsigned port = 7000, threads;
static uint64_t seconds;

static void echo(wf_stream *s, void *arg)
{
	char buf[16384];
	for (;;) {
		ssize_t n = wf_stream_read(s, buf, sizeof(buf), WF_FOREVER);
		if (n <= 0)
			return; /* the end of the stream, a reset, or the shutdown */
		/* write never waits; drain holds a client that sends without
		 * reading back to the write buffer's high-water mark. */
		if (wf_stream_write(s, buf, (size_t)n) != 0 || wf_stream_drain(s, WF_FOREVER) != 0)
			return;
	}
}

static void *main_task(void *arg)
{
	wf_server *srv;
	int rc = wf_start_server(host, port, echo, NULL, NULL, &srv);
	if (rc != 0) {
		fprintf(stderr, "echo_server: cannot listen on %s:%u: %s\n", host, port,
			wf_strerror(rc));
		return wf_fail(rc, "listen");
	}
	printf("listening on %s:%d (%u workers)\n", host, wf_server_port(srv),
	       wf_runtime_workers(wf_runtime_current()));
	fflush(stdout);
	rc = wf_sleep(seconds ? seconds * 1000 : WF_FOREVER);
	/* A signal cancelled the wait: handled here (the waits below must
	 * not be cancelled again), so the program ends as if on time. */
	if (rc == WF_ECANCELED)
		wf_uncancel();
	/* Stop accepting; the clients still connected read the end of the
	 * stream; then wait for their handlers. */
	wf_server_close(srv);
	wf_server_close_clients(srv);
	rc = wf_server_wait_closed(srv, 5000);
	if (rc == WF_ETIMEDOUT) {
		wf_server_abort_clients(srv);
		rc = wf_server_wait_closed(srv, WF_FOREVER);
	}
	return rc == 0 ? NULL : wf_fail(rc, "shutting down");
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
	for (int i = 1; i < argc; i += 2) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		uint64_t x;
		if (strcmp(a, "--host") == 0 && v != NULL) {
			host = v;
		} else if (strcmp(a, "--port") == 0 && number(v, 65535, &x)) {
			port = (unsigned)x;
		} else if (strcmp(a, "--threads") == 0 && number(v, WF_WORKERS_MAX, &x)) {
			threads = (unsigned)x;
		} else if (strcmp(a, "--seconds") == 0 && number(v, UINT64_MAX / 1000, &x)) {
			seconds = x;
		} else {
			fprintf(stderr, "usage: echo_server [--host H] [--port P] [--threads T] "
					"[--seconds S]\n");
			return 2;
		}
	}
	wf_config cfg;
	wf_config_init(&cfg);
	if (threads != 0)
		cfg.workers = threads;
	/* Caught even if the shell started us with SIGINT ignored (`cmd &`
	 * without job control). */
	cfg.cancel_on_signals = WF_SIG_INT | WF_SIG_TERM;
	char *msg = NULL;
	int rc = wf_run_ex(&cfg, main_task, NULL, NULL, &msg);
	if (rc != 0)
		fprintf(stderr, "echo_server: %s (%s)\n", msg ? msg : "failed", wf_strerror(rc));
	free(msg);
	return rc == 0 ? 0 : 1;
}
