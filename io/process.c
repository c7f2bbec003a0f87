/*
 * Subprocesses (include/weft/process.h).
 *
 * Starting. posix_spawn (glibc's runs the child on a CLONE_VFORK clone and
 * reports an exec failure as its return code, after reaping that child
 * itself), with the pipes made by pipe2(O_CLOEXEC): the child's ends are
 * dup2'd onto 0, 1 and 2 (which clears close-on-exec on those only), the
 * parent's ends become weft streams. Then pidfd_open: a child that already
 * exited is a zombie until reaped, so its pid cannot have been reused by
 * then and the pidfd names it.
 *
 * Reaping. The pidfd is a poller source (wf__io) on the starting task's
 * worker, and its read edge (the child exited) runs exit_edge on that
 * worker, under the source's lock: waitid(WNOHANG) reaps the child,
 * records the returncode and fires every waiter, which wakes each waiting
 * task on whatever worker it runs now (internal.h's waiter protocol does
 * the crossing). The returncode, `reaped` and the waiters are all guarded
 * by that same lock (io->sl), so a wait either sees the child reaped or
 * is linked before the edge fires it. A child is thus reaped when it
 * exits, whoever waits, wherever.
 *
 * Lifetime. As io/udp.c: the handle holds one reference and each call in
 * progress another (counted under `sl`, which also decides staleness);
 * wf_process_free makes the handle stale, closes the pipes, wakes the
 * waiters with WF_ECLOSED and drops the handle's reference. The last
 * reference closes the source (no edge runs after that) and, if the child
 * still runs, hands its pidfd to the orphan reaper: one process-wide
 * thread with an epoll of its own, started when the first orphan comes and
 * gone once the last one is reaped. It does not depend on any runtime, so
 * an orphan that outlives wf_run is reaped all the same.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/pidfd.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weft.h"

#include "runtime/abi.h"
#include "runtime/clock.h"
#include "runtime/handle.h"
#include "runtime/internal.h"
#include "runtime/poller.h"
#include "runtime/waiting.h"

#ifndef P_PIDFD
#define P_PIDFD 3 /* <linux/wait.h>; glibc 2.36's <sys/wait.h> lacks it */
#endif

extern char **environ;

struct wf_process {
	wf__hdr hdr;
	void *free_link; /* the slab's free list (handle.h), off the lock */
	wf__spinlock sl; /* guards refs and the handle's staleness */
	unsigned refs;   /* the handle's, and one per call in progress */
	bool keep;       /* what the free's wf__hdr_bump said */
	bool freed;
	unsigned flags;
	pid_t pid;
	int pidfd;
	wf__io *io;
	wf_stream *pipes[3]; /* stdin, stdout, stderr, or NULL */

	/* Guarded by io->sl. */
	bool reaped;
	bool closing; /* wf_process_free ran: waits end with WF_ECLOSED */
	int returncode; /* once reaped: asyncio's, or -ECHILD (see reap) */
	wf__waitq waiters;
};

static wf__htype process_type = WF__HTYPE_INIT(WF__K_PROCESS, struct wf_process);

/* ---- the orphan reaper ---------------------------------------------------- */

static pthread_mutex_t orphan_mu = PTHREAD_MUTEX_INITIALIZER;
static int orphan_ep = -1;    /* the reaper's epoll, while it runs */
static size_t orphan_count;   /* pidfds in it */
static bool orphan_running;   /* the reaper thread exists */

/* true once the child of pidfd is gone: reaped now, or by someone else
 * already (ECHILD), or the pidfd is not one (nothing left to wait for). */
static bool reap_nohang(int pidfd, siginfo_t *si)
{
	memset(si, 0, sizeof(*si));
	int r;
	do
		r = waitid((idtype_t)P_PIDFD, (id_t)pidfd, si, WEXITED | WNOHANG);
	while (r != 0 && errno == EINTR);
	if (r != 0) {
		si->si_pid = 0;
		return true;
	}
	return si->si_pid != 0;
}

