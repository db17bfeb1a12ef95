/* statements.h: what the files that lower statements share: the opening most
 * statements begin with, and the statements kept in files of their own
 * (structural.c, lora.c) for the dispatch table in statements.c. */
#ifndef SURG_STATEMENTS_H
#define SURG_STATEMENTS_H

#include "compiler/change.h"

/* What most statements open with: the matches of the pattern, the target
 * templates (the first `n_templates` from `templates` on, which may use the
 * pattern's captures, and $i if `index`), and the change they build. */
typedef struct lw_stmt {
    unsigned before; /* L->errors when the statement began */
    lw_matches ms;
    gl_template t[2];
    change c;
} lw_stmt;

/* False: nothing to do (any error is reported, nothing is left to free). */
bool lw_stmt_open(lw *L, const ast_stmt *s, const ast_string *templates, size_t n_templates,
                  bool index, lw_stmt *o);
/* Commit the change if the statement reported no error; free. */
void lw_stmt_close(lw *L, lw_stmt *o);

/* structural.c: split, concat, stack, unstack. */
void lw_split(lw *L, const ast_stmt *s);
void lw_concat(lw *L, const ast_stmt *s);
void lw_stack(lw *L, const ast_stmt *s);
void lw_unstack(lw *L, const ast_stmt *s);

/* resize.c: the map `resize` stands for, for one match, as a statement of
 * its own (`x` when the size is already the match's); NULL after an
 * error. */
const ast_stmt *lw_resize_map(lw *L, const ast_stmt *s, const lw_match *m, uint64_t size);
/* lora.c: init-lora; and the state cut to the adapters alone, for an
 * output that is a PEFT adapter (--out-format peft). */
void lw_init_lora(lw *L, const ast_stmt *s);
void lw_lora_adapter_only(lw *L, size_t n_outputs);

/* lora_merge.c: merge-lora. */
void lw_merge_lora(lw *L, const ast_stmt *s);

#endif
