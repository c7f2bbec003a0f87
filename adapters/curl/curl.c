/*
 * The HTTP client: libcurl's multi socket interface, driven by weft.
 *
 * Drivers. A client has one driver per worker (wf_http_client_opts.drivers
 * says otherwise): a multi handle, a private epoll instance, an eventfd,
 * a queue of requests, and a task pinned to the driver's worker. That task
 * makes every libcurl call on the multi handle and on its transfers, so
 * libcurl (whose handles are not thread-safe) is only ever entered on one
 * thread per multi handle, with no lock around it.
 *
 * Waiting. libcurl's socket callback (CURLMOPT_SOCKETFUNCTION) does not
 * start a waiting task per socket: it adds, changes or removes the socket
 * in the driver's private epoll instance (level-triggered, for the
 * directions libcurl asks for: IN, OUT or both). The driver task then
 * waits for one descriptor only, that epoll instance, with
 * wf_wait_readable, whose timeout is libcurl's timer
 * (CURLMOPT_TIMERFUNCTION keeps a deadline). An epoll descriptor is
 * readable while any socket in it is ready, so one wait covers every
 * socket of the multi handle, both directions of one socket at once
 * (weft's readiness waits take one direction of a descriptor per worker
 * at a time), and any number of sockets without a task, a stack and two
 * epoll_ctl calls per socket and per wait. The eventfd is in the private
 * epoll too: new requests and ended ones are queued (under a mutex) by any
 * thread, which then writes the eventfd.
 *
 * No wake-up is lost: the private epoll is level-triggered, the eventfd
 * keeps its count until the driver reads it, and wf_wait_readable asks
 * the kernel afresh at every call. So a socket that became ready, a
 * request queued, or a transfer cancelled while the driver was busy is
 * seen at its next wait, which returns at once; and libcurl's deadline is
 * checked before every wait, so a timer that expired meanwhile is acted
 * on without waiting. Both end in curl_multi_socket_action on the
 * driver's worker.
 *
 * Transfers. wf_http_start builds the easy handle on the caller's thread
 * (it is nobody else's yet), makes a future, adds a done callback to it
 * and queues the transfer. The driver adds it to the multi handle. When
 * libcurl reports it done (curl_multi_info_read), the driver removes it
 * and completes the future. Whoever completes the future (the driver, or
 * a task that cancels it: a cancelled wf_http_fetch, wf_gather_futures,
 * wf_wait_for_future) runs the done callback, which queues the transfer
 * for its driver again: the driver then removes it from the multi handle
 * if it is still there (cancelled) and frees it. A transfer is freed by
 * its driver only, and only once its done callback has run, so the
 * callback never meets freed memory.
 *
 * Stopping. wf_http_client_free asks each driver to stop and joins it; a
 * driver whose task is cancelled (the runtime shuts down) stops too. A
 * stopping driver refuses new requests (WF_ECLOSED), fails the transfers
 * it has with WF_ECLOSED, and waits until each one's done callback has
 * queued it back (they run at once, or are running on another thread),
 * frees them, and cleans the multi handle up.
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <curl/curl.h>

#include <weft.h>
#include <weft/curl.h>

#define DEFAULT_TIMEOUT_MS 30000u
#define DEFAULT_MAX_BODY ((size_t)64 * 1024 * 1024)
#define MAX_REDIRECTS 10L
/* libcurl's callbacks, OpenSSL's handshake among them, run on the
 * driver's stack (virtual memory, touched as it is used). */
#define DRIVER_STACK ((size_t)256 * 1024)
#define EVENTS_PER_WAIT 64

struct driver;

struct xfer {
	struct driver *d;
	CURL *easy;
	wf_future *f; /* the transfer's own reference */
	struct curl_slist *hdrs;
	wf_http_response *resp; /* until handed over by the future */
	size_t body_cap, headers_cap, max_body;
	bool want_headers;
	bool over_limit, no_memory; /* why the write callback said stop */
	bool in_multi;              /* the driver's only */
	bool never_queued;          /* refused by a stopping driver */
	struct xfer *next_add, *next_done; /* the queues */
	struct xfer *prev, *next;          /* the driver's transfers in multi */
	char errbuf[CURL_ERROR_SIZE];
};

