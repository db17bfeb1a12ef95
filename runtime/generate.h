/* generate.h: the values of an initializer, element by element. */
#ifndef SURG_GENERATE_H
#define SURG_GENERATE_H

#include <stdbool.h>

#include "runtime/ops.h"

typedef struct gn_stream {
    const cg_init *init;
    uint32_t key[2];
    double a, b;  /* the formula's constants (offset, scale) */
    bool single;  /* made in float precision (every dtype but f64) */
    unsigned per_draw; /* elements one Philox draw makes */
} gn_stream;

void gn_prepare(gn_stream *s, const cg_init *init, surg_dtype dt);
/* Elements [first, first + n), and elements at given indices. */
void gn_fill(const gn_stream *s, uint64_t first, size_t n, double *out);
void gn_fill_at(const gn_stream *s, const uint64_t *idx, size_t n, double *out);

/* bernoulli(p): values 1 (true, with probability p) and 0, at idx[i] or,
 * when idx is NULL, from element `first`. Element 4k + j is word j of
 * Philox draw k on the counter (k, 1, index) under the key of (seed, key),
 * read as an integer w: true when w < p * 2^32. */
void gn_bernoulli(double p, uint64_t seed, const char *key, uint32_t index,
                  const uint64_t *idx, uint64_t first, size_t n, double *out);

#endif
