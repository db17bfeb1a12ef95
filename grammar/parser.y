/* parser.y: tokens -> syntax tree (SPEC §3.2). The grammar only builds the
 * tree; meaning is the compiler's. Errors recover at the next statement
 * separator, so every syntax error of a file is reported. Every semantic
 * value lives in the recipe's arena, freed at once with it: nothing the
 * parser discards during error recovery needs a %destructor. */
%define api.pure full
%define api.prefix {gr}
%define api.location.type {src_span}
%define parse.error custom
%locations
%expect 0
%param {yyscan_t scanner}
%parse-param {gr_ctx *ctx}

%code requires {
#include "grammar/ast.h"
typedef void *yyscan_t;
typedef struct gr_ctx gr_ctx;
}

%code provides {
int grlex(GRSTYPE *lval, src_span *lloc, yyscan_t scanner);
}

%code {
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grammar/parse.h"
#include "grammar/print.h"
#include "support/buf.h"

#define YYLLOC_DEFAULT(Cur, Rhs, N)                                         \
    do {                                                                    \
        if (N) {                                                            \
            (Cur).start = YYRHSLOC(Rhs, 1).start;                           \
            (Cur).end = YYRHSLOC(Rhs, N).end;                               \
        } else {                                                            \
            (Cur).start = (Cur).end = YYRHSLOC(Rhs, 0).end;                 \
        }                                                                   \
    } while (0)

static void grerror(src_span *loc, yyscan_t scanner, gr_ctx *ctx, const char *msg);
static void syntax_error(src_span *loc, gr_ctx *ctx, const char *msg, bool operator_here);
static void *node(gr_ctx *ctx, size_t size);
static ast_stmt *stmt(gr_ctx *ctx, ast_stmt_kind kind, src_span at, src_span kw);
static ast_expr *expr(gr_ctx *ctx, ast_expr_kind kind, src_span at);
static ast_expr *binary(gr_ctx *ctx, char op, ast_expr *l, ast_expr *r, src_span at,
                        src_span op_at);
static ast_expr *call(gr_ctx *ctx, const char *name, src_span name_at, ast_arg *args,
                      src_span at);
static void nest(gr_ctx *ctx, ast_expr *e, unsigned below, src_span at);
static void *stack_alloc(gr_ctx *ctx, size_t size);
static ast_string *bare_pattern(gr_ctx *ctx, src_span at);
static ast_string *unquoted(gr_ctx *ctx, ast_string *s);
static void check_dtype(gr_ctx *ctx, const char *name, src_span at);
static void check_word(gr_ctx *ctx, const char *what, const char *word, src_span at,
                       const char *a, const char *b);
static void expect_word(gr_ctx *ctx, const char *stmt, const char *word, src_span at,
                        const char *want);
static void unknown_statement(gr_ctx *ctx, const char *word, src_span at, const ast_string *pattern);
static void broken(gr_ctx *ctx, src_span at);
static ast_clause *lora_option(gr_ctx *ctx, const char *word, src_span word_at,
                               ast_number *number, src_span at);

/* The parser's own stack: a statement that needs more than this many
 * states nests too deeply (a long run of signs, - - - x); its memory comes
 * through stack_alloc, which tells that apart from running out of memory. */
#define YYMAXDEPTH 10000
#define YYMALLOC(size) stack_alloc(ctx, size)
#define YYFREE free

/* Lists grow at their end; the first node remembers the last, so a list
 * of n items is built in n steps, not n^2/2. */
#define APPEND(list, item)                                                  \
    do {                                                                    \
        if (!(item))                                                        \
            break;                                                          \
        if (!(list)) {                                                      \
            (list) = (item);                                                \
            break;                                                          \
        }                                                                   \
        __typeof__(item) tail_ = (list)->last ? (list)->last : (list);     \
        while (tail_->next)                                                 \
            tail_ = tail_->next;                                            \
        tail_->next = (item);                                               \
        (list)->last = (item);                                              \
    } while (0)
}

%union {
    const char *text;
    ast_string *string;
    ast_number *number;
    ast_expr *expr;
    ast_arg *arg;
    ast_stmt *stmt;
    ast_clause *clause;
    ast_type type;
    ast_dim *dim;
}

