/*
 * Body of the "losses" family (cross-entropy, NLL, BCE, Gaussian NLL,
 * entropy, KL), instantiated by losses.c through fm_instantiate.h once per
 * (element type, instruction set): FM_T, FM_SUF, FM_ISA and FM_EXPFN come
 * from fm_types.h / fm_instantiate.h.
 *
 * Numerics: every sum is accumulated in double, vectorized within blocks of
 * FM_BLOCK elements (FM_EXP_BLOCK for sums of exponentials, added in pairs
 * as in the special family), the block sums merged with Neumaier
 * compensation; a row
 * is processed by one thread, so the result does not depend on the thread
 * count. The softmax exponentials of the cross-entropy kernels are evaluated
 * in the element type (the hot path); everything else is computed in double.
 * Formulas follow fastmle/reference/losses.py term by term.
 *
 * A gradient array may be the logits array itself: each row's inputs are
 * read before that row's gradient is written, and no pointer is restrict.
 */
#define FN(name) FM_CAT3(name, FM_SUF, FM_ISA)
#define FM_BLOCK 256

/* RESULT = sum over J in [0, N) of the double expression EXPR, in blocks
 * merged with compensation (see above). */
#define FM_BLOCK_SUM(N, J, EXPR, RESULT)                                \
    do {                                                                \
        fm_ksum k_ = {0, 0};                                            \
        for (int64_t b0_ = 0; b0_ < (N); b0_ += FM_BLOCK) {             \
            int64_t b1_ = b0_ + FM_BLOCK < (N) ? b0_ + FM_BLOCK : (N);  \
            double bs_ = 0;                                             \
            _Pragma("omp simd reduction(+ : bs_)")                      \
            for (int64_t J = b0_; J < b1_; J++)                         \
                bs_ += (EXPR);                                          \
            fm_ksum_add(&k_, bs_);                                      \
        }                                                               \
        (RESULT) = fm_ksum_value(&k_);                                  \
    } while (0)

/* Rows in parallel, one thread per row; the body sees the row index i. */
#define FM_FOR_ROWS(rows, n, ...)                                                   \
    _Pragma("omp parallel for schedule(static) num_threads(fm_team_size((rows) * (n)))") \
    for (int64_t i = 0; i < (rows); i++) { __VA_ARGS__; }

#include "fm_common_kernels.h"   /* seg_max, prefetch, FM_EXP_BLOCK, sum_pairs */

static double FN(row_sum)(const FM_T *x, int64_t n)
{
    double s;
    FM_BLOCK_SUM(n, j, (double)x[j], s);
    return s;
}

/* Per-class factor of the smoothing / soft-target terms: w[j] (1 when w is
 * NULL), times the smoothed target a * t[j] + b when t is given. */
static inline double FN(coef)(const FM_T *w, const FM_T *t, double a, double b, int64_t j)
{
    double c = w ? (double)w[j] : 1.0;
    return t ? c * (a * (double)t[j] + b) : c;
}

/* One pass over a row z with max m: e_j = exp(z_j - m) in the element type,
 * written to store (which may be z itself) or, if store is NULL, to a block
 * buffer; returns sum e_j. With want_c, also *cz = sum c_j (z_j - m) and
 * *csum = sum c_j (c_j = coef(w, t, a, b, j)), read before store is written.
 * next (or NULL): the row to be processed after this one, n elements, pulled
 * into the cache while the exponentials are computed, so that memory and
 * arithmetic overlap. normal: every exp(z - m) is normal (exp_normal_ok),
 * so the exponentials may come from FM_EXPFN_NORMAL (same bits). */
