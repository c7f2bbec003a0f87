/*
 * Files (include/weft/fs.h): positional and sequential reads and writes,
 * whole-file reads and writes (8 MB, the limit, append, atomic replace),
 * the OS's error codes, path calls, many tasks on 4 workers at once,
 * timeouts and cancellations (the caller's buffer is never written after
 * a return, nothing leaks: the process's descriptor count comes back),
 * stale handles; and a pipe and a pty used as weft streams
 * (wf_stream_from_fd).
 *
 * Calls that block for as long as the test wants are made on FIFOs: a
 * read of an empty FIFO, or an open of one for reading with no writer,
 * holds a pool thread until the test writes or opens the other end.
 * Every test works in a directory of its own under /tmp, removed at the
 * end.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <pty.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "rt_check.h"
#include "weft.h"

static char dir[64];

static void make_dir(void)
{
	strcpy(dir, "/tmp/weft-fs-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
}

static int rm_one(const char *p, const struct stat *st, int type, struct FTW *ftw)
{
	return remove(p);
}

static void remove_dir(void)
{
	nftw(dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
}

TestSuite(fs, .init = make_dir, .fini = remove_dir);

static char *path_of(char *buf, size_t cap, const char *name)
{
	snprintf(buf, cap, "%s/%s", dir, name);
	return buf;
}

/* Open descriptors of the process (opendir's own one is not counted). */
static int fd_count(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;
}

/* Waits (up to 5 s) for the descriptor count to be want; the count. */
static int fd_count_settles(int want)
{
	int n = fd_count();
	for (int i = 0; i < 500 && n != want; i++) {
		wf_sleep(10);
		n = fd_count();
	}
	return n;
}

/* Waits (up to 2 s) until a thread of the default pool is not idle (a
 * blocked call holds it), then a little more for it to be in the call. */
static void pool_busy_wait(void)
{
	for (int i = 0; i < 200; i++) {
		wf_pool_stats st;
		if (wf_pool_get_stats(NULL, &st) == 0 && st.threads > st.idle)
			break;
		wf_sleep(10);
	}
	wf_sleep(30);
}

/* Waits (up to 5 s) until every thread of the default pool is idle: an
 * abandoned call has ended and its drop has run. */
static void pool_idle_wait(void)
{
	for (int i = 0; i < 500; i++) {
		wf_pool_stats st;
		if (wf_pool_get_stats(NULL, &st) == 0 && st.threads == st.idle && st.queued == 0)
			return;
		wf_sleep(10);
	}
}

static int dir_entries(void)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return -1;
	int n = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
			n++;
	closedir(d);
	return n;
}

static bool all_bytes(const unsigned char *p, size_t n, unsigned char v)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != v)
			return false;
	return true;
}

/* ---- write, then read back ----------------------------------------------- */

static void *rw_main(void *arg)
{
	char p[128];
	path_of(p, sizeof(p), "rw");
	wf_file *f;
	if (!CHECK_RC(wf_file_open(p, O_RDWR | O_CREAT | O_TRUNC, 0644, WF_FOREVER, &f), 0))
		return NULL;
	int fd = wf_file_fd(f);
	CHECK(fd >= 0);
	CHECK(fcntl(fd, F_GETFD) & FD_CLOEXEC);

	/* Sequential: the position moves. */
	CHECK_EQ(wf_file_write(f, "hello ", 6, -1, WF_FOREVER), 6);
	CHECK_EQ(wf_file_write(f, "world", 5, -1, WF_FOREVER), 5);
	char buf[64] = {0};
	CHECK_EQ(wf_file_read(f, buf, sizeof(buf), -1, WF_FOREVER), 0); /* at the end */
	/* Positional: the position does not move. */
	CHECK_EQ(wf_file_read(f, buf, 5, 6, WF_FOREVER), 5);
	CHECK(memcmp(buf, "world", 5) == 0);
	CHECK_EQ(wf_file_write(f, "HELLO", 5, 0, WF_FOREVER), 5);
	CHECK_EQ(wf_file_write(f, "!", 1, -1, WF_FOREVER), 1);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(wf_file_read(f, buf, sizeof(buf), 0, WF_FOREVER), 12);
	CHECK(strcmp(buf, "HELLO world!") == 0);
	CHECK_EQ(wf_file_read(f, buf, 4, 100, WF_FOREVER), 0); /* past the end */
	CHECK_EQ(wf_file_read(f, buf, 0, 0, WF_FOREVER), 0);
	CHECK_EQ(wf_file_write(f, buf, 0, 0, WF_FOREVER), 0);
	CHECK_RC(wf_file_fsync(f, WF_FOREVER), 0);

	/* A sequential read from the start. */
	CHECK_EQ(lseek(fd, 0, SEEK_SET), 0);
	memset(buf, 0, sizeof(buf));
	CHECK_EQ(wf_file_read(f, buf, 6, -1, WF_FOREVER), 6);
	CHECK_EQ(wf_file_read(f, buf + 6, 60, -1, WF_FOREVER), 6);
	CHECK(strcmp(buf, "HELLO world!") == 0);

	/* Bad arguments. */
	CHECK_EQ(wf_file_read(f, NULL, 1, 0, WF_FOREVER), WF_EINVAL);
	CHECK_EQ(wf_file_read(f, buf, 1, -2, WF_FOREVER), WF_EINVAL);
	CHECK_EQ(wf_file_write(f, NULL, 1, 0, WF_FOREVER), WF_EINVAL);
	CHECK_RC(wf_file_open(NULL, O_RDONLY, 0, WF_FOREVER, &f), WF_EINVAL);
	CHECK(f == NULL);

	struct stat st;
	CHECK_RC(wf_fs_stat(p, &st, WF_FOREVER), 0);
	CHECK_EQ(st.st_size, 12);
	CHECK(S_ISREG(st.st_mode));
	return NULL;
}

