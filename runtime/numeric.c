/* numeric.c: one rounding routine for every narrow float, described by its
 * exponent and mantissa widths; integers saturate; all data little-endian. */
#include "runtime/numeric.h"

#include <math.h>
#include <string.h>

/* A binary float format narrower than a double. */
typedef struct minifloat {
    int exp_bits, man_bits, bias;
    bool ieee;        /* the top exponent is infinity and NaN (else: only the
                         all-ones code is NaN, as in f8e4m3fn) */
    uint32_t nan;     /* the NaN code written (sign added) */
} minifloat;

static const minifloat F16 = {5, 10, 15, true, 0x7E00};
static const minifloat BF16 = {8, 7, 127, true, 0x7FC0};
static const minifloat E5M2 = {5, 2, 15, true, 0x7E};
static const minifloat E4M3 = {4, 3, 7, false, 0x7F};

static uint32_t encode_mini(const minifloat *f, double v)
{
    uint32_t sign = signbit(v) ? 1u << (f->exp_bits + f->man_bits) : 0;
    uint32_t top = (1u << f->exp_bits) - 1; /* the all-ones exponent field */
    uint32_t inf = f->ieee ? sign | top << f->man_bits : sign | f->nan;
    if (isnan(v))
        return sign | f->nan;
    double a = fabs(v);
    if (isinf(a))
        return inf;
    if (a == 0)
        return sign;
    int e;
    frexp(a, &e);
    int x = e - 1;                      /* a = 1.f * 2^x */
    int emin = 1 - f->bias;
    if (x > (int)top - f->bias + 1)
        return inf; /* far past the largest finite value */
    int shift = (x < emin ? emin : x) - f->man_bits; /* the value of one unit */
    double n = rint(ldexp(a, -shift));  /* exact scaling; ties to even */
    uint64_t units = (uint64_t)n;
    uint32_t field;
    if (x < emin) {
        field = 0; /* subnormal; rounding up to the smallest normal carries in */
    } else {
        if (units == 1ull << (f->man_bits + 1)) { /* rounded up to the next binade */
            units >>= 1;
            x++;
        }
        field = (uint32_t)(x + f->bias);
        units -= 1ull << f->man_bits;
    }
    uint64_t code = ((uint64_t)field << f->man_bits) + units;
    uint64_t max = f->ieee ? ((uint64_t)top << f->man_bits) - 1
                           : ((uint64_t)top << f->man_bits) + (1u << f->man_bits) - 2;
    if (code > max)
        return inf; /* too large: infinity, or NaN where there is none */
    return sign | (uint32_t)code;
}

static double decode_mini(const minifloat *f, uint32_t code)
{
    uint32_t man = code & ((1u << f->man_bits) - 1);
    uint32_t exp = (code >> f->man_bits) & ((1u << f->exp_bits) - 1);
    bool neg = (code >> (f->exp_bits + f->man_bits)) & 1;
    uint32_t top = (1u << f->exp_bits) - 1;
    double v;
    if (f->ieee && exp == top)
        v = man ? NAN : INFINITY;
    else if (!f->ieee && exp == top && man == (1u << f->man_bits) - 1)
        v = NAN;
    else if (exp == 0)
        v = ldexp((double)man, 1 - f->bias - f->man_bits);
    else
        v = ldexp((double)(man | 1u << f->man_bits), (int)exp - f->bias - f->man_bits);
    return neg ? -v : v;
}

uint16_t nm_f16_from(double v) { return (uint16_t)encode_mini(&F16, v); }
double nm_f16_to(uint16_t h) { return decode_mini(&F16, h); }
uint8_t nm_e4m3_from(double v) { return (uint8_t)encode_mini(&E4M3, v); }
double nm_e4m3_to(uint8_t b) { return decode_mini(&E4M3, b); }
uint8_t nm_e5m2_from(double v) { return (uint8_t)encode_mini(&E5M2, v); }
double nm_e5m2_to(uint8_t b) { return decode_mini(&E5M2, b); }