static void *orphan_reaper(void *arg)
{
	(void)arg;
	for (;;) {
		pthread_mutex_lock(&orphan_mu);
		if (orphan_count == 0) {
			/* Gone with the last orphan: a process with none has
			 * no thread and no descriptor of ours. */
			close(orphan_ep);
			orphan_ep = -1;
			orphan_running = false;
			pthread_mutex_unlock(&orphan_mu);
			return NULL;
		}
		int ep = orphan_ep;
		pthread_mutex_unlock(&orphan_mu);
		struct epoll_event evs[16];
		int n = epoll_wait(ep, evs, 16, -1);
		for (int i = 0; i < n; i++) {
			siginfo_t si;
			int fd = evs[i].data.fd;
			if (!reap_nohang(fd, &si))
				continue;
			pthread_mutex_lock(&orphan_mu);
			epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
			close(fd);
			orphan_count--;
			pthread_mutex_unlock(&orphan_mu);
		}
	}
}

/* Takes pidfd over: its child is reaped when it exits. 0 or -errno (the
 * caller keeps pidfd then). */
static int orphan_adopt(int pidfd)
{
	int rc = 0;
	pthread_mutex_lock(&orphan_mu);
	if (orphan_ep < 0) {
		orphan_ep = epoll_create1(EPOLL_CLOEXEC);
		if (orphan_ep < 0) {
			rc = -errno;
			goto out;
		}
	}
	/* Level-triggered: the reaper takes the descriptor out once reaped. */
	struct epoll_event ev = {.events = EPOLLIN, .data.fd = pidfd};
	if (epoll_ctl(orphan_ep, EPOLL_CTL_ADD, pidfd, &ev) != 0) {
		rc = -errno;
		goto out;
	}
	orphan_count++;
	if (!orphan_running) {
		/* Every signal blocked in the reaper: a signal meant for the
		 * program (weft/signal.h, its own handlers) never lands on
		 * it. The new thread inherits the mask. */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		pthread_attr_setstacksize(&at, 64 * 1024);
		pthread_t t;
		int e = pthread_create(&t, &at, orphan_reaper, NULL);
		pthread_attr_destroy(&at);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		if (e != 0) {
			epoll_ctl(orphan_ep, EPOLL_CTL_DEL, pidfd, NULL);
			orphan_count--;
			rc = -e;
			goto out;
		}
		orphan_running = true;
	}
out:
	if (orphan_count == 0 && !orphan_running && orphan_ep >= 0) {
		close(orphan_ep);
		orphan_ep = -1;
	}
	pthread_mutex_unlock(&orphan_mu);
	return rc;
}

/* ---- references ------------------------------------------------------------ */

static struct wf_process *proc_get(const wf_process *h)
{
	struct wf_process *p = wf__handle_get(h, WF__K_PROCESS);
	if (p == NULL)
		return NULL;
	wf__spin_lock(&p->sl);
	/* Again under the lock: the free decides staleness under it. */
	if (__atomic_load_n(&p->hdr.gen, __ATOMIC_RELAXED) != (uint32_t)((uintptr_t)h >> 32) ||
	    p->freed) {
		wf__spin_unlock(&p->sl);
		return NULL;
	}
	p->refs++;
	wf__spin_unlock(&p->sl);
	return p;
}

static void proc_release(struct wf_process *p)
{
	/* After this no edge runs: `reaped` is ours to read. */
	if (p->io != NULL)
		wf__io_close(p->io);
	if (p->pidfd >= 0) {
		siginfo_t si;
		if (p->reaped || reap_nohang(p->pidfd, &si) || orphan_adopt(p->pidfd) != 0)
			close(p->pidfd);
		/* (An orphan the reaper could not take, for want of a thread
		 * or memory, stays a zombie once it exits: nothing else can
		 * be done without blocking here.) */
	}
	wf__hobj_recycle(&process_type, p, p->keep);
}

