/*
 * Error codes: names and descriptions generated from WF_ERRNO_MAP, with the
 * OS's strerror for any other negated errno.
 */
#include <stdio.h>
#include <string.h>

#include "weft.h"

const char *wf_strerror(int err)
{
	switch (err) {
	case 0:
		return "success";
#define WF__ERR_TEXT(name, value, text)                                        \
	case WF_##name:                                                        \
		return text;
		WF_ERRNO_MAP(WF__ERR_TEXT)
#undef WF__ERR_TEXT
	default:
		break;
	}
	if (err < 0 && err > -4096) {
		/* strerror's buffer is static but its table entries are
		 * constant strings in glibc; sigabbrev-style lookup is not
		 * portable, so fall back on it. */
		return strerror(-err);
	}
	return "unknown error";
}

const char *wf_err_name(int err)
{
	switch (err) {
	case 0:
		return "OK";
#define WF__ERR_NAME(name, value, text)                                        \
	case WF_##name:                                                        \
		return "WF_" #name;
		WF_ERRNO_MAP(WF__ERR_NAME)
#undef WF__ERR_NAME
	default:
		break;
	}
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 32))
	if (err < 0 && err > -4096) {
		const char *n = strerrorname_np(-err);
		if (n != NULL)
			return n;
	}
#endif
	return "UNKNOWN";
}
