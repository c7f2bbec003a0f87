/*
 * Asynchronous files: every system call runs on a thread of the default
 * executor pool, as one request; the task awaits the request's future.
 *
 * A request is one allocation: its header, then the bytes it reads or
 * writes, then copies of its paths. Nothing in it points into the caller's
 * memory, so a caller that stops waiting (a deadline, a cancellation) can
 * leave it to the pool: the executor's drop function (executor.h) frees it,
 * and whatever it produced, once the call ends, or at once if the call
 * never started. Who frees a request is decided by the future: if the
 * pool's outcome reaches the task (wf_future_cancel finds the future
 * complete with a value), the task frees it; otherwise drop does, exactly
 * once. The first case also covers a call that ends between the timeout
 * and the cancel.
 *
 * Files. A wf_file holds a reference count: the handle's, and one per
 * request using the descriptor (in flight or abandoned). Close makes the
 * handle stale and drops the handle's reference; whoever drops the last
 * one closes the descriptor. So an abandoned pread never reads a
 * descriptor number that has since been closed and given to another file.
 * When close finds itself last, the close(2) runs on the pool as a request
 * of its own (it may flush); otherwise the last request's drop closes it on
 * its pool thread, or, if a task was last (a request racing the close), on
 * that task's worker.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weft.h"

#include "runtime/handle.h"
#include "runtime/internal.h"

enum fs_op {
	OP_OPEN,
	OP_READ,
	OP_WRITE,
	OP_FSYNC,
	OP_CLOSE,
	OP_STAT,
	OP_RENAME,
	OP_UNLINK,
	OP_MKDIR,
	OP_RMDIR,
	OP_READ_FILE,
	OP_WRITE_FILE,
};

struct wf_file {
	wf__hdr hdr;
	/* The slab's free list link goes here (handle.h), off the lock, as
	 * in udp.c. */
	void *free_link;
	wf__spinlock sl; /* guards refs and the close */
	int fd;
	unsigned refs; /* the handle's, and one per request using fd */
	bool keep;     /* what the close's wf__hdr_bump said */
};

static wf__htype file_type = WF__HTYPE_INIT(WF__K_FILE, struct wf_file);

typedef struct fs_req {
	int op;
	int flags;
	mode_t mode;
	int fd;               /* OP_CLOSE: the descriptor */
	struct wf_file *file; /* a reference, or NULL */
	int64_t offset;
	size_t n;             /* bytes at data */
	size_t max;           /* OP_READ_FILE's */
	const char *path, *path2;
	ssize_t res;          /* the outcome: >= 0, or -errno / WF_E* */
	struct stat st;
	void *out;            /* OP_READ_FILE's buffer */
	size_t outlen;
	unsigned char data[]; /* n bytes, then the paths */
} fs_req;

/* ---- files ------------------------------------------------------------- */

/* The file a live handle names, with a reference, or NULL. */
static struct wf_file *file_get(const wf_file *h)
{
	struct wf_file *f = wf__handle_get(h, WF__K_FILE);
	if (f == NULL)
		return NULL;
	wf__spin_lock(&f->sl);
	/* Again under the lock: close decides staleness under it. */
	if (__atomic_load_n(&f->hdr.gen, __ATOMIC_RELAXED) != (uint32_t)((uintptr_t)h >> 32)) {
		wf__spin_unlock(&f->sl);
		return NULL;
	}
	f->refs++;
	wf__spin_unlock(&f->sl);
	return f;
}

/* Drops a reference. The last one gives the object back and returns its
 * descriptor, which the caller closes; else -1. */
static int file_put(struct wf_file *f)
{
	wf__spin_lock(&f->sl);
	bool last = --f->refs == 0;
	wf__spin_unlock(&f->sl);
	if (!last)
		return -1;
	int fd = f->fd;
	wf__hobj_recycle(&file_type, f, f->keep);
	return fd;
}

/* ---- requests ---------------------------------------------------------- */