static double FN(row_exp_sum)(const FM_T *z, int64_t n, double m, FM_T *store, int want_c,
                              const FM_T *w, const FM_T *t, double a, double b,
                              double *cz, double *csum, const FM_T *next, int normal)
{
    const FM_T sh = (FM_T)m;   /* exact: m is an element */
    fm_ksum ks = {0, 0}, kz = {0, 0}, kc = {0, 0};
    FM_T buf[FM_EXP_BLOCK];
    for (int64_t j0 = 0; j0 < n; j0 += FM_EXP_BLOCK) {
        const int64_t len = n - j0 < FM_EXP_BLOCK ? n - j0 : FM_EXP_BLOCK;
        const FM_T *zb = z + j0;
        FN(prefetch)(next ? next + j0 : NULL, len);
        /* the weighted sums in FM_BLOCK pieces (as the other sums of the
         * family, and Numba's seg_wdiff) */
        for (int64_t s0 = 0; want_c && s0 < len; s0 += FM_BLOCK) {
            const int64_t s1 = s0 + FM_BLOCK < len ? s0 + FM_BLOCK : len;
            double bz = 0, bc = 0;
#pragma omp simd reduction(+ : bz, bc)
            for (int64_t k = s0; k < s1; k++) {
                double c = FN(coef)(w, t, a, b, j0 + k);
                bz += c * ((double)zb[k] - m);
                bc += c;
            }
            fm_ksum_add(&kz, bz);
            fm_ksum_add(&kc, bc);
        }
        /* exponentials at full width, to store or the block buffer, then
         * summed in double (as seg_sum_exp in special_kernels.h) */
        FM_T *e = store ? store + j0 : buf;
        if (normal) {   /* same bits, cheaper: see exp_normal_ok */
#pragma omp simd
            for (int64_t k = 0; k < len; k++)
                e[k] = FM_EXPFN_NORMAL(zb[k] - sh);
        } else if (store) {
#pragma omp simd
            for (int64_t k = 0; k < len; k++)
                e[k] = FM_EXPFN(zb[k] - sh);
        } else {   /* only summed: see FM_EXPFN_SUM in fm_types.h */
#pragma omp simd
            for (int64_t k = 0; k < len; k++)
                e[k] = FM_EXPFN_SUM(zb[k] - sh);
        }
        fm_ksum_add(&ks, FN(sum_pairs)(e, len));
    }
    *cz = fm_ksum_value(&kz);
    *csum = fm_ksum_value(&kc);
    return fm_ksum_value(&ks);
}

/* g_j = e_j * F - G * c_j in place over the exponentials e; with G == 0 (no
 * smoothing, hard targets: the hot case) a plain rescale in the element type. */
static void FN(row_grad)(FM_T *e, int64_t n, double F, double G, const FM_T *w, const FM_T *t,
                         double a, double b)
{
    if (G == 0) {
        const FM_T f = (FM_T)F;
#pragma omp simd
        for (int64_t j = 0; j < n; j++)
            e[j] = e[j] * f;
    } else {
#pragma omp simd
        for (int64_t j = 0; j < n; j++)
            e[j] = (FM_T)((double)e[j] * F - G * FN(coef)(w, t, a, b, j));
    }
}

/* ---- categorical likelihood ---- */

/* One row of cross_entropy_rows (t == NULL, target class y) or of
 * cross_entropy_soft_rows (t = the row of target probabilities). With
 * L = log sum exp(z - m):
 *   hard: loss = (1-eps) w_y (L - (z_y - m)) + eps/n (W L - sum w_c (z_c - m))
 *   soft: loss = T L - sum c_c (z_c - m),  c = w ((1-eps) t + eps/n), T = sum c
 * g (may be z, or NULL) receives the gradient: the exponentials are stored
 * there, then turned into the gradient in place (the row is still in the
 * cache). next: see row_exp_sum. Returns the loss.
 * (Non-temporal stores through a scratch row, as softmax uses, measured
 * slower here: 1.4x vs 1.1x np.copyto on 32768 x 1000 float32, 2 threads.) */
