/* parts.c: the mounted inputs and split outputs of a program. Outputs split
 * by name prefix across several files (parameters and optimizer state
 * apart): every tensor must land in one of them, and a tie cannot point
 * from one file into another. Inputs mounted under their names: a pattern
 * that lacks an input's prefix is told so, and one output holding names
 * still under an input's prefix beside names moved out is warned of. */
#include <stdio.h>
#include <string.h>

#include "support/buf.h"
#include "support/diag.h"
#include "compiler/lower.h"
#include "compiler/program.h"

/* The output whose prefix starts `name`, or n. */
static size_t part_of(const surg_ckpt_part *outputs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(name, outputs[i].prefix, strlen(outputs[i].prefix)) == 0)
            return i;
    return n;
}

static void list_prefixes(char *text, size_t size, const surg_ckpt_part *outputs, size_t n)
{
    size_t len = 0;
    text[0] = '\0';
    for (size_t i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(text + len, size - len, "%s\"%s\"", i ? ", " : "",
                                outputs[i].prefix);
}

surg_status surg_program_check_parts(const surg_program *p, const surg_ckpt_part *outputs,
                                     size_t n, surg_sink *sink)
{
    char prefixes[256];
    list_prefixes(prefixes, sizeof prefixes, outputs, n);
    surg_status st = SURG_OK;
    for (size_t i = 0; i < p->n_out; i++)
        if (part_of(outputs, n, p->out_info[i].name) == n) {
            dg_file(sink, SURG_ERROR, "parts-unplaced", surg_ckpt_path(p->input),
                    "\"%s\" is under none of %s, so it would belong to no output file",
                    p->out_info[i].name, prefixes);
            st = SURG_EINVALID;
        }
    for (size_t i = 0; i < p->n_alias; i++) {
        size_t a = part_of(outputs, n, p->alias[i].key), b = part_of(outputs, n, p->alias[i].value);
        if (a == n) {
            dg_file(sink, SURG_ERROR, "parts-unplaced", surg_ckpt_path(p->input),
                    "the tied name \"%s\" is under none of %s, so it would belong to no output "
                    "file",
                    p->alias[i].key, prefixes);
            st = SURG_EINVALID;
        } else if (a != b && b < n) {
            dg_file(sink, SURG_ERROR, "parts-tie", surg_ckpt_path(p->input),
                    "\"%s\" is tied to \"%s\", which goes to another file (%s): a tie is "
                    "stored within one file",
                    p->alias[i].key, p->alias[i].value, outputs[b].path);
            st = SURG_EINVALID;
        }
    }
    return st;
}

/* ---- the mounted inputs, seen from the recipe ---------------------------- */

/* The names a forgotten prefix may try, over a whole compilation: past it,
 * no more such notes. */
#define HINT_WORK ((uint64_t)1 << 24)

/* The prefix of a mounted input without its '/': its name. */
static int name_len(const char *prefix) { return (int)strlen(prefix) - 1; }

/* Whether some name of the state matches `text` under `prefix` (its glob
 * characters quoted). */
static bool matches_under(lw *L, const char *prefix, const char *text)
{
    buf b;
    buf_init(&b);
    for (const char *c = prefix; *c; c++) {
        if (strchr("*?[]{}\\", *c))
            buf_putc(&b, '\\');
        buf_putc(&b, *c);
    }
    buf_puts(&b, text);
    gl_pattern q;
    char err[64];
    bool found = false;
    if (b.failed) {
        L->nomem = true;
    } else if (gl_compile(L->ar, b.data, &q, err, sizeof err)) {
        size_t lo, hi;
        state_prefix_range(&L->st, q.prefix_len ? q.toks[0].text : "", q.prefix_len, &lo, &hi);
        gl_span caps[GL_MAX_CAPTURES + 1];
        for (size_t i = lo; i < hi && !found && L->hint_work < HINT_WORK; i++, L->hint_work++) {
            int r = gl_match(&q, L->st.e[i].name, L->st.e[i].len, caps, &L->scratch);
            L->nomem |= r < 0;
            found = r > 0;
        }
    }
    buf_free(&b);
    return found;
}

size_t lw_mount_hints(lw *L, const char *text, char (*notes)[256], size_t max)
{
    const char *prefix;
    const surg_ckpt *part;
    size_t n = 0;
    if (!L->input)
        return 0;
    for (size_t i = 0; n < max && !L->nomem && L->hint_work < HINT_WORK &&
                       (part = surg_ckpt_part_at(L->input, i, &prefix)) != NULL;
         i++) {
        size_t len = strlen(prefix);
        if (len == 0 || strncmp(text, prefix, len) == 0 || !matches_under(L, prefix, text))
            continue;
        snprintf(notes[n++], sizeof *notes,
                 "did you mean \"%s%s\"? the input \"%.*s\" is mounted under \"%s\"", prefix,
                 text, name_len(prefix), prefix, prefix);
    }
    return n;
}

/* How many names of the state, and of the values kept at their paths, are
 * under `prefix`; the first three in *first (byte order of the names). */
static size_t count_under(lw *L, const char *prefix, const char *first[3])
{
    size_t lo, hi, len = strlen(prefix), n = 0;
    state_prefix_range(&L->st, prefix, len, &lo, &hi);
    for (size_t i = lo; i < hi; i++, n++)
        if (n < 3)
            first[n] = L->st.e[i].name;
    for (size_t i = 0; i < L->n_paths; i++) {
        const lw_path *x = &L->paths[i];
        if (x->path && !x->tensor && strncmp(x->path, prefix, len) == 0) {
            if (n < 3)
                first[n] = x->path;
            n++;
        }
    }
    return n;
}

void lw_inputs_left(lw *L)
{
    const char *prefix;
    const surg_ckpt *part;
    size_t under = 0, total = L->st.n;
    for (size_t i = 0; i < L->n_paths; i++)
        total += L->paths[i].path && !L->paths[i].tensor;
    for (size_t i = 0; L->input && (part = surg_ckpt_part_at(L->input, i, &prefix)) != NULL;
         i++) {
        const char *first[3];
        under += *prefix ? count_under(L, prefix, first) : 0;
    }
    if (under == 0 || under == total)
        return; /* every name out of the inputs, or each still in one */
    for (size_t i = 0; (part = surg_ckpt_part_at(L->input, i, &prefix)) != NULL; i++) {
        const char *first[3];
        size_t n = *prefix ? count_under(L, prefix, first) : 0;
        if (n == 0)
            continue;
        buf names;
        buf_init(&names);
        for (size_t k = 0; k < n && k < 3; k++)
            buf_printf(&names, "%s\"%s\"", k ? ", " : "", first[k]);
        if (n > 3)
            buf_printf(&names, " and %zu more", n - 3);
        L->nomem |= names.failed;
        dg_file(L->sink, SURG_WARNING, "inputs-left", L->src->path,
                "the output keeps %zu name%s under \"%s\", the input \"%.*s\" (%s), beside "
                "names out of every input's prefix; drop \"%s**\" unless they belong in it",
                n, n == 1 ? "" : "s", prefix, name_len(prefix), prefix,
                names.data ? names.data : "", prefix);
        buf_free(&names);
    }
}
