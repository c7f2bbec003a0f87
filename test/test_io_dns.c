/*
 * Asynchronous DNS: names from /etc/hosts and numeric addresses resolve,
 * a name under .invalid (RFC 6761: never resolves) gives WF_ENONAME,
 * getnameinfo, zero timeouts, bad input, plain threads, and many lookups
 * at once from tasks on several workers. The machine may have no network:
 * only names that resolve locally or must fail are used.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netdb.h>
#include <netinet/in.h>
#include <string.h>

#include "rt_check.h"
#include "weft.h"

/* true if res holds an address of family fam equal to the text ip. */
static bool has_addr(const struct addrinfo *res, int fam, const char *ip)
{
	for (const struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		char buf[INET6_ADDRSTRLEN];
		const void *p;
		if (ai->ai_family != fam)
			continue;
		if (fam == AF_INET)
			p = &((const struct sockaddr_in *)ai->ai_addr)->sin_addr;
		else
			p = &((const struct sockaddr_in6 *)ai->ai_addr)->sin6_addr;
		if (inet_ntop(fam, p, buf, sizeof(buf)) != NULL && strcmp(buf, ip) == 0)
			return true;
	}
	return false;
}

static int port_of(const struct addrinfo *ai)
{
	if (ai->ai_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ai->ai_addr)->sin_port);
	return ntohs(((const struct sockaddr_in6 *)ai->ai_addr)->sin6_port);
}

static void *resolve_main(void *arg)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;

	/* A name: /etc/hosts has localhost, through the thread pool. */
	if (CHECK_RC(wf_getaddrinfo("localhost", "8080", &hints, 5000, &res), 0)) {
		CHECK(res != NULL);
		CHECK(has_addr(res, AF_INET, "127.0.0.1") || has_addr(res, AF_INET6, "::1"));
		CHECK_EQ(port_of(res), 8080);
		wf_freeaddrinfo(res);
	}
	res = NULL;
	if (CHECK_RC(wf_getaddrinfo("127.0.0.1", "80", &hints, WF_FOREVER, &res), 0)) {
		CHECK(has_addr(res, AF_INET, "127.0.0.1"));
		CHECK_EQ(port_of(res), 80);
		CHECK(res->ai_next == NULL);
		wf_freeaddrinfo(res);
	}
	res = NULL;
	if (CHECK_RC(wf_getaddrinfo("::1", NULL, &hints, WF_FOREVER, &res), 0)) {
		CHECK(has_addr(res, AF_INET6, "::1"));
		wf_freeaddrinfo(res);
	}
	/* NULL hints and a service only. */
	res = NULL;
	if (CHECK_RC(wf_getaddrinfo(NULL, "443", NULL, WF_FOREVER, &res), 0)) {
		CHECK(res != NULL);
		CHECK_EQ(port_of(res), 443);
		wf_freeaddrinfo(res);
	}
	wf_freeaddrinfo(NULL);

	/* A name that must not resolve (the DNS server is asked: a generous
	 * timeout, in case a query is lost and the resolver retries). */
	res = (struct addrinfo *)&hints; /* overwritten with NULL on failure */
	CHECK_RC(wf_getaddrinfo("nonexistent.invalid", NULL, &hints, 60000, &res), WF_ENONAME);
	CHECK(res == NULL);
	/* A numeric host with a family it does not have. */
	struct addrinfo v6 = {.ai_family = AF_INET6, .ai_socktype = SOCK_STREAM};
	int rc = wf_getaddrinfo("127.0.0.1", NULL, &v6, 5000, &res);
	CHECK(rc == WF_ENONAME || rc == WF_EINVAL);
	/* Bad flags. */
	struct addrinfo bad = {.ai_flags = 0x7fff0000};
	CHECK_RC(wf_getaddrinfo("localhost", NULL, &bad, 5000, &res), WF_EINVAL);
	/* Bad input. */
	CHECK_RC(wf_getaddrinfo(NULL, NULL, &hints, 5000, &res), WF_EINVAL);
	CHECK_RC(wf_getaddrinfo("localhost", NULL, &hints, 5000, NULL), WF_EINVAL);
	return NULL;
}

Test(io_dns, names_and_numbers_resolve)
{
	run_weft(2, resolve_main, NULL);
}

