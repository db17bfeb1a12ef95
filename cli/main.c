/* main.c: the `surg` command: global options, dispatch to a command, and the
 * signal handler that removes unfinished outputs. */
#include <signal.h>
#include <stdlib.h>
#include <stdarg.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"

static const char usage[] =
    "usage: surg <command> [options]\n"
    "\n"
    "Declarative checkpoint surgery: compile a .surg recipe against a\n"
    "checkpoint's abstract state and apply it with a streaming runtime.\n"
    "\n"
    "commands:\n"
    "  run RECIPE IN OUT      apply a recipe to a checkpoint\n"
    "  run RECIPE --in NAME=PATH [--in NAME=PATH ...] OUT\n"
    "                         ... to several, each seen under NAME/\n"
    "  check RECIPE --from CKPT [--to TARGET]\n"
    "                         compile a recipe against a checkpoint's header\n"
    "  plan RECIPE --from CKPT [--to TARGET] [--json]\n"
    "                         what run would do for each tensor, and its cost\n"
    "  run ... --part I/N|auto --max-shard-size SIZE\n"
    "                         write one part of a sharded output (docs/scale.md)\n"
    "  index OUT              write the index of a partitioned output, once every\n"
    "                         part is done\n"
    "  fmt RECIPE [--check | -w]\n"
    "                         print a recipe in the canonical layout (-w: in place)\n"
    "  schema CKPT [--json]   print the abstract state (names, dtypes, shapes)\n"
    "  diff A B [--recipe R] [--rtol X] [--atol X] [--json]\n"
    "                         compare two checkpoints (or run R A with B) by\n"
    "                         names, dtypes, shapes and values; exit 1 if they differ\n"
    "  invert RECIPE --from CKPT|SCHEMA\n"
    "                         print the recipe that undoes RECIPE (or say what cannot\n"
    "                         be undone)\n"
    "  lsp                    a Language Server over standard input and output\n"
    "                         (docs/editors.md)\n"
    "  suggest --from OLD --to NEW\n"
    "                         draft a recipe that takes OLD's tensors to NEW's\n"
    "\n"
    "options:\n"
    "  -h, --help             this text; `surg <command> --help` (or `surg help\n"
    "                         <command>`) for a command; `surg help recipe` and\n"
    "                         `surg help globs` for the language\n"
    "  --version              print the version\n"
    "  --diagnostics FORMAT   human (default), json or github\n"
    "  --color WHEN           auto (default), always or never\n"
    "\n"
    "exit status: 0 success, 1 the recipe or a checkpoint is wrong,\n"
    "2 usage or I/O error.\n"
    "\n" HELP_RECIPE;

static const struct command {
    const char *name;
    int (*run)(int argc, char **argv, diag_printer *dp);
} commands[] = {
    {"schema", cmd_schema},
    {"fmt", cmd_fmt},
    {"check", cmd_check},
    {"plan", cmd_plan},
    {"run", cmd_run},
    {"index", cmd_index},
    {"diff", cmd_diff},
    {"invert", cmd_invert},
    {"lsp", cmd_lsp},
    {"suggest", cmd_suggest},
};

int usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "surg%s%s: ", cmd ? " " : "", cmd ? cmd : "");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n(see `surg%s%s --help`)\n", cmd ? " " : "", cmd ? cmd : "");
    va_end(ap);
    return 2;
}

/* `surg help [TOPIC]`: this usage, a command's own help, or a part of the
 * language. */
