/*
 * The stream echo server and client over a Unix socket (asyncio's
 * start_unix_server and open_unix_connection): stream_echo_server.c with
 * a path instead of host and port. A Unix client has no name of its own,
 * so the handler prints the path it was reached on. The server replaces a
 * stale socket file at the path and removes the file when it is freed,
 * which the program checks too.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <weft.h>

#define MESSAGE "Hello World!"
#define TIMEOUT_MS 10000

static char path[108];
static int handled; /* atomic: the handler saw MESSAGE */

static void handle_echo(wf_stream *s, void *arg)
{
	char data[101];
	ssize_t n = wf_stream_read(s, data, 100, TIMEOUT_MS);
	if (n <= 0)
		return;
	data[n] = '\0';
	wf_addr local;
	char addr[128] = "?";
	if (wf_stream_local_addr(s, &local) == 0)
		wf_addr_format(&local, addr, sizeof(addr));
	printf("Received '%s' on %s\n", data, addr);
	if (wf_stream_write(s, data, (size_t)n) != 0 || wf_stream_drain(s, TIMEOUT_MS) != 0)
		return;
	if (strcmp(data, MESSAGE) == 0)
		__atomic_store_n(&handled, 1, __ATOMIC_RELEASE);
	wf_stream_close(s, TIMEOUT_MS);
}

static void *unix_echo_client(void *arg)
{
	const char *message = arg;
	wf_stream *s;
	int rc = wf_open_unix_connection(path, TIMEOUT_MS, &s);
	if (rc != 0)
		return wf_fail(rc, "open_unix_connection");
	printf("Send: '%s'\n", message);
	rc = wf_stream_write(s, message, strlen(message));
	if (rc == 0)
		rc = wf_stream_drain(s, TIMEOUT_MS);
	char data[101];
	ssize_t n = rc == 0 ? wf_stream_read(s, data, 100, TIMEOUT_MS) : rc;
	wf_stream_close(s, TIMEOUT_MS);
	if (n < 0)
		return wf_fail((int)n, "write or read");
	data[n] = '\0';
	printf("Received: '%s'\n", data);
	if (strcmp(data, message) != 0)
		return wf_fail(WF_EIO, "the echo differs from what was sent");
	return NULL;
}

static void *main_task(void *arg)
{
	wf_server *srv;
	int rc = wf_start_unix_server(path, handle_echo, NULL, NULL, &srv);
	if (rc != 0)
		return wf_fail(rc, "start_unix_server");
	printf("Serving on %s\n", path);
	char *why = NULL;
	int crc = wf_join_ex(wf_spawn(unix_echo_client, MESSAGE), NULL, &why);
	if (crc != 0)
		fprintf(stderr, "client: %s: %s\n", why != NULL ? why : "failed", wf_strerror(crc));
	free(why);
	wf_server_close(srv);
	rc = wf_server_wait_closed(srv, TIMEOUT_MS);
	if (rc != 0)
		return wf_fail(rc, "wait_closed");
	if (crc != 0)
		return wf_fail(crc, "the client failed");
	if (!__atomic_load_n(&handled, __ATOMIC_ACQUIRE))
		return wf_fail(WF_EIO, "the handler did not see the message");
	if (access(path, F_OK) == 0)
		return wf_fail(WF_EIO, "the socket file is still there");
	printf("echo checked, server closed, socket file removed\n");
	return NULL;
}

int main(void)
{
	const char *dir = getenv("TMPDIR");
	snprintf(path, sizeof(path), "%s/weft-echo-%ld.sock", dir != NULL && *dir ? dir : "/tmp",
		 (long)getpid());
	char *why = NULL;
	int rc = wf_run_ex(NULL, main_task, NULL, NULL, &why);
	if (rc != 0)
		fprintf(stderr, "error: %s: %s\n", why != NULL ? why : "failed", wf_strerror(rc));
	free(why);
	return rc == 0 ? 0 : 1;
}
