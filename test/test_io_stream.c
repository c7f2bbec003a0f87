/*
 * Streams: the reading calls (read, readexactly, readuntil, readline,
 * read_all, at_eof) and their limits, every read's cancellation safety
 * under timeouts and cancellations at random points, drain with a slow
 * reader, half-close, close while a read waits, resets from the peer
 * while reading and writing, connect errors, pipes, stale handles, plain
 * threads, and a stream used from another worker.
 *
 * Pairs are Unix socketpairs made with wf_stream_from_fd, or loopback TCP
 * where the test is about TCP (resets, connect). Results, orders and codes
 * are asserted; time only bounds a hang.
 */
#include <criterion/criterion.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>

#include "io_test.h"
#include "rt_check.h"
#include "weft.h"

/* ---- readexactly, readline, readuntil, read_all, at_eof ------------------ */

static void *basics_main(void *arg)
{
	wf_stream *a, *b;
	if (!unix_pair(&a, &b))
		return NULL;
	char buf[64];
	size_t got = 99;

	/* Bad input. */
	CHECK_RC((int)wf_stream_read(a, NULL, 1, 0), WF_EINVAL);
	CHECK_RC((int)wf_stream_read(a, buf, 0, 0), WF_EINVAL);
	CHECK_RC((int)wf_stream_readuntil(a, NULL, 1, buf, sizeof(buf), 0), WF_EINVAL);
	CHECK_RC((int)wf_stream_readuntil(a, "x", 0, buf, sizeof(buf), 0), WF_EINVAL);
	CHECK_RC((int)wf_stream_readuntil(a, "x", 1, buf, 0, 0), WF_EINVAL);
	CHECK_RC((int)wf_stream_read_all(a, 10, NULL, 0), WF_EINVAL);
	CHECK_RC(wf_stream_set_limit(a, 0), WF_EINVAL);
	CHECK_RC(wf_stream_set_write_buffer_limits(a, 1, 2), WF_EINVAL);
	CHECK(!wf_stream_at_eof(NULL));
	CHECK(!wf_stream_at_eof(a));

	/* Nothing there: a zero timeout says so and consumes nothing. */
	CHECK_RC((int)wf_stream_read(a, buf, sizeof(buf), 0), WF_ETIMEDOUT);
	CHECK_RC(wf_stream_readexactly(a, buf, 4, &got, 1), WF_ETIMEDOUT);
	CHECK_EQ(got, 0);

	CHECK_RC(wf_stream_write(b, "hello\nwor", 9), 0);
	CHECK_EQ(wf_stream_readline(a, buf, sizeof(buf), 5000), 6);
	CHECK(memcmp(buf, "hello\n", 6) == 0);
	/* Half a line: a timed-out readline leaves it for the next call. */
	CHECK_RC((int)wf_stream_readline(a, buf, sizeof(buf), 2), WF_ETIMEDOUT);
	CHECK_RC(wf_stream_write(b, "ld\r\n--", 6), 0);
	CHECK_EQ(wf_stream_readuntil(a, "\r\n", 2, buf, sizeof(buf), 5000), 7);
	CHECK(memcmp(buf, "world\r\n", 7) == 0);
	CHECK_RC(wf_stream_readexactly(a, buf, 2, &got, 5000), 0);
	CHECK_EQ(got, 2);
	CHECK(memcmp(buf, "--", 2) == 0);
	CHECK_RC(wf_stream_readexactly(a, buf, 0, &got, 0), 0);

	/* The end of the stream in the middle of a readexactly: the partial
	 * bytes are handed over and consumed. */
	CHECK_RC(wf_stream_write(b, "abcde", 5), 0);
	CHECK_RC(wf_stream_close(b, 5000), 0);
	memset(buf, 0, sizeof(buf));
	CHECK_RC(wf_stream_readexactly(a, buf, 10, &got, 5000), WF_EINCOMPLETE);
	CHECK_EQ(got, 5);
	CHECK(memcmp(buf, "abcde", 5) == 0);
	CHECK(wf_stream_at_eof(a));
	CHECK_EQ(wf_stream_read(a, buf, sizeof(buf), 5000), 0);
	CHECK_EQ(wf_stream_readline(a, buf, sizeof(buf), 5000), 0);
	CHECK_RC(wf_stream_readexactly(a, buf, 1, &got, 5000), WF_EINCOMPLETE);
	CHECK_EQ(got, 0);
	CHECK_RC(wf_stream_close(a, 5000), 0);

	/* At the end: readuntil leaves an unterminated tail buffered,
	 * readline hands it over. */
	if (!unix_pair(&a, &b))
		return NULL;
	CHECK_RC(wf_stream_write(b, "one\ntwo\nthree", 13), 0);
	CHECK_RC(wf_stream_write_eof(b, 5000), 0);
	CHECK_EQ(wf_stream_readuntil(a, "\n", 1, buf, sizeof(buf), 5000), 4);
	CHECK_EQ(wf_stream_readline(a, buf, sizeof(buf), 5000), 4);
	CHECK(memcmp(buf, "two\n", 4) == 0);
	CHECK_RC((int)wf_stream_readuntil(a, "\n", 1, buf, sizeof(buf), 5000), WF_EINCOMPLETE);
	CHECK(!wf_stream_at_eof(a));
	CHECK_EQ(wf_stream_readline(a, buf, sizeof(buf), 5000), 5);
	CHECK(memcmp(buf, "three", 5) == 0);
	CHECK(wf_stream_at_eof(a));
	CHECK_EQ(wf_stream_readline(a, buf, sizeof(buf), 5000), 0);
	CHECK_RC(wf_stream_close(a, 5000), 0);
	CHECK_RC(wf_stream_close(b, 5000), 0);
	return NULL;
}

Test(io_stream, read_calls_and_the_end_of_the_stream, .timeout = 60)
{
	run_weft(2, basics_main, NULL);
}

