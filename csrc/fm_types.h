/* Instantiates the kernel body file FM_BODY (a quoted file name) for double
 * and float under the current FM_ISA; included once per instruction set by
 * fm_instantiate.h. Included without FM_DOUBLE, this file includes itself
 * twice, with FM_DOUBLE 1 (double) and 0 (float); each of those inclusions
 * defines the type macros, includes the body and undefines them again.
 * Besides FM_T / FM_SUF / FM_EXPFN, with FM_STREAM the FM_V* macros name the
 * AVX intrinsics used for non-temporal stores. */
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
#define FM_VSUF pd
#define FM_VLEN 4
#else
#define FM_T float
#define FM_SUF f32
#define FM_EXPFN fm_expf
#define FM_VSUF ps
#define FM_VLEN 8
#endif
#if FM_STREAM
#define FM_VLOADU FM_CAT2(_mm256_loadu, FM_VSUF)
#define FM_VSTREAM FM_CAT2(_mm256_stream, FM_VSUF)
#define FM_VMUL FM_CAT2(_mm256_mul, FM_VSUF)
#define FM_VSUB FM_CAT2(_mm256_sub, FM_VSUF)
#define FM_VSET1 FM_CAT2(_mm256_set1, FM_VSUF)
#endif
#include FM_BODY
#undef FM_T
#undef FM_SUF
#undef FM_EXPFN
#undef FM_VSUF
#undef FM_VLEN
#undef FM_VLOADU
#undef FM_VSTREAM
#undef FM_VMUL
#undef FM_VSUB
#undef FM_VSET1
#undef FM_DOUBLE
#endif
