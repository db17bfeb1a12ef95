/* lsp_check.c: `surg lsp`'s diagnostics: a document parsed and compiled as
 * `surg check` does, every diagnostic (its notes appended, one a line) sent
 * as the LSP's publishDiagnostics; those of another file (the abstract
 * state) at the line that named it. */
#include <stdlib.h>
#include <string.h>

#include "lsp.h"

typedef struct diag_item {
    surg_severity severity;
    char *code, *file, *message; /* message: with its notes, one a line */
    uint32_t line, col, end_line, end_col;
} diag_item;

typedef struct diag_list {
    diag_item *v;
    size_t n, cap;
} diag_list;

static char *joined(const surg_diag *d)
{
    char *p = NULL;
    size_t n;
    FILE *f = open_memstream(&p, &n);
    if (!f)
        return NULL;
    fputs(d->message, f);
    for (size_t i = 0; i < d->n_notes; i++)
        fprintf(f, "\nnote: %s", d->notes[i]);
    if (fclose(f) != 0) {
        free(p);
        return NULL;
    }
    return p;
}

static void collect(const surg_diag *d, void *user)
{
    diag_list *l = user;
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        diag_item *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return;
        l->v = v;
        l->cap = cap;
    }
    diag_item *it = &l->v[l->n];
    *it = (diag_item){d->severity, strdup(d->code ? d->code : ""), strdup(d->file ? d->file : ""),
                      joined(d), d->line, d->col, d->end_line, d->end_col};
    if (!it->code || !it->file || !it->message) {
        free(it->code);
        free(it->file);
        free(it->message);
        return;
    }
    l->n++;
}

static void diags_free(diag_list *l)
{
    for (size_t i = 0; i < l->n; i++) {
        free(l->v[i].code);
        free(l->v[i].file);
        free(l->v[i].message);
    }
    free(l->v);
}

static void put_diag(FILE *f, const lsp_doc *d, int units, const diag_item *it, size_t at_from,
                     size_t at_to)
{
    bool here = it->line && strcmp(it->file, d->path) == 0;
    size_t from = here ? lsp_offset_of_col(d, it->line, it->col) : at_from;
    size_t to = here ? lsp_offset_of_col(d, it->end_line, it->end_col) : at_to;
    fputs("{\"range\":", f);
    lsp_put_range(f, d, units, from, to < from ? from : to);
    fprintf(f, ",\"severity\":%d,\"source\":\"surg\",\"code\":",
            it->severity == SURG_ERROR ? 1 : it->severity == SURG_WARNING ? 2 : 3);
    put_json_str(f, it->code);
    fputs(",\"message\":", f);
    if (here || !it->file[0]) {
        put_json_str(f, it->message);
    } else { /* a problem of another file (the abstract state): named */
        char *m = malloc(strlen(it->file) + strlen(it->message) + 3);
        if (m)
            sprintf(m, "%s: %s", it->file, it->message);
        put_json_str(f, m ? m : it->message);
        free(m);
    }
    fputc('}', f);
}

/* Check a document as `surg check` would, and lsp_publish what it says. */
void lsp_publish(lsp_server *s, const lsp_doc *d)
{
    diag_list l = {0};
    surg_sink sink = {.fn = collect, .user = &l};
    surg_recipe *r = NULL;
    size_t at_from = 0, at_to = 0;
    /* after syntax errors, what parsed is compiled too, as surg check does */
    surg_status st = surg_recipe_parse_partial(d->path, d->text, d->len, &sink, &r);
    if (r && (st == SURG_OK || st == SURG_EINVALID)) {
        char *from = lsp_state_path(s, d, &at_from, &at_to);
        surg_ckpt *ck = NULL;
        if (from && surg_ckpt_open(from, &sink, &ck) == SURG_OK) {
            surg_program *p = NULL;
            surg_compile(r, ck, &sink, &p);
            surg_program_free(p);
            surg_ckpt_close(ck);
        }
        free(from);
        surg_recipe_free(r);
    }
    lsp_msg m;
    if (lsp_msg_open(&m)) {
        fputs("{\"jsonrpc\":\"2.0\",\"method\":\"textDocument/publishDiagnostics\","
              "\"params\":{\"uri\":", m.f);
        put_json_str(m.f, d->uri);
        fprintf(m.f, ",\"version\":%lld,\"diagnostics\":[", d->version);
        for (size_t i = 0; i < l.n; i++) {
            if (i)
                fputc(',', m.f);
            put_diag(m.f, d, s->units, &l.v[i], at_from, at_to);
        }
        fputs("]}}", m.f);
        lsp_msg_send(s, &m);
    }
    diags_free(&l);
}