/* Over the limit: WF_ELIMIT, and every byte is still there to be read. */
static void *limit_main(void *arg)
{
	wf_stream *a, *b;
	if (!unix_pair(&a, &b))
		return NULL;
	char buf[256], line[100];
	for (int i = 0; i < 90; i++)
		line[i] = (char)('a' + i % 26);
	line[90] = '\n';
	CHECK_RC(wf_stream_set_limit(a, 32), 0);
	CHECK_RC(wf_stream_write(b, line, 91), 0);
	CHECK_RC(wf_stream_write(b, "ok\n", 3), 0);
	/* The limit bounds readline and readuntil whatever the capacity. */
	CHECK_RC((int)wf_stream_readline(a, buf, sizeof(buf), 5000), WF_ELIMIT);
	CHECK_RC((int)wf_stream_readuntil(a, "\n", 1, buf, sizeof(buf), 5000), WF_ELIMIT);
	CHECK_RC((int)wf_stream_readuntil(a, "jkl", 3, buf, sizeof(buf), 5000), 12);
	CHECK(memcmp(buf, line, 12) == 0);
	/* readexactly beyond the limit passes the bytes on as they come. */
	size_t got = 0;
	CHECK_RC(wf_stream_readexactly(a, buf, 79, &got, 5000), 0);
	CHECK_EQ(got, 79);
	CHECK(memcmp(buf, line + 12, 79) == 0);
	CHECK_EQ(wf_stream_readline(a, buf, sizeof(buf), 5000), 3);

	/* The capacity bounds them too: a separator past cap is ELIMIT even
	 * when the buffer holds it. */
	CHECK_RC(wf_stream_set_limit(a, 65536), 0);
	CHECK_RC(wf_stream_write(b, "0123456789\n", 11), 0);
	CHECK_RC(wf_stream_readexactly(a, buf, 1, NULL, 5000), 0);
	CHECK_RC((int)wf_stream_readline(a, buf, 5, 5000), WF_ELIMIT);
	CHECK_RC((int)wf_stream_readuntil(a, "89", 2, buf, 8, 5000), WF_ELIMIT);
	CHECK_EQ(wf_stream_readuntil(a, "89", 2, buf, 9, 5000), 9);
	CHECK(memcmp(buf, "123456789", 9) == 0);
	CHECK_EQ(wf_stream_readline(a, buf, 1, 5000), 1);

	/* read_all: past max is ELIMIT; what came stays readable. */
	char big[1000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (char)pat(i, 7);
	CHECK_RC(wf_stream_write(b, big, sizeof(big)), 0);
	CHECK_RC(wf_stream_close(b, 5000), 0);
	void *all = (void *)1;
	CHECK_RC((int)wf_stream_read_all(a, 100, &all, 5000), WF_ELIMIT);
	CHECK(all == NULL);
	size_t off = 0;
	for (;;) {
		ssize_t n = wf_stream_read(a, buf, 37, 5000);
		if (!CHECK(n >= 0) || n == 0)
			break;
		CHECK(off + (size_t)n <= sizeof(big) && memcmp(buf, big + off, (size_t)n) == 0);
		off += (size_t)n;
	}
	CHECK_EQ(off, sizeof(big));
	CHECK_RC(wf_stream_close(a, 5000), 0);

	/* read_all within max: every byte, NUL-terminated. */
	if (!unix_pair(&a, &b))
		return NULL;
	CHECK_RC(wf_stream_write(b, big, sizeof(big)), 0);
	CHECK_RC(wf_stream_write_eof(b, 5000), 0);
	CHECK_EQ(wf_stream_read_all(a, sizeof(big), &all, 5000), (long long)sizeof(big));
	if (CHECK(all != NULL)) {
		CHECK(memcmp(all, big, sizeof(big)) == 0);
		CHECK_EQ(((char *)all)[sizeof(big)], 0);
		free(all);
	}
	CHECK(wf_stream_at_eof(a));
	CHECK_EQ(wf_stream_read_all(a, 10, &all, 5000), 0);
	free(all);
	CHECK_RC(wf_stream_close(a, 5000), 0);
	CHECK_RC(wf_stream_close(b, 5000), 0);
	return NULL;
}

Test(io_stream, limits_leave_the_bytes_readable, .timeout = 60)
{
	run_weft(2, limit_main, NULL);
}

/* read_all's max holds also when the stream has already seen its end
 * with more than max bytes buffered. */
static void *read_all_after_eof_main(void *arg)
{
	wf_stream *a, *b;
	if (!unix_pair(&a, &b))
		return NULL;
	CHECK_RC(wf_stream_write(b, "0123456789", 10), 0);
	CHECK_RC(wf_stream_write_eof(b, 5000), 0);
	char buf[16];
	/* Reads up to the end and leaves the ten bytes buffered. */
	CHECK_RC((int)wf_stream_readuntil(a, "#", 1, buf, sizeof(buf), 5000), WF_EINCOMPLETE);
	void *all = NULL;
	CHECK_RC((int)wf_stream_read_all(a, 5, &all, 5000), WF_ELIMIT);
	free(all);
	CHECK_EQ(wf_stream_read_all(a, 10, &all, 5000), 10);
	free(all);
	CHECK_RC(wf_stream_close(a, 5000), 0);
	CHECK_RC(wf_stream_close(b, 5000), 0);
	return NULL;
}

Test(io_stream, read_all_keeps_its_max_after_the_end, .timeout = 30)
{
	run_weft(2, read_all_after_eof_main, NULL);
}

/* ---- separators split across arbitrary writes ----------------------------- */

struct framing {
	wf_stream *w;
	const char *data;
	size_t len;
	uint64_t seed;
};

/* Writes data in pieces of 1 to 7 bytes, with yields and short sleeps
 * between some, so a separator is split at every offset. */
static void *chunk_writer(void *arg)
{
	struct framing *f = arg;
	uint64_t seed = f->seed;
	size_t off = 0;
	while (off < f->len) {
		uint32_t r = rng_next(&seed);
		size_t n = 1 + r % 7;
		if (n > f->len - off)
			n = f->len - off;
		if (!CHECK_RC(wf_stream_write(f->w, f->data + off, n), 0))
			break;
		off += n;
		if ((r >> 8) % 16 == 0)
			wf_sleep((r >> 12) % 2);
		else if ((r >> 8) % 4 == 0)
			wf_yield();
	}
	CHECK_RC(wf_stream_write_eof(f->w, 10000), 0);
	return NULL;
}

static void *framing_main(void *arg)
{
	static const char *const seps[] = {"\n", "\r\n", "aab", "#!#", "abab"};
	long rounds = test_iters(60);
	uint64_t seed = 0x5eed;
	for (long round = 0; round < rounds && !check_any_failed(); round++) {
		const char *sep = seps[round % 5];
		size_t seplen = strlen(sep);
		/* Records of random letters from an alphabet that shares bytes
		 * with the separator (partial matches), each checked to hold
		 * the separator only at its end. */
		enum { RECORDS = 40 };
		char *data = malloc(RECORDS * 80);
		size_t lens[RECORDS], len = 0;
		for (int i = 0; i < RECORDS; i++) {
			size_t start = len, n;
			for (;;) {
				n = rng_next(&seed) % 60;
				for (size_t k = 0; k < n; k++)
					data[start + k] = "abc#!\r\nx"[rng_next(&seed) % 8];
				memcpy(data + start + n, sep, seplen);
				char *first = memmem(data + start, n + seplen, sep, seplen);
				if (first == data + start + n)
					break;
			}
			lens[i] = n + seplen;
			len += lens[i];
		}
		wf_stream *a, *b;
		if (!unix_pair(&a, &b)) {
			free(data);
			break;
		}
		struct framing f = {.w = b, .data = data, .len = len, .seed = seed + (uint64_t)round};
		wf_task *t = wf_spawn(chunk_writer, &f);
		size_t off = 0;
		char buf[128];
		for (int i = 0; i < RECORDS; i++) {
			ssize_t n = wf_stream_readuntil(a, sep, seplen, buf, sizeof(buf), 10000);
			if (!CHECK_EQ(n, (long long)lens[i]) || !CHECK(memcmp(buf, data + off, lens[i]) == 0))
				break;
			off += lens[i];
		}
		CHECK_RC((int)wf_stream_readuntil(a, sep, seplen, buf, sizeof(buf), 10000), WF_EINCOMPLETE);
		CHECK(wf_stream_at_eof(a));
		CHECK_RC(wf_join(t, NULL), 0);
		CHECK_RC(wf_stream_close(a, 5000), 0);
		CHECK_RC(wf_stream_close(b, 5000), 0);
		free(data);
	}
	return NULL;
}

Test(io_stream, readuntil_finds_separators_split_across_writes, .timeout = 60)
{
	run_weft(3, framing_main, NULL);
}

/* ---- cancellation safety ---------------------------------------------------- */

struct csafe {
	wf_stream *r, *w;
	size_t total;
	uint32_t seed;
	unsigned char *got;
	size_t ngot;
	int reader_done; /* atomic */
	int reader_started; /* atomic */
	long timeouts, cancels;
};

/* The pattern, with a newline about every 50 bytes for readline. */
static unsigned char csafe_byte(size_t k, uint32_t seed)
{
	unsigned char c = pat(k, seed);
	return c % 50 == 0 ? '\n' : c;
}

static void *csafe_writer(void *arg)
{
	struct csafe *c = arg;
	uint64_t seed = c->seed | 1;
	unsigned char piece[600];
	size_t off = 0;
	/* Nothing at first, so that the reader's first reads time out with
	 * no byte there, however slowly this machine runs the rest. */
	wf_sleep(5);
	while (off < c->total && !check_any_failed()) {
		uint32_t r = rng_next(&seed);
		size_t n = 1 + r % sizeof(piece);
		if (n > c->total - off)
			n = c->total - off;
		for (size_t k = 0; k < n; k++)
			piece[k] = csafe_byte(off + k, c->seed);
		if (!CHECK_RC(wf_stream_write(c->w, piece, n), 0))
			break;
		off += n;
		CHECK_RC(wf_stream_drain(c->w, WF_FOREVER), 0);
		/* Pauses long enough that the reader's short timeouts fire
		 * with and without bytes half there. */
		if ((r >> 10) % 3 == 0)
			wf_sleep((r >> 12) % 3);
		else
			wf_yield();
	}
	CHECK_RC(wf_stream_write_eof(c->w, WF_FOREVER), 0);
	return NULL;
}

static void csafe_take(struct csafe *c, const void *p, size_t n)
{
	if (CHECK(c->ngot + n <= c->total)) {
		memcpy(c->got + c->ngot, p, n);
		c->ngot += n;
	}
}

/* Every kind of read with timeouts of 0 to 2 ms and small capacities;
 * whatever comes back is appended, and nothing else may be consumed. */
static void *csafe_reader(void *arg)
{
	struct csafe *c = arg;
	uint64_t seed = c->seed * 31u + 7;
	unsigned char buf[300];
	__atomic_store_n(&c->reader_started, 1, __ATOMIC_RELEASE);
	for (;;) {
		uint32_t r = rng_next(&seed);
		uint64_t to = (r >> 4) % 3;
		size_t n = 1 + (r >> 8) % sizeof(buf);
		ssize_t rc;
		size_t got = 0;
		switch (r % 5) {
		case 0:
			rc = wf_stream_read(c->r, buf, n, to);
			if (rc > 0)
				csafe_take(c, buf, (size_t)rc);
			break;
		case 1:
			rc = wf_stream_readexactly(c->r, buf, n, &got, to);
			if (rc == 0)
				CHECK_EQ(got, n);
			else if (rc != WF_EINCOMPLETE)
				CHECK_EQ(got, 0);
			csafe_take(c, buf, got);
			if (rc == WF_EINCOMPLETE)
				rc = 0;
			else if (rc == 0)
				rc = 1;
			break;
		case 2:
			rc = wf_stream_readline(c->r, buf, n, to);
			if (rc > 0)
				csafe_take(c, buf, (size_t)rc);
			break;
		case 3:
			rc = wf_stream_readuntil(c->r, "\n", 1, buf, n, to);
			if (rc > 0)
				csafe_take(c, buf, (size_t)rc);
			if (rc == WF_EINCOMPLETE)
				rc = 1; /* read on with another call */
			break;
		default:
			rc = wf_yield();
			rc = rc == 0 ? 1 : rc;
			break;
		}
		if (rc == WF_ETIMEDOUT) {
			c->timeouts++;
			continue;
		}
		if (rc == WF_ECANCELED) {
			c->cancels++;
			wf_uncancel();
			continue;
		}
		if (rc == WF_ELIMIT)
			continue;
		if (rc == 0 && wf_stream_at_eof(c->r))
			break;
		if (!CHECK(rc > 0 || rc == 0)) {
			fprintf(stderr, "reader: %s\n", wf_err_name((int)rc));
			break;
		}
	}
	__atomic_store_n(&c->reader_done, 1, __ATOMIC_RELEASE);
	return NULL;
}

static void *csafe_main(void *arg)
{
	long rounds = test_iters_min(8, 2), timeouts = 0;
	for (long round = 0; round < rounds && !check_any_failed(); round++) {
		struct csafe c = {.total = 40000, .seed = (uint32_t)(0xc0ffee + round)};
		c.got = malloc(c.total);
		bool ok = round % 2 ? tcp_pair(&c.w, &c.r) : unix_pair(&c.r, &c.w);
		if (!ok)
			break;
		wf_task *w = wf_spawn(csafe_writer, &c);
		wf_task *r = wf_spawn(csafe_reader, &c);
		/* Cancellations at random points of the reader's calls. */
		uint64_t seed = 99 + (uint64_t)round;
		/* (A task cancelled before it starts never starts.) */
		while (!__atomic_load_n(&c.reader_started, __ATOMIC_ACQUIRE))
			wf_yield();
		while (!__atomic_load_n(&c.reader_done, __ATOMIC_ACQUIRE)) {
			wf_cancel(r);
			if (rng_next(&seed) % 2)
				wf_sleep(1);
			else
				wf_yield();
		}
		int rc = wf_join(r, NULL);
		CHECK(rc == 0 || rc == WF_ECANCELED);
		CHECK_RC(wf_join(w, NULL), 0);
		CHECK_EQ(c.ngot, c.total);
		for (size_t k = 0; k < c.ngot; k++)
			if (!CHECK_EQ(c.got[k], csafe_byte(k, c.seed))) {
				fprintf(stderr, "first wrong byte at %zu of %zu\n", k, c.ngot);
				break;
			}
		timeouts += c.timeouts;
		CHECK_RC(wf_stream_close(c.r, 5000), 0);
		CHECK_RC(wf_stream_close(c.w, 5000), 0);
		free(c.got);
	}
	/* The timeout path was taken: the writer's first pause alone makes
	 * that near certain; counted over all rounds for a slow machine. */
	CHECK(timeouts > 0);
	return NULL;
}

Test(io_stream, timed_out_and_cancelled_reads_lose_no_byte, .timeout = 120)
{
	run_weft(3, csafe_main, NULL);
}

/* ---- drain with a slow reader ------------------------------------------- */

enum { DRAINERS = 6, DRAIN_CHUNK = 1000 };

struct drainer {
	wf_stream *w;
	int id;
	long chunks;
};

/* Each chunk says who wrote it and its number, so the reader checks each
 * writer's order; writes are whole, so chunks never interleave. */
static void *drain_writer(void *arg)
{
	struct drainer *d = arg;
	unsigned char chunk[DRAIN_CHUNK];
	for (long i = 0; i < d->chunks && !check_any_failed(); i++) {
		chunk[0] = (unsigned char)d->id;
		memcpy(chunk + 1, &i, sizeof(i));
		for (size_t k = 1 + sizeof(i); k < sizeof(chunk); k++)
			chunk[k] = pat(k + (size_t)i, (uint32_t)d->id);
		if (!CHECK_RC(wf_stream_write(d->w, chunk, sizeof(chunk)), 0))
			break;
		if (!CHECK_RC(wf_stream_drain(d->w, 30000), 0))
			break;
	}
	return NULL;
}

static void *drain_main(void *arg)
{
	wf_stream *a, *b;
	/* A socketpair: TCP's delayed acknowledgements would make the small
	 * windows below crawl. */
	if (!unix_pair(&a, &b))
		return NULL;
	/* Small marks and kernel buffers, so the drains really wait. */
	int small = 4096;
	setsockopt(wf_stream_fd(b), SOL_SOCKET, SO_SNDBUF, &small, sizeof(small));
	setsockopt(wf_stream_fd(a), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small));
	CHECK_RC(wf_stream_set_write_buffer_limits(b, 8192, 2048), 0);
	long chunks = test_iters(150);
	struct drainer d[DRAINERS];
	wf_task *ts[DRAINERS];
	for (int i = 0; i < DRAINERS; i++) {
		d[i] = (struct drainer){.w = b, .id = i, .chunks = chunks};
		ts[i] = wf_spawn(drain_writer, &d[i]);
	}
	long next[DRAINERS] = {0};
	unsigned char chunk[DRAIN_CHUNK];
	uint64_t seed = 4;
	for (long n = 0; n < chunks * DRAINERS && !check_any_failed(); n++) {
		/* Slow: small reads with pauses. */
		size_t got = 0;
		while (got < sizeof(chunk)) {
			size_t want = 1 + rng_next(&seed) % 700;
			if (want > sizeof(chunk) - got)
				want = sizeof(chunk) - got;
			ssize_t k = wf_stream_read(a, chunk + got, want, 30000);
			if (!CHECK(k > 0))
				break;
			got += (size_t)k;
			if (rng_next(&seed) % 8 == 0)
				wf_sleep(1);
		}
		if (got < sizeof(chunk))
			break;
		int id = chunk[0];
		long i;
		memcpy(&i, chunk + 1, sizeof(i));
		if (!CHECK(id < DRAINERS) || !CHECK_EQ(i, next[id]))
			break;
		next[id]++;
		for (size_t k = 1 + sizeof(i); k < sizeof(chunk); k++)
			if (!CHECK_EQ(chunk[k], pat(k + (size_t)i, (uint32_t)id)))
				break;
	}
	for (int i = 0; i < DRAINERS; i++) {
		CHECK_RC(wf_join(ts[i], NULL), 0);
		CHECK_EQ(next[i], chunks);
	}
	CHECK_RC(wf_stream_close(b, 5000), 0);
	CHECK_EQ(wf_stream_read(a, chunk, 1, 5000), 0);
	CHECK_RC(wf_stream_close(a, 5000), 0);
	return NULL;
}