static void proc_put(struct wf_process *p)
{
	wf__spin_lock(&p->sl);
	bool last = --p->refs == 0;
	wf__spin_unlock(&p->sl);
	if (last)
		proc_release(p);
}

/* ---- reaping ------------------------------------------------------------ */

/* Reaps the child if it exited; io->sl held. true once reaped. */
static bool reap_locked(struct wf_process *p)
{
	if (p->reaped)
		return true;
	siginfo_t si;
	if (!reap_nohang(p->pidfd, &si))
		return false;
	if (si.si_pid == 0)
		p->returncode = -ECHILD; /* reaped by someone else */
	else if (si.si_code == CLD_EXITED)
		p->returncode = si.si_status;
	else
		p->returncode = -si.si_status; /* CLD_KILLED, CLD_DUMPED */
	p->reaped = true;
	wf__waitq_fire_all(&p->waiters, 0, NULL);
	return true;
}

static void exit_edge(wf__io *io, void *ctx)
{
	(void)io;
	reap_locked(ctx);
}

/* ---- starting ---------------------------------------------------------- */

static int check_opts(const wf_process_opts *o)
{
	if (o == NULL)
		return 0;
	if (!WF__RESERVED_ZERO(o) || (o->flags & ~(unsigned)WF_PROCESS_KEEP_ON_CANCEL) != 0)
		return WF_EINVAL;
	if (o->stdin_mode < WF_INHERIT || o->stdin_mode > WF_DEVNULL ||
	    o->stdout_mode < WF_INHERIT || o->stdout_mode > WF_DEVNULL ||
	    o->stderr_mode < WF_INHERIT || o->stderr_mode > WF_STDOUT)
		return WF_EINVAL;
	return 0;
}

/* /dev/null, opened once for the process: dup2'd in the child instead
 * of opened there, which would hold the parent's worker in the vfork
 * for one more path lookup per stream. -errno if it cannot be opened. */
static int devnull_fd(void)
{
	static int fd = -1;
	int f = __atomic_load_n(&fd, __ATOMIC_ACQUIRE);
	if (f >= 0)
		return f;
	f = open("/dev/null", O_RDWR | O_CLOEXEC);
	if (f < 0)
		return -errno;
	int expected = -1;
	if (!__atomic_compare_exchange_n(&fd, &expected, f, false, __ATOMIC_ACQ_REL,
					 __ATOMIC_ACQUIRE)) {
		close(f);
		f = expected;
	}
	return f;
}

static void close_fd(int *fd)
{
	if (*fd >= 0)
		close(*fd);
	*fd = -1;
}

/* 0 if file names something executable, else the -errno exec would give.
 * posix_spawn reports exec failures itself, but only where its child
 * shares the parent's memory until exec (CLONE_VFORK); under emulation
 * (qemu-user) or another libc it would start a child that exits 127. So
 * the common failures are found here first, for the same codes
 * everywhere; what slips through (a file changed in between) still gets
 * posix_spawn's own report. */
static int exec_check(const char *path)
{
	struct stat st;
	if (stat(path, &st) != 0)
		return -errno;
	if (S_ISDIR(st.st_mode))
		return -EACCES;
	return access(path, X_OK) == 0 ? 0 : -errno;
}

