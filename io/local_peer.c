/*
 * Loopback connections whose two ends are in this process: which worker
 * the connecting end lives on, so that a server of the same runtime can
 * serve the other end there (server.c).
 *
 * A client task and the handler serving it exchange every message through
 * the kernel; when their sockets sit in different workers' epolls, each
 * message also wakes the other core. The connecting side notes, by its
 * local port, the worker its socket is registered on; the accepting side
 * reads the peer's port from accept(2) and looks it up. This is exact
 * where SO_INCOMING_CPU is only as good as the CPU each worker last noted.
 *
 * On loopback the whole handshake happens inside the client's connect(2):
 * a server worker that is awake can accept before the client has noted
 * its port. So a client counts itself as connecting from before its
 * connect(2) until its note, and a server that misses while a connect is
 * counted waits for the note, briefly (the client does nothing else in
 * between). A loopback peer from another process finds nobody counted and
 * costs no wait.
 *
 * One word per local port, process-wide, in zeroed static storage (pages
 * no connection touched are never resident). An entry is only a hint: a
 * stale or foreign one (two runtimes, a port shared by connections to
 * different destinations) can only place a connection on a worker that
 * is not its client's, never on a worker that does not exist (the server
 * bounds it), and never loses a connection.
 */
#include <netinet/in.h>
#include <sched.h>
#include <stdint.h>
#include <sys/socket.h>

#include "io/io_internal.h"
#include "runtime/clock.h"
#include "runtime/rt.h"
#include "runtime/spinlock.h"

/* How long a server waits for a counted client's note: a few system
 * calls normally, but the client's thread may have lost its CPU (more
 * workers than CPUs, a shared machine), so the wait gives the CPU away
 * after a short spin and gives up after about a time slice. */
#define NOTE_SPIN 64
#define NOTE_WAIT_NS 2000000u

/* An entry: the destination port (bits 48-63), the worker + 1 (bits
 * 32-47) and a tag of the runtime (bits 0-31); 0 is none. */
static uint64_t local_ports[65536];
/* Connects to a loopback address between their connect(2) and their note. */
static uint32_t connecting;

static uint32_t rt_tag(const wf_runtime *rt)
{
	uintptr_t p = (uintptr_t)rt;
	return (uint32_t)(p >> 4) ^ (uint32_t)(p >> 36) ^ 1u; /* never 0 */
}

static bool is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
		return IN6_IS_ADDR_LOOPBACK(a) ||
		       (IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127);
	}
	return false;
}

bool wf__local_peer_connecting(const struct sockaddr *dst)
{
	if (wf__self() == NULL || !is_loopback(dst))
		return false;
	/* Before connect(2): the server's accept, which follows it in the
	 * kernel, then sees the count. */
	__atomic_add_fetch(&connecting, 1, __ATOMIC_SEQ_CST);
	return true;
}

void wf__local_peer_abandon(void)
{
	__atomic_sub_fetch(&connecting, 1, __ATOMIC_RELEASE);
}

wf__local_peer wf__local_peer_note(int fd, const struct sockaddr *dst)
{
	wf__local_peer none = {0, 0};
	wf__worker *self = wf__self();
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int lport = getsockname(fd, (struct sockaddr *)&ss, &len) == 0 ? wf__sockaddr_port((struct sockaddr *)&ss) : -1;
	int dport = wf__sockaddr_port(dst);
	wf__local_peer p = none;
	if (lport > 0 && dport >= 0) {
		uint64_t e = (uint64_t)dport << 48 | (uint64_t)(self->id + 1) << 32 | rt_tag(self->rt);
		__atomic_store_n(&local_ports[lport], e, __ATOMIC_RELAXED);
		p = (wf__local_peer){.port = (uint16_t)lport, .entry = e};
	}
	/* Release: a server that sees the count drop sees the note. */
	__atomic_sub_fetch(&connecting, 1, __ATOMIC_RELEASE);
	return p;
}

void wf__local_peer_forget(wf__local_peer p)
{
	if (p.entry == 0)
		return;
	/* Only our own entry: the port may already be another socket's. */
	uint64_t e = p.entry;
	__atomic_compare_exchange_n(&local_ports[p.port], &e, 0, false, __ATOMIC_RELAXED,
				    __ATOMIC_RELAXED);
}

int wf__local_peer_worker(const struct sockaddr *peer, unsigned listen_port)
{
	wf__worker *self = wf__self();
	if (self == NULL || !is_loopback(peer))
		return -1;
	int pport = wf__sockaddr_port(peer);
	if (pport <= 0)
		return -1;
	uint64_t e = __atomic_load_n(&local_ports[pport], __ATOMIC_ACQUIRE);
	if (e == 0 && __atomic_load_n(&connecting, __ATOMIC_ACQUIRE) != 0) {
		uint64_t until = wf__now_ns() + NOTE_WAIT_NS;
		for (unsigned i = 1;; i++) {
			if (i < NOTE_SPIN)
				wf__cpu_relax();
			else
				sched_yield();
			e = __atomic_load_n(&local_ports[pport], __ATOMIC_ACQUIRE);
			if (e != 0)
				break;
			if (__atomic_load_n(&connecting, __ATOMIC_ACQUIRE) == 0) {
				e = __atomic_load_n(&local_ports[pport], __ATOMIC_ACQUIRE);
				break;
			}
			if (i >= NOTE_SPIN && wf__now_ns() > until)
				break;
		}
	}
	if (e == 0 || (uint32_t)e != rt_tag(self->rt) || (e >> 48) != listen_port)
		return -1;
	return (int)((e >> 32) & 0xffff) - 1;
}
