/* outfile.c: atomic output files and directories, and the list of
 * temporaries a signal handler removes (the only process-wide state of the
 * library). */
#define _GNU_SOURCE
#include "runtime/outfile.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "support/diag.h"

struct of_file {
    of_file *prev, *next; /* in the list of live temporaries */
    char *final_path;
    char *tmp_path;
    int fd;
    bool unnamed; /* O_TMPFILE: no name until committed, so even SIGKILL
                     leaves nothing behind */
    bool in_dir;  /* a file of a temporary directory (of_dir): made at
                     tmp_path itself, never renamed on its own */
    bool is_dir;  /* not a file: a directory of an of_dir, removed with rmdir */
};

static of_file *live;

/* The list changes with signals blocked, so the handler sees it whole. */
static void list_lock(sigset_t *old)
{
    sigset_t all;
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, old);
}

static void list_unlock(const sigset_t *old) { sigprocmask(SIG_SETMASK, old, NULL); }

static void list_add(of_file *f)
{
    sigset_t old;
    list_lock(&old);
    f->next = live;
    if (live)
        live->prev = f;
    live = f;
    list_unlock(&old);
}

static void list_remove(of_file *f)
{
    sigset_t old;
    list_lock(&old);
    if (f->prev)
        f->prev->next = f->next;
    else if (live == f)
        live = f->next;
    if (f->next)
        f->next->prev = f->prev;
    f->prev = f->next = NULL;
    list_unlock(&old);
}

void surg_remove_temporaries(void)
{
    /* Newest first: the files of a temporary directory go before the
     * directories they are in, which were made before them. */
    for (of_file *f = live; f; f = f->next)
        if (f->is_dir)
            rmdir(f->tmp_path);
        else if (!f->unnamed)
            unlink(f->tmp_path);
}

static char *tmp_name(const char *final_path)
{
    const char *slash = strrchr(final_path, '/');
    size_t dirlen = slash ? (size_t)(slash - final_path + 1) : 0;
    const char *base = final_path + dirlen;
    size_t n = strlen(final_path) + 32;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%.*s.%s.surg-tmp-XXXXXX", (int)dirlen, final_path, base);
    return p;
}

static void of_free(of_file *f)
{
    free(f->final_path);
    free(f->tmp_path);
    free(f);
}

/* A file with no name in final_path's directory (Linux's O_TMPFILE), or -1
 * where the file system or the kernel does not offer one. It is named at
 * commit through /proc/self/fd, so that must be there too. */
static int open_unnamed(const char *final_path)
{
#ifdef O_TMPFILE
    if (access("/proc/self/fd", X_OK) != 0)
        return -1;
    const char *slash = strrchr(final_path, '/');
    char *dir = slash ? strndup(final_path, (size_t)(slash - final_path + 1)) : strdup(".");
    if (!dir)
        return -1;
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0666);
    free(dir);
    return fd;
#else
    (void)final_path;
    return -1;
#endif
}

/* Give an unnamed file its temporary name, to be renamed over the final
 * one (a link cannot replace a file). */
static int name_unnamed(of_file *f)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", f->fd);
    char *x = strstr(f->tmp_path, "XXXXXX");
    for (unsigned attempt = 0; x && attempt < 100; attempt++) {
        snprintf(x, 7, "%06u", (unsigned)((unsigned)getpid() * 31u + attempt) % 1000000u);
        if (linkat(AT_FDCWD, proc, AT_FDCWD, f->tmp_path, AT_SYMLINK_FOLLOW) == 0) {
            f->unnamed = false; /* now it has a name to remove on failure */
            return 0;
        }
        if (errno != EEXIST)
            return -1;
    }
    errno = EEXIST;
    return -1;
}

surg_status of_create(surg_sink *sink, const char *final_path, of_file **out)
{
    *out = NULL;
    of_file *f = calloc(1, sizeof *f);
    if (!f)
        return dg_nomem(sink, final_path);
    f->fd = -1;
    f->final_path = strdup(final_path);
    f->tmp_path = tmp_name(final_path);
    if (!f->final_path || !f->tmp_path) {
        of_free(f);
        return dg_nomem(sink, final_path);
    }
    sigset_t old;
    list_lock(&old);
    f->fd = open_unnamed(final_path);
    f->unnamed = f->fd >= 0;
    if (!f->unnamed)
        f->fd = mkostemp(f->tmp_path, O_CLOEXEC);
    int err = errno;
    list_unlock(&old);
    if (f->fd < 0) {
        of_free(f);
        return dg_errno(sink, final_path, "cannot create the output", err);
    }
    list_add(f);
    /* mkostemp makes the file private (0600); the output gets the mode any
     * new file would, as cp gives it: 0666 less the umask. */
    mode_t mask = umask(0);
    umask(mask);
    if (fchmod(f->fd, 0666 & ~mask) != 0) {
        err = errno;
        of_abort(f);
        return dg_errno(sink, final_path, "cannot set the output's permissions", err);
    }
    *out = f;
    return SURG_OK;
}

