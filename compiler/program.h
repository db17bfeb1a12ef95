/* program.h: a compiled recipe: the op graph, the final names bound to its
 * nodes, the tied names, and the metadata the output gains. */
#ifndef SURG_PROGRAM_H
#define SURG_PROGRAM_H

#include "support/buf.h"
#include "compiler/graph.h"
#include "compiler/state.h"
#include "runtime/plan.h"

struct surg_program {
    arena ar;
    surg_ckpt *input; /* borrowed: the checkpoint the recipe was compiled against */
    cg_graph g;
    cg_output *out;   /* sorted by name */
    surg_tensor_info *out_info;
    size_t n_out;
    surg_meta_entry *alias; /* tied name -> the name it is stored as; sorted */
    size_t n_alias;
    /* Where each output's and tied name's name came from: the statement's
     * text that gave it ({0, 0}: the input's own name). */
    src_span *out_at, *alias_at;
    state_gone *gone; /* the names the recipe took away, latest each, sorted */
    size_t n_gone;
    const cg_lora *lora; /* the init-lora records, in recipe order */
    pl_path *paths; /* the path-keyed metadata's paths, where the recipe left them */
    size_t n_paths;
    surg_meta_entry *meta_edits; /* keys the recipe set (or dropped: NULL), sorted */
    size_t n_meta_edits;
    const char **files_read; /* the JSON files the recipe read */
    size_t n_files_read;
    /* What the naive way would do: load every input, make a new array for
     * every value each statement makes, keep the whole dict in memory. */
    struct {
        uint64_t read, generated, computed, peak;
    } naive;
};

/* The records the output's metadata carries: the tied names, the LoRA
 * records, the path-keyed metadata and the recipe's metadata edits,
 * borrowed. */
static inline pl_records pg_records(const surg_program *p)
{
    return (pl_records){.ties = p->alias, .n_ties = p->n_alias, .lora = p->lora,
                        .paths = p->paths, .n_paths = p->n_paths,
                        .edits = p->meta_edits, .n_edits = p->n_meta_edits,
                        .files = p->files_read, .n_files = p->n_files_read};
}

/* `--to` (target.c): the result against a target's abstract state. With
 * the recipe's source, each problem a statement caused is reported at that
 * statement; without (src NULL), at the target. */
surg_status pg_check_target(const surg_program *p, const src_file *src, const surg_ckpt *target,
                            surg_sink *sink);

/* surg_compile_for, calling `after` after each statement (invert.c). */
struct lw;
struct ast_stmt;
typedef void pg_after_fn(void *user, const struct lw *L, const struct ast_stmt *s,
                         size_t n_before, size_t n_tied_before);
surg_status pg_compile_traced(const surg_recipe *recipe, surg_ckpt *from,
                              const surg_compile_opts *opts, surg_sink *sink,
                              pg_after_fn *after, void *user, surg_program **out);

/* The value of a constant node, as short as its dtype allows: a number
 * that met an f32 tensor shows as 0.1, not as the double 0.100000001. */
void pg_value_text(buf *b, const cg_node *n);

#endif