static double FN(ce_row)(const FM_T *z, const FM_T *t, int64_t y, const FM_T *w, int64_t n,
                         double eps, double W, double gs, FM_T *g, const FM_T *next)
{
    const double a = 1.0 - eps, b = eps / (double)n;
    double lo;
    const double m = FN(seg_max_min)(z, n, &lo);
    const double zy = t ? 0.0 : (double)z[y] - m;   /* before g (maybe z) is written */
    const double wy = t || !w ? 1.0 : (double)w[y];
    double cz, csum;
    const double s = FN(row_exp_sum)(z, n, m, g, t || eps != 0, w, t, a, b, &cz, &csum, next,
                                     FN(exp_normal_ok)(m, lo));
    const double L = log(s);
    double loss;
    if (t) {
        loss = csum * L - cz;
    } else {
        loss = a * wy * (L - zy);
        if (eps != 0)   /* as torch: no smoothing term (and no 0 * inf) without smoothing */
            loss = loss + b * (W * L - cz);
    }
    if (g) {
        const double A = t ? csum : a * wy + b * W;   /* d loss / d z = p A - (terms) */
        FN(row_grad)(g, n, gs * (A / s), t ? gs : gs * b, w, t, a, b);  /* gs * A alone may overflow */
        if (!t)   /* the target's entry, in double as the reference */
            g[y] = (FM_T)(gs * (exp(zy - L) * A - b * wy) - gs * a * wy);
    }
    return loss;
}

/* One row of nll_rows (see the reference); g may be lp. */
static double FN(nll_row)(const FM_T *lp, int64_t y, const FM_T *w, int64_t n, double eps,
                          double gs, FM_T *g)
{
    const double wy = w ? (double)w[y] : 1.0;
    double loss = (1.0 - eps) * wy * -(double)lp[y];
    if (eps != 0) {
        double sw;
        FM_BLOCK_SUM(n, j, (double)lp[j] * FN(coef)(w, NULL, 0, 0, j), sw);
        loss = loss + eps / (double)n * -sw;
    }
    if (g) {
        const double G = -gs * eps / (double)n;
#pragma omp simd
        for (int64_t j = 0; j < n; j++)
            g[j] = (FM_T)(G * FN(coef)(w, NULL, 0, 0, j));
        g[y] = (FM_T)(G * wy - gs * (1.0 - eps) * wy);
    }
    return loss;
}

static void FN(ignored_row)(double *loss, FM_T *g, int64_t n)
{
    *loss = 0.0;
    if (g)
        memset(g, 0, (size_t)n * sizeof(FM_T));
}

static void FN(nll_rows)(const FM_T *log_probs, const int64_t *target, const FM_T *weight,
                         int64_t rows, int64_t n, int64_t ignore_index, double smoothing,
                         double grad_scale, double *loss, FM_T *grad)
{
    FM_FOR_ROWS(rows, n,
        FM_T *g = grad ? grad + i * n : NULL;
        if (target[i] == ignore_index)
            FN(ignored_row)(loss + i, g, n);
        else
            loss[i] = FN(nll_row)(log_probs + i * n, target[i], weight, n, smoothing,
                                  grad_scale, g))
}

static void FN(cross_entropy_rows)(const FM_T *logits, const int64_t *target, const FM_T *weight,
                                   int64_t rows, int64_t n, int64_t ignore_index,
                                   double smoothing, double grad_scale, double *loss, FM_T *grad)
{
    const double W = weight ? FN(row_sum)(weight, n) : (double)n;
    FM_FOR_ROWS(rows, n,
        FM_T *g = grad ? grad + i * n : NULL;
        if (target[i] == ignore_index)
            FN(ignored_row)(loss + i, g, n);
        else
            loss[i] = FN(ce_row)(logits + i * n, NULL, target[i], weight, n, smoothing, W,
                                 grad_scale, g, FN(next_row)(logits, i, rows, n)))
}

static void FN(cross_entropy_soft_rows)(const FM_T *logits, const FM_T *target,
                                        const FM_T *weight, int64_t rows, int64_t n,
                                        double smoothing, double grad_scale, double *loss,
                                        FM_T *grad)
{
    FM_FOR_ROWS(rows, n,
        loss[i] = FN(ce_row)(logits + i * n, target + i * n, 0, weight, n, smoothing, 0,
                             grad_scale, grad ? grad + i * n : NULL,
                             FN(next_row)(logits, i, rows, n)))
}