static int precheck(const char *file, bool search, const char *cwd)
{
	if (cwd != NULL) {
		struct stat st;
		if (stat(cwd, &st) != 0)
			return -errno;
		if (!S_ISDIR(st.st_mode))
			return -ENOTDIR;
	}
	if (!search || strchr(file, '/') != NULL) {
		/* A relative path is resolved in cwd, after the chdir. */
		return file[0] != '/' && cwd != NULL ? 0 : exec_check(file);
	}
	const char *path = getenv("PATH");
	if (path == NULL)
		path = "/usr/local/bin:/usr/bin:/bin";
	int best = -ENOENT;
	size_t flen = strlen(file);
	while (*path != '\0') {
		const char *end = strchr(path, ':');
		size_t dlen = end != NULL ? (size_t)(end - path) : strlen(path);
		char buf[4096];
		if (dlen + flen + 2 <= sizeof(buf)) {
			size_t k = 0;
			if (dlen == 0)
				buf[k++] = '.';
			memcpy(buf + k, path, dlen);
			k += dlen;
			buf[k++] = '/';
			memcpy(buf + k, file, flen + 1);
			int rc = exec_check(buf);
			if (rc == 0)
				return 0;
			if (rc == -EACCES)
				best = rc; /* execvp's rule: EACCES wins over ENOENT */
		}
		if (end == NULL)
			break;
		path = end + 1;
	}
	return best;
}

