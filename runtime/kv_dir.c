/* kv_dir.c: a directory as a key-value store (kvstore.h). Key "a/0.0" is
 * the file DIR/a/0.0. Keys are checked before any use (no absolute path, no
 * "." or ".." segment, no empty segment, no backslash) and every file is
 * reached from the root's descriptor one segment at a time with no link
 * followed, so no key, and no link inside the directory, leads out of it.
 * Listing walks the tree iteratively, with bounded depth, entry count and
 * key bytes, and gives the keys in memcmp order. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "runtime/kvstore.h"
#include "support/diag.h"
#include "support/readfile.h"

enum {
    KD_MAX_KEY = 4096,               /* bytes in a key */
    KD_MAX_DEPTH = SURG_MAX_RANK + 8, /* segments in a key: a rank-64 chunk key and more */
    KD_MAX_ENTRIES = 1 << 20,        /* directory entries one listing looks at */
};
#define KD_MAX_KEY_BYTES ((size_t)64 << 20) /* all the keys one listing keeps */

typedef struct kv_dir {
    kv_store base;
    int fd;     /* the root directory */
    char *root; /* its path as given */
} kv_dir;

/* The path of the last value this thread got: root/key. The store is
 * shared by the threads that decode its arrays at once, so the path a value
 * names is each thread's own. */
static _Thread_local char value_file[KD_MAX_KEY * 2 + PATH_MAX];