Test(fs, write_then_read_back)
{
	run_weft(2, rw_main, NULL);
}

/* ---- stale handles ------------------------------------------------------- */

static void *stale_main(void *arg)
{
	char p[128];
	path_of(p, sizeof(p), "stale");
	wf_file *f, *g;
	if (!CHECK_RC(wf_file_open(p, O_RDWR | O_CREAT, 0644, WF_FOREVER, &f), 0))
		return NULL;
	CHECK_RC(wf_file_close(f, WF_FOREVER), 0);
	char buf[8];
	CHECK_EQ(wf_file_read(f, buf, sizeof(buf), 0, WF_FOREVER), WF_EINVAL);
	CHECK_EQ(wf_file_write(f, "x", 1, 0, WF_FOREVER), WF_EINVAL);
	CHECK_RC(wf_file_fsync(f, WF_FOREVER), WF_EINVAL);
	CHECK_RC(wf_file_fd(f), WF_EINVAL);
	CHECK_RC(wf_file_close(f, WF_FOREVER), WF_EINVAL);
	/* A new file takes the slot: the old handle still names nothing. */
	if (!CHECK_RC(wf_file_open(p, O_RDWR, 0, WF_FOREVER, &g), 0))
		return NULL;
	CHECK(g != f);
	CHECK_EQ(wf_file_write(f, "x", 1, 0, WF_FOREVER), WF_EINVAL);
	CHECK_RC(wf_file_close(f, WF_FOREVER), WF_EINVAL);
	CHECK_EQ(wf_file_write(g, "y", 1, 0, WF_FOREVER), 1);
	CHECK_RC(wf_file_close(g, WF_FOREVER), 0);
	/* Garbage. */
	CHECK_RC(wf_file_fd(NULL), WF_EINVAL);
	CHECK_RC(wf_file_close((wf_file *)(uintptr_t)0x12345, WF_FOREVER), WF_EINVAL);
	return NULL;
}

Test(fs, stale_handle)
{
	run_weft(2, stale_main, NULL);
}

/* ---- whole files ---------------------------------------------------------- */

#define BIG ((size_t)8 << 20)

static void fill(unsigned char *p, size_t n, unsigned seed)
{
	for (size_t i = 0; i < n; i++)
		p[i] = (unsigned char)((i * 2654435761u) >> 13 ^ seed);
}

