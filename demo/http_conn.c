/*
 * HTTP/1.1 connections on weft streams: see http_conn.h.
 *
 * One task per connection reads what the socket has, feeds it to llhttp,
 * and answers each complete request from llhttp's on_message_complete
 * callback into an output buffer; the buffer goes to the stream once the
 * read is parsed, so a pipelined batch costs one write. The handler runs
 * inside the callback and may suspend: the task has its own stack, and the
 * parser's state lives in struct conn.
 */
#include "http_conn.h"

#include <llhttp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_MAX_REQUEST ((size_t)64 * 1024)
#define READ_CHUNK 16384
/* A closing connection: how long its answer may take to flush, then how
 * long and how much of the peer's remaining input is read away so that
 * close(2) does not turn into a reset that destroys the answer. */
#define CLOSE_FLUSH_MS 5000
#define LINGER_MS 500
#define LINGER_BYTES ((size_t)256 * 1024)
/* Buffers that a big request grew are given back above this size. */
#define KEEP_CAP ((size_t)64 * 1024)

struct buf {
	char *p;
	size_t len, cap;
};

static bool buf_add(struct buf *b, const void *s, size_t n)
{
	if (b->cap - b->len < n) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap - b->len < n)
			cap *= 2;
		char *p = realloc(b->p, cap);
		if (p == NULL)
			return false;
		b->p = p;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->p + b->len, s, n);
	b->len += n;
	return true;
}

static bool buf_str(struct buf *b, const char *s)
{
	return buf_add(b, s, strlen(s));
}

static bool buf_uint(struct buf *b, uint64_t v)
{
	char tmp[24];
	size_t i = sizeof(tmp);
	do {
		tmp[--i] = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	return buf_add(b, tmp + i, sizeof(tmp) - i);
}

static void buf_trim(struct buf *b)
{
	b->len = 0;
	if (b->cap > KEEP_CAP) {
		free(b->p);
		*b = (struct buf){0};
	}
}

struct conn {
	llhttp_t parser;
	const http_conn_config *cfg;
	wf_stream *s;
	size_t max;
	uint64_t timeout;
	struct buf target, body, out;
	size_t req_bytes;  /* of the request being parsed, against max */
	unsigned answers;  /* in out, not yet handed to the stream */
	int reject;        /* the status a callback refused the request with */
	bool in_message;   /* a request has begun and is not complete */
	bool keep_alive;   /* of the request being parsed */
	bool closing;      /* the last answer ends the connection */
};

static const char *reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 204: return "No Content";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	default: return "Unknown";
	}
}

/* The Date header's value, formatted once a second per thread: at wrk's
 * rates strftime per answer would show. noinline, because a task may
 * resume on another worker after any suspension: the thread-local's
 * address must be taken inside this call, never kept by a caller. The
 * pointer is used before the caller next suspends. */
static __attribute__((noinline)) const char *http_date(void)
{
	static __thread time_t sec = -1;
	static __thread char text[32];
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	if (ts.tv_sec != sec) {
		struct tm tm;
		gmtime_r(&ts.tv_sec, &tm);
		strftime(text, sizeof(text), "%a, %d %b %Y %H:%M:%S GMT", &tm);
		sec = ts.tv_sec;
	}
	return text;
}

/* Appends one answer to c->out (headers in Go's order, which is
 * alphabetical). HTTP/1.0 keep-alive must be confirmed by the answer, or
 * the client closes. */
static bool answer(struct conn *c, int status, const char *ctype, const void *body, size_t len,
		   bool head, bool http10)
{
	struct buf *o = &c->out;
	bool ok = buf_str(o, "HTTP/1.1 ") && buf_uint(o, (uint64_t)status) && buf_str(o, " ") &&
		  buf_str(o, reason(status)) && buf_str(o, "\r\n");
	if (ok && c->closing)
		ok = buf_str(o, "Connection: close\r\n");
	else if (ok && http10)
		ok = buf_str(o, "Connection: keep-alive\r\n");
	ok = ok && buf_str(o, "Content-Length: ") && buf_uint(o, len) && buf_str(o, "\r\n");
	if (ok && ctype != NULL)
		ok = buf_str(o, "Content-Type: ") && buf_str(o, ctype) && buf_str(o, "\r\n");
	ok = ok && buf_str(o, "Date: ") && buf_str(o, http_date()) && buf_str(o, "\r\n\r\n");
	if (ok && !head)
		ok = buf_add(o, body, len);
	if (ok)
		c->answers++;
	return ok;
}

