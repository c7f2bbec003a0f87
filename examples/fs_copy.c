/*
 * Asynchronous files: writes a 1 MiB file in one call, copies it in
 * 64 KiB pieces with wf_file_read / wf_file_write (positional, so the
 * offsets are the program's own), then reads both back whole and compares
 * them. Each call runs on a pool thread while the task waits; the worker
 * meanwhile runs other tasks (here, a ticker).
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "weft.h"

#define SIZE (1024 * 1024)
#define CHUNK (64 * 1024)

static int ticks;

static void *ticker(void *arg)
{
	for (;;) {
		if (wf_sleep(1) != 0)
			return NULL;
		ticks++;
	}
}

static int copy(const char *from, const char *to, size_t *copied)
{
	wf_file *in, *out;
	int rc = wf_file_open(from, O_RDONLY, 0, WF_FOREVER, &in);
	if (rc != 0)
		return rc;
	rc = wf_file_open(to, O_WRONLY | O_CREAT | O_TRUNC, 0644, WF_FOREVER, &out);
	if (rc != 0) {
		wf_file_close(in, WF_FOREVER);
		return rc;
	}
	char *buf = malloc(CHUNK);
	int64_t off = 0;
	while (buf != NULL) {
		ssize_t n = wf_file_read(in, buf, CHUNK, off, WF_FOREVER);
		if (n <= 0) {
			rc = (int)n;
			break;
		}
		ssize_t w = wf_file_write(out, buf, (size_t)n, off, WF_FOREVER);
		if (w != n) {
			rc = w < 0 ? (int)w : WF_EIO;
			break;
		}
		off += n;
	}
	if (buf == NULL)
		rc = WF_ENOMEM;
	free(buf);
	*copied = (size_t)off;
	wf_file_close(in, WF_FOREVER);
	int crc = wf_file_close(out, WF_FOREVER);
	return rc != 0 ? rc : crc;
}

static void *main_task(void *arg)
{
	char dir[] = "/tmp/weft-fs-copy-XXXXXX";
	if (mkdtemp(dir) == NULL)
		return wf_fail(-errno, "mkdtemp");
	char src[64], dst[64];
	snprintf(src, sizeof(src), "%s/source", dir);
	snprintf(dst, sizeof(dst), "%s/copy", dir);

	wf_task *t = wf_spawn(ticker, NULL);
	unsigned char *data = malloc(SIZE);
	if (data == NULL)
		return wf_fail(WF_ENOMEM, "malloc");
	for (size_t i = 0; i < SIZE; i++)
		data[i] = (unsigned char)(i * 7 + i / 251);

	int rc = wf_fs_write_file(src, data, SIZE, WF_FS_ATOMIC, WF_FOREVER);
	size_t copied = 0;
	if (rc == 0)
		rc = copy(src, dst, &copied);
	void *a = NULL, *b = NULL;
	size_t alen = 0, blen = 0;
	if (rc == 0)
		rc = wf_fs_read_file(src, SIZE, &a, &alen, WF_FOREVER);
	if (rc == 0)
		rc = wf_fs_read_file(dst, SIZE, &b, &blen, WF_FOREVER);
	if (rc == 0) {
		struct stat st;
		wf_fs_stat(dst, &st, WF_FOREVER);
		printf("source: %zu bytes\n", alen);
		printf("copy: %zu bytes (%zu copied, stat says %lld)\n", blen, copied,
		       (long long)st.st_size);
		printf("contents match: %s\n",
		       alen == blen && memcmp(a, b, alen) == 0 && memcmp(a, data, SIZE) == 0
			       ? "yes"
			       : "no");
	} else {
		printf("failed: %s\n", wf_strerror(rc));
	}
	free(a);
	free(b);
	free(data);
	wf_fs_unlink(src, WF_FOREVER);
	wf_fs_unlink(dst, WF_FOREVER);
	wf_fs_rmdir(dir, WF_FOREVER);
	wf_cancel(t);
	wf_join(t, NULL);
	return rc == 0 ? NULL : wf_fail(rc, "copy");
}

int main(void)
{
	return wf_run(NULL, main_task, NULL, NULL) == 0 ? 0 : 1;
}
