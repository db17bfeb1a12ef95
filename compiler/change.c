/* change.c: the changes of one statement, checked and committed together:
 * names removed, names added (distinct and free, or an error naming both
 * sides), and new values for names that stay. */
#include "change.h"

#include <stdlib.h>
#include <string.h>

#include "strsort.h"
#include "tensor_name.h"

bool change_init(lw *L, change *c)
{
    *c = (change){0};
    c->removed = calloc(L->st.n ? L->st.n : 1, 1);
    c->touched = calloc(L->st.n ? L->st.n : 1, 1);
    c->first_new = L->g.n;
    if (c->removed && c->touched)
        return true;
    free(c->removed);
    free(c->touched);
    L->nomem = true;
    return false;
}

void change_remove(change *c, size_t e)
{
    c->removed[e] = 1;
    c->touched[e] = 1;
}

void change_add(lw *L, change *c, const char *name, cg_id node, src_span at)
{
    if (c->n_added == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        sv_entry *a = realloc(c->added, cap * sizeof *a);
        if (!a) {
            L->nomem = true;
            return;
        }
        c->added = a;
        c->cap = cap;
    }
    c->added[c->n_added++] = (sv_entry){name, node, 0, at};
}

/* A new value for an entry that keeps its name: no reordering needed. */
void change_update(lw *L, change *c, size_t entry, cg_id node)
{
    if (c->n_updated == c->cap_updated) {
        size_t cap = c->cap_updated ? c->cap_updated * 2 : 16;
        sv_entry *u = realloc(c->updated, cap * sizeof *u);
        if (!u) {
            L->nomem = true;
            return;
        }
        c->updated = u;
        c->cap_updated = cap;
    }
    c->updated[c->n_updated++] = (sv_entry){.node = node, .len = (uint32_t)entry};
    c->touched[entry] = 1;
}

static uint64_t bytes_of(const lw *L, cg_id id)
{
    const cg_node *n = cg_get(&L->g, id);
    return n->nelems * surg_dtype_bits(n->dtype) / 8;
}

/* The naive way holds every value in a dict: each new value is a new array
 * (made while the old one is still held), each removed one is freed. */
static void tally_naive(lw *L, const change *c)
{
    uint64_t made = 0, freed = 0;
    for (size_t i = 0; i < c->n_added; i++)
        if (c->added[i].node >= c->first_new) {
            uint64_t b = bytes_of(L, c->added[i].node);
            made += b;
            *(cg_get(&L->g, c->added[i].node)->op == OP_INIT ? &L->naive_generated
                                                            : &L->naive_computed) += b;
        } else {
            freed -= bytes_of(L, c->added[i].node); /* a renamed value: held still */
        }
    for (size_t i = 0; i < c->n_updated; i++) {
        cg_id id = c->updated[i].node;
        uint64_t b = bytes_of(L, id);
        made += b;
        *(cg_get(&L->g, id)->op == OP_INIT ? &L->naive_generated : &L->naive_computed) += b;
        freed += bytes_of(L, L->st.e[c->updated[i].len].node);
    }
    for (size_t i = 0; i < L->st.n; i++)
        if (c->removed[i])
            freed += bytes_of(L, L->st.e[i].node);
    if (L->naive_dict + made > L->naive_peak)
        L->naive_peak = L->naive_dict + made;
    L->naive_dict = L->naive_dict + made - freed;
}

/* A tie to a tensor that goes away goes with it (a renamed tensor's ties
 * were moved to its new name before). */
static void drop_dangling_aliases(lw *L, const change *c)
{
    size_t k = 0;
    for (size_t i = 0; i < L->st.n_alias; i++) {
        size_t t = sv_find(&L->st, L->st.aliases[i].target);
        if (t != SV_NONE && c->removed[t])
            continue;
        L->st.aliases[k++] = L->st.aliases[i];
    }
    L->st.n_alias = k;
}