/* The answer that ends a connection: rejected, malformed or timed out. */
static bool answer_error(struct conn *c, int status)
{
	c->closing = true;
	const char *text = reason(status);
	char body[64];
	size_t n = strlen(text);
	memcpy(body, text, n);
	body[n++] = '\n';
	return answer(c, status, "text/plain", body, n, false, false);
}

static struct conn *conn_of(llhttp_t *p)
{
	return p->data;
}

/* Counts n more bytes of the current request; false (and the status to
 * refuse it with) past the bound. */
static bool count(struct conn *c, size_t n, int status)
{
	if (n > c->max - c->req_bytes) {
		c->reject = status;
		return false;
	}
	c->req_bytes += n;
	return true;
}

static int on_message_begin(llhttp_t *p)
{
	struct conn *c = conn_of(p);
	c->in_message = true;
	c->req_bytes = 0;
	c->target.len = 0;
	c->body.len = 0;
	return 0;
}

static int on_url(llhttp_t *p, const char *at, size_t n)
{
	struct conn *c = conn_of(p);
	if (!count(c, n, 414))
		return -1;
	if (!buf_add(&c->target, at, n)) {
		c->reject = 500;
		return -1;
	}
	return 0;
}

/* Header names and values are not kept (llhttp interprets Connection,
 * Content-Length and Transfer-Encoding itself), only counted. */
static int on_header_bytes(llhttp_t *p, const char *at, size_t n)
{
	return count(conn_of(p), n, 431) ? 0 : -1;
}

/* ": " and CRLF of each header line. */
static int on_header_value_complete(llhttp_t *p)
{
	return count(conn_of(p), 4, 431) ? 0 : -1;
}

static int on_headers_complete(llhttp_t *p)
{
	struct conn *c = conn_of(p);
	/* Upgrades (WebSocket, h2c) are not spoken here: answer, then close. */
	c->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
	/* A declared body that cannot fit is refused before it is read. */
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > c->max - c->req_bytes) {
		c->reject = 413;
		return -1;
	}
	return 0;
}

static int on_body(llhttp_t *p, const char *at, size_t n)
{
	struct conn *c = conn_of(p);
	if (!count(c, n, 413))
		return -1;
	if (!buf_add(&c->body, at, n)) {
		c->reject = 500;
		return -1;
	}
	return 0;
}

static int on_message_complete(llhttp_t *p)
{
	struct conn *c = conn_of(p);
	c->in_message = false;
	if (!buf_add(&c->target, "", 1)) {
		c->reject = 500;
		return -1;
	}
	http_request req = {
		.method = llhttp_method_name((llhttp_method_t)p->method),
		.target = c->target.p,
		.target_len = c->target.len - 1,
		.body = c->body.len ? c->body.p : NULL,
		.body_len = c->body.len,
		.http_major = p->http_major,
		.http_minor = p->http_minor,
	};
	http_response resp = {0};
	c->cfg->handler(&req, &resp, c->cfg->arg);
	if (!c->keep_alive)
		c->closing = true;
	bool http10 = p->http_major == 1 && p->http_minor == 0;
	if (!answer(c, resp.status ? resp.status : 200, resp.content_type, resp.body,
		    resp.body_len, p->method == HTTP_HEAD, http10)) {
		c->reject = 500;
		return -1;
	}
	buf_trim(&c->target);
	buf_trim(&c->body);
	/* Whatever the client pipelined after a closing request is not
	 * answered: stop parsing here. */
	return c->closing ? HPE_PAUSED : 0;
}

