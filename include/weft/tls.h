/*
 * weft: TLS streams (asyncio's ssl= of start_server and open_connection);
 * included by weft.h.
 *
 * A TLS stream is a wf_stream: wf_stream_read, readline, readexactly,
 * readuntil, read_all, write, drain, write_all, write_eof, close and abort
 * work on it unchanged, with the same rules (one reader at a time, writes
 * from any thread, every wait bounded by its timeout). The bytes go
 * through OpenSSL (TLS 1.2 and 1.3) on the stream's non-blocking socket.
 *
 *	wf_tls_ctx *ctx;
 *	wf_tls_opts o = WF_TLS_OPTS_INIT;       // verify with the system's CAs
 *	wf_tls_ctx_new_client(&o, &ctx, NULL);
 *	wf_stream *s;
 *	char *why = NULL;
 *	int rc = wf_open_tls_connection("example.org", 443, ctx, NULL, 5000, &s, &why);
 *	...                                     // rc WF_ECERT: why says what was wrong
 *	wf_stream_close(s, 5000);               // close_notify, then closes
 *	wf_tls_ctx_free(ctx);
 *
 * Built without TLS (cmake -DWEFT_TLS=OFF, or OpenSSL not found) every
 * call here exists and returns WF_ENOSYS; wf_tls_available() says which.
 *
 * Verification. A client verifies the server's certificate chain (against
 * opts.ca_file, or else the system's CA store) and that the certificate
 * names the server: server_name, or the host connected to (a DNS name is
 * matched against the certificate's names, an IP address against its IP
 * addresses) and sends it as SNI unless it is an address. Turning either
 * check off is explicit (opts.no_verify, opts.no_hostname_check). A
 * refused certificate fails the connection with WF_ECERT; any other
 * handshake or protocol failure (a peer that does not speak TLS, a bad
 * record) with WF_ETLS; a handshake that does not end in time with
 * WF_ETIMEDOUT. The words of the failure (OpenSSL's verify result or
 * error) come with wf_open_tls_connection's errmsg, or from
 * wf_tls_last_error for a stream.
 *
 * Closing. wf_stream_close on a TLS stream flushes, sends close_notify and
 * then waits for the peer's close_notify, for at most
 * opts.shutdown_timeout_ms (and never longer than the close's own
 * timeout): a peer that never answers does not hold the close. A peer
 * that closes its socket without close_notify is read as the end of the
 * stream (Python's suppress_ragged_eofs): protocols that frame their data
 * (HTTP's Content-Length, chunks) see a cut themselves. TLS streams cannot
 * half-close: OpenSSL drops what comes after its own close_notify, so
 * wf_stream_write_eof returns WF_ENOSYS and changes nothing (asyncio's SSL
 * transports refuse write_eof too). wf_stream_abort sends nothing.
 *
 * Threads. An OpenSSL connection must not be used by two threads at once:
 * every OpenSSL call on a stream is made under the stream's own lock (the
 * one that already serialises its writers), so a reader and writers on
 * different workers take turns for the few microseconds a record's
 * encryption or decryption takes, and never while waiting.
 */
#ifndef WEFT_TLS_H
#define WEFT_TLS_H

#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

struct wf_stream;
struct wf_server;
struct wf_server_opts;

/* A TLS configuration: certificates, keys, trusted CAs and timeouts,
 * shared by any number of connections and servers at once (each keeps its
 * own reference: the program may free its own once they are made). Not a
 * handle: free it once. */
typedef struct wf_tls_ctx wf_tls_ctx;

typedef struct wf_tls_opts {
	/* PEM files. cert_file: the certificate chain, the server's (or the
	 * client's own) certificate first; a server needs one. key_file:
	 * its private key (NULL: in cert_file). ca_file: the CAs a client
	 * trusts (NULL: the system's store); a server must leave it NULL. */
	const char *cert_file;
	const char *key_file;
	const char *ca_file;
	/* Client: accept any certificate, unverified (tests, a private
	 * network); the name is not checked either. */
	bool no_verify;
	/* Client: verify the chain but not that it names the server. */
	bool no_hostname_check;
	uint8_t reserved_bytes[6]; /* must be zero */
	/* Server: how long a connection may take to finish its handshake
	 * before it is dropped; 0: 60000 (asyncio's ssl_handshake_timeout).
	 * A client's handshake is bounded by its connect call's timeout. */
	uint32_t handshake_timeout_ms;
	/* How long a close waits for the peer's close_notify; 0: 5000. */
	uint32_t shutdown_timeout_ms;
	uint64_t reserved[6]; /* must be zero */
} wf_tls_opts;
#define WF_TLS_OPTS_INIT WF__ZERO_INIT

