/* outpath.c: the output preflight. Before any tensor data is read, every
 * name an output will write (each file, the index, the directory it may
 * make) is checked: its format by name, what stands there now (only a
 * regular file may be replaced, never a link, device, FIFO or socket), and
 * that it is no file the run reads (by device and inode). A sharded output
 * owns the names of its prefix: those it does not write again are removed
 * after it is in place, if surg wrote them; anything else there is an
 * error that says what to do. */
#define _GNU_SOURCE
#include "runtime/outpath.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "support/buf.h"
#include "runtime/checkpoint.h"
#include "support/diag.h"
#include "runtime/format.h"
#include "support/json.h"
#include "support/readfile.h"
#include "runtime/peft_write.h"
#include "runtime/st_write.h"

static const char index_suffix[] = ".safetensors.index.json";

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), k = strlen(suffix);
    return n >= k && strcmp(s + n - k, suffix) == 0;
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* The directory part of `path` ("." when it has none), malloc'd. */
static char *dir_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* ---- the files a run reads ------------------------------------------- */

void outp_reads_free(outp_reads *r)
{
    for (size_t i = 0; i < r->n; i++)
        free(r->v[i].path);
    free(r->v);
    *r = (outp_reads){0};
}

static surg_status add_id(outp_reads *r, surg_sink *sink, const struct stat *sb,
                          const char *path, bool tree)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->v[i].dev == sb->st_dev && r->v[i].ino == sb->st_ino) {
            r->v[i].tree |= tree;
            return SURG_OK;
        }
    if (r->n == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 16;
        outp_file *v = realloc(r->v, cap * sizeof *v);
        if (!v)
            return dg_nomem(sink, path);
        r->v = v;
        r->cap = cap;
    }
    char *copy = strdup(path);
    if (!copy)
        return dg_nomem(sink, path);
    r->v[r->n++] = (outp_file){sb->st_dev, sb->st_ino, copy, tree};
    return SURG_OK;
}

surg_status outp_reads_add(outp_reads *r, surg_sink *sink, const char *path)
{
    struct stat sb;
    if (!path || stat(path, &sb) != 0)
        return SURG_OK;
    return add_id(r, sink, &sb, path, false);
}

surg_status outp_reads_add_ckpt(outp_reads *r, surg_sink *sink, const surg_ckpt *ck)
{
    if (!ck)
        return SURG_OK;
    surg_status st = SURG_OK;
    const char *prefix;
    const surg_ckpt *part;
    /* Each part's own path: its index, its schema, the file a directory
     * resolved to. */
    for (size_t i = 0; !st && (part = surg_ckpt_part_at(ck, i, &prefix)) != NULL; i++) {
        struct stat sb;
        if (stat(part->path, &sb) == 0 && !S_ISDIR(sb.st_mode))
            st = add_id(r, sink, &sb, part->path, false);
        for (size_t k = 0; !st && k < part->n_reads; k++)
            if (stat(part->reads[k].path, &sb) == 0)
                st = add_id(r, sink, &sb, part->reads[k].path,
                            part->reads[k].tree && S_ISDIR(sb.st_mode));
    }
    /* The files its tensors are in (not the scratch files surg made). */
    for (size_t i = 0; !st && i < ck->n_files; i++) {
        const st_file *f = &ck->files[i];
        struct stat sb;
        if (f->scratch)
            continue;
        if (f->fd >= 0 ? fstat(f->fd, &sb) == 0 : stat(f->path, &sb) == 0)
            st = add_id(r, sink, &sb, f->path, false);
    }
    return st;
}

/* The directory marked `tree` that holds `path` (at any depth), or that
 * it is: its directory's real path, and each directory above that. */
