/*
 * libFuzzer target: the HTTP demo's request handling (demo/http_conn.c).
 *
 * http_conn_serve has no parsing function of its own to call: it is a
 * connection handler. So each input is sent, as it is, into one end of a
 * socketpair whose other end is a wf_stream served by http_conn_serve in
 * a task (the sending end is then shut), and everything the server answers
 * is read back. The answers are checked against a model: the input parsed
 * by llhttp alone says how many requests were complete before the
 * connection had to close (each gets 200 from http_hello_handler) and
 * whether a 400 follows (a request llhttp refuses, or one cut short by
 * the end of the stream), or a 413 (a declared Content-Length past the
 * server's bound on a request). The answers must parse as exactly those HTTP
 * responses, in that order (a HEAD request's answer has no body).
 *
 * One runtime serves every input: started once, each input runs as a task
 * submitted to it and awaited.
 */
#include <errno.h>
#include <fcntl.h>
#include <llhttp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "http_conn.h"
#include "weft.h"

#define MAX_METHODS 4096
/* The server's bound on a request (url, headers and body). An input is far
 * shorter, so only a declared Content-Length can pass it: 413. */
#define MAX_REQUEST ((size_t)1 << 20)

/* ---- the model: the requests llhttp finds in the input ------------------- */

struct model {
	unsigned complete;  /* requests answered with 200 */
	bool error;         /* then an error answer: */
	int error_status;   /* 413 for a declared body past MAX_REQUEST, else 400 */
	bool in_message, keep_alive, closing;
	size_t req_bytes; /* counted as the server counts them */
	uint8_t head[MAX_METHODS]; /* per complete request: was it HEAD */
};

static int m_begin(llhttp_t *p)
{
	struct model *m = p->data;
	m->in_message = true;
	m->req_bytes = 0;
	return 0;
}

/* The target's and the headers' bytes, plus 4 a header line (": " and
 * CRLF): what demo/http_conn.c counts before it looks at the body. */
static int m_bytes(llhttp_t *p, const char *at, size_t n)
{
	(void)at;
	((struct model *)p->data)->req_bytes += n;
	return 0;
}

static int m_value_complete(llhttp_t *p)
{
	((struct model *)p->data)->req_bytes += 4;
	return 0;
}

static int m_headers(llhttp_t *p)
{
	struct model *m = p->data;
	m->keep_alive = llhttp_should_keep_alive(p) && !p->upgrade;
	/* A declared body that cannot fit is refused before it is read. */
	if ((p->flags & F_CONTENT_LENGTH) && p->content_length > MAX_REQUEST - m->req_bytes) {
		m->error_status = 413;
		return -1;
	}
	return 0;
}

static int m_complete(llhttp_t *p)
{
	struct model *m = p->data;
	m->in_message = false;
	if (m->complete < MAX_METHODS)
		m->head[m->complete] = p->method == HTTP_HEAD;
	m->complete++;
	if (!m->keep_alive)
		m->closing = true;
	return m->closing ? HPE_PAUSED : 0;
}

static void model_run(struct model *m, const uint8_t *data, size_t size)
{
	llhttp_settings_t st;
	llhttp_settings_init(&st);
	st.on_message_begin = m_begin;
	st.on_url = m_bytes;
	st.on_header_field = m_bytes;
	st.on_header_value = m_bytes;
	st.on_header_value_complete = m_value_complete;
	st.on_headers_complete = m_headers;
	st.on_message_complete = m_complete;
	llhttp_t p;
	llhttp_init(&p, HTTP_REQUEST, &st);
	p.data = m;
	m->error_status = 400;
	llhttp_errno_t err = llhttp_execute(&p, (const char *)data, size);
	if (err != HPE_OK && err != HPE_PAUSED && err != HPE_PAUSED_UPGRADE)
		m->error = true;
	else if (err == HPE_OK && !m->closing && m->in_message)
		m->error = true; /* cut short by the end of the stream */
}

/* ---- the answers, parsed ------------------------------------------------- */

struct answers {
	const struct model *m;
	unsigned n;
	int status[MAX_METHODS + 1];
};

static int a_headers(llhttp_t *p)
{
	struct answers *a = p->data;
	/* The answer to a HEAD request has a Content-Length and no body. */
	return a->n < a->m->complete && a->n < MAX_METHODS && a->m->head[a->n] ? 1 : 0;
}

static int a_complete(llhttp_t *p)
{
	struct answers *a = p->data;
	if (a->n <= MAX_METHODS)
		a->status[a->n] = p->status_code;
	a->n++;
	return 0;
}

