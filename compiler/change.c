/* change.c: the changes of one statement, checked and committed together:
 * names removed, names added (distinct and free, or an error naming both
 * sides), new values for names that stay, names tied and untied; then the
 * tied names and the LoRA records follow what the statement did. */
#include "compiler/change.h"

#include <stdlib.h>
#include <string.h>

#include "compiler/mirror.h"
#include "support/strsort.h"
#include "support/tensor_name.h"

typedef struct moved {
    const char *from, *to; /* first: the key ss_sort sorts by */
} moved;

typedef struct retie {
    size_t entry;
    const char *target; /* NULL: untied, with value `node` */
    cg_id node;
} retie;

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

/* Room for one more of `size` bytes in *p (n used of *cap). */
static bool grow(lw *L, void **p, size_t n, size_t *cap, size_t size)
{
    if (n < *cap)
        return true;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *q = realloc(*p, ncap * size);
    if (!q) {
        L->nomem = true;
        return false;
    }
    *p = q;
    *cap = ncap;
    return true;
}

void change_remove(change *c, size_t e)
{
    c->removed[e] = 1;
    c->touched[e] = 1;
}

void change_add(lw *L, change *c, const char *name, cg_id node, const char *tied, src_span at)
{
    if (grow(L, (void **)&c->added, c->n_added, &c->cap, sizeof *c->added))
        c->added[c->n_added++] = (state_entry){name, tied, tied ? CG_NONE : node, 0, at};
}

void change_move(lw *L, change *c, const char *from, const char *to)
{
    if (grow(L, (void **)&c->moved, c->n_moved, &c->cap_moved, sizeof *c->moved))
        c->moved[c->n_moved++] = (moved){from, to};
}

void change_tie(lw *L, change *c, size_t e, const char *target, cg_id node)
{
    if (grow(L, (void **)&c->ties, c->n_ties, &c->cap_ties, sizeof *c->ties))
        c->ties[c->n_ties++] = (retie){e, target, node};
    c->touched[e] = 1;
}

/* A new value for an entry that keeps its name: no reordering needed. */
void change_update(lw *L, change *c, size_t entry, cg_id node)
{
    if (grow(L, (void **)&c->updated, c->n_updated, &c->cap_updated, sizeof *c->updated))
        c->updated[c->n_updated++] = (state_entry){.node = node, .len = (uint32_t)entry};
    c->touched[entry] = 1;
}

static uint64_t bytes_of(const lw *L, cg_id id)
{
    const cg_node *n = cg_get(&L->g, id);
    return n->nelems * surg_dtype_bits(n->dtype) / 8;
}

/* The naive way holds every value in a dict: each new value is a new array
 * (made while the old one is still held), each removed one is freed. A tied
 * name holds no array of its own. */
static void tally_naive(lw *L, const change *c)
{
    uint64_t made = 0, freed = 0;
    for (size_t i = 0; i < c->n_added; i++) {
        if (c->added[i].tied)
            continue;
        if (c->added[i].node >= c->first_new) {
            uint64_t b = bytes_of(L, c->added[i].node);
            made += b;
            *(cg_get(&L->g, c->added[i].node)->op == OP_INIT ? &L->naive_generated
                                                            : &L->naive_computed) += b;
        } else {
            freed -= bytes_of(L, c->added[i].node); /* a renamed value: held still */
        }
    }
    for (size_t i = 0; i < c->n_updated; i++) {
        cg_id id = c->updated[i].node;
        uint64_t b = bytes_of(L, id);
        made += b;
        *(cg_get(&L->g, id)->op == OP_INIT ? &L->naive_generated : &L->naive_computed) += b;
        freed += bytes_of(L, L->st.e[c->updated[i].len].node);
    }
    for (size_t i = 0; i < L->st.n; i++)
        if (c->removed[i] && !L->st.e[i].tied)
            freed += bytes_of(L, L->st.e[i].node);
    for (size_t i = 0; i < c->n_ties; i++) { /* sd[a] = sd[b]; sd[a] = sd[b].clone() */
        const state_entry *e = &L->st.e[c->ties[i].entry];
        if (c->ties[i].target && !e->tied)
            freed += bytes_of(L, e->node);
        else if (!c->ties[i].target)
            made += bytes_of(L, c->ties[i].node);
    }
    if (L->naive_dict + made > L->naive_peak)
        L->naive_peak = L->naive_dict + made;
    L->naive_dict = L->naive_dict + made - freed;
}

