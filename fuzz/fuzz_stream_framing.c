/*
 * libFuzzer target: a stream's reading calls against a model.
 *
 * The input is a script. Its ops write bytes (in whatever chunks the input
 * says) into one end of a socketpair, end it, change the read limit, and
 * call read, readexactly, readline, readuntil (a 1 to 3 byte separator)
 * and read_all with small capacities on a wf_stream made with
 * wf_stream_from_fd on the other end. The model keeps the bytes written
 * and not yet returned, and says what each call must do by io.h's
 * contract: return which bytes, fail with WF_ELIMIT or WF_EINCOMPLETE and
 * keep them, or wait (then the call is made with a zero timeout and must
 * time out, consuming nothing). At the end what the calls returned plus
 * what stayed buffered must be what was written. A mismatch aborts.
 *
 * One runtime serves every input: started once, each input runs as a task
 * submitted to it and awaited.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "weft.h"

#define WAIT_MS 10000 /* for calls the model says complete: a hang bound */

struct script {
	const uint8_t *in;
	size_t len, pos;
};

static int next(struct script *sc)
{
	return sc->pos < sc->len ? sc->in[sc->pos++] : -1;
}

/* Bytes written and not yet returned by a reading call. */
struct model {
	uint8_t *buf;
	size_t start, end, cap;
	bool eof; /* the writing end is shut */
	size_t limit;
	size_t written, returned;
};

static size_t pending(const struct model *m) { return m->end - m->start; }
static const uint8_t *head(const struct model *m) { return m->buf + m->start; }

static void model_add(struct model *m, const uint8_t *p, size_t n)
{
	if (m->end + n > m->cap) {
		m->cap = (m->end + n) * 2;
		m->buf = realloc(m->buf, m->cap);
		if (m->buf == NULL)
			abort();
	}
	memcpy(m->buf + m->end, p, n);
	m->end += n;
	m->written += n;
}

static void fail(const char *what, long got, long want)
{
	fprintf(stderr, "fuzz_stream_framing: %s: got %ld (%s), want %ld (%s)\n", what, got,
		got < 0 ? wf_err_name((int)got) : "-", want, want < 0 ? wf_err_name((int)want) : "-");
	abort();
}

/* The call returned n bytes in out: they must be the next ones. */
static void model_take(struct model *m, const void *out, size_t n, const char *what)
{
	if (n > pending(m))
		fail(what, (long)n, (long)pending(m));
	if (memcmp(out, head(m), n) != 0) {
		fprintf(stderr, "fuzz_stream_framing: %s: returned bytes differ from the ones written\n",
			what);
		abort();
	}
	m->start += n;
	m->returned += n;
}

/* Where sep first occurs in what is pending, or -1. */
static long find(const struct model *m, const uint8_t *sep, size_t seplen)
{
	const uint8_t *p = memmem(head(m), pending(m), sep, seplen);
	return p != NULL ? (long)(p - head(m)) : -1;
}

static void do_readuntil(wf_stream *s, struct model *m, const uint8_t *sep, size_t seplen,
			 size_t cap, bool line)
{
	uint8_t out[64];
	size_t bound = cap < m->limit ? cap : m->limit;
	long at = find(m, sep, seplen);
	long want;
	bool waits = false;
	if (at >= 0 && (size_t)at + seplen <= bound)
		want = at + (long)seplen;
	else if (at >= 0 || pending(m) >= bound)
		want = WF_ELIMIT;
	else if (m->eof)
		want = line ? (long)pending(m) : WF_EINCOMPLETE;
	else
		want = WF_ETIMEDOUT, waits = true;
	uint64_t to = waits ? 0 : WAIT_MS;
	ssize_t got = line ? wf_stream_readline(s, out, cap, to)
			   : wf_stream_readuntil(s, sep, seplen, out, cap, to);
	if (got != want)
		fail(line ? "readline" : "readuntil", (long)got, want);
	if (got > 0)
		model_take(m, out, (size_t)got, line ? "readline" : "readuntil");
}

static void do_readline(wf_stream *s, struct model *m, size_t cap)
{
	do_readuntil(s, m, (const uint8_t *)"\n", 1, cap, true);
}

static void do_read(wf_stream *s, struct model *m, size_t n)
{
	uint8_t out[64];
	bool waits = pending(m) == 0 && !m->eof;
	ssize_t got = wf_stream_read(s, out, n, waits ? 0 : WAIT_MS);
	if (waits) {
		if (got != WF_ETIMEDOUT)
			fail("read", (long)got, WF_ETIMEDOUT);
		return;
	}
	if (pending(m) == 0) {
		if (got != 0)
			fail("read at the end", (long)got, 0);
		if (!wf_stream_at_eof(s))
			fail("at_eof after a read of 0", 0, 1);
		return;
	}
	/* Any count from 1 up: what the stream had buffered. */
	size_t most = n < pending(m) ? n : pending(m);
	if (got < 1 || (size_t)got > most)
		fail("read", (long)got, (long)most);
	model_take(m, out, (size_t)got, "read");
}

