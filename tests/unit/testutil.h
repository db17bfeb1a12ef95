/* testutil.h: helpers shared by the unit tests: a sink that records
 * diagnostics, temporary files, and the fixture paths. */
#ifndef SURG_TESTUTIL_H
#define SURG_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "surg/surg.h"

typedef struct recorder {
    surg_sink sink;
    char codes[2048];    /* codes of every diagnostic, space-separated */
    char messages[8192]; /* messages, newline-separated */
} recorder;

void rec_init(recorder *r);
/* True if some diagnostic had this code / a message containing text. */
int rec_has_code(const recorder *r, const char *code);
int rec_has_text(const recorder *r, const char *text);

/* A fresh temporary directory for this test, removed by tmp_cleanup. */
const char *tmp_dir(void);
void tmp_cleanup(void);
/* Path of a file in the temporary directory (a static buffer per call slot). */
const char *tmp_path(const char *name);
void write_file(const char *path, const void *data, size_t len);
/* Read a whole file; the caller frees. */
unsigned char *read_all(const char *path, size_t *len);

#endif