%token <text> RENAME "'rename'" DROP "'drop'" KEEP "'keep'" FILL "'fill'" MAP "'map'" TIE "'tie'" UNTIE "'untie'"
%token <text> INIT_LORA "'init-lora'" MERGE_LORA "'merge-lora'" SPLIT "'split'" CONCAT "'concat'" STACK "'stack'"
%token <text> UNSTACK "'unstack'" EXPECT "'expect'" SEED "'seed'" LAYOUT "'layout'" MIRROR "'mirror'" META "'meta'"
%token <text> RESIZE "'resize'"
%token <text> OPTIONAL "'optional'" RANK "'rank'" ALPHA "'alpha'" STYLE "'style'" AS "'as'"
%token <text> AXIS "'axis'" SIZES "'sizes'" FACTORED "'factored'" MIN "'min'"
%token <text> IDENT "name" UNKNOWN_WORD "word" LET "'let'"
%token <string> STRING "string"
%token <number> NUMBER "number"
%token LE "'<='" GE "'>='" EQ "'=='" NE "'!='"
%token ELLIPSIS "'...'"
%token ARROW "'->'" NEWLINE "end of line" GLOBCHAR "glob character" STRAY "character"

%type <stmt> stmt
%type <string> pattern patterns string strings bare junk
%type <number> number numbers sizes multiple
%type <expr> expr
%type <arg> arg args
%type <clause> clause clauses mirror_clause mirror_clauses merge_clause merge_clauses
%type <type> type
%type <dim> dim dims

%precedence BARE_END
%precedence IDENT
%nonassoc '<' '>' LE GE EQ NE
%left '+' '-'
%left '*' '/' '@'
%precedence NEG

%%

recipe:
    %empty
  | recipe line
  ;

/* A statement with an error is left out of the tree and noted, so that
 * the rest can still be compiled (gr_recipe_partial). */
line:
    sep              { ctx->line_errors = ctx->errors; }
  | stmt sep         { if ($1 && !ctx->too_deep && ctx->errors == ctx->line_errors) {
                           *ctx->stmt_tail = $1; ctx->stmt_tail = &$1->next;
                       } else {
                           broken(ctx, @1);
                       }
                       ctx->too_deep = false; ctx->line_errors = ctx->errors; }
  | error sep        { yyerrok; broken(ctx, @1); ctx->too_deep = false; ctx->line_errors = ctx->errors; }
  ;

sep: NEWLINE | ';' ;

