/* generate.c: the initializers, as pure functions of (seed, tensor name,
 * element index). Philox draw k (128 bits) makes elements 4k to 4k + 3 of
 * a tensor of 32 bits or fewer, from four 24-bit uniforms, in float
 * precision; it makes elements 2k and 2k + 1 of an f64 tensor, from two
 * 53-bit uniforms, in double. A normal takes its elements in Box-Muller
 * pairs (cosine first), in float with log, sin and cos of surg's own (the
 * same bits on every machine), in double with the C library's; a truncated
 * normal is the inverse CDF of a uniform.
 *
 * The formulas (fan_in and fan_out from the plan, by layout):
 *   normal(mean, std)        mean + std * N(0, 1)
 *   uniform(lo, hi)          lo + (hi - lo) * U[0, 1)
 *   truncated_normal(std)    std * T, T ~ N(0, 1) cut to [-2, 2]
 *   he_uniform               U(-l, l), l = sqrt(6 / fan_in)
 *   he_normal                T * sqrt(2 / fan_in) / 0.87962566103423978
 *   lecun_uniform            U(-l, l), l = sqrt(3 / fan_in)
 *   lecun_normal             T * sqrt(1 / fan_in) / 0.87962566103423978
 *   xavier_uniform           U(-l, l), l = sqrt(6 / (fan_in + fan_out))
 *   xavier_normal            T * sqrt(2 / (fan_in + fan_out)) / 0.879625...
 *   kaiming_uniform(a)       U(-b, b), b = sqrt(2 / (1 + a^2)) * sqrt(3 / fan_in)
 *   kaiming_normal(a)        N(0, 1) * sqrt(2 / (1 + a^2)) / sqrt(fan_in)
 * (0.87962566103423978 is the standard deviation of N(0, 1) cut to [-2, 2],
 * by which jax.nn.initializers.variance_scaling divides.) */
#include "runtime/generate.h"

#include <math.h>
#include <string.h>

#include "runtime/philox.h"

#define TRUNC_STD 0.87962566103423978

/* 53 random bits from two words, as a double in [0, 1). */
static double unit(uint32_t hi, uint32_t lo)
{
    return (double)(((uint64_t)hi << 21) ^ (lo >> 11)) * 0x1.0p-53;
}

static void draw(const gn_stream *s, uint64_t counter, uint32_t out[4])
{
    uint32_t ctr[4] = {(uint32_t)counter, (uint32_t)(counter >> 32), 0, 0};
    philox4x32_10(ctr, s->key, out);
}

/* Box-Muller in float precision, from the raw words of a draw, in code of
 * surg's own (no C library calls), so a normal f32 tensor is the same on
 * every machine and the loops over a batch vectorize. The polynomials are
 * the classic minimax fits for float (as in Cephes): within about 1 ulp. */

static inline uint32_t bits_of(float f)
{
    uint32_t b;
    memcpy(&b, &f, 4);
    return b;
}

static inline float float_of(uint32_t b)
{
    float f;
    memcpy(&f, &b, 4);
    return f;
}

/* log(x) for a normal float x > 0: x = f * 2^e with f in [sqrt(1/2),
 * sqrt(2)), log(f) = z - z^2/2 + z^3 P(z) for z = f - 1, and e log 2 added
 * in two parts so that it costs no precision. Branch-free, for the
 * vectorizer: choices are masks. */
