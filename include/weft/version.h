/*
 * weft: the version of these headers and the export macro. Included first
 * by every other public header; it may be included on its own.
 *
 * Versions follow semantic versioning (docs/abi.md): a program built
 * against MAJOR.x runs with any libweft.so.MAJOR of the same MAJOR and an
 * equal or later MINOR. wf_version() and wf_version_string() (weft.h) give
 * the version of the library actually loaded.
 *
 * The build reads the version from this file (CMakeLists.txt): it is
 * written down once, here.
 */
#ifndef WEFT_VERSION_H
#define WEFT_VERSION_H

/* The version of these headers; wf_version() gives the library's. */
#define WEFT_VERSION_MAJOR 0
#define WEFT_VERSION_MINOR 1
#define WEFT_VERSION_PATCH 0

/* 0xMMmmpp: one number that orders versions, as wf_version() returns. */
#define WEFT_VERSION_HEX                                                       \
	((WEFT_VERSION_MAJOR << 16) | (WEFT_VERSION_MINOR << 8) | WEFT_VERSION_PATCH)

#define WF__STR(x) #x
#define WF__XSTR(x) WF__STR(x)
/* "MAJOR.MINOR.PATCH", as wf_version_string() returns. */
#define WEFT_VERSION_STRING                                                    \
	WF__XSTR(WEFT_VERSION_MAJOR)                                           \
	"." WF__XSTR(WEFT_VERSION_MINOR) "." WF__XSTR(WEFT_VERSION_PATCH)

/*
 * WF_EXTERN marks every function of the public API, on its declaration in
 * these headers. libweft.so is compiled with hidden visibility by default,
 * so this is the only way a symbol leaves the shared library: internal
 * (wf__*) functions stay internal and cannot be bound to by accident. The
 * attribute is the same for the library and its users (as libuv's
 * UV_EXTERN): on a declaration it is harmless, and it keeps a program that
 * compiles itself with hidden visibility (or wraps includes in a visibility
 * pragma) linking to the library's symbols correctly.
 */
#if defined(__GNUC__) && __GNUC__ >= 4
#define WF_EXTERN __attribute__((visibility("default")))
#else
#define WF_EXTERN /* nothing */
#endif

#endif /* WEFT_VERSION_H */