stmt:
    RENAME pattern ARROW string       { $$ = stmt(ctx, STMT_RENAME, @$, @1); if ($$) { $$->patterns = $2; $$->targets = $4; } }
  | RENAME pattern string            { gr_error(ctx, @3, "syntax-rename-arrow", NULL, 0,
                                                "expected '->' between the pattern and the new name");
                                       $$ = NULL; }
  | DROP pattern                     { $$ = stmt(ctx, STMT_DROP, @$, @1); if ($$) $$->patterns = $2; }
  | KEEP patterns                    { $$ = stmt(ctx, STMT_KEEP, @$, @1); if ($$) $$->patterns = $2; }
  | FILL pattern '=' expr            { $$ = stmt(ctx, STMT_FILL, @$, @1); if ($$) { $$->patterns = $2; $$->expr = $4; } }
  | FILL pattern ':' type '=' expr   { $$ = stmt(ctx, STMT_FILL_NEW, @$, @1); if ($$) { $$->patterns = $2; $$->type = $4; $$->expr = $6; } }
  | MAP pattern '=' expr             { $$ = stmt(ctx, STMT_MAP, @$, @1); if ($$) { $$->patterns = $2; $$->expr = $4; } }
  | TIE pattern '=' string           { $$ = stmt(ctx, STMT_TIE, @$, @1); if ($$) { $$->patterns = $2; $$->targets = $4; } }
  | UNTIE pattern                    { $$ = stmt(ctx, STMT_UNTIE, @$, @1); if ($$) $$->patterns = $2; }
  | INIT_LORA pattern clauses        { $$ = stmt(ctx, STMT_INIT_LORA, @$, @1); if ($$) { $$->patterns = $2; $$->clauses = $3; } }
  | MERGE_LORA string merge_clauses  { $$ = stmt(ctx, STMT_MERGE_LORA, @$, @1); if ($$) { $$->patterns = $2; $$->clauses = $3; } }
  | SPLIT pattern AXIS number sizes ARROW strings
                                     { $$ = stmt(ctx, STMT_SPLIT, @$, @1); if ($$) { $$->patterns = $2; $$->axis = $4; $$->sizes = $5; $$->targets = $7; } }
  | CONCAT pattern AXIS number ARROW string
                                     { $$ = stmt(ctx, STMT_CONCAT, @$, @1); if ($$) { $$->patterns = $2; $$->axis = $4; $$->targets = $6; } }
  | STACK pattern AXIS number ARROW string
                                     { $$ = stmt(ctx, STMT_STACK, @$, @1); if ($$) { $$->patterns = $2; $$->axis = $4; $$->targets = $6; } }
  | UNSTACK pattern AXIS number ARROW string
                                     { $$ = stmt(ctx, STMT_UNSTACK, @$, @1); if ($$) { $$->patterns = $2; $$->axis = $4; $$->targets = $6; } }
  | EXPECT pattern ':' type          { $$ = stmt(ctx, STMT_EXPECT, @$, @1); if ($$) { $$->patterns = $2; $$->type = $4; } }
  | SEED number                      { $$ = stmt(ctx, STMT_SEED, @$, @1); if ($$) $$->number = $2; }
  | LAYOUT IDENT                     { check_word(ctx, "'layout'", $2, @2, "flax", "torch");
                                       $$ = stmt(ctx, STMT_LAYOUT, @$, @1); if ($$) { $$->word = $2; $$->word_span = @2; } }
  | MIRROR string ARROW strings mirror_clauses
                                     { $$ = stmt(ctx, STMT_MIRROR, @$, @1); if ($$) { $$->patterns = $2; $$->targets = $4; $$->clauses = $5; } }
  | MIRROR string ARROW mirror_clause mirror_clauses
                                     { $$ = stmt(ctx, STMT_MIRROR, @$, @1); if ($$) { $$->patterns = $2; $$->clauses = $4; if ($4) APPEND($$->clauses, $5); } }
  | META string '=' expr            { $$ = stmt(ctx, STMT_META, @$, @1); if ($$) { $$->patterns = $2; $$->expr = $4; } }
  | META DROP patterns               { $$ = stmt(ctx, STMT_META_DROP, @$, @1); if ($$) $$->patterns = $3; }
  | META KEEP patterns               { $$ = stmt(ctx, STMT_META_KEEP, @$, @1); if ($$) $$->patterns = $3; }
  | LET IDENT '=' expr               { $$ = stmt(ctx, STMT_LET, @$, @1); if ($$) { $$->word = $2; $$->word_span = @2; $$->expr = $4; } }
  | RESIZE pattern AXIS number IDENT number multiple
                                     { expect_word(ctx, "resize", $5, @5, "to");
                                       $$ = stmt(ctx, STMT_RESIZE, @$, @1); if ($$) { $$->patterns = $2; $$->axis = $4; $$->size = $6; $$->multiple = $7; } }
  | UNKNOWN_WORD junk                { unknown_statement(ctx, $1, @1, $2); $$ = NULL; }
  ;

/* resize's `multiple M`: the size rounded up to a multiple of M. */
multiple:
    %empty                           { $$ = NULL; }
  | IDENT number                     { expect_word(ctx, "resize", $1, @1, "multiple"); $$ = $2; }
  ;

/* A pattern is a quoted glob. Unquoted text where a pattern belongs is the
 * most common slip; it is taken whole and reported once. */
pattern:
    string                           { $$ = $1; }
  | "'optional'" string                { $$ = $2; if ($$) { $$->optional = true; $$->span = @$; } }
  | bare %prec BARE_END              { $$ = unquoted(ctx, $1); }
  | "'optional'" bare %prec BARE_END   { $$ = unquoted(ctx, $2); if ($$) { $$->optional = true; $$->span = @$; } }
  ;

bare:
    bare_atom                        { $$ = bare_pattern(ctx, @$); }
  | bare bare_atom                   { $$ = $1; if ($$) $$->span.end = @2.end; }
  ;

