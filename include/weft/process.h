/*
 * weft: subprocesses (asyncio.create_subprocess_exec / _shell and
 * asyncio.subprocess.Process); included by weft.h.
 *
 * A child is started with posix_spawn and watched through a pidfd (Linux
 * 5.3 or later) registered with the poller of the worker that started it:
 * when the child exits, that worker's poller reaps it at once (waitid on
 * the pidfd) and wakes every task waiting for it, on whatever worker each
 * one runs now. No SIGCHLD handler is installed and nothing of libuv's
 * process machinery is used, so a program's own SIGCHLD handling and
 * libuv's uv_spawn are left alone; a signal or kill always reaches the
 * right child (through its pidfd), never a process that reused its pid.
 *
 * The child starts with an empty signal mask, SIGPIPE and SIGXFSZ at
 * their default dispositions (weft ignores SIGPIPE in the parent; Python's
 * restore_signals does the same), caught signals at their defaults (exec
 * does that) and other ignored signals still ignored (exec's rule, which
 * nohup relies on). Every descriptor weft and its pipes hold is
 * close-on-exec: the child inherits only its stdin, stdout and stderr and
 * whatever the program itself left inheritable. WF_DEVNULL streams share
 * one /dev/null descriptor that weft opens on first use and keeps.
 *
 * Pipes. A stream set to WF_PIPE is a weft stream (weft/io.h): read it
 * with wf_stream_read / readline / readexactly / read_all, write it with
 * wf_stream_write / drain / write_eof, from any task. The process owns its
 * streams: do not free them with wf_stream_close or wf_stream_abort unless
 * you want the pipe closed early (wf_stream_write_eof on stdin is the
 * usual way to send the end of the input); wf_process_free closes what is
 * still open.
 *
 * Lifetime. wf_process_free makes the handle stale and closes the pipes.
 * A child that is still running then is left running (it is not
 * signalled) and reaped when it exits, by a small process-wide reaper
 * thread that exists only while such children do. So no child ever stays
 * a zombie, whether or not anyone waited for it. Free every process
 * before its runtime shuts down (as every stream): one still allocated at
 * that point leaves its pidfd open, and its child a zombie once it exits.
 *
 * Common rules (those of weft/io.h): [task] calls must be made from a
 * task (WF_ENOTTASK); [any] ones from any thread. Waits take timeout_ms
 * (WF_FOREVER: none; 0: do not wait) and honour cancellation. OS errors
 * are -errno. A freed handle gives WF_EINVAL, every time.
 */
#ifndef WEFT_PROCESS_H
#define WEFT_PROCESS_H

#include <sys/types.h>

#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct wf_process wf_process;

/* What each of the child's stdin, stdout and stderr is connected to. */
enum wf_process_stdio {
	WF_INHERIT = 0, /* the parent's own descriptor (asyncio's None) */
	WF_PIPE = 1,    /* a pipe; the parent's end is a weft stream */
	WF_DEVNULL = 2, /* /dev/null */
	WF_STDOUT = 3,  /* stderr only: the same as the child's stdout
			 * (asyncio's STDOUT; stdout's pipe gets both) */
};

enum wf_process_flags {
	/* A task waiting for the child (wf_process_wait, _communicate)
	 * that is cancelled leaves the child running, instead of killing it
	 * with SIGKILL. */
	WF_PROCESS_KEEP_ON_CANCEL = 1u << 0,
};

typedef struct wf_process_opts {
	/* The child's environment, "NAME=value" strings ending with NULL;
	 * NULL: the parent's (environ). */
	const char *const *env;
	/* The child's working directory; NULL: the parent's. A relative
	 * program path containing '/' is taken relative to it. */
	const char *cwd;
	int stdin_mode;  /* enum wf_process_stdio: WF_INHERIT, WF_PIPE, WF_DEVNULL */
	int stdout_mode; /* WF_INHERIT, WF_PIPE, WF_DEVNULL */
	int stderr_mode; /* WF_INHERIT, WF_PIPE, WF_DEVNULL, WF_STDOUT */
	unsigned flags;  /* WF_PROCESS_* */
	uint64_t reserved[6]; /* must be zero */
} wf_process_opts;
#define WF_PROCESS_OPTS_INIT WF__ZERO_INIT

/* [task] asyncio.create_subprocess_exec: runs the program `file` with the
 * arguments argv (argv[0] is the program's name, as it sees it; the array
 * ends with NULL). A file without '/' is looked for in the directories of
 * the calling process's PATH, as execvp does; a file with '/' is run as
 * is. opts may be NULL (everything inherited). 0 and *out, which the
 * caller frees with wf_process_free. Errors (nothing is left behind: no
 * child, no zombie, no descriptor):
 *   WF_EINVAL   file, argv, argv[0] or out NULL; a mode out of range
 *               (WF_STDOUT for stdin or stdout); unknown flags; reserved
 *               words not zero
 *   -ENOENT     no such program (or cwd does not exist)
 *   -EACCES, -ENOEXEC, -ENOTDIR, -E2BIG, ... exec's and chdir's errors
 *   -EMFILE, -ENFILE, -EAGAIN, WF_ENOMEM  out of descriptors, processes
 *               or memory
 *   -ENOSYS     the kernel has no pidfds (before Linux 5.3)
 *   WF_ENOTTASK */