Test(io_stream, several_tasks_drain_to_a_slow_reader, .timeout = 120)
{
	run_weft(3, drain_main, NULL);
}

/* ---- half-close ------------------------------------------------------------ */

static void *half_close_main(void *arg)
{
	long rounds = test_iters(20);
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		wf_stream *c, *s;
		if (!(i % 2 ? unix_pair(&c, &s) : tcp_pair(&c, &s)))
			break;
		char req[3000];
		for (size_t k = 0; k < sizeof(req); k++)
			req[k] = (char)pat(k, (uint32_t)i);
		CHECK_RC(wf_stream_write(c, req, sizeof(req)), 0);
		CHECK_RC(wf_stream_write_eof(c, 5000), 0);
		/* Writing after write_eof is refused. */
		CHECK_RC(wf_stream_write(c, "x", 1), WF_EINVAL);
		void *all = NULL;
		CHECK_EQ(wf_stream_read_all(s, 1 << 20, &all, 5000), (long long)sizeof(req));
		CHECK(all != NULL && memcmp(all, req, sizeof(req)) == 0);
		free(all);
		CHECK(wf_stream_at_eof(s));
		/* The other direction is still open. */
		CHECK_RC(wf_stream_write_all(s, "reply", 5, 5000), 0);
		CHECK_RC(wf_stream_close(s, 5000), 0);
		char buf[16];
		CHECK_RC(wf_stream_readexactly(c, buf, 5, NULL, 5000), 0);
		CHECK(memcmp(buf, "reply", 5) == 0);
		CHECK_EQ(wf_stream_read(c, buf, sizeof(buf), 5000), 0);
		CHECK_RC(wf_stream_close(c, 5000), 0);
	}
	return NULL;
}

