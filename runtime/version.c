/*
 * The version of the library as built: a program compares it with the
 * WEFT_VERSION_* of the headers it was compiled with to learn which
 * libweft.so it runs with (a later minor version may be loaded in place of
 * the one it was built against; docs/abi.md).
 */
#include "weft.h"

unsigned wf_version(void)
{
	return WEFT_VERSION_HEX;
}

const char *wf_version_string(void)
{
	return WEFT_VERSION_STRING;
}
