/* peft.c: a PEFT adapter directory, as PeftModel.save_pretrained writes it:
 * adapter_model.safetensors beside adapter_config.json. Read as the one
 * safetensors file it holds; written by peft_write.c. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "support/diag.h"
#include "runtime/format.h"
#include "runtime/peft_write.h"

/* dir/name, in the arena; NULL when out of memory. */
static char *join(arena *ar, const char *dir, const char *name)
{
    size_t n = strlen(dir), k = strlen(name);
    char *p = ar_alloc(ar, n + k + 2);
    if (p) {
        memcpy(p, dir, n);
        p[n] = '/';
        memcpy(p + n + 1, name, k + 1);
    }
    return p;
}

static bool regular(const char *dir, const char *name)
{
    arena ar;
    ar_init(&ar);
    const char *p = join(&ar, dir, name);
    struct stat sb;
    bool ok = p && stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
    ar_free(&ar);
    return ok;
}

static bool pf_sniff_dir(const char *dir)
{
    return regular(dir, PW_CONFIG) && regular(dir, PW_WEIGHTS);
}

static surg_status pf_open_dir(arena *keep, surg_sink *sink, const char *dir, fmt_table **tables,
                               size_t *n)
{
    const char *path = join(keep, dir, PW_WEIGHTS);
    fmt_table *t = calloc(1, sizeof *t);
    if (!path || !t) {
        free(t);
        return dg_nomem(sink, dir);
    }
    *t = (fmt_table){.file = {.path = path, .fd = -1}};
    *tables = t;
    *n = 1;
    return fmt_safetensors.open(keep, sink, path, t);
}

const fmt_reader fmt_peft = {
    .id = "peft",
    .sniff_dir = pf_sniff_dir,
    .open_dir = pf_open_dir,
    .called = "a PEFT adapter",
    .writes = true,
    .writer = &pw_writer,
    .names = TN_SAFETENSORS,
};
