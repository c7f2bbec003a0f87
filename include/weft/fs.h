/*
 * weft: asynchronous files (aiofiles' calls); included by weft.h.
 *
 * Files cannot be waited on with epoll (a regular file is always
 * "ready", and its reads still block on the disk), so every call here
 * runs its system calls on a thread of the default executor pool
 * (include/weft/executor.h) and suspends the calling task meanwhile; its
 * worker runs other tasks. Why the executor pool and not libuv's uv_fs_*
 * on the worker's loop: see "Backend" below.
 *
 * Conventions (as weft/io.h's):
 *  - every call is [task] (WF_ENOTTASK from a plain thread) unless it says
 *    otherwise, and takes timeout_ms: WF_FOREVER waits as long as it takes;
 *    0 never waits, so it returns WF_ETIMEDOUT at once without starting
 *    anything;
 *  - errors are the OS's codes as -errno (-ENOENT, -EEXIST, -EISDIR,
 *    -ENOTDIR, -EACCES, -ENOSPC, ...), or WF_EINVAL, WF_ENOMEM,
 *    WF_ETIMEDOUT, WF_ECANCELED, WF_ELIMIT, WF_ESHUTDOWN (the default
 *    pool was shut down under the call);
 *  - a wf_file is a generation-tagged handle: once wf_file_close has run,
 *    every call given the handle returns WF_EINVAL, even when a new file
 *    got its memory.
 *
 * Timeouts and cancellation. A system call already running on a pool
 * thread cannot be interrupted. When the timeout passes or the task is
 * cancelled, the call returns WF_ETIMEDOUT or WF_ECANCELED at once, and
 * the request goes on in the background and cleans up after itself: the
 * operation may have taken effect or may still take effect (a write may
 * land, a rename may happen, a file may be created), but nothing it
 * produced reaches the caller (a file opened in the background is closed,
 * a whole-file buffer is freed). A request that has not started by then
 * never runs. Memory the caller passed is never touched after the call
 * returned: reads go to an internal buffer and are copied out once they
 * are complete, and writes copy the caller's bytes in before they start
 * (the copy costs about as much as the kernel's own copy from or to the
 * page cache: see "Backend"); paths are copied too. A file closed while
 * background requests still use it keeps its descriptor open until the
 * last of them ends, so they never reach a descriptor that has since been
 * reused for another file.
 *
 * Backend: the executor pool, not libuv's uv_fs_* on the worker's loop,
 * which was about six times slower on weft-bench's fs_rw (16 tasks, 4 KiB
 * preads and pwrites of a cached file): docs/design.md, "Files", has the
 * figures and why.
 *
 * The internal buffer's cost: nothing measurable for small reads (4 KiB:
 * fs_rw and fs_rw_direct, the same work read straight into the task's
 * buffer, are within noise of each other), but about twice the time of a
 * plain pread for a large one (8 MiB: a fresh buffer faulted in, and a
 * second copy). Read big files in pieces of a MiB or so, or whole with
 * wf_fs_read_file, whose buffer is handed over without a copy.
 */
#ifndef WEFT_FS_H
#define WEFT_FS_H

#include <sys/stat.h>
#include <sys/types.h>

#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

/* An open file. Opaque; freed by wf_file_close. */
typedef struct wf_file wf_file;

/* ------------------------------------------------------------------------
 * Open files
 * ---------------------------------------------------------------------- */

/* [task] open(2): flags and mode as open's (O_RDONLY, O_WRONLY | O_CREAT |
 * O_TRUNC, O_APPEND, O_EXCL, ...); O_CLOEXEC is always added. The caller
 * owns *out and gives it back with wf_file_close. 0 and *out, or -errno
 * (-ENOENT, -EEXIST with O_EXCL, -EISDIR when writing a directory,
 * -ENOTDIR, -EACCES, ...), WF_EINVAL, WF_ETIMEDOUT, WF_ECANCELED (a file
 * opened in the background is closed). */
WF_EXTERN int wf_file_open(const char *path, int flags, mode_t mode, uint64_t timeout_ms,
			   wf_file **out);

/* [task] Reads up to n bytes into buf at offset (pread(2)), or at the
 * file's position when offset is -1 (read(2), which moves the position).
 * The count: fewer than n only at the end of the file (or, for a file that
 * is not a regular one, what read(2) gave), 0 at the end. -errno
 * (-EISDIR, -EBADF for a file opened write-only), WF_EINVAL (offset below
 * -1, buf NULL with n > 0, stale handle), WF_ENOMEM (the internal buffer
 * is n bytes), WF_ETIMEDOUT, WF_ECANCELED: then buf is left as it was,
 * and stays so, though the position may still move. */
WF_EXTERN ssize_t wf_file_read(wf_file *f, void *buf, size_t n, int64_t offset,
			       uint64_t timeout_ms);