static void *whole_main(void *arg)
{
	char p[128];
	path_of(p, sizeof(p), "big");
	unsigned char *data = malloc(BIG);
	if (!CHECK(data != NULL))
		return NULL;
	fill(data, BIG, 1);
	CHECK_RC(wf_fs_write_file(p, data, BIG, WF_FS_TRUNCATE, WF_FOREVER), 0);
	void *out = NULL;
	size_t len = 0;
	if (CHECK_RC(wf_fs_read_file(p, BIG, &out, &len, WF_FOREVER), 0)) {
		CHECK_EQ(len, BIG);
		CHECK(memcmp(out, data, BIG) == 0);
		CHECK_EQ(((char *)out)[BIG], '\0');
		free(out);
	}
	/* One byte over the limit. */
	out = (void *)1;
	len = 7;
	CHECK_RC(wf_fs_read_file(p, BIG - 1, &out, &len, WF_FOREVER), WF_ELIMIT);
	CHECK(out == NULL);
	CHECK_EQ(len, 0);

	/* Atomic replace keeps the permission bits and leaves no temporary. */
	CHECK_EQ(chmod(p, 0640), 0);
	fill(data, BIG, 2);
	CHECK_RC(wf_fs_write_file(p, data, BIG, WF_FS_ATOMIC, WF_FOREVER), 0);
	struct stat st;
	CHECK_RC(wf_fs_stat(p, &st, WF_FOREVER), 0);
	CHECK_EQ(st.st_mode & 07777, 0640);
	CHECK_EQ(st.st_size, (off_t)BIG);
	CHECK_EQ(dir_entries(), 1);
	if (CHECK_RC(wf_fs_read_file(p, SIZE_MAX, &out, &len, WF_FOREVER), 0)) {
		CHECK_EQ(len, BIG);
		CHECK(memcmp(out, data, BIG) == 0);
		free(out);
	}
	/* An atomic write into a missing directory fails and leaves nothing. */
	char q[160];
	snprintf(q, sizeof(q), "%s/nodir/x", dir);
	CHECK_RC(wf_fs_write_file(q, "x", 1, WF_FS_ATOMIC, WF_FOREVER), -ENOENT);
	CHECK_RC(wf_fs_write_file(q, "x", 1, WF_FS_TRUNCATE, WF_FOREVER), -ENOENT);

	/* Append, truncate, an empty file. */
	path_of(q, sizeof(q), "small");
	CHECK_RC(wf_fs_write_file(q, "abc", 3, WF_FS_APPEND, WF_FOREVER), 0);
	CHECK_RC(wf_fs_write_file(q, "def", 3, WF_FS_APPEND, WF_FOREVER), 0);
	if (CHECK_RC(wf_fs_read_file(q, 100, &out, &len, WF_FOREVER), 0)) {
		CHECK_EQ(len, 6);
		CHECK(strcmp(out, "abcdef") == 0);
		free(out);
	}
	CHECK_RC(wf_fs_write_file(q, "xy", 2, WF_FS_TRUNCATE, WF_FOREVER), 0);
	CHECK_RC(wf_fs_write_file(q, "z", 1, WF_FS_ATOMIC, WF_FOREVER), 0);
	if (CHECK_RC(wf_fs_read_file(q, 100, &out, &len, WF_FOREVER), 0)) {
		CHECK_EQ(len, 1);
		CHECK(strcmp(out, "z") == 0);
		free(out);
	}
	CHECK_RC(wf_fs_write_file(q, NULL, 0, WF_FS_TRUNCATE, WF_FOREVER), 0);
	if (CHECK_RC(wf_fs_read_file(q, 0, &out, &len, WF_FOREVER), 0)) {
		CHECK_EQ(len, 0);
		CHECK(out != NULL && ((char *)out)[0] == '\0');
		free(out);
	}
	/* A file that says its size is 0 but has more (/proc). */
	if (CHECK_RC(wf_fs_read_file("/proc/self/status", 1 << 20, &out, &len, WF_FOREVER), 0)) {
		CHECK(len > 0 && strncmp(out, "Name:", 5) == 0);
		free(out);
	}
	CHECK_RC(wf_fs_read_file("/proc/self/status", 10, &out, &len, WF_FOREVER), WF_ELIMIT);

	/* Bad flags. */
	CHECK_RC(wf_fs_write_file(q, "x", 1, WF_FS_APPEND | WF_FS_ATOMIC, WF_FOREVER), WF_EINVAL);
	CHECK_RC(wf_fs_write_file(q, "x", 1, 1 << 7, WF_FOREVER), WF_EINVAL);
	CHECK_RC(wf_fs_read_file(q, 10, NULL, &len, WF_FOREVER), WF_EINVAL);
	free(data);
	return NULL;
}

Test(fs, whole_file_8mb)
{
	run_weft(2, whole_main, NULL);
}

/* ---- errors and path calls ------------------------------------------------- */