/* A request with room for n bytes of data and copies of the paths (either
 * may be NULL), or NULL when out of memory. */
static fs_req *req_new(int op, size_t n, const char *path, const char *path2)
{
	size_t l1 = path != NULL ? strlen(path) + 1 : 0;
	size_t l2 = path2 != NULL ? strlen(path2) + 1 : 0;
	if (n > SIZE_MAX - sizeof(fs_req) - l1 - l2)
		return NULL;
	/* Not calloc: a read's buffer would be zeroed for nothing. */
	fs_req *r = malloc(sizeof(fs_req) + n + l1 + l2);
	if (r == NULL)
		return NULL;
	memset(r, 0, sizeof(*r));
	r->op = op;
	r->fd = -1;
	r->n = n;
	r->res = WF_EIO; /* never seen: every call sets it */
	char *p = (char *)r->data + n;
	if (path != NULL) {
		memcpy(p, path, l1);
		r->path = p;
		p += l1;
	}
	if (path2 != NULL) {
		memcpy(p, path2, l2);
		r->path2 = p;
	}
	return r;
}

static void req_free(fs_req *r)
{
	if (r->file != NULL) {
		int fd = file_put(r->file);
		if (fd >= 0)
			close(fd);
	}
	free(r);
}

/* The executor's drop, and the task's own clean-up when the outcome
 * reached it but the caller gave up: value is r if the call ran, NULL if
 * it never did. What a call that ran produced goes with it. */
static void req_drop(void *arg, void *value)
{
	fs_req *r = arg;
	if (value != NULL) {
		if (r->op == OP_OPEN && r->res >= 0)
			close((int)r->res);
		if (r->op == OP_READ_FILE)
			free(r->out);
	} else if (r->op == OP_CLOSE) {
		/* The close must happen even when the call never ran. */
		close(r->fd);
	}
	req_free(r);
}

static ssize_t neg_errno(void)
{
	return -(ssize_t)errno;
}

/* Writes all n bytes at offset (-1: the file's position). n, the count
 * written before an error if any, or -errno. */
static ssize_t write_all(int fd, const unsigned char *p, size_t n, int64_t offset)
{
	size_t done = 0;
	while (done < n) {
		ssize_t w = offset < 0 ? write(fd, p + done, n - done)
				       : pwrite(fd, p + done, n - done, (off_t)(offset + (int64_t)done));
		if (w < 0) {
			if (errno == EINTR)
				continue;
			return done > 0 ? (ssize_t)done : neg_errno();
		}
		if (w == 0) /* no progress and no error: do not spin */
			return done > 0 ? (ssize_t)done : WF_EIO;
		done += (size_t)w;
	}
	return (ssize_t)done;
}

static ssize_t read_file(fs_req *r)
{
	int fd;
	do
		fd = open(r->path, O_RDONLY | O_CLOEXEC);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return neg_errno();
	struct stat st;
	if (fstat(fd, &st) != 0) {
		ssize_t e = neg_errno();
		close(fd);
		return e;
	}
	if (S_ISDIR(st.st_mode)) {
		close(fd);
		return -EISDIR;
	}
	size_t max = r->max < (size_t)SSIZE_MAX - 1 ? r->max : (size_t)SSIZE_MAX - 1;
	if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > max) {
		close(fd);
		return WF_ELIMIT;
	}
	/* Reading max + 1 bytes proves the file is over max. The size is a
	 * hint only: a file may grow meanwhile, and /proc's say 0. */
	size_t limit = max + 1;
	size_t cap = S_ISREG(st.st_mode) ? (size_t)st.st_size + 1 : 4096;
	if (cap > limit)
		cap = limit;
	unsigned char *buf = malloc(cap + 1);
	size_t len = 0;
	ssize_t rc = 0;
	while (buf != NULL) {
		if (len == cap) {
			if (cap == limit) {
				rc = WF_ELIMIT;
				break;
			}
			size_t ncap = cap <= limit / 2 ? cap * 2 : limit;
			unsigned char *nb = realloc(buf, ncap + 1);
			if (nb == NULL)
				break;
			buf = nb;
			cap = ncap;
		}
		ssize_t got = read(fd, buf + len, cap - len);
		if (got < 0) {
			if (errno == EINTR)
				continue;
			rc = neg_errno();
			break;
		}
		if (got == 0) {
			buf[len] = '\0';
			r->out = buf;
			r->outlen = len;
			close(fd);
			return 0;
		}
		len += (size_t)got;
	}
	if (rc == 0)
		rc = WF_ENOMEM;
	free(buf);
	close(fd);
	return rc;
}

