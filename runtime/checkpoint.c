/* checkpoint.c: opening a checkpoint by its path. The path is resolved
 * first (a directory that a format claims as a checkpoint of its own, as
 * Orbax's are, or else to the file in it), then its format chosen by the
 * name (or by the content where the name says nothing, format.h), and only
 * then is the checkpoint made: one file (or a directory) read by its
 * format's reader and assembled (ck_table.c), or an index and its shards
 * (shard.c). */
#include "runtime/checkpoint.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "support/diag.h"

static const char index_suffix[] = ".index.json";

/* What a path opens as. */
typedef struct choice {
    char *path;    /* malloc'd: the file to open */
    bool index;    /* a sharded set's index */
    bool dir;      /* a directory the format opens itself (fmt_reader.open_dir) */
    fmt_id format; /* else one file of this format */
} choice;

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

/* "dir/name", "name.index.json" (name plus `tail`), malloc'd. */
static char *join(const char *dir, const char *name, const char *tail)
{
    size_t n = strlen(dir) + strlen(name) + strlen(tail) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s%s%s%s", dir, *dir && !ends_with(dir, "/") ? "/" : "", name, tail);
    return p;
}

/* Items joined as a list, "A, B and C" (`last` is " and " or ", and "). */
typedef struct list {
    char text[1024];
    size_t len, n;
} list;

static void list_add(list *l, const char *item, size_t i, size_t count, const char *last)
{
    const char *sep = i == 0 ? "" : i + 1 < count ? ", " : last;
    int k = snprintf(l->text + l->len, sizeof l->text - l->len, "%s%s", sep, item);
    if (k > 0)
        l->len += (size_t)k < sizeof l->text - l->len ? (size_t)k : sizeof l->text - l->len - 1;
}

/* A directory is a checkpoint of a format that claims it (fmt_reader's
 * sniff_dir: Orbax's), or holds what Hugging Face's save_pretrained writes:
 * the first of each format's NAME.index.json and NAME
 * (fmt_reader.dir_file), in the order of the formats; else PEFT's
 * adapter_model.safetensors. */
static surg_status resolve_directory(const char *dir, fmt_id given, surg_sink *sink, choice *c)
{
    fmt_id claims = given != FMT_NONE && fmt_readers[given]->open_dir ? given : fmt_by_dir(dir);
    if (claims != FMT_NONE) {
        *c = (choice){strdup(dir), false, true, claims};
        return c->path ? SURG_OK : dg_nomem(sink, dir);
    }
    list names = {0};
    size_t count = 0;
    for (int f = 0; f < FMT_COUNT; f++)
        count += fmt_readers[f]->dir_file ? 2 : 0;
    for (int f = 0; f < FMT_COUNT; f++) {
        const char *name = fmt_readers[f]->dir_file;
        for (int index = 1; name && index >= 0; index--) {
            char *p = join(dir, name, index ? index_suffix : "");
            struct stat sb;
            if (!p)
                return dg_nomem(sink, dir);
            if (stat(p, &sb) == 0) {
                *c = (choice){p, index, false, (fmt_id)f};
                return SURG_OK;
            }
            free(p);
            char item[256];
            snprintf(item, sizeof item, "%s%s", name, index ? index_suffix : "");
            list_add(&names, item, names.n++, count, " or ");
        }
    }
    /* A PEFT adapter's directory (save_pretrained of a PeftModel). */
    char *adapter = join(dir, "adapter_model.safetensors", "");
    struct stat asb;
    if (!adapter)
        return dg_nomem(sink, dir);
    if (stat(adapter, &asb) == 0) {
        *c = (choice){adapter, false, false, FMT_SAFETENSORS};
        return SURG_OK;
    }
    free(adapter);
    const char *also = "";
    for (int f = 0; f < FMT_COUNT && !*also; f++)
        also = fmt_readers[f]->sniff_dir && fmt_readers[f]->called ? fmt_readers[f]->called : "";
    dg_file(sink, SURG_ERROR, "ck-empty-dir", dir, "the directory has none of %s%s%s",
            names.text, *also ? ", and is not " : "", also);
    return SURG_EIO;
}

/* Every format by the words it is called: the default one's sharded set
 * after it. */
static surg_status unknown_format(const char *path, surg_sink *sink)
{
    const char *called[FMT_COUNT + 1];
    char sharded[128];
    size_t n = 0;
    snprintf(sharded, sizeof sharded,
             "a sharded checkpoint (a directory or a %s%s)", fmt_readers[0]->suffixes[0],
             index_suffix);
    for (int f = 0; f < FMT_COUNT; f++) {
        if (fmt_readers[f]->called && fmt_readers[f]->open) /* a file's format */
            called[n++] = fmt_readers[f]->called;
        if (f == 0)
            called[n++] = sharded;
    }
    list l = {0};
    for (size_t i = 0; i < n; i++)
        list_add(&l, called[i], i, n, ", or ");
    dg_file(sink, SURG_ERROR, "ck-format", path,
            "cannot tell the format from the name: expected %s (or give --format NAME)",
            l.text);
    return SURG_EUSAGE;
}

