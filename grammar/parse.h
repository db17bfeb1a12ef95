/* parse.h: text -> syntax tree. The grammar's only entry point, and the state
 * the scanner and the parser share (no globals). */
#ifndef SURG_PARSE_H
#define SURG_PARSE_H

#include <setjmp.h>

#include "grammar/ast.h"

/* What the scanner and the parser share while one recipe is parsed. */
typedef struct gr_ctx {
    arena *ar;
    surg_sink *sink;
    ast_recipe *recipe;
    ast_stmt **stmt_tail;
    ast_comment **comment_tail;
    uint32_t offset;     /* bytes scanned so far */
    int depth;           /* open ( and [: newlines inside are spaces */
    uint32_t opens[32];  /* where the innermost of them were opened */
    int last_token;      /* to know when a word starts a statement */
    bool in_mirror;      /* in a mirror statement: `factored` and `min` are its words */
    bool nomem;
    bool too_deep;       /* this statement nests too deeply: reported, dropped */
    bool stack_full;     /* the parser's stack reached its bound: reported */
    bool skipping;       /* parentheses nest too deeply: the statement is skipped */
    unsigned errors; /* reported so far */
    unsigned line_errors; /* reported before the statement being parsed */
    ast_broken **broken_tail;
    jmp_buf *fatal;  /* where the scanner goes when it cannot allocate */
} gr_ctx;

/* Parse `text` (len bytes, NUL-terminated) named `path`. The tree is built
 * even when there are syntax errors (with the bad statements left out); every
 * error goes to the sink. Returns SURG_EINVALID if there was any. */
surg_status gr_parse(arena *ar, surg_sink *sink, const char *path,
                     const char *text, uint32_t len, ast_recipe **out);

/* Report at a span of the recipe being parsed. */
void gr_error(gr_ctx *ctx, src_span span, const char *code,
              const char *const *notes, size_t n_notes, const char *fmt, ...)
    __attribute__((format(printf, 6, 7)));

/* Report at a span, with "did you mean" the candidate closest to `word`. */
void gr_suggest(gr_ctx *ctx, src_span span, const char *code, const char *word,
                const char *const *cands, size_t n, const char *fmt, ...)
    __attribute__((format(printf, 7, 8)));

/* Decode the body of a string literal (between the quotes) into the arena;
 * reports bad escapes. */
const char *gr_unescape(gr_ctx *ctx, const char *body, uint32_t len,
                        uint32_t at);

/* A keyword's token, or 0 for a plain word. */
int gr_keyword(const char *word);
/* The keyword table, for listing it: its size, and its i-th word. */
size_t gr_keyword_count(void);
const char *gr_keyword_word(size_t i);
/* `factored` and `min`, the words of a mirror statement's clauses; 0 for others. */
int gr_mirror_keyword(const char *word);

#endif