static void *nameinfo_main(void *arg)
{
	wf_addr a = {0};
	struct sockaddr_in *in4 = (struct sockaddr_in *)&a.ss;
	in4->sin_family = AF_INET;
	in4->sin_port = htons(8080);
	inet_pton(AF_INET, "127.0.0.1", &in4->sin_addr);
	a.len = sizeof(*in4);
	char host[NI_MAXHOST], serv[NI_MAXSERV];

	CHECK_RC(wf_getnameinfo(&a, NI_NUMERICHOST | NI_NUMERICSERV, host, serv, 5000), 0);
	CHECK(strcmp(host, "127.0.0.1") == 0);
	CHECK(strcmp(serv, "8080") == 0);
	/* Numbers only: answered even with a zero timeout. */
	CHECK_RC(wf_getnameinfo(&a, NI_NUMERICHOST | NI_NUMERICSERV, host, NULL, 0), 0);
	CHECK(strcmp(host, "127.0.0.1") == 0);
	/* NI_NUMERICHOST with a looked-up service goes through the pool. */
	CHECK_RC(wf_getnameinfo(&a, NI_NUMERICHOST, host, serv, 5000), 0);
	CHECK(strcmp(host, "127.0.0.1") == 0);
	CHECK(serv[0] != '\0');
	/* A name for 127.0.0.1: /etc/hosts has one. */
	CHECK_RC(wf_getnameinfo(&a, NI_NAMEREQD, host, NULL, 5000), 0);
	CHECK(host[0] != '\0');

	wf_addr b = {0};
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&b.ss;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(53);
	inet_pton(AF_INET6, "::1", &in6->sin6_addr);
	b.len = sizeof(*in6);
	CHECK_RC(wf_getnameinfo(&b, NI_NUMERICHOST | NI_NUMERICSERV, host, serv, WF_FOREVER), 0);
	CHECK(strcmp(host, "::1") == 0);
	CHECK(strcmp(serv, "53") == 0);

	/* Bad input. */
	CHECK_RC(wf_getnameinfo(NULL, 0, host, serv, 5000), WF_EINVAL);
	CHECK_RC(wf_getnameinfo(&a, 0, NULL, NULL, 5000), WF_EINVAL);
	wf_addr un = {.len = sizeof(sa_family_t)};
	un.ss.ss_family = AF_UNIX;
	CHECK_RC(wf_getnameinfo(&un, 0, host, serv, 5000), WF_EINVAL);
	wf_addr shortv4 = a;
	shortv4.len = 4;
	CHECK_RC(wf_getnameinfo(&shortv4, NI_NUMERICHOST, host, NULL, 5000), WF_EINVAL);
	return NULL;
}

Test(io_dns, getnameinfo)
{
	run_weft(2, nameinfo_main, NULL);
}

/* Timeout 0: a numeric query needs no lookup and is answered; a name
 * would wait, so it gives WF_ETIMEDOUT at once and leaves nothing behind
 * (the ASan build checks for leaks). */
static void *zero_main(void *arg)
{
	struct addrinfo hints = {.ai_socktype = SOCK_DGRAM};
	struct addrinfo *res = NULL;
	if (CHECK_RC(wf_getaddrinfo("127.0.0.1", "9", &hints, 0, &res), 0)) {
		CHECK(has_addr(res, AF_INET, "127.0.0.1"));
		wf_freeaddrinfo(res);
	}
	CHECK_RC(wf_getaddrinfo("localhost", "9", &hints, 0, &res), WF_ETIMEDOUT);
	CHECK(res == NULL);
	/* A named service is a lookup too. */
	CHECK_RC(wf_getaddrinfo("127.0.0.1", "domain", &hints, 0, &res), WF_ETIMEDOUT);
	wf_addr a = {0};
	struct sockaddr_in *in4 = (struct sockaddr_in *)&a.ss;
	in4->sin_family = AF_INET;
	inet_pton(AF_INET, "127.0.0.1", &in4->sin_addr);
	a.len = sizeof(*in4);
	char host[NI_MAXHOST];
	CHECK_RC(wf_getnameinfo(&a, 0, host, NULL, 0), WF_ETIMEDOUT);
	return NULL;
}

Test(io_dns, zero_timeout)
{
	run_weft(2, zero_main, NULL);
}

/* A lookup whose task is cancelled, or times out, while the pool works
 * on it: the task returns at once, and the request is freed by its
 * callback later (run under ASan to see it). The loop of lookups makes
 * sure some are still in flight when their waits end. */
static void *abandon_child(void *arg)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	int rc = wf_getaddrinfo("localhost", "80", &hints, WF_FOREVER, &res);
	if (rc == 0)
		wf_freeaddrinfo(res);
	CHECK(rc == 0 || rc == WF_ECANCELED);
	return NULL;
}

static void *abandon_main(void *arg)
{
	enum { N = 64 };
	wf_task *ts[N];
	for (int i = 0; i < N; i++)
		ts[i] = wf_spawn(abandon_child, NULL);
	for (int i = 0; i < N; i++)
		wf_cancel(ts[i]);
	for (int i = 0; i < N; i++) {
		int rc = wf_join(ts[i], NULL);
		CHECK(rc == 0 || rc == WF_ECANCELED);
	}
	/* Timeouts of 1 ms: some finish, some are abandoned. */
	for (int i = 0; i < N; i++) {
		struct addrinfo *res = NULL;
		int rc = wf_getaddrinfo("localhost", NULL, NULL, 1, &res);
		if (rc == 0)
			wf_freeaddrinfo(res);
		else
			CHECK_RC(rc, WF_ETIMEDOUT);
	}
	return NULL;
}

Test(io_dns, cancelled_and_timed_out_lookups)
{
	run_weft(4, abandon_main, NULL);
}