static bool removes_any(const lw *L, const change *c)
{
    for (size_t i = 0; i < L->st.n; i++)
        if (c->removed[i])
            return true;
    return false;
}

/* ---- what follows for tied names and records --------------------------- */

/* A tied name whose stored tensor goes, and the value it takes over. */
typedef struct orphan {
    const char *target;
    state_entry *alias; /* in the state or among the additions */
    size_t target_entry;
} orphan;

static int orphan_cmp(const void *a, const void *b)
{
    const orphan *x = a, *y = b;
    int c = strcmp(x->target, y->target);
    return c ? c : strcmp(x->alias->name, y->alias->name);
}

/* Where a stored name went in this change: renamed, or tied to another
 * (NULL: it stays, or it went for good). */
static const char *redirect(const moved *r, size_t n, const char *name)
{
    size_t k = n ? ss_find(r, n, sizeof *r, name) : (size_t)-1;
    return k == (size_t)-1 ? NULL : r[k].to;
}

/* A tied name follows its stored tensor; when that goes for good, the name
 * is noted as an orphan. */
static void follow(lw *L, const change *c, const moved *r, size_t nr, state_entry *x, orphan *o,
                   size_t *n_o)
{
    size_t t = state_find(&L->st, x->tied);
    const char *to = redirect(r, nr, x->tied);
    if (to)
        x->tied = to;
    else if (t != STATE_NONE && c->removed[t])
        o[(*n_o)++] = (orphan){x->tied, x, t};
}

/* The stored tensor of a tied name went and it took over: the stored
 * tensor's optimizer slots that went with it become the new one's. */
static void take_slots(lw *L, change *c, size_t from, const char *to)
{
    const lw_mirror *mi = mr_find(L, L->st.e[from].name);
    if (!mi || mr_find(L, to) != mi)
        return;
    for (size_t k = 0; k < mi->n_slots; k++) {
        size_t e = mr_slot_entry(L, mi, k, L->st.e[from].name);
        const char *name = mr_slot_name(L, mi, k, to);
        if (e == STATE_NONE || !c->removed[e] || L->st.e[e].tied || change_taken(L, c, name))
            continue;
        bool added = false;
        for (size_t i = 0; i < c->n_added && !added; i++)
            added = strcmp(c->added[i].name, name) == 0;
        if (!added) {
            change_add(L, c, name, L->st.e[e].node, NULL, L->st.e[e].at);
            c->added_sorted = false;
        }
    }
}

/* Each stored tensor that goes while names are tied to it: the first of
 * them in byte order takes over its value, the others are tied to that. */
static void adopt_orphans(lw *L, change *c, orphan *o, size_t n_o)
{
    qsort(o, n_o, sizeof *o, orphan_cmp);
    size_t n_heirs = 0;
    for (size_t i = 0; i < n_o;) {
        size_t j = i + 1;
        while (j < n_o && strcmp(o[j].target, o[i].target) == 0)
            o[j++].alias->tied = o[i].alias->name;
        o[i].alias->tied = NULL;
        o[i].alias->node = L->st.e[o[i].target_entry].node;
        o[n_heirs++] = o[i]; /* the heirs, for their slots below */
        i = j;
    }
    /* The additions may move: heirs' names are read before any is made. */
    for (size_t i = 0; i < n_heirs; i++)
        o[i].target = o[i].alias->name;
    for (size_t i = 0; i < n_heirs; i++)
        take_slots(L, c, o[i].target_entry, o[i].target);
}

/* The renames and ties of this change, sorted by the old name. */
/* The names whose moves matter: the stored names tied names point at, and
 * the records' names; sorted. A few, where the moves may be many. */
