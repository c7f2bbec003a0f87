/* weft: sync API; included by weft.h. */
#ifndef WEFT_SYNC_H
#define WEFT_SYNC_H
#include "../weft.h"
#endif
