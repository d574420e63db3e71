/* Instantiates special_kernels.h for double and float under the current
 * FM_ISA (included once per instruction set by special.c). */
#define FM_T double
#define FM_SUF f64
#define FM_EXPFN fm_exp
#include "special_kernels.h"
#undef FM_T
#undef FM_SUF
#undef FM_EXPFN
#define FM_T float
#define FM_SUF f32
#define FM_EXPFN fm_expf
#include "special_kernels.h"
#undef FM_T
#undef FM_SUF
#undef FM_EXPFN