static const outp_file *inside_tree(const outp_reads *r, const char *path)
{
    bool any = false;
    for (size_t i = 0; i < r->n && !any; i++)
        any = r->v[i].tree;
    /* The nearest directory above it that exists (a sharded output's
     * directory may be made yet). */
    char *dir = any ? dir_name(path) : NULL, *real = NULL;
    while (dir && !(real = realpath(dir, NULL)) && strcmp(dir, ".") != 0 &&
           strcmp(dir, "/") != 0) {
        char *up = dir_name(dir);
        free(dir);
        dir = up;
    }
    free(dir);
    const outp_file *found = NULL;
    struct stat sb;
    if (real && lstat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
        for (size_t i = 0; i < r->n && !found; i++)
            if (r->v[i].tree && r->v[i].dev == sb.st_dev && r->v[i].ino == sb.st_ino)
                found = &r->v[i];
    for (size_t len = real ? strlen(real) : 0; real && !found && len;) {
        real[len] = '\0';
        if (stat(*real ? real : "/", &sb) == 0)
            for (size_t i = 0; i < r->n && !found; i++)
                if (r->v[i].tree && r->v[i].dev == sb.st_dev && r->v[i].ino == sb.st_ino)
                    found = &r->v[i];
        while (len && real[len - 1] != '/')
            len--;
        if (len)
            len--; /* the slash: "/a/b" -> "/a" -> "" (the root) */
    }
    free(real);
    return found;
}

const outp_file *outp_reads_find(const outp_reads *r, const char *path)
{
    struct stat here, there;
    bool h = r && lstat(path, &here) == 0, t = r && stat(path, &there) == 0;
    for (size_t i = 0; r && i < r->n; i++)
        if ((h && r->v[i].dev == here.st_dev && r->v[i].ino == here.st_ino) ||
            (t && r->v[i].dev == there.st_dev && r->v[i].ino == there.st_ino))
            return &r->v[i];
    return r ? inside_tree(r, path) : NULL;
}

/* ---- what a name asks for -------------------------------------------- */

/* Extensions of files, not directories: with --max-shard-size a new
 * directory is not given one of these names. */
static const char *const file_extensions[] = {
    ".safetensors", ".json", ".npz", ".npy", ".pt",   ".pth", ".bin",
    ".tar",         ".msgpack", ".ckpt", ".h5", ".gguf", ".pkl", ".onnx",
};

static const char writes[] = "surg writes a .safetensors, .npz or .msgpack file, or with "
                             "--max-shard-size a directory or a "
                             "PREFIX.safetensors.index.json beside its shards (or, with "
                             "--out-format, any of these, or an Orbax or PEFT adapter directory under any "
                             "name)";

static surg_status bad_name(surg_sink *sink, const char *path, const char *code,
                            const char *msg)
{
    dg_file(sink, SURG_ERROR, code, path, "%s", msg);
    return SURG_EUSAGE;
}

/* How messages call a directory output, by its format: what it is, what
 * an earlier one of surg is, and the mark it lacks when it is not surg's. */
typedef struct dir_words {
    const char *called, *output, *unmarked;
} dir_words;

static dir_words words_of(fmt_id f)
{
    if (f == FMT_PEFT)
        return (dir_words){"a PEFT adapter", "a PEFT adapter",
                           "its " PW_WEIGHTS " has no \"" OUTP_MARK_KEY "\": \""
                           OUTP_PEFT_MARK_VALUE "\" in its metadata"};
    return (dir_words){"an Orbax checkpoint", "an Orbax output",
                       "its " OUTP_DIR_MARK_FILE " has no \"custom_metadata\": {\""
                       OUTP_MARK_KEY "\": \"" OUTP_DIR_MARK_VALUE "\"}"};
}

/* The format whose writer a layout uses. */
static fmt_id format_of(const stw_layout *lay)
{
    for (int f = 0; f < FMT_COUNT; f++)
        if (lay->writer && fmt_readers[f]->writer == lay->writer)
            return (fmt_id)f;
    return FMT_NONE;
}

static bool file_like(const char *base)
{
    for (size_t i = 0; i < sizeof file_extensions / sizeof *file_extensions; i++)
        if (ends_with(base, file_extensions[i]))
            return true;
    return false;
}

surg_status outp_format(surg_sink *sink, const char *name, fmt_id *out)
{
    *out = FMT_NONE;
    if (!name)
        return SURG_OK;
    fmt_id f = fmt_by_id(name);
    if (f != FMT_NONE && fmt_readers[f]->writes) {
        *out = f;
        return SURG_OK;
    }
    buf ids;
    buf_init(&ids);
    int last = 0;
    for (int k = 0; k < FMT_COUNT; k++)
        last = fmt_readers[k]->writes ? k : last;
    for (int k = 0, n = 0; k < FMT_COUNT; k++)
        if (fmt_readers[k]->writes)
            buf_printf(&ids, "%s%s", n++ == 0 ? "" : k == last ? " or " : ", ",
                       fmt_readers[k]->id);
    dg_file(sink, SURG_ERROR, "out-format", "surg", "--out-format %s is not a format surg "
            "writes: give %s", name, ids.failed ? "?" : ids.data);
    buf_free(&ids);
    return SURG_EUSAGE;
}

static surg_status kind_of_sharded(surg_sink *sink, const char *path, bool is_dir,
                                   fmt_id forced, outp_kind *kind)
{
    const char *base = base_name(path);
    fmt_id f = forced != FMT_NONE ? forced : fmt_by_name(base);
    *kind = OUTP_SHARDED;
    if (forced != FMT_NONE && forced != FMT_SAFETENSORS && forced != FMT_NPZ &&
        forced != FMT_MSGPACK) {
        dg_file(sink, SURG_ERROR, "out-format", path,
                "%s is one directory: --max-shard-size writes safetensors shards",
                words_of(forced).called);
        return SURG_EUSAGE;
    }
    if (is_dir && forced == FMT_NONE)
        return SURG_OK;
    if (ends_with(base, index_suffix))
        return strlen(base) > strlen(index_suffix)
                   ? SURG_OK
                   : bad_name(sink, path, "out-name",
                              "the index of a sharded output needs a name before "
                              ".safetensors.index.json: it names the shards "
                              "(PREFIX-00001-of-0000N.safetensors)");
    if (f == FMT_NPZ)
        return bad_name(sink, path, "npz-sharded",
                        "an .npz is one file: --max-shard-size writes safetensors shards");
    if (f == FMT_MSGPACK)
        return bad_name(sink, path, "mp-sharded",
                        "a .msgpack is one file: --max-shard-size writes safetensors shards");
    if (!is_dir && file_like(base)) {
        dg_file(sink, SURG_ERROR, "out-name", path,
                "--max-shard-size writes shards into a directory (or beside a "
                "PREFIX.safetensors.index.json), and this name is a file's: name a "
                "directory, or leave out --max-shard-size for one file");
        return SURG_EUSAGE;
    }
    return SURG_OK; /* a directory to make */
}

/* --out-format F for a name that says another format. */
static surg_status check_forced(surg_sink *sink, const char *path, fmt_id forced)
{
    const char *base = base_name(path);
    fmt_id said = ends_with(base, index_suffix) ? FMT_SAFETENSORS : fmt_by_name(base);
    if (forced == FMT_NONE || said == FMT_NONE || said == forced)
        return SURG_OK;
    dg_file(sink, SURG_ERROR, "out-format", path,
            "the name says %s, and --out-format says %s: give a name that says nothing "
            "(no extension) or the same",
            fmt_readers[said]->id, fmt_readers[forced]->id);
    return SURG_EUSAGE;
}

surg_status outp_kind_of(surg_sink *sink, const char *path, uint64_t max_shard_size,
                         fmt_id forced, outp_kind *kind)
{
    if (!*path)
        return bad_name(sink, "surg", "out-name", "the output's name is empty");
    if (strcmp(path, "-") == 0)
        return bad_name(sink, path, "out-name",
                        "an output is a file, never standard output (surg syncs it and "
                        "renames it into place): name a file, or ./- for one named \"-\"");
    surg_status st = check_forced(sink, path, forced);
    if (st)
        return st;
    const char *base = base_name(path);
    struct stat sb;
    bool is_dir = !*base || strcmp(base, ".") == 0 || strcmp(base, "..") == 0 ||
                  (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode));
    fmt_id f = forced != FMT_NONE ? forced : fmt_by_name(base);
    if (max_shard_size)
        return kind_of_sharded(sink, path, is_dir, forced, kind);
    if (f != FMT_NONE && fmt_readers[f]->writer && fmt_readers[f]->writer->dir) {
        char *name = outp_dir_target(path);
        const char *b = name ? base_name(name) : "";
        bool bad = !*b || strcmp(b, ".") == 0 || strcmp(b, "..") == 0 || strcmp(b, "/") == 0;
        free(name);
        if (!name)
            return dg_nomem(sink, path);
        if (bad) {
            dg_file(sink, SURG_ERROR, "out-name", path,
                    "%s is a directory surg makes (and renames into place): name it, as "
                    "DIR/NAME",
                    words_of(f).called);
            return SURG_EUSAGE;
        }
        *kind = OUTP_DIR;
        return SURG_OK;
    }
    if (is_dir)
        return bad_name(sink, path, "out-name",
                        "the output is a directory: name a .safetensors, .npz or .msgpack file, "
                        "or give --max-shard-size to write shards into it (or --out-format "
                        "orbax or peft for an Orbax checkpoint or a PEFT adapter directory)");
    if (ends_with(base, index_suffix))
        return bad_name(sink, path, "out-name",
                        "an index of shards is written with --max-shard-size: give it, or "
                        "name a .safetensors file");
    /* The format follows the name (format.h): one surg writes, or one it
     * only reads, which says why not. */
    if (f != FMT_NONE && fmt_readers[f]->writes) {
        *kind = OUTP_FILE;
        return SURG_OK;
    }
    if (f != FMT_NONE && fmt_readers[f]->unwritten)
        return bad_name(sink, path, "io", fmt_readers[f]->unwritten);
    dg_file(sink, SURG_ERROR, "out-name", path, "cannot tell the format from the name: %s%s",
            writes, f == FMT_SCHEMA ? " (a schema comes from `surg schema`)" : "");
    return SURG_EUSAGE;
}