bare_atom: IDENT | NUMBER | GLOBCHAR | '*' | '/' | '[' | ']' ;

patterns:
    pattern                          { $$ = $1; }
  | patterns ',' pattern             { $$ = $1; APPEND($$, $3); }
  ;

string: STRING                       { $$ = $1; } ;

strings:
    string                           { $$ = $1; }
  | strings ',' string               { $$ = $1; APPEND($$, $3); }
  ;

number: NUMBER                       { $$ = $1; } ;

numbers:
    number                           { $$ = $1; }
  | numbers ',' number               { $$ = $1; APPEND($$, $3); }
  ;

sizes:
    %empty                           { $$ = NULL; }
  | SIZES numbers                    { $$ = $2; }
  ;

clauses:
    %empty                           { $$ = NULL; }
  | clauses clause                   { $$ = $1; if ($2) APPEND($$, $2); }
  ;

clause:
    RANK number                      { $$ = node(ctx, sizeof *$$); if ($$) { $$->kind = CL_RANK; $$->span = @$; $$->number = $2; } }
  | ALPHA number                     { $$ = node(ctx, sizeof *$$); if ($$) { $$->kind = CL_ALPHA; $$->span = @$; $$->number = $2; } }
  | STYLE IDENT                      { check_word(ctx, "'style'", $2, @2, "flax", "peft");
                                       $$ = node(ctx, sizeof *$$); if ($$) { $$->kind = CL_STYLE; $$->span = @$; $$->name = $2; $$->name_span = @2; } }
  | IDENT '=' expr                   { check_word(ctx, "init-lora initializer", $1, @1, "a", "b");
                                       $$ = node(ctx, sizeof *$$); if ($$) { $$->kind = CL_INIT; $$->span = @$; $$->name = $1; $$->name_span = @1; $$->init = $3; } }
  | AS string ',' string             { $$ = node(ctx, sizeof *$$); if ($$) { $$->kind = CL_AS; $$->span = @$; $$->names = $2; if ($2) $2->next = $4; } }
  | IDENT                            { $$ = lora_option(ctx, $1, @1, NULL, @$); }
  | IDENT number                     { $$ = lora_option(ctx, $1, @1, $2, @$); }
  ;

/* mirror's clauses: their words are keywords in a mirror statement only. */
mirror_clauses:
    %empty                           { $$ = NULL; }
  | mirror_clauses mirror_clause     { $$ = $1; if ($2) APPEND($$, $2); }
  ;

mirror_clause:
    FACTORED strings                 { $$ = node(ctx, sizeof *$$); if ($$) { $$->kind = CL_FACTORED; $$->span = @$; $$->name = $1; $$->name_span = @1; $$->names = $2; } }
  | MIN number                       { $$ = node(ctx, sizeof *$$); if ($$) { $$->kind = CL_MIN; $$->span = @$; $$->name = $1; $$->name_span = @1; $$->number = $2; } }
  ;

/* merge-lora's clauses: `into "PREFIX"`, `config "FILE"` (plain words). */
merge_clauses:
    %empty                           { $$ = NULL; }
  | merge_clauses merge_clause       { $$ = $1; if ($2) APPEND($$, $2); }
  ;

merge_clause:
    IDENT string                     { check_word(ctx, "a merge-lora clause", $1, @1, "into", "config");
                                       $$ = node(ctx, sizeof *$$); if ($$) { $$->kind = $1 && strcmp($1, "config") == 0 ? CL_CONFIG : CL_INTO; $$->span = @$; $$->name = $1; $$->name_span = @1; $$->names = $2; } }
  ;

type:
    IDENT '[' dims ']'               { check_dtype(ctx, $1, @1); $$ = (ast_type){.dtype = $1, .dtype_span = @1, .dims = $3, .span = @$}; }
  | IDENT '[' ']'                    { check_dtype(ctx, $1, @1); $$ = (ast_type){.dtype = $1, .dtype_span = @1, .span = @$}; }
  | IDENT '[' ELLIPSIS ']'           { check_dtype(ctx, $1, @1); $$ = (ast_type){.dtype = $1, .form = TYPE_ANY_RANK, .dtype_span = @1, .span = @$}; }
  | IDENT                            { check_dtype(ctx, $1, @1); $$ = (ast_type){.dtype = $1, .form = TYPE_DTYPE_ONLY, .dtype_span = @1, .span = @$}; }
  ;

