/*
 * fs_rw: N file operations from 16 tasks, half 4 KiB pwrites and half
 * 4 KiB preads (each task alternates, on blocks of its own 1 MiB region of
 * one 16 MiB temporary file, so reads return what the task wrote); check:
 * the operations that moved 4096 bytes, N. The file is made and filled
 * before the clock starts (so it is in the page cache: the figure is the
 * cost of the asynchronous call, not of the disk), and removed after.
 *
 * Two more workloads, for the design's measurement (docs/design.md,
 * "Files"); the same work through other paths:
 *   fs_rw_uv     libuv's uv_fs_read / uv_fs_write on the calling worker's
 *                loop: libuv's thread pool (UV_THREADPOOL_SIZE, default 4
 *                threads for the process), the completion callback on the
 *                worker's thread, which wakes the task. Through an internal
 *                buffer, as weft's calls do, so that only the backend
 *                differs;
 *   fs_rw_direct weft's executor with pread / pwrite into and out of the
 *                task's own buffer (wf_to_thread): no internal buffer, no
 *                request of fs.c's: what the copy and fs.c's layer cost.
 */
#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <uv.h>

#include "bench.h"
#include "runtime/internal.h"
#include "runtime/waiting.h"

#define FS_TASKS 16
#define FS_BLOCK 4096
#define FS_REGION_BLOCKS 256 /* 1 MiB per task */

enum fs_path { PATH_WEFT, PATH_UV, PATH_DIRECT };

struct fs_shared {
	enum fs_path path;
	wf_file *f; /* PATH_WEFT */
	int fd;     /* the others */
};

struct fs_worker {
	struct fs_shared *sh;
	unsigned index;
	uint64_t ops;
	uint64_t ok;
	int err;
};

/* ---- the libuv path ------------------------------------------------------- */

typedef struct uv_req {
	uv_fs_t fs;
	wf__spinlock sl;
	wf__waiter *waiter;
	bool done;
	ssize_t res;
	char buf[FS_BLOCK];
} uv_req;

static void uv_done(uv_fs_t *fs)
{
	uv_req *r = fs->data;
	ssize_t res = fs->result;
	uv_fs_req_cleanup(fs);
	wf__spin_lock(&r->sl);
	r->res = res;
	r->done = true;
	wf__waiter *w = r->waiter;
	r->waiter = NULL;
	if (w != NULL)
		wf__waiter_fire(w, 0, NULL);
	wf__spin_unlock(&r->sl);
}

/* One 4 KiB read or write on the worker's loop, waited for (no deadline:
 * the bench neither times out nor cancels). */
static ssize_t uv_rw(int fd, bool write, void *buf, int64_t off)
{
	uv_req *r = malloc(sizeof(*r));
	if (r == NULL)
		return WF_ENOMEM;
	memset(r, 0, offsetof(uv_req, buf));
	r->fs.data = r;
	if (write)
		memcpy(r->buf, buf, FS_BLOCK);
	uv_buf_t b = uv_buf_init(r->buf, FS_BLOCK);
	uv_loop_t *loop = wf__current_loop();
	int rc = write ? uv_fs_write(loop, &r->fs, fd, &b, 1, off, uv_done)
		       : uv_fs_read(loop, &r->fs, fd, &b, 1, off, uv_done);
	if (rc != 0) {
		free(r);
		return rc;
	}
	wf__spin_lock(&r->sl);
	if (!r->done) {
		wf__waiting wg = {.lock = &r->sl,
				  .slot = &r->waiter,
				  .what = "uv fs",
				  .obj = r,
				  .deadline = WF__NO_DEADLINE};
		rc = wf__wait_on(&wg);
		/* The callback may still hold the lock. */
		wf__spin_lock(&r->sl);
	}
	wf__spin_unlock(&r->sl);
	ssize_t res = rc != 0 ? rc : r->res;
	if (!write && res > 0)
		memcpy(buf, r->buf, (size_t)res);
	free(r);
	return res;
}

/* ---- the direct executor path ----------------------------------------------- */

struct direct_call {
	int fd;
	bool write;
	void *buf;
	int64_t off;
};

static void *direct_run(void *arg)
{
	struct direct_call *c = arg;
	ssize_t n = c->write ? pwrite(c->fd, c->buf, FS_BLOCK, c->off)
			     : pread(c->fd, c->buf, FS_BLOCK, c->off);
	return (void *)(intptr_t)(n < 0 ? -errno : n);
}

static ssize_t direct_rw(int fd, bool write, void *buf, int64_t off)
{
	struct direct_call c = {.fd = fd, .write = write, .buf = buf, .off = off};
	void *v;
	int rc = wf_to_thread(direct_run, &c, &v);
	return rc != 0 ? rc : (ssize_t)(intptr_t)v;
}