char *outp_dir_target(const char *path)
{
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/')
        n--; /* "out/" is the directory "out" */
    return strndup(path, n);
}

/* ---- names a sharded output owns, and whether surg wrote them --------- */

static const char *digits(const char *s)
{
    const char *p = s;
    while (*p >= '0' && *p <= '9')
        p++;
    return p - s >= 5 ? p : NULL;
}

bool outp_owns(const char *prefix, const char *name)
{
    size_t k = strlen(prefix);
    if (strncmp(name, prefix, k) != 0)
        return false;
    const char *rest = name + k;
    if (strcmp(rest, ".safetensors") == 0 || strcmp(rest, index_suffix) == 0)
        return true;
    if (*rest != '-' || !(rest = digits(rest + 1)) || strncmp(rest, "-of-", 4) != 0 ||
        !(rest = digits(rest + 4)))
        return false;
    return strcmp(rest, ".safetensors") == 0;
}

/* The JSON object's `section` object holds `key`: `value` (the rest passed
 * over, checked): a sharded output's index ("metadata"), an Orbax output's
 * _CHECKPOINT_METADATA ("custom_metadata"). */
static bool json_marked(char *text, size_t len, const char *section, const char *key,
                        const char *value)
{
    json_reader j;
    json_init_in_place(&j, text, len);
    bool marked = false;
    int more = json_open(&j, '{') ? json_first(&j, '}') : -1;
    for (; more > 0; more = json_more(&j, '}')) {
        const char *k0;
        if (!json_key(&j, &k0))
            return false;
        if (strcmp(k0, section) != 0 || json_peek(&j) != '{') {
            if (!json_skip(&j))
                return false;
            continue;
        }
        int m = json_open(&j, '{') ? json_first(&j, '}') : -1;
        for (; m > 0; m = json_more(&j, '}')) {
            const char *k, *v;
            if (!json_key(&j, &k))
                return false;
            if (strcmp(k, key) == 0 && json_peek(&j) == '"') {
                if (!json_string(&j, &v))
                    return false;
                marked |= strcmp(v, value) == 0;
            } else if (!json_skip(&j)) {
                return false;
            }
        }
        if (m < 0)
            return false;
    }
    return more == 0 && json_end(&j) && marked;
}

