/* print.h: the syntax tree back to text: `surg fmt`'s canonical layout, and
 * an S-expression dump for tests and debugging. */
#ifndef SURG_PRINT_H
#define SURG_PRINT_H

#include "grammar/ast.h"
#include "support/buf.h"

/* A quoted string literal that reads back to `text`. */
void pr_string(buf *b, const char *text);
/* An expression with the fewest parentheses that keep its tree. */
void pr_expr(buf *b, const ast_expr *e);

/* The whole recipe in canonical layout, comments kept. */
void pr_format(buf *b, const ast_recipe *r);
/* The tree, one statement per line, no comments or layout. */
void pr_dump(buf *b, const ast_recipe *r);

#endif