static int spawn(const char *file, bool search, char *const argv[], const wf_process_opts *o,
		 wf_process **out)
{
	wf_process_opts none = WF_PROCESS_OPTS_INIT;
	if (o == NULL)
		o = &none;
	int pre = precheck(file, search, o->cwd);
	if (pre != 0)
		return pre;
	int modes[3] = {o->stdin_mode, o->stdout_mode, o->stderr_mode};
	/* The parent's and the child's end of each pipe. */
	int mine[3] = {-1, -1, -1}, theirs[3] = {-1, -1, -1};
	wf_stream *streams[3] = {NULL, NULL, NULL};
	struct wf_process *p = NULL;
	int pidfd = -1;
	pid_t pid = -1;
	int rc;

	for (int i = 0; i < 3; i++) {
		if (modes[i] != WF_PIPE)
			continue;
		int fds[2];
		if (pipe2(fds, O_CLOEXEC) != 0) {
			rc = -errno;
			goto fail;
		}
		/* A parent with 0, 1 or 2 closed gets them back from pipe2:
		 * one pipe's end could then be overwritten by another's dup2
		 * onto it in the child before its own turn. Above 2, never. */
		for (int k = 0; k < 2; k++) {
			if (fds[k] > 2)
				continue;
			int hi = fcntl(fds[k], F_DUPFD_CLOEXEC, 3);
			if (hi < 0) {
				rc = -errno;
				close(fds[0]);
				close(fds[1]);
				goto fail;
			}
			close(fds[k]);
			fds[k] = hi;
		}
		/* stdin: the child reads fds[0]; stdout, stderr: it writes
		 * fds[1]. */
		mine[i] = i == 0 ? fds[1] : fds[0];
		theirs[i] = i == 0 ? fds[0] : fds[1];
	}

	posix_spawn_file_actions_t fa;
	posix_spawnattr_t at;
	if ((rc = posix_spawn_file_actions_init(&fa)) != 0) {
		rc = -rc;
		goto fail;
	}
	if ((rc = posix_spawnattr_init(&at)) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		rc = -rc;
		goto fail;
	}
	/* An empty mask (the program may block signals on its workers) and
	 * SIGPIPE and SIGXFSZ back to their defaults (weft ignores SIGPIPE),
	 * as Python's restore_signals does. Caught signals are reset by exec
	 * itself; other ignored ones are inherited, as exec means them to be
	 * (nohup). Each signal named here costs a system call in the child
	 * while the parent's worker waits for its exec. */
	sigset_t none_set, all;
	sigemptyset(&none_set);
	sigemptyset(&all);
	sigaddset(&all, SIGPIPE);
	sigaddset(&all, SIGXFSZ);
	rc = posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
	if (rc == 0)
		rc = posix_spawnattr_setsigmask(&at, &none_set);
	if (rc == 0)
		rc = posix_spawnattr_setsigdefault(&at, &all);
	if (rc == 0 && o->cwd != NULL)
		rc = posix_spawn_file_actions_addchdir_np(&fa, o->cwd);
	for (int i = 0; i < 3 && rc == 0; i++) {
		if (modes[i] == WF_PIPE)
			rc = posix_spawn_file_actions_adddup2(&fa, theirs[i], i);
		else if (modes[i] == WF_DEVNULL)
			rc = devnull_fd() >= 0
				     ? posix_spawn_file_actions_adddup2(&fa, devnull_fd(), i)
				     : posix_spawn_file_actions_addopen(&fa, i, "/dev/null",
									i == 0 ? O_RDONLY : O_WRONLY, 0);
		else if (modes[i] == WF_STDOUT)
			rc = posix_spawn_file_actions_adddup2(&fa, 1, 2);
	}
	if (rc == 0) {
		char *const *envp = o->env != NULL ? (char *const *)o->env : environ;
		rc = search ? posix_spawnp(&pid, file, &fa, &at, argv, envp)
			    : posix_spawn(&pid, file, &fa, &at, argv, envp);
	}
	posix_spawn_file_actions_destroy(&fa);
	posix_spawnattr_destroy(&at);
	if (rc != 0) {
		rc = -rc;
		pid = -1;
		goto fail;
	}
	for (int i = 0; i < 3; i++)
		close_fd(&theirs[i]);

	pidfd = pidfd_open(pid, 0);
	if (pidfd < 0) {
		rc = -errno;
		goto fail;
	}
	for (int i = 0; i < 3; i++) {
		if (mine[i] < 0)
			continue;
		rc = wf_stream_from_fd(mine[i], &streams[i]);
		if (rc != 0)
			goto fail;
		mine[i] = -1; /* the stream's now */
	}
	p = wf__hobj_alloc(&process_type);
	if (p == NULL) {
		rc = WF_ENOMEM;
		goto fail;
	}
	p->refs = 1;
	p->flags = o->flags;
	p->pid = pid;
	p->pidfd = pidfd;
	memcpy(p->pipes, streams, sizeof(streams));
	rc = wf__io_open(pidfd, &p->io);
	if (rc != 0) {
		p->io = NULL;
		wf__hobj_free(&process_type, p);
		p = NULL;
		goto fail;
	}
	/* A child gone already is reported by the registration itself, and
	 * only this worker polls its epoll, at a later tick: exit_edge is
	 * set by then. */
	wf__spin_lock(&p->io->sl);
	p->io->owner = p;
	p->io->edge_ctx = p;
	p->io->on_edge[WF__IO_READ] = exit_edge;
	wf__spin_unlock(&p->io->sl);
	*out = wf__handle_of(p);
	return 0;

fail:
	for (int i = 0; i < 3; i++) {
		close_fd(&theirs[i]);
		close_fd(&mine[i]);
		if (streams[i] != NULL)
			wf_stream_abort(streams[i]);
	}
	if (pid > 0) {
		/* Started, but weft cannot watch it: it must not outlive the
		 * failed call, nor stay a zombie. */
		if (pidfd >= 0) {
			pidfd_send_signal(pidfd, SIGKILL, NULL, 0);
			siginfo_t si;
			waitid((idtype_t)P_PIDFD, (id_t)pidfd, &si, WEXITED);
			close(pidfd);
		} else {
			kill(pid, SIGKILL);
			waitpid(pid, NULL, 0);
		}
	}
	return rc;
}

WF_EXTERN int wf_process_exec(const char *file, const char *const argv[],
			      const wf_process_opts *opts, wf_process **out)
{
	if (out != NULL)
		*out = NULL;
	if (file == NULL || argv == NULL || argv[0] == NULL || out == NULL)
		return WF_EINVAL;
	int rc = check_opts(opts);
	if (rc != 0)
		return rc;
	if (!wf__in_task())
		return WF_ENOTTASK;
	return spawn(file, strchr(file, '/') == NULL, (char *const *)argv, opts, out);
}

