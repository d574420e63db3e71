/*
 * Vectorizable exponentials, fm_exp (double) and fm_expf (float), and a
 * logarithm, fm_log (double; C kernels only, see the end of the file).
 *
 * Written as straight-line, branch-free C so that gcc vectorizes the loops
 * that call them (libm's exp is a scalar call and blocks vectorization).
 * fastmle/_numba/vexp.py is the same algorithm with the same constants.
 *
 *   exp(x) = 2^n * exp(r),  n = round(x / ln2),  r = x - n*ln2,  |r| <= ln2/2
 *
 * - Inputs outside the range where exp(x) is finite and nonzero are not
 *   clamped (gcc turns a NaN-preserving clamp into a dozen mask operations);
 *   their lanes compute garbage that three final selects replace by +inf, 0
 *   or the NaN itself.
 * - n is found with the "shifter" trick: adding 1.5 * 2^52 (2^23 for float)
 *   rounds to an integer that then sits in the low mantissa bits, so no
 *   float->int conversion is needed (AVX2 has none for 64-bit integers).
 * - r uses a two-part ln2 (Cody-Waite), so n*LN2_HI is exact.
 * - exp(r): Taylor polynomial of degree 13 for double (truncation < 5e-18);
 *   for float, 1 + r + r^2 P(r) with P of degree 4 fitted for the smallest
 *   largest relative error on |r| <= ln2/2 (3.8e-9 with the coefficients
 *   rounded to float, under 0.07 ulp; Cephes' expf uses degree 5, 2.7e-9,
 *   one more multiply-add), evaluated by Horner's rule to the end:
 *   1 + r (1 + r (c2 + ...)). Forming (P r) r + r + 1 instead costs one
 *   operation more and, with fused multiply-adds, a largest error of 1.03
 *   ulp against 0.88 (without them, 0.99 against 1.18).
 * - 2^n is applied as two factors 2^h * 2^(n-h), h = round(n/2), each built
 *   from exponent bits: results near overflow come out right, and subnormal
 *   results are rounded once.
 * Tested (tests/test_vexp.py): within 1.5 ulp of the exact value over the
 * whole range (max seen 0.88 ulp, 1.18 in the baseline x86-64 clone, which
 * has no fused multiply-add), special values exactly as numpy.
 */
#ifndef FASTMLE_VEXP_H
#define FASTMLE_VEXP_H
#include <stdint.h>
#include <math.h>
#include <string.h>

#define FM_ALWAYS_INLINE static inline __attribute__((always_inline))
#define FM_SHIFTER_F 12582912.0f   /* 1.5 * 2^23: adding it rounds a float to an integer */

FM_ALWAYS_INLINE double fm_u64_as_f64(uint64_t u) { double d; memcpy(&d, &u, 8); return d; }
FM_ALWAYS_INLINE uint64_t fm_f64_as_u64(double d) { uint64_t u; memcpy(&u, &d, 8); return u; }
FM_ALWAYS_INLINE float fm_u32_as_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
FM_ALWAYS_INLINE uint32_t fm_f32_as_u32(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }

#define FM_SHIFTER 6755399441055744.0   /* 1.5 * 2^52 */

/* The shared core of the double exponentials: returns p = exp(r) and sets
 * *n to round(x / ln2) (as a double), where x = n ln2 + r. */
FM_ALWAYS_INLINE double fm_exp_reduced(double x, double *n)
{
    double kd = (x * 1.4426950408889634074 + FM_SHIFTER) - FM_SHIFTER;
    double r = (x - kd * 6.93147180369123816490e-01) - kd * 1.90821492927058770002e-10;
    double p = 1.0 / 6227020800.0;                     /* 1/13! */
    p = p * r + 1.0 / 479001600.0;
    p = p * r + 1.0 / 39916800.0;
    p = p * r + 1.0 / 3628800.0;
    p = p * r + 1.0 / 362880.0;
    p = p * r + 1.0 / 40320.0;
    p = p * r + 1.0 / 5040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    *n = kd;
    return p * r + 1.0;
}

/* 2^k from k + FM_SHIFTER (k integral in [-1022, 1023] in the low bits) */
FM_ALWAYS_INLINE double fm_pow2_shifted(double k_shifted)
{
    return fm_u64_as_f64((fm_f64_as_u64(k_shifted) + 1023u) << 52);
}

FM_ALWAYS_INLINE double fm_exp(double x)
{
    double kd;
    double p = fm_exp_reduced(x, &kd);
    double kh = kd * 0.5 + FM_SHIFTER;                    /* h in the low bits */
    double kl = (kd - (kh - FM_SHIFTER)) + FM_SHIFTER;    /* n - h in the low bits */
    double y = (p * fm_pow2_shifted(kh)) * fm_pow2_shifted(kl);
    y = x > 709.782712893383973096 ? INFINITY : y;     /* ln(DBL_MAX) */
    y = x < -745.1332191019412076235 ? 0.0 : y;        /* rounds to 0 below */
    return x != x ? x : y;
}

/* exp(x) for x in [FM_EXP_NORMAL_MIN, 0] (or NaN), where the result is a
 * normal number: 2^n as one factor and no range selects, a quarter fewer
 * instructions. Kernels use it for rows whose max - min is at most
 * -FM_EXP_NORMAL_MIN; the results are bit-identical to fm_exp's (tested). */
#define FM_EXP_NORMAL_MIN (-708.39)                    /* > ln(DBL_MIN) */
FM_ALWAYS_INLINE double fm_exp_normal(double x)
{
    double kd;
    double p = fm_exp_reduced(x, &kd);
    return p * fm_pow2_shifted(kd + FM_SHIFTER);
}

