/* fuzz_lsp.c: libFuzzer harness for `surg lsp`'s server (cli/lsp_server.c,
 * lsp_serve): the input is what a client sends — header blocks, bodies,
 * any sequence of requests and notifications — read from a file, the
 * answers written to /dev/null. The server must end (the input ends) with
 * 0 or 1, never 2 or a crash, whatever it was sent. It runs in the
 * harness's directory, which holds `m.json`, a small schema: a recipe
 * whose URI is relative (`untitled:r.surg`) and opens with
 * `# surg: from m.json` is checked, hovered and completed against it. */
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli/lsp.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* cmd_lsp.c's only outside call; the harness has no command line. */
int usage_error(const char *cmd, const char *fmt, ...)
{
    (void)cmd, (void)fmt;
    return 2;
}

static const char schema[] =
    "{\"params/Dense_0/kernel\": {\"dtype\": \"F32\", \"shape\": [3, 4]},"
    " \"params/Dense_0/bias\": {\"dtype\": \"F32\", \"shape\": [4]},"
    " \"layers.0.w\": {\"dtype\": \"BF16\", \"shape\": [2, 2]},"
    " \"layers.10.w\": {\"dtype\": \"F16\", \"shape\": []}}";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int out = -1;
    if (out < 0) {
        fz_write(fz_path(0, "m.json"), schema, strlen(schema));
        if ((out = open("/dev/null", O_WRONLY)) < 0)
            fz_fail("cannot open /dev/null", NULL);
    }
    const char *in_path = fz_path(1, "in.lsp");
    fz_write(in_path, data, size);
    int in = open(in_path, O_RDONLY);
    /* in the harness's directory while it serves; back after (libFuzzer
     * reads its corpus by relative paths) */
    int here = open(".", O_RDONLY | O_DIRECTORY);
    if (in < 0 || here < 0 || chdir(fz_tmpdir()) != 0)
        fz_fail("cannot set up", in_path);
    int rc = lsp_serve(in, out);
    if (fchdir(here) != 0)
        fz_fail("cannot go back", NULL);
    close(here);
    close(in);
    if (rc != 0 && rc != 1)
        fz_fail("the server ended with neither 0 nor 1", NULL);
    return 0;
}