WF_EXTERN int wf_process_shell(const char *cmdline, const wf_process_opts *opts,
			       wf_process **out)
{
	if (out != NULL)
		*out = NULL;
	if (cmdline == NULL || out == NULL)
		return WF_EINVAL;
	int rc = check_opts(opts);
	if (rc != 0)
		return rc;
	if (!wf__in_task())
		return WF_ENOTTASK;
	const char *argv[] = {"sh", "-c", cmdline, NULL};
	return spawn("/bin/sh", false, (char *const *)argv, opts, out);
}

/* ---- accessors ------------------------------------------------------------ */

static wf_stream *pipe_of(const wf_process *h, int i)
{
	struct wf_process *p = proc_get(h);
	if (p == NULL)
		return NULL;
	wf_stream *s = p->pipes[i];
	proc_put(p);
	return s;
}

WF_EXTERN wf_stream *wf_process_stdin(const wf_process *p) { return pipe_of(p, 0); }
WF_EXTERN wf_stream *wf_process_stdout(const wf_process *p) { return pipe_of(p, 1); }
WF_EXTERN wf_stream *wf_process_stderr(const wf_process *p) { return pipe_of(p, 2); }

WF_EXTERN pid_t wf_process_pid(const wf_process *h)
{
	struct wf_process *p = proc_get(h);
	if (p == NULL)
		return WF_EINVAL;
	pid_t pid = p->pid;
	proc_put(p);
	return pid;
}

/* ---- signals --------------------------------------------------------------- */

static int signal_child(struct wf_process *p, int sig)
{
	wf__spin_lock(&p->io->sl);
	bool gone = p->reaped;
	wf__spin_unlock(&p->io->sl);
	if (gone)
		return -ESRCH;
	/* Through the pidfd: a child reaped meanwhile gives ESRCH, never
	 * another process that took its pid. */
	return pidfd_send_signal(p->pidfd, sig, NULL, 0) == 0 ? 0 : -errno;
}

WF_EXTERN int wf_process_send_signal(wf_process *h, int sig)
{
	struct wf_process *p = proc_get(h);
	if (p == NULL)
		return WF_EINVAL;
	int rc = signal_child(p, sig);
	proc_put(p);
	return rc;
}

WF_EXTERN int wf_process_terminate(wf_process *p) { return wf_process_send_signal(p, SIGTERM); }
WF_EXTERN int wf_process_kill(wf_process *p) { return wf_process_send_signal(p, SIGKILL); }

/* ---- waiting ------------------------------------------------------------- */

/* The cancelled caller's promise (process.h): the child dies unless the
 * program asked to keep it. The poller reaps it once it has. */
static void cancelled(struct wf_process *p)
{
	if (!(p->flags & WF_PROCESS_KEEP_ON_CANCEL))
		signal_child(p, SIGKILL);
}

static int wait_until(struct wf_process *p, uint64_t deadline, int *returncode)
{
	wf__spin_lock(&p->io->sl);
	if (reap_locked(p)) {
		int r = p->returncode;
		wf__spin_unlock(&p->io->sl);
		if (r == -ECHILD)
			return -ECHILD;
		if (returncode != NULL)
			*returncode = r;
		return 0;
	}
	if (p->closing) {
		wf__spin_unlock(&p->io->sl);
		return WF_ECLOSED;
	}
	wf__waiting wg = {.lock = &p->io->sl,
			  .q = &p->waiters,
			  .what = "process wait",
			  .obj = p,
			  .deadline = deadline,
			  .no_wait = deadline != WF__NO_DEADLINE && deadline <= wf__now_ns()};
	int rc = wf__wait_on(&wg);
	if (rc == 0) {
		wf__spin_lock(&p->io->sl);
		int r = p->returncode;
		wf__spin_unlock(&p->io->sl);
		if (r == -ECHILD)
			return -ECHILD;
		if (returncode != NULL)
			*returncode = r;
	} else if (rc == WF_ECANCELED) {
		cancelled(p);
	}
	return rc;
}

