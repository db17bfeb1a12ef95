/* target.c: `--to`: the result against the new model's abstract state. A
 * tied name counts as present with the type of the tensor it is stored as. */
#include <stdio.h>
#include <string.h>

#include "buf.h"
#include "diag.h"
#include "program.h"

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

/* The result's tensor for a name: a stored one, or the one a tied name is
 * stored as. */
static const surg_tensor_info *result_tensor(const surg_program *p, const char *name)
{
    size_t lo = 0, hi = p->n_out;
    for (int pass = 0; pass < 2; pass++) {
        lo = 0;
        hi = p->n_out;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            int c = strcmp(p->out_info[mid].name, name);
            if (c == 0)
                return &p->out_info[mid];
            if (c < 0)
                lo = mid + 1;
            else
                hi = mid;
        }
        size_t i = 0;
        while (i < p->n_alias && strcmp(p->alias[i].key, name) != 0)
            i++;
        if (i == p->n_alias)
            return NULL;
        name = p->alias[i].value;
    }
    return NULL;
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

surg_status surg_program_check_target(const surg_program *p, const surg_ckpt *target,
                                      surg_sink *sink)
{
    const char *file = surg_ckpt_path(target);
    size_t n = surg_ckpt_count(target), i = 0, j = 0;
    unsigned errors = 0;
    /* Both lists are in name order: walk them together. */
    while (i < n || j < p->n_out) {
        const surg_tensor_info *want = i < n ? surg_ckpt_tensor(target, i) : NULL;
        const surg_tensor_info *have = j < p->n_out ? &p->out_info[j] : NULL;
        int c = !want ? 1 : !have ? -1 : strcmp(want->name, have->name);
        if (c < 0) {
            const surg_tensor_info *tied = result_tensor(p, want->name);
            if (!tied)
                dg_file(sink, SURG_ERROR, "target-missing", file,
                        "the result lacks \"%s\" (%s in the target)", want->name,
                        type_str(want, 0));
            else if (!same_type(tied, want))
                dg_file(sink, SURG_ERROR, "target-mismatch", file,
                        "the result's tied \"%s\" is %s, but the target has %s", want->name,
                        type_str(tied, 0), type_str(want, 1));
            errors += !tied || !same_type(tied, want);
            i++;
        } else if (c > 0) {
            dg_file(sink, SURG_ERROR, "target-unexpected", file,
                    "the result has \"%s\" (%s), which the target does not", have->name,
                    type_str(have, 0));
            errors++;
            j++;
        } else {
            if (!same_type(want, have)) {
                dg_file(sink, SURG_ERROR, "target-mismatch", file,
                        "the result's \"%s\" is %s, but the target has %s", have->name,
                        type_str(have, 0), type_str(want, 1));
                errors++;
            }
            i++;
            j++;
        }
    }
    return errors ? SURG_EINVALID : SURG_OK;
}
