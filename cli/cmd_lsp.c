/* cmd_lsp.c: `surg lsp`, a Language Server over standard input and output:
 * the compiler's diagnostics as the recipe is typed, hover on a pattern
 * (what it matches), completion of tensor names and statement keywords,
 * and formatting, against the abstract state a header comment or a
 * setting names (docs/editors.md). The command line; the server is
 * lsp_server.c. */
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lsp.h"

static const char help[] =
    "usage: surg lsp\n"
    "\n"
    "A Language Server (LSP 3.17) over standard input and output, for editors:\n"
    "diagnostics as you type, hover on a pattern to see what it matches,\n"
    "completion of tensor names and statement keywords, formatting.\n"
    "The abstract state is the file a comment at the top of the recipe names,\n"
    "`# surg: from model.schema.json` (relative to the recipe's directory), or\n"
    "else the setting surg.from (initializationOptions or\n"
    "workspace/didChangeConfiguration; relative to the workspace root).\n"
    "See docs/editors.md for VS Code, Neovim, Helix and Emacs.\n";

int cmd_lsp(int argc, char **argv, diag_printer *dp)
{
    (void)dp;
    if (argc == 2 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        fputs(help, stdout);
        return 0;
    }
    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "--stdio") != 0) /* what some clients add */
            return usage_error("lsp", "unexpected argument '%s'", argv[i]);
    signal(SIGPIPE, SIG_IGN); /* a client that went away: a failed write, then the end */
    int rc = lsp_serve(STDIN_FILENO, STDOUT_FILENO);
    if (rc == 2)
        fputs("surg lsp: out of memory\n", stderr);
    return rc;
}
