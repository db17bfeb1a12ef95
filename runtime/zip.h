/* zip.h: reading zip archives (PKWARE's APPNOTE 6.3, ZIP64 included), as
 * NumPy's .npz and PyTorch's torch.save files are. The central directory is
 * the truth: sizes, CRCs and where each entry starts come from it (and its
 * ZIP64 extra fields), and every entry is checked against the file before
 * anything trusts it. Opening reads the end records, the central directory
 * and the local headers, never an entry's data; an entry's bytes are then
 * read as a stream, stored or deflated, never inflated past the size the
 * directory claims and CRC-checked at their end.
 *
 * Usage:
 *     zip_archive z;
 *     zip_open(&ar, sink, path, fd, size, &z);     // every entry validated
 *     const zip_entry *e = zip_find(&z, "archive/data.pkl");
 *     zip_stream s;
 *     zip_stream_open(&s, &z, e, sink);
 *     while (zip_stream_read(&s, sink, buf, sizeof buf, &got) == SURG_OK && got) ...
 *     zip_stream_close(&s);
 * The archive borrows `fd` (the caller closes it) and keeps its tables in
 * `ar`. Every problem is reported to the sink naming the file and the entry. */
#ifndef SURG_ZIP_H
#define SURG_ZIP_H

#include <stdbool.h>
#include <stdint.h>

#include "support/arena.h"
#include "surg/surg.h"

/* The fixed part of each record, and its signature (APPNOTE 4.3), for the
 * reader and the .npz writer alike. */
enum {
    ZIP_LOCAL_SIZE = 30,
    ZIP_CDIR_SIZE = 46,
    ZIP_EOCD_SIZE = 22,
    ZIP_EOCD64_SIZE = 56,
    ZIP_LOCATOR_SIZE = 20,
};
#define ZIP_SIG_LOCAL 0x04034b50u
#define ZIP_SIG_CDIR 0x02014b50u
#define ZIP_SIG_EOCD 0x06054b50u
#define ZIP_SIG_EOCD64 0x06064b50u
#define ZIP_SIG_LOCATOR 0x07064b50u

enum {
    ZIP_STORED = 0,
    ZIP_DEFLATED = 8,
};

typedef struct zip_entry {
    const char *name; /* NUL-terminated: a name holding a NUL is refused */
    uint32_t name_len;
    uint16_t method;  /* ZIP_STORED or ZIP_DEFLATED: others are refused */
    uint16_t flags;   /* general purpose bits (bit 11: the name is UTF-8) */
    uint32_t crc;     /* CRC-32 of the uncompressed bytes */
    bool check_crc;   /* false for a region that is not a zip entry (a .npy file) */
    uint64_t csize;   /* bytes in the archive */
    uint64_t usize;   /* bytes once inflated (= csize when stored) */
    uint64_t header_at; /* the local header */
    uint64_t data_at;   /* the first of the entry's csize bytes */
} zip_entry;

typedef struct zip_archive {
    const char *path;
    int fd;        /* borrowed */
    uint64_t size; /* of the file */
    zip_entry *entries; /* in central-directory order */
    size_t n;
    const zip_entry **by_name; /* sorted by name, for zip_find */
    uint64_t bytes_read; /* by opening: end records, directory, local headers */
} zip_archive;

/* Open the archive in `fd` (`size` bytes, named `path` in messages): read
 * and validate the end of central directory record (ZIP64 too), the central
 * directory, and each entry's local header. Refused: no end record, a
 * directory or an entry outside the file, multi-disk archives, encrypted
 * entries, methods other than stored and deflated, stored entries whose two
 * sizes differ, deflated ones claiming more than deflate can produce from
 * their size (1032 to 1), a local header that does not match its directory
 * entry, entries that overlap, and two entries of one name. */
surg_status zip_open(arena *ar, surg_sink *sink, const char *path, int fd, uint64_t size,
                     zip_archive *z);

/* The entry named `name`, or NULL. */
const zip_entry *zip_find(const zip_archive *z, const char *name);

/* An entry's uncompressed bytes, in order, a buffer at a time. */
typedef struct zip_stream {
    const zip_archive *z;
    const zip_entry *e;
    uint64_t in_at, in_left; /* compressed bytes not read yet */
    uint64_t out;            /* uncompressed bytes given so far */
    uint32_t crc;            /* of those */
    bool ended;              /* the deflate stream ended */
    bool done;               /* every byte given and checked */
    void *inflater;          /* a z_stream, for deflated entries */
    unsigned char *in;       /* compressed bytes read, not yet inflated */
    size_t in_cap;
} zip_stream;

surg_status zip_stream_open(zip_stream *s, const zip_archive *z, const zip_entry *e,
                            surg_sink *sink);
/* Up to `len` bytes into dst; *got is 0 only at the end of the entry. The
 * call that reaches the end checks that the data ends exactly there (a
 * deflated entry that would give more than its usize is refused as a zip
 * bomb, one that gives less as truncated) and that the CRC matches. */
surg_status zip_stream_read(zip_stream *s, surg_sink *sink, void *dst, size_t len,
                            size_t *got);
/* Read exactly `len` bytes (an error if the entry ends first). */
surg_status zip_stream_read_exact(zip_stream *s, surg_sink *sink, void *dst, size_t len);
void zip_stream_close(zip_stream *s);

#endif