static void *errors_main(void *arg)
{
	char p[128], q[160];
	wf_file *f = NULL;
	path_of(p, sizeof(p), "missing");
	CHECK_RC(wf_file_open(p, O_RDONLY, 0, WF_FOREVER, &f), -ENOENT);
	CHECK(f == NULL);
	struct stat st;
	CHECK_RC(wf_fs_stat(p, &st, WF_FOREVER), -ENOENT);
	CHECK_RC(wf_fs_unlink(p, WF_FOREVER), -ENOENT);
	void *out;
	size_t len;
	CHECK_RC(wf_fs_read_file(p, 100, &out, &len, WF_FOREVER), -ENOENT);

	path_of(p, sizeof(p), "file");
	CHECK_RC(wf_fs_write_file(p, "x", 1, 0, WF_FOREVER), 0);
	CHECK_RC(wf_file_open(p, O_WRONLY | O_CREAT | O_EXCL, 0644, WF_FOREVER, &f), -EEXIST);
	/* A path through a regular file. */
	snprintf(q, sizeof(q), "%s/x", p);
	CHECK_RC(wf_file_open(q, O_RDONLY, 0, WF_FOREVER, &f), -ENOTDIR);
	CHECK_RC(wf_fs_mkdir(q, 0755, WF_FOREVER), -ENOTDIR);
	CHECK_RC(wf_fs_stat(q, &st, WF_FOREVER), -ENOTDIR);
	CHECK_RC(wf_fs_rmdir(p, WF_FOREVER), -ENOTDIR);

	/* Directories. */
	CHECK_RC(wf_file_open(dir, O_WRONLY, 0, WF_FOREVER, &f), -EISDIR);
	CHECK_RC(wf_fs_read_file(dir, 100, &out, &len, WF_FOREVER), -EISDIR);
	CHECK_RC(wf_fs_write_file(dir, "x", 1, 0, WF_FOREVER), -EISDIR);
	CHECK_RC(wf_fs_write_file(dir, "x", 1, WF_FS_ATOMIC, WF_FOREVER), -EISDIR);
	CHECK_RC(wf_fs_unlink(dir, WF_FOREVER), -EISDIR);
	CHECK_RC(wf_fs_mkdir(dir, 0755, WF_FOREVER), -EEXIST);
	CHECK_RC(wf_fs_rmdir(dir, WF_FOREVER), -ENOTEMPTY);
	if (CHECK_RC(wf_file_open(dir, O_RDONLY | O_DIRECTORY, 0, WF_FOREVER, &f), 0)) {
		char buf[4];
		CHECK_EQ(wf_file_read(f, buf, sizeof(buf), 0, WF_FOREVER), -EISDIR);
		CHECK_RC(wf_file_close(f, WF_FOREVER), 0);
	}

	/* Reading a write-only file, writing a read-only one. */
	if (CHECK_RC(wf_file_open(p, O_WRONLY, 0, WF_FOREVER, &f), 0)) {
		char buf[4];
		CHECK_EQ(wf_file_read(f, buf, sizeof(buf), 0, WF_FOREVER), -EBADF);
		CHECK_RC(wf_file_close(f, WF_FOREVER), 0);
	}
	if (CHECK_RC(wf_file_open(p, O_RDONLY, 0, WF_FOREVER, &f), 0)) {
		CHECK_EQ(wf_file_write(f, "y", 1, -1, WF_FOREVER), -EBADF);
		CHECK_RC(wf_file_close(f, WF_FOREVER), 0);
	}
	/* Names for the codes. */
	CHECK(strcmp(wf_err_name(-ENOENT), "ENOENT") == 0);
	return NULL;
}

Test(fs, errors_are_the_os_codes)
{
	run_weft(2, errors_main, NULL);
}

static void *paths_main(void *arg)
{
	char d[128], a[160], b[160];
	path_of(d, sizeof(d), "sub");
	CHECK_RC(wf_fs_mkdir(d, 0700, WF_FOREVER), 0);
	struct stat st;
	CHECK_RC(wf_fs_stat(d, &st, WF_FOREVER), 0);
	CHECK(S_ISDIR(st.st_mode));
	snprintf(a, sizeof(a), "%s/a", d);
	snprintf(b, sizeof(b), "%s/b", d);
	CHECK_RC(wf_fs_write_file(a, "12345", 5, 0, WF_FOREVER), 0);
	CHECK_RC(wf_fs_rename(a, b, WF_FOREVER), 0);
	CHECK_RC(wf_fs_stat(a, &st, WF_FOREVER), -ENOENT);
	CHECK_RC(wf_fs_stat(b, &st, WF_FOREVER), 0);
	CHECK_EQ(st.st_size, 5);
	CHECK_RC(wf_fs_rename(a, b, WF_FOREVER), -ENOENT);
	CHECK_RC(wf_fs_rmdir(d, WF_FOREVER), -ENOTEMPTY);
	CHECK_RC(wf_fs_unlink(b, WF_FOREVER), 0);
	CHECK_RC(wf_fs_rmdir(d, WF_FOREVER), 0);
	CHECK_RC(wf_fs_stat(d, &st, WF_FOREVER), -ENOENT);
	CHECK_RC(wf_fs_rename(NULL, b, WF_FOREVER), WF_EINVAL);
	CHECK_RC(wf_fs_stat(d, NULL, WF_FOREVER), WF_EINVAL);
	return NULL;
}

