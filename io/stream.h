/*
 * Streams inside io/: what the server and the connect calls need of them.
 */
#ifndef WEFT_IO_STREAM_H
#define WEFT_IO_STREAM_H

#include "weft.h"

#include "io/io_internal.h"

#include "runtime/handle.h"
#include "runtime/poller.h"

typedef struct wf__stream wf__stream;

/* A stream of fd (non-blocking already), registered on the calling task's
 * worker. On success the stream owns fd; on error fd is left open. */
int wf__stream_new(int fd, bool is_socket, size_t limit, wf_stream **out);
/* The same, registered on worker `worker` of the caller's runtime (-1:
 * the caller's own). */
int wf__stream_new_on(int fd, bool is_socket, size_t limit, int worker, wf_stream **out);

/* The stream forgets p (wf__local_peer_forget) when it is freed. */
void wf__stream_keep_local_peer(wf_stream *h, wf__local_peer p);

/* [task] Waits until a connect(2) under way on the stream's socket ends:
 * 0, its -errno, WF_ETIMEDOUT, WF_ECANCELED. */
int wf__stream_wait_connected(wf_stream *h, uint64_t deadline);

/* A counted reference to the stream a handle names, or NULL; give it back
 * with wf__stream_put. */
wf__stream *wf__stream_get(const wf_stream *h);
void wf__stream_put(wf__stream *s);
int wf__stream_fd_of(const wf__stream *s);

/* ---- the transport seam ------------------------------------------------
 * A stream reads and writes its descriptor itself (read, send). A
 * transport put in between (io/tls.c) takes every byte over instead: the
 * stream still owns the buffers, the reader's seat, the write queue and
 * the readiness words, and calls the transport where it would make the
 * system call. A plain stream has none (NULL): its path is today's, behind
 * one well-predicted branch.
 *
 * The transport's calls are made one at a time, under io->sl (so the
 * transport needs no lock of its own), and never block: what cannot go
 * on now returns WF_EAGAIN with *want naming the socket's direction it
 * waits for (WF__IO_READ or WF__IO_WRITE: TLS may have to write to read,
 * and read to write). The caller read that direction's token before the
 * call and clears it with that token, as for a system call. */
typedef struct wf__transport {
	/* Up to n bytes into buf: the count, 0 at the end of the stream,
	 * WF_EAGAIN, or the error that ends reading. */
	ssize_t (*recv)(void *t, void *buf, size_t n, int *want);
	/* Up to n bytes of buf: the count (>= 1), WF_EAGAIN, or the error
	 * that breaks writing. A call after WF_EAGAIN passes the same bytes
	 * again first (from wherever they are now). */
	ssize_t (*send)(void *t, const void *buf, size_t n, int *want);
	/* Whether recv has bytes without asking the socket. */
	bool (*has_pending)(void *t);
	/* [task] Ends the sending side (TLS: close_notify) once the write
	 * queue is empty, for close; then, if wait_peer (the caller holds
	 * the reader's seat), waits for the peer's end. Bounded by deadline.
	 * Called without io->sl (it waits through wf__stream_drive). */
	int (*shutdown)(wf__stream *s, void *t, bool wait_peer, uint64_t deadline);
	/* The stream is being freed (any thread, once). */
	void (*free)(void *t);
	/* Whether the sending side can end while reading goes on
	 * (write_eof): OpenSSL drops what comes after its close_notify, so
	 * TLS cannot (asyncio's SSL transports cannot either). */
	bool half_close;
} wf__transport;

/* Puts ops (with its state t) between the stream and its descriptor,
 * before the stream is handed to anyone else. The stream frees t. */
void wf__stream_set_transport(wf__stream *s, const wf__transport *ops, void *t);
/* The state of s's transport if that transport is ops, else NULL. */
void *wf__stream_transport_of(wf__stream *s, const wf__transport *ops);
/* The lock a transport's calls are made under (io->sl), for a transport
 * that reads its own state from another thread. */
wf__spinlock *wf__stream_lock(wf__stream *s);
/* [task] Runs step(t, &want) until it returns 0 (done), making the calls
 * under io->sl unless `unlocked` (only while no one else can reach the
 * stream: a handshake before the stream is handed out). WF_EAGAIN waits
 * for the direction *want names (clearing its ready bit with the token
 * read before the call); 1 (progress, call again) goes on at once unless
 * the deadline passed. 0, step's error, WF_ETIMEDOUT, WF_ECANCELED,
 * WF_ECLOSED. */
int wf__stream_drive(wf__stream *s, int (*step)(void *t, int *want), void *t, bool unlocked,
		     uint64_t deadline, const char *what);

/* Shuts the socket down for both directions (close_clients): the reader
 * sees the end of the stream, writes fail; the owner still closes it. */
void wf__stream_shutdown(wf__stream *s);
/* Makes the coming close a reset (abort_clients), and shuts down. */
void wf__stream_reset(wf__stream *s);

#endif