static bool key_ok(const char *key)
{
    size_t n = strlen(key);
    if (!n || n > KD_MAX_KEY || key[0] == '/' || key[n - 1] == '/' || strchr(key, '\\'))
        return false;
    for (const char *seg = key; seg;) {
        const char *end = strchr(seg, '/');
        size_t len = end ? (size_t)(end - seg) : strlen(seg);
        if (!len || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        seg = end ? end + 1 : NULL;
    }
    return true;
}

static surg_status bad_key(kv_dir *d, const char *key, surg_sink *sink)
{
    dg_file(sink, SURG_ERROR, "kv-key", d->root,
            "the key \"%.200s\" is not a path beneath the directory (empty, absolute, with "
            "\".\", \"..\", an empty segment or a backslash, or longer than %d bytes)",
            key, KD_MAX_KEY);
    return SURG_EINVALID;
}

static const char *value_path_n(kv_dir *d, const char *key, size_t n)
{
    snprintf(value_file, sizeof value_file, "%s/%.*s", d->root, (int)n, key);
    return value_file;
}

static const char *value_path(kv_dir *d, const char *key)
{
    return value_path_n(d, key, strlen(key));
}

/* The first `n` bytes of `key` name a link. */
static surg_status is_link(kv_dir *d, const char *key, size_t n, surg_sink *sink)
{
    dg_file(sink, SURG_ERROR, "kv-link", value_path_n(d, key, n),
            "is a symbolic link; keys are read only from files beneath %s, not through links",
            d->root);
    return SURG_EINVALID;
}

/* The directory that holds the last segment of `key` (copied into `buf`),
 * opened segment by segment beneath the root; *last points at the last
 * segment in buf. *found false: a segment is missing or not a directory. */
static surg_status walk(kv_dir *d, const char *key, char *buf, int *dfd, char **last,
                        bool *found, surg_sink *sink)
{
    strcpy(buf, key);
    int fd = d->fd;
    char *seg = buf;
    *found = true;
    for (char *slash; (slash = strchr(seg, '/')); seg = slash + 1) {
        *slash = '\0';
        struct stat sb;
        int r = fstatat(fd, seg, &sb, AT_SYMLINK_NOFOLLOW);
        int nfd = -1;
        if (r == 0 && S_ISLNK(sb.st_mode)) {
            if (fd != d->fd)
                close(fd);
            return is_link(d, key, (size_t)(slash - buf), sink);
        }
        if (r == 0 && S_ISDIR(sb.st_mode))
            nfd = openat(fd, seg, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        int err = errno;
        if (fd != d->fd)
            close(fd);
        if (nfd < 0) {
            if (r == 0 && S_ISDIR(sb.st_mode) && err != ENOENT)
                return dg_errno(sink, value_path(d, key), "cannot open a directory on its path",
                                err);
            if (r != 0 && err != ENOENT && err != ENOTDIR)
                return dg_errno(sink, value_path(d, key), "cannot look at a directory on its path",
                                err);
            *found = false;
            return SURG_OK;
        }
        fd = nfd;
    }
    *dfd = fd;
    *last = seg;
    return SURG_OK;
}

static surg_status dir_get(kv_store *s, const char *key, surg_sink *sink, kv_value *v,
                           bool *found)
{
    kv_dir *d = (kv_dir *)s;
    *v = (kv_value){0};
    *found = false;
    if (!key_ok(key))
        return bad_key(d, key, sink);
    char buf[KD_MAX_KEY + 1], *last;
    int dfd;
    bool there;
    surg_status st = walk(d, key, buf, &dfd, &last, &there, sink);
    if (st || !there)
        return st;
    struct stat sb;
    int r = fstatat(dfd, last, &sb, AT_SYMLINK_NOFOLLOW);
    int err = errno;
    if (dfd != d->fd)
        close(dfd);
    if (r != 0) {
        if (err == ENOENT || err == ENOTDIR)
            return SURG_OK;
        return dg_errno(sink, value_path(d, key), "cannot look at", err);
    }
    if (S_ISLNK(sb.st_mode))
        return is_link(d, key, strlen(key), sink);
    if (S_ISDIR(sb.st_mode))
        return SURG_OK; /* a directory holds keys; it is not one */
    if (!S_ISREG(sb.st_mode)) {
        dg_file(sink, SURG_ERROR, "not-regular", value_path(d, key), "is %s, not a regular file",
                rf_kind_of((unsigned)sb.st_mode));
        return SURG_EIO;
    }
    v->file = value_path(d, key);
    v->length = (uint64_t)sb.st_size;
    *found = true;
    return SURG_OK;
}

static surg_status dir_open_file(kv_store *s, const kv_value *v, surg_sink *sink, int *fd,
                                 uint64_t *size)
{
    kv_dir *d = (kv_dir *)s;
    size_t rn = strlen(d->root);
    *fd = -1;
    if (strncmp(v->file, d->root, rn) != 0 || v->file[rn] != '/')
        return rf_open_regular(sink, v->file, fd, size);
    const char *key = v->file + rn + 1;
    if (!key_ok(key))
        return bad_key(d, key, sink);
    char buf[KD_MAX_KEY + 1], *last;
    int dfd;
    bool there;
    surg_status st = walk(d, key, buf, &dfd, &last, &there, sink);
    if (st)
        return st;
    if (!there)
        return dg_errno(sink, v->file, "cannot open", ENOENT);
    int f = openat(dfd, last, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC);
    int err = errno;
    if (dfd != d->fd)
        close(dfd);
    if (f < 0)
        return err == ELOOP ? is_link(d, key, strlen(key), sink) : dg_errno(sink, v->file, "cannot open", err);
    struct stat sb;
    if (fstat(f, &sb) != 0)
        st = dg_errno(sink, v->file, "cannot stat", errno);
    else if (!S_ISREG(sb.st_mode)) {
        dg_file(sink, SURG_ERROR, "not-regular", v->file, "is %s, not a regular file",
                rf_kind_of((unsigned)sb.st_mode));
        st = SURG_EIO;
    } else if (fcntl(f, F_SETFL, fcntl(f, F_GETFL) & ~O_NONBLOCK) != 0)
        st = dg_errno(sink, v->file, "cannot open", errno);
    if (st) {
        close(f);
        return st;
    }
    *fd = f;
    *size = (uint64_t)sb.st_size;
    return SURG_OK;
}

/* ---- listing ------------------------------------------------------------ */

typedef struct kd_key {
    char *key;
    uint64_t size;
} kd_key;

typedef struct kd_walk {
    kv_dir *d;
    const char *prefix;
    size_t prefix_len;
    char **dirs; /* directories still to read, relative ("" the root) */
    size_t n_dirs, cap_dirs;
    kd_key *keys;
    size_t n_keys, cap_keys, key_bytes, entries;
    surg_sink *sink;
} kd_walk;

/* Could a key under directory `rel` start with the prefix? */
static bool may_hold(const kd_walk *w, const char *rel, size_t n)
{
    size_t m = n < w->prefix_len ? n : w->prefix_len;
    if (strncmp(rel, w->prefix, m) != 0)
        return false;
    return n >= w->prefix_len || w->prefix[n] == '/';
}

static surg_status too_many(kd_walk *w, const char *what)
{
    dg_file(w->sink, SURG_ERROR, "kv-too-many", w->d->root,
            "the directory holds too many %s to list (at most %d entries, %d levels deep and "
            "%zu MiB of keys)",
            what, KD_MAX_ENTRIES, KD_MAX_DEPTH, KD_MAX_KEY_BYTES >> 20);
    return SURG_EINVALID;
}

static unsigned depth_of(const char *rel)
{
    unsigned k = *rel ? 1 : 0;
    for (; *rel; rel++)
        k += *rel == '/';
    return k;
}

static surg_status add_entry(kd_walk *w, int dfd, const char *rel, const char *name)
{
    if (++w->entries > KD_MAX_ENTRIES)
        return too_many(w, "entries");
    size_t rn = strlen(rel), nn = strlen(name), n = rn + (rn ? 1 : 0) + nn;
    if (strchr(name, '\\') || n > KD_MAX_KEY)
        return SURG_OK; /* no key names it */
    struct stat sb;
    if (fstatat(dfd, name, &sb, AT_SYMLINK_NOFOLLOW) != 0)
        return SURG_OK; /* gone since it was read */
    bool dir = S_ISDIR(sb.st_mode);
    if (!dir && !S_ISREG(sb.st_mode))
        return SURG_OK;
    char *p = malloc(n + 1);
    if (!p)
        return dg_nomem(w->sink, w->d->root);
    snprintf(p, n + 1, "%s%s%s", rel, rn ? "/" : "", name);
    if (dir) {
        if (!may_hold(w, p, n)) {
            free(p);
            return SURG_OK;
        }
        if (depth_of(p) >= KD_MAX_DEPTH) {
            free(p);
            return too_many(w, "levels");
        }
        if (w->n_dirs == w->cap_dirs) {
            size_t cap = w->cap_dirs ? 2 * w->cap_dirs : 16;
            char **v = realloc(w->dirs, cap * sizeof *v);
            if (!v) {
                free(p);
                return dg_nomem(w->sink, w->d->root);
            }
            w->dirs = v;
            w->cap_dirs = cap;
        }
        w->dirs[w->n_dirs++] = p;
        return SURG_OK;
    }
    if (strncmp(p, w->prefix, w->prefix_len) != 0) {
        free(p);
        return SURG_OK;
    }
    if ((w->key_bytes += n + 1) > KD_MAX_KEY_BYTES) {
        free(p);
        return too_many(w, "keys");
    }
    if (w->n_keys == w->cap_keys) {
        size_t cap = w->cap_keys ? 2 * w->cap_keys : 64;
        kd_key *v = realloc(w->keys, cap * sizeof *v);
        if (!v) {
            free(p);
            return dg_nomem(w->sink, w->d->root);
        }
        w->keys = v;
        w->cap_keys = cap;
    }
    w->keys[w->n_keys++] = (kd_key){p, (uint64_t)sb.st_size};
    return SURG_OK;
}

/* Open directory `rel` beneath the root, one segment at a time. */
static surg_status open_rel(kd_walk *w, const char *rel, DIR **out)
{
    int fd;
    *out = NULL;
    if (!*rel) {
        fd = openat(w->d->fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    } else {
        char buf[KD_MAX_KEY + 1], *last;
        int dfd;
        bool there;
        surg_status st = walk(w->d, rel, buf, &dfd, &last, &there, w->sink);
        if (st || !there)
            return st;
        fd = openat(dfd, last, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (dfd != w->d->fd)
            close(dfd);
        if (fd < 0 && (errno == ENOENT || errno == ENOTDIR))
            return SURG_OK; /* gone since it was read */
    }
    if (fd < 0)
        return dg_errno(w->sink, value_path(w->d, rel), "cannot open the directory", errno);
    *out = fdopendir(fd);
    if (!*out) {
        int err = errno;
        close(fd);
        return dg_errno(w->sink, value_path(w->d, rel), "cannot read the directory", err);
    }
    return SURG_OK;
}

static surg_status read_dir(kd_walk *w, const char *rel)
{
    DIR *dir;
    surg_status st = open_rel(w, rel, &dir);
    if (st || !dir)
        return st;
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(dir);
        if (!e) {
            if (errno)
                st = dg_errno(w->sink, value_path(w->d, rel), "cannot read the directory", errno);
            break;
        }
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if ((st = add_entry(w, dirfd(dir), rel, e->d_name)))
            break;
    }
    closedir(dir);
    return st;
}

static int key_cmp(const void *a, const void *b)
{
    return strcmp(((const kd_key *)a)->key, ((const kd_key *)b)->key);
}

static surg_status dir_list(kv_store *s, const char *prefix, surg_sink *sink, kv_each_fn *each,
                            void *ctx, int *stopped)
{
    kd_walk w = {.d = (kv_dir *)s, .prefix = prefix, .prefix_len = strlen(prefix), .sink = sink};
    *stopped = 0;
    surg_status st = read_dir(&w, "");
    /* The queue grows at its end; each directory is read once, in turn. */
    for (size_t i = 0; !st && i < w.n_dirs; i++)
        st = read_dir(&w, w.dirs[i]);
    if (!st)
        qsort(w.keys, w.n_keys, sizeof *w.keys, key_cmp);
    for (size_t i = 0; !st && i < w.n_keys; i++) {
        kv_value v = {.file = value_path(w.d, w.keys[i].key), .length = w.keys[i].size};
        int r = each(ctx, w.keys[i].key, strlen(w.keys[i].key), &v);
        if (r) {
            *stopped = r;
            break;
        }
    }
    for (size_t i = 0; i < w.n_dirs; i++)
        free(w.dirs[i]);
    for (size_t i = 0; i < w.n_keys; i++)
        free(w.keys[i].key);
    free(w.dirs);
    free(w.keys);
    return st;
}

static void dir_close(kv_store *s)
{
    kv_dir *d = (kv_dir *)s;
    close(d->fd);
    free(d->root);
    free(d);
}

static const kv_ops dir_ops = {dir_get, dir_list, dir_close, dir_open_file};

surg_status kv_open_dir(const char *dir, surg_sink *sink, kv_store **out)
{
    *out = NULL;
    if (strlen(dir) > KD_MAX_KEY) {
        dg_file(sink, SURG_ERROR, "kv-key", dir, "the directory's path is too long");
        return SURG_EINVALID;
    }
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return dg_errno(sink, dir, "cannot open the directory", errno);
    kv_dir *d = calloc(1, sizeof *d);
    char *root = d ? strdup(dir) : NULL;
    if (!root) {
        free(d);
        close(fd);
        return dg_nomem(sink, dir);
    }
    d->base = (kv_store){.ops = &dir_ops, .root = root};
    d->fd = fd;
    d->root = root;
    *out = &d->base;
    return SURG_OK;
}