static int help(int argc, char **argv, diag_printer *dp)
{
    static const struct {
        const char *names[3];
        const char *text;
    } topics[] = {
        {{"recipe", "language", "statements"}, HELP_RECIPE},
        {{"globs", "patterns", "glob"}, HELP_GLOBS},
        {{"example", "examples", NULL}, HELP_EXAMPLE},
    };
    if (argc < 2 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (argc > 2)
        return usage_error("help", "one topic at a time");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0) {
            char *args[] = {argv[1], "--help", NULL};
            return commands[i].run(2, args, dp);
        }
    for (size_t i = 0; i < sizeof topics / sizeof *topics; i++)
        for (size_t k = 0; k < 3 && topics[i].names[k]; k++)
            if (strcmp(argv[1], topics[i].names[k]) == 0) {
                fputs(topics[i].text, stdout);
                return 0;
            }
    return usage_error("help", "no help on '%s': the topics are the commands (run, check, "
                               "plan, fmt, schema, diff, invert), recipe and globs", argv[1]);
}

static void on_signal(int sig)
{
    surg_remove_temporaries();
    signal(sig, SIG_DFL);
    raise(sig);
}

/* A mapped input that shrank under us: reading past its new end raises
 * SIGBUS. Say so, remove the unfinished outputs, and stop. */
static void on_sigbus(int sig)
{
    static const char msg[] = "surg: error: an input file changed while it was being read "
                              "(truncated?); nothing was written\n";
    (void)sig;
    surg_remove_temporaries();
    ssize_t rc = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)rc;
    _exit(2);
}

static void install_signal_handlers(void)
{
    const int sigs[] = {SIGINT, SIGTERM, SIGHUP, SIGQUIT};
    for (size_t i = 0; i < sizeof sigs / sizeof *sigs; i++) {
        struct sigaction sa = {.sa_handler = on_signal};
        sigemptyset(&sa.sa_mask);
        sigaction(sigs[i], &sa, NULL);
    }
    struct sigaction bus = {.sa_handler = on_sigbus};
    sigemptyset(&bus.sa_mask);
    sigaction(SIGBUS, &bus, NULL);
    /* Past a file-size limit, a write should fail (EFBIG, reported and
     * cleaned up), not kill the process with its temporaries in place. */
    signal(SIGXFSZ, SIG_IGN);
}

/* Pull the global options out of argv (they may stand anywhere), leaving the
 * command and its own arguments. Returns -1 when it is fine to go on. */
static int global_options(int *argc, char **argv, diag_printer *dp)
{
    const char *color = "auto";
    int out = 1;
    for (int i = 1; i < *argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "--diagnostics") == 0 || strcmp(a, "--color") == 0) {
            if (i + 1 >= *argc)
                return usage_error(NULL, "%s needs a value", a);
            if (a[2] == 'd' && !diag_parse_format(argv[i + 1], &dp->format))
                return usage_error(NULL, "unknown diagnostics format '%s' "
                                         "(human, json or github)", argv[i + 1]);
            if (a[2] == 'c')
                color = argv[i + 1];
            i++;
            continue;
        }
        argv[out++] = argv[i];
    }
    *argc = out;
    argv[out] = NULL;
    if (strcmp(color, "always") == 0)
        dp->color = true;
    else if (strcmp(color, "never") == 0)
        dp->color = false;
    else if (strcmp(color, "auto") == 0)
        dp->color = isatty(fileno(dp->out)) && !getenv("NO_COLOR");
    else
        return usage_error(NULL, "--color takes auto, always or never, not '%s'",
                           color);
    dp->color &= dp->format == DIAG_HUMAN;
    return -1;
}

int main(int argc, char **argv)
{
    diag_printer dp = {.out = stderr, .format = DIAG_HUMAN};
    int rc = global_options(&argc, argv, &dp);
    if (rc >= 0)
        return rc;
    if (argc < 2)
        return usage_error(NULL, "no command given");
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        fputs(usage, stdout);
        return 0;
    }
    if (strcmp(argv[1], "help") == 0)
        return help(argc - 1, argv + 1, &dp);
    if (strcmp(argv[1], "--version") == 0) {
        printf("surg %s\n", SURG_VERSION);
        return 0;
    }
    install_signal_handlers();
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (strcmp(argv[1], commands[i].name) == 0)
            return commands[i].run(argc - 1, argv + 1, &dp);
    return usage_error(NULL, "unknown command '%s'", argv[1]);
}
