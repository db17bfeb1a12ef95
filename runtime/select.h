/* select.h: the cut of topk_mask: which elements of a tensor are the k
 * largest in magnitude, found by radix selection over the bits of |v| in a
 * few passes over the tensor, with memory that does not grow with it. */
#ifndef SURG_SELECT_H
#define SURG_SELECT_H

#include <stdatomic.h>

#include "runtime/kernel.h"

/* Each pass counts one 16-bit digit of the keys. */
enum { SX_DIGIT = 16, SX_BUCKETS = 1 << SX_DIGIT };

typedef enum sx_phase {
    SX_HIST,  /* count the next digit of the keys that agree with the prefix */
    SX_TIES,  /* count, per chunk, the keys equal to the cut's */
    SX_FIND,  /* in one chunk: the index of the last tie taken */
    SX_DONE,
} sx_phase;

/* One topk_mask being selected. Its passes run one after another; the
 * chunks of a pass on any threads, in any order. */
typedef struct sx_sel {
    cg_id node;
    unsigned width;          /* key bits: 32 (float operands up to f32), else 64 */
    sx_phase phase;
    unsigned shift;          /* of the digit counted now */
    uint64_t prefix;         /* the digits above it, found so far */
    uint64_t want;           /* elements still to take among those under the prefix */
    uint64_t elems;
    size_t chunk, n_chunks;
    size_t first, end;       /* the chunks the current pass covers */
    _Atomic uint64_t *hist;  /* SX_BUCKETS counters */
    uint64_t *ties;          /* per chunk */
    kx_cut cut;
} sx_sel;

/* The key of a value: the bits of |v| (as f32 for 32-bit keys), which order
 * as the magnitudes do; NaN, any NaN, is the largest key. */
uint64_t sx_key(double v, unsigned width);

/* Whether the element of key `key` at flat index `idx` is among the k. */
static inline bool sx_taken(const kx_cut *c, uint64_t key, uint64_t idx)
{
    return !c->none && (key > c->key || (key == c->key && idx <= c->last));
}

/* The key width of an operand's dtype. */
unsigned sx_width(surg_dtype dt);

/* Start selecting for topk_mask node `node` of the plan, in chunks of
 * `chunk` elements of its operand: phase SX_DONE at once when k is 0 or
 * every element. */
surg_status sx_begin(sx_sel *s, const kx_ctx *c, cg_id node, size_t chunk, surg_sink *sink);
/* One chunk of the current pass: elements [start, start + n). */
surg_status sx_chunk(sx_sel *s, const kx_ctx *c, kx_scratch *w, uint64_t start, size_t n,
                     surg_sink *sink);
/* After every chunk of a pass: the next pass, or SX_DONE with s->cut. */
surg_status sx_next(sx_sel *s, surg_sink *sink);
void sx_free(sx_sel *s);

#endif
