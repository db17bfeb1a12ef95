/* select.c: topk_mask's cut, by radix selection. The k-th largest key is
 * found a 16-bit digit at a time, most significant first: a pass over the
 * operand counts the digit of every key that agrees with the digits found
 * so far, and the counts, read from the top, say which digit the k-th key
 * has. Two passes settle a 32-bit key (f32 and narrower operands), four a
 * 64-bit one. When the k-th key is shared by more elements than are still
 * wanted, the lowest indices among them are taken: one more pass counts
 * the ties per chunk, and one more, over a single chunk, finds the index of
 * the last one taken. Memory: 512 KiB of counters and 8 bytes per chunk,
 * whatever the size of the tensor; counts are sums of integers, so the
 * result is the same on any number of threads. */
#include "runtime/select.h"

#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "support/diag.h"

uint64_t sx_key(double v, unsigned width)
{
    if (isnan(v))
        return width == 32 ? UINT32_MAX : UINT64_MAX;
    if (width == 32) {
        double a = fabs(v);
        float f = a > FLT_MAX ? INFINITY : (float)a; /* f32 values: exact */
        uint32_t b;
        memcpy(&b, &f, 4);
        return b;
    }
    double a = fabs(v);
    uint64_t b;
    memcpy(&b, &a, 8);
    return b;
}

unsigned sx_width(surg_dtype dt)
{
    return surg_dtype_kind_of(dt) == SURG_KIND_FLOAT && surg_dtype_bits(dt) <= 32 ? 32 : 64;
}

static surg_status nomem(surg_sink *sink)
{
    return dg_nomem(sink, "surg");
}

surg_status sx_begin(sx_sel *s, const kx_ctx *c, cg_id node, size_t chunk, surg_sink *sink)
{
    const cg_node *n = &c->nodes[node];
    *s = (sx_sel){.node = node, .width = sx_width(c->nodes[n->in[0]].dtype),
                  .elems = n->nelems, .chunk = chunk, .want = n->a.topk.k};
    s->n_chunks = (size_t)((s->elems + chunk - 1) / chunk);
    s->phase = SX_DONE;
    if (s->want == 0) {
        s->cut.none = true;
        return SURG_OK;
    }
    if (s->want >= s->elems) {
        s->cut = (kx_cut){.key = 0, .last = UINT64_MAX};
        return SURG_OK;
    }
    s->hist = calloc(SX_BUCKETS, sizeof *s->hist);
    if (!s->hist)
        return nomem(sink);
    s->phase = SX_HIST;
    s->shift = s->width - SX_DIGIT;
    s->first = 0;
    s->end = s->n_chunks;
    return SURG_OK;
}

static bool under_prefix(const sx_sel *s, uint64_t key)
{
    return s->shift + SX_DIGIT >= s->width || key >> (s->shift + SX_DIGIT) == s->prefix;
}

/* The digit counts of a chunk, gathered in the worker's own counters and
 * then added to the shared ones. */
static surg_status count_digits(sx_sel *s, kx_scratch *w, const double *v, size_t n,
                                surg_sink *sink)
{
    if (!w->hist && !(w->hist = calloc(SX_BUCKETS, sizeof *w->hist)))
        return nomem(sink);
    uint32_t *h = w->hist;
    for (size_t i = 0; i < n; i++) {
        uint64_t key = sx_key(v[i], s->width);
        if (under_prefix(s, key))
            h[(key >> s->shift) & (SX_BUCKETS - 1)]++;
    }
    if (n < SX_BUCKETS / 4) { /* a short chunk: visit only the counters it touched */
        for (size_t i = 0; i < n; i++) {
            size_t b = (size_t)((sx_key(v[i], s->width) >> s->shift) & (SX_BUCKETS - 1));
            if (h[b]) {
                atomic_fetch_add_explicit(&s->hist[b], h[b], memory_order_relaxed);
                h[b] = 0;
            }
        }
        return SURG_OK;
    }
    for (size_t b = 0; b < SX_BUCKETS; b++)
        if (h[b]) {
            atomic_fetch_add_explicit(&s->hist[b], h[b], memory_order_relaxed);
            h[b] = 0;
        }
    return SURG_OK;
}

surg_status sx_chunk(sx_sel *s, const kx_ctx *c, kx_scratch *w, uint64_t start, size_t n,
                     surg_sink *sink)
{
    double *v = kx_take(w, n * sizeof *v);
    if (!v) {
        dg_file(sink, SURG_ERROR, "nomem", "surg", "out of scratch memory while computing");
        return SURG_ENOMEM;
    }
    cg_id operand = c->nodes[s->node].in[0];
    surg_status st = kx_eval(c, w, operand, (kx_index){.start = start, .n = n}, v, sink);
    if (st)
        return st;
    switch (s->phase) {
    case SX_HIST: return count_digits(s, w, v, n, sink);
    case SX_TIES: {
        uint64_t k = 0;
        for (size_t i = 0; i < n; i++)
            k += sx_key(v[i], s->width) == s->cut.key;
        s->ties[start / s->chunk] = k;
        return SURG_OK;
    }
    case SX_FIND:
        for (size_t i = 0, k = 0; i < n; i++)
            if (sx_key(v[i], s->width) == s->cut.key && ++k == s->want)
                s->cut.last = start + i;
        return SURG_OK;
    case SX_DONE: break;
    }
    return SURG_OK;
}

/* The counts of a digit, read from the top: the digit of the k-th key. */
static surg_status after_hist(sx_sel *s, surg_sink *sink)
{
    uint64_t want = s->want, h = 0;
    size_t b = SX_BUCKETS;
    while (b-- > 0) {
        h = atomic_load_explicit(&s->hist[b], memory_order_relaxed);
        if (h >= want)
            break;
        want -= h;
    }
    if (b >= SX_BUCKETS) { /* the counts cannot fall short of k: a bug, not an input */
        dg_file(sink, SURG_ERROR, "internal", "surg", "topk_mask counted fewer elements than it takes");
        return SURG_EUSAGE;
    }
    s->prefix = s->prefix << SX_DIGIT | b;
    s->want = want;
    if (h == want) { /* every key with this digit is taken, and none below */
        s->cut = (kx_cut){.key = s->prefix << s->shift, .last = UINT64_MAX};
        s->phase = SX_DONE;
        return SURG_OK;
    }
    if (s->shift) {
        s->shift -= SX_DIGIT;
        for (size_t i = 0; i < SX_BUCKETS; i++)
            atomic_store_explicit(&s->hist[i], 0, memory_order_relaxed);
        return SURG_OK;
    }
    /* The whole key is known; only `want` of its h elements are taken. */
    s->cut = (kx_cut){.key = s->prefix, .last = 0};
    s->ties = calloc(s->n_chunks ? s->n_chunks : 1, sizeof *s->ties);
    if (!s->ties)
        return nomem(sink);
    s->phase = SX_TIES;
    return SURG_OK;
}

surg_status sx_next(sx_sel *s, surg_sink *sink)
{
    switch (s->phase) {
    case SX_HIST: return after_hist(s, sink);
    case SX_TIES: {
        size_t j = 0;
        while (j + 1 < s->n_chunks && s->ties[j] < s->want)
            s->want -= s->ties[j++];
        s->first = j;
        s->end = j + 1;
        s->phase = SX_FIND;
        return SURG_OK;
    }
    case SX_FIND: s->phase = SX_DONE; return SURG_OK;
    case SX_DONE: break;
    }
    return SURG_OK;
}

void sx_free(sx_sel *s)
{
    free(s->hist);
    free(s->ties);
    s->hist = NULL;
    s->ties = NULL;
}
