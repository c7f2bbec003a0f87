/*
 * Clients: asyncio's open_connection and open_unix_connection.
 *
 * A numeric host is parsed here and never reaches the resolver; a name
 * goes through wf_getaddrinfo (libuv's thread pool), and every address it
 * gives is tried in order, each attempt bounded by what is left of the
 * call's timeout.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "weft.h"

#include "io/stream.h"
#include "runtime/clock.h"

/* Milliseconds left until deadline (0 once past; WF_FOREVER for none). */
static uint64_t ms_left(uint64_t deadline)
{
	if (deadline == WF__NO_DEADLINE)
		return WF_FOREVER;
	uint64_t now = wf__now_ns();
	return deadline > now ? (deadline - now + 999999) / 1000000 : 0;
}

/* A new non-blocking socket connecting to sa (*pending: the connect is
 * under way), as a stream registered on the calling task's worker. */
static int start_connect(const struct sockaddr *sa, socklen_t len, bool *pending, wf_stream **out)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -errno;
	/* A server of this runtime places the connection on the worker its
	 * socket lives on (local_peer.c), else by the CPU its handshake
	 * arrives on (server.c): this one's, for a loopback peer. */
	wf__worker_note_cpu();
	bool local = wf__local_peer_connecting(sa);
	int r;
	do
		r = connect(fd, sa, len);
	while (r != 0 && errno == EINTR);
	if (r != 0 && errno != EINPROGRESS) {
		int e = -errno;
		if (local)
			wf__local_peer_abandon();
		close(fd);
		return e;
	}
	wf__local_peer lp = local ? wf__local_peer_note(fd, sa) : (wf__local_peer){0, 0};
	int rc = wf__stream_new(fd, true, 0, out);
	if (rc != 0) {
		wf__local_peer_forget(lp);
		close(fd);
		return rc;
	}
	wf__stream_keep_local_peer(*out, lp);
	*pending = r != 0;
	return 0;
}

/* Connects a new non-blocking socket to sa and makes a stream of it. The
 * socket is registered while the connection is under way and the stream
 * waits for its first writable edge: one registration for the whole life
 * of the connection. A worker with more than its share of sockets sends
 * the task, before the socket exists, to the one with the fewest. */
static int connect_one(const struct sockaddr *sa, socklen_t len, uint64_t deadline, wf_stream **out)
{
	int to = wf__io_roomiest();
	if (to >= 0)
		wf__task_move((unsigned)to);
	bool pending = false;
	wf_stream *h;
	int rc = start_connect(sa, len, &pending, &h);
	if (to >= 0)
		wf__io_arrived((unsigned)to);
	if (rc != 0)
		return rc;
	if (pending)
		rc = wf__stream_wait_connected(h, deadline);
	if (rc != 0) {
		wf_stream_abort(h);
		return rc;
	}
	*out = h;
	return 0;
}

WF_EXTERN int wf_open_connection(const char *host, unsigned port, uint64_t timeout_ms,
				 wf_stream **out)
{
	if (out == NULL || port > 65535)
		return WF_EINVAL;
	if (!wf__in_task())
		return WF_ENOTTASK;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	if (host == NULL || host[0] == '\0')
		host = "127.0.0.1";
	/* Numeric addresses: no resolver round trip. */
	struct sockaddr_in in4 = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	if (inet_pton(AF_INET, host, &in4.sin_addr) == 1)
		return connect_one((struct sockaddr *)&in4, sizeof(in4), deadline, out);
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port)};
	const char *h6 = host;
	char strip[INET6_ADDRSTRLEN + 2];
	size_t hl = strlen(host);
	if (host[0] == '[' && hl >= 2 && hl < sizeof(strip) && host[hl - 1] == ']') {
		memcpy(strip, host + 1, hl - 2);
		strip[hl - 2] = '\0';
		h6 = strip;
	}
	if (inet_pton(AF_INET6, h6, &in6.sin6_addr) == 1)
		return connect_one((struct sockaddr *)&in6, sizeof(in6), deadline, out);

	char serv[8];
	snprintf(serv, sizeof(serv), "%u", port);
	struct addrinfo hints;
	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_ADDRCONFIG;
	struct addrinfo *res = NULL;
	int rc = wf_getaddrinfo(host, serv, &hints, ms_left(deadline), &res);
	if (rc != 0)
		return rc;
	rc = WF_ENONAME;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		rc = connect_one(ai->ai_addr, ai->ai_addrlen, deadline, out);
		/* A timeout or a cancellation ends the call; a refusal moves
		 * on to the next address. */
		if (rc == 0 || rc == WF_ETIMEDOUT || rc == WF_ECANCELED)
			break;
	}
	wf_freeaddrinfo(res);
	return rc;
}

WF_EXTERN int wf_open_unix_connection(const char *path, uint64_t timeout_ms, wf_stream **out)
{
	if (path == NULL || out == NULL)
		return WF_EINVAL;
	if (!wf__in_task())
		return WF_ENOTTASK;
	struct sockaddr_un un = {.sun_family = AF_UNIX};
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof(un.sun_path))
		return WF_EINVAL;
	memcpy(un.sun_path, path, len + 1);
	return connect_one((struct sockaddr *)&un, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1),
			   wf__deadline_after_ms(timeout_ms), out);
}