dims:
    dim                              { $$ = $1; }
  | dims ',' dim                     { $$ = $1; APPEND($$, $3); }
  ;

dim:
    NUMBER                           { $$ = node(ctx, sizeof *$$); if ($$) { $$->size = $1; $$->span = @$; } }
  | '*'                              { $$ = node(ctx, sizeof *$$); if ($$) $$->span = @$; }
  ;

expr:
    NUMBER                           { $$ = expr(ctx, EX_NUMBER, @$); if ($$ && $1) { $$->u.number.text = $1->text; $$->u.number.value = $1->value; } }
  | IDENT                            { $$ = expr(ctx, EX_IDENT, @$); if ($$) $$->u.ident = $1; }
  | STRING                           { $$ = expr(ctx, EX_STRING, @$); if ($$ && $1) $$->u.string = $1->text; }
  | IDENT '(' ')'                    { $$ = call(ctx, $1, @1, NULL, @$); }
  | IDENT '(' args ')'               { $$ = call(ctx, $1, @1, $3, @$); }
  | '(' expr ')'                     { $$ = $2; }
  | '-' expr %prec NEG               { $$ = expr(ctx, EX_NEG, @$); if ($$) { $$->u.operand = $2; nest(ctx, $$, $2 ? $2->depth : 0, @1); } }
  | expr '+' expr                    { $$ = binary(ctx, '+', $1, $3, @$, @2); }
  | expr '-' expr                    { $$ = binary(ctx, '-', $1, $3, @$, @2); }
  | expr '*' expr                    { $$ = binary(ctx, '*', $1, $3, @$, @2); }
  | expr '/' expr                    { $$ = binary(ctx, '/', $1, $3, @$, @2); }
  | expr '@' expr                    { $$ = binary(ctx, '@', $1, $3, @$, @2); }
  | expr '<' expr                    { $$ = binary(ctx, '<', $1, $3, @$, @2); }
  | expr '>' expr                    { $$ = binary(ctx, '>', $1, $3, @$, @2); }
  | expr LE expr                     { $$ = binary(ctx, AST_LE, $1, $3, @$, @2); }
  | expr GE expr                     { $$ = binary(ctx, AST_GE, $1, $3, @$, @2); }
  | expr EQ expr                     { $$ = binary(ctx, AST_EQ, $1, $3, @$, @2); }
  | expr NE expr                     { $$ = binary(ctx, AST_NE, $1, $3, @$, @2); }
  | CONCAT '(' args ')'              { $$ = call(ctx, $1, @1, $3, @$); } /* a statement's word, a function here too */
  ;

args:
    arg                              { $$ = $1; }
  | args ',' arg                     { $$ = $1; APPEND($$, $3); }
  ;

arg:
    expr                             { $$ = node(ctx, sizeof *$$); if ($$) $$->value = $1; }
  | IDENT '=' expr                   { $$ = node(ctx, sizeof *$$); if ($$) { $$->name = $1; $$->name_span = @1; $$->value = $3; } }
  | AXIS '=' expr                    { $$ = node(ctx, sizeof *$$); if ($$) { $$->name = $1; $$->name_span = @1; $$->value = $3; } }
  ;

/* What follows an unknown word, up to the separator: its first string,
 * the pattern a function written as a statement was meant for. */
junk:
    %empty                           { $$ = NULL; }
  | junk junk_token                  { $$ = $1; }
  | junk STRING                      { $$ = $1 ? $1 : $2; }
  ;

junk_token:
    RENAME | DROP | KEEP | FILL | MAP | TIE | UNTIE | INIT_LORA | MERGE_LORA | SPLIT | CONCAT | STACK
  | UNSTACK | EXPECT | SEED | LAYOUT | MIRROR | META | RESIZE | OPTIONAL | RANK | ALPHA | STYLE
  | AS | AXIS | SIZES | FACTORED | MIN | IDENT | UNKNOWN_WORD | LET | NUMBER | ARROW | GLOBCHAR
  | STRAY | '(' | ')' | '[' | ']' | ',' | '=' | ':' | '*' | '/' | '+' | '-' | '@'
  | '<' | '>' | LE | GE | EQ | NE
  ;

