/* draft.h: what the two halves of `surg suggest` share: draft_match.c pairs
 * the tensors of two abstract states, draft.c writes the pairs as a recipe
 * (captures for families, transposes, stacks) and checks it. */
#ifndef SURG_DRAFT_H
#define SURG_DRAFT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "surg/surg.h"
#include "support/arena.h"

#define DR_NONE ((size_t)-1)

/* How a tensor was paired. */
typedef enum dr_how {
    DR_UNMAPPED,
    DR_SAME,      /* the same name, dtype and shape on both sides */
    DR_MOVE,      /* renamed and/or transposed onto `other` */
    DR_STACKED,   /* one of the members stacked into `other` (old side) */
    DR_STACK,     /* the tensor a stack makes (new side) */
    DR_UNSTACKED, /* the tensor an unstack takes apart (old side) */
    DR_UNSTACK,   /* one of the pieces an unstack makes (new side) */
} dr_how;

enum { DR_CANDS = 4 };

typedef struct dr_t {
    const surg_tensor_info *info;
    size_t len;
    bool writable;      /* UTF-8, so a recipe can name it */
    uint64_t *tok;      /* the name's tokens, hashed, sorted */
    uint32_t n_tok;
    uint64_t bucket;    /* dtype, rank and the dimensions sorted */
    uint64_t digits;    /* the digit runs, in order */
    uint64_t canon;     /* the tokens as a multiset */
    bool rotary;        /* names a q or k projection (Hugging Face or Meta) */
    dr_how how;
    size_t other;       /* DR_MOVE: the tensor on the other side; DR_STACK...: the one */
    uint32_t axis;      /* stacks: the axis */
    uint64_t index;     /* stack members: the position along it */
    size_t run_at, run_len; /* stack members: the digit run that is the index */
    size_t cand[DR_CANDS]; /* unmapped: the likeliest tensors of the other side */
    size_t n_cand, more_cand;
    bool crowded;       /* unmapped among too many of one type to compare */
    size_t blocked;     /* unmapped: its pair, whose name an old tensor that stays holds */
} dr_t;

typedef struct dr_side {
    dr_t *t;
    size_t n;
} dr_side;

/* Pair the tensors of `old` and `new` (both with info set): same names
 * first, then by type and name tokens, then stacks. false: out of memory. */
bool dr_match(arena *ar, dr_side *old, dr_side *new);

/* The permutation taking `o`'s axes to `n`'s (n.shape[i] = o.shape[perm[i]]):
 * a PyTorch weight that becomes a Flax kernel turns its layout, else the
 * identity when the shapes are equal, else the first that fits. */
void dr_perm(const dr_t *o, const dr_t *n, uint32_t *perm);

#endif
