/*
 * weft: networking; included by weft.h.
 *
 * asyncio's streams (start_server, open_connection, StreamReader,
 * StreamWriter), its low-level socket calls (sock_accept, sock_recv,
 * sock_sendall, ...), UDP endpoints and asynchronous DNS, for tasks on any
 * worker.
 *
 * How it runs. Every worker owns one epoll instance, which also holds its
 * libuv loop's descriptor: a worker with nothing to run sleeps in a single
 * epoll_wait for sockets, timers and wake-ups alike. weft's sockets are
 * non-blocking and registered once, edge-triggered, in the epoll of the
 * worker that made them (their home). A call first tries the system call
 * itself and waits for readiness only when the socket has nothing (a short
 * read means drained: no extra call to see EAGAIN). A task may run on any
 * worker and still use any stream: the waits and wake-ups cross threads
 * safely. A server listens with one SO_REUSEPORT socket per worker (the
 * kernel spreads the connections) and runs each connection's handler on
 * the worker its client's socket lives on when the client is a task of
 * the same runtime (within twice the least loaded worker's share), else on
 * the worker whose CPU the connection's packets arrive on, unless that
 * worker already serves more than a quarter over the least loaded one. A
 * task that is not pinned (wf_pin) and connects from a worker holding
 * more than two sockets over the fewest any worker holds first moves to
 * that worker, so the connections a program opens spread over the cores as
 * the ones it accepts do.
 *
 * Common rules (those of weft/sync.h, and):
 *  - Calls marked [task] suspend the calling task and must be made from a
 *    task (WF_ENOTTASK otherwise).
 *  - Every suspending call takes timeout_ms (WF_FOREVER: none; 0: do not
 *    wait, WF_ETIMEDOUT if it would) and honours cancellation
 *    (WF_ECANCELED).
 *  - OS errors are returned as -errno: -ECONNREFUSED, -ECONNRESET,
 *    -EADDRINUSE, -ENOENT, ... wf_strerror() names them. Writing to a
 *    reset or closed peer gives -EPIPE or -ECONNRESET, never SIGPIPE.
 *  - Objects are handles (a freed one gives WF_EINVAL, every time). The
 *    caller owns what a call stores in *out and frees it with the matching
 *    close call.
 *  - Addresses: host is a numeric IPv4 or IPv6 address or a name resolved
 *    with wf_getaddrinfo (NULL or "" for a server: the IPv4 wildcard
 *    0.0.0.0, "::" for IPv6's; for a client: 127.0.0.1); port is
 *    0..65535 (0 for a server: any free port, read back with
 *    wf_server_port).
 */
#ifndef WEFT_IO_H
#define WEFT_IO_H

#include <sys/socket.h>
#include <sys/types.h>

#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

struct addrinfo; /* <netdb.h> */

typedef struct wf_stream wf_stream;
typedef struct wf_server wf_server;
typedef struct wf_udp wf_udp;

/* A socket address of any family weft speaks (IPv4, IPv6, Unix). */
typedef struct wf_addr {
	struct sockaddr_storage ss;
	socklen_t len;
} wf_addr;

/* "127.0.0.1:8080", "[::1]:8080" or the Unix path into buf (always
 * NUL-terminated when cap > 0); the length written, or WF_EINVAL. */
WF_EXTERN int wf_addr_format(const wf_addr *a, char *buf, size_t cap);

/* ------------------------------------------------------------------------
 * Streams: a connected socket (TCP or Unix) or pipe, read and written with
 * asyncio's StreamReader and StreamWriter calls. One object is both the
 * reader and the writer.
 *
 * Reading. Bytes arrive into the stream's buffer, which holds at most
 * `limit` bytes (default 64 KiB, wf_stream_set_limit): a full buffer stops
 * reading from the socket, so a fast sender cannot grow memory; the peer
 * is held back by TCP's own flow control. Every read is cancellation-safe:
 * a read that times out or is cancelled consumes nothing, and what arrived
 * stays buffered for the next read. One task reads at a time: a second
 * reader gets WF_EBUSY while one waits.
 *
 * Writing. wf_stream_write never waits: it writes what the socket takes at
 * once and buffers the rest. wf_stream_drain waits until the buffer is
 * below the low-water mark (once it went above the high-water mark: 64 KiB
 * and 16 KiB by default); any number of tasks may drain at once.
 * ---------------------------------------------------------------------- */

/* [task] Connects to host:port, trying every address host resolves to in
 * order until one accepts; timeout_ms bounds the whole call (resolution
 * included). The calling task may return on another worker (see "How it
 * runs" above); a pinned task or a server's handler never moves. 0 and *out; WF_EINVAL, -ENOENT-like codes from the resolver
 * (WF_ENONAME: no such host), the last address's -ECONNREFUSED, ...,
 * WF_ETIMEDOUT, WF_ECANCELED. */
