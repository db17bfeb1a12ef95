/* gone.c: where names went. Every name a statement takes out of the state
 * is noted with the statement and, for a rename, its new name, so that a
 * later pattern that matches nothing, and a `--to` target that misses the
 * name, can say where it went instead of guessing at another name. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "compiler/lower.h"
#include "support/strsort.h"

void lw_gone_add(lw *L, const char *name, const char *to)
{
    if (L->n_gone >= LW_GONE_MAX || !L->stmt)
        return;
    if (L->n_gone == L->cap_gone) {
        size_t cap = L->cap_gone ? L->cap_gone * 2 : 64;
        state_gone *g = realloc(L->gone, cap * sizeof *g);
        if (!g) {
            L->nomem = true;
            return;
        }
        L->gone = g;
        L->cap_gone = cap;
    }
    L->gone[L->n_gone] = (state_gone){name, to, L->stmt->span, (uint32_t)L->stmt->kind,
                                      (uint32_t)L->n_gone};
    L->n_gone++;
}

void lw_gone_text(buf *b, const src_file *src, const state_gone *g)
{
    uint32_t line, col;
    src_position(src, g->at.start, &line, &col);
    buf_printf(b, "\"%s\" was ", g->name);
    switch ((ast_stmt_kind)g->kind) {
    case STMT_RENAME: buf_printf(b, "renamed to \"%s\"", g->to ? g->to : "?"); break;
    case STMT_DROP: buf_puts(b, "dropped"); break;
    case STMT_KEEP: buf_puts(b, "dropped (kept by no pattern)"); break;
    case STMT_SPLIT: buf_puts(b, "split"); break;
    case STMT_CONCAT: buf_puts(b, "concatenated"); break;
    case STMT_STACK: buf_puts(b, "stacked"); break;
    case STMT_UNSTACK: buf_puts(b, "unstacked"); break;
    case STMT_MERGE_LORA: buf_puts(b, "merged"); break;
    default: buf_printf(b, "taken away by '%s'", ast_stmt_keyword((ast_stmt_kind)g->kind)); break;
    }
    buf_printf(b, " on line %u", line);
}

size_t lw_gone_notes(lw *L, const gl_pattern *p, const char **notes, size_t max)
{
    size_t n = 0;
    gl_span caps[GL_MAX_CAPTURES + 1];
    uint64_t end = L->guess_work + LW_GUESS_WORK_PER_PATTERN;
    if (end > LW_GUESS_WORK_TOTAL)
        end = LW_GUESS_WORK_TOTAL;
    /* The latest departures first: what the pattern's author last saw. */
    for (size_t i = L->n_gone; i-- > 0 && n < max && L->guess_work < end;) {
        const state_gone *g = &L->gone[i];
        size_t len = strlen(g->name);
        L->guess_work += 1 + (uint64_t)len * (p->n_toks + 1) / 8;
        if (gl_match(p, g->name, (uint32_t)len, caps, &L->scratch) != 1)
            continue;
        bool seen = false; /* a name that left twice: its latest departure */
        for (size_t k = 0; k < n && !seen; k++)
            seen = strncmp(notes[k] + 1, g->name, len) == 0 && notes[k][len + 1] == '"';
        if (seen)
            continue;
        buf b;
        buf_init(&b);
        lw_gone_text(&b, L->src, g);
        notes[n] = b.failed ? NULL : ar_strdup(L->ar, b.data);
        buf_free(&b);
        if (!notes[n]) {
            L->nomem = true;
            break;
        }
        n++;
    }
    return n;
}

bool lw_gone_finish(lw *L, arena *ar, state_gone **out, size_t *n)
{
    *n = 0;
    *out = ar_array(ar, L->n_gone + 1, sizeof **out);
    if (!*out)
        return false;
    if (!L->n_gone)
        return true;
    memcpy(*out, L->gone, L->n_gone * sizeof **out);
    if (ss_sort(*out, L->n_gone, sizeof **out) != 0)
        return false;
    /* Equal names sit together, in no order: keep the latest of each. */
    state_gone *v = *out;
    for (size_t i = 0; i < L->n_gone;) {
        size_t j = i, best = i;
        while (j < L->n_gone && strcmp(v[j].name, v[i].name) == 0) {
            if (v[j].seq > v[best].seq)
                best = j;
            j++;
        }
        v[(*n)++] = v[best];
        i = j;
    }
    return true;
}

const state_gone *lw_gone_find(const state_gone *v, size_t n, const char *name)
{
    size_t k = n ? ss_find(v, n, sizeof *v, name) : (size_t)-1;
    return k == (size_t)-1 ? NULL : &v[k];
}
