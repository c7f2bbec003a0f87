/*
 * Asynchronous DNS: getaddrinfo and getnameinfo on libuv's thread pool.
 *
 * The request is started on the loop of the worker the task runs on (a
 * loop is only ever touched by its own thread), and its callback runs
 * later on that worker's thread, outside any task, from uv_run. The task
 * meanwhile waits on a one-waiter slot in the request (waiting.h), which
 * the callback fires. The request is heap-allocated and shared by the two
 * under its spinlock:
 *  - the callback stores the outcome and sets done, then fires the waiter;
 *    the task, once woken, takes the lock once more (so the callback has
 *    let go of the request) and frees it;
 *  - a task that stops waiting first (a deadline, a cancellation) must not
 *    touch the loop, since it may have moved to another worker since: it
 *    marks the request abandoned under the lock and leaves, and the
 *    callback, which always comes, frees the request and the result. A
 *    worker that stops runs its loop until its requests are done, so
 *    nothing is left behind at shutdown.
 *
 * Numeric addresses (and numeric-only getnameinfo) are answered at once
 * without the pool: nothing there can block, and a zero timeout still
 * gets them.
 */
#include <errno.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "weft.h"

#include "io/io_internal.h"
#include "runtime/internal.h"
#include "runtime/waiting.h"

typedef struct dns_req {
	union {
		uv_getaddrinfo_t gai;
		uv_getnameinfo_t gni;
	} u;
	wf__spinlock sl;
	wf__waiter *waiter; /* the task's, while it waits */
	bool done;          /* the callback ran: status (and res) are set */
	bool abandoned;     /* the task left: the callback frees everything */
	int status;         /* libuv's: 0, UV_EAI_* or a UV_E* error */
	struct addrinfo *res;
} dns_req;

/* libuv's codes (UV_EAI_* for resolver failures) to weft's. */
static int map_uv(int status)
{
	switch (status) {
	case 0:
		return 0;
	case UV_EAI_NONAME:
	case UV_EAI_NODATA:
	case UV_EAI_SERVICE:
	/* The name exists, but has no address of the family asked for:
	 * no such host, as far as the caller can use it. */
	case UV_EAI_ADDRFAMILY:
		return WF_ENONAME;
	case UV_EAI_AGAIN:
		return WF_EAGAIN;
	case UV_EAI_MEMORY:
	case UV_ENOMEM:
		return WF_ENOMEM;
	case UV_EAI_BADFLAGS:
	case UV_EAI_BADHINTS:
	case UV_EAI_FAMILY:
	case UV_EAI_SOCKTYPE:
	case UV_EAI_PROTOCOL:
	case UV_EINVAL:
		return WF_EINVAL;
	default:
		return WF_EIO;
	}
}

/* glibc's EAI_* codes (the fast paths call the resolver directly). */
static int map_eai(int e)
{
	switch (e) {
	case 0:
		return 0;
	case EAI_NONAME:
	case EAI_NODATA:
	case EAI_SERVICE:
	case EAI_ADDRFAMILY:
		return WF_ENONAME;
	case EAI_AGAIN:
		return WF_EAGAIN;
	case EAI_MEMORY:
		return WF_ENOMEM;
	case EAI_BADFLAGS:
	case EAI_FAMILY:
	case EAI_SOCKTYPE:
		return WF_EINVAL;
	default:
		return WF_EIO;
	}
}

/* Runs on the worker's thread that started r, outside any task. */
static void complete(dns_req *r, int status, struct addrinfo *res)
{
	wf__spin_lock(&r->sl);
	if (r->abandoned) {
		wf__spin_unlock(&r->sl);
		if (res != NULL)
			uv_freeaddrinfo(res);
		free(r);
		return;
	}
	r->done = true;
	r->status = status;
	r->res = res;
	/* Fired under the lock (internal.h's rule): a waiter that timed out
	 * meanwhile has been taken out of the slot, and is never reached. */
	wf__waiter *w = r->waiter;
	r->waiter = NULL;
	if (w != NULL)
		wf__waiter_fire(w, 0, NULL);
	wf__spin_unlock(&r->sl);
}

static void on_getaddrinfo(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	complete(req->data, status, res);
}

static void on_getnameinfo(uv_getnameinfo_t *req, int status, const char *host, const char *serv)
{
	/* host and serv are req->host and req->service, read by the task. */
	complete(req->data, status, NULL);
}

/* Waits for r's callback. true if the task owns r now (the callback has
 * run; the caller reads the outcome, if rc is 0, and frees r), false if
 * it abandoned r to the callback. */
static bool await_req(dns_req *r, uint64_t deadline, const char *what, int *rc)
{
	wf__spin_lock(&r->sl);
	if (r->done) {
		wf__spin_unlock(&r->sl);
		*rc = 0;
		return true;
	}
	wf__waiting wg = {.lock = &r->sl,
			  .slot = &r->waiter,
			  .what = what,
			  .obj = r,
			  .deadline = deadline,
			  .keep_lock = true};
	*rc = wf__wait_on(&wg);
	if (wg.gave_up) {
		/* The lock is held: the callback has not fired us, and may not
		 * have run at all. */
		bool done = r->done;
		if (!done)
			r->abandoned = true;
		wf__spin_unlock(&r->sl);
		return done;
	}
	/* Fired (or the fire came second to a deadline, after the callback
	 * had emptied the slot): the callback may still hold the lock, so
	 * take it once before r is freed. */
	wf__spin_lock(&r->sl);
	wf__spin_unlock(&r->sl);
	return true;
}