WF_EXTERN int wf_open_connection(const char *host, unsigned port, uint64_t timeout_ms,
				 wf_stream **out);
/* [task] Connects to the Unix socket at path. As wf_open_connection. */
WF_EXTERN int wf_open_unix_connection(const char *path, uint64_t timeout_ms, wf_stream **out);
/* [task] Makes a stream of a descriptor the caller owns until now: a
 * connected socket, a pipe end or a terminal (asyncio's
 * connect_read_pipe / connect_write_pipe). It is made non-blocking and
 * close-on-exec; the stream owns it from now on (wf_stream_close closes
 * it). A regular file or a descriptor epoll cannot wait on: WF_EINVAL
 * (-EPERM from epoll), and fd is left open. */
WF_EXTERN int wf_stream_from_fd(int fd, wf_stream **out);

/* [any] The stream's descriptor, for setsockopt and the like (do not close
 * it, read or write it), or WF_EINVAL. */
WF_EXTERN int wf_stream_fd(const wf_stream *s);
/* [any] Local and peer addresses (asyncio's get_extra_info('sockname' /
 * 'peername')). 0 or -errno, WF_EINVAL. */
WF_EXTERN int wf_stream_local_addr(const wf_stream *s, wf_addr *out);
WF_EXTERN int wf_stream_peer_addr(const wf_stream *s, wf_addr *out);
/* [any] Sets the read buffer's limit (bytes, at least 1; default 65536),
 * which also bounds readline and readuntil. 0 or WF_EINVAL. */
WF_EXTERN int wf_stream_set_limit(wf_stream *s, size_t limit);
/* [any] Sets the write buffer's water marks (high >= low; default 64 KiB
 * and 16 KiB). 0 or WF_EINVAL. */
WF_EXTERN int wf_stream_set_write_buffer_limits(wf_stream *s, size_t high, size_t low);

/* [task] Reads up to n bytes (n >= 1): what is buffered, or else waits
 * for data. The count (>= 1), 0 at end of stream, or WF_ETIMEDOUT,
 * WF_ECANCELED, -ECONNRESET, ..., WF_EBUSY, WF_EINVAL. */
WF_EXTERN ssize_t wf_stream_read(wf_stream *s, void *buf, size_t n, uint64_t timeout_ms);
/* [task] Reads exactly n bytes into buf. 0 when all n are there;
 * WF_EINCOMPLETE when the stream ended first: *got (if not NULL) is the
 * number of bytes read into buf, which are consumed. On any other error
 * (a timeout, a cancellation) nothing is consumed and *got is 0, unless n
 * exceeds the buffer's limit: then the bytes are passed on as they come
 * and *got says how many reached buf. */
WF_EXTERN int wf_stream_readexactly(wf_stream *s, void *buf, size_t n, size_t *got,
				    uint64_t timeout_ms);
/* [task] Reads up to and including the separator (seplen >= 1 bytes)
 * into buf (capacity cap). The length, separator included.
 * WF_ELIMIT if no separator is found within min(cap, limit) bytes: the
 * bytes stay buffered, as they do on a timeout or cancellation.
 * WF_EINCOMPLETE if the stream ended before a separator: the bytes stay
 * buffered (read them with wf_stream_read). */
WF_EXTERN ssize_t wf_stream_readuntil(wf_stream *s, const void *sep, size_t seplen, void *buf,
				      size_t cap, uint64_t timeout_ms);
/* [task] asyncio's readline: wf_stream_readuntil with "\n", except that at
 * the end of the stream it returns the last, unterminated line (0 when
 * nothing is left). WF_ELIMIT as readuntil. */
WF_EXTERN ssize_t wf_stream_readline(wf_stream *s, void *buf, size_t cap, uint64_t timeout_ms);
/* [task] Reads until the end of the stream into a new buffer (*out, the
 * caller frees it with free(); always NUL-terminated, not counted). The
 * length; WF_ELIMIT if more than max bytes come (they stay buffered up to
 * the limit); errors as wf_stream_read. */
WF_EXTERN ssize_t wf_stream_read_all(wf_stream *s, size_t max, void **out, uint64_t timeout_ms);
/* [any] true once the buffer is empty and the stream has ended (asyncio's
 * at_eof). false for NULL or a stale handle. */
WF_EXTERN bool wf_stream_at_eof(const wf_stream *s);

/* [any] Writes n bytes: at once what the socket takes, the rest into the
 * write buffer (which grows as needed: bound it with wf_stream_drain).
 * 0, or the error a previous write met (-EPIPE, -ECONNRESET: the stream is
 * broken), WF_EINVAL after wf_stream_write_eof or on a closed stream. */
