/*
 * The asyncio tutorial's "TCP echo server using streams" and "TCP echo
 * client using streams", in one program: the server listens on 127.0.0.1
 * (port 0: any free port), a client task sends "Hello World!" and reads
 * the echo, then the server is closed and waited for. It checks itself:
 * the exit status is 1 unless the client got its message back and the
 * handler saw it.
 *
 * Every worker accepts (one listening socket each), so the handler may run
 * on another core than the client: the output lines of the two sides can
 * interleave differently from run to run.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <weft.h>

#define MESSAGE "Hello World!"
#define TIMEOUT_MS 10000 /* no step of this program should take long */

static int handled; /* atomic: the handler saw MESSAGE */

/* asyncio's handle_echo(reader, writer): one object is both. The server
 * closes the stream after this returns too; closing it here is the
 * tutorial's writer.close() + await writer.wait_closed(). */
static void handle_echo(wf_stream *s, void *arg)
{
	char data[101]; /* reader.read(100), and room for a terminating NUL */
	ssize_t n = wf_stream_read(s, data, 100, TIMEOUT_MS);
	if (n <= 0) {
		fprintf(stderr, "server: read: %s\n", n == 0 ? "end of stream" : wf_strerror((int)n));
		return;
	}
	data[n] = '\0';

	/* writer.get_extra_info('peername') */
	wf_addr peer;
	char addr[128] = "?";
	if (wf_stream_peer_addr(s, &peer) == 0)
		wf_addr_format(&peer, addr, sizeof(addr));
	printf("Received '%s' from %s\n", data, addr);

	printf("Send: '%s'\n", data);
	/* write never waits (what the socket does not take is buffered);
	 * drain waits while the buffer is above its high-water mark. */
	int rc = wf_stream_write(s, data, (size_t)n);
	if (rc == 0)
		rc = wf_stream_drain(s, TIMEOUT_MS);
	if (rc != 0) {
		fprintf(stderr, "server: write: %s\n", wf_strerror(rc));
		return;
	}
	if (strcmp(data, MESSAGE) == 0)
		__atomic_store_n(&handled, 1, __ATOMIC_RELEASE);

	printf("Close the connection\n");
	wf_stream_close(s, TIMEOUT_MS);
}

struct client {
	unsigned port;
	const char *message;
};

/* asyncio's tcp_echo_client(message). */
static void *tcp_echo_client(void *arg)
{
	struct client *c = arg;
	wf_stream *s;
	int rc = wf_open_connection("127.0.0.1", c->port, TIMEOUT_MS, &s);
	if (rc != 0)
		return wf_fail(rc, "open_connection");

	printf("Send: '%s'\n", c->message);
	size_t len = strlen(c->message);
	rc = wf_stream_write(s, c->message, len);
	if (rc == 0)
		rc = wf_stream_drain(s, TIMEOUT_MS);
	if (rc != 0) {
		wf_stream_abort(s);
		return wf_fail(rc, "write");
	}

	char data[101];
	ssize_t n = wf_stream_read(s, data, 100, TIMEOUT_MS);
	if (n < 0) {
		wf_stream_abort(s);
		return wf_fail((int)n, "read");
	}
	data[n] = '\0';
	printf("Received: '%s'\n", data);

	printf("Close the connection\n");
	wf_stream_close(s, TIMEOUT_MS);
	/* One read of up to 100 bytes, as in the tutorial: on loopback a
	 * 12-byte echo arrives in one piece. */
	if ((size_t)n != len || memcmp(data, c->message, len) != 0)
		return wf_fail(WF_EIO, "the echo differs from what was sent");
	return NULL;
}

static void *main_task(void *arg)
{
	wf_server *srv;
	int rc = wf_start_server("127.0.0.1", 0, handle_echo, NULL, NULL, &srv);
	if (rc != 0)
		return wf_fail(rc, "start_server");
	int port = wf_server_port(srv);
	printf("Serving on 127.0.0.1:%d\n", port);

	struct client c = {.port = (unsigned)port, .message = MESSAGE};
	char *why = NULL;
	int crc = wf_join_ex(wf_spawn(tcp_echo_client, &c), NULL, &why);
	if (crc != 0)
		fprintf(stderr, "client: %s: %s\n", why != NULL ? why : "failed", wf_strerror(crc));
	free(why);

	/* asyncio's server.close() + await server.wait_closed(): stop
	 * accepting, then wait until every handler has returned. */
	wf_server_close(srv);
	rc = wf_server_wait_closed(srv, TIMEOUT_MS);
	if (rc != 0)
		return wf_fail(rc, "wait_closed");
	if (crc != 0)
		return wf_fail(crc, "the client failed");
	if (!__atomic_load_n(&handled, __ATOMIC_ACQUIRE))
		return wf_fail(WF_EIO, "the handler did not see the message");
	printf("echo checked, server closed\n");
	return NULL;
}

int main(void)
{
	char *why = NULL;
	int rc = wf_run_ex(NULL, main_task, NULL, NULL, &why);
	if (rc != 0)
		fprintf(stderr, "error: %s: %s\n", why != NULL ? why : "failed", wf_strerror(rc));
	free(why);
	return rc == 0 ? 0 : 1;
}