static ssize_t close_checked(int fd)
{
	/* Linux closes the descriptor even when close fails (EINTR
	 * included): never retry. */
	return close(fd) == 0 ? 0 : neg_errno();
}

static ssize_t write_plain(fs_req *r)
{
	int fd;
	int fl = O_WRONLY | O_CREAT | O_CLOEXEC | ((r->flags & WF_FS_APPEND) ? O_APPEND : O_TRUNC);
	do
		fd = open(r->path, fl, 0666);
	while (fd < 0 && errno == EINTR);
	if (fd < 0)
		return neg_errno();
	ssize_t w = write_all(fd, r->data, r->n, -1);
	ssize_t c = close_checked(fd);
	if (w < 0)
		return w;
	if ((size_t)w < r->n)
		return -ENOSPC; /* short without an error of its own */
	return c;
}

static ssize_t write_atomic(fs_req *r)
{
	static uint64_t counter;
	const char *path = r->path;
	size_t plen = strlen(path);
	if (plen == 0)
		return -ENOENT;
	if (path[plen - 1] == '/')
		return -EISDIR;
	const char *slash = strrchr(path, '/');
	size_t dlen = slash != NULL ? (size_t)(slash - path) + 1 : 0;
	const char *base = path + dlen;
	/* dir/.base.<pid>.<n>.tmp */
	size_t cap = plen + 64;
	char *tmp = malloc(cap);
	if (tmp == NULL)
		return WF_ENOMEM;

	struct stat old;
	bool had = stat(path, &old) == 0;
	if (had && S_ISDIR(old.st_mode)) {
		free(tmp);
		return -EISDIR;
	}
	int fd = -1;
	for (int tries = 0; tries < 100 && fd < 0; tries++) {
		uint64_t k = __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
		snprintf(tmp, cap, "%.*s.%s.%ld.%llu.tmp", (int)dlen, path, base, (long)getpid(),
			 (unsigned long long)k);
		/* O_EXCL: never write into a file someone else made; 0666 so
		 * that the umask applies as it would to a plain create. */
		fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
		if (fd < 0 && errno != EEXIST && errno != EINTR) {
			ssize_t e = neg_errno();
			free(tmp);
			return e;
		}
	}
	if (fd < 0) {
		free(tmp);
		return -EEXIST;
	}
	ssize_t rc = 0;
	if (had && fchmod(fd, old.st_mode & 07777) != 0)
		rc = neg_errno();
	if (rc == 0) {
		ssize_t w = write_all(fd, r->data, r->n, -1);
		if (w < 0)
			rc = w;
		else if ((size_t)w < r->n)
			rc = -ENOSPC;
	}
	/* Without the fsync a crash after the rename could leave an empty
	 * file under the name: the rename reaches the disk first. */
	if (rc == 0 && fsync(fd) != 0)
		rc = neg_errno();
	ssize_t c = close_checked(fd);
	if (rc == 0)
		rc = c;
	if (rc == 0 && rename(tmp, path) != 0)
		rc = neg_errno();
	if (rc != 0)
		unlink(tmp);
	free(tmp);
	return rc;
}