static inline float log_f32(float x)
{
    uint32_t b = bits_of(x);
    uint32_t high = (b & 0x7FFFFFu) > 0x3504F3u; /* mantissa above sqrt(2) */
    int32_t e = (int32_t)(b >> 23) - 127 + (int32_t)high;
    float f = float_of((b & 0x7FFFFFu) | (0x3F800000u - (high << 23))); /* f / 2 when high */
    float fe = (float)e;
    float z = f - 1.0f, z2 = z * z;
    float p = 7.0376836292e-2f;
    p = p * z - 1.1514610310e-1f;
    p = p * z + 1.1676998740e-1f;
    p = p * z - 1.2420140846e-1f;
    p = p * z + 1.4249322787e-1f;
    p = p * z - 1.6668057665e-1f;
    p = p * z + 2.0000714765e-1f;
    p = p * z - 2.4999993993e-1f;
    p = p * z + 3.3333331174e-1f;
    float y = z * z2 * p - 2.12194440e-4f * fe - 0.5f * z2;
    return z + y + 0.693359375f * fe;
}

/* cos and sin of 2 pi m / 2^24: the nearest quarter turn j is taken out
 * exactly (in integers), leaving |x| <= pi/4, then turned back by swapping
 * and negating (as masks, for the vectorizer). */
static inline void sincos_turns(uint32_t m, float *c, float *s)
{
    uint32_t j = (m + (1u << 21)) >> 22;
    float x = (float)((int32_t)m - (int32_t)(j << 22)) * (float)(2 * M_PI * 0x1.0p-24);
    float x2 = x * x;
    float sn = ((-1.9515295891e-4f * x2 + 8.3321608736e-3f) * x2 - 1.6666654611e-1f) * x2 * x + x;
    float cs = ((2.443315711809948e-5f * x2 - 1.388731625493765e-3f) * x2 +
                4.166664568298827e-2f) * x2 * x2 - 0.5f * x2 + 1.0f;
    uint32_t swap = 0u - (j & 1u); /* odd quarter turns swap sine and cosine */
    uint32_t cb = (bits_of(sn) & swap) | (bits_of(cs) & ~swap);
    uint32_t sb = (bits_of(cs) & swap) | (bits_of(sn) & ~swap);
    *c = float_of(cb ^ (((j + 1) >> 1 & 1u) << 31)); /* negative in quarters 1 and 2 */
    *s = float_of(sb ^ ((j >> 1 & 1u) << 31));       /* and in 2 and 3 */
}

/* The pair of N(0, 1) values of two words: u1 = 1 - (w1 >> 8) / 2^24 in
 * (0, 1] (exact), angle 2 pi (w2 >> 8) / 2^24. */
static inline void box_muller_f32(uint32_t w1, uint32_t w2, float *c, float *s)
{
    float u1 = (float)(0x1000000u - (w1 >> 8)) * 0x1.0p-24f;
    float radius = sqrtf(-2.0f * log_f32(u1));
    sincos_turns(w2 >> 8, c, s);
    *c *= radius;
    *s *= radius;
}

/* Box-Muller in double, for f64 tensors: u1 in (0, 1], u2 in [0, 1). */
static void box_muller_f64(double u1, double u2, double *v)
{
    double radius = sqrt(-2.0 * log(u1)), angle = 2 * M_PI * u2;
    v[0] = radius * cos(angle);
    v[1] = radius * sin(angle);
}

/* The inverse of erf, by Giles' approximation refined with two Newton
 * steps against the C library's erf: accurate to a few ulps. */
static double erfinv(double y)
{
    double w = -log((1.0 - y) * (1.0 + y)), x;
    if (w < 5.0) {
        w -= 2.5;
        double p = 2.81022636e-08;
        p = 3.43273939e-07 + p * w;
        p = -3.5233877e-06 + p * w;
        p = -4.39150654e-06 + p * w;
        p = 0.00021858087 + p * w;
        p = -0.00125372503 + p * w;
        p = -0.00417768164 + p * w;
        p = 0.246640727 + p * w;
        p = 1.50140941 + p * w;
        x = p * y;
    } else {
        w = sqrt(w) - 3.0;
        double p = -0.000200214257;
        p = 0.000100950558 + p * w;
        p = 0.00134934322 + p * w;
        p = -0.00367342844 + p * w;
        p = 0.00573950773 + p * w;
        p = -0.0076224613 + p * w;
        p = 0.00943887047 + p * w;
        p = 1.00167406 + p * w;
        p = 2.83297682 + p * w;
        x = p * y;
    }
    for (int k = 0; k < 2; k++)
        x -= (erf(x) - y) / (2.0 / sqrt(M_PI) * exp(-x * x));
    return x;
}