static const llhttp_settings_t settings = {
	.on_message_begin = on_message_begin,
	.on_url = on_url,
	.on_header_field = on_header_bytes,
	.on_header_value = on_header_bytes,
	.on_header_value_complete = on_header_value_complete,
	.on_headers_complete = on_headers_complete,
	.on_body = on_body,
	.on_message_complete = on_message_complete,
};

/* Hands the answers gathered so far to the stream, then waits while its
 * write buffer is over the high-water mark: a client that pipelines
 * without reading is held back instead of growing our memory. */
static bool flush(struct conn *c)
{
	if (c->out.len == 0)
		return true;
	int rc = wf_stream_write(c->s, c->out.p, c->out.len);
	buf_trim(&c->out);
	unsigned answers = c->answers;
	c->answers = 0;
	if (rc == 0 && c->cfg->on_answered != NULL)
		c->cfg->on_answered(answers, c->cfg->arg);
	if (rc == 0)
		rc = wf_stream_drain(c->s, c->timeout);
	return rc == 0;
}

static uint64_t now_ms(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Sends the end of the stream after the last answer, then reads what the
 * peer still sends for a moment, so that closing with unread input (which
 * the kernel answers with a reset) does not destroy the answer before the
 * peer has read it. */
static void lingering_close(wf_stream *s)
{
	if (wf_stream_write_eof(s, CLOSE_FLUSH_MS) != 0)
		return;
	char sink[4096];
	size_t total = 0;
	uint64_t end = now_ms() + LINGER_MS;
	while (total < LINGER_BYTES) {
		uint64_t now = now_ms();
		if (now >= end)
			break;
		ssize_t n = wf_stream_read(s, sink, sizeof(sink), end - now);
		if (n <= 0)
			break;
		total += (size_t)n;
	}
}

void http_conn_serve(wf_stream *s, void *arg)
{
	const http_conn_config *cfg = arg;
	struct conn *c = calloc(1, sizeof(*c));
	char *in = malloc(READ_CHUNK);
	if (c == NULL || in == NULL)
		goto out; /* the server closes s */
	c->cfg = cfg;
	c->s = s;
	c->max = cfg->max_request ? cfg->max_request : DEFAULT_MAX_REQUEST;
	c->timeout = cfg->idle_timeout_ms ? cfg->idle_timeout_ms : WF_FOREVER;
	llhttp_init(&c->parser, HTTP_REQUEST, &settings);
	c->parser.data = c;

	bool linger = false;
	for (;;) {
		ssize_t n = wf_stream_read(s, in, READ_CHUNK, c->timeout);
		if (n <= 0) {
			/* A request cut short by the end of the stream or by
			 * the idle timeout still gets an answer. */
			if (c->in_message && (n == 0 || n == WF_ETIMEDOUT)) {
				answer_error(c, n == 0 ? 400 : 408);
				linger = flush(c) && n != 0;
			}
			break;
		}
		llhttp_errno_t err = llhttp_execute(&c->parser, in, (size_t)n);
		if (err != HPE_OK && err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE &&
		    !answer_error(c, c->reject ? c->reject : 400)) {
			c->out.len = 0; /* out of memory: nothing sensible to send */
			break;
		}
		if (!flush(c))
			break;
		if (err != HPE_OK || c->closing) {
			linger = true;
			break;
		}
	}
	if (linger)
		lingering_close(s);
out:
	if (c != NULL) {
		free(c->target.p);
		free(c->body.p);
		free(c->out.p);
	}
	free(c);
	free(in);
}

int http_server_shut_down(wf_server *srv)
{
	wf_server_close(srv);
	int rc = wf_server_wait_closed(srv, 1000);
	if (rc == WF_ETIMEDOUT) {
		wf_server_close_clients(srv);
		rc = wf_server_wait_closed(srv, 5000);
	}
	if (rc == WF_ETIMEDOUT) {
		wf_server_abort_clients(srv);
		rc = wf_server_wait_closed(srv, WF_FOREVER);
	}
	return rc;
}

void http_hello_handler(const http_request *req, http_response *resp, void *arg)
{
	static const char hello[] = "Hello, World!";
	resp->status = 200;
	resp->content_type = "text/plain";
	resp->body = hello;
	resp->body_len = sizeof(hello) - 1;
}
