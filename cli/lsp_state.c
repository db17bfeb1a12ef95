/* lsp_state.c: the abstract state a recipe is checked against in `surg
 * lsp` — named by a comment at its top or by the setting surg.from — and
 * the state one of its statements sees: the result of the statements
 * before it, compiled on their own. */
#include <stdlib.h>
#include <string.h>

#include "lsp.h"

/* `# surg: from PATH` among the comments that open the recipe: PATH's
 * bytes (*len) and the offsets of its line. */
static const char *header_from(const lsp_doc *d, size_t *len, size_t *line_from, size_t *line_to)
{
    for (size_t i = 0; i < d->len;) {
        const char *nl = memchr(d->text + i, '\n', d->len - i);
        size_t end = nl ? (size_t)(nl - d->text) : d->len, k = i;
        while (k < end && (d->text[k] == ' ' || d->text[k] == '\t' || d->text[k] == '\r'))
            k++;
        if (k < end && d->text[k] != '#')
            return NULL; /* the first statement: the header is over */
        if (k < end) {
            const char *p = d->text + k + 1, *e = d->text + end;
            while (p < e && *p == ' ')
                p++;
            if ((size_t)(e - p) > 10 && strncmp(p, "surg: from", 10) == 0 && p[10] == ' ') {
                p += 11;
                while (p < e && *p == ' ')
                    p++;
                while (e > p && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
                    e--;
                *len = (size_t)(e - p);
                *line_from = i;
                *line_to = end;
                return *len ? p : NULL;
            }
        }
        i = end + 1;
    }
    return NULL;
}

/* `path` (len bytes) relative to `base`'s folder (or to `base` itself when
 * base_is_dir), unless it is absolute. */
static char *resolve(const char *base, bool base_is_dir, const char *path, size_t len)
{
    if (path[0] == '/' || !base)
        return lsp_strndup(path, len);
    const char *slash = strrchr(base, '/');
    size_t dir = base_is_dir ? strlen(base) : slash ? (size_t)(slash - base) : 0;
    if (!base_is_dir && !slash)
        return lsp_strndup(path, len);
    char *out = malloc(dir + len + 2);
    if (out)
        snprintf(out, dir + len + 2, "%.*s/%.*s", (int)dir, base, (int)len, path);
    return out;
}

char *lsp_state_path(const lsp_server *s, const lsp_doc *d, size_t *at_from, size_t *at_to)
{
    size_t len;
    const char *p = header_from(d, &len, at_from, at_to);
    if (p)
        return resolve(d->path, false, p, len);
    *at_from = *at_to = 0;
    return s->from ? resolve(s->root, true, s->from, strlen(s->from)) : NULL;
}


/* ---- the state a statement sees ---------------------------------------- */

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const lsp_entry *)a)->name, ((const lsp_entry *)b)->name);
}

static const surg_tensor_info *program_find(const surg_program *p, const char *name)
{
    size_t lo = 0, hi = surg_program_output_count(p);
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(surg_program_output(p, mid)->name, name);
        if (c == 0)
            return surg_program_output(p, mid);
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* The names of the result of the recipe's text before `upto`, in byte
 * order; without a program (it does not compile), the input's. */
static bool view_entries(lsp_view *v)
{
    size_t nt = v->p ? surg_program_output_count(v->p) : surg_ckpt_count(v->ck);
    size_t na = v->p ? surg_program_alias_count(v->p) : surg_ckpt_tie_count(v->ck);
    v->e = malloc((nt + na + 1) * sizeof *v->e);
    if (!v->e)
        return false;
    for (size_t i = 0; i < nt; i++) {
        const surg_tensor_info *t = v->p ? surg_program_output(v->p, i) : surg_ckpt_tensor(v->ck, i);
        v->e[v->n++] = (lsp_entry){t->name, t, NULL};
    }
    for (size_t i = 0; i < na; i++) {
        const surg_meta_entry *a = v->p ? surg_program_alias(v->p, i) : surg_ckpt_tie(v->ck, i);
        size_t k = v->p ? 0 : surg_ckpt_find(v->ck, a->value);
        const surg_tensor_info *t = v->p ? program_find(v->p, a->value)
                                    : k == (size_t)-1 ? NULL : surg_ckpt_tensor(v->ck, k);
        if (t)
            v->e[v->n++] = (lsp_entry){a->key, t, a->value};
    }
    qsort(v->e, v->n, sizeof *v->e, entry_cmp);
    return true;
}

bool lsp_view_open(const lsp_server *s, const lsp_doc *d, size_t upto, lsp_view *v)
{
    memset(v, 0, sizeof *v);
    size_t at_from, at_to;
    char *from = lsp_state_path(s, d, &at_from, &at_to);
    surg_sink quiet = {0};
    bool ok = from && surg_ckpt_open(from, &quiet, &v->ck) == SURG_OK;
    free(from);
    if (!ok)
        return false;
    if (surg_recipe_parse(d->path, d->text, upto, &quiet, &v->r) != SURG_OK ||
        surg_compile(v->r, v->ck, &quiet, &v->p) != SURG_OK)
        v->before_failed = true;
    return view_entries(v);
}

void lsp_view_close(lsp_view *v)
{
    free(v->e);
    surg_program_free(v->p);
    surg_recipe_free(v->r);
    surg_ckpt_close(v->ck);
}

void lsp_put_type(FILE *f, const surg_tensor_info *t)
{
    fprintf(f, "%s[", surg_dtype_recipe_name(t->dtype));
    for (uint32_t k = 0; k < t->rank; k++)
        fprintf(f, "%s%llu", k ? ", " : "", (unsigned long long)t->shape[k]);
    fputc(']', f);
}