static void do_readexactly(wf_stream *s, struct model *m, size_t n)
{
	uint8_t out[128];
	size_t got = 12345;
	int want;
	if (pending(m) >= n)
		want = 0;
	else if (m->eof)
		want = WF_EINCOMPLETE;
	else
		want = WF_ETIMEDOUT;
	int rc = wf_stream_readexactly(s, out, n, &got, want == WF_ETIMEDOUT ? 0 : WAIT_MS);
	if (rc != want)
		fail("readexactly", rc, want);
	if (rc == 0 && got != n)
		fail("readexactly's count", (long)got, (long)n);
	if (rc == WF_EINCOMPLETE && got != pending(m))
		fail("readexactly's partial count", (long)got, (long)pending(m));
	/* A timeout consumes nothing, unless n is over the limit: then what
	 * came was passed on. */
	if (rc == WF_ETIMEDOUT && n <= m->limit && got != 0)
		fail("readexactly's count after a timeout", (long)got, 0);
	model_take(m, out, got, "readexactly");
}

static void do_read_all(wf_stream *s, struct model *m, size_t max)
{
	void *out = NULL;
	long want;
	bool waits = false;
	if (pending(m) > max)
		want = WF_ELIMIT;
	else if (m->eof)
		want = (long)pending(m);
	else
		want = WF_ETIMEDOUT, waits = true;
	ssize_t got = wf_stream_read_all(s, max, &out, waits ? 0 : WAIT_MS);
	if (got != want)
		fail("read_all", (long)got, want);
	if (got >= 0) {
		if (out == NULL || ((char *)out)[got] != '\0')
			fail("read_all's buffer", 0, 1);
		model_take(m, out, (size_t)got, "read_all");
		if (!wf_stream_at_eof(s))
			fail("at_eof after read_all", 0, 1);
	} else if (out != NULL) {
		fail("read_all's buffer after an error", 1, 0);
	}
	free(out);
}

static void *run_script(void *arg)
{
	struct script *sc = arg;
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
		abort();
	wf_stream *s;
	if (wf_stream_from_fd(sv[0], &s) != 0)
		abort();
	struct model m = {.limit = 65536, .cap = 256};
	m.buf = malloc(m.cap);
	if (m.buf == NULL)
		abort();
	for (int op; (op = next(sc)) >= 0;) {
		int a = next(sc);
		if (a < 0)
			a = 0;
		switch (op % 9) {
		case 0:
		case 1: { /* write 1 to 16 bytes of the input */
			size_t n = 1 + (size_t)a % 16;
			if (n > sc->len - sc->pos)
				n = sc->len - sc->pos;
			if (m.eof || n == 0)
				break;
			/* Not a blocking send: a Unix socket counts each small
			 * send at the size of its buffer (hundreds of bytes), so
			 * a few hundred tiny writes the stream does not read
			 * (its limit is lower) fill the socket, and this task,
			 * the only reader, would wait for itself. What the
			 * socket did not take was not written. */
			ssize_t k = send(sv[1], sc->in + sc->pos, n, MSG_NOSIGNAL | MSG_DONTWAIT);
			if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK)
				abort();
			if (k > 0)
				model_add(&m, sc->in + sc->pos, (size_t)k);
			sc->pos += n;
			break;
		}
		case 2:
			do_read(s, &m, 1 + (size_t)a % 64);
			break;
		case 3:
			do_readexactly(s, &m, (size_t)a % 100);
			break;
		case 4:
			do_readline(s, &m, 1 + (size_t)a % 64);
			break;
		case 5: { /* readuntil: a % 3 + 1 separator bytes follow */
			uint8_t sep[3];
			size_t seplen = 1 + (size_t)a % 3;
			for (size_t k = 0; k < seplen; k++) {
				int b = next(sc);
				sep[k] = b < 0 ? '\n' : (uint8_t)b;
			}
			int c = next(sc);
			do_readuntil(s, &m, sep, seplen, 1 + (size_t)(c < 0 ? 63 : c % 64), false);
			break;
		}
		case 6:
			m.limit = 1 + (size_t)a % 64;
			if (wf_stream_set_limit(s, m.limit) != 0)
				abort();
			break;
		case 7:
			if (!m.eof && shutdown(sv[1], SHUT_WR) != 0)
				abort();
			m.eof = true;
			break;
		default:
			do_read_all(s, &m, (size_t)a % 128);
			break;
		}
	}
	/* What stays buffered is the rest of what was written. */
	if (!m.eof)
		shutdown(sv[1], SHUT_WR);
	m.eof = true;
	if (wf_stream_set_limit(s, 65536) != 0)
		abort();
	m.limit = 65536;
	do_read_all(s, &m, SIZE_MAX - 1);
	if (m.returned != m.written)
		fail("bytes returned in all", (long)m.returned, (long)m.written);
	if (wf_stream_close(s, WAIT_MS) != 0)
		abort();
	close(sv[1]);
	free(m.buf);
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
	struct script sc = {.in = data, .len = size};
	wf_future *f;
	if (wf_runtime_submit(rt, run_script, &sc, &f) != 0)
		abort();
	int rc = wf_await(f, NULL);
	wf_future_release(f);
	if (rc != 0)
		fail("the script's task", rc, 0);
	return 0;
}