struct driver {
	wf_http_client *c;
	unsigned worker;
	CURLM *multi;
	int epfd, evfd;
	/* libcurl's timer; the driver task's only. */
	bool has_deadline;
	uint64_t deadline_ns;
	struct xfer live; /* sentinel of the transfers in multi */
	/* The queues, under lock. */
	pthread_mutex_t lock;
	struct xfer *adds, **adds_tail, *dones;
	bool closing; /* refuses new requests */
	/* Atomics. */
	int stop;     /* wf_http_client_free asks the driver to stop */
	size_t alive; /* transfers accepted and not yet freed */
	wf_task *task;
};

struct wf_http_client {
	wf_runtime *rt;
	unsigned workers, ndrivers;
	unsigned rr; /* atomic: round robin for plain threads */
	uint64_t timeout_ms;
	size_t max_body;
	char *user_agent;
	char *ca_file; /* NULL: the system's */
	struct driver *drivers;
};

/* The driver running on this thread's worker right now, between two of
 * its suspensions: a done callback it runs itself queues without writing
 * the eventfd, as the driver reads its queues again before it waits. */
static __thread struct driver *tls_driver;

/* ---- errors ----------------------------------------------------------- */

int wf_curl_code(int curl_code, long os_errno)
{
	switch ((CURLcode)curl_code) {
	case CURLE_OK:
		return 0;
	case CURLE_COULDNT_CONNECT:
		return os_errno > 0 && os_errno < 4000 ? -(int)os_errno : -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return WF_ETIMEDOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return WF_ENONAME;
	case CURLE_URL_MALFORMAT:
	case CURLE_UNSUPPORTED_PROTOCOL:
		return WF_EINVAL;
	case CURLE_OUT_OF_MEMORY:
		return WF_ENOMEM;
	case CURLE_FILESIZE_EXCEEDED:
	case CURLE_TOO_MANY_REDIRECTS:
		return WF_ELIMIT;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
		return os_errno > 0 && os_errno < 4000 ? -(int)os_errno : WF_EIO;
	default:
		return WF_EIO;
	}
}

/* ---- libcurl's initialisation ----------------------------------------- */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;

static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---- responses -------------------------------------------------------- */

void wf_http_response_clear(wf_http_response *r)
{
	if (r == NULL)
		return;
	free(r->body);
	free(r->headers);
	memset(r, 0, sizeof(*r));
}

void wf_http_response_free(wf_http_response *r)
{
	if (r == NULL)
		return;
	wf_http_response_clear(r);
	free(r);
}

const char *wf_http_response_header(const wf_http_response *r, const char *name, size_t *len)
{
	if (r == NULL || r->headers == NULL || name == NULL)
		return NULL;
	size_t nlen = strlen(name);
	const char *p = r->headers, *end = r->headers + r->headers_len;
	while (p < end) {
		const char *eol = memchr(p, '\n', (size_t)(end - p));
		if (eol == NULL)
			eol = end;
		const char *colon = memchr(p, ':', (size_t)(eol - p));
		if (colon != NULL && (size_t)(colon - p) == nlen && strncasecmp(p, name, nlen) == 0) {
			const char *v = colon + 1, *ve = eol;
			while (v < ve && (*v == ' ' || *v == '\t'))
				v++;
			while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t' || ve[-1] == '\r'))
				ve--;
			if (len != NULL)
				*len = (size_t)(ve - v);
			return v;
		}
		p = eol + 1;
	}
	return NULL;
}

/* Appends n bytes to *buf (length *len, capacity *cap), keeping it
 * NUL-terminated. false when out of memory. */
static bool append(char **buf, size_t *len, size_t *cap, const char *data, size_t n)
{
	if (*len + n + 1 > *cap) {
		size_t want = *cap < 256 ? 256 : *cap;
		while (want < *len + n + 1)
			want *= 2;
		char *b = realloc(*buf, want);
		if (b == NULL)
			return false;
		*buf = b;
		*cap = want;
	}
	memcpy(*buf + *len, data, n);
	*len += n;
	(*buf)[*len] = '\0';
	return true;
}

