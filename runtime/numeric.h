/* numeric.h: element values to and from doubles, for every dtype surg
 * computes on. Floats round to nearest, ties to even, straight from the
 * double (no double rounding); NaN stays NaN, infinities stay infinite, and
 * a value too large for a format becomes what the format defines (infinity
 * for f16, bf16, f8e5m2; NaN for f8e4m3, which has no infinity). Integers:
 * see nm_encode. */
#ifndef SURG_NUMERIC_H
#define SURG_NUMERIC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "surg/surg.h"

/* n elements starting at element `first` of packed data, to doubles. */
void nm_decode(surg_dtype dt, const void *data, uint64_t first, size_t n, double *out);
/* Elements at arbitrary indices. */
void nm_decode_at(surg_dtype dt, const void *data, const uint64_t *idx, size_t n, double *out);

/* i64 and u64 values rounded to odd (others as nm_decode), at idx[i] or,
 * when idx is NULL, from element `first`: rounding the result once more to
 * a float of 51 bits or fewer is then exactly rounding the integer once (a
 * double's own rounding could make a tie where there was none). */
void nm_decode_odd(surg_dtype dt, const void *data, const uint64_t *idx, uint64_t first, size_t n,
                   double *out);

/* How a value becomes an integer: round to nearest, ties to even (storing
 * an arithmetic result), or toward zero (cast(), as NumPy's astype).
 * Either way it saturates at the type's bounds, and NaN becomes 0. */
typedef enum nm_int_mode { NM_ROUND, NM_TRUNCATE } nm_int_mode;

/* n doubles to packed elements. bool: nonzero (or NaN) is true. */
void nm_encode(surg_dtype dt, const double *in, size_t n, void *out, nm_int_mode mode);

/* The value v becomes when stored as dt and read back (a cast, or the
 * rounding after each operation computed in f32). */
double nm_round(surg_dtype dt, double v, nm_int_mode mode);
/* nm_round over n values in place. */
void nm_round_n(surg_dtype dt, double *v, size_t n, nm_int_mode mode);

/* The bit patterns of the narrow floats, one value at a time. */
uint16_t nm_f16_from(double v);
double nm_f16_to(uint16_t h);
uint16_t nm_bf16_from(double v);
double nm_bf16_to(uint16_t b);
uint8_t nm_e4m3_from(double v);
double nm_e4m3_to(uint8_t b);
uint8_t nm_e5m2_from(double v);
double nm_e5m2_to(uint8_t b);

#endif