/* ---- the workload ------------------------------------------------------------ */

static ssize_t one_op(struct fs_shared *sh, bool write, void *buf, int64_t off)
{
	switch (sh->path) {
	case PATH_UV:
		return uv_rw(sh->fd, write, buf, off);
	case PATH_DIRECT:
		return direct_rw(sh->fd, write, buf, off);
	default:
		return write ? wf_file_write(sh->f, buf, FS_BLOCK, off, WF_FOREVER)
			     : wf_file_read(sh->f, buf, FS_BLOCK, off, WF_FOREVER);
	}
}

static void *fs_task(void *arg)
{
	struct fs_worker *w = arg;
	unsigned char out[FS_BLOCK], in[FS_BLOCK];
	int64_t base = (int64_t)w->index * FS_REGION_BLOCKS * FS_BLOCK;
	uint64_t last = 0;
	for (uint64_t i = 0; i < w->ops; i++) {
		/* Even: write block i/2; odd: read it back. */
		uint64_t blk = (i / 2) % FS_REGION_BLOCKS;
		int64_t off = base + (int64_t)blk * FS_BLOCK;
		bool write = (i & 1) == 0;
		if (write) {
			last = i;
			memset(out, (int)(w->index + i), sizeof(out));
		}
		ssize_t n = one_op(w->sh, write, write ? out : in, off);
		if (n < 0) {
			w->err = (int)n;
			return NULL;
		}
		if (n == FS_BLOCK && (write || in[FS_BLOCK - 1] == (unsigned char)(w->index + last)))
			w->ok++;
	}
	return NULL;
}

static int run_fs(wf_bench_run *run, enum fs_path path)
{
	char p[] = "/tmp/weft-bench-fs-XXXXXX";
	int fd = mkstemp(p);
	if (fd < 0)
		return -errno;
	/* Untimed: the whole file, so that every block is in the page
	 * cache and reads never hit a hole. */
	static unsigned char zero[1 << 16];
	int rc = 0;
	for (size_t off = 0; off < (size_t)FS_TASKS * FS_REGION_BLOCKS * FS_BLOCK && rc == 0;
	     off += sizeof(zero))
		if (pwrite(fd, zero, sizeof(zero), (off_t)off) != (ssize_t)sizeof(zero))
			rc = -errno;
	struct fs_shared sh = {.path = path, .fd = fd};
	if (rc == 0 && path == PATH_WEFT)
		rc = wf_file_open(p, O_RDWR, 0, WF_FOREVER, &sh.f);
	if (rc != 0) {
		close(fd);
		unlink(p);
		return rc;
	}

	struct fs_worker ws[FS_TASKS];
	wf_task *ts[FS_TASKS];
	wf_bench_clock_start(run);
	for (unsigned i = 0; i < FS_TASKS; i++) {
		ws[i] = (struct fs_worker){.sh = &sh, .index = i,
					   .ops = wf_bench_share(run->n, FS_TASKS, i)};
		ts[i] = wf_spawn(fs_task, &ws[i]);
		if (ts[i] == NULL)
			rc = WF_ENOMEM;
	}
	uint64_t ok = 0;
	for (unsigned i = 0; i < FS_TASKS; i++) {
		if (ts[i] != NULL)
			wf_join(ts[i], NULL);
		ok += ws[i].ok;
		if (ws[i].err != 0 && rc == 0)
			rc = ws[i].err;
	}
	wf_bench_clock_stop(run);
	run->check = ok;
	if (rc != 0)
		fprintf(stderr, "fs_rw: %s (%s)\n", wf_strerror(rc), wf_err_name(rc));
	if (sh.f != NULL)
		wf_file_close(sh.f, WF_FOREVER);
	close(fd);
	unlink(p);
	return rc;
}

static int run_fs_rw(wf_bench_run *run)
{
	return run_fs(run, PATH_WEFT);
}

static int run_fs_rw_uv(wf_bench_run *run)
{
	return run_fs(run, PATH_UV);
}

static int run_fs_rw_direct(wf_bench_run *run)
{
	return run_fs(run, PATH_DIRECT);
}

WF_BENCH_DEFINE(fs_rw, .name = "fs_rw", .default_n = 200000, .fn = run_fs_rw)
WF_BENCH_DEFINE(fs_rw_uv, .name = "fs_rw_uv", .default_n = 200000, .fn = run_fs_rw_uv)
WF_BENCH_DEFINE(fs_rw_direct, .name = "fs_rw_direct", .default_n = 200000,
		.fn = run_fs_rw_direct)