/* ---- elementwise likelihoods ----
 *
 * n elements in chunks of `chunk`: partial[c] is the sum of chunk c's losses
 * (blocks of FM_BLOCK added in simd lanes, merged with compensation), which
 * the caller adds up, so that the total does not depend on the thread count;
 * the per-element losses are stored only when `loss` is given (reduction
 * "none"). Each element is computed in double with vexp.h's branch-free
 * exp and log: libm's calls kept these loops scalar (4-5x slower).
 *
 * The body (the macro's last arguments) sees the element index j and K_,
 * j's index in its block; it sets l_[K_] to the element's loss and g1_[K_],
 * g2_[K_] to up to two gradients, which are copied to grad1 and grad2 when
 * given: the simd loop itself stores unconditionally (with `if (grad)
 * grad[j] = ...` in it, some of the versions gcc made of the loop ran
 * 1.3-1.7x slower). */
#define FM_FOR_CHUNKS(n, chunk, partial, loss, grad1, grad2, ...)                        \
    _Pragma("omp parallel for schedule(static) num_threads(fm_team_size(n))")           \
    for (int64_t c_ = 0; c_ < ((n) + (chunk) - 1) / (chunk); c_++) {                    \
        const int64_t c1_ = (c_ + 1) * (chunk) < (n) ? (c_ + 1) * (chunk) : (n);          \
        double l_[FM_BLOCK];                                                            \
        FM_T g1_[FM_BLOCK], g2_[FM_BLOCK];                                              \
        fm_ksum sum_ = {0, 0};                                                          \
        for (int64_t b0_ = c_ * (chunk); b0_ < c1_; b0_ += FM_BLOCK) {                  \
            const int64_t len_ = b0_ + FM_BLOCK < c1_ ? FM_BLOCK : c1_ - b0_;           \
            _Pragma("omp simd")                                                         \
            for (int64_t K_ = 0; K_ < len_; K_++) {                                     \
                const int64_t j = b0_ + K_;                                             \
                __VA_ARGS__;                                                            \
            }                                                                           \
            double bs_ = 0;                                                             \
            _Pragma("omp simd reduction(+ : bs_)")                                      \
            for (int64_t k_ = 0; k_ < len_; k_++)                                       \
                bs_ += l_[k_];                                                          \
            fm_ksum_add(&sum_, bs_);                                                    \
            for (int64_t k_ = 0; (loss) && k_ < len_; k_++)                             \
                (loss)[b0_ + k_] = (FM_T)l_[k_];                                        \
            if (grad1)                                                                  \
                memcpy((grad1) + b0_, g1_, len_ * sizeof(FM_T));                        \
            if (grad2)                                                                  \
                memcpy((grad2) + b0_, g2_, len_ * sizeof(FM_T));                        \
        }                                                                               \
        (partial)[c_] = fm_ksum_value(&sum_);                                           \
    }

/* Binary cross-entropy of one element before its weight; *g its gradient.
 * torch's loss is (1 - t) x + lw softplus(-x), lw = 1 + (pw - 1) t, and its
 * gradient ((pw t + 1) - t) sigmoid(x) - pw t (with pos_weight; else
 * sigmoid(x) - t). For finite x and t in [0, 1] they are computed as
 * (1 - t) softplus(x) + pw t softplus(-x) and (1 - t) sigmoid(x) - pw t
 * sigmoid(-x), which cancel nothing for hard targets (t = 0, x = -40:
 * x + (40 + 4e-18) was 0); elsewhere (infinite x, targets that are no
 * probabilities) in torch's forms, with torch's special values (t = inf
 * with pos_weight: a NaN gradient). Both forms are computed and one
 * selected, which keeps the loop branch-free; has_pw is a constant in
 * each of bce_with_logits's loops. */
