/* cmd_fmt.c: `surg fmt [--check|-w] RECIPE...`: print recipes in the
 * canonical layout, check that they already are, or rewrite them in place. */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

static const char help[] =
    "usage: surg fmt [--check | -w] [--tree] RECIPE...\n"
    "\n"
    "Print each recipe in the one canonical layout: one statement per line,\n"
    "single spaces, minimal parentheses, comments and single blank lines kept.\n"
    "Formatting never changes what a recipe means. RECIPE '-' is standard input.\n"
    "\n"
    "  --check  print nothing; exit 1 if a recipe is not formatted (naming it)\n"
    "  -w, --write\n"
    "           rewrite each recipe that is not formatted in place (a new file\n"
    "           renamed over it, keeping its mode); formatted ones are left\n"
    "           untouched. A symbolic link, a file with several hard links and\n"
    "           standard input are refused.\n"
    "  --tree   print the syntax tree instead (for debugging the grammar)\n";

static surg_status load(const char *path, surg_sink *sink, surg_recipe **r,
                        char **text, size_t *len)
{
    *r = NULL;
    surg_status st = surg_recipe_read(path, sink, text, len);
    if (st)
        return st;
    return surg_recipe_parse(strcmp(path, "-") == 0 ? "<stdin>" : path, *text, *len,
                             sink, r);
}

/* May `path` be rewritten? A regular file with one link, not a symbolic link
 * (renaming over it would replace the link, not what it points at). */
static bool writable_recipe(const char *path, struct stat *st)
{
    if (lstat(path, st) != 0) {
        fprintf(stderr, "surg fmt: %s: %s\n", path, strerror(errno));
        return false;
    }
    const char *why = S_ISLNK(st->st_mode)  ? "is a symbolic link; give the file it points at"
                      : !S_ISREG(st->st_mode) ? "is not a regular file"
                      : st->st_nlink > 1
                          ? "has several hard links, which a rewrite would split; "
                            "print it with `surg fmt` instead"
                          : NULL;
    if (why)
        fprintf(stderr, "surg fmt: %s: %s (-w rewrites regular files only)\n", path, why);
    return !why;
}

/* Write `text` to a new file beside `path`, with its mode, sync it, and
 * rename it over `path`, unless `path` changed meanwhile. */
static int rewrite(const char *path, const struct stat *was, const char *text)
{
    const char *slash = strrchr(path, '/');
    size_t dir_len = slash ? (size_t)(slash - path) + 1 : 0;
    const char *base = slash ? slash + 1 : path;
    size_t n = dir_len + strlen(base) + 32;
    char *tmp = malloc(n);
    if (!tmp) {
        fprintf(stderr, "surg fmt: %s: out of memory\n", path);
        return 2;
    }
    snprintf(tmp, n, "%.*s.%s.surg-fmt-XXXXXX", (int)dir_len, path, base);
    int fd = mkstemp(tmp);
    if (fd < 0) {
        fprintf(stderr, "surg fmt: %s: cannot create a file beside it: %s\n", path,
                strerror(errno));
        free(tmp);
        return 2;
    }
    size_t len = strlen(text), done = 0;
    int err = 0;
    while (!err && done < len) {
        ssize_t w = write(fd, text + done, len - done);
        if (w < 0 && errno != EINTR)
            err = errno;
        else if (w > 0)
            done += (size_t)w;
    }
    if (!err && fchmod(fd, was->st_mode & 07777) != 0)
        err = errno;
    if (!err && fsync(fd) != 0)
        err = errno;
    if (close(fd) != 0 && !err)
        err = errno;
    struct stat now;
    if (!err && (lstat(path, &now) != 0 || now.st_dev != was->st_dev || now.st_ino != was->st_ino ||
                 !S_ISREG(now.st_mode))) {
        fprintf(stderr, "surg fmt: %s: changed while it was formatted; left as it is\n", path);
        unlink(tmp);
        free(tmp);
        return 2;
    }
    if (!err && rename(tmp, path) != 0)
        err = errno;
    if (err) {
        fprintf(stderr, "surg fmt: %s: cannot rewrite it: %s\n", path, strerror(err));
        unlink(tmp);
        free(tmp);
        return 2;
    }
    free(tmp);
    /* The rename is durable once the directory is synced. */
    char *dir = malloc(dir_len + 2);
    if (dir) {
        snprintf(dir, dir_len + 2, "%.*s", dir_len ? (int)dir_len : 1, dir_len ? path : ".");
        int dfd = open(dir, O_RDONLY | O_DIRECTORY);
        if (dfd >= 0) {
            fsync(dfd);
            close(dfd);
        }
        free(dir);
    }
    return 0;
}

static int fmt_one(const char *path, bool check, bool tree, bool write, surg_sink *sink)
{
    struct stat was;
    if (write && !writable_recipe(path, &was))
        return 2;
    surg_recipe *r;
    char *text;
    size_t len;
    surg_status st = load(path, sink, &r, &text, &len);
    if (st) {
        free(text);
        return surg_exit_code(st);
    }
    char *out = tree ? surg_recipe_dump(r) : surg_recipe_format(r);
    surg_recipe_free(r);
    int rc = 0;
    if (!out) {
        fprintf(stderr, "surg fmt: %s: out of memory\n", path);
        rc = 2;
    } else if (check) {
        if (strlen(out) != len || memcmp(out, text, len) != 0) {
            fprintf(stderr, "%s: not formatted (run `surg fmt %s`)\n", path, path);
            rc = 1;
        }
    } else if (write) {
        if (strlen(out) != len || memcmp(out, text, len) != 0)
            rc = rewrite(path, &was, out);
    } else {
        fputs(out, stdout);
    }
    free(out);
    free(text);
    return rc;
}

int cmd_fmt(int argc, char **argv, diag_printer *dp)
{
    bool check = false, tree = false, write = false;
    int n_files = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
            fputs(help, stdout);
            return 0;
        }
        if (strcmp(argv[i], "--check") == 0)
            check = true;
        else if (strcmp(argv[i], "--tree") == 0)
            tree = true;
        else if (strcmp(argv[i], "-w") == 0 || strcmp(argv[i], "--write") == 0)
            write = true;
        else if (argv[i][0] == '-' && argv[i][1])
            return usage_error("fmt", "unknown option '%s'", argv[i]);
        else
            argv[1 + n_files++] = argv[i];
    }
    if (!n_files)
        return usage_error("fmt", "which recipe?");
    if (write && (check || tree))
        return usage_error("fmt", "-w rewrites recipes; it goes with neither --check nor --tree");
    for (int i = 0; write && i < n_files; i++)
        if (strcmp(argv[1 + i], "-") == 0)
            return usage_error("fmt", "-w rewrites files, and '-' is standard input");
    surg_sink sink = diag_sink(dp);
    int rc = 0;
    for (int i = 0; i < n_files; i++) {
        int r = fmt_one(argv[1 + i], check, tree, write, &sink);
        rc = r > rc ? r : rc;
    }
    if (fflush(stdout) != 0) {
        fputs("surg fmt: cannot write to standard output\n", stderr);
        rc = 2;
    }
    return rc;
}