/* [task] Writes all n bytes from buf at offset (pwrite(2)), or at the
 * file's position when offset is -1 (at its end for a file opened with
 * O_APPEND). n, or the count written before an error if some were (as
 * write(2)), or -errno (-ENOSPC, -EBADF for a file opened read-only),
 * WF_EINVAL, WF_ENOMEM, WF_ETIMEDOUT, WF_ECANCELED (the bytes, copied
 * already, may still be written). */
WF_EXTERN ssize_t wf_file_write(wf_file *f, const void *buf, size_t n, int64_t offset,
				uint64_t timeout_ms);

/* [task] fsync(2). 0 or -errno, WF_EINVAL, WF_ETIMEDOUT, WF_ECANCELED. */
WF_EXTERN int wf_file_fsync(wf_file *f, uint64_t timeout_ms);

/* [any] Closes f and frees it: the handle is stale as soon as the call
 * begins, whatever it returns. The descriptor is closed on a pool thread
 * (close(2) may flush, on NFS say) once no request uses it any more. 0,
 * close's -errno, WF_EINVAL (a stale handle), WF_ETIMEDOUT / WF_ECANCELED
 * (the close goes on in the background). From a plain thread it closes
 * the descriptor on that thread. */
WF_EXTERN int wf_file_close(wf_file *f, uint64_t timeout_ms);

/* [any] The descriptor, for fstat, flock and the like (do not close it),
 * or WF_EINVAL. */
WF_EXTERN int wf_file_fd(const wf_file *f);

/* ------------------------------------------------------------------------
 * Paths
 * ---------------------------------------------------------------------- */

/* [task] stat(2) of path (following symbolic links) into *st. 0 or
 * -errno, WF_EINVAL, WF_ETIMEDOUT, WF_ECANCELED (*st left as it was). */
WF_EXTERN int wf_fs_stat(const char *path, struct stat *st, uint64_t timeout_ms);
/* [task] rename(2): replaces newpath atomically if it exists. */
WF_EXTERN int wf_fs_rename(const char *oldpath, const char *newpath, uint64_t timeout_ms);
/* [task] unlink(2). */
WF_EXTERN int wf_fs_unlink(const char *path, uint64_t timeout_ms);
/* [task] mkdir(2); mode is masked by the umask. */
WF_EXTERN int wf_fs_mkdir(const char *path, mode_t mode, uint64_t timeout_ms);
/* [task] rmdir(2): the directory must be empty (-ENOTEMPTY). */
WF_EXTERN int wf_fs_rmdir(const char *path, uint64_t timeout_ms);

/* ------------------------------------------------------------------------
 * Whole files in one call (aiofiles' `async with open(...) as f: f.read()`)
 * ---------------------------------------------------------------------- */

/* [task] Reads the whole file at path into a new buffer: *out (freed by
 * the caller with free(); NUL-terminated, the NUL not counted) and *len.
 * Open, read and close all happen in one request. 0; WF_ELIMIT if the file
 * holds more than max bytes (nothing is returned); -errno (-ENOENT,
 * -EISDIR, ...), WF_EINVAL, WF_ENOMEM, WF_ETIMEDOUT, WF_ECANCELED (the
 * buffer read in the background is freed). *out is NULL and *len 0 on
 * every error. */
WF_EXTERN int wf_fs_read_file(const char *path, size_t max, void **out, size_t *len,
			      uint64_t timeout_ms);

/* wf_fs_write_file's flags. */
enum wf_fs_write_flags {
	/* 0: create path (mode 0666 less the umask) or truncate it, then
	 * write. A reader may see the file empty or half-written meanwhile,
	 * and a failure (-ENOSPC) leaves it so. */
	WF_FS_TRUNCATE = 0,
	/* Create path if needed and append the bytes (O_APPEND: each call's
	 * bytes land together at the end, even with other writers). */
	WF_FS_APPEND = 1 << 0,
	/* Atomic replace: write a temporary file in the same directory
	 * (".<name>.<pid>.<n>.tmp"), fsync it, then rename it over path. A
	 * reader sees the old contents or the new ones, never a mix, and a
	 * failure leaves the old file untouched and removes the temporary.
	 * The new file gets the old one's permission bits (not its owner;
	 * 0666 less the umask if there was none). The directory itself is
	 * not fsynced: after a crash the rename may be lost, never half done.
	 * Not with WF_FS_APPEND (WF_EINVAL). */
	WF_FS_ATOMIC = 1 << 1,
};

/* [task] Writes n bytes from data as the whole of path (or at its end,
 * with WF_FS_APPEND) in one request: open, write, close (fsync and rename
 * with WF_FS_ATOMIC). The bytes are copied first, so data may go as soon
 * as the call returns, whatever it returns. 0 or -errno (-ENOENT: no such
 * directory, -EISDIR, -ENOSPC, ...), WF_EINVAL (unknown flags, APPEND with
 * ATOMIC), WF_ENOMEM, WF_ETIMEDOUT, WF_ECANCELED (the write may still
 * happen, whole in the atomic case). */
WF_EXTERN int wf_fs_write_file(const char *path, const void *data, size_t n, int flags,
			       uint64_t timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