Test(fs, rename_unlink_mkdir_rmdir_stat)
{
	run_weft(2, paths_main, NULL);
}

Test(fs, plain_thread_is_refused)
{
	wf_file *f;
	struct stat st;
	void *out;
	size_t len;
	cr_assert_eq(wf_file_open("/", O_RDONLY, 0, WF_FOREVER, &f), WF_ENOTTASK);
	cr_assert_eq(wf_fs_stat("/", &st, WF_FOREVER), WF_ENOTTASK);
	cr_assert_eq(wf_fs_read_file("/etc/hostname", 10, &out, &len, WF_FOREVER), WF_ENOTTASK);
	cr_assert_eq(wf_fs_write_file("/tmp/x", "x", 1, 0, WF_FOREVER), WF_ENOTTASK);
}

/* ---- many tasks on 4 workers ----------------------------------------------- */

#define MT_TASKS 48
#define MT_BLOCKS 24
#define MT_BLOCK 4096

struct mt_arg {
	unsigned index;
	wf_file *shared;
	int ok;
};

static void *mt_task(void *arg)
{
	struct mt_arg *a = arg;
	char p[128];
	char name[32];
	snprintf(name, sizeof(name), "mt-%u", a->index);
	path_of(p, sizeof(p), name);
	wf_file *f;
	if (!CHECK_RC(wf_file_open(p, O_RDWR | O_CREAT | O_TRUNC, 0600, WF_FOREVER, &f), 0))
		return NULL;
	unsigned char blk[MT_BLOCK], back[MT_BLOCK];
	int ok = 1;
	for (unsigned i = 0; i < MT_BLOCKS; i++) {
		memset(blk, (int)(a->index * 31 + i), sizeof(blk));
		ok &= CHECK_EQ(wf_file_write(f, blk, sizeof(blk), -1, WF_FOREVER), MT_BLOCK);
		/* Its block of the shared file: positional writes of many
		 * tasks at once. */
		ok &= CHECK_EQ(wf_file_write(a->shared, blk, sizeof(blk),
					     (int64_t)(a->index * MT_BLOCKS + i) * MT_BLOCK, WF_FOREVER),
			       MT_BLOCK);
	}
	for (unsigned i = MT_BLOCKS; i-- > 0;) {
		ok &= CHECK_EQ(wf_file_read(f, back, sizeof(back), (int64_t)i * MT_BLOCK, WF_FOREVER),
			       MT_BLOCK);
		ok &= CHECK(all_bytes(back, sizeof(back), (unsigned char)(a->index * 31 + i)));
		ok &= CHECK_EQ(wf_file_read(a->shared, back, sizeof(back),
					    (int64_t)(a->index * MT_BLOCKS + i) * MT_BLOCK, WF_FOREVER),
			       MT_BLOCK);
		ok &= CHECK(all_bytes(back, sizeof(back), (unsigned char)(a->index * 31 + i)));
	}
	ok &= CHECK_RC(wf_file_close(f, WF_FOREVER), 0);
	ok &= CHECK_RC(wf_fs_unlink(p, WF_FOREVER), 0);
	a->ok = ok;
	return NULL;
}

