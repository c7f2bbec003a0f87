/*
 * What the files of io/ share. One section per part; each says which
 * files own it.
 */
#ifndef WEFT_IO_INTERNAL_H
#define WEFT_IO_INTERNAL_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "weft.h"

#include "runtime/clock.h"

struct addrinfo;

/* ========================================================================
 * Addresses and name resolution (io/addr.c, io/dns.c)
 * ====================================================================== */

/* host as a numeric IPv4 or IPv6 address (inet_pton: no scope id, no
 * brackets) with port, into *out. false if host is not one; nothing
 * blocks and nothing is allocated. */
static inline bool wf__addr_numeric(const char *host, unsigned port, wf_addr *out)
{
	memset(out, 0, sizeof(*out));
	struct sockaddr_in *in4 = (struct sockaddr_in *)&out->ss;
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&out->ss;
	if (inet_pton(AF_INET, host, &in4->sin_addr) == 1) {
		in4->sin_family = AF_INET;
		in4->sin_port = htons((uint16_t)port);
		out->len = sizeof(*in4);
		return true;
	}
	if (inet_pton(AF_INET6, host, &in6->sin6_addr) == 1) {
		in6->sin6_family = AF_INET6;
		in6->sin6_port = htons((uint16_t)port);
		out->len = sizeof(*in6);
		return true;
	}
	return false;
}

/* The port of an IPv4 or IPv6 address (host order), or -1 for any other
 * family. */
static inline int wf__sockaddr_port(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)sa)->sin_port);
	if (sa->sa_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)sa)->sin6_port);
	return -1;
}

/* [task] The addresses to connect to (passive false) or listen on
 * (passive true) for host:port, sockets of type socktype (SOCK_STREAM,
 * SOCK_DGRAM), in the resolver's order, without duplicates. A numeric
 * host is parsed here and never reaches the thread pool. host NULL or "":
 * 127.0.0.1 for a client, 0.0.0.0 for a server (one address: a server that
 * wants IPv6 too names "::", which Linux makes dual-stack). deadline is
 * absolute (wf__now_ns), WF__NO_DEADLINE for none; a deadline already
 * past fails a lookup that would wait with WF_ETIMEDOUT.
 * 0 with *out (malloc'd, the caller frees it with free()) and *count >= 1;
 * WF_EINVAL (port > 65535), WF_ENONAME and the codes of wf_getaddrinfo. */
int wf__addr_resolve(const char *host, unsigned port, int socktype, bool passive,
		     uint64_t deadline, wf_addr **out, size_t *count);

/* [task] wf_getaddrinfo with an absolute deadline instead of a timeout. */
int wf__getaddrinfo_until(const char *host, const char *service, const struct addrinfo *hints,
			  uint64_t deadline, struct addrinfo **res);

/* ========================================================================
 * The socket system calls of the hot paths (io/stream.c, io/sock.c,
 * io/udp.c)
 * ====================================================================== */

/* read(2), sendto(2), write(2) and recvfrom(2) straight to the kernel.
 * glibc's wrappers are thread-cancellation points: around each call they
 * switch the thread to asynchronous cancellation and back, about 60
 * instructions, an eighth of an echo round trip's user time, for a
 * feature weft never uses (its workers are never pthread_cancel'ed).
 * Under a sanitizer the wrappers stay: the sanitizers intercept them
 * (ASan checks the buffer, TSan models the descriptor). -1 and errno as
 * the wrappers. */
#if defined(WF_ASAN) || defined(WF_TSAN) || defined(__SANITIZE_ADDRESS__) || \
	defined(__SANITIZE_THREAD__)
#define WF__IO_LIBC_CALLS 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || \
	__has_feature(memory_sanitizer)
#define WF__IO_LIBC_CALLS 1
#endif
#endif

#ifdef WF__IO_LIBC_CALLS
static inline ssize_t wf__sys_read(int fd, void *buf, size_t n) { return read(fd, buf, n); }
static inline ssize_t wf__sys_write(int fd, const void *buf, size_t n) { return write(fd, buf, n); }
static inline ssize_t wf__sys_sendto(int fd, const void *buf, size_t n, int flags,
				     const struct sockaddr *to, socklen_t tolen)
{
	return sendto(fd, buf, n, flags, to, tolen);
}
static inline ssize_t wf__sys_recvfrom(int fd, void *buf, size_t n, int flags,
				       struct sockaddr *from, socklen_t *fromlen)
{
	return recvfrom(fd, buf, n, flags, from, fromlen);
}
#else
static inline ssize_t wf__sys_read(int fd, void *buf, size_t n)
{
	return syscall(SYS_read, fd, buf, n);
}
static inline ssize_t wf__sys_write(int fd, const void *buf, size_t n)
{
	return syscall(SYS_write, fd, buf, n);
}
static inline ssize_t wf__sys_sendto(int fd, const void *buf, size_t n, int flags,
				     const struct sockaddr *to, socklen_t tolen)
{
	return syscall(SYS_sendto, fd, buf, n, flags, to, tolen);
}
static inline ssize_t wf__sys_recvfrom(int fd, void *buf, size_t n, int flags,
				       struct sockaddr *from, socklen_t *fromlen)
{
	return syscall(SYS_recvfrom, fd, buf, n, flags, from, fromlen);
}
#endif

/* ========================================================================
 * Streams, servers, connections (io/stream.c, io/server.c, io/connect.c)
 * ====================================================================== */

/* ========================================================================
 * Loopback peers in this process (io/local_peer.c)
 * ====================================================================== */

/* What wf__local_peer_note recorded, for wf__local_peer_forget. */
typedef struct wf__local_peer {
	uint16_t port;
	uint64_t entry; /* 0: nothing recorded */
} wf__local_peer;

/* Before connect(2) to dst from a task: whether dst is a loopback address
 * (the connect is then counted until one of the two calls below, which
 * the caller makes right after its connect(2), without waiting). */
bool wf__local_peer_connecting(const struct sockaddr *dst);
/* The counted connect of fd to dst is made or under way: notes that its
 * local port lives on the calling worker of the caller's runtime. One
 * getsockname(2). */
wf__local_peer wf__local_peer_note(int fd, const struct sockaddr *dst);
/* The counted connect failed. */
void wf__local_peer_abandon(void);
/* The connection is closing: its note goes (if still its own). */
void wf__local_peer_forget(wf__local_peer p);
/* For a connection accepted from `peer` on a listener of port
 * listen_port: the worker of the caller's runtime its other end lives
 * on, or -1 if it was not connected from this runtime (or unknown). A
 * hint: the caller bounds it by its worker count. While a counted connect
 * has not noted itself yet, waits for it (2 ms at most). */
int wf__local_peer_worker(const struct sockaddr *peer, unsigned listen_port);

/* ========================================================================
 * TLS (io/tls.c with OpenSSL, io/tls_off.c without: there the calls below
 * are never reached, since every public entry returns WF_ENOSYS first)
 * ====================================================================== */

/* Another reference to ctx; wf_tls_ctx_free drops one. */
void wf__tls_ctx_ref(wf_tls_ctx *ctx);
/* Whether ctx was made by wf_tls_ctx_new_server. */
bool wf__tls_ctx_is_server(const wf_tls_ctx *ctx);
/* [task] The server's handshake on the accepted stream h (not yet handed
 * to anyone), bounded by ctx's handshake timeout. 0, WF_ETLS, WF_ECERT,
 * WF_ETIMEDOUT, WF_ECANCELED, -errno. */
int wf__tls_accept(wf_stream *h, wf_tls_ctx *ctx);

#endif