FM_ALWAYS_INLINE double FN(bce_term)(double x, double t, double pw, int has_pw, double *g)
{
    /* log1p(e), branch-free: log(u) of u = 1 + e rounded, corrected by its
     * rounding error (u - 1) - e (exact) to first order. One division,
     * 1 / u, serves it and both sigmoids: divisions bound this loop. */
    const double e = fm_exp(-fabs(x)), u = 1.0 + e, inv_u = 1.0 / u;
    const double l1pe = fm_log(u) - ((u - 1.0) - e) * inv_u;
    const double big = inv_u, small = e * inv_u;
    const double sig = x >= 0 ? big : small, sig_neg = x >= 0 ? small : big;
    const double pwt = pw * t, lw = has_pw ? 1.0 + (pw - 1.0) * t : 1.0;
    const int stable = fabs(x) < INFINITY && t >= 0 && t <= 1;
    const double relu_neg = (-x > 0 || x != x) ? -x : 0.0;   /* max(-x, 0), NaN kept */
    const double stable_loss = (1.0 - t) * ((x > 0 ? x : 0.0) + l1pe) + pwt * ((x < 0 ? -x : 0.0) + l1pe);
    const double torch_loss = (1.0 - t) * x + lw * (l1pe + relu_neg);
    const double torch_grad = has_pw ? ((pwt + 1.0) - t) * sig - pwt : sig - t;
    *g = stable ? (1.0 - t) * sig - pwt * sig_neg : torch_grad;
    return stable ? stable_loss : torch_loss;
}

/* one element of bce_with_logits with weight W and pos_weight PW
 * (expressions in j; HAS_PW 0 when there is none: PW is then 1) */
#define FM_BCE_ELEMENT(W, PW, HAS_PW)                                                   \
    const double w = (W);                                                               \
    double g;                                                                           \
    l_[K_] = w * FN(bce_term)(logits[j], target[j], (PW), (HAS_PW), &g);                \
    g1_[K_] = (FM_T)(grad_scale * w * g)

/* One loop per combination of the optional weights: in a single loop,
 * `weight ? weight[j] : 1.0` became a masked load from NULL, whose faults
 * the processor suppresses at a cost (no weights ran 1.6x slower than two
 * weight arrays). */
static void FN(bce_with_logits)(const FM_T *logits, const FM_T *target, const FM_T *weight,
                                const FM_T *pos_weight, int64_t n, double grad_scale, int64_t chunk,
                                double *partial, FM_T *loss, FM_T *grad)
{
    FM_T *const no_grad = NULL;
    if (weight && pos_weight)
        FM_FOR_CHUNKS(n, chunk, partial, loss, grad, no_grad, FM_BCE_ELEMENT(weight[j], pos_weight[j], 1))
    else if (weight)
        FM_FOR_CHUNKS(n, chunk, partial, loss, grad, no_grad, FM_BCE_ELEMENT(weight[j], 1.0, 0))
    else if (pos_weight)
        FM_FOR_CHUNKS(n, chunk, partial, loss, grad, no_grad, FM_BCE_ELEMENT(1.0, pos_weight[j], 1))
    else
        FM_FOR_CHUNKS(n, chunk, partial, loss, grad, no_grad, FM_BCE_ELEMENT(1.0, 1.0, 0))
}
#undef FM_BCE_ELEMENT

/* max(var, eps), NaN kept */
static inline double FN(clamp_var)(double var, double eps)
{
    return (var > eps || var != var) ? var : eps;
}

/* Gaussian negative log-likelihood of one element before its constant, with
 * d = pred - target and v = clamp_var(var, eps): 0.5 (log v + d^2 / v);
 * the gradients times s: *gp = s d / v, *gv = s 0.5 (1 / v - d^2 / v^2)
 * (the clamp passes the gradient, as torch's). */
FM_ALWAYS_INLINE double FN(gaussian_term)(double d, double v, double s, double *gp, double *gv)
{
    *gp = s * d / v;
    *gv = s * 0.5 * (1.0 / v - d * d / (v * v));
    return 0.5 * (fm_log(v) + d * d / v);
}

/* one element of gaussian_nll with clamped variance V (an expression in j) */
#define FM_GAUSSIAN_ELEMENT(V)                                                          \
    double gp, gv;                                                                      \
    l_[K_] = loss_scale * (FN(gaussian_term)((double)pred[j] - (double)target[j], (V), grad_scale, \
                                             &gp, &gv) + constant);                     \
    g1_[K_] = (FM_T)gp;                                                                 \
    g2_[K_] = (FM_T)gv