Test(io_stream, write_eof_half_closes, .timeout = 60)
{
	run_weft(2, half_close_main, NULL);
}

/* ---- close while a read waits ------------------------------------------ */

struct waiting_reader {
	wf_stream *s;
	int started; /* atomic */
};

static void *blocked_reader(void *arg)
{
	struct waiting_reader *w = arg;
	char buf[8];
	__atomic_store_n(&w->started, 1, __ATOMIC_RELEASE);
	return (void *)(intptr_t)wf_stream_read(w->s, buf, sizeof(buf), 30000);
}

static void *blocked_drainer(void *arg)
{
	struct waiting_reader *w = arg;
	__atomic_store_n(&w->started, 1, __ATOMIC_RELEASE);
	return (void *)(intptr_t)wf_stream_drain(w->s, 30000);
}

static void *close_while_reading_main(void *arg)
{
	long rounds = test_iters(100);
	uint64_t seed = 11;
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		wf_stream *a, *b;
		if (!unix_pair(&a, &b))
			break;
		struct waiting_reader w = {.s = a};
		wf_task *t = wf_spawn(blocked_reader, &w);
		while (!__atomic_load_n(&w.started, __ATOMIC_ACQUIRE))
			wf_yield();
		/* Sometimes the read is already waiting, sometimes not yet. */
		if (rng_next(&seed) % 2)
			wf_sleep(1);
		CHECK_RC(wf_stream_close(a, 5000), 0);
		void *res;
		CHECK_RC(wf_join(t, &res), 0);
		int rc = (int)(intptr_t)res;
		/* A read that entered before the close gets WF_ECLOSED; one
		 * that came after finds the handle stale. */
		CHECK(rc == WF_ECLOSED || rc == WF_EINVAL);
		if (rc != WF_ECLOSED && rc != WF_EINVAL)
			fprintf(stderr, "read got %s\n", wf_err_name(rc));
		CHECK_RC(wf_stream_close(b, 5000), 0);
	}

	/* A drainer waiting on a full write buffer is woken by close too. */
	wf_stream *a, *b;
	if (!unix_pair(&a, &b))
		return NULL;
	static char big[1 << 20];
	CHECK_RC(wf_stream_write(b, big, sizeof(big)), 0);
	struct waiting_reader w = {.s = b};
	wf_task *t = wf_spawn(blocked_drainer, &w);
	while (!__atomic_load_n(&w.started, __ATOMIC_ACQUIRE))
		wf_yield();
	wf_sleep(2);
	CHECK_RC(wf_stream_abort(b), 0);
	void *res;
	CHECK_RC(wf_join(t, &res), 0);
	/* WF_EINVAL only if the drainer was so late that the handle was
	 * stale when it came. */
	int rc = (int)(intptr_t)res;
	CHECK(rc == WF_ECLOSED || rc == WF_EINVAL);
	CHECK_RC(wf_stream_close(a, 5000), 0);
	return NULL;
}

