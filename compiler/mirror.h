/* mirror.h: optimizer-state slots kept in step with their parameters.
 * After `mirror "params/" -> "opt/mu/", "opt/nu/"`, each tensor under
 * params/ has a slot under each slot prefix, of the same shape, named with
 * the same rest ("params/Dense_0/kernel" -> "opt/mu/Dense_0/kernel"); a slot
 * written with $1 puts the rest inside it ("state/param_states/$1/m", as
 * t5x keeps slots beside each parameter). The `factored` slots are
 * Adafactor's second moment: the full `v`, or its row and column factors
 * (factored.c says which, and their shapes). Each statement that moves,
 * creates, drops or reshapes a parameter does the same to its slots, inside
 * the same change. */
#ifndef SURG_MIRROR_H
#define SURG_MIRROR_H

#include "compiler/change.h"

/* What a slot holds. */
typedef enum mr_role {
    MR_SLOT, /* a moment of the parameter's shape (or a [1] placeholder tree) */
    MR_V,    /* the full second moment; [1] when the parameter is factored */
    MR_ROW,  /* the factor over the kept axes but d0; [1] when not factored */
    MR_COL,  /* the factor over all axes but d1; [1] when not factored */
} mr_role;

typedef struct mr_slot {
    const char *prefix, *suffix; /* a slot's name: prefix, the rest, suffix */
    size_t plen, slen;
    const char *text; /* as written, for messages */
    mr_role role;
    bool placeholder; /* MR_SLOT of a factored mirror whose slots are all [1] */
    surg_dtype dtype;    /* new slots of the parameter's shape or factored: or
                          * SURG_DTYPE_COUNT for the parameter's dtype */
    surg_dtype ph_dtype; /* new [1] placeholders */
} mr_slot;

typedef struct lw_mirror {
    const char *params; /* the params prefix */
    size_t plen;
    mr_slot *slots;
    size_t n_slots;
    bool factored;
    uint64_t min_dim; /* factored: the smaller of the two axes must be this long */
    src_span at;
} lw_mirror;

/* The `mirror` statement: declare, and check the trees agree. */
void mr_declare(lw *L, const ast_stmt *s);

/* The mirror whose params tree holds `name`, or NULL. */
const lw_mirror *mr_find(const lw *L, const char *name);

/* Slot k of a parameter (which must be under mi's prefix): its name, and its
 * entry in the state (STATE_NONE if missing). */
const char *mr_slot_name(lw *L, const lw_mirror *mi, size_t k, const char *param);
size_t mr_slot_entry(lw *L, const lw_mirror *mi, size_t k, const char *param);

/* ---- factored.c: the shapes slots must have ---------------------------- */

/* How slot k of a parameter of this shape is shaped. */
typedef enum mr_form {
    MR_FULL,        /* the parameter's shape: follows every move */
    MR_PLACEHOLDER, /* [1], unused */
    MR_FACTOR,      /* the parameter's shape without one axis */
} mr_form;

/* Adafactor's choice, as t5x and Optax make it: a parameter of rank 2 or
 * more whose second-longest axis is at least min_dim long is factored over
 * its two longest axes, d0 the longest and d1 the next (on equal lengths
 * the later axis counts as longer). */
bool mr_factored_dims(const lw_mirror *mi, uint32_t rank, const uint64_t *shape, uint32_t *d1,
                      uint32_t *d0);
/* Slot k's form and shape (out: room for SURG_MAX_RANK) for a parameter of
 * the given shape. */
mr_form mr_slot_shape(const lw_mirror *mi, size_t k, uint32_t rank, const uint64_t *shape,
                      uint32_t *out_rank, uint64_t *out);
/* The same for the parameter `param` (a node). */
mr_form mr_form_of(lw *L, const lw_mirror *mi, size_t k, cg_id param);
/* Zeros for slot k of a new parameter `param` (a node). */
cg_id mr_new_slot(lw *L, const lw_mirror *mi, size_t k, cg_id param, src_span at);
/* The slots of a matched parameter after `map` (or `resize`) gave it
 * `result`: a layout change happens to them too (lw_map_layout: new places
 * get zeros), the factors following the axes they average over (so a
 * transpose of a square kernel swaps v_row and v_col; anything but a
 * permutation of a factored parameter is an error). Errors when they
 * cannot follow. */
void mr_mapped(lw *L, change *c, const ast_stmt *s, const lw_match *m, const lw_matches *ms,
               cg_id result);

/* ---- what statements report --------------------------------------------- */

/* What a statement did to a parameter, done to its slots within `c`. Slots
 * the statement itself already changed (a pattern that matched them too)
 * are left to it. */
/* `out` has room for mr_max_slots() more names. */
void mr_moved(lw *L, change *c, named *out, size_t *n, const char *from, const char *to,
              src_span at);
void mr_dropped(lw *L, change *c, const char *param);
void mr_zeroed(lw *L, change *c, const char *param, src_span at);
void mr_created(lw *L, named *out, size_t *n, const char *param, cg_id node, src_span at);
/* A tied name that becomes a tensor of its own (untie): copies of its
 * stored tensor's slots when both are in one tree, else zero slots. */
void mr_copied(lw *L, named *out, size_t *n, const char *from, const char *to, cg_id node,
               src_span at);
/* Slot k of the matched parameter `m`, for a statement that consumes it
 * (split, concat, stack, unstack): its own slot, taken out of the state
 * within `c`; for a tied name, the slot of the tensor it is stored as (a
 * tied name shares its stored tensor's slots, which stay), or zeros of
 * the slot's type when that tensor has no such slot. CG_NONE when a
 * stored parameter's slot is missing (the final check says so) or already
 * changed by the statement. *from: the name the slot comes from. */
cg_id mr_take_slot(lw *L, change *c, const lw_mirror *mi, size_t k, const lw_match *m,
                   const char **from, src_span at);
/* The most slots any parameter has (0 without a mirror). */
size_t mr_max_slots(const lw *L);

/* A zero tensor of a slot's type, for a parameter given new values. */
cg_id mr_zeros(lw *L, surg_dtype dt, uint32_t rank, const uint64_t *shape, src_span at);

/* At the end: every slot tree still mirrors its params. */
void mr_check_all(lw *L);

#endif