static bool index_marked(char *text, size_t len)
{
    return json_marked(text, len, "metadata", OUTP_MARK_KEY, OUTP_MARK_VALUE);
}

static bool st_marked(const char *path, const char *value);

bool outp_dir_is_ours(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return false;
    char *meta = malloc(strlen(path) + sizeof "/" OUTP_DIR_MARK_FILE + sizeof PW_WEIGHTS);
    if (!meta)
        return false;
    sprintf(meta, "%s/" PW_WEIGHTS, path);
    if (st_marked(meta, OUTP_PEFT_MARK_VALUE)) {
        free(meta);
        return true;
    }
    sprintf(meta, "%s/" OUTP_DIR_MARK_FILE, path);
    surg_sink quiet = {0}; /* a directory that is not ours is no error here */
    arena ar;
    ar_init(&ar);
    char *text;
    size_t len;
    bool ours = lstat(meta, &sb) == 0 && S_ISREG(sb.st_mode) &&
                rf_read_into(&ar, &quiet, meta, 1u << 20, &text, &len) == SURG_OK &&
                json_marked(text, len, "custom_metadata", OUTP_MARK_KEY, OUTP_DIR_MARK_VALUE);
    ar_free(&ar);
    free(meta);
    return ours;
}

/* Is the regular file at `path` (not a link) a safetensors file whose
 * metadata has OUTP_MARK_KEY: `value`? */