static void *mt_main(void *arg)
{
	char p[128];
	path_of(p, sizeof(p), "shared");
	int fds = fd_count();
	wf_file *shared;
	if (!CHECK_RC(wf_file_open(p, O_RDWR | O_CREAT, 0600, WF_FOREVER, &shared), 0))
		return NULL;
	struct mt_arg args[MT_TASKS];
	wf_task *t[MT_TASKS];
	for (unsigned i = 0; i < MT_TASKS; i++) {
		args[i] = (struct mt_arg){.index = i, .shared = shared};
		t[i] = wf_spawn(mt_task, &args[i]);
		CHECK(t[i] != NULL);
	}
	int ok = 0;
	for (unsigned i = 0; i < MT_TASKS; i++) {
		if (t[i] != NULL)
			CHECK_RC(wf_join(t[i], NULL), 0);
		ok += args[i].ok;
	}
	CHECK_EQ(ok, MT_TASKS);
	struct stat st;
	CHECK_RC(wf_fs_stat(p, &st, WF_FOREVER), 0);
	CHECK_EQ(st.st_size, (off_t)MT_TASKS * MT_BLOCKS * MT_BLOCK);
	CHECK_RC(wf_file_close(shared, WF_FOREVER), 0);
	CHECK_EQ(fd_count(), fds);
	return NULL;
}

Test(fs, many_tasks_on_4_workers)
{
	run_weft(4, mt_main, NULL);
}

/* ---- timeouts and cancellation ----------------------------------------------- */

static void *timeout_zero_main(void *arg)
{
	char p[128];
	path_of(p, sizeof(p), "z");
	int fds = fd_count();
	wf_file *f = NULL;
	struct stat st;
	void *out = (void *)1;
	size_t len = 1;
	/* 0: nothing is started. */
	CHECK_RC(wf_file_open(p, O_RDWR | O_CREAT, 0644, 0, &f), WF_ETIMEDOUT);
	CHECK(f == NULL);
	CHECK_RC(wf_fs_write_file(p, "x", 1, 0, 0), WF_ETIMEDOUT);
	CHECK_RC(wf_fs_mkdir(p, 0755, 0), WF_ETIMEDOUT);
	CHECK_RC(wf_fs_stat(dir, &st, 0), WF_ETIMEDOUT);
	CHECK_RC(wf_fs_read_file("/proc/self/status", 100000, &out, &len, 0), WF_ETIMEDOUT);
	CHECK(out == NULL && len == 0);
	CHECK_EQ(dir_entries(), 0);

	if (!CHECK_RC(wf_file_open(p, O_RDWR | O_CREAT, 0644, WF_FOREVER, &f), 0))
		return NULL;
	char buf[16];
	memset(buf, 0x5a, sizeof(buf));
	CHECK_EQ(wf_file_write(f, "data", 4, 0, 0), WF_ETIMEDOUT);
	CHECK_EQ(wf_file_read(f, buf, sizeof(buf), 0, 0), WF_ETIMEDOUT);
	CHECK_RC(wf_file_fsync(f, 0), WF_ETIMEDOUT);
	CHECK_RC(wf_fs_stat(p, &st, WF_FOREVER), 0);
	CHECK_EQ(st.st_size, 0);
	/* A close always closes: in the background when it may not wait. */
	int rc = wf_file_close(f, 0);
	CHECK(rc == 0 || rc == WF_ETIMEDOUT);
	CHECK_RC(wf_file_fd(f), WF_EINVAL);
	CHECK_EQ(fd_count_settles(fds), fds);
	CHECK(all_bytes((unsigned char *)buf, sizeof(buf), 0x5a));
	return NULL;
}

Test(fs, timeout_zero)
{
	run_weft(2, timeout_zero_main, NULL);
}

/* A read that times out on an empty FIFO: the caller's buffer stays as it
 * was, after the data comes too; the descriptor outlives the close until
 * the abandoned read ends, then goes. */
