/*
 * TLS streams with OpenSSL: a transport (io/stream.h's seam) that runs
 * SSL_read and SSL_write on the stream's own non-blocking socket.
 *
 * The socket. OpenSSL reads and writes through a BIO of our own: recv and
 * send(MSG_NOSIGNAL) on the descriptor (OpenSSL's socket BIO would write
 * with write(2), and a reset peer would raise SIGPIPE), which records the
 * errno of a failure and whether the peer's end was read. EAGAIN becomes
 * OpenSSL's retry, and SSL_ERROR_WANT_READ / WANT_WRITE become the seam's
 * WF_EAGAIN with the direction to wait for. Read-ahead is on (one recv
 * takes as many records as the socket holds), so recv is tried whenever
 * OpenSSL holds bytes, ready bit or not; a record's worth returned is not
 * a drained socket, only WF_EAGAIN is (io/stream.c).
 *
 * One thread at a time. Every call on an SSL object is made under the
 * stream's lock (io->sl), by the stream's reader (fill), its writers and
 * the poller's writable edge (the write queue's flush), close and
 * write_eof (through wf__stream_drive); the handshake alone runs without
 * it, before the stream is handed to anyone. OpenSSL's error queue is the
 * thread's own: it is emptied before each call and read right after, in
 * the same stretch under the lock, so a task that moves to another worker
 * between two calls loses nothing.
 *
 * Renegotiation is refused (SSL_OP_NO_RENEGOTIATION), so a write waits
 * for readability only in theory; the seam handles it anyway. A TLS 1.3
 * KeyUpdate makes a read write, which the seam's reader does.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "weft.h"

#include "io/io_internal.h"
#include "io/stream.h"
#include "runtime/clock.h"

#define DEFAULT_HANDSHAKE_MS 60000u
#define DEFAULT_SHUTDOWN_MS 5000u

struct wf_tls_ctx {
	SSL_CTX *ssl;
	uint32_t refs; /* atomic */
	bool server;
	bool no_verify;
	bool no_hostname_check;
	uint32_t handshake_ms, shutdown_ms;
};

typedef struct tls {
	SSL *ssl;
	wf_tls_ctx *ctx;
	int fd;
	int sys_err;     /* the errno of the BIO's last failure; 0: none */
	bool peer_eof;   /* recv read the socket's end */
	bool handshaken;
	bool broken;     /* a fatal error or the end: no SSL call but free */
	bool notified;   /* our close_notify went out */
	int code;        /* once broken: what reads return (0: the end) */
	char err[256];   /* the last failure's words */
} tls;

enum { OP_READ, OP_WRITE, OP_HANDSHAKE, OP_SHUTDOWN };

/* ---- the socket BIO ----------------------------------------------------- */

static int bio_write(BIO *b, const char *buf, int len)
{
	tls *t = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	ssize_t r;
	do
		r = send(t->fd, buf, (size_t)len, MSG_NOSIGNAL);
	while (r < 0 && errno == EINTR);
	if (r >= 0)
		return (int)r;
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		BIO_set_retry_write(b);
	else
		t->sys_err = errno;
	return -1;
}

static int bio_read(BIO *b, char *buf, int len)
{
	tls *t = BIO_get_data(b);
	BIO_clear_retry_flags(b);
	ssize_t r;
	do
		r = recv(t->fd, buf, (size_t)len, 0);
	while (r < 0 && errno == EINTR);
	if (r > 0)
		return (int)r;
	if (r == 0) {
		t->peer_eof = true;
		return 0;
	}
	if (errno == EAGAIN || errno == EWOULDBLOCK)
		BIO_set_retry_read(b);
	else
		t->sys_err = errno;
	return -1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)num;
	(void)ptr;
	if (cmd == BIO_CTRL_FLUSH)
		return 1;
	if (cmd == BIO_CTRL_EOF) {
		tls *t = BIO_get_data(b);
		return t != NULL && t->peer_eof;
	}
	return 0;
}

static int bio_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

static BIO_METHOD *bio_method;
static pthread_once_t bio_once = PTHREAD_ONCE_INIT;

static void bio_method_init(void)
{
	BIO_METHOD *m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "weft socket");
	if (m == NULL)
		return;
	BIO_meth_set_write(m, bio_write);
	BIO_meth_set_read(m, bio_read);
	BIO_meth_set_ctrl(m, bio_ctrl);
	BIO_meth_set_create(m, bio_create);
	bio_method = m;
}