Test(io_stream, close_wakes_a_waiting_reader_with_eclosed, .timeout = 60)
{
	run_weft(2, close_while_reading_main, NULL);
}

/* ---- resets ------------------------------------------------------------- */

static void *reset_write_main(void *arg)
{
	long rounds = test_iters(20);
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		wf_stream *c, *s;
		if (!tcp_pair(&c, &s))
			break;
		/* The peer resets (unread data makes close a reset too). */
		CHECK_RC(wf_stream_abort(s), 0);
		char buf[4096] = {0};
		int rc = 0;
		for (int k = 0; k < 1000 && rc == 0; k++) {
			rc = wf_stream_write(c, buf, sizeof(buf));
			if (rc == 0)
				rc = wf_stream_drain(c, 5000);
			if (rc == 0)
				wf_sleep(1);
		}
		CHECK(rc == -EPIPE || rc == -ECONNRESET);
		if (rc != -EPIPE && rc != -ECONNRESET)
			fprintf(stderr, "write after reset: %s\n", wf_err_name(rc));
		/* The stream stays broken with that error. */
		CHECK_RC(wf_stream_write(c, "x", 1), rc);
		int crc = wf_stream_close(c, 5000);
		CHECK(crc == 0 || crc == rc);
	}
	/* A pipe whose reader is gone: -EPIPE, not SIGPIPE. */
	int p[2];
	CHECK_EQ(pipe(p), 0);
	wf_stream *w;
	if (CHECK_RC(wf_stream_from_fd(p[1], &w), 0)) {
		close(p[0]);
		int rc = wf_stream_write(w, "abc", 3);
		if (rc == 0)
			rc = wf_stream_drain(w, 5000);
		if (rc == 0)
			rc = wf_stream_write(w, "abc", 3);
		CHECK_RC(rc, -EPIPE);
		wf_stream_abort(w);
	}
	return NULL;
}

