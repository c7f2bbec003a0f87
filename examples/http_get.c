/*
 * An HTTP GET, in weft: the asyncio tutorial's aiohttp fetch, written with
 * plain streams against weft's demo HTTP server on the loopback interface.
 *
 *   http_get PATH/TO/demo/http_server
 *
 * The program starts the server itself as a child process, on port 0 so
 * that the kernel picks a free port, and reads the port from the line the
 * server prints once it accepts ("listening on http://127.0.0.1:PORT/").
 * With --requests 1 the server stops by itself after its one answer, so
 * the program ends by itself too. The request asks for "Connection:
 * close": the server closes the connection after the answer, and the
 * whole answer is what wf_stream_read_all reads until the end.
 *
 * Python:
 *     async def main():
 *         async with aiohttp.ClientSession() as session:
 *             async with session.get(f"http://127.0.0.1:{port}/") as resp:
 *                 print(resp.status)
 *                 print(await resp.text())
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#define TIMEOUT_MS 10000 /* no step of this program should take long */

/* GET / on 127.0.0.1:port: prints the status line and the body. */
static int http_get(unsigned port)
{
	wf_stream *s;
	int rc = wf_open_connection("127.0.0.1", port, TIMEOUT_MS, &s);
	if (rc != 0)
		return rc;
	char req[128];
	int n = snprintf(req, sizeof(req),
			 "GET / HTTP/1.1\r\nHost: 127.0.0.1:%u\r\nConnection: close\r\n\r\n", port);
	rc = wf_stream_write_all(s, req, (size_t)n, TIMEOUT_MS);
	char *resp = NULL;
	ssize_t len = rc == 0 ? wf_stream_read_all(s, 64 * 1024, (void **)&resp, TIMEOUT_MS) : rc;
	wf_stream_close(s, TIMEOUT_MS);
	if (len < 0)
		return (int)len;
	/* The status line, then the body after the blank line. */
	char *eol = strstr(resp, "\r\n");
	char *body = strstr(resp, "\r\n\r\n");
	if (eol == NULL || body == NULL) {
		free(resp);
		return WF_EIO;
	}
	printf("status line: %.*s\n", (int)(eol - resp), resp);
	printf("body: %s\n", body + 4);
	free(resp);
	return 0;
}

static void *main_task(void *arg)
{
	const char *server = arg;
	const char *argv[] = {"http_server", "--host", "127.0.0.1", "--port", "0",
			      "--threads", "1", "--requests", "1", NULL};
	wf_process_opts opts = WF_PROCESS_OPTS_INIT;
	opts.stdout_mode = WF_PIPE; /* its "listening on" line */
	wf_process *p;
	int rc = wf_process_exec(server, argv, &opts, &p);
	if (rc != 0)
		return wf_fail(rc, "starting the server");

	char line[256];
	unsigned port = 0;
	ssize_t n = wf_stream_readline(wf_process_stdout(p), line, sizeof(line) - 1, TIMEOUT_MS);
	if (n > 0) {
		line[n] = '\0';
		if (sscanf(line, "listening on http://127.0.0.1:%u/", &port) != 1)
			port = 0;
	}
	if (port == 0) {
		rc = n < 0 ? (int)n : WF_EIO;
		fprintf(stderr, "http_get: no port from the server: %s\n", wf_strerror(rc));
	} else {
		printf("server listening on 127.0.0.1:%u\n", port);
		rc = http_get(port);
		if (rc != 0)
			fprintf(stderr, "http_get: GET /: %s\n", wf_strerror(rc));
	}
	if (rc != 0)
		wf_process_terminate(p); /* it would wait for its one request */
	int code = -1;
	int wrc = wf_process_wait(p, TIMEOUT_MS, &code);
	if (wrc == WF_ETIMEDOUT) {
		wf_process_kill(p);
		wf_process_wait(p, TIMEOUT_MS, &code);
	}
	wf_process_free(p);
	if (rc != 0)
		return wf_fail(rc, "GET /");
	printf("server exited with code %d\n", code);
	return NULL;
}

int main(int argc, char **argv)
{
	if (argc != 2) {
		fprintf(stderr, "usage: http_get PATH/TO/http_server\n");
		return 2;
	}
	char *why = NULL;
	int rc = wf_run_ex(NULL, main_task, argv[1], NULL, &why);
	if (rc != 0)
		fprintf(stderr, "http_get: %s: %s\n", why ? why : "failed", wf_strerror(rc));
	free(why);
	return rc == 0 ? 0 : 1;
}
