/* generate.c: the initializers, as pure functions of (seed, tensor name,
 * element index). Philox draw k (128 bits) makes elements 4k to 4k + 3 of
 * a tensor of 32 bits or fewer, from four 24-bit uniforms, in float
 * precision; it makes elements 2k and 2k + 1 of an f64 tensor, from two
 * 53-bit uniforms, in double. A normal takes its elements in Box-Muller
 * pairs (cosine first); a truncated normal is the inverse CDF of a uniform.
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
#include "generate.h"

#include <math.h>

#include "philox.h"

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

/* Box-Muller: the pair of N(0, 1) values made from u1 in (0, 1] and u2 in
 * [0, 1). */
static void box_muller(bool single, double u1, double u2, double *v)
{
    if (single) {
        float radius = sqrtf(-2.0f * logf((float)u1)), angle = (float)(2 * M_PI) * (float)u2;
        v[0] = radius * cosf(angle);
        v[1] = radius * sinf(angle);
        return;
    }
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
        for (unsigned j = 0; j < per; j += 2)
            box_muller(s->single, 1.0 - u[j], u[j + 1], &v[j]); /* log(1 - u) is finite */
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
    float radius[2 * PHILOX_BATCH], angle[2 * PHILOX_BATCH];
    for (size_t d0 = 0; d0 < draws; d0 += PHILOX_BATCH) {
        size_t m = draws - d0 < PHILOX_BATCH ? draws - d0 : PHILOX_BATCH;
        philox4x32_10_batch(k + d0, m, s->key, r);
        for (size_t d = 0; d < m; d++)
            for (int p = 0; p < 2; p++) {
                radius[2 * d + p] = (float)(1.0 - (double)(r[2 * p][d] >> 8) * 0x1.0p-24);
                angle[2 * d + p] =
                    (float)(2 * M_PI) * (float)((double)(r[2 * p + 1][d] >> 8) * 0x1.0p-24);
            }
        for (size_t j = 0; j < 2 * m; j++)
            radius[j] = sqrtf(-2.0f * logf(radius[j]));
        double *o = out + 4 * d0;
        for (size_t j = 0; j < 2 * m; j++) {
            o[2 * j] = s->a + s->b * (double)(radius[j] * cosf(angle[j]));
            o[2 * j + 1] = s->a + s->b * (double)(radius[j] * sinf(angle[j]));
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
