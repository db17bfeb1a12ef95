/* dump.c: the syntax tree as S-expressions, one statement per line. Golden
 * tests compare it, and `surg fmt` keeps it unchanged. */
#include "grammar/print.h"

static void expr(buf *b, const ast_expr *e);

static void args(buf *b, const ast_arg *a)
{
    for (; a; a = a->next) {
        buf_putc(b, ' ');
        if (a->name)
            buf_printf(b, "(%s= ", a->name);
        expr(b, a->value);
        if (a->name)
            buf_putc(b, ')');
    }
}

static void expr(buf *b, const ast_expr *e)
{
    if (!e) {
        buf_puts(b, "?");
        return;
    }
    switch (e->kind) {
    case EX_NUMBER: buf_printf(b, "%s", e->u.number.text); break;
    case EX_IDENT: buf_puts(b, e->u.ident); break;
    case EX_STRING: pr_string(b, e->u.string); break;
    case EX_NEG:
        buf_puts(b, "(neg ");
        expr(b, e->u.operand);
        buf_putc(b, ')');
        break;
    case EX_BINARY:
        buf_printf(b, "(%s ", ast_op_text(e->u.binary.op));
        expr(b, e->u.binary.lhs);
        buf_putc(b, ' ');
        expr(b, e->u.binary.rhs);
        buf_putc(b, ')');
        break;
    case EX_CALL:
        buf_printf(b, "(call %s", e->u.call.name);
        args(b, e->u.call.args);
        buf_putc(b, ')');
        break;
    }
}

static void strings(buf *b, const char *tag, const ast_string *s)
{
    if (!s)
        return;
    buf_printf(b, " (%s", tag);
    for (; s; s = s->next) {
        buf_puts(b, s->optional ? " optional " : " ");
        pr_string(b, s->text);
    }
    buf_putc(b, ')');
}

static void numbers(buf *b, const char *tag, const ast_number *n)
{
    if (!n)
        return;
    buf_printf(b, " (%s", tag);
    for (; n; n = n->next)
        buf_printf(b, " %s", n->text);
    buf_putc(b, ')');
}

static void type(buf *b, const ast_type *t)
{
    if (!t->dtype)
        return;
    if (t->form != TYPE_DIMS) {
        buf_printf(b, " (type %s%s)", t->dtype, t->form == TYPE_ANY_RANK ? " [...]" : "");
        return;
    }
    buf_printf(b, " (type %s [", t->dtype);
    for (const ast_dim *d = t->dims; d; d = d->next) {
        buf_puts(b, d->size ? d->size->text : "*");
        buf_puts(b, d->next ? " " : "");
    }
    buf_puts(b, "])");
}

static void clauses(buf *b, const ast_clause *c)
{
    for (; c; c = c->next) {
        switch (c->kind) {
        case CL_RANK: numbers(b, "rank", c->number); break;
        case CL_ALPHA: numbers(b, "alpha", c->number); break;
        case CL_STYLE: buf_printf(b, " (style %s)", c->name); break;
        case CL_INIT:
            buf_printf(b, " (init %s ", c->name);
            expr(b, c->init);
            buf_putc(b, ')');
            break;
        case CL_AS: strings(b, "as", c->names); break;
        case CL_FACTORED: strings(b, "factored", c->names); break;
        case CL_MIN: numbers(b, "min", c->number); break;
        case CL_RSLORA: buf_puts(b, " (rslora)"); break;
        case CL_FAN_IN_FAN_OUT: buf_puts(b, " (fan_in_fan_out)"); break;
        case CL_DROPOUT: numbers(b, "dropout", c->number); break;
        case CL_INTO: strings(b, "into", c->names); break;
        case CL_CONFIG: strings(b, "config", c->names); break;
        }
    }
}

void pr_dump(buf *b, const ast_recipe *r)
{
    for (const ast_stmt *s = r->stmts; s; s = s->next) {
        buf_printf(b, "(%s%s", ast_stmt_keyword(s->kind),
                   s->kind == STMT_FILL_NEW    ? "-new"
                   : s->kind == STMT_META_DROP ? "-drop"
                   : s->kind == STMT_META_KEEP ? "-keep"
                                               : "");
        strings(b, s->kind == STMT_META ? "key" : "pattern", s->patterns);
        type(b, &s->type);
        if (s->expr) {
            buf_puts(b, " (expr ");
            expr(b, s->expr);
            buf_putc(b, ')');
        }
        clauses(b, s->clauses);
        numbers(b, "axis", s->axis);
        numbers(b, "sizes", s->sizes);
        numbers(b, "to", s->size);
        numbers(b, "multiple", s->multiple);
        numbers(b, "seed", s->number);
        if (s->word)
            buf_printf(b, " (%s %s)", s->kind == STMT_LET ? "name" : "layout", s->word);
        strings(b, "target", s->targets);
        buf_puts(b, ")\n");
    }
}
