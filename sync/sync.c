/*
 * The lifecycle every sync object shares (sync_internal.h).
 */
#include "sync/sync_internal.h"

int wf__sync_free(wf__htype *ty, wf__sync *s, bool (*busy)(wf__sync *s),
		  void (*before_free)(wf__sync *s))
{
	wf__spin_lock(&s->sl);
	if (s->q.len != 0 || (busy != NULL && busy(s))) {
		wf__spin_unlock(&s->sl);
		return WF_EBUSY;
	}
	if (before_free != NULL)
		before_free(s);
	/* Stale from here on, decided under the lock: a call that decoded
	 * the handle before and waits for the lock is a race in the program
	 * (a use concurrent with the free), but finds an idle object. The
	 * slot is reused only after the lock is dropped, since a new object
	 * starts with its lock cleared. */
	bool keep = wf__hdr_bump(&s->hdr);
	wf__spin_unlock(&s->sl);
	wf__hobj_recycle(ty, s, keep);
	return 0;
}
