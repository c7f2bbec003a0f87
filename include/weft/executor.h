/* weft: executor API; included by weft.h. */
#ifndef WEFT_EXECUTOR_H
#define WEFT_EXECUTOR_H
#include "../weft.h"
#endif