%%

static void *node(gr_ctx *ctx, size_t size)
{
    void *p = ar_alloc(ctx->ar, size);
    ctx->nomem |= !p;
    return p;
}

static ast_stmt *stmt(gr_ctx *ctx, ast_stmt_kind kind, src_span at, src_span kw)
{
    ast_stmt *s = node(ctx, sizeof *s);
    if (s) {
        s->kind = kind;
        s->span = at;
        s->keyword_span = kw;
    }
    return s;
}

static ast_expr *expr(gr_ctx *ctx, ast_expr_kind kind, src_span at)
{
    ast_expr *e = node(ctx, sizeof *e);
    if (e) {
        e->kind = kind;
        e->span = at;
        e->depth = 1;
    }
    return e;
}

/* A node `below` levels above the leaves; past AST_MAX_DEPTH the statement
 * is reported once, where the bound is crossed (`at`), and dropped. */
static void nest(gr_ctx *ctx, ast_expr *e, unsigned below, src_span at)
{
    e->depth = below + 1;
    if (e->depth <= AST_MAX_DEPTH)
        return;
    e->depth = AST_MAX_DEPTH + 1;
    if (!ctx->too_deep) {
        const char *notes[] = {"each operator, sign and call is a level (parentheses make none)"};
        gr_error(ctx, at, "syntax-depth", notes, 1,
                 "this expression nests more than %d levels deep", AST_MAX_DEPTH);
    }
    ctx->too_deep = true;
}

static ast_expr *binary(gr_ctx *ctx, char op, ast_expr *l, ast_expr *r, src_span at,
                        src_span op_at)
{
    ast_expr *e = expr(ctx, EX_BINARY, at);
    if (e) {
        e->u.binary.op = op;
        e->u.binary.lhs = l;
        e->u.binary.rhs = r;
        unsigned dl = l ? l->depth : 0, dr = r ? r->depth : 0;
        nest(ctx, e, dl > dr ? dl : dr, op_at);
    }
    return e;
}

static ast_expr *call(gr_ctx *ctx, const char *name, src_span name_at, ast_arg *args,
                      src_span at)
{
    ast_expr *e = expr(ctx, EX_CALL, at);
    if (!e)
        return e;
    e->u.call.name = name;
    e->u.call.name_span = name_at;
    e->u.call.args = args;
    unsigned below = 0;
    for (const ast_arg *a = args; a; a = a->next)
        if (a->value && a->value->depth > below)
            below = a->value->depth;
    nest(ctx, e, below, name_at);
    return e;
}

static void *stack_alloc(gr_ctx *ctx, size_t size)
{
    void *p = malloc(size);
    ctx->nomem |= !p;
    return p;
}

static ast_string *bare_pattern(gr_ctx *ctx, src_span at)
{
    ast_string *s = node(ctx, sizeof *s);
    if (s) {
        s->text = "";
        s->span = at;
    }
    return s;
}

/* Unquoted text where a pattern belongs: report it once, with the quoted
 * form, and go on with the text as the pattern. */
static ast_string *unquoted(gr_ctx *ctx, ast_string *s)
{
    if (!s)
        return s;
    const src_file *f = &ctx->recipe->src;
    int len = (int)(s->span.end - s->span.start);
    char note[256];
    snprintf(note, sizeof note, "write it as a string: \"%.*s\"", len > 200 ? 200 : len,
             f->text + s->span.start);
    const char *notes[] = {note};
    gr_error(ctx, s->span, "syntax-pattern", notes, 1, "a pattern must be a quoted string");
    s->text = ar_strndup(ctx->ar, f->text + s->span.start, (size_t)len);
    ctx->nomem |= !s->text;
    return s;
}