static void *timeout_read_main(void *arg)
{
	char p[128];
	path_of(p, sizeof(p), "fifo");
	if (!CHECK_EQ(mkfifo(p, 0600), 0))
		return NULL;
	int fds = fd_count();
	wf_file *f;
	/* O_RDWR: opening a FIFO so never waits for a writer (Linux). */
	if (!CHECK_RC(wf_file_open(p, O_RDWR, 0, WF_FOREVER, &f), 0))
		return NULL;
	CHECK_EQ(fd_count(), fds + 1);
	unsigned char buf[16];
	memset(buf, 0xaa, sizeof(buf));
	uint64_t t0 = mono_ns();
	CHECK_EQ(wf_file_read(f, buf, sizeof(buf), -1, 50), WF_ETIMEDOUT);
	CHECK(mono_ns() - t0 >= 40 * 1000000ull);
	CHECK_RC(wf_file_close(f, WF_FOREVER), 0);
	/* The abandoned read still holds the descriptor. */
	CHECK_EQ(fd_count(), fds + 1);
	int w = open(p, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (CHECK(w >= 0)) {
		CHECK_EQ(write(w, "0123456789abcdef", 16), 16);
		/* The read ends; its drop closes the file's descriptor. */
		CHECK_EQ(fd_count_settles(fds + 1), fds + 1);
		close(w);
	}
	CHECK(all_bytes(buf, sizeof(buf), 0xaa));
	CHECK_EQ(fd_count(), fds);
	return NULL;
}

Test(fs, timed_out_read_leaves_the_buffer_alone)
{
	run_weft(2, timeout_read_main, NULL);
}

struct cancel_arg {
	wf_file *f;
	unsigned char buf[16];
	int rc;
	int started;
};

static void *blocked_reader(void *arg)
{
	struct cancel_arg *a = arg;
	__atomic_store_n(&a->started, 1, __ATOMIC_RELEASE);
	a->rc = (int)wf_file_read(a->f, a->buf, sizeof(a->buf), -1, WF_FOREVER);
	/* Still the caller's own bytes, a little later too. */
	wf_sleep(20);
	CHECK(all_bytes(a->buf, sizeof(a->buf), 0xaa));
	return NULL;
}

static void *cancel_main(void *arg)
{
	char p[128];
	path_of(p, sizeof(p), "fifo");
	if (!CHECK_EQ(mkfifo(p, 0600), 0))
		return NULL;
	int fds = fd_count();

	/* A cancelled read. */
	struct cancel_arg a = {0};
	memset(a.buf, 0xaa, sizeof(a.buf));
	if (!CHECK_RC(wf_file_open(p, O_RDWR, 0, WF_FOREVER, &a.f), 0))
		return NULL;
	wf_task *t = wf_spawn(blocked_reader, &a);
	if (!CHECK(t != NULL))
		return NULL;
	while (!__atomic_load_n(&a.started, __ATOMIC_ACQUIRE))
		wf_sleep(1);
	pool_busy_wait(); /* well into its read on the pool */
	CHECK_RC(wf_cancel(t), 0);
	CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
	CHECK_RC(a.rc, WF_ECANCELED);
	CHECK_RC(wf_file_close(a.f, WF_FOREVER), 0);
	int w = open(p, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
	if (CHECK(w >= 0)) {
		CHECK_EQ(write(w, "0123456789abcdef", 16), 16);
		CHECK_EQ(fd_count_settles(fds + 1), fds + 1);
		close(w);
	}
	CHECK(all_bytes(a.buf, sizeof(a.buf), 0xaa));
	CHECK_EQ(fd_count(), fds);

	return NULL;
}

Test(fs, cancelled_read)
{
	run_weft(4, cancel_main, NULL);
}

struct open_arg {
	char path[128];
	wf_file *f;
	int rc;
	int started;
};

static void *opener(void *arg)
{
	struct open_arg *a = arg;
	__atomic_store_n(&a->started, 1, __ATOMIC_RELEASE);
	a->rc = wf_file_open(a->path, O_RDONLY, 0, WF_FOREVER, &a->f);
	return NULL;
}

/* Opens the FIFO for writing once the abandoned open waits as its reader
 * (ENXIO until then), which lets that open finish. -1 with ENXIO if no
 * reader came: the open never started (its thread was slow to come, on a
 * loaded machine), which the header allows. */
static int unblock_fifo(const char *p)
{
	for (int i = 0; i < 200; i++) {
		int w = open(p, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
		if (w >= 0 || errno != ENXIO)
			return w;
		wf_sleep(10);
	}
	return -1;
}

static void *cancel_open_main(void *arg)
{
	struct open_arg a = {0};
	path_of(a.path, sizeof(a.path), "fifo");
	if (!CHECK_EQ(mkfifo(a.path, 0600), 0))
		return NULL;
	int fds = fd_count();

	/* Cancelled. */
	wf_task *t = wf_spawn(opener, &a);
	if (!CHECK(t != NULL))
		return NULL;
	while (!__atomic_load_n(&a.started, __ATOMIC_ACQUIRE))
		wf_sleep(1);
	pool_busy_wait();
	CHECK_RC(wf_cancel(t), 0);
	CHECK_RC(wf_join(t, NULL), WF_ECANCELED);
	CHECK_RC(a.rc, WF_ECANCELED);
	CHECK(a.f == NULL);
	int w = unblock_fifo(a.path);
	CHECK(w >= 0 || errno == ENXIO);
	if (w >= 0) {
		/* The abandoned open returns once a writer came; its drop
		 * closes what it opened. */
		pool_idle_wait();
		CHECK_EQ(fd_count_settles(fds + 1), fds + 1);
		close(w);
	}
	CHECK_EQ(fd_count_settles(fds), fds);

	/* Timed out. */
	wf_file *f = NULL;
	CHECK_RC(wf_file_open(a.path, O_RDONLY, 0, 30, &f), WF_ETIMEDOUT);
	CHECK(f == NULL);
	w = unblock_fifo(a.path);
	CHECK(w >= 0 || errno == ENXIO);
	if (w >= 0) {
		/* The abandoned open returns once a writer came; its drop
		 * closes what it opened. */
		pool_idle_wait();
		CHECK_EQ(fd_count_settles(fds + 1), fds + 1);
		close(w);
	}
	CHECK_EQ(fd_count_settles(fds), fds);
	return NULL;
}

Test(fs, cancelled_and_timed_out_open_leak_nothing)
{
	run_weft(4, cancel_open_main, NULL);
}

/* ---- pipes and terminals as streams (connect_read_pipe / write_pipe) ------------ */

static void *pipe_main(void *arg)
{
	int p[2];
	if (!CHECK_EQ(pipe(p), 0))
		return NULL;
	wf_stream *r, *w;
	if (!CHECK_RC(wf_stream_from_fd(p[0], &r), 0) || !CHECK_RC(wf_stream_from_fd(p[1], &w), 0))
		return NULL;
	CHECK_RC(wf_stream_write(w, "one\ntwo\nthree", 13), 0);
	CHECK_RC(wf_stream_write_eof(w, WF_FOREVER), 0);
	char buf[32];
	CHECK_EQ(wf_stream_readline(r, buf, sizeof(buf), WF_FOREVER), 4);
	CHECK(memcmp(buf, "one\n", 4) == 0);
	CHECK_EQ(wf_stream_readline(r, buf, sizeof(buf), WF_FOREVER), 4);
	CHECK(memcmp(buf, "two\n", 4) == 0);
	CHECK_EQ(wf_stream_readline(r, buf, sizeof(buf), WF_FOREVER), 5);
	CHECK(memcmp(buf, "three", 5) == 0);
	CHECK_EQ(wf_stream_read(r, buf, sizeof(buf), WF_FOREVER), 0);
	CHECK(wf_stream_at_eof(r));
	CHECK_RC(wf_stream_close(r, WF_FOREVER), 0);
	CHECK_RC(wf_stream_close(w, WF_FOREVER), 0);
	return NULL;
}

Test(fs, pipe_as_stream)
{
	run_weft(2, pipe_main, NULL);
}

static void *pty_main(void *arg)
{
	int m, s;
	if (!CHECK_EQ(openpty(&m, &s, NULL, NULL, NULL), 0))
		return NULL;
	/* Raw: no echo, no line discipline translating the bytes. */
	struct termios tio;
	CHECK_EQ(tcgetattr(s, &tio), 0);
	cfmakeraw(&tio);
	CHECK_EQ(tcsetattr(s, TCSANOW, &tio), 0);
	wf_stream *ms, *ss;
	if (!CHECK_RC(wf_stream_from_fd(m, &ms), 0) || !CHECK_RC(wf_stream_from_fd(s, &ss), 0))
		return NULL;
	char buf[32];
	CHECK_RC(wf_stream_write_all(ms, "ping\n", 5, WF_FOREVER), 0);
	CHECK_EQ(wf_stream_readline(ss, buf, sizeof(buf), 5000), 5);
	CHECK(memcmp(buf, "ping\n", 5) == 0);
	CHECK_RC(wf_stream_write_all(ss, "pong\n", 5, WF_FOREVER), 0);
	CHECK_EQ(wf_stream_readline(ms, buf, sizeof(buf), 5000), 5);
	CHECK(memcmp(buf, "pong\n", 5) == 0);
	/* Nothing more: a read times out, and leaves nothing consumed. */
	CHECK_EQ(wf_stream_read(ms, buf, sizeof(buf), 20), WF_ETIMEDOUT);
	CHECK_RC(wf_stream_close(ss, WF_FOREVER), 0);
	/* With the slave closed, the master reads EIO (Linux) or the end. */
	ssize_t n = wf_stream_read(ms, buf, sizeof(buf), 5000);
	CHECK(n == 0 || n == -EIO);
	CHECK_RC(wf_stream_close(ms, WF_FOREVER), 0);
	return NULL;
}

Test(fs, pty_as_stream)
{
	run_weft(2, pty_main, NULL);
}
