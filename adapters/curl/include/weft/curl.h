/*
 * weft: an HTTP client on libcurl's multi socket interface (the adapter
 * in adapters/curl; link weft_curl). aiohttp's ClientSession for weft
 * tasks: a GET or a POST suspends the calling task, never its worker, and
 * any number of requests run at once on every worker.
 *
 *	wf_http_client *c;
 *	wf_http_client_new(NULL, &c);
 *	wf_http_response r;
 *	int rc = wf_http_get(c, "http://127.0.0.1:8080/", 5000, &r);
 *	if (rc == 0) {
 *		printf("%ld: %s\n", r.status, r.body);
 *		wf_http_response_clear(&r);
 *	}
 *	wf_http_client_free(c);
 *
 * How it runs. A client owns one libcurl multi handle per worker (or as
 * many as wf_http_client_opts.drivers says), each driven by a task pinned
 * to its worker: every libcurl call on a multi handle and its transfers
 * happens in that task, on that worker's thread. A request goes to the
 * multi handle of the worker it was started on (round robin from a plain
 * thread), so the transfers are spread as the tasks are; each multi handle
 * keeps its own connections alive for reuse (keep-alive works per worker).
 * libcurl's callbacks (its write callback, OpenSSL) run on the driver
 * task's stack, which is 256 KiB.
 *
 * Common rules (those of weft/io.h, and):
 *  - Calls marked [task] suspend the calling task and must be made from a
 *    task (WF_ENOTTASK otherwise); [any] calls work from any thread.
 *  - timeout_ms bounds the whole transfer: connection, request, answer.
 *    0 means the client's default (wf_http_client_opts.timeout_ms, 30 s
 *    unless set), WF_FOREVER none. A transfer always ends: by its answer,
 *    its error, its timeout, a cancellation or wf_http_client_free.
 *  - An HTTP status is not an error: a 404 or a 500 is a response (0,
 *    status 404). Only a transfer that failed returns an error.
 *  - Errors: libcurl's CURLcode, mapped as follows (the future's message,
 *    wf_future_errmsg, carries libcurl's own words):
 *      CURLE_COULDNT_CONNECT        the connect's -errno: -ECONNREFUSED,
 *                                   -ENETUNREACH, -EHOSTUNREACH, ...
 *                                   (-ECONNREFUSED when libcurl kept none)
 *      CURLE_OPERATION_TIMEDOUT     WF_ETIMEDOUT
 *      CURLE_COULDNT_RESOLVE_HOST,
 *      CURLE_COULDNT_RESOLVE_PROXY  WF_ENONAME
 *      CURLE_URL_MALFORMAT,
 *      CURLE_UNSUPPORTED_PROTOCOL   WF_EINVAL (only http:// and https://
 *                                   are allowed, redirects included)
 *      CURLE_OUT_OF_MEMORY          WF_ENOMEM
 *      CURLE_FILESIZE_EXCEEDED, a body over max_body,
 *      CURLE_TOO_MANY_REDIRECTS     WF_ELIMIT
 *      CURLE_SEND_ERROR,
 *      CURLE_RECV_ERROR             the socket's -errno (-ECONNRESET,
 *                                   -EPIPE, ...) or WF_EIO
 *      CURLE_GOT_NOTHING (the peer closed without an answer) and every
 *      other code (TLS, a malformed answer, ...)  WF_EIO
 *  - Cancelling a task that waits in wf_http_fetch / get / post (or
 *    cancelling a request's future, as wf_gather_futures and
 *    wf_wait_for_future do) ends its transfer: its driver removes it from
 *    the multi handle (curl_multi_remove_handle) and frees it, at once and
 *    without waiting for the peer. The call returns WF_ECANCELED.
 *  - libcurl is initialised (curl_global_init) by the first
 *    wf_http_client_new and never cleaned up.
 */
#ifndef WEFT_CURL_H
#define WEFT_CURL_H

#include <weft.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wf_http_client wf_http_client;

typedef struct wf_http_client_opts {
	/* Multi handles, each with its driver task pinned to worker
	 * i % workers; 0: one per worker. */
	unsigned drivers;
	uint32_t reserved_half; /* must be zero */
	/* The default of every request's timeout_ms; 0: 30000. */
	uint64_t timeout_ms;
	/* The default of every request's max_body; 0: 64 MiB. */
	size_t max_body;
	/* Sent as User-Agent (copied); NULL: "weft/<version>". */
	const char *user_agent;
	/* A file of CA certificates (PEM) that https:// servers are verified
	 * against, instead of the system's (copied); NULL: the system's. */
	const char *ca_file;
	uint64_t reserved[3]; /* must be zero */
} wf_http_client_opts;
#define WF_HTTP_CLIENT_OPTS_INIT WF__ZERO_INIT

/* One request. Everything it points to is copied by the call that takes
 * it: it may be freed as soon as that call returns. */