/* The call, on a pool thread. */
static void *req_run(void *arg)
{
	fs_req *r = arg;
	int fd = r->file != NULL ? r->file->fd : r->fd;
	ssize_t res;
	switch (r->op) {
	case OP_OPEN:
		do
			res = open(r->path, r->flags | O_CLOEXEC, r->mode);
		while (res < 0 && errno == EINTR);
		break;
	case OP_READ:
		do
			res = r->offset < 0 ? read(fd, r->data, r->n)
					    : pread(fd, r->data, r->n, (off_t)r->offset);
		while (res < 0 && errno == EINTR);
		break;
	case OP_WRITE:
		r->res = write_all(fd, r->data, r->n, r->offset);
		return r;
	case OP_FSYNC:
		res = fsync(fd);
		break;
	case OP_CLOSE:
		r->res = close_checked(fd);
		return r;
	case OP_STAT:
		res = stat(r->path, &r->st);
		break;
	case OP_RENAME:
		res = rename(r->path, r->path2);
		break;
	case OP_UNLINK:
		res = unlink(r->path);
		break;
	case OP_MKDIR:
		res = mkdir(r->path, r->mode);
		break;
	case OP_RMDIR:
		res = rmdir(r->path);
		break;
	case OP_READ_FILE:
		r->res = read_file(r);
		return r;
	case OP_WRITE_FILE:
		r->res = (r->flags & WF_FS_ATOMIC) ? write_atomic(r) : write_plain(r);
		return r;
	default:
		res = -1;
		errno = EINVAL;
		break;
	}
	r->res = res < 0 ? neg_errno() : res;
	return r;
}

/* Runs r on the default pool and waits up to timeout_ms. 0: the call ran
 * and r is the caller's again (outcome in r->res). Anything else: r is
 * gone (freed, or left to the pool, which frees it). timeout_ms 0 runs
 * nothing, unless `always` (a close must happen). */
static int req_submit_wait(fs_req *r, uint64_t timeout_ms, bool always)
{
	if (timeout_ms == 0 && !always) {
		req_free(r);
		return WF_ETIMEDOUT;
	}
	wf_call_opts opts = {.drop = req_drop};
	wf_future *fut;
	int rc = wf_run_in_executor_ex(req_run, r, &opts, &fut);
	if (rc != 0) {
		/* A refused submission leaves r with us; drop never runs. */
		if (r->op == OP_CLOSE)
			close(r->fd);
		req_free(r);
		return rc;
	}
	void *value = NULL;
	rc = wf_await_timeout(fut, &value, timeout_ms);
	if (rc != 0) {
		/* Gave up (or the pool was shut down under the call, which
		 * dropped r already). If the call finished before the cancel,
		 * its outcome is ours to drop; if not, drop gets it. */
		if (wf_future_cancel(fut) == WF_EALREADY && wf_future_result(fut, &value) == 0)
			req_drop(r, value);
	}
	wf_future_release(fut);
	return rc;
}

/* The file named by h with a reference, for a request on it. */
static int file_req(wf_file *h, int op, size_t n, fs_req **out)
{
	struct wf_file *f = file_get(h);
	if (f == NULL)
		return WF_EINVAL;
	fs_req *r = req_new(op, n, NULL, NULL);
	if (r == NULL) {
		int fd = file_put(f);
		if (fd >= 0)
			close(fd);
		return WF_ENOMEM;
	}
	r->file = f;
	*out = r;
	return 0;
}

/* ---- open files --------------------------------------------------------- */

int wf_file_open(const char *path, int flags, mode_t mode, uint64_t timeout_ms, wf_file **out)
{
	if (out == NULL)
		return WF_EINVAL;
	*out = NULL;
	if (path == NULL)
		return WF_EINVAL;
	if (!wf__in_task())
		return WF_ENOTTASK;
	fs_req *r = req_new(OP_OPEN, 0, path, NULL);
	if (r == NULL)
		return WF_ENOMEM;
	r->flags = flags;
	r->mode = mode;
	int rc = req_submit_wait(r, timeout_ms, false);
	if (rc != 0)
		return rc;
	int fd = (int)r->res;
	rc = fd < 0 ? fd : 0;
	req_free(r);
	if (rc != 0)
		return rc;
	struct wf_file *f = wf__hobj_alloc(&file_type);
	if (f == NULL) {
		close(fd);
		return WF_ENOMEM;
	}
	/* wf__hobj_alloc zeroed it (an unlocked lock) and armed its gen. */
	f->fd = fd;
	f->refs = 1;
	*out = wf__handle_of(f);
	return 0;
}

