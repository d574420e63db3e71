/* Instantiates special_kernels.h for double and float under the current
 * FM_ISA (included once per instruction set by special.c). With FM_STREAM,
 * the FM_V* macros name the AVX intrinsics used for non-temporal stores. */
#define FM_T double
#define FM_SUF f64
#define FM_EXPFN fm_exp
#if FM_STREAM
#define FM_VLEN 4
#define FM_VLOADU _mm256_loadu_pd
#define FM_VSTREAM _mm256_stream_pd
#define FM_VMUL _mm256_mul_pd
#define FM_VSUB _mm256_sub_pd
#define FM_VSET1 _mm256_set1_pd
#endif
#include "special_kernels.h"
#undef FM_T
#undef FM_SUF
#undef FM_EXPFN
#undef FM_VLEN
#undef FM_VLOADU
#undef FM_VSTREAM
#undef FM_VMUL
#undef FM_VSUB
#undef FM_VSET1
#define FM_T float
#define FM_SUF f32
#define FM_EXPFN fm_expf
#if FM_STREAM
#define FM_VLEN 8
#define FM_VLOADU _mm256_loadu_ps
#define FM_VSTREAM _mm256_stream_ps
#define FM_VMUL _mm256_mul_ps
#define FM_VSUB _mm256_sub_ps
#define FM_VSET1 _mm256_set1_ps
#endif
#include "special_kernels.h"
#undef FM_T
#undef FM_SUF
#undef FM_EXPFN
#undef FM_VLEN
#undef FM_VLOADU
#undef FM_VSTREAM
#undef FM_VMUL
#undef FM_VSUB
#undef FM_VSET1
