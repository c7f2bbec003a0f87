/*
 * Asymmetric barrier with membarrier(2): see asym.h.
 */
#include "asym.h"

#include <linux/membarrier.h>
#include <pthread.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

bool wf__asym_available;

static int membarrier(int cmd)
{
	return (int)syscall(SYS_membarrier, cmd, 0, 0);
}

static void asym_setup(void)
{
#if defined(WF_TSAN)
	return; /* TSan cannot see the barrier: keep the locked path there */
#else
	int cmds = membarrier(MEMBARRIER_CMD_QUERY);
	if (cmds < 0 || !(cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) ||
	    !(cmds & MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED))
		return;
	if (membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) != 0)
		return;
	/* One trial: an emulator may list the command and still refuse it. */
	if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0)
		return;
	wf__asym_available = true;
#endif
}

void wf__asym_init(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, asym_setup);
}

void wf__asym_heavy(void)
{
	/* Registered and tried in asym_setup: the command cannot fail now,
	 * and going on without the barrier would lose a wake-up. */
	if (membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0)
		abort();
}
