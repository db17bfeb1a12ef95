/* out_names.c: the result's names against the outputs they will be written
 * to (out_names.h). A name no format holds was refused where a statement
 * made it; here are the rules of one format (an .npz's name length), and
 * the names a split output makes by taking its prefix off. */
#include "compiler/out_names.h"

#include <string.h>

#include "support/diag.h"
#include "runtime/format.h"
#include "support/tensor_name.h"

/* The output whose prefix starts `name`, or n (surg_program_check_parts
 * reports those). */
static size_t output_of(const surg_ckpt_part *outs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(name, outs[i].prefix, strlen(outs[i].prefix)) == 0)
            return i;
    return n;
}

static void check_one(lw *L, const surg_ckpt_part *outs, size_t n, fmt_id forced,
                      const char *name, src_span at, const surg_ckpt *input, bool tied)
{
    size_t k = output_of(outs, n, name);
    if (k == n)
        return;
    size_t plen = strlen(outs[k].prefix);
    const char *written = name + plen;
    tn_format rules = outs[k].path ? fmt_readers[fmt_output_as(outs[k].path, forced)]->names
                      : forced != FMT_NONE ? fmt_readers[forced]->names
                                           : TN_ANY;
    const char *why = tn_format_problem(written, strlen(written), rules);
    if (!why)
        return;
    char shown[80], shown_as[80];
    buf msg;
    buf_init(&msg);
    buf_printf(&msg, "%s\"%s\" ", tied ? "the tied name " : "", tn_short(name, shown, 64));
    if (strcmp(shown, name) != 0)
        buf_printf(&msg, "(%zu bytes) ", strlen(name));
    if (plen)
        buf_printf(&msg, "goes to %s as \"%s\" (\"%s\" taken off), which ",
                   outs[k].path ? outs[k].path : "its own output", tn_short(written, shown_as, 64),
                   outs[k].prefix);
    buf_printf(&msg, "cannot be written %s%s: %s", plen ? "there" : "to ",
               plen ? "" : outs[k].path, why);
    const char *text = msg.failed ? "(out of memory)" : msg.data;
    L->nomem |= msg.failed;
    if (at.end) {
        lw_error(L, at, "name-output", NULL, 0, "%s", text);
    } else { /* the input's own name */
        dg_file(L->sink, SURG_ERROR, "name-output", surg_ckpt_path(input), "%s", text);
        L->errors++;
    }
    buf_free(&msg);
}

void on_check_outputs(lw *L, const surg_compile_opts *o, const surg_ckpt *input)
{
    surg_ckpt_part single = {"", o->out_path};
    const surg_ckpt_part *outs = o->n_outputs ? o->outputs : &single;
    size_t n = o->n_outputs ? o->n_outputs : 1;
    fmt_id forced = o->out_format ? fmt_by_id(o->out_format) : FMT_NONE; /* checked */
    if (!o->n_outputs && !o->out_path && forced == FMT_NONE)
        return;
    for (size_t i = 0; i < L->st.n; i++)
        check_one(L, outs, n, forced, L->st.e[i].name, L->st.e[i].at, input,
                  L->st.e[i].tied != NULL);
}