static bool deadline_passed(uint64_t deadline)
{
	return deadline != WF__NO_DEADLINE && deadline <= wf__now_ns();
}

static bool all_digits(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (*s < '0' || *s > '9')
			return false;
	return true;
}

/* A host and service that need no lookup: a numeric address (or none)
 * and a numeric port (or none). */
static bool numeric_query(const char *host, const char *service)
{
	if (service != NULL && !all_digits(service))
		return false;
	if (host == NULL)
		return true;
	unsigned char buf[sizeof(struct in6_addr)];
	return inet_pton(AF_INET, host, buf) == 1 || inet_pton(AF_INET6, host, buf) == 1;
}

int wf__getaddrinfo_until(const char *host, const char *service, const struct addrinfo *hints,
			  uint64_t deadline, struct addrinfo **res)
{
	if (res == NULL || (host == NULL && service == NULL))
		return WF_EINVAL;
	*res = NULL;
	if (!wf__in_task())
		return WF_ENOTTASK;
	if (numeric_query(host, service)) {
		struct addrinfo h = {0};
		if (hints != NULL)
			h = *hints;
		/* The flags promise glibc that nothing needs looking up, so
		 * the call cannot block. */
		h.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
		return map_eai(getaddrinfo(host, service, &h, res));
	}
	if (deadline_passed(deadline))
		return WF_ETIMEDOUT;

	uv_loop_t *loop = wf__current_loop();
	dns_req *r = calloc(1, sizeof(*r));
	if (loop == NULL || r == NULL) {
		free(r);
		return loop == NULL ? WF_ENOTTASK : WF_ENOMEM;
	}
	r->u.gai.data = r;
	/* libuv copies host, service and hints into the request. */
	int rc = uv_getaddrinfo(loop, &r->u.gai, on_getaddrinfo, host, service, hints);
	if (rc != 0) {
		free(r);
		return map_uv(rc);
	}
	if (!await_req(r, deadline, "getaddrinfo", &rc))
		return rc;
	if (rc == 0) {
		rc = map_uv(r->status);
		if (rc == 0)
			*res = r->res;
		else if (r->res != NULL)
			uv_freeaddrinfo(r->res);
	} else if (r->res != NULL) {
		uv_freeaddrinfo(r->res);
	}
	free(r);
	return rc;
}

int wf_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
		   uint64_t timeout_ms, struct addrinfo **res)
{
	return wf__getaddrinfo_until(host, service, hints, wf__deadline_after_ms(timeout_ms), res);
}

void wf_freeaddrinfo(struct addrinfo *res)
{
	if (res != NULL)
		freeaddrinfo(res);
}

static void copy_out(char *dst, const char *src, size_t cap)
{
	if (dst == NULL)
		return;
	size_t n = strnlen(src, cap - 1);
	memcpy(dst, src, n);
	dst[n] = '\0';
}

int wf_getnameinfo(const wf_addr *addr, int flags, char *host, char *serv, uint64_t timeout_ms)
{
	if (addr == NULL || (host == NULL && serv == NULL))
		return WF_EINVAL;
	int fam = addr->ss.ss_family;
	if ((fam != AF_INET && fam != AF_INET6) ||
	    addr->len < (fam == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6)))
		return WF_EINVAL;
	if (host != NULL)
		host[0] = '\0';
	if (serv != NULL)
		serv[0] = '\0';
	if (!wf__in_task())
		return WF_ENOTTASK;
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);

	/* Numbers only: nothing to look up, nothing blocks. */
	if ((host == NULL || (flags & NI_NUMERICHOST)) && (serv == NULL || (flags & NI_NUMERICSERV)) &&
	    !(flags & NI_NAMEREQD)) {
		return map_eai(getnameinfo((const struct sockaddr *)&addr->ss, addr->len, host,
					   host != NULL ? NI_MAXHOST : 0, serv,
					   serv != NULL ? NI_MAXSERV : 0, flags));
	}
	if (deadline_passed(deadline))
		return WF_ETIMEDOUT;

	uv_loop_t *loop = wf__current_loop();
	dns_req *r = calloc(1, sizeof(*r));
	if (loop == NULL || r == NULL) {
		free(r);
		return loop == NULL ? WF_ENOTTASK : WF_ENOMEM;
	}
	r->u.gni.data = r;
	/* libuv copies the address into the request. */
	int rc = uv_getnameinfo(loop, &r->u.gni, on_getnameinfo, (const struct sockaddr *)&addr->ss,
				flags);
	if (rc != 0) {
		free(r);
		return map_uv(rc);
	}
	if (!await_req(r, deadline, "getnameinfo", &rc))
		return rc;
	if (rc == 0) {
		rc = map_uv(r->status);
		if (rc == 0) {
			copy_out(host, r->u.gni.host, NI_MAXHOST);
			copy_out(serv, r->u.gni.service, NI_MAXSERV);
		}
	}
	free(r);
	return rc;
}
