/*
 * The reserved words at the end of the public option structs (weft.h,
 * "ABI"). A call that takes an option struct refuses one whose reserved
 * words are not all zero (WF_EINVAL): a program that leaves them
 * uninitialised fails today, not on the day a later version gives those
 * words a meaning.
 *
 *	if (opts != NULL && !WF__RESERVED_ZERO(opts))
 *		return WF_EINVAL;
 */
#ifndef WF_ABI_H
#define WF_ABI_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline bool wf__reserved_zero(const uint64_t *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (w[i] != 0)
			return false;
	return true;
}

#define WF__RESERVED_ZERO(opts)                                                \
	wf__reserved_zero((opts)->reserved,                                    \
			  sizeof((opts)->reserved) / sizeof((opts)->reserved[0]))

#endif /* WF_ABI_H */