surg_status of_write(of_file *f, surg_sink *sink, const void *data, size_t len)
{
    const char *p = data;
    while (len) {
        ssize_t n = write(f->fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return dg_errno(sink, f->final_path, "cannot write", errno);
        p += n;
        len -= (size_t)n;
    }
    return SURG_OK;
}

surg_status of_copy(of_file *f, surg_sink *sink, int src_fd, uint64_t off, uint64_t len)
{
    off_t at = lseek(f->fd, 0, SEEK_CUR);
    if (at < 0)
        return dg_errno(sink, f->final_path, "cannot write", errno);
    surg_status st = of_copy_at(f, sink, src_fd, off, len, (uint64_t)at);
    if (!st && lseek(f->fd, at + (off_t)len, SEEK_SET) < 0)
        return dg_errno(sink, f->final_path, "cannot write", errno);
    return st;
}

/* Reserving more than the file system has free would fail, but only after
 * taking every free block (ext4 keeps what it allocated until the file is
 * closed): for that moment every other writer on the file system, a
 * training job saving its checkpoint, would find the disk full. So the
 * size is compared with the free space first, and a failed reservation
 * gives its blocks back at once. */
surg_status of_reserve(of_file *f, surg_sink *sink, uint64_t size)
{
    return of_reserve_around(f, sink, size, NULL, 0);
}

/* fallocate [from, to) unless empty: 0 or its error. */
static int reserve_range(int fd, uint64_t from, uint64_t to)
{
    return to > from ? posix_fallocate(fd, (off_t)from, (off_t)(to - from)) : 0;
}

surg_status of_reserve_around(of_file *f, surg_sink *sink, uint64_t size, const uint64_t *skip,
                              size_t n_skip)
{
    uint64_t skipped = 0;
    for (size_t i = 0; i < n_skip; i++)
        skipped += skip[2 * i + 1] - skip[2 * i];
    if (!size)
        return SURG_OK;
    struct statvfs v;
    if (fstatvfs(f->fd, &v) == 0 && v.f_frsize) {
        /* root may use the blocks reserved for it; others may not */
        uint64_t blocks = geteuid() == 0 ? (uint64_t)v.f_bfree : (uint64_t)v.f_bavail;
        uint64_t free_bytes = blocks > UINT64_MAX / v.f_frsize ? UINT64_MAX
                                                                : blocks * v.f_frsize;
        if (size - skipped > free_bytes) {
            dg_file(sink, SURG_ERROR, "io", f->final_path,
                    "cannot reserve room for the output: it needs %llu bytes, and the file "
                    "system has %llu free",
                    (unsigned long long)(size - skipped), (unsigned long long)free_bytes);
            return SURG_EIO;
        }
    }
    /* The ranges skipped stay holes until their blocks are shared. */
    int err = n_skip && ftruncate(f->fd, (off_t)size) != 0 ? errno : 0;
    uint64_t at = 0;
    for (size_t i = 0; !err && i < n_skip; i++) {
        err = reserve_range(f->fd, at, skip[2 * i]);
        at = skip[2 * i + 1];
    }
    if (!err)
        err = reserve_range(f->fd, at, size);
    if (err == ENOSPC || err == EFBIG || err == EDQUOT) {
        int gave_back = ftruncate(f->fd, 0); /* what it took (closing does too) */
        (void)gave_back;
        return dg_errno(sink, f->final_path, "cannot reserve room for the output", err);
    }
    return SURG_OK; /* not offered by the file system: nothing lost */
}

surg_status of_pwrite(of_file *f, surg_sink *sink, const void *data, size_t len, uint64_t off)
{
    const char *p = data;
    while (len) {
        ssize_t n = pwrite(f->fd, p, len, (off_t)off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return dg_errno(sink, f->final_path, "cannot write", errno);
        p += n;
        len -= (size_t)n;
        off += (uint64_t)n;
    }
    return SURG_OK;
}

surg_status of_copy_at(of_file *f, surg_sink *sink, int src_fd, uint64_t src_off, uint64_t len,
                       uint64_t dst_off)
{
    loff_t in = (loff_t)src_off, out = (loff_t)dst_off;
    while (len) {
        size_t want = len < (1u << 30) ? (size_t)len : (1u << 30);
        ssize_t n = copy_file_range(src_fd, &in, f->fd, &out, want, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == ENOSPC || errno == EFBIG || errno == EIO || errno == EDQUOT))
            return dg_errno(sink, f->final_path, "cannot write", errno);
        if (n <= 0)
            break; /* not offered here, or a short source: plain copy below */
        len -= (uint64_t)n;
    }
    if (!len)
        return SURG_OK;
    enum { CHUNK = 1 << 20 };
    char *b = malloc(CHUNK);
    if (!b)
        return dg_nomem(sink, f->final_path);
    surg_status st = SURG_OK;
    while (len && !st) {
        size_t want = len < CHUNK ? (size_t)len : CHUNK;
        ssize_t n = pread(src_fd, b, want, in);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            dg_file(sink, SURG_ERROR, "io", f->final_path,
                    "cannot read the input while copying: %s",
                    n ? strerror(errno) : "it ended early (was it truncated?)");
            st = SURG_EIO;
            break;
        }
        st = of_pwrite(f, sink, b, (size_t)n, (uint64_t)out);
        in += n;
        out += n;
        len -= (uint64_t)n;
    }
    free(b);
    return st;
}

