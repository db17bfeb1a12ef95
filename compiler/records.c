/* records.c: the records an input carries from an earlier run, read back
 * into the state: "surg.ties" as tied names, "surg.lora" as LoRA records.
 * From then on they are the recipe's own: renames carry them, and the
 * output records them anew (change.c keeps them in step). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/diag.h"
#include "support/json.h"
#include "compiler/lower.h"
#include "support/strsort.h"

/* prefix + name, in the program's arena. */
static const char *prefixed(lw *L, const char *prefix, const char *name)
{
    size_t a = strlen(prefix), b = strlen(name);
    char *s = ar_alloc(L->ar, a + b + 1);
    if (!s) {
        L->nomem = true;
        return NULL;
    }
    memcpy(s, prefix, a);
    memcpy(s + a, name, b + 1);
    return s;
}

/* ---- ties ------------------------------------------------------------- */

/* One part's recorded ties (names under `prefix`), each checked against the
 * stored tensors: a tied name is no tensor, its target is one. */
static void part_ties(lw *L, const surg_ckpt *part, const char *prefix, state_entry *out,
                      size_t *n)
{
    const surg_meta_entry *tie;
    for (size_t i = 0; (tie = surg_ckpt_tie(part, i)) != NULL && !L->nomem; i++) {
        const char *a = prefixed(L, prefix, tie->key), *t = prefixed(L, prefix, tie->value);
        if (!a || !t)
            return;
        if (state_find(&L->st, t) == STATE_NONE || state_find(&L->st, a) != STATE_NONE) {
            dg_file(L->sink, SURG_WARNING, "ties-metadata", surg_ckpt_path(part),
                    "the recorded tie \"%s\" -> \"%s\" does not fit the tensors here; "
                    "it is dropped",
                    tie->key, tie->value);
            continue;
        }
        out[(*n)++] = (state_entry){.name = a, .tied = t, .node = CG_NONE};
    }
}

/* Ties an earlier run recorded (or a PyTorch file's shared storage) are
 * tied names of the state. */
static void load_ties(lw *L, const surg_ckpt *in)
{
    const char *prefix;
    const surg_ckpt *part;
    size_t total = 0;
    for (size_t i = 0; (part = surg_ckpt_part_at(in, i, &prefix)) != NULL; i++)
        total += surg_ckpt_tie_count(part);
    if (!total)
        return;
    state_entry *added = malloc(total * sizeof *added);
    if (!added) {
        L->nomem = true;
        return;
    }
    size_t n = 0;
    for (size_t i = 0; (part = surg_ckpt_part_at(in, i, &prefix)) != NULL; i++)
        part_ties(L, part, prefix, added, &n);
    if (!L->nomem && ss_sort(added, n, sizeof *added) != 0)
        L->nomem = true;
    size_t k = 0; /* a name recorded twice is tied once, to the first target in byte order */
    for (size_t i = 0; !L->nomem && i < n; i++) {
        state_entry *last = k ? &added[k - 1] : NULL;
        if (!last || strcmp(last->name, added[i].name) != 0) {
            added[k++] = added[i];
            continue;
        }
        bool earlier = strcmp(added[i].tied, last->tied) < 0;
        dg_file(L->sink, SURG_WARNING, "ties-metadata", surg_ckpt_path(in),
                "\"%s\" is recorded as tied to \"%s\" and to \"%s\"; it is tied to \"%s\"",
                added[i].name, earlier ? added[i].tied : last->tied,
                earlier ? last->tied : added[i].tied, earlier ? added[i].tied : last->tied);
        if (earlier)
            *last = added[i];
    }
    if (!L->nomem && !state_commit(&L->st, NULL, added, k, true))
        L->nomem = true;
    free(added);
}

/* ---- LoRA records ----------------------------------------------------- */

static void add_record(lw *L, const cg_lora *r)
{
    cg_lora *x = ar_alloc(L->ar, sizeof *x);
    if (!x) {
        L->nomem = true;
        return;
    }
    *x = *r;
    x->next = NULL;
    *L->lora_tail = x;
    L->lora_tail = &x->next;
}

/* One part's "surg.lora": each record whose tensors are here (names under
 * `prefix`) is a record of the recipe; the others are dropped, said. */
static void part_lora(lw *L, const surg_ckpt *part, const char *prefix)
{
    const char *v = NULL;
    for (size_t i = 0; i < surg_ckpt_meta_count(part) && !v; i++)
        if (strcmp(surg_ckpt_meta(part, i)->key, "surg.lora") == 0)
            v = surg_ckpt_meta(part, i)->value;
    if (!v)
        return;
    json_reader j;
    json_init(&j, v, strlen(v), L->ar);
    int more = json_open(&j, '[') ? json_first(&j, ']') : -1;
    for (; more > 0 && !L->nomem; more = json_more(&j, ']')) {
        cg_lora r;
        if (!pl_lora_read(&j, &r))
            break;
        const char *t = r.target ? prefixed(L, prefix, r.target) : NULL;
        const char *a = t ? prefixed(L, prefix, r.a) : NULL;
        const char *b = a ? prefixed(L, prefix, r.b) : NULL;
        if (!b || state_find(&L->st, t) == STATE_NONE || state_find(&L->st, a) == STATE_NONE ||
            state_find(&L->st, b) == STATE_NONE) {
            dg_file(L->sink, SURG_WARNING, "lora-metadata", surg_ckpt_path(part),
                    "the recorded LoRA adapter of \"%s\" (\"%s\", \"%s\") does not fit the "
                    "tensors here; it is dropped",
                    r.target ? r.target : "?", r.a ? r.a : "?", r.b ? r.b : "?");
            continue;
        }
        r.target = t;
        r.a = a;
        r.b = b;
        add_record(L, &r);
    }
    if (more == 0 && !json_end(&j))
        more = -1;
    if (more != 0 && !L->nomem)
        dg_file(L->sink, SURG_WARNING, "lora-metadata", surg_ckpt_path(part),
                "the \"surg.lora\" metadata is not a list of LoRA records (%s); it is dropped",
                j.failed ? j.err : "not a record");
}

void lw_load_records(lw *L, const surg_ckpt *in)
{
    load_ties(L, in);
    const char *prefix;
    const surg_ckpt *part;
    for (size_t i = 0; !L->nomem && (part = surg_ckpt_part_at(in, i, &prefix)) != NULL; i++)
        part_lora(L, part, prefix);
}
