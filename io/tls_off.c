/*
 * TLS streams when weft is built without OpenSSL (cmake -DWEFT_TLS=OFF, or
 * OpenSSL not found): the public calls exist, so the library exports the
 * same symbols either way, and say WF_ENOSYS. The internal ones are never
 * reached: no context can be made.
 */
#include <stdlib.h>

#include "weft.h"

#include "io/io_internal.h"

WF_EXTERN bool wf_tls_available(void) { return false; }

static int none(char **errmsg)
{
	if (errmsg != NULL)
		*errmsg = NULL;
	return WF_ENOSYS;
}

WF_EXTERN int wf_tls_ctx_new_server(const wf_tls_opts *opts, wf_tls_ctx **out, char **errmsg)
{
	(void)opts;
	if (out != NULL)
		*out = NULL;
	return none(errmsg);
}

WF_EXTERN int wf_tls_ctx_new_client(const wf_tls_opts *opts, wf_tls_ctx **out, char **errmsg)
{
	(void)opts;
	if (out != NULL)
		*out = NULL;
	return none(errmsg);
}

WF_EXTERN void wf_tls_ctx_free(wf_tls_ctx *ctx) { (void)ctx; }

WF_EXTERN int wf_open_tls_connection(const char *host, unsigned port, wf_tls_ctx *ctx,
				     const char *server_name, uint64_t timeout_ms,
				     wf_stream **out, char **errmsg)
{
	(void)host, (void)port, (void)ctx, (void)server_name, (void)timeout_ms, (void)out;
	return none(errmsg);
}

WF_EXTERN int wf_tls_last_error(const wf_stream *s, char *buf, size_t cap)
{
	(void)s, (void)buf, (void)cap;
	return WF_ENOSYS;
}

WF_EXTERN int wf_tls_version(const wf_stream *s, char *buf, size_t cap)
{
	(void)s, (void)buf, (void)cap;
	return WF_ENOSYS;
}

void wf__tls_ctx_ref(wf_tls_ctx *ctx) { (void)ctx; }

bool wf__tls_ctx_is_server(const wf_tls_ctx *ctx)
{
	(void)ctx;
	return false;
}

int wf__tls_accept(wf_stream *h, wf_tls_ctx *ctx)
{
	(void)h, (void)ctx;
	return WF_ENOSYS;
}
