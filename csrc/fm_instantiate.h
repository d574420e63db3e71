/*
 * Stamps out a family's kernel bodies. Define FM_BODY as the quoted name of
 * the body file (e.g. "special_kernels.h"), then include this header once
 * from the family's .c file: the body is instantiated for double and float
 * (fm_types.h), for baseline x86-64 (suffix _base) and, where
 * FM_MULTIVERSION, for AVX2+FMA (suffix _avx2). FM_PICK(name, args...) then
 * calls the clone chosen at run time (see runtime.c).
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
#define FM_PICK(name, ...) \
    (fm_use_avx2 ? FM_CAT2(name, avx2)(__VA_ARGS__) : FM_CAT2(name, base)(__VA_ARGS__))
#else
#define FM_PICK(name, ...) FM_CAT2(name, base)(__VA_ARGS__)
#endif