WF_EXTERN int wf_process_wait(wf_process *h, uint64_t timeout_ms, int *returncode)
{
	struct wf_process *p = proc_get(h);
	if (p == NULL)
		return WF_EINVAL;
	int rc = wait_until(p, wf__deadline_after_ms(timeout_ms), returncode);
	proc_put(p);
	return rc;
}

/* ---- communicate ------------------------------------------------------------ */

/* What one helper task of communicate does and got. */
typedef struct comm_part {
	wf_stream *s;
	const char *input; /* the writer's */
	size_t n;
	uint64_t deadline;
	int rc;
	void *buf; /* a reader's */
	size_t len;
} comm_part;

static uint64_t ms_left(uint64_t deadline)
{
	if (deadline == WF__NO_DEADLINE)
		return WF_FOREVER;
	uint64_t now = wf__now_ns();
	if (deadline <= now)
		return 0;
	return (deadline - now + 999999u) / 1000000u;
}

/* Input goes in slices, each drained before the next: the stream's
 * buffer never holds a copy of a large input. */
#define WRITE_SLICE ((size_t)256 * 1024)

static void *comm_writer(void *arg)
{
	comm_part *c = arg;
	int rc = 0;
	for (size_t off = 0; off < c->n && rc == 0;) {
		size_t k = c->n - off < WRITE_SLICE ? c->n - off : WRITE_SLICE;
		rc = wf_stream_write(c->s, c->input + off, k);
		if (rc == 0)
			rc = wf_stream_drain(c->s, ms_left(c->deadline));
		off += k;
	}
	if (rc == 0)
		rc = wf_stream_write_eof(c->s, ms_left(c->deadline));
	c->rc = rc;
	return NULL;
}

static void *comm_reader(void *arg)
{
	comm_part *c = arg;
	ssize_t r = wf_stream_read_all(c->s, SIZE_MAX, &c->buf, ms_left(c->deadline));
	if (r >= 0) {
		c->len = (size_t)r;
		c->rc = 0;
	} else {
		c->rc = (int)r;
	}
	return NULL;
}

static bool broken_pipe(int rc) { return rc == -EPIPE || rc == -ECONNRESET; }

