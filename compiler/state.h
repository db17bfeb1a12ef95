/* state.h: the abstract state while a recipe is lowered: every name bound to
 * its node, or tied to a stored name (one tensor stored once), kept sorted so
 * a pattern's literal prefix finds its candidates by binary search. A
 * statement's changes are committed at once, so a statement sees the state
 * the previous one left. */
#ifndef SURG_STATE_H
#define SURG_STATE_H

#include <stddef.h>

#include "support/bigbuf.h"
#include "compiler/graph.h"

typedef struct state_entry {
    const char *name; /* first: the key ss_sort sorts by */
    const char *tied; /* NULL, or the stored name this one is tied to (never
                       * itself tied): its value is that entry's */
    cg_id node;       /* CG_NONE for a tied name: read values with state_node */
    uint32_t len;     /* strlen(name) */
    src_span at;      /* the statement's text that gave the name; {0, 0}: the input's */
} state_entry;

typedef struct state_table {
    arena *ar;
    state_entry *e; /* sorted by name (byte order): in buf[cur] */
    size_t n;
    bigbuf buf[2]; /* a change is built in the other buffer, then they swap */
    int cur;
    size_t n_tied; /* how many entries are tied names */
} state_table;

#define STATE_NONE ((size_t)-1)

/* A name that left the state: where it went, and which statement took it
 * (gone.c). Kept for messages: "did you mean" of a name renamed earlier,
 * and `--to` pointing at the statement that dropped a name. */
typedef struct state_gone {
    const char *name; /* first: the key ss_sort sorts by */
    const char *to;   /* a rename's new name; NULL: dropped, split, merged ... */
    src_span at;      /* the statement */
    uint32_t kind;    /* its ast_stmt_kind */
    uint32_t seq;     /* order of leaving: the latest departure of a name wins */
} state_gone;

size_t state_find(const state_table *s, const char *name);
/* Entries [*lo, *hi) are those whose names start with prefix[0..len). */
void state_prefix_range(const state_table *s, const char *prefix, size_t len, size_t *lo,
                        size_t *hi);
/* The value of entry i: its own node, or for a tied name its stored
 * tensor's. */
cg_id state_node(const state_table *s, size_t i);

/* Remove the entries flagged in `removed` (n bytes, may be NULL) and add
 * `added` (in name order when `sorted`, else any order; names must not
 * collide with what remains). A few additions find their places by binary
 * search, many by a walk along the table. */
bool state_commit(state_table *s, const uint8_t *removed, state_entry *added, size_t n_added,
                  bool sorted);
void state_free(state_table *s);

#endif