WF_EXTERN int wf_stream_write(wf_stream *s, const void *buf, size_t n);
/* [task] Waits until the write buffer is at most the low-water mark (at
 * once if it is under the high-water mark). 0, the write error that broke
 * the stream, WF_ETIMEDOUT, WF_ECANCELED. */
WF_EXTERN int wf_stream_drain(wf_stream *s, uint64_t timeout_ms);
/* [task] wf_stream_write, then waits until every byte was handed to the
 * kernel (asyncio's sock_sendall for streams). */
WF_EXTERN int wf_stream_write_all(wf_stream *s, const void *buf, size_t n, uint64_t timeout_ms);
/* [task] Flushes the write buffer, then shuts the sending side
 * (shutdown(SHUT_WR)): the peer reads the end of the stream, and this side
 * may still read. On a pipe, which cannot half-close, it closes the write
 * end. 0, a write error, WF_ETIMEDOUT, WF_ECANCELED. */
WF_EXTERN int wf_stream_write_eof(wf_stream *s, uint64_t timeout_ms);
/* [any] asyncio's close + wait_closed: flushes the write buffer (for at
 * most timeout_ms; a reset peer ends it at once), closes the descriptor and
 * frees s, whatever happened. Waiting readers and drainers are woken with
 * WF_ECLOSED. 0, or the flush's error (WF_ETIMEDOUT: unsent data was
 * dropped), WF_EINVAL for a stale handle. From a plain thread it does not
 * flush. */
WF_EXTERN int wf_stream_close(wf_stream *s, uint64_t timeout_ms);
/* [any] Closes at once: buffered data is dropped, the peer sees a reset;
 * frees s. 0 or WF_EINVAL. */
WF_EXTERN int wf_stream_abort(wf_stream *s);

/* ------------------------------------------------------------------------
 * Servers (asyncio.start_server / start_unix_server).
 *
 * Each accepted connection runs handler(stream, arg) in a new task on the
 * worker that serves it (above: its client's, for a task of the same
 * runtime; else by the CPU its packets arrive on, within a quarter of the
 * least loaded worker's share). The server owns the stream: it closes it (with
 * a 10 s flush) when the handler returns, so a handler may close it itself
 * or not. A handler that fails is reported like a detached task.
 * ---------------------------------------------------------------------- */
typedef void (*wf_conn_handler)(wf_stream *s, void *arg);

typedef struct wf_server_opts {
	int backlog;            /* listen(2)'s backlog; 0: 511 */
	size_t max_connections; /* live connections above which accepting
				 * pauses until one ends; 0: no limit */
	size_t limit;           /* each stream's read limit; 0: 64 KiB */
	bool single_listener;   /* one listening socket (on the calling
				 * worker) instead of one per worker */
	uint8_t reserved_bytes[7]; /* must be zero */
	uint64_t reserved[4];   /* must be zero */
} wf_server_opts;
#define WF_SERVER_OPTS_INIT WF__ZERO_INIT

/* [task] Listens on host:port (TCP; every address host resolves to) and
 * starts serving. opts may be NULL. 0 and *out; -EADDRINUSE, WF_ENONAME,
 * WF_EINVAL (bad options: reserved fields not zero, port > 65535), ... */
WF_EXTERN int wf_start_server(const char *host, unsigned port, wf_conn_handler handler,
			      void *arg, const wf_server_opts *opts, wf_server **out);
/* [task] Listens on the Unix socket path (an existing socket file there is
 * replaced; wf_server_close removes the file). */
WF_EXTERN int wf_start_unix_server(const char *path, wf_conn_handler handler, void *arg,
				   const wf_server_opts *opts, wf_server **out);
/* [any] The TCP port the server listens on (useful after port 0), or
 * WF_EINVAL. */
WF_EXTERN int wf_server_port(const wf_server *srv);
/* [any] Connections being handled now (0 for a stale handle). */
WF_EXTERN size_t wf_server_connections(const wf_server *srv);
/* [any] Stops accepting and closes the listening sockets; live
 * connections go on. 0 or WF_EINVAL. */
WF_EXTERN int wf_server_close(wf_server *srv);
/* [any] Ends every live connection: close_clients shuts their sockets
 * down (their readers see the end of the stream, their writes fail),
 * abort_clients resets them. 0 or WF_EINVAL. */
WF_EXTERN int wf_server_close_clients(wf_server *srv);
WF_EXTERN int wf_server_abort_clients(wf_server *srv);
/* [task] Waits until the server is closed and every handler has returned,
 * then frees srv (on 0 only). 0, WF_ETIMEDOUT, WF_ECANCELED, WF_EINVAL,
 * WF_EBUSY (another wait_closed is freeing it). */
WF_EXTERN int wf_server_wait_closed(wf_server *srv, uint64_t timeout_ms);