static bool st_marked(const char *path, const char *value)
{
    struct stat sb;
    if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return false;
    surg_sink quiet = {0}; /* a file that is not ours is no error here */
    arena ar;
    ar_init(&ar);
    bool ours = false;
    st_file f;
    st_header h;
    if (st_open(&ar, &quiet, path, &f, &h) == SURG_OK) {
        for (size_t i = 0; i < h.n_meta; i++)
            ours |= strcmp(h.meta[i].key, OUTP_MARK_KEY) == 0 &&
                    strcmp(h.meta[i].value, value) == 0;
        st_header_free(&h);
        st_close(&f);
    }
    ar_free(&ar);
    return ours;
}

bool outp_is_ours(const char *path)
{
    if (!ends_with(path, index_suffix))
        return st_marked(path, OUTP_MARK_VALUE);
    struct stat sb;
    if (lstat(path, &sb) != 0 || !S_ISREG(sb.st_mode))
        return false;
    surg_sink quiet = {0}; /* a file that is not ours is no error here */
    arena ar;
    ar_init(&ar);
    char *text;
    size_t len;
    bool ours = rf_read_into(&ar, &quiet, path, ST_MAX_HEADER, &text, &len) == SURG_OK &&
                index_marked(text, len);
    ar_free(&ar);
    return ours;
}

/* ---- what stands at each name now ------------------------------------ */

static const char *node_kind(mode_t m)
{
    return S_ISDIR(m)    ? "a directory"
           : S_ISCHR(m)  ? "a character device"
           : S_ISBLK(m)  ? "a block device"
           : S_ISFIFO(m) ? "a FIFO"
           : S_ISSOCK(m) ? "a socket"
           : S_ISLNK(m)  ? "a symbolic link"
                         : "not a regular file";
}

/* A name the output writes: nothing there, or a regular file that is not
 * one the run reads. */
static surg_status check_name(surg_sink *sink, const char *path, const outp_reads *reads)
{
    struct stat sb;
    const outp_file *tree = reads ? inside_tree(reads, path) : NULL;
    if (tree) {
        dg_file(sink, SURG_ERROR, "run-overwrite", path,
                "the output would go inside %s, a checkpoint directory this run reads; "
                "write it elsewhere",
                tree->path);
        return SURG_EUSAGE;
    }
    if (lstat(path, &sb) != 0)
        return errno == ENOENT ? SURG_OK
                               : dg_errno(sink, path, "cannot look at the output", errno);
    if (S_ISLNK(sb.st_mode)) {
        dg_file(sink, SURG_ERROR, "out-special", path,
                "the output is a symbolic link: surg renames a finished output over its "
                "name, which would replace the link, not what it points to; write to the "
                "file's own name, or remove the link");
        return SURG_EUSAGE;
    }
    if (!S_ISREG(sb.st_mode)) {
        dg_file(sink, SURG_ERROR, "out-special", path,
                "the output is %s: surg writes only regular files, renaming each finished "
                "one over its name, and never replaces %s",
                node_kind(sb.st_mode), node_kind(sb.st_mode));
        return SURG_EUSAGE;
    }
    const outp_file *in = outp_reads_find(reads, path);
    if (in) {
        dg_file(sink, SURG_ERROR, "run-overwrite", path,
                "the output would replace %s, which this run reads; write it elsewhere",
                in->path);
        return SURG_EUSAGE;
    }
    return SURG_OK;
}

/* The directory a file goes in (or a sharded output's, to be made). */
static surg_status check_dir(surg_sink *sink, const char *out_path, const char *dir,
                             bool may_make)
{
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        if (S_ISDIR(sb.st_mode))
            return SURG_OK;
        dg_file(sink, SURG_ERROR, "out-special", out_path,
                "%s is %s, not a directory: a sharded output is written into a directory",
                dir, node_kind(sb.st_mode));
        return SURG_EUSAGE;
    }
    if (errno != ENOENT || !may_make)
        return dg_errno(sink, out_path, "cannot create the output", errno);
    char *parent = dir_name(dir);
    if (!parent)
        return dg_nomem(sink, out_path);
    int rc = stat(parent, &sb), err = rc ? errno : ENOTDIR;
    free(parent);
    if (rc == 0 && S_ISDIR(sb.st_mode))
        return SURG_OK;
    return dg_errno(sink, out_path, "cannot create the output directory", err);
}

/* ---- stale names of a sharded output ----------------------------------- */

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Does the layout write a file of this name (in its directory)? Worked out
 * from the name, not by a search: a directory may hold many shards. */