/* N(0, 1) cut to [-2, 2]: the inverse CDF of u in [0, 1) mapped between
 * the CDF's values at -2 and 2. */
static double truncated(double u)
{
    double lo = erf(-2.0 / M_SQRT2), hi = erf(2.0 / M_SQRT2);
    double x = M_SQRT2 * erfinv(lo + (hi - lo) * u);
    return x < -2.0 ? -2.0 : x > 2.0 ? 2.0 : x;
}

/* The standard variates of Philox draw k, one per element: N(0, 1) for the
 * normal kinds, T for the truncated ones, U[0, 1) for the uniform ones. */
static void variates(const gn_stream *s, uint64_t k, double v[4])
{
    uint32_t r[4];
    draw(s, k, r);
    double u[4];
    if (s->single)
        for (int j = 0; j < 4; j++)
            u[j] = (double)(r[j] >> 8) * 0x1.0p-24;
    else
        u[0] = unit(r[0], r[1]), u[1] = unit(r[2], r[3]);
    unsigned per = s->per_draw;
    switch (s->init->kind) {
    case INIT_NORMAL:
    case INIT_KAIMING_NORMAL:
        for (unsigned j = 0; s->single && j < per; j += 2) {
            float c, sn;
            box_muller_f32(r[j], r[j + 1], &c, &sn);
            v[j] = c, v[j + 1] = sn;
        }
        if (!s->single)
            box_muller_f64(1.0 - u[0], u[1], v); /* log(1 - u) is finite */
        break;
    case INIT_TRUNCATED_NORMAL:
    case INIT_HE_NORMAL:
    case INIT_LECUN_NORMAL:
    case INIT_XAVIER_NORMAL:
        for (unsigned j = 0; j < per; j++)
            v[j] = truncated(u[j]);
        break;
    default:
        for (unsigned j = 0; j < per; j++)
            v[j] = u[j];
        break;
    }
}

void gn_prepare(gn_stream *s, const cg_init *init, surg_dtype dt)
{
    *s = (gn_stream){.init = init, .single = dt != SURG_F64};
    s->per_draw = s->single ? 4 : 2;
    if (cg_init_random(init->kind)) /* constants have no key (nor need one) */
        philox_key(init->seed, init->key, s->key);
    double fin = (double)init->fan_in, fout = (double)init->fan_out;
    double gain = sqrt(2.0 / (1.0 + init->p[0] * init->p[0]));
    double l = 0; /* the bound of a symmetric uniform: U(-l, l) = -l + 2l U */
    switch (init->kind) {
    case INIT_NORMAL: s->a = init->p[0], s->b = init->p[1]; break;
    case INIT_UNIFORM: s->a = init->p[0], s->b = init->p[1] - init->p[0]; break;
    case INIT_TRUNCATED_NORMAL: s->b = init->p[0]; break;
    case INIT_HE_UNIFORM: l = sqrt(6.0 / fin); break;
    case INIT_LECUN_UNIFORM: l = sqrt(3.0 / fin); break;
    case INIT_XAVIER_UNIFORM: l = sqrt(6.0 / (fin + fout)); break;
    case INIT_KAIMING_UNIFORM: l = gain * sqrt(3.0 / fin); break;
    case INIT_HE_NORMAL: s->b = sqrt(2.0 / fin) / TRUNC_STD; break;
    case INIT_LECUN_NORMAL: s->b = sqrt(1.0 / fin) / TRUNC_STD; break;
    case INIT_XAVIER_NORMAL: s->b = sqrt(2.0 / (fin + fout)) / TRUNC_STD; break;
    case INIT_KAIMING_NORMAL: s->b = gain / sqrt(fin); break;
    default: s->a = init->p[0]; break;
    }
    if (l)
        s->a = -l, s->b = 2 * l;
}