static void die(const char *what, long got, long want, const uint8_t *out, size_t len)
{
	fprintf(stderr, "fuzz_http_request: %s: got %ld, want %ld; the answers:\n%.*s\n", what, got,
		want, (int)(len > 2000 ? 2000 : len), (const char *)out);
	abort();
}

static void check_answers(const struct model *m, const uint8_t *out, size_t len)
{
	llhttp_settings_t st;
	llhttp_settings_init(&st);
	st.on_headers_complete = a_headers;
	st.on_message_complete = a_complete;
	struct answers a = {.m = m};
	llhttp_t p;
	llhttp_init(&p, HTTP_RESPONSE, &st);
	p.data = &a;
	llhttp_errno_t err = llhttp_execute(&p, (const char *)out, len);
	if (err != HPE_OK)
		die(llhttp_errno_name(err), (long)err, HPE_OK, out, len);
	err = llhttp_finish(&p);
	if (err != HPE_OK)
		die("the answers end in the middle of one", (long)err, HPE_OK, out, len);
	unsigned want = m->complete + (m->error ? 1 : 0);
	if (a.n != want)
		die("answers", (long)a.n, (long)want, out, len);
	for (unsigned i = 0; i < a.n && i <= MAX_METHODS; i++) {
		int w = i < m->complete ? 200 : m->error_status;
		if (a.status[i] != w)
			die("status", a.status[i], w, out, len);
	}
}

/* ---- the server side ----------------------------------------------------- */

static const http_conn_config config = {
	.handler = http_hello_handler,
	/* Far above what an input's request can count: the model has no
	 * 414 or 431, and a 413 only for a declared Content-Length. */
	.max_request = MAX_REQUEST,
};

static void *serve(void *arg)
{
	int fd = (int)(intptr_t)arg;
	wf_stream *s;
	if (wf_stream_from_fd(fd, &s) != 0)
		abort();
	http_conn_serve(s, (void *)&config);
	wf_stream_close(s, 5000);
	return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static wf_runtime *rt;
	if (rt == NULL) {
		wf_config cfg;
		wf_config_init(&cfg);
		cfg.workers = 2;
		if (wf_runtime_start(&cfg, &rt) != 0)
			abort();
	}
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	wf_future *f;
	if (wf_runtime_submit(rt, serve, (void *)(intptr_t)sv[0], &f) != 0)
		abort();
	/* Send the input and read the answers at once: neither side may wait
	 * for the other's buffer. */
	fcntl(sv[1], F_SETFL, O_NONBLOCK);
	size_t sent = 0, len = 0, cap = 4096;
	uint8_t *out = malloc(cap);
	bool shut = false;
	if (size == 0) {
		shutdown(sv[1], SHUT_WR);
		shut = true;
	}
	for (;;) {
		struct pollfd pfd = {.fd = sv[1], .events = POLLIN | (shut ? 0 : POLLOUT)};
		int pr = poll(&pfd, 1, 30000);
		if (pr < 0 && errno == EINTR)
			continue; /* libFuzzer's timer */
		if (pr <= 0)
			abort(); /* the server hangs */
		if (!shut && (pfd.revents & (POLLOUT | POLLERR | POLLHUP))) {
			ssize_t n = send(sv[1], data + sent, size - sent, MSG_NOSIGNAL);
			if (n > 0)
				sent += (size_t)n;
			/* A server that closed early stops the sending. */
			if ((n < 0 && errno != EAGAIN && errno != EINTR) || sent == size) {
				shutdown(sv[1], SHUT_WR);
				shut = true;
			}
		}
		if (pfd.revents & (POLLIN | POLLHUP | POLLERR)) {
			if (cap - len < 4096) {
				cap *= 2;
				out = realloc(out, cap);
				if (out == NULL)
					abort();
			}
			ssize_t n = recv(sv[1], out + len, cap - len, 0);
			if (n > 0)
				len += (size_t)n;
			else if (n == 0 || (errno != EAGAIN && errno != EINTR))
				break;
		}
	}
	if (wf_await(f, NULL) != 0)
		abort();
	wf_future_release(f);
	close(sv[1]);

	/* An input the server stopped reading early was cut where the server
	 * stopped; the model reads it whole, which answers the same: the
	 * server stops only after its last answer. */
	struct model *m = calloc(1, sizeof(*m));
	model_run(m, data, size);
	check_answers(m, out, len);
	free(m);
	free(out);
	return 0;
}
