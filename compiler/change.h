/* change.h: the changes one statement makes to the abstract state,
 * committed at once only if the statement reported no error. */
#ifndef SURG_CHANGE_H
#define SURG_CHANGE_H

#include "lower.h"

typedef struct change {
    uint8_t *removed; /* per state entry */
    uint8_t *touched; /* per state entry: removed or given a new value */
    sv_entry *added;
    size_t n_added, cap;
    sv_entry *updated; /* .len holds the entry index: new value, same name */
    size_t n_updated, cap_updated;
    bool added_sorted;
    cg_id first_new; /* nodes from here on were made by this statement */
} change;

/* A name a statement adds, with where it comes from for messages. */
typedef struct named {
    const char *name;   /* first: the key ss_sort sorts by */
    const char *source;
    src_span at;
    cg_id node;
} named;

bool change_init(lw *L, change *c);
/* Remove entry e (a name that goes away or moves). */
void change_remove(change *c, size_t e);
/* `at`: the place that names it, where an error about the name points. */
void change_add(lw *L, change *c, const char *name, cg_id node, src_span at);
/* A new value for an entry that keeps its name. */
void change_update(lw *L, change *c, size_t entry, cg_id node);
/* Commit if the statement reported no error since `errors_before`; free. */
void change_done(lw *L, change *c, unsigned errors_before);
/* Is `name` taken: a tensor that stays after `c` (may be NULL), or a tied
 * name? */
bool taken(lw *L, const change *c, const char *name);
/* New names must be distinct and free (errors name both sides, with `verb`);
 * then they join the change. Sorts `n`. */
void add_new_names(lw *L, change *c, named *n, size_t count, const char *verb);

#endif