Test(io_stream, writing_to_a_reset_peer_fails_without_sigpipe, .timeout = 60)
{
	/* The default action, so that a SIGPIPE would end the test. */
	signal(SIGPIPE, SIG_DFL);
	run_weft(2, reset_write_main, NULL);
}

static void *reset_read_main(void *arg)
{
	long rounds = test_iters(30);
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		wf_stream *c, *s;
		if (!tcp_pair(&c, &s))
			break;
		struct waiting_reader w = {.s = c};
		wf_task *t = wf_spawn(blocked_reader, &w);
		while (!__atomic_load_n(&w.started, __ATOMIC_ACQUIRE))
			wf_yield();
		if (i % 2)
			wf_sleep(1);
		CHECK_RC(wf_stream_abort(s), 0);
		void *res;
		CHECK_RC(wf_join(t, &res), 0);
		int rc = (int)(intptr_t)res;
		CHECK(rc == -ECONNRESET || rc == 0);
		CHECK_RC(wf_stream_close(c, 5000), 0);
	}

	/* Reset while bytes are queued and a drain waits. */
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		wf_stream *c, *s;
		if (!tcp_pair(&c, &s))
			break;
		static char big[4 << 20];
		CHECK_RC(wf_stream_write(c, big, sizeof(big)), 0);
		struct waiting_reader w = {.s = c};
		wf_task *t = wf_spawn(blocked_drainer, &w);
		while (!__atomic_load_n(&w.started, __ATOMIC_ACQUIRE))
			wf_yield();
		char buf[1000];
		CHECK(wf_stream_read(s, buf, sizeof(buf), 5000) > 0);
		CHECK_RC(wf_stream_abort(s), 0);
		void *res;
		CHECK_RC(wf_join(t, &res), 0);
		int rc = (int)(intptr_t)res;
		CHECK(rc == -ECONNRESET || rc == -EPIPE);
		if (rc != -ECONNRESET && rc != -EPIPE)
			fprintf(stderr, "drain after reset: %s\n", wf_err_name(rc));
		wf_stream_abort(c);
	}
	return NULL;
}

Test(io_stream, a_reset_ends_reads_and_drains, .timeout = 60)
{
	signal(SIGPIPE, SIG_DFL);
	run_weft(3, reset_read_main, NULL);
}

/* ---- connecting -------------------------------------------------------- */

static void *connect_errors_main(void *arg)
{
	wf_stream *s = NULL;
	CHECK_RC(wf_open_connection("127.0.0.1", closed_port(), 5000, &s), -ECONNREFUSED);
	CHECK_RC(wf_open_connection("::1", closed_port(), 5000, &s), -ECONNREFUSED);
	CHECK_RC(wf_open_connection("nonexistent.invalid", 80, 10000, &s), WF_ENONAME);
	CHECK_RC(wf_open_connection("127.0.0.1", 70000, 5000, &s), WF_EINVAL);
	CHECK_RC(wf_open_connection("127.0.0.1", 80, 5000, NULL), WF_EINVAL);
	char path[108];
	unix_path(path, sizeof(path), "none");
	CHECK_RC(wf_open_unix_connection(path, 5000, &s), -ENOENT);
	CHECK_RC(wf_open_unix_connection("", 5000, &s), WF_EINVAL);
	CHECK_RC(wf_open_unix_connection(NULL, 5000, &s), WF_EINVAL);

	/* A listener whose accept queue is full drops new handshakes: the
	 * connect hangs until its timeout. */
	unsigned port;
	int lfd = plain_listener(false, 0, &port);
	int fill[8];
	int nfill = 0;
	bool full = false;
	for (; nfill < 8 && !full; nfill++) {
		struct sockaddr_in in = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
		in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
		fill[nfill] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (connect(fill[nfill], (struct sockaddr *)&in, sizeof(in)) != 0 && errno == EINPROGRESS)
			full = wf_wait_writable(fill[nfill], 200) == WF_ETIMEDOUT;
	}
	if (CHECK(full)) {
		CHECK_RC(wf_open_connection("127.0.0.1", port, 150, &s), WF_ETIMEDOUT);
		CHECK_RC(wf_open_connection("127.0.0.1", port, 0, &s), WF_ETIMEDOUT);
	}
	for (int i = 0; i < nfill; i++)
		close(fill[i]);
	close(lfd);
	return NULL;
}