static size_t on_body(char *data, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	wf_http_response *r = x->resp;
	n *= size;
	if (n > x->max_body - r->body_len) {
		x->over_limit = true;
		return 0; /* CURLE_WRITE_ERROR */
	}
	if (!append(&r->body, &r->body_len, &x->body_cap, data, n)) {
		x->no_memory = true;
		return 0;
	}
	return n;
}

static size_t on_header(char *data, size_t size, size_t n, void *arg)
{
	struct xfer *x = arg;
	wf_http_response *r = x->resp;
	n *= size;
	/* A status line starts an answer (after a 100 Continue or a redirect):
	 * only the final answer's headers are kept. */
	if (n >= 5 && memcmp(data, "HTTP/", 5) == 0) {
		r->headers_len = 0;
		if (r->headers != NULL)
			r->headers[0] = '\0';
		return n;
	}
	if ((n == 2 && data[0] == '\r' && data[1] == '\n') || (n == 1 && data[0] == '\n'))
		return n; /* the blank line ending the headers */
	if (!append(&r->headers, &r->headers_len, &x->headers_cap, data, n)) {
		x->no_memory = true;
		return 0;
	}
	return n;
}

/* ---- the queues ------------------------------------------------------- */

static void wake(struct driver *d)
{
	uint64_t one = 1;
	/* EAGAIN only when the count is at its maximum: awake anyway. */
	ssize_t w = write(d->evfd, &one, sizeof(one));
	(void)w;
}

/* The future's done callback, on the completing thread: the driver takes
 * the transfer back (and frees it). */
static void on_future_done(wf_future *f, void *arg)
{
	struct xfer *x = arg;
	if (x->never_queued)
		return;
	struct driver *d = x->d;
	pthread_mutex_lock(&d->lock);
	x->next_done = d->dones;
	d->dones = x;
	pthread_mutex_unlock(&d->lock);
	if (tls_driver != d)
		wake(d);
}

static void free_xfer(struct xfer *x)
{
	if (x->easy != NULL)
		curl_easy_cleanup(x->easy);
	curl_slist_free_all(x->hdrs);
	wf_http_response_free(x->resp);
	wf_future_release(x->f);
	free(x);
}

/* Completes x's future with an error (and libcurl's message, if it has
 * one); never leaves it pending, even without memory for the message. */
static void fail_xfer(struct xfer *x, int err, const char *msg)
{
	if (wf_future_fail(x->f, err, msg) == WF_ENOMEM)
		wf_future_fail(x->f, err, NULL);
}

static void unlink_live(struct xfer *x)
{
	x->prev->next = x->next;
	x->next->prev = x->prev;
	x->prev = x->next = NULL;
}

static void remove_from_multi(struct driver *d, struct xfer *x)
{
	if (!x->in_multi)
		return;
	curl_multi_remove_handle(d->multi, x->easy);
	unlink_live(x);
	x->in_multi = false;
}

/* Takes both queues: adds the new transfers to the multi handle, frees
 * the ended ones. The driver task's only. */
static void take_queues(struct driver *d)
{
	pthread_mutex_lock(&d->lock);
	struct xfer *adds = d->adds, *dones = d->dones;
	d->adds = NULL;
	d->adds_tail = &d->adds;
	d->dones = NULL;
	pthread_mutex_unlock(&d->lock);
	/* Adds first: a transfer cancelled at once is in both, and its
	 * future is done already, so it is not added, then freed. */
	for (struct xfer *x = adds, *next; x != NULL; x = next) {
		next = x->next_add;
		if (wf_future_done(x->f))
			continue;
		CURLMcode mc = curl_multi_add_handle(d->multi, x->easy);
		if (mc != CURLM_OK) {
			fail_xfer(x, mc == CURLM_OUT_OF_MEMORY ? WF_ENOMEM : WF_EIO,
				  curl_multi_strerror(mc));
			continue;
		}
		x->in_multi = true;
		x->prev = d->live.prev;
		x->next = &d->live;
		d->live.prev->next = x;
		d->live.prev = x;
	}
	for (struct xfer *x = dones, *next; x != NULL; x = next) {
		next = x->next_done;
		remove_from_multi(d, x);
		free_xfer(x);
		__atomic_sub_fetch(&d->alive, 1, __ATOMIC_RELEASE);
	}
}

