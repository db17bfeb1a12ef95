/* parts.c: a program whose outputs are split by name prefix across several
 * files (parameters and optimizer state apart): every tensor must land in
 * one of them, and a tie cannot point from one file into another. */
#include <stdio.h>
#include <string.h>

#include "support/diag.h"
#include "compiler/program.h"

/* The output whose prefix starts `name`, or n. */
static size_t part_of(const surg_ckpt_part *outputs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strncmp(name, outputs[i].prefix, strlen(outputs[i].prefix)) == 0)
            return i;
    return n;
}

static void list_prefixes(char *text, size_t size, const surg_ckpt_part *outputs, size_t n)
{
    size_t len = 0;
    text[0] = '\0';
    for (size_t i = 0; i < n && len < size; i++)
        len += (size_t)snprintf(text + len, size - len, "%s\"%s\"", i ? ", " : "",
                                outputs[i].prefix);
}

surg_status surg_program_check_parts(const surg_program *p, const surg_ckpt_part *outputs,
                                     size_t n, surg_sink *sink)
{
    char prefixes[256];
    list_prefixes(prefixes, sizeof prefixes, outputs, n);
    surg_status st = SURG_OK;
    for (size_t i = 0; i < p->n_out; i++)
        if (part_of(outputs, n, p->out_info[i].name) == n) {
            dg_file(sink, SURG_ERROR, "parts-unplaced", surg_ckpt_path(p->input),
                    "\"%s\" is under none of %s, so it would belong to no output file",
                    p->out_info[i].name, prefixes);
            st = SURG_EINVALID;
        }
    for (size_t i = 0; i < p->n_alias; i++) {
        size_t a = part_of(outputs, n, p->alias[i].key), b = part_of(outputs, n, p->alias[i].value);
        if (a == n) {
            dg_file(sink, SURG_ERROR, "parts-unplaced", surg_ckpt_path(p->input),
                    "the tied name \"%s\" is under none of %s, so it would belong to no output "
                    "file",
                    p->alias[i].key, prefixes);
            st = SURG_EINVALID;
        } else if (a != b && b < n) {
            dg_file(sink, SURG_ERROR, "parts-tie", surg_ckpt_path(p->input),
                    "\"%s\" is tied to \"%s\", which goes to another file (%s): a tie is "
                    "stored within one file",
                    p->alias[i].key, p->alias[i].value, outputs[b].path);
            st = SURG_EINVALID;
        }
    }
    return st;
}
