/* target.c: `--to`: the result against the new model's abstract state. A
 * tied name, of the result or of the target, counts as a name with the
 * type of the tensor it is stored as. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "support/buf.h"
#include "support/diag.h"
#include "compiler/program.h"
#include "support/strsort.h"

static void type_text(buf *b, const surg_tensor_info *t)
{
    buf_printf(b, "%s[", surg_dtype_recipe_name(t->dtype));
    for (uint32_t i = 0; i < t->rank; i++)
        buf_printf(b, "%s%llu", i ? ", " : "", (unsigned long long)t->shape[i]);
    buf_putc(b, ']');
}

static bool same_type(const surg_tensor_info *a, const surg_tensor_info *b)
{
    return a->dtype == b->dtype && a->rank == b->rank &&
           memcmp(a->shape, b->shape, a->rank * sizeof *a->shape) == 0;
}

/* A type as text, in one of two buffers (for messages with two types). */
static const char *type_str(const surg_tensor_info *t, int slot)
{
    static _Thread_local char text[2][512];
    buf b;
    buf_init(&b);
    type_text(&b, t);
    snprintf(text[slot], sizeof text[slot], "%s", b.failed ? "?" : b.data);
    buf_free(&b);
    return text[slot];
}

/* A name of one side, stored or tied, with the type of what it is stored as. */
typedef struct side_name {
    const char *name; /* first: the key ss_sort sorts by */
    const surg_tensor_info *t;
    bool tied;
} side_name;

/* The stored tensors and the tied names (NULL after running out of memory;
 * a tied name whose tensor is missing is left out). */
static side_name *result_names(const surg_program *p, size_t *n)
{
    side_name *v = malloc((p->n_out + p->n_alias + 1) * sizeof *v);
    if (!v)
        return NULL;
    *n = 0;
    for (size_t i = 0; i < p->n_out; i++)
        v[(*n)++] = (side_name){p->out_info[i].name, &p->out_info[i], false};
    for (size_t i = 0; i < p->n_alias; i++) {
        size_t lo = 0, hi = p->n_out; /* the outputs are in name order */
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (strcmp(p->out_info[mid].name, p->alias[i].value) < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo < p->n_out && strcmp(p->out_info[lo].name, p->alias[i].value) == 0)
            v[(*n)++] = (side_name){p->alias[i].key, &p->out_info[lo], true};
    }
    if (ss_sort(v, *n, sizeof *v) != 0) {
        free(v);
        return NULL;
    }
    return v;
}

static side_name *target_names(const surg_ckpt *t, size_t *n)
{
    size_t count = surg_ckpt_count(t), ties = surg_ckpt_tie_count(t);
    side_name *v = malloc((count + ties + 1) * sizeof *v);
    if (!v)
        return NULL;
    *n = 0;
    for (size_t i = 0; i < count; i++)
        v[(*n)++] = (side_name){surg_ckpt_tensor(t, i)->name, surg_ckpt_tensor(t, i), false};
    for (size_t i = 0; i < ties; i++) {
        const surg_meta_entry *e = surg_ckpt_tie(t, i);
        size_t k = surg_ckpt_find(t, e->value);
        if (k != (size_t)-1 && surg_ckpt_find(t, e->key) == (size_t)-1)
            v[(*n)++] = (side_name){e->key, surg_ckpt_tensor(t, k), true};
    }
    if (ss_sort(v, *n, sizeof *v) != 0) {
        free(v);
        return NULL;
    }
    return v;
}

surg_status surg_program_check_target(const surg_program *p, const surg_ckpt *target,
                                      surg_sink *sink)
{
    const char *file = surg_ckpt_path(target);
    size_t n_want = 0, n_have = 0, i = 0, j = 0;
    side_name *want_v = target_names(target, &n_want), *have_v = result_names(p, &n_have);
    if (!want_v || !have_v) {
        free(want_v);
        free(have_v);
        return dg_nomem(sink, file);
    }
    unsigned errors = 0;
    /* Both lists are in name order: walk them together. A tied name counts
     * as a name, of the type of the tensor it is stored as. */
    while (i < n_want || j < n_have) {
        const side_name *want = i < n_want ? &want_v[i] : NULL;
        const side_name *have = j < n_have ? &have_v[j] : NULL;
        int c = !want ? 1 : !have ? -1 : strcmp(want->name, have->name);
        if (c < 0) {
            dg_file(sink, SURG_ERROR, "target-missing", file,
                    "the result lacks \"%s\" (%s in the target%s)", want->name,
                    type_str(want->t, 0), want->tied ? ", tied" : "");
            errors++;
            i++;
        } else if (c > 0) {
            dg_file(sink, SURG_ERROR, "target-unexpected", file,
                    "the result has %s\"%s\" (%s), which the target does not",
                    have->tied ? "the tied name " : "", have->name, type_str(have->t, 0));
            errors++;
            j++;
        } else {
            if (!same_type(want->t, have->t)) {
                dg_file(sink, SURG_ERROR, "target-mismatch", file,
                        "the result's %s\"%s\" is %s, but the target has %s",
                        have->tied ? "tied " : "", have->name, type_str(have->t, 0),
                        type_str(want->t, 1));
                errors++;
            }
            i++;
            j++;
        }
    }
    free(want_v);
    free(have_v);
    return errors ? SURG_EINVALID : SURG_OK;
}
