/*
 * HTTP/1.1 connections on weft streams, parsed with llhttp: the request
 * handling of the demo server (demo/http_server.c) and of weft-bench's
 * http_hello, written once.
 *
 * http_conn_serve is a wf_conn_handler: give it to wf_start_server with an
 * http_conn_config as its argument. Per connection it does
 *  - keep-alive (HTTP/1.1's default, HTTP/1.0 with "Connection:
 *    keep-alive"), and closes after answering "Connection: close";
 *  - pipelining: every request already received is answered, in order, and
 *    the answers to one read go out in one write;
 *  - bodies by Content-Length or chunked, handed to the handler whole;
 *  - a bound on each request (target, header lines and body together):
 *    431 or 413 past it, then close;
 *  - 400 on anything llhttp refuses, then close;
 *  - an idle timeout between requests (408 if one was half sent).
 * A connection that must close is shut down for writing first and its
 * remaining input read away for a moment, so that the peer gets the last
 * answer instead of a reset.
 */
#ifndef WEFT_DEMO_HTTP_CONN_H
#define WEFT_DEMO_HTTP_CONN_H

#include <stddef.h>
#include <stdint.h>

#include <weft.h>

typedef struct http_request {
	const char *method; /* "GET", "POST", ... */
	const char *target; /* as sent ("/", "/echo?x=1"); NUL-terminated */
	size_t target_len;
	const char *body; /* the whole body (NULL when empty) */
	size_t body_len;
	unsigned http_major, http_minor;
} http_request;

typedef struct http_response {
	int status;               /* 200 when left 0 */
	const char *content_type; /* NULL: no Content-Type header */
	const void *body;         /* copied out as soon as the handler returns */
	size_t body_len;
} http_response;

/* Answers one request: fills *resp (zeroed beforehand). Runs in the
 * connection's task; may suspend. resp->body may point into req. */
typedef void (*http_handler)(const http_request *req, http_response *resp, void *arg);

typedef struct http_conn_config {
	http_handler handler;
	void *arg;
	/* Bytes of one request: target, header lines and body; 0: 64 KiB. */
	size_t max_request;
	/* A connection that sends nothing for this long is closed; 0: never. */
	uint64_t idle_timeout_ms;
	/* Called with the number of answers (rejections included) each time
	 * some are handed to the stream; NULL: nothing. */
	void (*on_answered)(unsigned answers, void *arg);
} http_conn_config;

/* [task] A wf_conn_handler serving HTTP/1.1 on s; arg is a
 * const http_conn_config * that outlives the server. */
void http_conn_serve(wf_stream *s, void *arg);

/* [task] Stops a server gracefully: stops accepting, gives the open
 * connections a second to end by themselves (a client reading its last
 * answer), shuts them down, and after five more seconds resets what is
 * left; then waits for every handler. Returns wf_server_wait_closed's
 * code (0: srv is freed). */
int http_server_shut_down(wf_server *srv);

/* The http_hello answer of the benchmark peers: 200, text/plain,
 * "Hello, World!", whatever the request. */
void http_hello_handler(const http_request *req, http_response *resp, void *arg);

#endif
