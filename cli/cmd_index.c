/* cmd_index.c: `surg index OUT`: complete the output of a partitioned run
 * (`surg run ... --part I/N`) by writing its index once every part is
 * done. */
#include <string.h>

#include "cli.h"

static const char help[] =
    "usage: surg index OUT [--plan DIGEST] [-q]\n"
    "\n"
    "Write model.safetensors.index.json (or PREFIX.safetensors.index.json)\n"
    "for the sharded output OUT that the parts of a partitioned `surg run`\n"
    "wrote, each its own shards: byte for byte the index a run of the whole\n"
    "output writes. OUT is what those runs were given: a directory, or\n"
    "DIR/PREFIX.safetensors.index.json (docs/scale.md).\n"
    "\n"
    "Every shard PREFIX-NNNNN-of-MMMMM.safetensors must be there: missing ones\n"
    "are named, and nothing is written. Each must be a file surg run wrote as\n"
    "part of a sharded output (\"surg.output\": \"sharded\" in its metadata,\n"
    "a valid header), and all must carry the same plan digest (\"surg.plan\"),\n"
    "so shards of different recipes, inputs or shard sizes are never indexed\n"
    "as one output. An output of one file (PREFIX.safetensors) needs no index:\n"
    "it is checked, and nothing is written.\n"
    "\n"
    "  --plan DIGEST  also require this digest (surg plan prints it for the parts)\n"
    "  -q, --quiet    no summary line on success\n"
    "\n"
    "Exit status: 0 written (or not needed), 1 shards missing or not of one\n"
    "output, 2 usage or I/O error.\n";

int cmd_index(int argc, char **argv, diag_printer *dp)
{
    const char *out = NULL, *digest = NULL;
    bool quiet = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(help, stdout);
            return 0;
        }
        if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            quiet = true;
        } else if (strcmp(a, "--plan") == 0) {
            if (i + 1 >= argc)
                return usage_error("index", "--plan needs a value");
            digest = argv[++i];
        } else if (a[0] == '-' && a[1]) {
            return usage_error("index", "unknown option '%s'", a);
        } else if (out) {
            return usage_error("index", "one output at a time");
        } else {
            out = a;
        }
    }
    if (!out)
        return usage_error("index", "which output? (what surg run --part was given)");
    surg_sink sink = diag_sink(dp);
    surg_index_info info;
    surg_status st = surg_index_write(out, digest, &info, &sink);
    if (st == SURG_ENOMEM)
        fputs("surg index: out of memory\n", stderr);
    if (!st && !quiet)
        index_summary(out, &info);
    return surg_exit_code(st);
}

void index_summary(const char *out, const surg_index_info *info)
{
    char size[32];
    surg_format_size(info->bytes, size, sizeof size);
    fputs(info->written ? "surg index: wrote the index of " : "surg index: ", stderr);
    put_safe(stderr, out, false);
    if (info->written)
        fprintf(stderr, " (%zu shards, %zu tensor%s, %s)\n", info->shards, info->tensors,
                info->tensors == 1 ? "" : "s", size);
    else
        fprintf(stderr, " is one file (%zu tensor%s, %s), which needs no index\n", info->tensors,
                info->tensors == 1 ? "" : "s", size);
}