static void check_dtype(gr_ctx *ctx, const char *name, src_span at)
{
    if (!name || surg_dtype_from_recipe_name(name) != SURG_DTYPE_COUNT)
        return;
    const char *names[SURG_DTYPE_COUNT];
    for (int i = 0; i < SURG_DTYPE_COUNT; i++)
        names[i] = surg_dtype_recipe_name((surg_dtype)i);
    gr_suggest(ctx, at, "syntax-dtype", name, names, SURG_DTYPE_COUNT,
              "unknown dtype '%s'", name);
}

static void check_word(gr_ctx *ctx, const char *what, const char *word, src_span at,
                       const char *a, const char *b)
{
    if (!word || strcmp(word, a) == 0 || strcmp(word, b) == 0)
        return;
    const char *names[] = {a, b};
    gr_suggest(ctx, at, "syntax-word", word, names, 2, "%s is '%s' or '%s', not '%s'",
              what, a, b, word);
}

/* init-lora's options, PEFT's LoraConfig fields by their words: `rslora`
 * and `fan_in_fan_out` alone, `dropout` with its number. */
static ast_clause *lora_option(gr_ctx *ctx, const char *word, src_span word_at,
                               ast_number *number, src_span at)
{
    static const char *const flags[] = {"rslora", "fan_in_fan_out"};
    static const char *const valued[] = {"dropout"};
    if (!word)
        return NULL;
    ast_clause_kind kind = CL_DROPOUT;
    if (!number && strcmp(word, flags[0]) == 0)
        kind = CL_RSLORA;
    else if (!number && strcmp(word, flags[1]) == 0)
        kind = CL_FAN_IN_FAN_OUT;
    else if (number ? strcmp(word, valued[0]) != 0 : true) {
        if (number)
            gr_suggest(ctx, word_at, "syntax-word", word, valued, 1,
                       "an init-lora option with a number is 'dropout', not '%s'", word);
        else
            gr_suggest(ctx, word_at, "syntax-word", word, flags, 2,
                       "an init-lora option is 'rslora' or 'fan_in_fan_out' (or 'dropout P'), "
                       "not '%s'", word);
        return NULL;
    }
    ast_clause *c = node(ctx, sizeof *c);
    if (c)
        *c = (ast_clause){.kind = kind, .span = at, .name = word, .name_span = word_at,
                          .number = number};
    return c;
}

/* A word a statement spells out where it is the only one that fits. */
static void expect_word(gr_ctx *ctx, const char *stmt, const char *word, src_span at,
                        const char *want)
{
    if (!word || strcmp(word, want) == 0)
        return;
    const char *names[] = {want};
    gr_suggest(ctx, at, "syntax-word", word, names, 1, "%s expects '%s' here, not '%s'", stmt,
               want, word);
}

static void broken(gr_ctx *ctx, src_span at)
{
    ast_broken *b = node(ctx, sizeof *b);
    if (!b)
        return;
    *b = (ast_broken){at, NULL};
    *ctx->broken_tail = b;
    ctx->broken_tail = &b->next;
    ctx->recipe->n_broken++;
}

/* An unknown statement; a function of map written as one is pointed at
 * map, with the pattern it was given. */
static void unknown_statement(gr_ctx *ctx, const char *word, src_span at, const ast_string *pattern)
{
    static const struct {
        const char *name, *how;
    } functions[] = {
#define X(name, op, how) {#name, #how},
        AST_FUNCTIONS(X)
#undef X
    };
    for (size_t i = 0; word && i < sizeof functions / sizeof *functions; i++) {
        if (strcmp(word, functions[i].name) != 0)
            continue;
        bool x_alone = strcmp(functions[i].how, "UNARY") == 0 ||
                       strcmp(functions[i].how, "REDUCE") == 0 ||
                       strcmp(functions[i].how, "TRANSPOSE") == 0;
        buf note;
        buf_init(&note);
        buf_printf(&note, "%s is a function of map's expressions: map ", word);
        pr_string(&note, pattern ? pattern->text : "PATTERN");
        buf_printf(&note, " = %s(x%s)", word, x_alone ? "" : ", ...");
        const char *notes[] = {note.data};
        ctx->nomem |= note.failed;
        if (!note.failed)
            gr_error(ctx, at, "syntax-statement", notes, 1, "unknown statement '%s'", word);
        buf_free(&note);
        return;
    }
    const char *names[] = {
#define X(e, kw) kw,
        AST_STATEMENTS(X)
#undef X
    };
    gr_suggest(ctx, at, "syntax-statement", word, names, sizeof names / sizeof *names,
              "unknown statement '%s'", word ? word : "");
}