static const char **watched(lw *L, const change *c, size_t *n)
{
    size_t cap = L->st.n_tied + c->n_added + L->n_paths + 1;
    for (const cg_lora *x = L->lora; x; x = x->next)
        cap += 3;
    const char **w = malloc(cap * sizeof *w);
    if (!w)
        return NULL;
    *n = 0;
    for (size_t i = 0; L->st.n_tied && i < L->st.n; i++)
        if (L->st.e[i].tied)
            w[(*n)++] = L->st.e[i].tied;
    for (size_t i = 0; i < c->n_added; i++)
        if (c->added[i].tied)
            w[(*n)++] = c->added[i].tied;
    for (const cg_lora *x = L->lora; x; x = x->next) {
        w[(*n)++] = x->target;
        w[(*n)++] = x->a;
        w[(*n)++] = x->b;
    }
    for (size_t i = 0; i < L->n_paths; i++) { /* the recorded paths of tensors that go */
        size_t e = L->paths[i].tensor && L->paths[i].path ? state_find(&L->st, L->paths[i].path)
                                                          : STATE_NONE;
        if (e != STATE_NONE && c->removed[e])
            w[(*n)++] = L->paths[i].path;
    }
    if (ss_sort(w, *n, sizeof *w) != 0) {
        free(w);
        return NULL;
    }
    return w;
}

/* The renames and ties of this change that matter, sorted by the old name. */
static moved *redirects(lw *L, const change *c, size_t *n)
{
    size_t n_w = 0;
    const char **w = watched(L, c, &n_w);
    moved *r = w ? malloc((c->n_moved + c->n_ties + 1) * sizeof *r) : NULL;
    *n = 0;
    for (size_t i = 0; r && i < c->n_moved; i++)
        if (n_w && ss_find(w, n_w, sizeof *w, c->moved[i].from) != (size_t)-1)
            r[(*n)++] = c->moved[i];
    for (size_t i = 0; r && i < c->n_ties; i++)
        if (c->ties[i].target)
            r[(*n)++] = (moved){L->st.e[c->ties[i].entry].name, c->ties[i].target};
    free(w);
    if (!r || ss_sort(r, *n, sizeof *r) != 0) {
        free(r);
        L->nomem = true;
        return NULL;
    }
    return r;
}

static void apply_ties(lw *L, const change *c)
{
    for (size_t i = 0; i < c->n_ties; i++) {
        state_entry *e = &L->st.e[c->ties[i].entry];
        if (!e->tied && c->ties[i].target)
            L->st.n_tied++;
        else if (e->tied && !c->ties[i].target)
            L->st.n_tied--;
        e->tied = c->ties[i].target;
        e->node = e->tied ? CG_NONE : c->ties[i].node;
    }
}

static void settle_tied(lw *L, change *c, const moved *r, size_t nr)
{
    size_t n_added_tied = 0;
    for (size_t i = 0; i < c->n_added; i++)
        n_added_tied += c->added[i].tied != NULL;
    if (!L->st.n_tied && !n_added_tied)
        return;
    orphan *o = malloc((L->st.n_tied + n_added_tied + 1) * sizeof *o);
    if (!o) {
        L->nomem = true;
        return;
    }
    size_t n_o = 0;
    for (size_t i = 0; i < L->st.n; i++)
        if (L->st.e[i].tied && !c->removed[i])
            follow(L, c, r, nr, &L->st.e[i], o, &n_o);
    for (size_t i = 0; i < c->n_added; i++)
        if (c->added[i].tied)
            follow(L, c, r, nr, &c->added[i], o, &n_o);
    adopt_orphans(L, c, o, n_o);
    free(o);
}

/* A record's name after this change, or NULL when it went for good. */
static const char *record_name(lw *L, const change *c, const moved *r, size_t nr,
                               const char *name)
{
    size_t i = state_find(&L->st, name);
    if (i == STATE_NONE || !c->removed[i]) /* it stays, or this change makes it */
        return name;
    return redirect(r, nr, name);
}

/* LoRA records follow renames; a record whose tensors went goes, said. A
 * recorded path of a tensor follows it, and goes with it, unsaid. */
