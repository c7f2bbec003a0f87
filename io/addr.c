/*
 * Socket addresses: formatting, and the resolution the stream, server and
 * UDP calls share (io_internal.h).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <net/if.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "weft.h"

#include "io/io_internal.h"

/* snprintf's count clamped to what landed in buf (truncation is not an
 * error: the caller gets as much as fits, NUL-terminated). */
static int clamp(int n, size_t cap)
{
	if (n < 0)
		return WF_EINVAL;
	if (cap == 0)
		return 0;
	return (size_t)n < cap ? n : (int)(cap - 1);
}

static int format_unix(const struct sockaddr_un *un, socklen_t len, char *buf, size_t cap)
{
	size_t off = offsetof(struct sockaddr_un, sun_path);
	if (len < off)
		return WF_EINVAL;
	size_t n = len - off;
	if (n > sizeof(un->sun_path))
		n = sizeof(un->sun_path);
	if (n == 0) /* unnamed: a socketpair's end, an unbound client */
		return clamp(snprintf(buf, cap, "%s", ""), cap);
	if (un->sun_path[0] == '\0') {
		/* Linux's abstract namespace: shown as "@name", the way ss(8)
		 * and systemd write it; the name is bytes, not a string. */
		return clamp(snprintf(buf, cap, "@%.*s", (int)(n - 1), un->sun_path + 1), cap);
	}
	return clamp(snprintf(buf, cap, "%.*s", (int)strnlen(un->sun_path, n), un->sun_path), cap);
}

int wf_addr_format(const wf_addr *a, char *buf, size_t cap)
{
	if (a == NULL || (buf == NULL && cap > 0))
		return WF_EINVAL;
	char ip[INET6_ADDRSTRLEN];
	switch (a->ss.ss_family) {
	case AF_INET: {
		const struct sockaddr_in *in4 = (const struct sockaddr_in *)&a->ss;
		if (a->len < sizeof(*in4) || inet_ntop(AF_INET, &in4->sin_addr, ip, sizeof(ip)) == NULL)
			return WF_EINVAL;
		return clamp(snprintf(buf, cap, "%s:%u", ip, (unsigned)ntohs(in4->sin_port)), cap);
	}
	case AF_INET6: {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&a->ss;
		if (a->len < sizeof(*in6) || inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip)) == NULL)
			return WF_EINVAL;
		/* A link-local address means nothing without its interface:
		 * RFC 4007's "%zone", by name when the interface still exists. */
		char zone[IF_NAMESIZE + 2] = "";
		if (in6->sin6_scope_id != 0) {
			char name[IF_NAMESIZE];
			if (if_indextoname(in6->sin6_scope_id, name) != NULL)
				snprintf(zone, sizeof(zone), "%%%s", name);
			else
				snprintf(zone, sizeof(zone), "%%%u", (unsigned)in6->sin6_scope_id);
		}
		return clamp(snprintf(buf, cap, "[%s%s]:%u", ip, zone, (unsigned)ntohs(in6->sin6_port)),
			     cap);
	}
	case AF_UNIX:
		return format_unix((const struct sockaddr_un *)&a->ss, a->len, buf, cap);
	default:
		return WF_EINVAL;
	}
}

/* ---- resolution --------------------------------------------------------- */

static bool same_addr(const wf_addr *a, const wf_addr *b)
{
	return a->len == b->len && memcmp(&a->ss, &b->ss, a->len) == 0;
}

int wf__addr_resolve(const char *host, unsigned port, int socktype, bool passive,
		     uint64_t deadline, wf_addr **out, size_t *count)
{
	if (out == NULL || count == NULL || port > 65535)
		return WF_EINVAL;
	*out = NULL;
	*count = 0;
	wf_addr one;
	if (host == NULL || *host == '\0')
		host = passive ? "0.0.0.0" : "127.0.0.1";
	if (wf__addr_numeric(host, port, &one)) {
		wf_addr *v = malloc(sizeof(*v));
		if (v == NULL)
			return WF_ENOMEM;
		*v = one;
		*out = v;
		*count = 1;
		return 0;
	}

	char serv[8];
	snprintf(serv, sizeof(serv), "%u", port);
	/* No AI_ADDRCONFIG: glibc's ignores loopback addresses, so on a
	 * machine with nothing but loopback "localhost" would not resolve. */
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = socktype,
				 .ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0)};
	struct addrinfo *res = NULL;
	int rc = wf__getaddrinfo_until(host, serv, &hints, deadline, &res);
	if (rc != 0)
		return rc;
	size_t n = 0;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next)
		n++;
	wf_addr *v = n > 0 ? calloc(n, sizeof(*v)) : NULL;
	if (v == NULL) {
		wf_freeaddrinfo(res);
		return n > 0 ? WF_ENOMEM : WF_ENONAME;
	}
	size_t k = 0;
	for (struct addrinfo *ai = res; ai != NULL; ai = ai->ai_next) {
		if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
		    ai->ai_addrlen > sizeof(v[k].ss))
			continue;
		memcpy(&v[k].ss, ai->ai_addr, ai->ai_addrlen);
		v[k].len = ai->ai_addrlen;
		/* /etc/hosts may list a name twice, and a socktype of 0
		 * gives one entry per protocol: a server would bind the
		 * second copy and fail with -EADDRINUSE. */
		bool dup = false;
		for (size_t j = 0; j < k && !dup; j++)
			dup = same_addr(&v[j], &v[k]);
		if (!dup)
			k++;
	}
	wf_freeaddrinfo(res);
	if (k == 0) {
		free(v);
		return WF_ENONAME;
	}
	*out = v;
	*count = k;
	return 0;
}
