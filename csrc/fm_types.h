/* Instantiates the kernel body file FM_BODY (a quoted file name) for double
 * and float under the current FM_ISA; included once per instruction set by
 * fm_instantiate.h. Included without FM_DOUBLE, this file includes itself
 * twice, with FM_DOUBLE 1 (double) and 0 (float); each of those inclusions
 * defines the type macros, includes the body and undefines them again.
 * It defines FM_T (element type), FM_SUF (f64 / f32), FM_EXPFN (the
 * vectorizable exponential of that type, vexp.h), FM_EXPFN_SUM (the one for
 * shifted arguments x - max whose exponentials are only summed in double:
 * for float, subnormal results flushed, see fm_expf_nonpos_flush),
 * FM_EXPFN_NORMAL (for rows whose max - min <= FM_EXP_NORMAL_RANGE, where
 * every exp(x - max) is a normal number: bit-identical and cheaper). */
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
#define FM_EXPFN_SUM fm_exp
#define FM_EXPFN_NORMAL fm_exp_normal
#define FM_EXP_NORMAL_RANGE (-FM_EXP_NORMAL_MIN)
#else
#define FM_T float
#define FM_SUF f32
#define FM_EXPFN fm_expf
#define FM_EXPFN_SUM fm_expf_nonpos_flush
#define FM_EXPFN_NORMAL fm_expf_normal
#define FM_EXP_NORMAL_RANGE (-FM_EXPF_NORMAL_MIN)
#endif
#include FM_BODY
#undef FM_T
#undef FM_SUF
#undef FM_EXPFN
#undef FM_EXPFN_SUM
#undef FM_EXPFN_NORMAL
#undef FM_EXP_NORMAL_RANGE
#undef FM_DOUBLE
#endif