static void settle_records(lw *L, const change *c, const moved *r, size_t nr)
{
    for (size_t i = 0; i < L->n_paths; i++)
        if (L->paths[i].tensor && L->paths[i].path)
            L->paths[i].path = record_name(L, c, r, nr, L->paths[i].path);
    for (cg_lora **p = &L->lora; *p;) {
        cg_lora *x = *p;
        const char *t = record_name(L, c, r, nr, x->target);
        const char *a = record_name(L, c, r, nr, x->a);
        const char *b = record_name(L, c, r, nr, x->b);
        if (t && a && b) {
            x->target = t;
            x->a = a;
            x->b = b;
            p = &x->next;
            continue;
        }
        lw_warning(L, L->at, "lora-record",
                   "the LoRA record of \"%s\" (adapter \"%s\", \"%s\") is dropped: \"%s\" is gone",
                   x->target, x->a, x->b, !t ? x->target : !a ? x->a : x->b);
        *p = x->next;
        if (L->lora_tail == &x->next)
            L->lora_tail = p;
    }
}

/* The names this change takes away, noted with where a rename takes
 * them (gone.c). */
static void note_gone(lw *L, const change *c)
{
    moved *m = c->n_moved ? malloc(c->n_moved * sizeof *m) : NULL;
    size_t nm = m ? c->n_moved : 0;
    if (m)
        memcpy(m, c->moved, nm * sizeof *m);
    if ((c->n_moved && !m) || (m && ss_sort(m, nm, sizeof *m) != 0)) {
        free(m);
        L->nomem = true;
        return;
    }
    for (size_t i = 0; i < L->st.n; i++)
        if (c->removed[i])
            lw_gone_add(L, L->st.e[i].name, redirect(m, nm, L->st.e[i].name));
    free(m);
}

/* Commit if the statement reported no error since `errors_before`. */
void change_done(lw *L, change *c, unsigned errors_before)
{
    bool ok = L->errors == errors_before && !L->nomem;
    if (ok)
        tally_naive(L, c);
    for (size_t i = 0; ok && i < c->n_updated; i++)
        L->st.e[c->updated[i].len].node = c->updated[i].node;
    bool structural = c->n_added || removes_any(L, c);
    /* Only tied names and records need to know where names went. */
    bool ties = L->st.n_tied || c->n_ties;
    for (size_t i = 0; !ties && i < c->n_added; i++)
        ties = c->added[i].tied != NULL;
    size_t nr = 0;
    moved *r = ok && (c->n_ties || (structural && (ties || L->lora || L->n_paths)))
                   ? redirects(L, c, &nr)
                   : NULL;
    if (r) {
        apply_ties(L, c);
        settle_tied(L, c, r, nr);
        if (structural)
            settle_records(L, c, r, nr);
    }
    if (ok && structural && !L->nomem)
        note_gone(L, c);
    if (ok && structural && !L->nomem &&
        !state_commit(&L->st, c->removed, c->added, c->n_added, c->added_sorted))
        L->nomem = true;
    free(r);
    free(c->removed);
    free(c->touched);
    free(c->added);
    free(c->updated);
    free(c->moved);
    free(c->ties);
}

/* Is `name` taken: a name that stays? */
bool change_taken(lw *L, const change *c, const char *name)
{
    size_t i = state_find(&L->st, name);
    return i != STATE_NONE && !(c && c->removed[i]);
}

/* Is each sorted name taken? A walk along the state when there are many,
 * binary search when there are few. */
static void mark_taken(lw *L, const change *c, const named *n, size_t count, uint8_t *out)
{
    if (count * 16 < L->st.n) {
        for (size_t i = 0; i < count; i++)
            out[i] = change_taken(L, c, n[i].name);
        return;
    }
    size_t j = 0;
    for (size_t i = 0; i < count; i++) {
        int cmp = 1;
        while (j < L->st.n && (cmp = strcmp(L->st.e[j].name, n[i].name)) < 0)
            j++;
        out[i] = j < L->st.n && cmp == 0 && !(c && c->removed[j]);
    }
}

static bool is_tied(const lw *L, const char *name)
{
    size_t i = state_find(&L->st, name);
    return i != STATE_NONE && L->st.e[i].tied;
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
void change_add_names(lw *L, change *c, named *n, size_t count, const char *verb)
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
                     is_tied(L, n[i].name)  ? " as a tied name"
                     : removes_any(L, c) ? " and is not itself moved away"
                                         : "");
    }
    free(busy);
    c->added_sorted = c->n_added == 0;
    for (size_t i = 0; i < count; i++)
        change_add(L, c, n[i].name, n[i].node, n[i].tied, n[i].at);
}

