/*
 * What the stream and server suites share: connected pairs of streams,
 * byte patterns that say where each byte belongs, and the process's own
 * counts (descriptors, resident memory) that leak and bound checks read.
 * Include after rt_check.h; every helper is static.
 */
#ifndef WEFT_TEST_IO_TEST_H
#define WEFT_TEST_IO_TEST_H

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "rt_check.h"
#include "weft.h"

/* The byte at position k of stream `seed`: every offset and every stream
 * differ, so a byte lost, doubled or swapped shows at its place. */
__attribute__((unused)) static inline unsigned char pat(uint64_t k, uint32_t seed)
{
	uint64_t x = (k + 1) * 0x9e3779b97f4a7c15u ^ seed;
	x ^= x >> 29;
	return (unsigned char)(x ^ (x >> 11));
}

/* Descriptors open now (/proc/self/fd, less the directory's own). */
__attribute__((unused)) static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return -1;
	int n = 0;
	while (readdir(d) != NULL)
		n++;
	closedir(d);
	return n - 3; /* ".", ".." and the DIR's own descriptor */
}

/* The highest descriptor open now. */
__attribute__((unused)) static int fd_highest(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return -1;
	int hi = -1;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		int fd = atoi(e->d_name);
		if (e->d_name[0] != '.' && fd > hi)
			hi = fd;
	}
	closedir(d);
	return hi;
}

/* Resident memory in KiB (VmRSS of /proc/self/status), or -1. */
__attribute__((unused)) static long vmrss_kib(void)
{
	FILE *f = fopen("/proc/self/status", "r");
	if (f == NULL)
		return -1;
	char line[256];
	long kib = -1;
	while (fgets(line, sizeof(line), f) != NULL)
		if (sscanf(line, "VmRSS: %ld kB", &kib) == 1)
			break;
	fclose(f);
	return kib;
}

/* [task] Two connected streams over a Unix socketpair. */
__attribute__((unused)) static bool unix_pair(wf_stream **a, wf_stream **b)
{
	int sv[2];
	if (!CHECK_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0))
		return false;
	if (!CHECK_RC(wf_stream_from_fd(sv[0], a), 0) || !CHECK_RC(wf_stream_from_fd(sv[1], b), 0))
		return false;
	return true;
}

/* A listening TCP socket on 127.0.0.1 (or ::1 when v6), any port: its
 * descriptor, its port in *port. */
__attribute__((unused)) static int plain_listener(bool v6, int backlog, unsigned *port)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	socklen_t len;
	if (v6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
		in6->sin6_family = AF_INET6;
		in6->sin6_addr = in6addr_loopback;
		len = sizeof(*in6);
	} else {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;
		in->sin_family = AF_INET;
		in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		len = sizeof(*in);
	}
	int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (!CHECK(fd >= 0))
		return -1;
	if (!CHECK_EQ(bind(fd, (struct sockaddr *)&ss, len), 0) || !CHECK_EQ(listen(fd, backlog), 0)) {
		close(fd);
		return -1;
	}
	len = sizeof(ss);
	getsockname(fd, (struct sockaddr *)&ss, &len);
	*port = ntohs(v6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
			 : ((struct sockaddr_in *)&ss)->sin_port);
	return fd;
}

/* [task] Two connected TCP streams on the loopback: *client made by
 * wf_open_connection, *server accepted from a plain listener. */
__attribute__((unused)) static bool tcp_pair(wf_stream **client, wf_stream **server)
{
	unsigned port;
	int lfd = plain_listener(false, 8, &port);
	if (lfd < 0)
		return false;
	bool ok = CHECK_RC(wf_open_connection("127.0.0.1", port, 10000, client), 0);
	if (ok) {
		/* The handshake is complete: accept does not block. */
		int fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC);
		ok = CHECK(fd >= 0) && CHECK_RC(wf_stream_from_fd(fd, server), 0);
	}
	close(lfd);
	return ok;
}

/* A socket path of the test's own under /tmp. */
__attribute__((unused)) static void unix_path(char *buf, size_t cap, const char *tag)
{
	static int n;
	snprintf(buf, cap, "/tmp/weft-test-%d-%s-%d.sock", (int)getpid(), tag,
		 __atomic_fetch_add(&n, 1, __ATOMIC_RELAXED));
}

/* A port nothing listens on: bound once, then closed. */
__attribute__((unused)) static unsigned closed_port(void)
{
	unsigned port;
	int fd = plain_listener(false, 1, &port);
	if (fd >= 0)
		close(fd);
	return port;
}

#endif