ssize_t wf_file_read(wf_file *h, void *buf, size_t n, int64_t offset, uint64_t timeout_ms)
{
	if (!wf__in_task())
		return WF_ENOTTASK;
	if ((buf == NULL && n > 0) || offset < -1 || n > (size_t)SSIZE_MAX)
		return WF_EINVAL;
	fs_req *r;
	int rc = file_req(h, OP_READ, n, &r);
	if (rc != 0)
		return rc;
	if (n == 0) {
		req_free(r);
		return 0;
	}
	r->offset = offset;
	rc = req_submit_wait(r, timeout_ms, false);
	if (rc != 0)
		return rc;
	ssize_t res = r->res;
	/* Copied only now that the call is over: buf is never written
	 * after a return. */
	if (res > 0)
		memcpy(buf, r->data, (size_t)res);
	req_free(r);
	return res;
}

ssize_t wf_file_write(wf_file *h, const void *buf, size_t n, int64_t offset, uint64_t timeout_ms)
{
	if (!wf__in_task())
		return WF_ENOTTASK;
	if ((buf == NULL && n > 0) || offset < -1 || n > (size_t)SSIZE_MAX)
		return WF_EINVAL;
	fs_req *r;
	int rc = file_req(h, OP_WRITE, n, &r);
	if (rc != 0)
		return rc;
	if (n == 0) {
		req_free(r);
		return 0;
	}
	r->offset = offset;
	/* Copied first: an abandoned write must not read buf later. */
	memcpy(r->data, buf, n);
	rc = req_submit_wait(r, timeout_ms, false);
	if (rc != 0)
		return rc;
	ssize_t res = r->res;
	req_free(r);
	return res;
}

int wf_file_fsync(wf_file *h, uint64_t timeout_ms)
{
	if (!wf__in_task())
		return WF_ENOTTASK;
	fs_req *r;
	int rc = file_req(h, OP_FSYNC, 0, &r);
	if (rc != 0)
		return rc;
	rc = req_submit_wait(r, timeout_ms, false);
	if (rc != 0)
		return rc;
	rc = (int)r->res;
	req_free(r);
	return rc;
}

int wf_file_close(wf_file *h, uint64_t timeout_ms)
{
	struct wf_file *f = wf__handle_get(h, WF__K_FILE);
	if (f == NULL)
		return WF_EINVAL;
	wf__spin_lock(&f->sl);
	if (__atomic_load_n(&f->hdr.gen, __ATOMIC_RELAXED) != (uint32_t)((uintptr_t)h >> 32)) {
		wf__spin_unlock(&f->sl);
		return WF_EINVAL;
	}
	/* Stale from here on; the slot is reused only once the last
	 * reference is dropped (wf__hobj_recycle in file_put). */
	f->keep = wf__hdr_bump(&f->hdr);
	wf__spin_unlock(&f->sl);
	int fd = file_put(f);
	if (fd < 0)
		return 0; /* the last request using it closes it */
	if (!wf__in_task())
		return close(fd) == 0 ? 0 : -errno;
	fs_req *r = req_new(OP_CLOSE, 0, NULL, NULL);
	if (r == NULL)
		return close(fd) == 0 ? 0 : -errno;
	r->fd = fd;
	int rc = req_submit_wait(r, timeout_ms, true);
	if (rc != 0)
		return rc;
	rc = (int)r->res;
	req_free(r);
	return rc;
}