static bool written(const stw_layout *lay, const char *name)
{
    if (lay->dir_path) /* one directory */
        return strcmp(base_name(lay->dir_path), name) == 0;
    if (!lay->sn.dir) /* one file */
        return lay->n_files && strcmp(base_name(lay->files[0].path), name) == 0;
    size_t k = strlen(lay->sn.prefix);
    if (strncmp(name, lay->sn.prefix, k) == 0 && strcmp(name + k, index_suffix) == 0)
        return lay->n_files > 1;
    uint64_t i, m;
    return stw_shard_number(lay->sn.prefix, name, &i, &m) && m == lay->n_files;
}

/* The names in the directory that the prefix owns and the new output does
 * not write, sorted. */
static surg_status stale_names(surg_sink *sink, const char *out_path, const stw_layout *lay,
                               char ***names, size_t *n)
{
    *names = NULL;
    *n = 0;
    DIR *d = opendir(lay->sn.dir);
    if (!d)
        return errno == ENOENT ? SURG_OK
                               : dg_errno(sink, out_path, "cannot list the output directory",
                                          errno);
    size_t cap = 0;
    surg_status st = SURG_OK;
    for (struct dirent *e; !st && (e = readdir(d)) != NULL;) {
        if (!outp_owns(lay->sn.prefix, e->d_name) || written(lay, e->d_name))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 8;
            char **v = realloc(*names, cap * sizeof *v);
            if (!v) {
                st = dg_nomem(sink, out_path);
                break;
            }
            *names = v;
        }
        if (!((*names)[*n] = strdup(e->d_name)))
            st = dg_nomem(sink, out_path);
        else
            (*n)++;
    }
    closedir(d);
    if (*n)
        qsort(*names, *n, sizeof **names, name_cmp);
    return st;
}

static char *join(const char *dir, const char *name)
{
    buf b;
    buf_init(&b);
    buf_printf(&b, "%s/%s", dir, name);
    return buf_take(&b);
}

/* Each stale name: surg's own and not read by this run (then listed for
 * removal, the index first), or an error saying what to do. */
