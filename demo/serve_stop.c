/* Stopping a server program: see serve_stop.h. */
#include "serve_stop.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include <weft.h>

static int stop_pipe[2] = {-1, -1};

static void on_signal(int sig)
{
	serve_stop_request();
}

int serve_stop_init(void)
{
	if (stop_pipe[0] < 0 && pipe2(stop_pipe, O_NONBLOCK | O_CLOEXEC) != 0)
		return -errno;
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	if (sigaction(SIGINT, &sa, NULL) != 0 || sigaction(SIGTERM, &sa, NULL) != 0)
		return -errno;
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) != 0)
		return -errno;
	return 0;
}

void serve_stop_request(void)
{
	int saved = errno;
	/* A full pipe already holds a request: the byte is not needed. */
	ssize_t rc = write(stop_pipe[1], "x", 1);
	(void)rc;
	errno = saved;
}

int serve_stop_wait(uint64_t timeout_ms)
{
	if (stop_pipe[0] < 0)
		return WF_EINVAL;
	return wf_wait_readable(stop_pipe[0], timeout_ms);
}