/* Normal f32 values of whole draws [k, k + draws), four per draw, exactly
 * as variates() makes them but a batch at a time, so the loops around the
 * C library's logf and sincosf stay tight. */
static void normals_single(const gn_stream *s, uint64_t k, size_t draws, double *out)
{
    uint32_t r[4][PHILOX_BATCH];
    float c[2][PHILOX_BATCH], sn[2][PHILOX_BATCH];
    for (size_t d0 = 0; d0 < draws; d0 += PHILOX_BATCH) {
        size_t m = draws - d0 < PHILOX_BATCH ? draws - d0 : PHILOX_BATCH;
        philox4x32_10_batch(k + d0, m, s->key, r);
        for (int p = 0; p < 2; p++)
            for (size_t d = 0; d < m; d++)
                box_muller_f32(r[2 * p][d], r[2 * p + 1][d], &c[p][d], &sn[p][d]);
        double *o = out + 4 * d0;
        for (size_t d = 0; d < m; d++)
            for (int p = 0; p < 2; p++) {
                o[4 * d + 2 * p] = s->a + s->b * (double)c[p][d];
                o[4 * d + 2 * p + 1] = s->a + s->b * (double)sn[p][d];
            }
    }
}

/* Every formula is a + b * (the standard variate). */
void gn_fill(const gn_stream *s, uint64_t first, size_t n, double *out)
{
    if (!cg_init_random(s->init->kind)) {
        for (size_t i = 0; i < n; i++)
            out[i] = s->a;
        return;
    }
    unsigned per = s->per_draw, j = (unsigned)(first % per);
    uint64_t k = first / per;
    double v[4];
    size_t i = 0;
    if (j) { /* the rest of a draw begun in the previous chunk */
        variates(s, k++, v);
        for (; j < per && i < n; j++)
            out[i++] = s->a + s->b * v[j];
    }
    bool fast = s->single && (s->init->kind == INIT_NORMAL || s->init->kind == INIT_KAIMING_NORMAL);
    if (fast) {
        size_t draws = (n - i) / per;
        normals_single(s, k, draws, out + i);
        k += draws;
        i += draws * per;
    }
    for (j = per; i < n; i++) {
        if (j == per) {
            variates(s, k++, v);
            j = 0;
        }
        out[i] = s->a + s->b * v[j++];
    }
}

void gn_fill_at(const gn_stream *s, const uint64_t *idx, size_t n, double *out)
{
    if (!cg_init_random(s->init->kind)) {
        gn_fill(s, 0, n, out);
        return;
    }
    uint64_t k = UINT64_MAX;
    double v[4];
    for (size_t i = 0; i < n; i++) {
        if (idx[i] / s->per_draw != k)
            variates(s, k = idx[i] / s->per_draw, v);
        out[i] = s->a + s->b * v[idx[i] % s->per_draw];
    }
}

/* The counter's third word is 1: no initializer's draw (whose third and
 * fourth words are 0) is ever one of these. */
void gn_bernoulli(double p, uint64_t seed, const char *key, uint32_t index,
                  const uint64_t *idx, uint64_t first, size_t n, double *out)
{
    uint32_t k[2], r[4];
    philox_key(seed, key, k);
    double below = p * 4294967296.0;
    uint64_t drawn = UINT64_MAX;
    for (size_t i = 0; i < n; i++) {
        uint64_t e = idx ? idx[i] : first + i;
        if (e / 4 != drawn) {
            drawn = e / 4;
            uint32_t ctr[4] = {(uint32_t)drawn, (uint32_t)(drawn >> 32), 1, index};
            philox4x32_10(ctr, k, r);
        }
        out[i] = (double)r[e % 4] < below;
    }
}
