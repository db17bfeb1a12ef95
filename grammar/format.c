/* format.c: `surg fmt` — one statement per line, single spaces, minimal
 * parentheses, numbers as written, comments and (single) blank lines kept.
 * Clause and argument order is never changed, so the tree of the output is
 * the tree of the input. */
#include <string.h>

#include "grammar/print.h"

void pr_string(buf *b, const char *text)
{
    buf_putc(b, '"');
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        switch (*p) {
        case '"': buf_puts(b, "\\\""); break;
        case '\\': buf_puts(b, "\\\\"); break;
        case '\n': buf_puts(b, "\\n"); break;
        case '\t': buf_puts(b, "\\t"); break;
        case '\r': buf_puts(b, "\\r"); break;
        default:
            if (*p < 0x20 || *p == 0x7F)
                buf_printf(b, "\\x%02x", *p);
            else
                buf_putc(b, (char)*p);
        }
    }
    buf_putc(b, '"');
}

static int precedence(const ast_expr *e)
{
    if (e->kind == EX_BINARY && ast_op_compares(e->u.binary.op))
        return 0;
    if (e->kind == EX_BINARY)
        return e->u.binary.op == '+' || e->u.binary.op == '-' ? 1 : 2; /* * / @ */
    return e->kind == EX_NEG ? 3 : 4;
}

/* Operators are left-associative: a right operand of equal precedence keeps
 * its parentheses (a - (b - c)), a left one does not. Comparisons do not
 * associate at all: (a < b) < c keeps them on either side. */
static void operand(buf *b, const ast_expr *e, int parent, bool right)
{
    int p = precedence(e);
    bool parens = p < parent || (p == parent && (right || p == 0));
    if (parens)
        buf_putc(b, '(');
    pr_expr(b, e);
    if (parens)
        buf_putc(b, ')');
}

void pr_expr(buf *b, const ast_expr *e)
{
    if (!e)
        return;
    switch (e->kind) {
    case EX_NUMBER: buf_puts(b, e->u.number.text); break;
    case EX_IDENT: buf_puts(b, e->u.ident); break;
    case EX_STRING: pr_string(b, e->u.string); break;
    case EX_NEG:
        buf_putc(b, '-');
        operand(b, e->u.operand, 3, true); /* -(-x), never --x */
        break;
    case EX_BINARY:
        operand(b, e->u.binary.lhs, precedence(e), false);
        buf_printf(b, " %s ", ast_op_text(e->u.binary.op));
        operand(b, e->u.binary.rhs, precedence(e), true);
        break;
    case EX_CALL:
        buf_printf(b, "%s(", e->u.call.name);
        for (const ast_arg *a = e->u.call.args; a; a = a->next) {
            if (a->name)
                buf_printf(b, "%s=", a->name);
            pr_expr(b, a->value);
            buf_puts(b, a->next ? ", " : "");
        }
        buf_putc(b, ')');
        break;
    }
}

static void strings(buf *b, const ast_string *s)
{
    for (; s; s = s->next) {
        if (s->optional)
            buf_puts(b, "optional ");
        pr_string(b, s->text);
        buf_puts(b, s->next ? ", " : "");
    }
}

static void numbers(buf *b, const ast_number *n)
{
    for (; n; n = n->next)
        buf_printf(b, "%s%s", n->text, n->next ? ", " : "");
}

static void type(buf *b, const ast_type *t)
{
    if (t->form != TYPE_DIMS) {
        buf_printf(b, "%s%s", t->dtype, t->form == TYPE_ANY_RANK ? "[...]" : "");
        return;
    }
    buf_printf(b, "%s[", t->dtype);
    for (const ast_dim *d = t->dims; d; d = d->next) {
        buf_puts(b, d->size ? d->size->text : "*");
        buf_puts(b, d->next ? ", " : "");
    }
    buf_putc(b, ']');
}

static void clause(buf *b, const ast_clause *c)
{
    switch (c->kind) {
    case CL_RANK: buf_printf(b, " rank %s", c->number->text); break;
    case CL_ALPHA: buf_printf(b, " alpha %s", c->number->text); break;
    case CL_STYLE: buf_printf(b, " style %s", c->name); break;
    case CL_INIT:
        buf_printf(b, " %s = ", c->name);
        pr_expr(b, c->init);
        break;
    case CL_AS:
        buf_puts(b, " as ");
        strings(b, c->names);
        break;
    case CL_FACTORED:
        buf_puts(b, " factored ");
        strings(b, c->names);
        break;
    case CL_MIN: buf_printf(b, " min %s", c->number->text); break;
    case CL_RSLORA: buf_puts(b, " rslora"); break;
    case CL_FAN_IN_FAN_OUT: buf_puts(b, " fan_in_fan_out"); break;
    case CL_DROPOUT: buf_printf(b, " dropout %s", c->number->text); break;
    case CL_INTO:
    case CL_CONFIG:
        buf_printf(b, " %s ", c->kind == CL_INTO ? "into" : "config");
        strings(b, c->names);
        break;
    }
}