/* [any] true when weft was built with TLS (OpenSSL); every other call here
 * returns WF_ENOSYS otherwise. */
WF_EXTERN bool wf_tls_available(void);

/* [any] A server's configuration: opts->cert_file (and key_file) are
 * loaded now. 0 and *out; WF_EINVAL (no opts or cert_file, reserved
 * fields not zero, a ca_file), WF_ETLS (a file that cannot be read or
 * parsed, a key that does not match the certificate), WF_ENOMEM,
 * WF_ENOSYS. *errmsg (errmsg may be NULL) is NULL or a malloc'd message
 * the caller frees. */
WF_EXTERN int wf_tls_ctx_new_server(const wf_tls_opts *opts, wf_tls_ctx **out, char **errmsg);
/* [any] A client's configuration (opts NULL: the defaults: the system's
 * CAs, verification on). The files are loaded now. Codes as
 * wf_tls_ctx_new_server. */
WF_EXTERN int wf_tls_ctx_new_client(const wf_tls_opts *opts, wf_tls_ctx **out, char **errmsg);
/* [any] Drops the program's reference to ctx; the connections and
 * servers made with it keep theirs. NULL does nothing. */
WF_EXTERN void wf_tls_ctx_free(wf_tls_ctx *ctx);

/* [task] asyncio's open_connection(ssl=): connects to host:port as
 * wf_open_connection does, then makes the TLS handshake; timeout_ms bounds
 * the whole call. server_name: the name to send as SNI and to verify the
 * certificate against; NULL: host. 0 and *out (a stream, closed with
 * wf_stream_close); WF_ECERT (the certificate was refused: expired, not
 * for this name, an unknown CA), WF_ETLS, WF_ETIMEDOUT, WF_ECANCELED, the
 * codes of wf_open_connection, WF_EINVAL (ctx is a server's), WF_ENOSYS.
 * On failure *errmsg (errmsg may be NULL) is NULL or a malloc'd
 * description the caller frees. */
WF_EXTERN int wf_open_tls_connection(const char *host, unsigned port, wf_tls_ctx *ctx,
				     const char *server_name, uint64_t timeout_ms,
				     struct wf_stream **out, char **errmsg);

/* [task] asyncio's start_server(ssl=): wf_start_server whose connections
 * are TLS (handler is a wf_conn_handler of weft/io.h, spelled out here
 * because io.h may come after this header). Each connection's task makes the handshake (bounded by
 * ctx's handshake_timeout_ms) before it calls handler; a connection whose
 * handshake fails or times out is closed without calling it. The server
 * keeps a reference to ctx. Codes as wf_start_server, WF_EINVAL (ctx is a
 * client's), WF_ENOSYS. */
WF_EXTERN int wf_start_tls_server(const char *host, unsigned port, wf_tls_ctx *ctx,
				  void (*handler)(struct wf_stream *s, void *arg), void *arg,
				  const struct wf_server_opts *opts, struct wf_server **out);

/* [any] Copies into buf (NUL-terminated, cap > 0) the words of the last
 * TLS failure on s (a refused certificate, OpenSSL's error), or "" if
 * there was none. The length copied; WF_EINVAL (a stale handle, buf NULL
 * or cap 0, s is not a TLS stream), WF_ENOSYS. */
WF_EXTERN int wf_tls_last_error(const struct wf_stream *s, char *buf, size_t cap);
/* [any] The protocol version s speaks ("TLSv1.3") into buf, as
 * wf_tls_last_error copies. */
WF_EXTERN int wf_tls_version(const struct wf_stream *s, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