int of_fd(const of_file *f) { return f->fd; }

void of_start_writeback(of_file *f)
{
#ifdef SYNC_FILE_RANGE_WRITE
    if (f && f->fd >= 0)
        (void)sync_file_range(f->fd, 0, 0, SYNC_FILE_RANGE_WRITE); /* a hint: errors show at fsync */
#else
    (void)f;
#endif
}

surg_status of_finish(of_file *f, surg_sink *sink)
{
    if (fsync(f->fd) != 0)
        return dg_errno(sink, f->final_path, "cannot sync", errno);
    if (f->unnamed)
        return SURG_OK; /* closing would lose it: it is named at commit */
    if (f->fd < 0)
        return SURG_OK; /* finished already (a directory's file) */
    int rc = close(f->fd);
    f->fd = -1;
    if (rc != 0)
        return dg_errno(sink, f->final_path, "cannot close", errno);
    return SURG_OK;
}

static void sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, (size_t)(slash - path + 1)) : strdup(".");
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd); /* best effort: some file systems refuse */
        close(fd);
    }
    free(dir);
}

surg_status of_commit(of_file *f, surg_sink *sink)
{
    /* Checked before the run (outpath.c), and again here: a rename never
     * replaces a link, a device, a FIFO or a socket that appeared since. */
    struct stat sb;
    if (lstat(f->final_path, &sb) == 0 && !S_ISREG(sb.st_mode)) {
        dg_file(sink, SURG_ERROR, "out-special", f->final_path,
                "the output's name now holds something that is not a regular file: "
                "not replaced");
        of_abort(f);
        return SURG_EUSAGE;
    }
    if (f->unnamed) {
        sigset_t old;
        list_lock(&old); /* named and listed at once, for the signal handler */
        int rc = name_unnamed(f);
        int err = errno;
        list_unlock(&old);
        if (rc != 0) {
            surg_status st = dg_errno(sink, f->final_path, "cannot name the finished output", err);
            of_abort(f);
            return st;
        }
        close(f->fd);
        f->fd = -1;
    }
    if (rename(f->tmp_path, f->final_path) != 0) {
        surg_status st = dg_errno(sink, f->final_path, "cannot rename the "
                                  "finished output into place", errno);
        of_abort(f);
        return st;
    }
    list_remove(f);
    sync_dir(f->final_path);
    of_free(f);
    return SURG_OK;
}

void of_abort(of_file *f)
{
    if (!f)
        return;
    list_remove(f);
    if (f->fd >= 0)
        close(f->fd);
    if (f->is_dir)
        rmdir(f->tmp_path);
    else if (!f->unnamed)
        unlink(f->tmp_path);
    of_free(f);
}

/* ---- directories ------------------------------------------------------- */

struct of_dir {
    char *final_path;
    of_file **e; /* e[0]: the temporary directory; then its directories and
                    files, in the order they were made */
    size_t n, cap;
    bool synced;
};

static surg_status dir_add(of_dir *d, surg_sink *sink, of_file *f)
{
    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 16;
        of_file **v = realloc(d->e, cap * sizeof *v);
        if (!v)
            return dg_nomem(sink, d->final_path);
        d->e = v;
        d->cap = cap;
    }
    d->e[d->n++] = f;
    return SURG_OK;
}