static void statement(buf *b, const ast_stmt *s)
{
    buf_puts(b, ast_stmt_keyword(s->kind));
    buf_putc(b, ' ');
    switch (s->kind) {
    case STMT_SEED: numbers(b, s->number); return;
    case STMT_LAYOUT: buf_puts(b, s->word); return;
    case STMT_LET:
        buf_printf(b, "%s = ", s->word);
        pr_expr(b, s->expr);
        return;
    case STMT_META_DROP: buf_puts(b, "drop "); break;
    case STMT_META_KEEP: buf_puts(b, "keep "); break;
    default: break;
    }
    strings(b, s->patterns);
    switch (s->kind) {
    case STMT_FILL_NEW:
        buf_puts(b, " : ");
        type(b, &s->type);
        /* fall through */
    case STMT_FILL:
    case STMT_MAP:
    case STMT_META:
        buf_puts(b, " = ");
        pr_expr(b, s->expr);
        break;
    case STMT_TIE:
        buf_puts(b, " = ");
        strings(b, s->targets);
        break;
    case STMT_EXPECT:
        buf_puts(b, " : ");
        type(b, &s->type);
        break;
    case STMT_INIT_LORA:
    case STMT_MERGE_LORA:
        for (const ast_clause *c = s->clauses; c; c = c->next)
            clause(b, c);
        break;
    case STMT_SPLIT:
    case STMT_CONCAT:
    case STMT_STACK:
    case STMT_UNSTACK:
        buf_printf(b, " axis %s", s->axis->text);
        if (s->sizes) {
            buf_puts(b, " sizes ");
            numbers(b, s->sizes);
        }
        /* fall through */
    case STMT_RENAME:
        buf_puts(b, " -> ");
        strings(b, s->targets);
        break;
    case STMT_RESIZE:
        buf_printf(b, " axis %s to %s", s->axis->text, s->size->text);
        if (s->multiple)
            buf_printf(b, " multiple %s", s->multiple->text);
        break;
    case STMT_MIRROR:
        buf_puts(b, " ->");
        if (s->targets)
            buf_putc(b, ' ');
        strings(b, s->targets);
        for (const ast_clause *c = s->clauses; c; c = c->next)
            clause(b, c);
        break;
    default: break;
    }
}

/* True if a blank line separates offsets `from` and `to` in the source. */
static bool blank_between(const src_file *f, uint32_t from, uint32_t to)
{
    bool line_empty = false;
    int newlines = 0;
    for (uint32_t i = from; i < to && i < f->len; i++) {
        char c = f->text[i];
        if (c == '\n') {
            if (newlines && line_empty)
                return true;
            newlines++;
            line_empty = true;
        } else if (c != ' ' && c != '\t' && c != '\r') {
            line_empty = false;
        }
    }
    return false;
}

static uint32_t line_of(const src_file *f, uint32_t offset)
{
    uint32_t line, col;
    src_position(f, offset, &line, &col);
    return line;
}

/* Statements and comments in source order; a comment on the line where a
 * statement ends stays at the end of that line. */
void pr_format(buf *b, const ast_recipe *r)
{
    const src_file *f = &r->src;
    const ast_stmt *s = r->stmts;
    const ast_comment *c = r->comments;
    bool first = true;
    uint32_t prev_end = 0;
    while (s || c) {
        bool take_comment = c && (!s || c->span.start < s->span.start);
        src_span at = take_comment ? c->span : s->span;
        if (!first && blank_between(f, prev_end, at.start))
            buf_putc(b, '\n');
        if (take_comment) {
            buf_printf(b, "%s\n", c->text);
            prev_end = c->span.end;
            c = c->next;
        } else {
            statement(b, s);
            prev_end = s->span.end;
            while (c && c->span.start >= s->span.end &&
                   line_of(f, c->span.start) == line_of(f, s->span.end)) {
                buf_printf(b, "  %s", c->text);
                prev_end = c->span.end;
                c = c->next;
            }
            buf_putc(b, '\n');
            s = s->next;
        }
        first = false;
    }
}