/* Each loss times loss_scale (mse_loss: 2), in double before it is stored.
 * var_n == 1: one variance for every element, clamped on entry and read
 * from a block of copies (as a loop invariant, gcc kept the loop scalar:
 * 1.6x slower). */
static void FN(gaussian_nll)(const FM_T *pred, const FM_T *target, const FM_T *var, int64_t n,
                             int64_t var_n, double eps, int full, double loss_scale, double grad_scale,
                             int64_t chunk, double *partial, FM_T *loss, FM_T *grad_pred, FM_T *grad_var)
{
    const double constant = full ? 0.91893853320467274178 : 0.0;   /* 0.5 * log(2 pi) */
    double var_block[FM_BLOCK];
    for (int k = 0; var_n == 1 && k < FM_BLOCK; k++)
        var_block[k] = FN(clamp_var)(var[0], eps);
    if (var_n == 1)
        FM_FOR_CHUNKS(n, chunk, partial, loss, grad_pred, grad_var, FM_GAUSSIAN_ELEMENT(var_block[K_]))
    else
        FM_FOR_CHUNKS(n, chunk, partial, loss, grad_pred, grad_var,
                      FM_GAUSSIAN_ELEMENT(FN(clamp_var)(var[j], eps)))
}
#undef FM_GAUSSIAN_ELEMENT

/* ---- information measures ---- */

/* x (log x - log y), 0 where x == 0; y == 1 gives x log x */
static inline double FN(xlogratio)(double x, double y)
{
    return x != 0 ? x * (fm_log(x) - fm_log(y)) : 0.0;   /* vexp.h: libm's log would not vectorize */
}

/* The largest of a row of finite values >= 0 by which the row is divided
 * before its sum is used (see kl_div_row), or 1 when that cannot help: an
 * infinite or NaN element, or a row of zeros. */
static double FN(row_scale)(const FM_T *x, int64_t n)
{
    const double m = FN(seg_max)(x, n);
    return m > 0 && !isinf(m) ? m : 1.0;
}

/* sum x / scale in double: the sum of a row divided by row_scale's value */
static double FN(scaled_sum)(const FM_T *x, int64_t n, double scale)
{
    double s;
    FM_BLOCK_SUM(n, j, (double)x[j] / scale, s);
    return s;
}

/* H = log1p(R) - sum u log u / (1 + R): u = p / M with M the largest
 * element, R the sum of u over every element but one occurrence of M. Both
 * terms are >= 0, where log S - sum p log p / S cancels for rows of low
 * entropy (see reference.losses.entropy_rows). u is p f (1 / (M f)): f is a
 * power of two (exact) that puts M f where 1 / (M f) is a normal number. A
 * row holding NaN or inf, or only zeros, gives NaN. */
static double FN(entropy_row)(const FM_T *p, int64_t n)
{
    const double m = FN(seg_max)(p, n);   /* ignores NaN; a NaN reaches R below */
    if (!(m > 0) || isinf(m))
        return NAN;
    const double f = m < 0x1p-1000 ? 0x1p600 : m > 0x1p1000 ? 0x1p-600 : 1.0, inv = 1.0 / (m * f);
    fm_ksum rest = {0, 0}, ulogu = {0, 0};
    double ties = 0;   /* elements equal to M */
    for (int64_t b0 = 0; b0 < n; b0 += FM_BLOCK) {
        const int64_t b1 = b0 + FM_BLOCK < n ? b0 + FM_BLOCK : n;
        double br = 0, bu = 0;
#pragma omp simd reduction(+ : br, bu, ties)
        for (int64_t j = b0; j < b1; j++) {
            const double v = (double)p[j], u = v * f * inv;
            const int other = v != m;   /* NaN too */
            br += other ? u : 0.0;
            bu += other && u != 0 ? u * fm_log(u) : 0.0;   /* vexp.h: libm's log would not vectorize */
            ties += other ? 0.0 : 1.0;
        }
        fm_ksum_add(&rest, br);
        fm_ksum_add(&ulogu, bu);
    }
    const double r = fm_ksum_value(&rest) + (ties - 1);
    return log1p(r) - fm_ksum_value(&ulogu) / (1.0 + r);
}