/* ---- libcurl's callbacks ------------------------------------------------ */

static int on_socket(CURL *e, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct driver *d = userp;
	if (what == CURL_POLL_REMOVE) {
		/* libcurl says so before it closes s. */
		epoll_ctl(d->epfd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	struct epoll_event ev = {.events = 0, .data.fd = s};
	if (what & CURL_POLL_IN)
		ev.events |= EPOLLIN;
	if (what & CURL_POLL_OUT)
		ev.events |= EPOLLOUT;
	if (epoll_ctl(d->epfd, EPOLL_CTL_MOD, s, &ev) == 0)
		return 0;
	if (errno == ENOENT && epoll_ctl(d->epfd, EPOLL_CTL_ADD, s, &ev) == 0)
		return 0;
	return -1; /* libcurl fails the multi handle's transfers */
}

static int on_timer(CURLM *m, long timeout_ms, void *userp)
{
	struct driver *d = userp;
	if (timeout_ms < 0) {
		d->has_deadline = false;
	} else {
		d->has_deadline = true;
		d->deadline_ns = wf_time_ns() + (uint64_t)timeout_ms * 1000000u;
	}
	return 0;
}

/* ---- the driver ---------------------------------------------------------- */

/* Completes the transfers libcurl has finished. */
static void reap(struct driver *d)
{
	CURLMsg *m;
	int left;
	while ((m = curl_multi_info_read(d->multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		CURL *e = m->easy_handle;
		CURLcode res = m->data.result; /* m is gone once e is removed */
		struct xfer *x = NULL;
		curl_easy_getinfo(e, CURLINFO_PRIVATE, (char **)&x);
		remove_from_multi(d, x);
		if (res == CURLE_OK) {
			wf_http_response *r = x->resp;
			curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &r->status);
			if (r->body == NULL && (r->body = calloc(1, 1)) == NULL) {
				fail_xfer(x, WF_ENOMEM, NULL);
				continue;
			}
			if (wf_future_set(x->f, r) == 0)
				x->resp = NULL; /* the future's taker owns it now */
			continue;
		}
		long os_errno = 0;
		curl_easy_getinfo(e, CURLINFO_OS_ERRNO, &os_errno);
		int err = wf_curl_code(res, os_errno);
		if (x->over_limit)
			err = WF_ELIMIT;
		else if (x->no_memory)
			err = WF_ENOMEM;
		fail_xfer(x, err, x->errbuf[0] != '\0' ? x->errbuf : curl_easy_strerror(res));
	}
}

static void socket_action(struct driver *d, curl_socket_t s, int flags)
{
	int running;
	curl_multi_socket_action(d->multi, s, flags, &running);
}

/* One round of work between two waits: never suspends. */
static void run_events(struct driver *d)
{
	struct epoll_event ev[EVENTS_PER_WAIT];
	int n = epoll_wait(d->epfd, ev, EVENTS_PER_WAIT, 0);
	for (int i = 0; i < n; i++) {
		if (ev[i].data.fd == d->evfd) {
			uint64_t count;
			ssize_t r = read(d->evfd, &count, sizeof(count));
			(void)r;
			take_queues(d);
			continue;
		}
		int flags = 0;
		if (ev[i].events & EPOLLIN)
			flags |= CURL_CSELECT_IN;
		if (ev[i].events & EPOLLOUT)
			flags |= CURL_CSELECT_OUT;
		if (ev[i].events & (EPOLLERR | EPOLLHUP))
			flags |= CURL_CSELECT_ERR;
		socket_action(d, ev[i].data.fd, flags);
	}
}

/* Ends every transfer (WF_ECLOSED) and waits until each one's done
 * callback has handed it back, then frees the multi handle. */
static void driver_stop(struct driver *d)
{
	pthread_mutex_lock(&d->lock);
	d->closing = true;
	pthread_mutex_unlock(&d->lock);
	tls_driver = d;
	take_queues(d); /* the last adds join the multi, to be failed below */
	while (d->live.next != &d->live) {
		struct xfer *x = d->live.next;
		remove_from_multi(d, x);
		fail_xfer(x, WF_ECLOSED, "the HTTP client was closed");
	}
	take_queues(d);
	tls_driver = NULL;
	/* A callback another thread is running (a future cancelled there)
	 * queues its transfer in a moment. */
	while (__atomic_load_n(&d->alive, __ATOMIC_ACQUIRE) != 0) {
		if (wf_wait_readable(d->evfd, 100) == 0) {
			uint64_t count;
			ssize_t r = read(d->evfd, &count, sizeof(count));
			(void)r;
		}
		take_queues(d);
	}
	curl_multi_cleanup(d->multi);
	d->multi = NULL;
}

static void *driver_main(void *arg)
{
	struct driver *d = arg;
	int rc = wf_move_to_worker(d->worker);
	if (rc == 0)
		rc = wf_pin(true);
	while (rc == 0 && !__atomic_load_n(&d->stop, __ATOMIC_ACQUIRE)) {
		uint64_t wait_ms = WF_FOREVER;
		if (d->has_deadline) {
			uint64_t now = wf_time_ns();
			if (now >= d->deadline_ns) {
				d->has_deadline = false;
				tls_driver = d;
				socket_action(d, CURL_SOCKET_TIMEOUT, 0);
				reap(d);
				take_queues(d);
				tls_driver = NULL;
				continue;
			}
			wait_ms = (d->deadline_ns - now + 999999u) / 1000000u;
		}
		rc = wf_wait_readable(d->epfd, wait_ms);
		if (rc == 0) {
			tls_driver = d;
			run_events(d);
			reap(d);
			take_queues(d);
			tls_driver = NULL;
		} else if (rc == WF_ETIMEDOUT) {
			rc = 0; /* libcurl's deadline: checked at the top */
		} else if (rc != WF_ECANCELED) {
			fprintf(stderr, "weft: HTTP client driver: waiting: %s\n", wf_strerror(rc));
		}
	}
	driver_stop(d);
	return NULL;
}

static int driver_init(wf_http_client *c, struct driver *d, unsigned worker)
{
	d->c = c;
	d->worker = worker;
	d->epfd = d->evfd = -1;
	d->live.prev = d->live.next = &d->live;
	d->adds_tail = &d->adds;
	pthread_mutex_init(&d->lock, NULL);
	d->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (d->epfd < 0)
		return -errno;
	d->evfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (d->evfd < 0)
		return -errno;
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = d->evfd};
	if (epoll_ctl(d->epfd, EPOLL_CTL_ADD, d->evfd, &ev) != 0)
		return -errno;
	d->multi = curl_multi_init();
	if (d->multi == NULL)
		return WF_ENOMEM;
	curl_multi_setopt(d->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
	curl_multi_setopt(d->multi, CURLMOPT_SOCKETDATA, d);
	curl_multi_setopt(d->multi, CURLMOPT_TIMERFUNCTION, on_timer);
	curl_multi_setopt(d->multi, CURLMOPT_TIMERDATA, d);
	return 0;
}

/* What driver_init made (the driver task has ended, or never started). */
static void driver_destroy(struct driver *d)
{
	if (d->multi != NULL)
		curl_multi_cleanup(d->multi);
	if (d->evfd >= 0)
		close(d->evfd);
	if (d->epfd >= 0)
		close(d->epfd);
	pthread_mutex_destroy(&d->lock);
}

/* ---- the client ---------------------------------------------------------- */

static void client_destroy(wf_http_client *c, unsigned started, unsigned inited)
{
	for (unsigned i = 0; i < started; i++) {
		__atomic_store_n(&c->drivers[i].stop, 1, __ATOMIC_RELEASE);
		wake(&c->drivers[i]);
	}
	for (unsigned i = 0; i < started; i++)
		wf_join(c->drivers[i].task, NULL);
	for (unsigned i = 0; i < inited; i++)
		driver_destroy(&c->drivers[i]);
	free(c->drivers);
	free(c->user_agent);
	free(c->ca_file);
	free(c);
}

int wf_http_client_new(const wf_http_client_opts *opts, wf_http_client **out)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	if (wf_current() == NULL)
		return WF_ENOTTASK;
	wf_http_client_opts o = WF_HTTP_CLIENT_OPTS_INIT;
	if (opts != NULL)
		o = *opts;
	if (o.reserved_half != 0)
		return WF_EINVAL;
	for (size_t i = 0; i < sizeof(o.reserved) / sizeof(o.reserved[0]); i++)
		if (o.reserved[i] != 0)
			return WF_EINVAL;
	pthread_once(&curl_once, curl_init);
	if (curl_init_rc != CURLE_OK)
		return WF_EIO;

	wf_http_client *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return WF_ENOMEM;
	c->rt = wf_runtime_current();
	c->workers = wf_runtime_workers(c->rt);
	c->ndrivers = o.drivers != 0 ? o.drivers : c->workers;
	c->timeout_ms = o.timeout_ms != 0 ? o.timeout_ms : DEFAULT_TIMEOUT_MS;
	c->max_body = o.max_body != 0 ? o.max_body : DEFAULT_MAX_BODY;
	if (o.user_agent != NULL) {
		c->user_agent = strdup(o.user_agent);
	} else {
		char ua[64];
		snprintf(ua, sizeof(ua), "weft/%s", wf_version_string());
		c->user_agent = strdup(ua);
	}
	if (o.ca_file != NULL)
		c->ca_file = strdup(o.ca_file);
	c->drivers = calloc(c->ndrivers, sizeof(*c->drivers));
	if (c->user_agent == NULL || c->drivers == NULL || (o.ca_file != NULL && c->ca_file == NULL)) {
		client_destroy(c, 0, 0);
		return WF_ENOMEM;
	}
	unsigned inited = 0, started = 0;
	int rc = 0;
	for (; inited < c->ndrivers; inited++) {
		rc = driver_init(c, &c->drivers[inited], inited % c->workers);
		if (rc != 0) {
			inited++; /* destroy what it made */
			break;
		}
	}
	for (; rc == 0 && started < c->ndrivers; started++) {
		char name[32];
		snprintf(name, sizeof(name), "http-driver-%u", started);
		wf_spawn_opts so = WF_SPAWN_OPTS_INIT;
		so.name = name;
		so.stack_size = DRIVER_STACK;
		rc = wf_spawn_ex(driver_main, &c->drivers[started], &so, &c->drivers[started].task);
		if (rc != 0)
			break;
	}
	if (rc != 0) {
		client_destroy(c, started, inited);
		return rc;
	}
	*out = c;
	return 0;
}

int wf_http_client_free(wf_http_client *c)
{
	if (c == NULL)
		return WF_EINVAL;
	if (wf_current() == NULL)
		return WF_ENOTTASK;
	client_destroy(c, c->ndrivers, c->ndrivers);
	return 0;
}

size_t wf_http_client_transfers(const wf_http_client *c)
{
	if (c == NULL)
		return 0;
	size_t n = 0;
	for (unsigned i = 0; i < c->ndrivers; i++)
		n += __atomic_load_n(&c->drivers[i].alive, __ATOMIC_ACQUIRE);
	return n;
}

/* The driver of the calling task's worker, or the next one in turn. */
static struct driver *pick_driver(wf_http_client *c)
{
	int w = wf_worker_id();
	if (w >= 0 && wf_runtime_current() == c->rt && (unsigned)w < c->ndrivers)
		return &c->drivers[w];
	unsigned i = __atomic_fetch_add(&c->rr, 1, __ATOMIC_RELAXED);
	return &c->drivers[i % c->ndrivers];
}

static bool is_token(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if (!isalnum((unsigned char)*s) && strchr("!#$%&'*+-.^_`|~", *s) == NULL)
			return false;
	return true;
}

static bool request_valid(const wf_http_request *req)
{
	if (req->url == NULL || req->url[0] == '\0' || strpbrk(req->url, "\r\n") != NULL)
		return false;
	if (req->method != NULL && !is_token(req->method))
		return false;
	if (req->body == NULL && req->body_len != 0)
		return false;
	for (size_t i = 0; i < sizeof(req->reserved_bytes); i++)
		if (req->reserved_bytes[i] != 0)
			return false;
	for (size_t i = 0; i < sizeof(req->reserved) / sizeof(req->reserved[0]); i++)
		if (req->reserved[i] != 0)
			return false;
	if (req->headers != NULL)
		for (const char *const *h = req->headers; *h != NULL; h++)
			if (strpbrk(*h, "\r\n") != NULL || strchr(*h, ':') == NULL)
				return false;
	return true;
}

/* The easy handle of req; 0 or WF_ENOMEM. */
static int build_easy(wf_http_client *c, struct xfer *x, const wf_http_request *req)
{
	CURL *e = x->easy = curl_easy_init();
	if (e == NULL)
		return WF_ENOMEM;
	uint64_t timeout = req->timeout_ms != 0 ? req->timeout_ms : c->timeout_ms;
	bool ok = true;
#define SET(opt, val) (ok = ok && curl_easy_setopt(e, opt, val) == CURLE_OK)
	SET(CURLOPT_URL, req->url);
	SET(CURLOPT_PRIVATE, (void *)x);
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_ERRORBUFFER, x->errbuf);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, (void *)x);
	if (x->want_headers) {
		SET(CURLOPT_HEADERFUNCTION, on_header);
		SET(CURLOPT_HEADERDATA, (void *)x);
	}
	if (timeout != WF_FOREVER)
		SET(CURLOPT_TIMEOUT_MS, timeout > (uint64_t)LONG_MAX ? LONG_MAX : (long)timeout);
	SET(CURLOPT_MAXFILESIZE_LARGE,
	    (curl_off_t)(x->max_body > (size_t)INT64_MAX ? INT64_MAX : (int64_t)x->max_body));
	SET(CURLOPT_USERAGENT, c->user_agent);
	if (c->ca_file != NULL)
		SET(CURLOPT_CAINFO, c->ca_file);
#if LIBCURL_VERSION_NUM >= 0x075500 /* 7.85: the string forms */
	SET(CURLOPT_PROTOCOLS_STR, "http,https");
	SET(CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
	SET(CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
	SET(CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	if (req->follow_redirects) {
		SET(CURLOPT_FOLLOWLOCATION, 1L);
		SET(CURLOPT_MAXREDIRS, MAX_REDIRECTS);
	}
	const char *method = req->method;
	bool post = req->body != NULL || (method != NULL && strcmp(method, "POST") == 0);
	if (post) {
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_len);
		SET(CURLOPT_COPYPOSTFIELDS, req->body != NULL ? (const char *)req->body : "");
		if (method != NULL && strcmp(method, "POST") != 0)
			SET(CURLOPT_CUSTOMREQUEST, method);
	} else if (method != NULL && strcmp(method, "HEAD") == 0) {
		SET(CURLOPT_NOBODY, 1L);
	} else if (method != NULL && strcmp(method, "GET") != 0) {
		SET(CURLOPT_CUSTOMREQUEST, method);
	}
	if (req->headers != NULL) {
		for (const char *const *h = req->headers; ok && *h != NULL; h++) {
			struct curl_slist *l = curl_slist_append(x->hdrs, *h);
			if (l == NULL)
				ok = false;
			else
				x->hdrs = l;
		}
	}
	if (ok && post) {
		/* No "Expect: 100-continue" and its wait for large bodies. */
		struct curl_slist *l = curl_slist_append(x->hdrs, "Expect:");
		if (l == NULL)
			ok = false;
		else
			x->hdrs = l;
	}
	if (x->hdrs != NULL)
		SET(CURLOPT_HTTPHEADER, x->hdrs);
#undef SET
	return ok ? 0 : WF_ENOMEM;
}

int wf_http_start(wf_http_client *c, const wf_http_request *req, wf_future **out)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	if (c == NULL || req == NULL || !request_valid(req))
		return WF_EINVAL;
	struct xfer *x = calloc(1, sizeof(*x));
	if (x == NULL)
		return WF_ENOMEM;
	x->d = pick_driver(c);
	x->max_body = req->max_body != 0 ? req->max_body : c->max_body;
	x->want_headers = req->want_headers;
	x->resp = calloc(1, sizeof(*x->resp));
	int rc = x->resp == NULL ? WF_ENOMEM : build_easy(c, x, req);
	if (rc == 0 && (x->f = wf_future_new()) == NULL)
		rc = WF_ENOMEM;
	if (rc == 0)
		rc = wf_future_add_done_callback(x->f, on_future_done, x);
	if (rc != 0) {
		free_xfer(x);
		return rc;
	}
	struct driver *d = x->d;
	pthread_mutex_lock(&d->lock);
	bool closing = d->closing;
	if (!closing) {
		x->next_add = NULL;
		*d->adds_tail = x;
		d->adds_tail = &x->next_add;
		__atomic_add_fetch(&d->alive, 1, __ATOMIC_RELAXED);
	}
	pthread_mutex_unlock(&d->lock);
	if (closing) {
		/* The callback must not run for a driver that is gone. */
		x->never_queued = true;
		wf_future_cancel(x->f);
		free_xfer(x);
		return WF_ECLOSED;
	}
	*out = wf_future_retain(x->f);
	wake(d);
	return 0;
}

int wf_http_fetch(wf_http_client *c, const wf_http_request *req, wf_http_response *out)
{
	if (out == NULL)
		return WF_EINVAL;
	memset(out, 0, sizeof(*out));
	if (wf_current() == NULL)
		return WF_ENOTTASK;
	wf_future *f;
	int rc = wf_http_start(c, req, &f);
	if (rc != 0)
		return rc;
	void *v = NULL;
	rc = wf_await(f, &v);
	if (rc == WF_ECANCELED) {
		/* The calling task was cancelled (only this call has the
		 * future): end the transfer. If it completed meanwhile, its
		 * answer is dropped. */
		if (wf_future_cancel(f) == WF_EALREADY && wf_future_result(f, &v) == 0)
			wf_http_response_free(v);
		v = NULL;
	}
	wf_future_release(f);
	if (rc != 0)
		return rc;
	wf_http_response *r = v;
	*out = *r;
	free(r);
	return 0;
}

int wf_http_get(wf_http_client *c, const char *url, uint64_t timeout_ms, wf_http_response *out)
{
	wf_http_request req = WF_HTTP_REQUEST_INIT;
	req.url = url;
	req.timeout_ms = timeout_ms;
	return wf_http_fetch(c, &req, out);
}

int wf_http_post(wf_http_client *c, const char *url, const char *content_type, const void *body,
		 size_t len, uint64_t timeout_ms, wf_http_response *out)
{
	if (content_type == NULL)
		content_type = "application/octet-stream";
	if (strpbrk(content_type, "\r\n") != NULL || (body == NULL && len != 0)) {
		if (out != NULL)
			memset(out, 0, sizeof(*out));
		return WF_EINVAL;
	}
	size_t n = strlen("Content-Type: ") + strlen(content_type) + 1;
	char *line = malloc(n);
	if (line == NULL) {
		if (out != NULL)
			memset(out, 0, sizeof(*out));
		return WF_ENOMEM;
	}
	snprintf(line, n, "Content-Type: %s", content_type);
	const char *headers[] = {line, NULL};
	wf_http_request req = WF_HTTP_REQUEST_INIT;
	req.url = url;
	req.method = "POST";
	req.headers = headers;
	req.body = body != NULL ? body : "";
	req.body_len = len;
	req.timeout_ms = timeout_ms;
	int rc = wf_http_fetch(c, &req, out);
	free(line);
	return rc;
}