/* A directory entry (made or to be made at `path`), not yet listed. */
static of_file *dir_entry(const char *path, bool is_dir)
{
    of_file *f = calloc(1, sizeof *f);
    if (!f)
        return NULL;
    f->fd = -1;
    f->in_dir = true;
    f->is_dir = is_dir;
    f->tmp_path = strdup(path);
    f->final_path = strdup(path);
    if (!f->tmp_path || !f->final_path) {
        of_free(f);
        return NULL;
    }
    return f;
}

surg_status of_dir_create(surg_sink *sink, const char *final_path, of_dir **out)
{
    *out = NULL;
    of_dir *d = calloc(1, sizeof *d);
    char *tmp = tmp_name(final_path);
    if (!d || !tmp || !(d->final_path = strdup(final_path))) {
        free(d);
        free(tmp);
        return dg_nomem(sink, final_path);
    }
    sigset_t old;
    list_lock(&old); /* made and listed at once, for the signal handler */
    char *made = mkdtemp(tmp);
    int err = errno;
    of_file *root = made ? dir_entry(tmp, true) : NULL;
    if (root)
        list_add(root);
    else if (made)
        rmdir(made);
    list_unlock(&old);
    free(tmp);
    surg_status st = !made ? dg_errno(sink, final_path, "cannot create the output", err)
                     : !root ? dg_nomem(sink, final_path)
                             : dir_add(d, sink, root);
    if (st && root)
        of_abort(root);
    if (st) {
        free(d->final_path);
        free(d->e);
        free(d);
        return st;
    }
    /* mkdtemp makes it private (0700); the output gets the mode mkdir
     * gives: 0777 less the umask. */
    mode_t mask = umask(0);
    umask(mask);
    if (chmod(root->tmp_path, 0777 & ~mask) != 0) {
        st = dg_errno(sink, final_path, "cannot set the output's permissions", errno);
        of_dir_abort(d);
        return st;
    }
    *out = d;
    return SURG_OK;
}

static char *dir_join(const of_dir *d, const char *rel)
{
    const char *root = d->e[0]->tmp_path;
    size_t n = strlen(root) + strlen(rel) + 2;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", root, rel);
    return p;
}

surg_status of_dir_mkdir(of_dir *d, surg_sink *sink, const char *rel)
{
    char *path = dir_join(d, rel);
    of_file *f = path ? dir_entry(path, true) : NULL;
    free(path);
    if (!f || dir_add(d, sink, f) != SURG_OK) {
        of_free(f);
        return dg_nomem(sink, d->final_path);
    }
    d->n--; /* listed only once made */
    sigset_t old;
    list_lock(&old);
    int rc = mkdir(f->tmp_path, 0777), err = errno;
    if (rc == 0) {
        list_add(f);
        d->n++;
    }
    list_unlock(&old);
    if (rc != 0) {
        surg_status st = dg_errno(sink, f->tmp_path, "cannot create a directory of the output",
                                  err);
        of_free(f);
        return st;
    }
    return SURG_OK;
}

surg_status of_dir_file(of_dir *d, surg_sink *sink, const char *rel, of_file **out)
{
    *out = NULL;
    char *path = dir_join(d, rel);
    of_file *f = path ? dir_entry(path, false) : NULL;
    free(path);
    if (!f || dir_add(d, sink, f) != SURG_OK) {
        of_free(f);
        return dg_nomem(sink, d->final_path);
    }
    d->n--;
    mode_t mask = umask(0);
    umask(mask);
    sigset_t old;
    list_lock(&old);
    f->fd = open(f->tmp_path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW,
                 0666 & ~mask);
    int err = errno;
    if (f->fd >= 0) {
        list_add(f);
        d->n++;
    }
    list_unlock(&old);
    if (f->fd < 0) {
        surg_status st = dg_errno(sink, f->tmp_path, "cannot create a file of the output", err);
        of_free(f);
        return st;
    }
    *out = f;
    return SURG_OK;
}

const char *of_dir_temp_path(const of_dir *d) { return d->e[0]->tmp_path; }

static void fsync_path(const char *path, int flags)
{
    int fd = open(path, flags | O_CLOEXEC);
    if (fd >= 0) {
        fsync(fd); /* best effort for directories: some file systems refuse */
        close(fd);
    }
}

surg_status of_dir_sync(of_dir *d, surg_sink *sink)
{
    if (d->synced)
        return SURG_OK;
    for (size_t i = 1; i < d->n; i++) {
        of_file *f = d->e[i];
        if (f->is_dir || f->fd < 0)
            continue;
        surg_status st = of_finish(f, sink);
        if (st)
            return st;
    }
    /* Innermost first: each directory once what is in it is synced. */
    for (size_t i = d->n; i-- > 0;)
        if (d->e[i]->is_dir)
            fsync_path(d->e[i]->tmp_path, O_RDONLY | O_DIRECTORY);
    d->synced = true;
    return SURG_OK;
}