/* ---- failures ----------------------------------------------------------- */

/* OpenSSL's first queued error in words, or `none`. */
static void ssl_error_words(char *buf, size_t cap, const char *none)
{
	unsigned long e = ERR_peek_error();
	if (e == 0) {
		snprintf(buf, cap, "%s", none);
		return;
	}
	const char *reason = ERR_reason_error_string(e);
	if (reason != NULL)
		snprintf(buf, cap, "%s", reason);
	else
		ERR_error_string_n(e, buf, cap);
}

/* What a failed SSL call (ret) means: WF_EAGAIN with *want, 0 (the end
 * of the stream, reads only), or the code that ends the connection, with
 * its words in t->err. Empties the thread's error queue. */
static ssize_t fail(tls *t, int ret, int *want, int op)
{
	int e = SSL_get_error(t->ssl, ret);
	if (e == SSL_ERROR_WANT_READ) {
		*want = WF__IO_READ;
		return WF_EAGAIN;
	}
	if (e == SSL_ERROR_WANT_WRITE) {
		*want = WF__IO_WRITE;
		return WF_EAGAIN;
	}
	int code;
	if (e == SSL_ERROR_ZERO_RETURN) {
		/* The peer's close_notify. */
		code = op == OP_READ ? 0 : op == OP_WRITE ? -EPIPE : WF_ETLS;
		snprintf(t->err, sizeof(t->err), "the peer closed the TLS session");
	} else if (t->sys_err != 0) {
		code = -t->sys_err;
		snprintf(t->err, sizeof(t->err), "%s", strerror(t->sys_err));
	} else if (op == OP_HANDSHAKE && !t->ctx->server && !t->ctx->no_verify &&
		   SSL_get_verify_result(t->ssl) != X509_V_OK) {
		code = WF_ECERT;
		snprintf(t->err, sizeof(t->err), "certificate verify failed: %s",
			 X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
	} else if (t->peer_eof || (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)) {
		/* The socket ended without close_notify: the end of the
		 * stream once the session is up (suppress_ragged_eofs), a
		 * failure during the handshake. */
		if (t->handshaken && op == OP_READ) {
			code = 0;
			snprintf(t->err, sizeof(t->err), "the peer closed the connection without close_notify");
		} else if (t->handshaken) {
			code = -EPIPE;
			snprintf(t->err, sizeof(t->err), "the peer closed the connection");
		} else {
			code = WF_ETLS;
			snprintf(t->err, sizeof(t->err), "the peer closed the connection during the TLS handshake");
		}
	} else {
		code = WF_ETLS;
		ssl_error_words(t->err, sizeof(t->err), "TLS failure");
	}
	ERR_clear_error();
	t->broken = true;
	t->code = code;
	return code;
}

/* ---- the transport ------------------------------------------------------ */

static ssize_t tls_recv(void *p, void *buf, size_t n, int *want)
{
	tls *t = p;
	if (t->broken)
		return t->code;
	if (n > INT_MAX)
		n = INT_MAX;
	ERR_clear_error();
	t->sys_err = 0;
	size_t got = 0;
	if (SSL_read_ex(t->ssl, buf, n, &got) == 1)
		return (ssize_t)got;
	return fail(t, 0, want, OP_READ);
}

static ssize_t tls_send(void *p, const void *buf, size_t n, int *want)
{
	tls *t = p;
	if (t->broken)
		return t->code != 0 ? t->code : -EPIPE;
	if (n > INT_MAX)
		n = INT_MAX;
	ERR_clear_error();
	t->sys_err = 0;
	size_t put = 0;
	if (SSL_write_ex(t->ssl, buf, n, &put) == 1)
		return (ssize_t)put;
	ssize_t r = fail(t, 0, want, OP_WRITE);
	return r == 0 ? -EPIPE : r;
}

static bool tls_has_pending(void *p)
{
	tls *t = p;
	return !t->broken && SSL_has_pending(t->ssl);
}

static int step_handshake(void *p, int *want)
{
	tls *t = p;
	ERR_clear_error();
	t->sys_err = 0;
	int r = SSL_do_handshake(t->ssl);
	if (r == 1) {
		t->handshaken = true;
		return 0;
	}
	return (int)fail(t, r, want, OP_HANDSHAKE);
}

/* Sends close_notify (again after a WANT_WRITE: OpenSSL resends the rest
 * of the alert). */
static int step_notify(void *p, int *want)
{
	tls *t = p;
	if (t->broken || t->notified)
		return 0;
	ERR_clear_error();
	t->sys_err = 0;
	int r = SSL_shutdown(t->ssl);
	if (r >= 0) {
		t->notified = true;
		return 0;
	}
	return (int)fail(t, r, want, OP_SHUTDOWN);
}

/* Reads (and drops) what the peer still sends, until its close_notify or
 * its end. */
static int step_peer(void *p, int *want)
{
	tls *t = p;
	if (t->broken || (SSL_get_shutdown(t->ssl) & SSL_RECEIVED_SHUTDOWN))
		return 0;
	char scratch[512];
	size_t got = 0;
	ERR_clear_error();
	t->sys_err = 0;
	if (SSL_read_ex(t->ssl, scratch, sizeof(scratch), &got) == 1)
		return 1;
	ssize_t r = fail(t, 0, want, OP_READ);
	return r == WF_EAGAIN ? WF_EAGAIN : 0;
}

/* close's end: close_notify, then the peer's (OpenSSL drops what the peer
 * sends after our close_notify: nothing is lost that anyone could read). */
static int tls_shutdown(wf__stream *s, void *p, bool wait_peer, uint64_t deadline)
{
	tls *t = p;
	uint64_t bound = wf__deadline_after_ms(t->ctx->shutdown_ms);
	if (bound < deadline)
		deadline = bound;
	int rc = wf__stream_drive(s, step_notify, t, false, deadline, "TLS close_notify");
	if (rc != 0 || !wait_peer)
		return rc;
	/* The peer's silence is not an error of ours: everything was sent. */
	wf__stream_drive(s, step_peer, t, false, deadline, "TLS close");
	return 0;
}

static void tls_free(void *p)
{
	tls *t = p;
	SSL_free(t->ssl); /* and the BIO */
	wf_tls_ctx_free(t->ctx);
	free(t);
}

static const wf__transport tls_ops = {
	.recv = tls_recv,
	.send = tls_send,
	.has_pending = tls_has_pending,
	.shutdown = tls_shutdown,
	.free = tls_free,
	.half_close = false,
};

/* ---- contexts ----------------------------------------------------------- */

/* *errmsg = "what: OpenSSL's words", if errmsg. */
static void set_errmsg(char **errmsg, const char *what)
{
	if (errmsg == NULL)
		return;
	char words[200];
	ssl_error_words(words, sizeof(words), "failed");
	size_t n = strlen(what) + strlen(words) + 3;
	*errmsg = malloc(n);
	if (*errmsg != NULL)
		snprintf(*errmsg, n, "%s: %s", what, words);
}

static bool opts_ok(const wf_tls_opts *o)
{
	for (size_t i = 0; i < sizeof(o->reserved_bytes); i++)
		if (o->reserved_bytes[i] != 0)
			return false;
	for (size_t i = 0; i < sizeof(o->reserved) / sizeof(o->reserved[0]); i++)
		if (o->reserved[i] != 0)
			return false;
	return true;
}

static int ctx_new(const wf_tls_opts *o, bool server, wf_tls_ctx **out, char **errmsg)
{
	if (errmsg != NULL)
		*errmsg = NULL;
	if (out == NULL || (o != NULL && !opts_ok(o)))
		return WF_EINVAL;
	*out = NULL;
	wf_tls_opts none = WF_TLS_OPTS_INIT;
	if (o == NULL)
		o = &none;
	if (server && (o->cert_file == NULL || o->ca_file != NULL))
		return WF_EINVAL;
	if (o->key_file != NULL && o->cert_file == NULL)
		return WF_EINVAL;
	pthread_once(&bio_once, bio_method_init);
	if (bio_method == NULL)
		return WF_ENOMEM;
	wf_tls_ctx *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return WF_ENOMEM;
	ERR_clear_error();
	c->ssl = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	if (c->ssl == NULL) {
		free(c);
		return WF_ENOMEM;
	}
	c->refs = 1;
	c->server = server;
	c->no_verify = o->no_verify;
	c->no_hostname_check = o->no_hostname_check;
	c->handshake_ms = o->handshake_timeout_ms != 0 ? o->handshake_timeout_ms : DEFAULT_HANDSHAKE_MS;
	c->shutdown_ms = o->shutdown_timeout_ms != 0 ? o->shutdown_timeout_ms : DEFAULT_SHUTDOWN_MS;
	SSL_CTX_set_min_proto_version(c->ssl, TLS1_2_VERSION);
	SSL_CTX_set_options(c->ssl, SSL_OP_NO_RENEGOTIATION);
	/* Partial writes: SSL_write returns after each record, as send
	 * does; moving buffer: a retry comes from the write queue, not from
	 * the caller's buffer that was tried first. */
	SSL_CTX_set_mode(c->ssl, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	SSL_CTX_set_read_ahead(c->ssl, 1);
	const char *what = NULL;
	if (o->cert_file != NULL) {
		const char *key = o->key_file != NULL ? o->key_file : o->cert_file;
		if (SSL_CTX_use_certificate_chain_file(c->ssl, o->cert_file) != 1)
			what = "cannot load the certificate chain";
		else if (SSL_CTX_use_PrivateKey_file(c->ssl, key, SSL_FILETYPE_PEM) != 1)
			what = "cannot load the private key";
		else if (SSL_CTX_check_private_key(c->ssl) != 1)
			what = "the private key does not match the certificate";
	}
	if (what == NULL && !server) {
		if (!o->no_verify)
			SSL_CTX_set_verify(c->ssl, SSL_VERIFY_PEER, NULL);
		if (o->ca_file != NULL) {
			if (SSL_CTX_load_verify_locations(c->ssl, o->ca_file, NULL) != 1)
				what = "cannot load the CA file";
		} else if (SSL_CTX_set_default_verify_paths(c->ssl) != 1) {
			what = "cannot load the system's CA store";
		}
	}
	if (what != NULL) {
		set_errmsg(errmsg, what);
		ERR_clear_error();
		SSL_CTX_free(c->ssl);
		free(c);
		return WF_ETLS;
	}
	*out = c;
	return 0;
}

WF_EXTERN bool wf_tls_available(void) { return true; }

WF_EXTERN int wf_tls_ctx_new_server(const wf_tls_opts *opts, wf_tls_ctx **out, char **errmsg)
{
	if (opts == NULL) {
		if (errmsg != NULL)
			*errmsg = NULL;
		return WF_EINVAL;
	}
	return ctx_new(opts, true, out, errmsg);
}

WF_EXTERN int wf_tls_ctx_new_client(const wf_tls_opts *opts, wf_tls_ctx **out, char **errmsg)
{
	return ctx_new(opts, false, out, errmsg);
}

void wf__tls_ctx_ref(wf_tls_ctx *ctx) { __atomic_add_fetch(&ctx->refs, 1, __ATOMIC_RELAXED); }

bool wf__tls_ctx_is_server(const wf_tls_ctx *ctx) { return ctx->server; }

WF_EXTERN void wf_tls_ctx_free(wf_tls_ctx *ctx)
{
	if (ctx == NULL)
		return;
	if (__atomic_sub_fetch(&ctx->refs, 1, __ATOMIC_ACQ_REL) != 0)
		return;
	SSL_CTX_free(ctx->ssl);
	free(ctx);
}

/* ---- connections -------------------------------------------------------- */

/* The client's name checks and SNI for name (a DNS name or an address). */
static bool set_peer_name(tls *t, const char *name)
{
	char strip[64];
	size_t len = strlen(name);
	if (len >= 2 && name[0] == '[' && name[len - 1] == ']' && len - 2 < sizeof(strip)) {
		memcpy(strip, name + 1, len - 2);
		strip[len - 2] = '\0';
		name = strip;
	}
	unsigned char bin[16];
	bool is_ip = inet_pton(AF_INET, name, bin) == 1 || inet_pton(AF_INET6, name, bin) == 1;
	/* SNI names a host, never an address (RFC 6066). */
	if (!is_ip && name[0] != '\0' && SSL_set_tlsext_host_name(t->ssl, name) != 1)
		return false;
	if (t->ctx->no_verify || t->ctx->no_hostname_check)
		return true;
	if (name[0] == '\0')
		return false;
	if (is_ip)
		return X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(t->ssl), name) == 1;
	return SSL_set1_host(t->ssl, name) == 1;
}

/* Puts TLS on the stream h and makes the handshake; h is nobody else's
 * yet. On failure h is left as it is, for the caller to close. */
static int start(wf_stream *h, wf_tls_ctx *ctx, const char *name, uint64_t deadline, char **errmsg)
{
	wf__stream *s = wf__stream_get(h);
	if (s == NULL)
		return WF_EINVAL;
	int rc = 0;
	tls *t = calloc(1, sizeof(*t));
	BIO *b = NULL;
	if (t == NULL || (t->ssl = SSL_new(ctx->ssl)) == NULL ||
	    (b = BIO_new(bio_method)) == NULL) {
		if (t != NULL)
			SSL_free(t->ssl);
		free(t);
		wf__stream_put(s);
		return WF_ENOMEM;
	}
	t->fd = wf__stream_fd_of(s);
	BIO_set_data(b, t);
	SSL_set_bio(t->ssl, b, b);
	wf__tls_ctx_ref(ctx);
	t->ctx = ctx;
	if (ctx->server) {
		SSL_set_accept_state(t->ssl);
	} else {
		SSL_set_connect_state(t->ssl);
		if (!set_peer_name(t, name)) {
			rc = WF_EINVAL;
			snprintf(t->err, sizeof(t->err), "cannot check the name \"%s\"", name);
		}
	}
	/* The stream owns t from now on, whatever happens. */
	wf__stream_set_transport(s, &tls_ops, t);
	if (rc == 0)
		rc = wf__stream_drive(s, step_handshake, t, true, deadline, "TLS handshake");
	if (rc != 0) {
		if (rc == WF_ETIMEDOUT)
			snprintf(t->err, sizeof(t->err), "the TLS handshake did not finish in time");
		else if (rc == WF_ECANCELED)
			snprintf(t->err, sizeof(t->err), "the TLS handshake was cancelled");
		t->broken = true;
		if (t->code == 0)
			t->code = rc;
		if (errmsg != NULL)
			*errmsg = strdup(t->err[0] != '\0' ? t->err : wf_strerror(rc));
	}
	wf__stream_put(s);
	return rc;
}

WF_EXTERN int wf_open_tls_connection(const char *host, unsigned port, wf_tls_ctx *ctx,
				     const char *server_name, uint64_t timeout_ms,
				     wf_stream **out, char **errmsg)
{
	if (errmsg != NULL)
		*errmsg = NULL;
	if (ctx == NULL || out == NULL || ctx->server)
		return WF_EINVAL;
	if (!wf__in_task())
		return WF_ENOTTASK;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	wf_stream *h;
	int rc = wf_open_connection(host, port, timeout_ms, &h);
	if (rc != 0)
		return rc;
	const char *name = server_name != NULL ? server_name
			   : host != NULL && host[0] != '\0' ? host
							     : "127.0.0.1";
	rc = start(h, ctx, name, deadline, errmsg);
	if (rc != 0) {
		wf_stream_close(h, 0);
		return rc;
	}
	*out = h;
	return 0;
}

int wf__tls_accept(wf_stream *h, wf_tls_ctx *ctx)
{
	return start(h, ctx, NULL, wf__deadline_after_ms(ctx->handshake_ms), NULL);
}

/* Copies what fn makes of s's TLS state into buf, under the stream's lock. */
static int copy_out(const wf_stream *h, char *buf, size_t cap, const char *(*fn)(tls *t))
{
	if (buf == NULL || cap == 0)
		return WF_EINVAL;
	wf__stream *s = wf__stream_get(h);
	if (s == NULL)
		return WF_EINVAL;
	tls *t = wf__stream_transport_of(s, &tls_ops);
	int rc = WF_EINVAL;
	if (t != NULL) {
		wf__spin_lock(wf__stream_lock(s));
		snprintf(buf, cap, "%s", fn(t));
		wf__spin_unlock(wf__stream_lock(s));
		rc = (int)strlen(buf);
	}
	wf__stream_put(s);
	return rc;
}

static const char *last_error(tls *t) { return t->err; }
static const char *version(tls *t) { return SSL_get_version(t->ssl); }

WF_EXTERN int wf_tls_last_error(const wf_stream *s, char *buf, size_t cap)
{
	return copy_out(s, buf, cap, last_error);
}

WF_EXTERN int wf_tls_version(const wf_stream *s, char *buf, size_t cap)
{
	return copy_out(s, buf, cap, version);
}
