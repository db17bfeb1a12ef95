/* out_names.h: the result's names against the outputs they will be written
 * to, when those are known at compile time (surg_compile_for). */
#ifndef SURG_OUT_NAMES_H
#define SURG_OUT_NAMES_H

#include "compiler/lower.h"

/* Every name of the final state and every tied name, under its output's
 * prefix and with the prefix taken off, must be one that output's format
 * holds; each error points at the statement that gave the name, or at the
 * input whose name it is. */
void on_check_outputs(lw *L, const surg_compile_opts *o, const surg_ckpt *input);

#endif