/* ------------------------------------------------------------------------
 * Raw sockets and foreign descriptors: the tutorial's low-level calls on
 * a non-blocking socket the program made itself, and readiness waits that
 * let any non-blocking C library (libpq, hiredis, libcurl) run in a task.
 * These waits are one-shot: each call asks the kernel afresh, so a library
 * that stops reading before EAGAIN is never left waiting for an edge that
 * already passed. One task waits on a descriptor at a time per worker
 * (another gets WF_EBUSY).
 * ---------------------------------------------------------------------- */

/* [task] Waits until fd is readable (or writable). 0, WF_ETIMEDOUT,
 * WF_ECANCELED, WF_EBUSY, -EBADF / -EPERM (not a descriptor epoll takes). */
WF_EXTERN int wf_wait_readable(int fd, uint64_t timeout_ms);
WF_EXTERN int wf_wait_writable(int fd, uint64_t timeout_ms);

/* [task] Accepts a connection on the non-blocking listening socket lfd:
 * the new descriptor (non-blocking, close-on-exec), peer in *peer if not
 * NULL. -errno, WF_ETIMEDOUT, WF_ECANCELED. */
WF_EXTERN int wf_sock_accept(int lfd, wf_addr *peer, uint64_t timeout_ms);
/* [task] Connects the non-blocking socket fd to addr. 0 or -errno, ... */
WF_EXTERN int wf_sock_connect(int fd, const struct sockaddr *addr, socklen_t len,
			      uint64_t timeout_ms);
/* [task] recv(2) of up to n bytes: the count, 0 at end of stream, -errno. */
WF_EXTERN ssize_t wf_sock_recv(int fd, void *buf, size_t n, uint64_t timeout_ms);
/* [task] send(2) of up to n bytes (no SIGPIPE): the count or -errno. */
WF_EXTERN ssize_t wf_sock_send(int fd, const void *buf, size_t n, uint64_t timeout_ms);
/* [task] Sends all n bytes; 0 or -errno, WF_ETIMEDOUT (then *sent, if not
 * NULL, says how many went). */
WF_EXTERN int wf_sock_sendall(int fd, const void *buf, size_t n, size_t *sent,
			      uint64_t timeout_ms);

/* ------------------------------------------------------------------------
 * UDP endpoints (asyncio's create_datagram_endpoint, with sock_sendto and
 * sock_recvfrom's calls). Any task on any worker may send and receive.
 * ---------------------------------------------------------------------- */

/* [task] A UDP socket bound to host:port (host NULL: 0.0.0.0; "::" for
 * IPv6; port 0: any). 0 and *out, -errno, WF_ENONAME. */
WF_EXTERN int wf_udp_open(const char *host, unsigned port, wf_udp **out);
/* [task] Sends one datagram of n bytes to `to`. 0 or -errno. */
WF_EXTERN int wf_udp_sendto(wf_udp *u, const void *buf, size_t n, const wf_addr *to,
			    uint64_t timeout_ms);
/* [task] Receives one datagram (truncated to cap): its length, sender in
 * *from if not NULL. -errno, WF_ETIMEDOUT, WF_ECANCELED. */
WF_EXTERN ssize_t wf_udp_recvfrom(wf_udp *u, void *buf, size_t cap, wf_addr *from,
				  uint64_t timeout_ms);
/* [any] The bound address. 0 or -errno, WF_EINVAL. */
WF_EXTERN int wf_udp_local_addr(const wf_udp *u, wf_addr *out);
/* [any] Closes and frees u; its waiting receivers get WF_ECLOSED. 0 or
 * WF_EINVAL (stale handle). */
WF_EXTERN int wf_udp_close(wf_udp *u);

/* ------------------------------------------------------------------------
 * DNS: getaddrinfo / getnameinfo on libuv's thread pool; the task waits,
 * its worker does not.
 * ---------------------------------------------------------------------- */

/* [task] getaddrinfo(host, service, hints); *res is freed with
 * wf_freeaddrinfo. 0, WF_ENONAME (no such name), WF_EAGAIN (temporary
 * failure), WF_EINVAL, WF_ENOMEM, WF_ETIMEDOUT, WF_ECANCELED. */
WF_EXTERN int wf_getaddrinfo(const char *host, const char *service,
			     const struct addrinfo *hints, uint64_t timeout_ms,
			     struct addrinfo **res);
/* Frees a list wf_getaddrinfo stored in *res; NULL does nothing. */
WF_EXTERN void wf_freeaddrinfo(struct addrinfo *res);
/* [task] getnameinfo(addr, flags) into host (NI_MAXHOST bytes) and serv
 * (NI_MAXSERV bytes); either may be NULL. Codes as wf_getaddrinfo. */
WF_EXTERN int wf_getnameinfo(const wf_addr *addr, int flags, char *host, char *serv,
			     uint64_t timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