WF_EXTERN int wf_process_communicate(wf_process *h, const void *input, size_t n, void **out,
				     size_t *outlen, void **err, size_t *errlen,
				     uint64_t timeout_ms)
{
	if (out != NULL)
		*out = NULL;
	if (err != NULL)
		*err = NULL;
	if (outlen != NULL)
		*outlen = 0;
	if (errlen != NULL)
		*errlen = 0;
	if (input == NULL && n > 0)
		return WF_EINVAL;
	if (!wf__in_task())
		return WF_ENOTTASK;
	struct wf_process *p = proc_get(h);
	if (p == NULL)
		return WF_EINVAL;
	if (n > 0 && p->pipes[0] == NULL) {
		proc_put(p);
		return WF_EINVAL;
	}
	uint64_t deadline = wf__deadline_after_ms(timeout_ms);
	comm_part parts[3];
	wf_task *tasks[3] = {NULL, NULL, NULL};
	memset(parts, 0, sizeof(parts));
	for (int i = 0; i < 3; i++) {
		parts[i].s = p->pipes[i];
		parts[i].deadline = deadline;
	}
	parts[0].input = input;
	parts[0].n = n;

	/* stdin and stderr in helper tasks, stdout here: one suspension
	 * point each, so none can hold up another, whatever the sizes. */
	int rc = 0;
	for (int i = 0; i < 3 && rc == 0; i += 2) {
		if (parts[i].s == NULL)
			continue;
		rc = wf_spawn_ex(i == 0 ? comm_writer : comm_reader, &parts[i], NULL, &tasks[i]);
	}
	if (rc == 0 && parts[1].s != NULL)
		comm_reader(&parts[1]);
	/* Once stdout failed (a timeout, our cancellation, an error) the
	 * helpers have nothing left to do: a cancelled read keeps its bytes
	 * in the stream's buffer. */
	bool stop = rc != 0 || parts[1].rc != 0;
	for (int i = 0; i < 3; i += 2) {
		if (tasks[i] == NULL)
			continue;
		if (stop)
			wf_cancel(tasks[i]);
		int jr = wf_join(tasks[i], NULL);
		if (jr == WF_ECANCELED && parts[i].rc == 0)
			parts[i].rc = WF_ECANCELED; /* cancelled before it ran */
		if (parts[i].rc == WF_ECANCELED && !stop) {
			/* Our own cancellation, passed on by the join: stop
			 * the other helper too. */
			stop = true;
			if (i == 0 && tasks[2] != NULL)
				wf_cancel(tasks[2]);
		}
	}
	if (rc == 0) {
		/* A timeout anywhere first (the helpers cancelled because of
		 * it answer WF_ECANCELED), then a cancellation, then the
		 * reads' errors, then the writer's; a broken pipe is only
		 * reported once all else went well. A writer refused because
		 * the program closed stdin itself had nothing to send. */
		if (n == 0 && parts[0].rc == WF_EINVAL)
			parts[0].rc = 0;
		for (int i = 0; i < 3; i++)
			if (parts[i].rc == WF_ETIMEDOUT)
				rc = WF_ETIMEDOUT;
		for (int i = 0; i < 3 && rc == 0; i++)
			if (parts[i].rc == WF_ECANCELED)
				rc = WF_ECANCELED;
		for (int i = 1; i <= 3 && rc == 0; i++) {
			int c = parts[i % 3].rc;
			if (c != 0 && !(i == 3 && broken_pipe(c)))
				rc = c;
		}
	}
	if (rc == 0) {
		int w = wait_until(p, deadline, NULL);
		if (w != 0 && w != -ECHILD)
			rc = w;
		else if (broken_pipe(parts[0].rc))
			rc = parts[0].rc;
	} else if (rc == WF_ECANCELED) {
		cancelled(p);
	}
	if (rc == 0 || broken_pipe(rc)) {
		if (out != NULL)
			*out = parts[1].buf;
		else
			free(parts[1].buf);
		if (outlen != NULL)
			*outlen = parts[1].len;
		if (err != NULL)
			*err = parts[2].buf;
		else
			free(parts[2].buf);
		if (errlen != NULL)
			*errlen = parts[2].len;
	} else {
		free(parts[1].buf);
		free(parts[2].buf);
	}
	proc_put(p);
	return rc;
}

/* ---- freeing ------------------------------------------------------------ */

WF_EXTERN int wf_process_free(wf_process *h)
{
	struct wf_process *p = wf__handle_get(h, WF__K_PROCESS);
	if (p == NULL)
		return WF_EINVAL;
	wf__spin_lock(&p->sl);
	if (__atomic_load_n(&p->hdr.gen, __ATOMIC_RELAXED) != (uint32_t)((uintptr_t)h >> 32) ||
	    p->freed) {
		wf__spin_unlock(&p->sl);
		return WF_EINVAL;
	}
	p->freed = true;
	p->keep = wf__hdr_bump(&p->hdr);
	wf__spin_unlock(&p->sl);
	/* A stream the program closed itself is stale already: the abort
	 * is refused, harmlessly. */
	for (int i = 0; i < 3; i++)
		if (p->pipes[i] != NULL)
			wf_stream_abort(p->pipes[i]);
	wf__spin_lock(&p->io->sl);
	p->closing = true;
	wf__waitq_fire_all(&p->waiters, WF_ECLOSED, NULL);
	wf__spin_unlock(&p->io->sl);
	proc_put(p);
	return 0;
}
