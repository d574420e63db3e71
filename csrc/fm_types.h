/* Instantiates the kernel body file FM_BODY (a quoted file name) for double
 * and float under the current FM_ISA; included once per instruction set by
 * fm_instantiate.h. Included without FM_DOUBLE, this file includes itself
 * twice, with FM_DOUBLE 1 (double) and 0 (float); each of those inclusions
 * defines the type macros, includes the body and undefines them again.
 * It defines FM_T (element type), FM_SUF (f64 / f32) and FM_EXPFN (the
 * vectorizable exponential of that type, vexp.h). */
#ifndef FM_DOUBLE
#define FM_DOUBLE 1
#include "fm_types.h"
#define FM_DOUBLE 0
#include "fm_types.h"
#else
#if FM_DOUBLE
#define FM_T double
#define FM_SUF f64
#define FM_EXPFN fm_exp
#else
#define FM_T float
#define FM_SUF f32
#define FM_EXPFN fm_expf
#endif
#include FM_BODY
#undef FM_T
#undef FM_SUF
#undef FM_EXPFN
#undef FM_DOUBLE
#endif