typedef struct wf_http_request {
	const char *url;    /* "http://host:port/path" or https:// */
	const char *method; /* NULL: "POST" with a body, else "GET"; any
			     * other token is sent as is ("PUT", "DELETE";
			     * "HEAD" asks for no body) */
	/* "Name: value" lines to send, ending with NULL; or NULL. */
	const char *const *headers;
	const void *body;   /* the request's body (copied); NULL: none */
	size_t body_len;
	uint64_t timeout_ms; /* see the common rules: 0 is the client's */
	size_t max_body;     /* the answer's body at most; 0: the client's */
	bool want_headers;   /* fill wf_http_response.headers */
	bool follow_redirects; /* follow up to 10 Location: redirects */
	uint8_t reserved_bytes[6]; /* must be zero */
	uint64_t reserved[4];      /* must be zero */
} wf_http_request;
#define WF_HTTP_REQUEST_INIT WF__ZERO_INIT

/* The answer. The caller owns body and headers (malloc'd): free them with
 * wf_http_response_clear, or take them and free() them. */
typedef struct wf_http_response {
	long status;       /* the final answer's status: 200, 404, ... */
	char *body;        /* never NULL; NUL-terminated (not counted) */
	size_t body_len;
	/* With want_headers: the final answer's header lines as received
	 * ("Name: value\r\n" each, no status line, no blank line),
	 * NUL-terminated; else NULL. */
	char *headers;
	size_t headers_len;
} wf_http_response;

/* [task] A client with its drivers running (opts may be NULL: the
 * defaults). 0 and *out, freed by wf_http_client_free; WF_EINVAL (out
 * NULL, reserved fields not zero), WF_ENOMEM, WF_EIO (libcurl could not
 * be initialised), -errno (no epoll or eventfd descriptor), WF_ENOTTASK. */
WF_EXTERN int wf_http_client_new(const wf_http_client_opts *opts, wf_http_client **out);

/* [task] Stops the drivers and frees c. Transfers still running fail with
 * WF_ECLOSED (their waiting tasks return it). No call on c may start once
 * this one has. 0, WF_EINVAL (NULL), WF_ENOTTASK. */
WF_EXTERN int wf_http_client_free(wf_http_client *c);

/* [any] Transfers of c started and not yet finished and freed by their
 * driver (a cancelled one counts until its driver has removed it); 0 for
 * NULL. */
WF_EXTERN size_t wf_http_client_transfers(const wf_http_client *c);

/* [any] Starts req and stores in *out a new future, completed when the
 * transfer ends: with a wf_http_response * the caller owns (free it with
 * wf_http_response_free), or with the transfer's error (the common
 * rules' codes, and WF_ECLOSED when c is freed first). The caller owns
 * the future (wf_future_release); await it, or many at once with
 * wf_gather_futures. Cancelling the future ends the transfer. Releasing
 * the future of a completed request without taking its value leaks the
 * response. 0; WF_EINVAL (c, req, req->url or out NULL, reserved fields
 * not zero, a method that is not a token, a header line with a CR or LF),
 * WF_ENOMEM, WF_ECLOSED (c's drivers have stopped: the runtime is
 * shutting down).
 * Codes the transfer meets (a refused connection, a timeout) complete the
 * future, they are not returned here. */
WF_EXTERN int wf_http_start(wf_http_client *c, const wf_http_request *req, wf_future **out);

/* [task] wf_http_start and waits for its future: 0 and *out filled (clear
 * it with wf_http_response_clear), or an error (*out is then zeroed, its
 * body NULL): those of wf_http_start, those of the common rules,
 * WF_ECLOSED, WF_ECANCELED (the calling task was cancelled: the transfer
 * is ended), WF_ENOTTASK. */
WF_EXTERN int wf_http_fetch(wf_http_client *c, const wf_http_request *req,
			    wf_http_response *out);

/* [task] GET url: wf_http_fetch with nothing but the URL and timeout. */
WF_EXTERN int wf_http_get(wf_http_client *c, const char *url, uint64_t timeout_ms,
			  wf_http_response *out);

/* [task] POST body (len bytes, copied; NULL with 0 is an empty body) to
 * url, with Content-Type content_type (NULL: application/octet-stream).
 * Codes as wf_http_fetch. */
WF_EXTERN int wf_http_post(wf_http_client *c, const char *url, const char *content_type,
			   const void *body, size_t len, uint64_t timeout_ms,
			   wf_http_response *out);

/* [any] The value of header `name` (case-insensitive) among r's headers
 * (asked for with want_headers): a pointer into r->headers, its length in
 * *len (len may be NULL), blanks around it left out; NULL if r has no
 * such header or no headers. The first one wins when it repeats. */
WF_EXTERN const char *wf_http_response_header(const wf_http_response *r, const char *name,
					      size_t *len);

/* [any] Frees r's body and headers and zeroes *r; NULL does nothing. */
WF_EXTERN void wf_http_response_clear(wf_http_response *r);

/* [any] Frees a response a future handed over (its body and headers, and
 * the struct); NULL does nothing. */
WF_EXTERN void wf_http_response_free(wf_http_response *r);

/* [any] The weft code for a CURLcode (an int here, so that this header
 * needs no curl.h), by the table of the common rules; os_errno is
 * libcurl's CURLINFO_OS_ERRNO (0 if unknown). 0 for CURLE_OK. */
WF_EXTERN int wf_curl_code(int curl_code, long os_errno);

#ifdef __cplusplus
}
#endif

#endif