Test(io_stream, connect_errors, .timeout = 60)
{
	run_weft(2, connect_errors_main, NULL);
}

/* ---- pipes, stale handles, plain threads --------------------------------- */

static void *pipe_main(void *arg)
{
	int p[2];
	if (!CHECK_EQ(pipe(p), 0))
		return NULL;
	wf_stream *r, *w;
	CHECK_RC(wf_stream_from_fd(p[0], &r), 0);
	CHECK_RC(wf_stream_from_fd(p[1], &w), 0);
	CHECK(fcntl(p[0], F_GETFL) & O_NONBLOCK);
	CHECK(fcntl(p[0], F_GETFD) & FD_CLOEXEC);
	CHECK_EQ(wf_stream_fd(r), p[0]);
	/* More than a pipe holds (64 KiB): the write buffers the rest and
	 * drain waits for the reader. */
	size_t total = 300000;
	unsigned char *data = malloc(total);
	for (size_t k = 0; k < total; k++)
		data[k] = pat(k, 3);
	CHECK_RC(wf_stream_write(w, data, total), 0);
	unsigned char *back = malloc(total);
	size_t got = 0;
	CHECK_RC(wf_stream_readexactly(r, back, total, &got, 10000), 0);
	CHECK_EQ(got, total);
	CHECK(memcmp(back, data, total) == 0);
	CHECK_RC(wf_stream_drain(w, 10000), 0);
	CHECK_RC(wf_stream_close(w, 10000), 0);
	CHECK_EQ(wf_stream_read(r, back, 10, 5000), 0);
	CHECK(wf_stream_at_eof(r));
	CHECK_RC(wf_stream_close(r, 5000), 0);
	free(data);
	free(back);

	/* A regular file is refused and stays open. */
	FILE *f = tmpfile();
	int fd = fileno(f);
	CHECK_RC(wf_stream_from_fd(fd, &r), WF_EINVAL);
	CHECK(fcntl(fd, F_GETFD) >= 0);
	fclose(f);
	CHECK_RC(wf_stream_from_fd(-1, &r), WF_EINVAL);
	CHECK_RC(wf_stream_from_fd(0, NULL), WF_EINVAL);
	return NULL;
}

Test(io_stream, pipes, .timeout = 60)
{
	run_weft(2, pipe_main, NULL);
}

/* write_eof on a pipe's write end: the reader sees the end of the stream,
 * as the contract promises for every stream. */
static void *pipe_write_eof_main(void *arg)
{
	int p[2];
	if (!CHECK_EQ(pipe(p), 0))
		return NULL;
	wf_stream *r, *w;
	CHECK_RC(wf_stream_from_fd(p[0], &r), 0);
	CHECK_RC(wf_stream_from_fd(p[1], &w), 0);
	CHECK_RC(wf_stream_write(w, "bye", 3), 0);
	CHECK_RC(wf_stream_write_eof(w, 5000), 0);
	void *all = NULL;
	CHECK_EQ(wf_stream_read_all(r, 100, &all, 2000), 3);
	free(all);
	CHECK_RC(wf_stream_close(w, 5000), 0);
	CHECK_RC(wf_stream_close(r, 5000), 0);
	return NULL;
}

Test(io_stream, write_eof_on_a_pipe_ends_the_readers_stream, .timeout = 30)
{
	run_weft(2, pipe_write_eof_main, NULL);
}

static void *stale_main(void *arg)
{
	wf_stream *a, *b;
	if (!unix_pair(&a, &b))
		return NULL;
	CHECK_RC(wf_stream_close(a, 5000), 0);
	CHECK_RC(wf_stream_abort(b), 0);
	char buf[8];
	wf_addr addr;
	void *all;
	for (int round = 0; round < 2; round++) {
		wf_stream *s = round ? b : a;
		CHECK_RC(wf_stream_close(s, 0), WF_EINVAL);
		CHECK_RC(wf_stream_abort(s), WF_EINVAL);
		CHECK_RC((int)wf_stream_read(s, buf, sizeof(buf), 0), WF_EINVAL);
		CHECK_RC(wf_stream_readexactly(s, buf, 1, NULL, 0), WF_EINVAL);
		CHECK_RC((int)wf_stream_readline(s, buf, sizeof(buf), 0), WF_EINVAL);
		CHECK_RC((int)wf_stream_readuntil(s, "x", 1, buf, sizeof(buf), 0), WF_EINVAL);
		CHECK_RC((int)wf_stream_read_all(s, 10, &all, 0), WF_EINVAL);
		CHECK_RC(wf_stream_write(s, "x", 1), WF_EINVAL);
		CHECK_RC(wf_stream_drain(s, 0), WF_EINVAL);
		CHECK_RC(wf_stream_write_all(s, "x", 1, 0), WF_EINVAL);
		CHECK_RC(wf_stream_write_eof(s, 0), WF_EINVAL);
		CHECK_RC(wf_stream_fd(s), WF_EINVAL);
		CHECK_RC(wf_stream_local_addr(s, &addr), WF_EINVAL);
		CHECK_RC(wf_stream_peer_addr(s, &addr), WF_EINVAL);
		CHECK_RC(wf_stream_set_limit(s, 10), WF_EINVAL);
		CHECK_RC(wf_stream_set_write_buffer_limits(s, 10, 5), WF_EINVAL);
		CHECK(!wf_stream_at_eof(s));
	}
	/* New streams take the freed slots: the old handles stay stale. */
	wf_stream *c, *d;
	if (unix_pair(&c, &d)) {
		CHECK_RC(wf_stream_write(a, "x", 1), WF_EINVAL);
		CHECK_RC(wf_stream_write(b, "x", 1), WF_EINVAL);
		CHECK_RC(wf_stream_write(c, "x", 1), 0);
		CHECK_EQ(wf_stream_read(d, buf, sizeof(buf), 5000), 1);
		CHECK_RC(wf_stream_close(c, 5000), 0);
		CHECK_RC(wf_stream_close(d, 5000), 0);
	}
	CHECK_RC(wf_stream_fd(NULL), WF_EINVAL);
	CHECK_RC(wf_stream_close(NULL, 0), WF_EINVAL);
	return NULL;
}

