/* state.h: the abstract state while a recipe is lowered: every name bound to
 * its node, kept sorted so a pattern's literal prefix finds its candidates by
 * binary search; and the tied names. A statement's changes are committed at
 * once, so a statement sees the state the previous one left. */
#ifndef SURG_STATE_H
#define SURG_STATE_H

#include <stddef.h>

#include "graph.h"

typedef struct sv_entry {
    const char *name;
    cg_id node;
} sv_entry;

typedef struct sv_state {
    arena *ar;
    sv_entry *e; /* sorted by name (byte order); malloc'd, rebuilt per change */
    size_t n;
    cg_alias *aliases;
    size_t n_alias, cap_alias;
} sv_state;

#define SV_NONE ((size_t)-1)

size_t sv_find(const sv_state *s, const char *name);
/* Entries [*lo, *hi) are those whose names start with prefix[0..len). */
void sv_prefix_range(const sv_state *s, const char *prefix, size_t len, size_t *lo,
                     size_t *hi);
/* The alias with this name, or SV_NONE. */
size_t sv_find_alias(const sv_state *s, const char *name);

/* Replace the entries flagged in `removed` (n bytes, may be NULL) by `added`
 * (any order; names must not collide with what remains). */
bool sv_commit(sv_state *s, const uint8_t *removed, sv_entry *added, size_t n_added);
bool sv_add_alias(sv_state *s, const char *name, const char *target);
void sv_free(sv_state *s);

#endif
