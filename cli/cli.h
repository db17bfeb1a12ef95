/* cli.h: the pieces of the `surg` command, on the public API only. */
#ifndef SURG_CLI_H
#define SURG_CLI_H

#include <stdbool.h>
#include <stdio.h>

#include "surg/surg.h"

typedef enum diag_format {
    DIAG_HUMAN,  /* file:line:col: error: message, source line, caret */
    DIAG_JSON,   /* one JSON object per line */
    DIAG_GITHUB, /* ::error file=...,line=...::message */
} diag_format;

typedef struct diag_printer {
    FILE *out;
    diag_format format;
    bool color;
} diag_printer;

/* A surg_sink whose callback prints to p->out. */
surg_sink diag_sink(diag_printer *p);
bool diag_parse_format(const char *name, diag_format *out);

/* Commands: argc/argv start at the command's name; return the exit code. */
int cmd_schema(int argc, char **argv, diag_printer *dp);
int cmd_fmt(int argc, char **argv, diag_printer *dp);
int cmd_check(int argc, char **argv, diag_printer *dp);

/* Report a usage error for `cmd` and return 2. */
int usage_error(const char *cmd, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
