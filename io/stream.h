/*
 * Streams inside io/: what the server and the connect calls need of them.
 */
#ifndef WEFT_IO_STREAM_H
#define WEFT_IO_STREAM_H

#include "weft.h"

#include "runtime/handle.h"
#include "runtime/poller.h"

typedef struct wf__stream wf__stream;

/* A stream of fd (non-blocking already), registered on the calling task's
 * worker. On success the stream owns fd; on error fd is left open. */
int wf__stream_new(int fd, bool is_socket, size_t limit, wf_stream **out);

/* [task] Waits until a connect(2) under way on the stream's socket ends:
 * 0, its -errno, WF_ETIMEDOUT, WF_ECANCELED. */
int wf__stream_wait_connected(wf_stream *h, uint64_t deadline);

/* A counted reference to the stream a handle names, or NULL; give it back
 * with wf__stream_put. */
wf__stream *wf__stream_get(const wf_stream *h);
void wf__stream_put(wf__stream *s);
int wf__stream_fd_of(const wf__stream *s);

/* Shuts the socket down for both directions (close_clients): the reader
 * sees the end of the stream, writes fail; the owner still closes it. */
void wf__stream_shutdown(wf__stream *s);
/* Makes the coming close a reset (abort_clients), and shuts down. */
void wf__stream_reset(wf__stream *s);

#endif