Test(io_dns, plain_thread)
{
	struct addrinfo *res = NULL;
	cr_assert_eq(wf_getaddrinfo("localhost", NULL, NULL, 1000, &res), WF_ENOTTASK);
	cr_assert_null(res);
	wf_addr a = {0};
	a.ss.ss_family = AF_INET;
	a.len = sizeof(struct sockaddr_in);
	char host[NI_MAXHOST];
	cr_assert_eq(wf_getnameinfo(&a, NI_NUMERICHOST, host, NULL, 1000), WF_ENOTTASK);
}

/* ---- many lookups at once ------------------------------------------------ */

struct many {
	int ok;   /* atomic */
	int fail; /* atomic */
};

static void *many_child(void *arg)
{
	struct many *m = arg;
	/* Names from /etc/hosts and numbers only: a failing name asks the
	 * DNS server, which may drop a query under load and make the
	 * resolver retry after its 5 s timeout. */
	static const char *const names[] = {"localhost", "127.0.0.1", "::1", "localhost"};
	uint64_t seed = (uintptr_t)wf_current() | 1;
	for (int i = 0; i < 8; i++) {
		const char *name = names[rng_next(&seed) % 4];
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
		struct addrinfo *res = NULL;
		int rc = wf_getaddrinfo(name, "80", &hints, 20000, &res);
		if (CHECK_RC(rc, 0)) {
			__atomic_fetch_add(&m->ok, 1, __ATOMIC_RELAXED);
			wf_freeaddrinfo(res);
		} else {
			__atomic_fetch_add(&m->fail, 1, __ATOMIC_RELAXED);
		}
		/* Move between lookups, so requests start on every loop. */
		if (rng_next(&seed) % 2)
			wf_yield();
	}
	return NULL;
}

static void *many_main(void *arg)
{
	enum { N = 200 };
	struct many m = {0};
	wf_task *ts[N];
	for (int i = 0; i < N; i++)
		ts[i] = wf_spawn(many_child, &m);
	for (int i = 0; i < N; i++)
		CHECK_RC(wf_join(ts[i], NULL), 0);
	CHECK_EQ(m.fail, 0);
	CHECK(m.ok > 0);
	return NULL;
}

Test(io_dns, many_lookups_from_many_tasks)
{
	run_weft(4, many_main, NULL);
}

/* ---- wf_addr_format ----------------------------------------------------- */

#include <sys/un.h>

Test(io_dns, addr_format)
{
	wf_addr a = {0};
	struct sockaddr_in *in4 = (struct sockaddr_in *)&a.ss;
	in4->sin_family = AF_INET;
	in4->sin_port = htons(8080);
	inet_pton(AF_INET, "127.0.0.1", &in4->sin_addr);
	a.len = sizeof(*in4);
	char buf[128];
	cr_assert_eq(wf_addr_format(&a, buf, sizeof(buf)), 14);
	cr_assert_str_eq(buf, "127.0.0.1:8080");
	/* Truncated, always NUL-terminated: the length written. */
	cr_assert_eq(wf_addr_format(&a, buf, 5), 4);
	cr_assert_str_eq(buf, "127.");
	cr_assert_eq(wf_addr_format(&a, NULL, 0), 0);

	wf_addr b = {0};
	struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&b.ss;
	in6->sin6_family = AF_INET6;
	in6->sin6_port = htons(443);
	inet_pton(AF_INET6, "::1", &in6->sin6_addr);
	b.len = sizeof(*in6);
	cr_assert_eq(wf_addr_format(&b, buf, sizeof(buf)), 9);
	cr_assert_str_eq(buf, "[::1]:443");

	wf_addr u = {0};
	struct sockaddr_un *un = (struct sockaddr_un *)&u.ss;
	un->sun_family = AF_UNIX;
	strcpy(un->sun_path, "/tmp/weft.sock");
	u.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(un->sun_path) + 1);
	cr_assert_eq(wf_addr_format(&u, buf, sizeof(buf)), 14);
	cr_assert_str_eq(buf, "/tmp/weft.sock");
	/* Linux's abstract namespace. */
	memset(un->sun_path, 0, sizeof(un->sun_path));
	memcpy(un->sun_path, "\0weft", 5);
	u.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 5);
	cr_assert_eq(wf_addr_format(&u, buf, sizeof(buf)), 5);
	cr_assert_str_eq(buf, "@weft");
	/* Unnamed (a socketpair's end). */
	u.len = sizeof(sa_family_t);
	cr_assert_eq(wf_addr_format(&u, buf, sizeof(buf)), 0);
	cr_assert_str_eq(buf, "");

	/* Bad input. */
	cr_assert_eq(wf_addr_format(NULL, buf, sizeof(buf)), WF_EINVAL);
	cr_assert_eq(wf_addr_format(&a, NULL, 10), WF_EINVAL);
	wf_addr bad = a;
	bad.len = 4;
	cr_assert_eq(wf_addr_format(&bad, buf, sizeof(buf)), WF_EINVAL);
	bad.ss.ss_family = AF_PACKET;
	cr_assert_eq(wf_addr_format(&bad, buf, sizeof(buf)), WF_EINVAL);
}