/* Bison's "syntax error, unexpected A, expecting B or C" (the expected
 * tokens listed when there are at most four, as Bison's own message does),
 * said as a compiler says it. Whether an operator could come here is asked
 * of every expected token, listed or not. */
static int yyreport_syntax_error(const yypcontext_t *yc, yyscan_t scanner, gr_ctx *ctx)
{
    (void)scanner;
    enum { LISTED = 4 };
    yysymbol_kind_t expected[YYNTOKENS];
    yysymbol_kind_t tok = yypcontext_token(yc);
    int n = tok == YYSYMBOL_YYEMPTY ? 0 : yypcontext_expected_tokens(yc, expected, YYNTOKENS);
    if (n < 0)
        return n;
    bool operator_here = false;
    for (int i = 0; i < n; i++)
        operator_here |= strcmp(yysymbol_name(expected[i]), "'+'") == 0;
    char msg[256];
    size_t len = 0;
    if (tok == YYSYMBOL_YYEMPTY)
        len = (size_t)snprintf(msg, sizeof msg, "syntax error");
    else
        len = (size_t)snprintf(msg, sizeof msg, "syntax error, unexpected %s", yysymbol_name(tok));
    for (int i = 0; n <= LISTED && i < n && len < sizeof msg; i++)
        len += (size_t)snprintf(msg + len, sizeof msg - len, "%s%s", i ? " or " : ", expecting ",
                                yysymbol_name(expected[i]));
    syntax_error(yypcontext_location(yc), ctx, msg, operator_here);
    return 0;
}

/* Bison's own messages: only "memory exhausted" (syntax errors come
 * through yyreport_syntax_error). */
static void grerror(src_span *loc, yyscan_t scanner, gr_ctx *ctx, const char *msg)
{
    (void)scanner;
    syntax_error(loc, ctx, msg, false);
}

/* A syntax error, said as a compiler says it. A stray character was
 * already reported by the scanner. */
static void syntax_error(src_span *loc, gr_ctx *ctx, const char *msg, bool operator_here)
{
    if (strcmp(msg, "memory exhausted") == 0) { /* the stack is full, or memory */
        if (!ctx->nomem)
            gr_error(ctx, *loc, "syntax-depth", NULL, 0,
                     "this statement nests too deeply to parse (more than %d levels)",
                     YYMAXDEPTH);
        ctx->stack_full = !ctx->nomem;
        return;
    }
    if (ctx->last_token == STRAY)
        return;
    const char *prefix = "syntax error, ";
    if (strncmp(msg, prefix, strlen(prefix)) == 0)
        msg += strlen(prefix);
    /* Inside parentheses newlines do not end a statement, so an unclosed
     * one shows up lines later: say where it was opened. */
    char note[96];
    const char *notes[] = {note};
    size_t n_notes = 0;
    if (ctx->depth > 0 && ctx->depth <= 32) {
        uint32_t at = ctx->opens[ctx->depth - 1], line, col;
        src_position(&ctx->recipe->src, at, &line, &col);
        snprintf(note, sizeof note, "the '%c' at line %u, column %u is not closed",
                 ctx->recipe->src.text[at], line, col);
        n_notes = 1;
    }
    /* A comparison where an operator could go follows another: a < b < c. */
    int t = ctx->last_token;
    if (!n_notes && (t == '<' || t == '>' || t == LE || t == GE || t == EQ || t == NE) &&
        operator_here) {
        snprintf(note, sizeof note, "comparisons do not chain: write (a < b) == (b < c)");
        n_notes = 1;
    }
    ctx->depth = 0; /* let the next newline end the broken statement */
    const char *expecting = strstr(msg, ", expecting ");
    if (expecting)
        gr_error(ctx, *loc, "syntax", notes, n_notes, "%.*s; expected %s",
                 (int)(expecting - msg), msg, expecting + strlen(", expecting "));
    else
        gr_error(ctx, *loc, "syntax", notes, n_notes, "%s", msg);
}
