/*
 * weft: signal; included by weft.h.
 */
#ifndef WEFT_SIGNAL_H
#define WEFT_SIGNAL_H

#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif
