/* compile.c: a parsed recipe and an abstract state in, a typed op graph out
 * (the public surg_compile). Only names, dtypes and shapes of the input are
 * read: never its data. */
#include <stdlib.h>
#include <string.h>

#include "support/diag.h"
#include "compiler/lower.h"
#include "compiler/mirror.h"
#include "compiler/out_names.h"
#include "compiler/program.h"
#include "compiler/statements.h"
#include "grammar/recipe.h"
#include "runtime/outpath.h"

static bool initial_state(lw *L, surg_ckpt *in)
{
    size_t n = surg_ckpt_count(in);
    if (!bb_reserve(&L->st.buf[0], (n + 1) * sizeof(state_entry)) ||
        !cg_reserve(&L->g, (uint32_t)n + 1024))
        return false;
    state_entry *e = L->st.buf[0].p;
    for (size_t i = 0; i < n; i++) {
        const surg_tensor_info *t = surg_ckpt_tensor(in, i);
        /* The checkpoint outlives the program: its shapes are not copied. */
        cg_node node = {.op = OP_INPUT, .dtype = t->dtype, .rank = t->rank, .shape = t->shape,
                        .nelems = t->nelems};
        node.a.input = i;
        cg_id id = cg_add(&L->g, &node);
        if (id == CG_NONE)
            return false;
        /* already sorted; {0, 0}: the input's own name */
        e[i] = (state_entry){.name = t->name, .node = id, .len = (uint32_t)strlen(t->name)};
        L->naive_dict += t->nbytes; /* the naive way loads everything */
    }
    L->naive_peak = L->naive_dict;
    L->st.e = e;
    L->st.n = n;
    return true;
}

static bool finish(lw *L, surg_program *p)
{
    size_t n_stored = L->st.n - L->st.n_tied;
    p->out = ar_array(&p->ar, n_stored + 1, sizeof *p->out);
    p->out_info = ar_array(&p->ar, n_stored + 1, sizeof *p->out_info);
    p->alias = ar_array(&p->ar, L->st.n_tied + 1, sizeof *p->alias);
    p->out_at = ar_array(&p->ar, n_stored + 1, sizeof *p->out_at);
    p->alias_at = ar_array(&p->ar, L->st.n_tied + 1, sizeof *p->alias_at);
    if (!p->out || !p->out_info || !p->alias || !p->out_at || !p->alias_at ||
        !lw_gone_finish(L, &p->ar, &p->gone, &p->n_gone))
        return false;
    p->n_out = p->n_alias = 0;
    for (size_t i = 0; i < L->st.n; i++) { /* both in name order */
        const state_entry *e = &L->st.e[i];
        if (e->tied) {
            p->alias_at[p->n_alias] = e->at;
            p->alias[p->n_alias++] = (surg_meta_entry){e->name, e->tied};
            continue;
        }
        const cg_node *n = cg_get(&p->g, e->node);
        p->out_at[p->n_out] = e->at;
        p->out[p->n_out] = (cg_output){e->name, e->node};
        p->out_info[p->n_out++] = (surg_tensor_info){
            e->name, n->dtype, n->rank, n->shape, n->nelems,
            n->nelems * surg_dtype_bits(n->dtype) / 8};
    }
    p->naive.read = 0;
    for (size_t i = 0; i < surg_ckpt_count(p->input); i++)
        p->naive.read += surg_ckpt_tensor(p->input, i)->nbytes;
    p->naive.generated = L->naive_generated;
    p->naive.computed = L->naive_computed;
    p->naive.peak = L->naive_peak;
    p->lora = L->lora;
    p->paths = ar_array(&p->ar, L->n_paths + 1, sizeof *p->paths);
    if (!p->paths)
        return false;
    p->n_paths = 0;
    for (size_t i = 0; i < L->n_paths; i++)
        if (L->paths[i].path)
            p->paths[p->n_paths++] = (pl_path){L->paths[i].key, L->paths[i].path,
                                               L->paths[i].value};
    return lw_meta_finish(L, &p->ar, &p->meta_edits, &p->n_meta_edits, &p->files_read,
                          &p->n_files_read);
}

surg_status surg_compile(const surg_recipe *recipe, surg_ckpt *from, surg_sink *sink,
                         surg_program **out)
{
    return surg_compile_for(recipe, from, NULL, sink, out);
}

surg_status surg_compile_for(const surg_recipe *recipe, surg_ckpt *from,
                             const surg_compile_opts *opts, surg_sink *sink, surg_program **out)
{
    return pg_compile_traced(recipe, from, opts, sink, NULL, NULL, out);
}

surg_status pg_compile_traced(const surg_recipe *recipe, surg_ckpt *from,
                              const surg_compile_opts *opts, surg_sink *sink,
                              pg_after_fn *after, void *user, surg_program **out)
{
    *out = NULL;
    const ast_recipe *r = gr_recipe_ast(recipe);
    fmt_id forced;
    if (opts && outp_format(sink, opts->out_format, &forced) != SURG_OK)
        return SURG_EUSAGE; /* a usage error, before any of the recipe's */
    surg_program *p = calloc(1, sizeof *p);
    if (!p)
        return dg_nomem(sink, r->src.path);
    ar_init(&p->ar);
    p->input = from;
    lw L = {.ar = &p->ar, .sink = sink, .src = &r->src, .input = from, .st = {.ar = &p->ar}};
    L.lora_tail = &L.lora;
    L.after = after;
    L.after_user = user;
    bool ok = initial_state(&L, from);
    if (ok && r->n_broken) {
        L.broken = malloc(r->n_broken * sizeof *L.broken);
        ok = L.broken != NULL;
        for (const ast_broken *b = r->broken; ok && b && L.n_broken < r->n_broken; b = b->next)
            L.broken[L.n_broken++] = b->at;
        L.nomem |= !ok;
    }
    if (ok)
        lw_load_records(&L, from);
    if (ok)
        lw_load_paths(&L, from);
    if (ok)
        lw_meta_load(&L, from);
    lw_name_budget(&L);
    if (ok)
        lw_statements(&L, r);
    if (ok && !L.nomem && L.errors == 0)
        mr_check_all(&L); /* slots a recipe changed by hand must still mirror */
    if (ok && !L.nomem && L.errors == 0 && opts)
        on_check_outputs(&L, opts, from);
    if (ok && !L.nomem && L.errors == 0 && opts && forced == FMT_PEFT)
        lw_lora_adapter_only(&L, opts->n_outputs);
    if (ok && !L.nomem && L.errors == 0 && !(opts && opts->n_outputs))
        lw_inputs_left(&L); /* several inputs, one output */
    p->g = L.g; /* the program owns the graph from here on */
    ok = ok && !L.nomem && L.errors == 0 && finish(&L, p);
    surg_status st = L.nomem ? dg_nomem(sink, r->src.path) : L.errors ? SURG_EINVALID
                     : ok ? SURG_OK
                          : dg_nomem(sink, r->src.path);
    if (st == SURG_OK && opts && opts->target)
        st = pg_check_target(p, &r->src, opts->target, sink);
    state_free(&L.st);
    free(L.gone);
    free(L.broken);
    free(L.paths);
    lw_meta_free(&L);
    bb_free(&L.matches);
    bb_free(&L.caps);
    gl_scratch_free(&L.scratch);
    if (st) {
        surg_program_free(p);
        return st;
    }
    *out = p;
    return SURG_OK;
}

void surg_program_free(surg_program *p)
{
    if (!p)
        return;
    cg_free(&p->g);
    ar_free(&p->ar);
    free(p);
}

size_t surg_program_output_count(const surg_program *p) { return p->n_out; }

const surg_tensor_info *surg_program_output(const surg_program *p, size_t i)
{
    return i < p->n_out ? &p->out_info[i] : NULL;
}

size_t surg_program_alias_count(const surg_program *p) { return p->n_alias; }

const surg_meta_entry *surg_program_alias(const surg_program *p, size_t i)
{
    return i < p->n_alias ? &p->alias[i] : NULL;
}