static surg_status check_stale(surg_sink *sink, const char *out_path, stw_layout *lay,
                               const outp_reads *reads)
{
    char **names;
    size_t n;
    surg_status st = stale_names(sink, out_path, lay, &names, &n), refused = SURG_OK;
    if (!st && n && !(lay->stale = calloc(n, sizeof *lay->stale)))
        st = dg_nomem(sink, out_path);
    for (size_t i = 0; !st && i < n; i++) {
        char *path = join(lay->sn.dir, names[i]);
        if (!path) {
            st = dg_nomem(sink, out_path);
            break;
        }
        const outp_file *in = outp_reads_find(reads, path);
        if (in) {
            dg_file(sink, SURG_ERROR, "run-overwrite", path,
                    "this run reads %s, and the output %s owns this name: a sharded output "
                    "removes the files of its prefix that it does not write again; write "
                    "the output elsewhere",
                    in->path, out_path);
            refused = SURG_EUSAGE;
            free(path);
        } else if (!outp_is_ours(path)) {
            dg_file(sink, SURG_ERROR, "out-stale", path,
                    "the output %s owns this name but will not write it again, and surg did "
                    "not write this file (no \"" OUTP_MARK_KEY "\": \"" OUTP_MARK_VALUE
                    "\" in its metadata), so it is not removed: beside the new files a "
                    "loader could take it for part of them; move it away, or write the "
                    "output to another directory",
                    out_path);
            refused = SURG_EUSAGE;
            free(path);
        } else if (ends_with(names[i], index_suffix)) {
            /* The index goes first: a loader then never follows it to
             * shards that are gone. */
            memmove(lay->stale + 1, lay->stale, lay->n_stale * sizeof *lay->stale);
            lay->stale[0] = path;
            lay->n_stale++;
        } else {
            lay->stale[lay->n_stale++] = path;
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    return st ? st : refused;
}

/* What an earlier Orbax output of surg holds, walked before it is
 * replaced: regular files, and directories of regular files (depth 1 below
 * the top), none of them one the run reads. Anything else is refused, so
 * nothing that is not surg's is ever removed with it. */
static surg_status check_old_dir(surg_sink *sink, const char *target, const char *dir,
                                 int depth, const outp_reads *reads, fmt_id f)
{
    DIR *d = opendir(dir);
    if (!d)
        return dg_errno(sink, target, "cannot look into the earlier output", errno);
    surg_status st = SURG_OK;
    for (struct dirent *e; !st && (e = readdir(d)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        char *path = join(dir, e->d_name);
        struct stat sb;
        if (!path) {
            st = dg_nomem(sink, target);
            break;
        }
        const outp_file *in = outp_reads_find(reads, path);
        if (lstat(path, &sb) != 0) {
            st = dg_errno(sink, path, "cannot look at the earlier output", errno);
        } else if (in) {
            dg_file(sink, SURG_ERROR, "run-overwrite", target,
                    "the output would replace the directory holding %s, which this run "
                    "reads; write it elsewhere",
                    in->path);
            st = SURG_EUSAGE;
        } else if (S_ISDIR(sb.st_mode) && depth > 0) {
            st = check_old_dir(sink, target, path, depth - 1, reads, f);
        } else if (!S_ISREG(sb.st_mode)) {
            dg_file(sink, SURG_ERROR, "out-special", target,
                    "the earlier output here holds %s (%s), which %s of surg never holds: it "
                    "is not replaced; move it away, or write elsewhere",
                    path, node_kind(sb.st_mode), words_of(f).output);
            st = SURG_EUSAGE;
        }
        free(path);
    }
    closedir(d);
    return st;
}

/* A directory output: its parent there, and at its name nothing, or an
 * earlier directory output of surg that the run does not read. */
static surg_status check_dir_output(surg_sink *sink, const char *out_path, const char *target,
                                    const outp_reads *reads, fmt_id f)
{
    dir_words w = words_of(f);
    char *parent = dir_name(target);
    surg_status st = parent ? check_dir(sink, out_path, parent, false) : dg_nomem(sink, out_path);
    free(parent);
    struct stat sb;
    if (st || lstat(target, &sb) != 0)
        return st ? st
               : errno == ENOENT ? SURG_OK
                                 : dg_errno(sink, target, "cannot look at the output", errno);
    if (S_ISLNK(sb.st_mode)) {
        dg_file(sink, SURG_ERROR, "out-special", target,
                "the output is a symbolic link: surg renames a finished output over its "
                "name, which would replace the link, not what it points to; write to the "
                "directory's own name, or remove the link");
        return SURG_EUSAGE;
    }
    const outp_file *in = outp_reads_find(reads, target);
    if (in) {
        dg_file(sink, SURG_ERROR, "run-overwrite", target,
                "the output would replace %s, which this run reads; write it elsewhere",
                in->path);
        return SURG_EUSAGE;
    }
    if (!S_ISDIR(sb.st_mode)) {
        dg_file(sink, SURG_ERROR, "out-special", target,
                "the output is %s: %s is a directory, and surg replaces only a directory it "
                "wrote as one",
                S_ISREG(sb.st_mode) ? "a regular file" : node_kind(sb.st_mode), w.called);
        return SURG_EUSAGE;
    }
    if (!outp_dir_is_ours(target)) {
        dg_file(sink, SURG_ERROR, "out-exists", target,
                "the output's name holds a directory that surg did not write (%s): it is "
                "not replaced; remove it, or write elsewhere",
                w.unmarked);
        return SURG_EUSAGE;
    }
    return check_old_dir(sink, target, target, 1, reads, f);
}

surg_status outp_check_layout(surg_sink *sink, const char *out_path, stw_layout *lay,
                              const outp_reads *reads)
{
    surg_status st;
    if (lay->dir_path)
        return check_dir_output(sink, out_path, lay->dir_path, reads, format_of(lay));
    if (lay->sn.dir) {
        st = check_dir(sink, out_path, lay->sn.dir, !ends_with(out_path, index_suffix));
    } else {
        char *dir = dir_name(out_path);
        st = dir ? check_dir(sink, out_path, dir, false) : dg_nomem(sink, out_path);
        free(dir);
    }
    if (st)
        return st;
    for (size_t i = 0; i < lay->n_files; i++) {
        surg_status s = check_name(sink, lay->files[i].path, reads);
        st = s > st ? s : st;
    }
    if (lay->index_path) {
        surg_status s = check_name(sink, lay->index_path, reads);
        st = s > st ? s : st;
    }
    if (!st && lay->sn.dir)
        st = check_stale(sink, out_path, lay, reads);
    return st;
}

/* ---- several outputs --------------------------------------------------- */

typedef struct place {
    dev_t dev;
    ino_t ino;
    const char *sub; /* "": the directory itself; else its name in the parent */
} place;

static bool place_of(const char *dir, place *p)
{
    struct stat sb;
    if (stat(dir, &sb) == 0) {
        *p = (place){sb.st_dev, sb.st_ino, ""};
        return true;
    }
    char *parent = dir_name(dir);
    bool ok = parent && stat(parent, &sb) == 0;
    free(parent);
    *p = (place){ok ? sb.st_dev : 0, ok ? sb.st_ino : 0, base_name(dir)};
    return ok;
}

static bool same_place(const place *a, const place *b)
{
    return a->dev == b->dev && a->ino == b->ino && strcmp(a->sub, b->sub) == 0;
}

/* Does output `b` (in place pb) write or own the name `name` in place pa? */
static bool claims(const stw_layout *b, const place *pb, const place *pa, const char *name)
{
    if (!same_place(pa, pb))
        return false;
    return written(b, name) || (b->sn.dir && outp_owns(b->sn.prefix, name));
}

static const char *dir_of_layout(const stw_layout *lay, const char *path, char **owned)
{
    *owned = NULL;
    if (lay->sn.dir)
        return lay->sn.dir;
    return *owned = dir_name(lay->dir_path ? lay->dir_path : path);
}

static surg_status apart(surg_sink *sink, const stw_layout *a, const char *pa_path,
                         const stw_layout *b, const char *pb_path)
{
    char *oa, *ob;
    const char *da = dir_of_layout(a, pa_path, &oa), *db = dir_of_layout(b, pb_path, &ob);
    place pa, pb;
    surg_status st = SURG_OK;
    if (!da || !db) {
        st = dg_nomem(sink, pa_path);
    } else if (place_of(da, &pa) && place_of(db, &pb)) {
        place inside; /* a directory output's own place, which b must not be in */
        if (a->dir_path && place_of(a->dir_path, &inside) && same_place(&inside, &pb)) {
            dg_file(sink, SURG_ERROR, "run-parts", pb_path,
                    "this output would be written inside the %s output %s",
                    format_of(a) == FMT_PEFT ? "PEFT adapter" : "Orbax", pa_path);
            st = SURG_EUSAGE;
        }
        size_t n = a->dir_path ? 0 : a->n_files;
        for (size_t i = 0; !st && i <= n; i++) {
            const char *path = a->dir_path ? a->dir_path
                               : i < a->n_files ? a->files[i].path : a->index_path;
            if (!path || !claims(b, &pb, &pa, base_name(path)))
                continue;
            if (written(b, base_name(path)))
                dg_file(sink, SURG_ERROR, "run-parts", path,
                        "two outputs are written to this one path");
            else
                dg_file(sink, SURG_ERROR, "run-parts", path,
                        "the output %s writes this file, and it is a name of the sharded "
                        "output %s: give them different directories or prefixes",
                        pa_path, pb_path);
            st = SURG_EUSAGE;
        }
    }
    free(oa);
    free(ob);
    return st;
}

surg_status outp_check_apart(surg_sink *sink, stw_layout *const *lays,
                             const char *const *paths, size_t n)
{
    for (size_t j = 0; j < n; j++)
        for (size_t k = 0; k < n; k++) {
            surg_status st = j == k ? SURG_OK : apart(sink, lays[j], paths[j], lays[k], paths[k]);
            if (st)
                return st;
        }
    return SURG_OK;
}

/* ---- after the new output is in place ---------------------------------- */

surg_status outp_remove_stale(stw_layout *lay, surg_sink *sink, const outp_reads *reads)
{
    surg_status st = SURG_OK;
    for (size_t i = 0; i < lay->n_stale; i++) {
        const char *path = lay->stale[i];
        struct stat sb;
        if (lstat(path, &sb) != 0 && errno == ENOENT)
            continue; /* gone already: another part of the output removed it */
        /* Checked again: it may have changed while the run went on. */
        if (outp_reads_find(reads, path) || !outp_is_ours(path)) {
            dg_file(sink, SURG_WARNING, "out-stale", path,
                    "left in place: it changed while the output was written, and is no "
                    "longer a file of an earlier surg output");
            continue;
        }
        if (unlink(path) != 0 && errno != ENOENT)
            st = dg_errno(sink, path, "cannot remove this file of the earlier output; "
                          "remove it by hand", errno);
    }
    if (lay->n_stale && lay->sn.dir) {
        int fd = open(lay->sn.dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            fsync(fd); /* best effort: some file systems refuse */
            close(fd);
        }
    }
    return st;
}
