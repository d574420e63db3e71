/*
 * Stamps out a family's kernel bodies. Define FM_BODY as the quoted name of
 * the body file (e.g. "special_kernels.h"), then include this header once
 * from the family's .c file: the body is instantiated for double and float
 * (fm_types.h), for baseline x86-64 (suffix _base) and, where
 * FM_MULTIVERSION, for AVX2+FMA (suffix _avx2) and AVX-512 (suffix _avx512,
 * 512-bit vectors: on Zen 4, whose AVX-512 units are 256 bits wide, they
 * still took 22% off float32 logsumexp and 8-15% off softmax, log_softmax
 * and cross-entropy, measured against the AVX2 clones in alternating
 * processes). FM_PICK(name, args...) then calls the clone chosen at run time
 * (see runtime.c).
 */
#include "fm_internal.h"
#include "vexp.h"

#define FM_ISA base
#include "fm_types.h"
#undef FM_ISA

#if FM_MULTIVERSION
#pragma GCC push_options
#pragma GCC target("avx2,fma")
#define FM_ISA avx2
#include "fm_types.h"
#undef FM_ISA
#pragma GCC pop_options
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512dq,avx512vl,avx2,fma,prefer-vector-width=512")
#define FM_ISA avx512
#include "fm_types.h"
#undef FM_ISA
#pragma GCC pop_options
#define FM_PICK(name, ...)                                                          \
    (fm_simd == 2   ? FM_CAT2(name, avx512)(__VA_ARGS__)                            \
     : fm_simd == 1 ? FM_CAT2(name, avx2)(__VA_ARGS__) : FM_CAT2(name, base)(__VA_ARGS__))
#else
#define FM_PICK(name, ...) FM_CAT2(name, base)(__VA_ARGS__)
#endif