/* sum p/Sp log((p/Sp) / (q/Sq)); a sum that overflows is taken of the row
 * divided by its largest element, as entropy_row does. NaN where a row
 * holds NaN or inf (its sum does), as scipy. */
static double FN(kl_div_row)(const FM_T *p, const FM_T *q, int64_t n)
{
    double sp = FN(row_sum)(p, n), sq = FN(row_sum)(q, n), mp = 1.0, mq = 1.0;
    if (isinf(sp)) {
        mp = FN(row_scale)(p, n);
        sp = FN(scaled_sum)(p, n, mp);
    }
    if (isinf(sq)) {
        mq = FN(row_scale)(q, n);
        sq = FN(scaled_sum)(q, n, mq);
    }
    if (!isfinite(sp) || !isfinite(sq))   /* else inf / inf = NaN in q could meet p = 0 and be skipped */
        return NAN;
    double r;
    if (mp == 1.0 && mq == 1.0)   /* a division by 1 made kl_div 18% slower (32768 x 1000) */
        FM_BLOCK_SUM(n, j, FN(xlogratio)(p[j] / sp, q[j] / sq), r);
    else
        FM_BLOCK_SUM(n, j, FN(xlogratio)((double)p[j] / mp / sp, (double)q[j] / mq / sq), r);
    return r;
}

/* log sum exp(z - m) in double; *m = the row max */
static double FN(row_lse)(const FM_T *z, int64_t n, double *m)
{
    const double mz = FN(seg_max)(z, n);
    double s;
    FM_BLOCK_SUM(n, j, fm_exp((double)z[j] - mz), s);
    *m = mz;
    return log(s);
}

/* p (lp - lq) with p = exp(lp), 0 where p == 0 (even if lp = -inf) */
static inline double FN(plogratio)(double lp, double lq)
{
    const double p = fm_exp(lp);
    return p != 0 ? p * (lp - lq) : 0.0;
}

/* sum_c p_c (lp_c - lq_c) with lp = log_softmax(zp), p = exp(lp), and
 * lq = log_softmax(zq), or lq = 0 when zq is NULL (minus the entropy). */
static double FN(softmax_kl_row)(const FM_T *zp, const FM_T *zq, int64_t n)
{
    double mp, mq;
    const double lsp = FN(row_lse)(zp, n, &mp);
    double r;
    if (!zq) {
        FM_BLOCK_SUM(n, j, FN(plogratio)(((double)zp[j] - mp) - lsp, 0.0), r);
        return r;
    }
    const double lsq = FN(row_lse)(zq, n, &mq);
    FM_BLOCK_SUM(n, j, FN(plogratio)(((double)zp[j] - mp) - lsp, ((double)zq[j] - mq) - lsq), r);
    return r;
}

static void FN(entropy_rows)(const FM_T *probs, int64_t rows, int64_t n, double *out)
{
    FM_FOR_ROWS(rows, n, out[i] = FN(entropy_row)(probs + i * n, n))
}

static void FN(entropy_from_logits_rows)(const FM_T *logits, int64_t rows, int64_t n, double *out)
{
    FM_FOR_ROWS(rows, n, out[i] = -FN(softmax_kl_row)(logits + i * n, NULL, n))
}

static void FN(kl_div_rows)(const FM_T *p, const FM_T *q, int64_t rows, int64_t n, double *out)
{
    FM_FOR_ROWS(rows, n, out[i] = FN(kl_div_row)(p + i * n, q + i * n, n))
}

static void FN(kl_div_from_logits_rows)(const FM_T *logits_p, const FM_T *logits_q, int64_t rows,
                                        int64_t n, double *out)
{
    FM_FOR_ROWS(rows, n, out[i] = FN(softmax_kl_row)(logits_p + i * n, logits_q + i * n, n))
}

#undef FN
#undef FM_BLOCK
#undef FM_EXP_BLOCK
#undef FM_BLOCK_SUM
#undef FM_FOR_ROWS
#undef FM_FOR_CHUNKS
