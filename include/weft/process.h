/*
 * weft: process; included by weft.h.
 */
#ifndef WEFT_PROCESS_H
#define WEFT_PROCESS_H

#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif
