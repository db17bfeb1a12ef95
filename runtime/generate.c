/* generate.c: the initializers, as pure functions of (seed, tensor name,
 * element index). Element i of a uniform tensor comes from Philox counter i;
 * elements 2k and 2k+1 of a normal tensor are the pair Box-Muller makes from
 * counter k; a truncated normal is the inverse CDF of a uniform. Tensors of
 * 32 bits or fewer are made in float precision, f64 ones in double.
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

/* N(0, 1) for element i: Box-Muller on the pair i/2. */
static double normal_at(const gn_stream *s, uint64_t i)
{
    uint32_t r[4];
    draw(s, i / 2, r);
    double u1 = 1.0 - unit(r[0], r[1]); /* (0, 1]: log is finite */
    double u2 = unit(r[2], r[3]);
    if (s->single) {
        float radius = sqrtf(-2.0f * logf((float)u1)), angle = (float)(2 * M_PI) * (float)u2;
        return i & 1 ? radius * sinf(angle) : radius * cosf(angle);
    }
    double radius = sqrt(-2.0 * log(u1)), angle = 2 * M_PI * u2;
    return i & 1 ? radius * sin(angle) : radius * cos(angle);
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

/* N(0, 1) cut to [-2, 2] for element i: the inverse CDF of a uniform drawn
 * between the CDF's values at -2 and 2. */
static double truncated_at(const gn_stream *s, uint64_t i)
{
    uint32_t r[4];
    draw(s, i, r);
    double lo = erf(-2.0 / M_SQRT2), hi = erf(2.0 / M_SQRT2);
    double y = lo + (hi - lo) * unit(r[0], r[1]);
    double x = M_SQRT2 * erfinv(y);
    return x < -2.0 ? -2.0 : x > 2.0 ? 2.0 : x;
}

static double uniform_at(const gn_stream *s, uint64_t i)
{
    uint32_t r[4];
    draw(s, i, r);
    return unit(r[0], r[1]);
}

void gn_prepare(gn_stream *s, const cg_init *init, surg_dtype dt)
{
    *s = (gn_stream){.init = init, .single = dt != SURG_F64};
    philox_key(init->seed, init->key, s->key);
    double fin = (double)init->fan_in, fout = (double)init->fan_out;
    double gain = sqrt(2.0 / (1.0 + init->p[0] * init->p[0]));
    switch (init->kind) {
    case INIT_NORMAL: s->a = init->p[0], s->b = init->p[1]; break;
    case INIT_UNIFORM: s->a = init->p[0], s->b = init->p[1] - init->p[0]; break;
    case INIT_TRUNCATED_NORMAL: s->b = init->p[0]; break;
    case INIT_HE_UNIFORM: s->b = sqrt(6.0 / fin); break;
    case INIT_LECUN_UNIFORM: s->b = sqrt(3.0 / fin); break;
    case INIT_XAVIER_UNIFORM: s->b = sqrt(6.0 / (fin + fout)); break;
    case INIT_HE_NORMAL: s->b = sqrt(2.0 / fin) / TRUNC_STD; break;
    case INIT_LECUN_NORMAL: s->b = sqrt(1.0 / fin) / TRUNC_STD; break;
    case INIT_XAVIER_NORMAL: s->b = sqrt(2.0 / (fin + fout)) / TRUNC_STD; break;
    case INIT_KAIMING_UNIFORM: s->b = gain * sqrt(3.0 / fin); break;
    case INIT_KAIMING_NORMAL: s->b = gain / sqrt(fin); break;
    default: s->a = init->p[0]; break;
    }
}

static double value_at(const gn_stream *s, uint64_t i)
{
    switch (s->init->kind) {
    case INIT_NORMAL:
    case INIT_KAIMING_NORMAL: return s->a + s->b * normal_at(s, i);
    case INIT_UNIFORM: return s->a + s->b * uniform_at(s, i);
    case INIT_HE_UNIFORM:
    case INIT_LECUN_UNIFORM:
    case INIT_XAVIER_UNIFORM:
    case INIT_KAIMING_UNIFORM: return s->b * (2.0 * uniform_at(s, i) - 1.0);
    case INIT_TRUNCATED_NORMAL:
    case INIT_HE_NORMAL:
    case INIT_LECUN_NORMAL:
    case INIT_XAVIER_NORMAL: return s->b * truncated_at(s, i);
    default: return s->a; /* a value, zeros, ones */
    }
}

void gn_fill(const gn_stream *s, uint64_t first, size_t n, double *out)
{
    if (!cg_init_random(s->init->kind)) {
        for (size_t i = 0; i < n; i++)
            out[i] = s->a;
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = value_at(s, first + i);
}

void gn_fill_at(const gn_stream *s, const uint64_t *idx, size_t n, double *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = value_at(s, idx[i]);
}
