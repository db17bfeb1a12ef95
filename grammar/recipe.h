/* recipe.h: the syntax tree inside a parsed surg_recipe, for the compiler. */
#ifndef SURG_RECIPE_H
#define SURG_RECIPE_H

#include "grammar/ast.h"
#include "surg/surg.h"

const ast_recipe *gr_recipe_ast(const surg_recipe *r);

#endif
