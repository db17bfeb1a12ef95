/* tokens.c: the scanner's tokens for editors (surg_recipe_tokens), the
 * keywords, and the pattern at a place in a parsed recipe. */
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/parse.h"
#include "grammar/parser.h"
#include "grammar/recipe.h"

int grlex_init_extra(gr_ctx *extra, yyscan_t *scanner);
int grlex_destroy(yyscan_t scanner);
struct yy_buffer_state *gr_scan_bytes(const char *bytes, int len, yyscan_t scanner);

static surg_token_kind kind_of(int token)
{
    switch (token) {
    case IDENT:
    case UNKNOWN_WORD:
        return SURG_TOK_WORD;
    case NUMBER:
        return SURG_TOK_NUMBER;
    case STRING:
        return SURG_TOK_STRING;
    case NEWLINE:
    case ';':
        return SURG_TOK_SEPARATOR;
    case GLOBCHAR:
    case STRAY:
        return SURG_TOK_OTHER;
    case ARROW: case ELLIPSIS: case LE: case GE: case EQ: case NE:
    case '(': case ')': case '[': case ']':
    case ',': case '=': case ':': case '*': case '/': case '+': case '-': case '<': case '>': case '@':
        return SURG_TOK_OPERATOR;
    default:
        return SURG_TOK_KEYWORD; /* the parser knows no other tokens */
    }
}

typedef struct tok_list {
    surg_token *v;
    size_t n, cap;
} tok_list;

static bool push(tok_list *l, surg_token_kind kind, uint32_t start, uint32_t end)
{
    if (end <= start)
        return true; /* the end of the text ends a statement with no bytes */
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 256;
        surg_token *v = realloc(l->v, cap * sizeof *v);
        if (!v)
            return false;
        l->v = v;
        l->cap = cap;
    }
    l->v[l->n++] = (surg_token){kind, start, end};
    return true;
}

/* The scanner's tokens, then the comments it kept merged in by place. */
static surg_status scan(gr_ctx *ctx, const char *text, uint32_t len, tok_list *toks,
                        tok_list *out)
{
    yyscan_t scanner;
    if (grlex_init_extra(ctx, &scanner) != 0)
        return SURG_ENOMEM;
    jmp_buf fatal;
    ctx->fatal = &fatal;
    if (setjmp(fatal)) {
        grlex_destroy(scanner);
        return SURG_ENOMEM;
    }
    bool ok = gr_scan_bytes(text, (int)len, scanner) != NULL;
    GRSTYPE val;
    src_span at;
    for (int t; ok && (t = grlex(&val, &at, scanner)) != 0;)
        ok = push(toks, kind_of(t), at.start, at.end);
    grlex_destroy(scanner);
    const ast_comment *c = ctx->recipe->comments;
    for (size_t i = 0; ok && (i < toks->n || c);) {
        if (c && (i == toks->n || c->span.start < toks->v[i].start)) {
            ok = push(out, SURG_TOK_COMMENT, c->span.start, c->span.end);
            c = c->next;
        } else {
            ok = push(out, toks->v[i].kind, toks->v[i].start, toks->v[i].end);
            i++;
        }
    }
    return ok && !ctx->nomem ? SURG_OK : SURG_ENOMEM;
}

surg_status surg_recipe_tokens(const char *text, size_t len, surg_token **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (len > SURG_RECIPE_MAX)
        return SURG_EUSAGE;
    arena ar;
    ar_init(&ar);
    surg_sink quiet = {0}; /* the scanner's complaints are the parser's to make */
    ast_recipe *r = ar_alloc(&ar, sizeof *r);
    char *copy = ar_strndup(&ar, text, len);
    surg_status st = SURG_ENOMEM;
    if (r && copy && src_init(&r->src, &ar, "", copy, (uint32_t)len) == 0) {
        r->stmts = NULL;
        r->comments = NULL;
        gr_ctx ctx = {.ar = &ar, .sink = &quiet, .recipe = r,
                      .stmt_tail = &r->stmts, .comment_tail = &r->comments};
        tok_list l = {0}, scanned = {0}; /* the caller's: freed however scan ends */
        st = scan(&ctx, copy, (uint32_t)len, &scanned, &l);
        free(scanned.v);
        if (st == SURG_OK) {
            *out = l.v;
            *n = l.n;
        } else {
            free(l.v);
        }
    }
    ar_free(&ar);
    return st;
}

const char *surg_recipe_keyword(size_t i, int *starts_statement)
{
    /* the scanner's own table, then the words it reads by other rules */
    static const char *const others[] = {"init-lora", "merge-lora", "let", "factored", "min"};
    size_t n = gr_keyword_count();
    const char *w = i < n ? gr_keyword_word(i) : NULL;
    if (!w && i - n < sizeof others / sizeof *others)
        w = others[i - n];
    if (starts_statement && w) {
        *starts_statement = 0;
#define X(e, kw) +1
        enum { N_KINDS = 0 AST_STATEMENTS(X) };
#undef X
        for (int k = 0; k < N_KINDS; k++)
            *starts_statement |= strcmp(ast_stmt_keyword((ast_stmt_kind)k), w) == 0;
    }
    return w;
}

/* Statements whose first strings are globs over tensor names. A switch
 * without a default: a new kind of statement is a warning here until it
 * is given its answer. */
static bool matches_tensors(ast_stmt_kind k)
{
    switch (k) {
    case STMT_RENAME: case STMT_DROP: case STMT_KEEP: case STMT_FILL: case STMT_MAP:
    case STMT_TIE: case STMT_UNTIE: case STMT_INIT_LORA: case STMT_SPLIT: case STMT_CONCAT:
    case STMT_STACK: case STMT_UNSTACK: case STMT_EXPECT: case STMT_RESIZE:
        return true;
    case STMT_FILL_NEW: case STMT_MIRROR: case STMT_META: case STMT_META_DROP:
    case STMT_META_KEEP: case STMT_MERGE_LORA: case STMT_LET: case STMT_SEED: case STMT_LAYOUT:
        return false;
    }
    return false;
}

int surg_recipe_pattern_at(const surg_recipe *recipe, size_t offset, surg_pattern_ref *out)
{
    const ast_recipe *r = gr_recipe_ast(recipe);
    for (const ast_stmt *s = r->stmts; s; s = s->next) {
        if (offset < s->span.start || offset >= s->span.end || !matches_tensors(s->kind))
            continue;
        for (const ast_string *p = s->patterns; p; p = p->next)
            if (offset >= p->span.start && offset < p->span.end) {
                *out = (surg_pattern_ref){p->text, p->span.start, p->span.end, s->span.start,
                                          p->optional};
                return 1;
            }
    }
    return 0;
}