Test(io_stream, stale_handles_are_refused, .timeout = 30)
{
	run_weft(2, stale_main, NULL);
}

struct plain {
	wf_stream *s;
};

static void never_called(wf_stream *s, void *arg)
{
	CHECK(!"a server started from a plain thread");
}

static void *plain_thread(void *arg)
{
	struct plain *p = arg;
	char buf[8];
	wf_stream *out;
	wf_server *srv;
	CHECK_RC((int)wf_stream_read(p->s, buf, sizeof(buf), 0), WF_ENOTTASK);
	CHECK_RC(wf_stream_readexactly(p->s, buf, 1, NULL, 0), WF_ENOTTASK);
	CHECK_RC((int)wf_stream_readline(p->s, buf, sizeof(buf), 0), WF_ENOTTASK);
	CHECK_RC((int)wf_stream_readuntil(p->s, "x", 1, buf, sizeof(buf), 0), WF_ENOTTASK);
	void *all;
	CHECK_RC((int)wf_stream_read_all(p->s, 10, &all, 0), WF_ENOTTASK);
	CHECK_RC(wf_stream_drain(p->s, 0), WF_ENOTTASK);
	CHECK_RC(wf_stream_write_all(p->s, "x", 1, 0), WF_ENOTTASK);
	CHECK_RC(wf_stream_write_eof(p->s, 0), WF_ENOTTASK);
	CHECK_RC(wf_open_connection("127.0.0.1", 1, 0, &out), WF_ENOTTASK);
	CHECK_RC(wf_open_unix_connection("/tmp/x", 0, &out), WF_ENOTTASK);
	CHECK_RC(wf_stream_from_fd(0, &out), WF_ENOTTASK);
	CHECK_RC(wf_start_server("127.0.0.1", 0, never_called, NULL, NULL, &srv), WF_ENOTTASK);
	CHECK_RC(wf_start_unix_server("/tmp/x", never_called, NULL, NULL, &srv), WF_ENOTTASK);
	/* [any] calls work: write and (without a flush) close. */
	CHECK_RC(wf_stream_write(p->s, "ok", 2), 0);
	CHECK_RC(wf_stream_close(p->s, 0), 0);
	return NULL;
}

static void *plain_main(void *arg)
{
	wf_stream *a, *b;
	if (!unix_pair(&a, &b))
		return NULL;
	struct plain p = {.s = a};
	pthread_t th;
	CHECK_EQ(pthread_create(&th, NULL, plain_thread, &p), 0);
	char buf[8];
	CHECK_RC(wf_stream_readexactly(b, buf, 2, NULL, 10000), 0);
	CHECK(memcmp(buf, "ok", 2) == 0);
	CHECK_EQ(wf_stream_read(b, buf, sizeof(buf), 10000), 0);
	pthread_join(th, NULL);
	CHECK_RC(wf_stream_close(b, 5000), 0);
	return NULL;
}

Test(io_stream, task_only_calls_from_a_plain_thread, .timeout = 30)
{
	run_weft(2, plain_main, NULL);
}

/* ---- streams used from other workers -------------------------------------- */

struct mover {
	wf_stream *s;
	long rounds;
	unsigned workers;
};

/* Echoes, moving to another worker after every message. */
static void *moving_echo(void *arg)
{
	struct mover *m = arg;
	char buf[256];
	for (long i = 0;; i++) {
		ssize_t n = wf_stream_readline(m->s, buf, sizeof(buf), 30000);
		if (n <= 0) {
			CHECK_EQ(n, 0);
			break;
		}
		/* (A move costs a wake-up of the target worker: every
		 * fourth message is enough to cross them all.) */
		if (i % 4 == 0) {
			unsigned to = (unsigned)(i / 4 % m->workers);
			CHECK_RC(wf_move_to_worker(to), 0);
			CHECK_EQ(wf_worker_id(), (int)to);
		}
		if (!CHECK_RC(wf_stream_write_all(m->s, buf, (size_t)n, 30000), 0))
			break;
	}
	return NULL;
}

static void *moved_main(void *arg)
{
	unsigned workers = wf_runtime_workers(wf_runtime_current());
	CHECK_RC(wf_move_to_worker(0), 0);
	wf_stream *c, *s;
	if (!tcp_pair(&c, &s))
		return NULL;
	struct mover m = {.s = s, .workers = workers};
	wf_task *t = wf_spawn(moving_echo, &m);
	long rounds = test_iters(400);
	for (long i = 0; i < rounds && !check_any_failed(); i++) {
		/* The client moves too: its stream is registered on worker 0. */
		if (i % 4 == 2)
			CHECK_RC(wf_move_to_worker((unsigned)((i / 4 * 7) % workers)), 0);
		char msg[64], back[64];
		int len = snprintf(msg, sizeof(msg), "message %ld\n", i);
		CHECK_RC(wf_stream_write(c, msg, (size_t)len), 0);
		ssize_t n = wf_stream_readline(c, back, sizeof(back), 30000);
		if (!CHECK_EQ(n, len) || !CHECK(memcmp(msg, back, (size_t)len) == 0))
			break;
	}
	CHECK_RC(wf_stream_write_eof(c, 5000), 0);
	CHECK_RC(wf_join(t, NULL), 0);
	CHECK_RC(wf_stream_close(s, 5000), 0);
	char b;
	CHECK_EQ(wf_stream_read(c, &b, 1, 5000), 0);
	CHECK_RC(wf_stream_close(c, 5000), 0);
	return NULL;
}

Test(io_stream, streams_work_from_every_worker, .timeout = 60)
{
	run_weft(4, moved_main, NULL);
}
