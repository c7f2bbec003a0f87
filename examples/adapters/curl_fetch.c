/*
 * Fetches every URL given, all at once, with the HTTP client adapter
 * (weft/curl.h: libcurl driven by weft), and prints one line per URL in
 * the order given: its status, body size and time, or its error.
 *
 *   curl_fetch URL...
 *
 * Each request is a future (wf_http_start); wf_gather_futures with
 * WF_GATHER_ALL waits for them all and hands every outcome over, the
 * failed ones included. Exit status 0 when every transfer got an answer
 * (whatever its HTTP status), 1 otherwise.
 *
 * Python (aiohttp):
 *     async def fetch(session, url):
 *         async with session.get(url) as resp:
 *             return resp.status, await resp.read()
 *     async def main(urls):
 *         async with aiohttp.ClientSession() as session:
 *             return await asyncio.gather(*(fetch(session, u) for u in urls),
 *                                         return_exceptions=True)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>

#include <weft.h>
#include <weft/curl.h>

struct job {
	int n;
	char **urls;
};

static void *main_task(void *arg)
{
	struct job *job = arg;
	wf_http_client *c;
	int rc = wf_http_client_new(NULL, &c);
	if (rc != 0)
		return wf_fail(rc, "wf_http_client_new");
	wf_future **fs = calloc((size_t)job->n, sizeof(*fs));
	wf_outcome *out = calloc((size_t)job->n, sizeof(*out));
	if (fs == NULL || out == NULL) {
		free(fs);
		free(out);
		wf_http_client_free(c);
		return wf_fail(WF_ENOMEM, NULL);
	}
	uint64_t t0 = wf_time_ns();
	for (int i = 0; i < job->n; i++) {
		wf_http_request req = WF_HTTP_REQUEST_INIT;
		req.url = job->urls[i];
		req.timeout_ms = 15000;
		req.follow_redirects = true;
		rc = wf_http_start(c, &req, &fs[i]);
		if (rc != 0 && (fs[i] = wf_future_new()) != NULL) /* bad input */
			wf_future_fail(fs[i], rc, "not started");
	}
	int failed = 0;
	rc = wf_gather_futures(fs, (size_t)job->n, out, WF_GATHER_ALL);
	double took = (double)(wf_time_ns() - t0) / 1e9;
	for (int i = 0; i < job->n; i++) {
		if (rc != 0 || fs[i] == NULL) {
			failed++;
			printf("%s: %s\n", job->urls[i], wf_err_name(rc != 0 ? rc : WF_ENOMEM));
		} else if (out[i].err == 0) {
			wf_http_response *r = out[i].value;
			printf("%s: %ld, %zu bytes\n", job->urls[i], r->status, r->body_len);
			wf_http_response_free(r);
		} else {
			failed++;
			printf("%s: %s (%s)\n", job->urls[i], wf_err_name(out[i].err),
			       out[i].msg != NULL ? out[i].msg : wf_strerror(out[i].err));
		}
		wf_future_release(fs[i]);
	}
	printf("%d of %d fetched in %.3f s\n", job->n - failed, job->n, took);
	wf_outcomes_clear(out, (size_t)job->n);
	free(out);
	free(fs);
	wf_http_client_free(c);
	return failed ? wf_fail(WF_EIO, "some transfers failed") : NULL;
}

int main(int argc, char **argv)
{
	if (argc < 2) {
		fprintf(stderr, "usage: curl_fetch URL...\n");
		return 2;
	}
	struct job job = {argc - 1, argv + 1};
	int rc = wf_run(NULL, main_task, &job, NULL);
	return rc == 0 ? 0 : 1;
}