/* Commit if the statement reported no error since `errors_before`. */
void change_done(lw *L, change *c, unsigned errors_before)
{
    bool ok = L->errors == errors_before && !L->nomem;
    if (ok)
        tally_naive(L, c);
    if (ok && L->st.n_alias)
        drop_dangling_aliases(L, c);
    for (size_t i = 0; ok && i < c->n_updated; i++)
        L->st.e[c->updated[i].len].node = c->updated[i].node;
    bool structural = c->n_added;
    for (size_t i = 0; !structural && i < L->st.n; i++)
        structural = c->removed[i];
    if (ok && structural &&
        !sv_commit(&L->st, c->removed, c->added, c->n_added, c->added_sorted))
        L->nomem = true;
    free(c->removed);
    free(c->touched);
    free(c->added);
    free(c->updated);
}

/* Is `name` taken: a tensor that stays, or a tied name? */
bool taken(lw *L, const change *c, const char *name)
{
    size_t i = sv_find(&L->st, name);
    return (i != SV_NONE && !(c && c->removed[i])) || sv_find_alias(&L->st, name) != SV_NONE;
}

/* Is each sorted name taken? A walk along the state when there are many,
 * binary search when there are few. */
static void mark_taken(lw *L, const change *c, const named *n, size_t count, uint8_t *out)
{
    if (count * 16 < L->st.n) {
        for (size_t i = 0; i < count; i++)
            out[i] = taken(L, c, n[i].name);
        return;
    }
    size_t j = 0;
    for (size_t i = 0; i < count; i++) {
        int cmp = 1;
        while (j < L->st.n && (cmp = strcmp(L->st.e[j].name, n[i].name)) < 0)
            j++;
        out[i] = (j < L->st.n && cmp == 0 && !(c && c->removed[j])) ||
                 sv_find_alias(&L->st, n[i].name) != SV_NONE;
    }
}

static bool removes_any(const lw *L, const change *c)
{
    for (size_t i = 0; i < L->st.n; i++)
        if (c->removed[i])
            return true;
    return false;
}

/* A name no format can hold is an error at the statement that makes it,
 * whatever the output. */
static bool check_name(lw *L, const named *n, const char *verb)
{
    const char *why = tn_problem(n->name, strlen(n->name));
    if (!why)
        return true;
    char shown[80];
    if (strcmp(n->source, n->name) == 0)
        lw_error(L, n->at, "name-invalid", NULL, 0,
                 "%s makes \"%s\", which cannot be a tensor name: %s", verb,
                 tn_short(n->name, shown, 64), why);
    else
        lw_error(L, n->at, "name-invalid", NULL, 0,
                 "%s of \"%s\" makes \"%s\", which cannot be a tensor name: %s", verb,
                 n->source, tn_short(n->name, shown, 64), why);
    return false;
}

/* New names must be distinct and free (errors name both sides); then they
 * join the change, already in order. */
void add_new_names(lw *L, change *c, named *n, size_t count, const char *verb)
{
    uint8_t *busy = malloc(count ? count : 1);
    if (!busy || ss_sort(n, count, sizeof *n) != 0) {
        free(busy);
        L->nomem = true;
        return;
    }
    mark_taken(L, c, n, count, busy);
    for (size_t i = 0; i < count; i++) {
        if (!n[i].name || !n[i].source)
            continue; /* out of memory: already said */
        if (!check_name(L, &n[i], verb))
            continue; /* not also a collision */
        if (i && strcmp(n[i].name, n[i - 1].name) == 0)
            lw_error(L, n[i].at, "name-collision", NULL, 0,
                     "%s maps both \"%s\" and \"%s\" to \"%s\"", verb, n[i - 1].source,
                     n[i].source, n[i].name);
        else if (busy[i])
            lw_error(L, n[i].at, "name-exists", NULL, 0,
                     "%s of \"%s\" makes \"%s\", which already exists%s", verb, n[i].source,
                     n[i].name,
                     sv_find_alias(&L->st, n[i].name) != SV_NONE ? " as a tied name"
                     : removes_any(L, c) ? " and is not itself moved away"
                                         : "");
    }
    free(busy);
    c->added_sorted = c->n_added == 0;
    for (size_t i = 0; i < count; i++)
        change_add(L, c, n[i].name, n[i].node, n[i].at);
}