static surg_status choose(const char *path, fmt_id given, surg_sink *sink, choice *c)
{
    struct stat sb;
    *c = (choice){NULL, false, false, FMT_NONE};
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        return resolve_directory(path, given, sink, c);
    c->index = ends_with(path, index_suffix);
    c->format = c->index ? FMT_NONE : fmt_by_name(path);
    if (!c->index && c->format == FMT_NONE && given != FMT_NONE)
        c->format = given;
    if (!c->index && c->format == FMT_NONE)
        c->format = fmt_by_content(path);
    if (!c->index && c->format == FMT_NONE) {
        if (stat(path, &sb) != 0)
            return dg_errno(sink, path, "cannot open", errno);
        surg_status lfs = fmt_check_lfs(sink, path);
        return lfs ? lfs : unknown_format(path, sink);
    }
    c->path = strdup(path);
    return c->path ? SURG_OK : dg_nomem(sink, path);
}

/* One file, by its format's reader. */
static surg_status open_file(surg_ckpt *ck, surg_sink *sink, fmt_id f)
{
    fmt_table t;
    ck->kind = fmt_kinds[f];
    surg_status st = fmt_open(f, &ck->ar, sink, ck->path, &t);
    if (!st)
        st = ck_assemble(ck, sink, &t, 1);
    fmt_table_free(&t);
    return st;
}

const char *surg_format_by_name(const char *path)
{
    fmt_id f = fmt_by_name(path);
    return f == FMT_NONE ? NULL : fmt_readers[f]->id;
}

/* A directory, by the reader that claims it: its tables assembled as one. */
static surg_status open_dir(surg_ckpt *ck, surg_sink *sink, fmt_id f)
{
    fmt_table *t;
    size_t n;
    ck->kind = fmt_kinds[f];
    surg_status st = fmt_open_dir(f, &ck->ar, sink, ck->path, &t, &n);
    if (!st)
        st = ck_assemble(ck, sink, t, n);
    fmt_tables_free(t, n);
    return st;
}

surg_status surg_ckpt_open(const char *path, surg_sink *sink, surg_ckpt **out)
{
    return surg_ckpt_open_as(path, NULL, sink, out);
}

surg_status surg_ckpt_open_as(const char *path, const char *format, surg_sink *sink,
                              surg_ckpt **out)
{
    *out = NULL;
    fmt_id given = format ? fmt_by_id(format) : FMT_NONE;
    if (format && given == FMT_NONE) {
        char ids[256] = "";
        int last = 0; /* the formats surg reads */
        for (int f = 0; f < FMT_COUNT; f++)
            last = fmt_readers[f]->open || fmt_readers[f]->open_dir ? f : last;
        for (int f = 0, k = 0; f < FMT_COUNT; f++)
            if (fmt_readers[f]->open || fmt_readers[f]->open_dir)
                k += snprintf(ids + k, sizeof ids - (size_t)k, "%s%s", f == 0 ? ""
                              : f == last ? " or " : ", ", fmt_readers[f]->id);
        dg_file(sink, SURG_ERROR, "ck-format", path, "--format %s is not a format: give %s",
                format, ids);
        return SURG_EUSAGE;
    }
    choice c;
    surg_status st = choose(path, given, sink, &c);
    if (st)
        return st;
    surg_ckpt *ck = calloc(1, sizeof *ck);
    if (ck) {
        ar_init(&ck->ar);
        pthread_mutex_init(&ck->lock, NULL);
        ck->path = ar_strdup(&ck->ar, c.path);
    }
    free(c.path);
    if (!ck || !ck->path) {
        surg_ckpt_close(ck);
        return dg_nomem(sink, path);
    }
    st = c.index ? ck_open_index(ck, sink)
         : c.dir ? open_dir(ck, sink, c.format)
                 : open_file(ck, sink, c.format);
    if (st) {
        surg_ckpt_close(ck);
        return st;
    }
    *out = ck;
    return SURG_OK;
}

void surg_ckpt_close(surg_ckpt *ck)
{
    if (!ck)
        return;
    for (size_t i = 0; i < ck->n_files; i++)
        st_close(&ck->files[i]);
    for (size_t i = 0; i < ck->n_parts; i++)
        surg_ckpt_close(ck->parts[i]);
    for (size_t i = 0; i < ck->n_closers; i++)
        ck->closers[i].close(ck->closers[i].ctx);
    free(ck->parts);
    ar_free(&ck->ar);
    pthread_mutex_destroy(&ck->lock);
    free(ck);
}