/* The shared core of the float exponentials: returns p = exp(r) and sets
 * *n to round(x / ln2) (as a float), where x = n ln2 + r. */
FM_ALWAYS_INLINE float fm_expf_reduced(float x, float *n)
{
    float kd = (x * 1.44269504088896341f + FM_SHIFTER_F) - FM_SHIFTER_F;
    float r = (x - kd * 0.693359375f) - kd * -2.12194440e-4f;
    float p = 1.3814599e-3f;
    p = p * r + 8.3687169e-3f;
    p = p * r + 4.1668388e-2f;
    p = p * r + 1.6666521e-1f;
    p = p * r + 4.9999994e-1f;
    p = p * r + 1.0f;
    *n = kd;
    return p * r + 1.0f;
}

/* 2^k from k + FM_SHIFTER_F (k integral in [-126, 127] in the low bits) */
FM_ALWAYS_INLINE float fm_pow2f_shifted(float k_shifted)
{
    return fm_u32_as_f32((fm_f32_as_u32(k_shifted) + 127u) << 23);
}

FM_ALWAYS_INLINE float fm_expf(float x)
{
    float kd;
    float p = fm_expf_reduced(x, &kd);
    float kh = kd * 0.5f + FM_SHIFTER_F;                    /* h in the low bits */
    float kl = (kd - (kh - FM_SHIFTER_F)) + FM_SHIFTER_F;   /* n - h in the low bits */
    float y = (p * fm_pow2f_shifted(kh)) * fm_pow2f_shifted(kl);
    y = x > 88.7228394f ? INFINITY : y;                /* ln(FLT_MAX) */
    y = x < -103.972084f ? 0.0f : y;                   /* rounds to 0 below */
    return x != x ? x : y;
}

/* As fm_exp_normal, for float. */
#define FM_EXPF_NORMAL_MIN (-87.3365)                  /* > ln(FLT_MIN) */
FM_ALWAYS_INLINE float fm_expf_normal(float x)
{
    float kd;
    float p = fm_expf_reduced(x, &kd);
    return p * fm_pow2f_shifted(kd + FM_SHIFTER_F);
}

/* exp(x) for x <= 0 (or NaN) whose result only feeds a sum accumulated in
 * double next to a term equal to 1 (the shifted rows of logsumexp): results
 * below FLT_MIN (x < -87.3) are flushed to 0, which moves such a sum by less
 * than 2^-126 per term; otherwise fm_expf_normal. Normal results are
 * bit-identical to fm_expf's. */
FM_ALWAYS_INLINE float fm_expf_nonpos_flush(float x)
{
    float y = fm_expf_normal(x);
    y = x < -87.3365479f ? 0.0f : y;                   /* ln(FLT_MIN) */
    return x != x ? x : y;
}

/* Natural logarithm, branch-free like the exponentials above (libm's log is
 * a scalar call, which kept entropy's loop from vectorizing). fdlibm's
 * algorithm (e_log.c), its one general form:
 *
 *   x = 2^k (1 + f), 1 + f in [sqrt(2)/2, sqrt(2)),  s = f / (2 + f),
 *   log(1 + f) = f - (f^2/2 - s (f^2/2 + R(s^2))),  R: fdlibm's Lg1-Lg7,
 *
 * with a two-part ln2 for k ln2. Subnormal x is first scaled by 2^54 (exact).
 * k is turned into a double with the shifter trick (AVX2 has no int64 ->
 * double conversion). 0 gives -inf, inf itself, negative numbers and NaN
 * NaN, as numpy. Tested (tests/test_vexp.py): within 1.5 ulp of the exact
 * value (max seen 0.76 ulp, 0.86 in the baseline x86-64 clone, which has no
 * fused multiply-add). */
FM_ALWAYS_INLINE double fm_log(double x)
{
    const int sub = x < 0x1p-1022;                      /* subnormal (0 and below: replaced at the end) */
    const uint64_t u = fm_f64_as_u64(sub ? x * 0x1p54 : x);
    const uint64_t hi = (u >> 32) & 0x000fffffu;        /* high mantissa bits */
    const uint64_t up = (hi + 0x95f64u) & 0x100000u;    /* 0x100000 when 1 + f would be >= sqrt(2) */
    /* exponent k + 1100 (positive), plus 1 when the mantissa is halved */
    const uint64_t k_biased = ((u >> 52) & 0x7ffu) - 1023u + 1100u + (up >> 20) - (sub ? 54u : 0u);
    const double dk = fm_u64_as_f64(0x4330000000000000u + k_biased) - (0x1p52 + 1100.0);
    const double f = fm_u64_as_f64(((hi | (up ^ 0x3ff00000u)) << 32) | (u & 0xffffffffu)) - 1.0;
    const double s = f / (2.0 + f), z = s * s, w = z * z;
    const double t1 = w * (3.999999999940941908e-01 + w * (2.222219843214978396e-01 + w * 1.531383769920937332e-01));
    const double t2 = z * (6.666666666666735130e-01 + w * (2.857142874366239149e-01
                      + w * (1.818357216161805012e-01 + w * 1.479819860511658591e-01)));
    const double hfsq = 0.5 * f * f, r = t1 + t2;
    double y = dk * 6.93147180369123816490e-01 - ((hfsq - (s * (hfsq + r) + dk * 1.90821492927058770002e-10)) - f);
    y = x == 0 ? -INFINITY : y;
    y = x == INFINITY ? x : y;
    return x < 0 || x != x ? NAN : y;
}

#endif
