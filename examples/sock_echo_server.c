/*
 * The asyncio tutorial's low-level socket server, as an echo server: the
 * program makes its own non-blocking listening socket, accepts with
 * wf_sock_accept (loop.sock_accept) and runs a handler task per client
 * that echoes with wf_sock_recv and wf_sock_sendall (loop.sock_recv,
 * loop.sock_sendall) until the client closes its side.
 *
 * Three client tasks, made the same way with wf_sock_connect, each send
 * two messages and check the echoes. The server accepts those three and
 * stops, so the program ends by itself; its exit status is 1 unless every
 * echo was right.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <weft.h>

#define NCLIENTS 3
#define TIMEOUT_MS 10000 /* no step of this program should take long */

/* The tutorial's handle_client: echo until the end of the stream. */
static void *handle_client(void *arg)
{
	int fd = (int)(intptr_t)arg;
	char buf[255];
	size_t total = 0;
	int rc = 0;
	for (;;) {
		ssize_t n = wf_sock_recv(fd, buf, sizeof(buf), TIMEOUT_MS);
		if (n <= 0) {
			rc = (int)n; /* 0: the client shut its side down */
			break;
		}
		rc = wf_sock_sendall(fd, buf, (size_t)n, NULL, TIMEOUT_MS);
		if (rc != 0)
			break;
		total += (size_t)n;
	}
	close(fd);
	if (rc != 0)
		return wf_fail(rc, "handler: recv or sendall failed");
	return (void *)(uintptr_t)total;
}

/* Reads exactly n bytes: one recv may return part of what was sent. */
static int recv_exactly(int fd, char *buf, size_t n)
{
	size_t got = 0;
	while (got < n) {
		ssize_t r = wf_sock_recv(fd, buf + got, n - got, TIMEOUT_MS);
		if (r <= 0)
			return r == 0 ? WF_EINCOMPLETE : (int)r;
		got += (size_t)r;
	}
	return 0;
}

struct client {
	int id;
	wf_addr server;
};

static void *client_main(void *arg)
{
	struct client *c = arg;
	int fd = socket(c->server.ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return wf_fail(WF_EIO, "socket");
	int rc = wf_sock_connect(fd, (const struct sockaddr *)&c->server.ss, c->server.len,
				 TIMEOUT_MS);
	if (rc != 0) {
		close(fd);
		return wf_fail(rc, "connect");
	}
	for (int round = 1; round <= 2; round++) {
		char msg[64], echo[64];
		int len = snprintf(msg, sizeof(msg), "hello %d from client %d", round, c->id);
		rc = wf_sock_sendall(fd, msg, (size_t)len, NULL, TIMEOUT_MS);
		if (rc == 0)
			rc = recv_exactly(fd, echo, (size_t)len);
		if (rc != 0) {
			close(fd);
			return wf_fail(rc, "send or receive");
		}
		if (memcmp(echo, msg, (size_t)len) != 0) {
			close(fd);
			return wf_fail(WF_EIO, "the echo differs from what was sent");
		}
	}
	/* Our end of the stream: the handler's recv returns 0 and it closes,
	 * so ours returns 0 too. */
	shutdown(fd, SHUT_WR);
	char extra;
	ssize_t r = wf_sock_recv(fd, &extra, 1, TIMEOUT_MS);
	close(fd);
	if (r != 0)
		return wf_fail(r < 0 ? (int)r : WF_EIO, "expected the end of the stream");
	printf("client %d: both echoes checked\n", c->id);
	return NULL;
}

/* The tutorial's run_server, accepting NCLIENTS connections. */
static void *main_task(void *arg)
{
	/* socket(), bind(), listen(), setblocking(False) */
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0)
		return wf_fail(WF_EIO, "socket");
	struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	wf_addr where = {.len = sizeof(where.ss)};
	if (bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) != 0 || listen(lfd, 8) != 0 ||
	    getsockname(lfd, (struct sockaddr *)&where.ss, &where.len) != 0) {
		close(lfd);
		return wf_fail(WF_EIO, "bind or listen");
	}
	char addr[128];
	wf_addr_format(&where, addr, sizeof(addr));
	printf("Listening on %s\n", addr);

	struct client clients[NCLIENTS];
	wf_task *ctasks[NCLIENTS], *handlers[NCLIENTS];
	for (int i = 0; i < NCLIENTS; i++) {
		clients[i] = (struct client){.id = i + 1, .server = where};
		ctasks[i] = wf_spawn(client_main, &clients[i]);
	}

	int rc = 0, naccepted = 0;
	for (; naccepted < NCLIENTS; naccepted++) {
		wf_addr peer;
		int fd = wf_sock_accept(lfd, &peer, TIMEOUT_MS);
		if (fd < 0) {
			rc = fd;
			break;
		}
		wf_addr_format(&peer, addr, sizeof(addr));
		printf("Accepted %s\n", addr);
		/* loop.create_task(handle_client(client)) */
		handlers[naccepted] = wf_spawn(handle_client, (void *)(intptr_t)fd);
		if (handlers[naccepted] == NULL)
			close(fd); /* its client then fails, and says so */
	}
	close(lfd);

	int bad = 0;
	for (int i = 0; i < naccepted; i++) {
		void *total;
		if (wf_join(handlers[i], &total) == 0)
			printf("handler %d echoed %zu bytes\n", i + 1, (size_t)(uintptr_t)total);
		else
			bad++;
	}
	for (int i = 0; i < NCLIENTS; i++) {
		char *why = NULL;
		int crc = wf_join_ex(ctasks[i], NULL, &why);
		if (crc != 0) {
			fprintf(stderr, "client %d: %s: %s\n", i + 1, why != NULL ? why : "failed",
				wf_strerror(crc));
			bad++;
		}
		free(why);
	}
	if (rc != 0)
		return wf_fail(rc, "accept");
	if (bad != 0)
		return wf_fail(WF_EIO, "a client or a handler failed");
	printf("%d clients served, all echoes checked\n", NCLIENTS);
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
