/*
 * weft: fs; included by weft.h.
 */
#ifndef WEFT_FS_H
#define WEFT_FS_H

#include "../weft.h"

#ifdef __cplusplus
extern "C" {
#endif

#ifdef __cplusplus
}
#endif

#endif
