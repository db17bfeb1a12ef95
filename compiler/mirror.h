/* mirror.h: optimizer-state slots kept in step with their parameters.
 * After `mirror "params/" -> "opt/mu/", "opt/nu/"`, each tensor under
 * params/ has a slot under each slot prefix, of the same shape, named with
 * the same rest ("params/Dense_0/kernel" -> "opt/mu/Dense_0/kernel"); each
 * statement that moves, creates, drops or reshapes a parameter does the same
 * to its slots, inside the same change. */
#ifndef SURG_MIRROR_H
#define SURG_MIRROR_H

#include "compiler/change.h"

typedef struct lw_mirror {
    const char *params; /* the params prefix */
    size_t plen;
    const char **slots; /* slot prefixes */
    surg_dtype *slot_dtype; /* what new slots are made of, per prefix */
    size_t n_slots;
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