double nm_bf16_to(uint16_t b)
{
    uint32_t bits = (uint32_t)b << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

uint16_t nm_bf16_from(double v)
{
    float f = (float)v;
    if ((double)f == v || isnan(v)) {
        /* Exactly a float (the common case): round its low 16 bits away. */
        uint32_t bits;
        memcpy(&bits, &f, 4);
        if (isnan(f))
            return (uint16_t)((bits >> 16) | 0x40);
        return (uint16_t)((bits + 0x7FFF + ((bits >> 16) & 1)) >> 16);
    }
    return (uint16_t)encode_mini(&BF16, v); /* straight from the double */
}

/* ---- integers ---------------------------------------------------------- */

static double bounded(double v, double lo, double hi, nm_int_mode mode)
{
    if (isnan(v))
        return 0;
    v = mode == NM_TRUNCATE ? trunc(v) : rint(v);
    return v < lo ? lo : v > hi ? hi : v;
}

static void int_range(surg_dtype dt, double *lo, double *hi)
{
    unsigned bits = surg_dtype_bits(dt);
    if (surg_dtype_kind_of(dt) == SURG_KIND_UINT) {
        *lo = 0;
        *hi = ldexp(1, (int)bits) - 1;
    } else {
        *lo = -ldexp(1, (int)bits - 1);
        *hi = ldexp(1, (int)bits - 1) - 1;
    }
}

double nm_round(surg_dtype dt, double v, nm_int_mode mode)
{
    switch (dt) {
    case SURG_F64: return v;
    case SURG_F32: return (double)(float)v;
    case SURG_F16: return nm_f16_to(nm_f16_from(v));
    case SURG_BF16: return nm_bf16_to(nm_bf16_from(v));
    case SURG_F8_E4M3: return nm_e4m3_to(nm_e4m3_from(v));
    case SURG_F8_E5M2: return nm_e5m2_to(nm_e5m2_from(v));
    case SURG_BOOL: return v != 0 || isnan(v);
    default: {
        double lo, hi;
        int_range(dt, &lo, &hi);
        /* The top of i64 and u64 is not a double: it is 2^63 (2^64) here,
         * and int_bits() stores it as the top integer. */
        return bounded(v, lo, hi, mode);
    }
    }
}

void nm_round_n(surg_dtype dt, double *v, size_t n, nm_int_mode mode)
{
    if (dt == SURG_F64)
        return;
    if (dt == SURG_F32) { /* the common case, in a loop the compiler vectorizes */
        for (size_t i = 0; i < n; i++)
            v[i] = (double)(float)v[i];
        return;
    }
    for (size_t i = 0; i < n; i++)
        v[i] = nm_round(dt, v[i], mode);
}

/* ---- packed data -------------------------------------------------------- */

/* Unaligned little-endian loads and stores: the data may sit anywhere. */
static uint64_t load(const void *d, uint64_t i, size_t size)
{
    uint64_t v = 0;
    memcpy(&v, (const char *)d + i * size, size);
    return v;
}

static int64_t load_signed(const void *d, uint64_t i, size_t size)
{
    uint64_t v = load(d, i, size);
    unsigned shift = 64 - 8 * (unsigned)size;
    return (int64_t)(v << shift) >> shift; /* sign-extend */
}

static void store(void *d, uint64_t i, size_t size, uint64_t v)
{
    memcpy((char *)d + i * size, &v, size);
}

static double decode_one(surg_dtype dt, const void *d, uint64_t i)
{
    switch (dt) {
    case SURG_BOOL: return load(d, i, 1) != 0;
    case SURG_U8:
    case SURG_U16:
    case SURG_U32:
    case SURG_U64: return (double)load(d, i, surg_dtype_bits(dt) / 8);
    case SURG_I8:
    case SURG_I16:
    case SURG_I32:
    case SURG_I64: return (double)load_signed(d, i, surg_dtype_bits(dt) / 8);
    case SURG_F16: return nm_f16_to((uint16_t)load(d, i, 2));
    case SURG_BF16: return nm_bf16_to((uint16_t)load(d, i, 2));
    case SURG_F32: {
        float f;
        memcpy(&f, (const char *)d + i * 4, 4);
        return f;
    }
    case SURG_F64: {
        double v;
        memcpy(&v, (const char *)d + i * 8, 8);
        return v;
    }
    case SURG_F8_E4M3: return nm_e4m3_to((uint8_t)load(d, i, 1));
    case SURG_F8_E5M2: return nm_e5m2_to((uint8_t)load(d, i, 1));
    default: return NAN; /* the compiler lets no opaque dtype get here */
    }
}

void nm_decode(surg_dtype dt, const void *data, uint64_t first, size_t n, double *out)
{
    if (dt == SURG_F32) { /* the common case, kept tight */
        const char *p = (const char *)data + first * 4;
        for (size_t i = 0; i < n; i++) {
            float f;
            memcpy(&f, p + i * 4, 4);
            out[i] = f;
        }
        return;
    }
    for (size_t i = 0; i < n; i++)
        out[i] = decode_one(dt, data, first + i);
}

/* A 64-bit magnitude as a double, rounded to odd: truncated, with the last
 * bit set when anything was cut off. */
static double odd_magnitude(uint64_t u)
{
    if (u < (1ull << 53))
        return (double)u;
    int shift = 64 - __builtin_clzll(u) - 53;
    uint64_t m = u >> shift;
    m |= (u & ((1ull << shift) - 1)) != 0;
    return ldexp((double)m, shift);
}

void nm_decode_odd(surg_dtype dt, const void *data, const uint64_t *idx, uint64_t first, size_t n,
                   double *out)
{
    for (size_t i = 0; i < n; i++) {
        uint64_t at = idx ? idx[i] : first + i;
        if (dt == SURG_U64) {
            out[i] = odd_magnitude(load(data, at, 8));
        } else if (dt == SURG_I64) {
            int64_t v = load_signed(data, at, 8);
            double m = odd_magnitude(v < 0 ? 0 - (uint64_t)v : (uint64_t)v);
            out[i] = v < 0 ? -m : m;
        } else {
            out[i] = decode_one(dt, data, at);
        }
    }
}

void nm_decode_at(surg_dtype dt, const void *data, const uint64_t *idx, size_t n, double *out)
{
    for (size_t i = 0; i < n; i++)
        out[i] = decode_one(dt, data, idx[i]);
}

/* An integral value within dt's range, as the bits of a dt element. */
static uint64_t int_bits(surg_dtype dt, double r)
{
    if (surg_dtype_kind_of(dt) == SURG_KIND_UINT)
        return r >= 0x1p64 ? UINT64_MAX : (uint64_t)r;
    return r >= 0x1p63 ? (uint64_t)INT64_MAX : (uint64_t)(int64_t)r;
}

void nm_encode(surg_dtype dt, const double *in, size_t n, void *out, nm_int_mode mode)
{
    if (dt == SURG_F32) {
        for (size_t i = 0; i < n; i++) {
            float f = (float)in[i];
            memcpy((char *)out + i * 4, &f, 4);
        }
        return;
    }
    if (dt == SURG_BF16) {
        for (size_t i = 0; i < n; i++)
            store(out, i, 2, nm_bf16_from(in[i]));
        return;
    }
    size_t size = surg_dtype_bits(dt) / 8;
    for (size_t i = 0; i < n; i++) {
        double v = in[i];
        switch (surg_dtype_kind_of(dt)) {
        case SURG_KIND_BOOL: store(out, i, 1, v != 0 || isnan(v)); break;
        case SURG_KIND_UINT:
        case SURG_KIND_INT: store(out, i, size, int_bits(dt, nm_round(dt, v, mode))); break;
        default:
            if (dt == SURG_F64)
                memcpy((char *)out + i * 8, &v, 8);
            else if (dt == SURG_F16)
                store(out, i, 2, nm_f16_from(v));
            else if (dt == SURG_F8_E4M3)
                store(out, i, 1, nm_e4m3_from(v));
            else if (dt == SURG_F8_E5M2)
                store(out, i, 1, nm_e5m2_from(v));
        }
    }
}

void surg_values_f64(surg_dtype dt, const void *data, uint64_t first, size_t n, double *out)
{
    surg_dtype_kind k = surg_dtype_kind_of(dt);
    if (k != SURG_KIND_OPAQUE && surg_dtype_bits(dt) % 8 == 0)
        nm_decode(dt, data, first, n, out);
}