/* Remove what an earlier output left at `path` once moved aside: its
 * regular files and the directories of regular files in it, nothing else
 * (what else is there stays, and so does the directory). */
static bool remove_old(const char *path, int depth)
{
    DIR *dir = opendir(path);
    if (!dir)
        return false;
    bool all = true;
    for (struct dirent *e; (e = readdir(dir)) != NULL;) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        size_t n = strlen(path) + strlen(e->d_name) + 2;
        char *p = malloc(n);
        struct stat sb;
        if (!p) {
            all = false;
            break;
        }
        snprintf(p, n, "%s/%s", path, e->d_name);
        if (lstat(p, &sb) != 0)
            all = false;
        else if (S_ISREG(sb.st_mode))
            all &= unlink(p) == 0;
        else if (S_ISDIR(sb.st_mode) && depth > 0)
            all &= remove_old(p, depth - 1);
        else
            all = false;
        free(p);
    }
    closedir(dir);
    return all && rmdir(path) == 0;
}

surg_status of_dir_commit(of_dir *d, surg_sink *sink, bool (*replaceable)(const char *path))
{
    surg_status st = of_dir_sync(d, sink);
    if (st)
        return st;
    const char *tmp = d->e[0]->tmp_path;
    struct stat sb;
    bool exists = lstat(d->final_path, &sb) == 0;
    /* Checked before the run (outpath.c), and again here: only an earlier
     * output of the same kind is replaced, never a link, a file or a
     * directory that something else wrote. */
    if (exists && (!S_ISDIR(sb.st_mode) || !replaceable || !replaceable(d->final_path))) {
        dg_file(sink, SURG_ERROR, "out-special", d->final_path,
                "the output's name now holds something that surg did not write: not replaced");
        return SURG_EUSAGE;
    }
    sigset_t old;
    list_lock(&old); /* moved and taken off the list at once, for the signal handler */
    int rc;
    bool swapped = false;
    if (!exists) {
        rc = renameat2(AT_FDCWD, tmp, AT_FDCWD, d->final_path, RENAME_NOREPLACE);
        if (rc != 0 && (errno == EINVAL || errno == ENOSYS))
            rc = rename(tmp, d->final_path) == 0 ? 0 : -1; /* a file system without it */
    } else {
        rc = renameat2(AT_FDCWD, tmp, AT_FDCWD, d->final_path, RENAME_EXCHANGE);
        swapped = rc == 0;
    }
    int err = errno;
    if (rc == 0)
        for (size_t i = 0; i < d->n; i++)
            list_remove(d->e[i]);
    list_unlock(&old);
    if (rc != 0 && exists && (err == EINVAL || err == ENOSYS)) {
        /* No exchange here: the earlier output is moved aside first, so
         * for a moment neither is at the name (never a mix of both). */
        char *aside = tmp_name(d->final_path);
        if (!aside)
            return dg_nomem(sink, d->final_path);
        char *made = mkdtemp(aside);
        rc = made && rename(d->final_path, aside) == 0 ? 0 : -1;
        err = errno;
        if (rc == 0) {
            list_lock(&old);
            rc = rename(tmp, d->final_path);
            err = errno;
            if (rc == 0)
                for (size_t i = 0; i < d->n; i++)
                    list_remove(d->e[i]);
            list_unlock(&old);
            if (rc != 0)
                (void)!rename(aside, d->final_path); /* the earlier one back */
        } else if (made) {
            rmdir(made);
        }
        if (rc == 0) {
            free(d->e[0]->tmp_path); /* what is to go is now here */
            d->e[0]->tmp_path = aside;
            swapped = true;
        } else {
            free(aside);
        }
    }
    if (rc != 0)
        return dg_errno(sink, d->final_path, "cannot rename the finished output into place",
                        err);
    sync_dir(d->final_path);
    if (swapped && !remove_old(d->e[0]->tmp_path, 1))
        dg_file(sink, SURG_WARNING, "out-stale", d->final_path,
                "the earlier output it replaced was moved to %s, and not all of it could be "
                "removed: remove it by hand",
                d->e[0]->tmp_path);
    for (size_t i = 0; i < d->n; i++)
        of_free(d->e[i]);
    d->n = 0;
    return SURG_OK;
}

void of_dir_abort(of_dir *d)
{
    if (!d)
        return;
    /* Newest first: files, then the directories they were in. */
    for (size_t i = d->n; i-- > 0;)
        of_abort(d->e[i]);
    free(d->e);
    free(d->final_path);
    free(d);
}