int wf_file_fd(const wf_file *h)
{
	struct wf_file *f = wf__handle_get(h, WF__K_FILE);
	if (f == NULL)
		return WF_EINVAL;
	int fd = f->fd;
	/* Read before the gen check: a file closed meanwhile is refused. */
	if (__atomic_load_n(&f->hdr.gen, __ATOMIC_ACQUIRE) != (uint32_t)((uintptr_t)h >> 32))
		return WF_EINVAL;
	return fd;
}

/* ---- paths ------------------------------------------------------------- */

/* One request on one or two paths: 0 or its -errno. */
static int path_call(int op, const char *path, const char *path2, mode_t mode, struct stat *st,
		     uint64_t timeout_ms)
{
	if (path == NULL || (op == OP_RENAME && path2 == NULL) || (op == OP_STAT && st == NULL))
		return WF_EINVAL;
	if (!wf__in_task())
		return WF_ENOTTASK;
	fs_req *r = req_new(op, 0, path, path2);
	if (r == NULL)
		return WF_ENOMEM;
	r->mode = mode;
	int rc = req_submit_wait(r, timeout_ms, false);
	if (rc != 0)
		return rc;
	rc = (int)r->res;
	if (rc == 0 && st != NULL)
		*st = r->st;
	req_free(r);
	return rc;
}

int wf_fs_stat(const char *path, struct stat *st, uint64_t timeout_ms)
{
	return path_call(OP_STAT, path, NULL, 0, st, timeout_ms);
}

int wf_fs_rename(const char *oldpath, const char *newpath, uint64_t timeout_ms)
{
	return path_call(OP_RENAME, oldpath, newpath, 0, NULL, timeout_ms);
}

int wf_fs_unlink(const char *path, uint64_t timeout_ms)
{
	return path_call(OP_UNLINK, path, NULL, 0, NULL, timeout_ms);
}

int wf_fs_mkdir(const char *path, mode_t mode, uint64_t timeout_ms)
{
	return path_call(OP_MKDIR, path, NULL, mode, NULL, timeout_ms);
}

int wf_fs_rmdir(const char *path, uint64_t timeout_ms)
{
	return path_call(OP_RMDIR, path, NULL, 0, NULL, timeout_ms);
}

/* ---- whole files --------------------------------------------------------- */

int wf_fs_read_file(const char *path, size_t max, void **out, size_t *len, uint64_t timeout_ms)
{
	if (out != NULL)
		*out = NULL;
	if (len != NULL)
		*len = 0;
	if (path == NULL || out == NULL || len == NULL)
		return WF_EINVAL;
	if (!wf__in_task())
		return WF_ENOTTASK;
	fs_req *r = req_new(OP_READ_FILE, 0, path, NULL);
	if (r == NULL)
		return WF_ENOMEM;
	r->max = max;
	int rc = req_submit_wait(r, timeout_ms, false);
	if (rc != 0)
		return rc;
	rc = (int)r->res;
	if (rc == 0) {
		*out = r->out;
		*len = r->outlen;
	}
	req_free(r);
	return rc;
}

int wf_fs_write_file(const char *path, const void *data, size_t n, int flags, uint64_t timeout_ms)
{
	if (path == NULL || (data == NULL && n > 0) ||
	    (flags & ~(WF_FS_APPEND | WF_FS_ATOMIC)) != 0 ||
	    (flags & (WF_FS_APPEND | WF_FS_ATOMIC)) == (WF_FS_APPEND | WF_FS_ATOMIC))
		return WF_EINVAL;
	if (!wf__in_task())
		return WF_ENOTTASK;
	fs_req *r = req_new(OP_WRITE_FILE, n, path, NULL);
	if (r == NULL)
		return WF_ENOMEM;
	r->flags = flags;
	if (n > 0)
		memcpy(r->data, data, n);
	int rc = req_submit_wait(r, timeout_ms, false);
	if (rc != 0)
		return rc;
	rc = (int)r->res;
	req_free(r);
	return rc;
}
