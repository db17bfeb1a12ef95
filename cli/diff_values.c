/* diff_values.c: `surg diff`'s comparison of two runs of elements of one
 * dtype: which differ (bits, or NumPy's isclose rule), and by how much. */
#include <math.h>
#include <string.h>

#include "cli.h"

void dv_init(dv_stats *s)
{
    memset(s, 0, sizeof *s);
    s->first = UINT64_MAX;
}

void dv_merge(dv_stats *into, const dv_stats *from)
{
    into->differ += from->differ;
    into->first = from->first < into->first ? from->first : into->first;
    into->max_abs = from->max_abs > into->max_abs ? from->max_abs : into->max_abs;
    into->max_rel = from->max_rel > into->max_rel ? from->max_rel : into->max_rel;
    into->max_ulp = from->max_ulp > into->max_ulp ? from->max_ulp : into->max_ulp;
}

static uint64_t load(const unsigned char *p, size_t w)
{
    uint64_t v = 0;
    for (size_t k = 0; k < w; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return v;
}

static int64_t load_signed(const unsigned char *p, size_t w)
{
    uint64_t v = load(p, w);
    if (w < 8 && (v >> (8 * w - 1)) & 1)
        v |= ~0ull << (8 * w);
    return (int64_t)v;
}

/* The distance in ULPs of two floats of w bytes: their sign-magnitude bits
 * on one ordered line of integers, where -0 and +0 are both 0. */
static uint64_t ulp_distance(uint64_t a, uint64_t b, size_t w)
{
    uint64_t sign = 1ull << (8 * w - 1), mag = sign - 1;
    uint64_t ma = a & mag, mb = b & mag;
    bool na = (a & sign) && ma, nb = (b & sign) && mb;
    if (na == nb)
        return ma > mb ? ma - mb : mb - ma;
    return ma + mb; /* each below 2^63: no overflow */
}

static void note(dv_stats *s, uint64_t at, bool differs, double abs, double rel, uint64_t ulp)
{
    if (differs) {
        s->differ++;
        if (at < s->first)
            s->first = at;
    }
    s->max_abs = abs > s->max_abs ? abs : s->max_abs;
    s->max_rel = rel > s->max_rel ? rel : s->max_rel;
    s->max_ulp = ulp > s->max_ulp ? ulp : s->max_ulp;
}

/* isclose(a, b, rtol, atol, equal_nan=True), and the sizes of a - b. */
static bool close_enough(const dv_opts *o, double a, double b)
{
    if (isnan(a) || isnan(b))
        return isnan(a) && isnan(b);
    if (a == b) /* infinities of one sign too */
        return true;
    if (isinf(a) || isinf(b))
        return false;
    return fabs(a - b) <= o->atol + o->rtol * fabs(b);
}

static void sizes(double a, double b, double *abs, double *rel)
{
    *abs = a == b ? 0 : fabs(a - b);
    *rel = *abs == 0 ? 0 : *abs / fabs(b); /* b == 0: infinity */
}

static void compare_floats(surg_dtype dt, const unsigned char *a, const unsigned char *b,
                           uint64_t first, size_t n, const dv_opts *o, double *va, double *vb,
                           dv_stats *s)
{
    size_t w = surg_dtype_bits(dt) / 8;
    surg_values_f64(dt, a, 0, n, va);
    surg_values_f64(dt, b, 0, n, vb);
    for (size_t i = 0; i < n; i++) {
        uint64_t ba = load(a + i * w, w), bb = load(b + i * w, w);
        if (ba == bb && !o->tol)
            continue;
        bool differs = o->tol ? !close_enough(o, va[i], vb[i]) : true;
        double abs = 0, rel = 0;
        uint64_t ulp = 0;
        if (!isnan(va[i]) && !isnan(vb[i])) {
            sizes(va[i], vb[i], &abs, &rel);
            ulp = ulp_distance(ba, bb, w);
        }
        note(s, first + i, differs, abs, rel, ulp);
    }
}

static void compare_ints(surg_dtype dt, const unsigned char *a, const unsigned char *b,
                         uint64_t first, size_t n, const dv_opts *o, dv_stats *s)
{
    size_t w = surg_dtype_bits(dt) / 8;
    bool is_signed = surg_dtype_kind_of(dt) == SURG_KIND_INT;
    for (size_t i = 0; i < n; i++) {
        uint64_t ua = load(a + i * w, w), ub = load(b + i * w, w);
        if (ua == ub && !o->tol)
            continue;
        uint64_t d;
        double fb;
        if (is_signed) {
            int64_t x = load_signed(a + i * w, w), y = load_signed(b + i * w, w);
            d = x > y ? (uint64_t)x - (uint64_t)y : (uint64_t)y - (uint64_t)x;
            fb = (double)y;
        } else {
            if (dt == SURG_BOOL) {
                ua = ua != 0;
                ub = ub != 0;
            }
            d = ua > ub ? ua - ub : ub - ua;
            fb = (double)ub;
        }
        bool differs = o->tol ? (double)d > o->atol + o->rtol * fabs(fb) : ua != ub;
        double abs = (double)d, rel = d == 0 ? 0 : (double)d / fabs(fb);
        note(s, first + i, differs, abs, rel, d);
    }
}

/* Opaque dtypes: their bits, element by element (bytes, below a byte). */
static void compare_bits(surg_dtype dt, const unsigned char *a, const unsigned char *b,
                         uint64_t first, size_t n, dv_stats *s)
{
    unsigned bits = surg_dtype_bits(dt);
    size_t w = bits % 8 ? 1 : bits / 8;
    for (size_t i = 0; i < n; i++)
        if (memcmp(a + i * w, b + i * w, w) != 0) {
            s->differ++;
            uint64_t at = bits % 8 ? (first + i) * 8 / bits : first + i;
            s->first = at < s->first ? at : s->first;
        }
}

bool dv_has_sizes(surg_dtype dt)
{
    return surg_dtype_kind_of(dt) != SURG_KIND_OPAQUE && surg_dtype_bits(dt) % 8 == 0;
}

void dv_compare(surg_dtype dt, const void *a, const void *b, uint64_t first, size_t n,
                const dv_opts *o, double *va, double *vb, dv_stats *s)
{
    if (!dv_has_sizes(dt))
        compare_bits(dt, a, b, first, n, s);
    else if (surg_dtype_kind_of(dt) == SURG_KIND_FLOAT)
        compare_floats(dt, a, b, first, n, o, va, vb, s);
    else
        compare_ints(dt, a, b, first, n, o, s);
}