WF_EXTERN int wf_process_exec(const char *file, const char *const argv[],
			      const wf_process_opts *opts, wf_process **out);
/* [task] asyncio.create_subprocess_shell: runs cmdline with /bin/sh -c.
 * As wf_process_exec (-ENOENT only if /bin/sh is missing: a command the
 * shell cannot find makes it exit with 127). */
WF_EXTERN int wf_process_shell(const char *cmdline, const wf_process_opts *opts,
			       wf_process **out);

/* [any] The parent's end of the child's stdin, stdout or stderr pipe (a
 * wf_stream of weft/io.h, named by its struct tag here because io.h
 * comes after this header in weft.h), owned by
 * the process (see "Pipes" above); NULL when that stream is not WF_PIPE,
 * or for a freed handle. */
WF_EXTERN struct wf_stream *wf_process_stdin(const wf_process *p);
WF_EXTERN struct wf_stream *wf_process_stdout(const wf_process *p);
WF_EXTERN struct wf_stream *wf_process_stderr(const wf_process *p);
/* [any] The child's process id (> 0), or WF_EINVAL. Once the child was reaped
 * the id may name another process: signal it with the calls below. */
WF_EXTERN pid_t wf_process_pid(const wf_process *p);

/* [any] Waits until the child has exited; *returncode (may be NULL) is
 * asyncio's returncode: the exit status, or -N for a child killed by
 * signal N. Any number of tasks, on any workers, may wait at once; once
 * the child has exited, every call returns at once. Codes:
 *   0
 *   WF_ETIMEDOUT  still running when timeout_ms passed (left running)
 *   WF_ECANCELED  the waiting task was cancelled: the child is killed
 *                 (SIGKILL), and reaped as soon as it dies, unless the
 *                 process has WF_PROCESS_KEEP_ON_CANCEL
 *   WF_ECLOSED    the process was freed while the call waited
 *   -ECHILD       someone else reaped the child (waitpid(-1) elsewhere in
 *                 the program, or SIGCHLD set to SIG_IGN): no status
 *   WF_EINVAL     stale handle */
WF_EXTERN int wf_process_wait(wf_process *p, uint64_t timeout_ms, int *returncode);

/* [task] asyncio's communicate: writes the n bytes of input (input may be
 * NULL when n is 0) to the child's stdin and closes it, while reading
 * stdout and stderr to their end, all at once (in helper tasks), so no
 * size of any of them can deadlock; then waits for the child to exit
 * (wf_process_wait gives its returncode at once afterwards). *out / *err
 * (either pointer may be NULL: that output is read and dropped) get a
 * malloc'd, NUL-terminated buffer (the NUL not counted in *outlen /
 * *errlen, which may be NULL) that the caller frees, or NULL when that
 * stream is not a pipe. stdin that is a pipe is closed even with no
 * input. timeout_ms bounds the whole call. Codes:
 *   0
 *   -EPIPE, -ECONNRESET  the child closed its stdin before taking all of
 *               the input; everything else was done as for 0 (outputs
 *               collected, child waited for): the child's SIGPIPE, if it
 *               had one, is its own, weft's writer gets a code
 *   WF_EINVAL   stale handle; input given (n > 0) but stdin is no pipe;
 *               a pipe closed by the program already (a stale stream)
 *   WF_ETIMEDOUT  the child is left running; what was read so far stays
 *               in the streams' buffers (read it with wf_stream_* calls),
 *               how much input went is not known
 *   WF_ECANCELED  as WF_ETIMEDOUT, but the child is killed (SIGKILL)
 *               unless WF_PROCESS_KEEP_ON_CANCEL
 *   WF_EBUSY    another task reads stdout or stderr at the same time
 *   WF_ENOMEM, a read error (-EIO, ...) */
WF_EXTERN int wf_process_communicate(wf_process *p, const void *input, size_t n, void **out,
				     size_t *outlen, void **err, size_t *errlen,
				     uint64_t timeout_ms);

/* [any] Sends signal sig to the child (through its pidfd: never another
 * process). 0; -ESRCH once the child was reaped (asyncio's
 * ProcessLookupError); -EINVAL for a bad signal number; -EPERM;
 * WF_EINVAL for a stale handle. A child that exited but is not reaped yet
 * takes the signal harmlessly (0). */
WF_EXTERN int wf_process_send_signal(wf_process *p, int sig);
/* [any] send_signal with SIGTERM / SIGKILL. */
WF_EXTERN int wf_process_terminate(wf_process *p);
WF_EXTERN int wf_process_kill(wf_process *p);

/* [any] Frees the process: the handle becomes stale, its pipes are closed
 * (unsent stdin data is dropped), waiting calls return WF_ECLOSED. A
 * child still running is left running and reaped when it exits (see
 * "Lifetime"). 0 or WF_EINVAL (stale handle). */
WF_EXTERN int wf_process_free(wf_process *p);

#ifdef __cplusplus
}
#endif

#endif
