/* change.h: the changes one statement makes to the abstract state,
 * committed at once only if the statement reported no error: names removed
 * and added, new values, names tied and untied, and then what follows from
 * them for the tied names and the records (a tied name follows its stored
 * tensor's moves, and takes over its data when it goes; a LoRA record
 * follows its tensors' renames, and goes with a warning when one goes). */
#ifndef SURG_CHANGE_H
#define SURG_CHANGE_H

#include "compiler/lower.h"

typedef struct change {
    uint8_t *removed; /* per state entry */
    uint8_t *touched; /* per state entry: removed or given a new value */
    state_entry *added;
    size_t n_added, cap;
    state_entry *updated; /* .len holds the entry index: new value, same name */
    size_t n_updated, cap_updated;
    struct moved *moved; /* renames: from -> to */
    size_t n_moved, cap_moved;
    struct retie *ties;  /* entries tied to another name, or untied */
    size_t n_ties, cap_ties;
    bool added_sorted;
    cg_id first_new; /* nodes from here on were made by this statement */
} change;

/* A name a statement adds, with where it comes from for messages. */
typedef struct named {
    const char *name;   /* first: the key ss_sort sorts by */
    const char *source;
    src_span at;
    cg_id node;
    const char *tied; /* a tied name that moves: the name it is tied to */
} named;

bool change_init(lw *L, change *c);
/* Remove entry e (a name that goes away or moves). */
void change_remove(change *c, size_t e);
/* `tied`: the stored name a tied name is tied to, or NULL. `at`: the place
 * that names it, where an error about the name points. */
void change_add(lw *L, change *c, const char *name, cg_id node, const char *tied, src_span at);
/* Entry e is renamed `to` (the removal and the addition are separate
 * calls): tied names and records follow. */
void change_move(lw *L, change *c, const char *from, const char *to);
/* Entry e becomes tied to the stored name `target` (its own tied names
 * follow), or, with target NULL, a tensor of its own with the value `node`. */
void change_tie(lw *L, change *c, size_t e, const char *target, cg_id node);
/* A new value for an entry that keeps its name. */
void change_update(lw *L, change *c, size_t entry, cg_id node);
/* Commit if the statement reported no error since `errors_before`; free. */
void change_done(lw *L, change *c, unsigned errors_before);
/* Is `name` taken: a name (stored or tied) that stays after `c` (may be
 * NULL)? */
bool change_taken(lw *L, const change *c, const char *name);
/* New names must be distinct and free (errors name both sides, with `verb`);
 * then they join the change. Sorts `n`. */
void change_add_names(lw *L, change *c, named *n, size_t count, const char *verb);

#endif
