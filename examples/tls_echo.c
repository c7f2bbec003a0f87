/*
 * asyncio's echo server and client with ssl=: a TLS server on 127.0.0.1
 * (port 0: any free port) and a client that verifies its certificate,
 * sends two lines and reads them back in capitals, then closes with
 * close_notify.
 *
 *	ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
 *	ctx.load_cert_chain("cert.pem", "key.pem")
 *	server = await asyncio.start_server(handle, "127.0.0.1", 0, ssl=ctx)
 *	...
 *	client = ssl.create_default_context(cafile="cert.pem")
 *	reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=client,
 *	                                               server_hostname="localhost")
 *
 * The certificate is made for this run by the openssl command (a
 * self-signed one for localhost, in a temporary directory), run with
 * wf_process_exec. Built without TLS (cmake -DWEFT_TLS=OFF) this example
 * is not built.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <weft.h>

#define TIMEOUT_MS 10000

static char cert[256], key[256];

/* The server's side: each line back in capitals, until the client ends. */
static void handle(wf_stream *s, void *arg)
{
	(void)arg;
	char line[256];
	ssize_t n;
	while ((n = wf_stream_readline(s, line, sizeof(line), TIMEOUT_MS)) > 0) {
		for (ssize_t i = 0; i < n; i++)
			if (line[i] >= 'a' && line[i] <= 'z')
				line[i] = (char)(line[i] - 'a' + 'A');
		if (wf_stream_write(s, line, (size_t)n) != 0 || wf_stream_drain(s, TIMEOUT_MS) != 0)
			return;
	}
	/* 0: the client's close_notify (a clean end). */
	printf("server: %s\n", n == 0 ? "the client closed the session" : wf_strerror((int)n));
}

/* openssl req: a self-signed certificate for localhost and 127.0.0.1. */
static int make_certificate(const char *dir)
{
	snprintf(cert, sizeof(cert), "%s/cert.pem", dir);
	snprintf(key, sizeof(key), "%s/key.pem", dir);
	const char *argv[] = {"openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt",
			      "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
			      "-days", "1", "-subj", "/CN=localhost", "-addext",
			      "subjectAltName=DNS:localhost,IP:127.0.0.1", NULL};
	wf_process_opts po = WF_PROCESS_OPTS_INIT;
	po.stdout_mode = WF_DEVNULL;
	po.stderr_mode = WF_DEVNULL;
	wf_process *p;
	int rc = wf_process_exec("openssl", argv, &po, &p);
	if (rc != 0)
		return rc;
	int code = -1;
	rc = wf_process_wait(p, TIMEOUT_MS, &code);
	wf_process_free(p);
	return rc != 0 ? rc : code == 0 ? 0 : WF_EFAILED;
}

static void *client(unsigned port)
{
	wf_tls_opts o = WF_TLS_OPTS_INIT;
	o.ca_file = cert; /* trust this one certificate */
	wf_tls_ctx *ctx;
	int rc = wf_tls_ctx_new_client(&o, &ctx, NULL);
	if (rc != 0)
		return wf_fail(rc, "client context");
	wf_stream *s;
	char *why = NULL;
	rc = wf_open_tls_connection("127.0.0.1", port, ctx, "localhost", TIMEOUT_MS, &s, &why);
	wf_tls_ctx_free(ctx);
	if (rc != 0) {
		fprintf(stderr, "client: %s\n", why != NULL ? why : wf_strerror(rc));
		free(why);
		return wf_fail(rc, "open_tls_connection");
	}
	char version[32];
	wf_tls_version(s, version, sizeof(version));
	printf("client: connected, %s, certificate verified\n", version);
	const char *lines[] = {"hello over tls\n", "second line\n"};
	for (int i = 0; i < 2; i++) {
		char back[256];
		wf_stream_write(s, lines[i], strlen(lines[i]));
		ssize_t n = wf_stream_readline(s, back, sizeof(back), TIMEOUT_MS);
		if (n <= 0) {
			wf_stream_close(s, TIMEOUT_MS);
			return wf_fail(n < 0 ? (int)n : WF_EINCOMPLETE, "readline");
		}
		printf("client got: %.*s", (int)n, back);
	}
	/* writer.close(); await writer.wait_closed(): close_notify both ways. */
	rc = wf_stream_close(s, TIMEOUT_MS);
	printf("client: closed (%s)\n", wf_strerror(rc));
	return NULL;
}

static void *main_task(void *arg)
{
	(void)arg;
	char dir[] = "/tmp/weft-tls-echo-XXXXXX";
	if (mkdtemp(dir) == NULL)
		return wf_fail(WF_EIO, "mkdtemp");
	int rc = make_certificate(dir);
	void *res = NULL;
	if (rc != 0) {
		res = wf_fail(rc, "cannot make a certificate with the openssl command");
		goto out;
	}
	wf_tls_opts o = WF_TLS_OPTS_INIT;
	o.cert_file = cert;
	o.key_file = key;
	wf_tls_ctx *ctx;
	char *why = NULL;
	rc = wf_tls_ctx_new_server(&o, &ctx, &why);
	if (rc != 0) {
		fprintf(stderr, "server: %s\n", why != NULL ? why : wf_strerror(rc));
		free(why);
		res = wf_fail(rc, "server context");
		goto out;
	}
	wf_server *srv;
	rc = wf_start_tls_server("127.0.0.1", 0, ctx, handle, NULL, NULL, &srv);
	wf_tls_ctx_free(ctx); /* the server keeps its own reference */
	if (rc != 0) {
		res = wf_fail(rc, "start_tls_server");
		goto out;
	}
	printf("serving TLS on 127.0.0.1:%d\n", wf_server_port(srv));
	res = client((unsigned)wf_server_port(srv));
	wf_server_close(srv);
	wf_server_wait_closed(srv, TIMEOUT_MS);
	printf("server closed\n");
out:
	unlink(cert);
	unlink(key);
	rmdir(dir);
	return res;
}

int main(void)
{
	setvbuf(stdout, NULL, _IOLBF, 0);
	char *why = NULL;
	int rc = wf_run_ex(NULL, main_task, NULL, NULL, &why);
	if (rc != 0)
		fprintf(stderr, "tls_echo: %s (%s)\n", why != NULL ? why : "failed", wf_strerror(rc));
	free(why);
	return rc == 0 ? 0 : 1;
}
