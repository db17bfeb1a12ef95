/* msgpack.c: the reader of Flax's msgpack checkpoints (msgpack.h,
 * format.h). One pass over the file's structure, through a small window
 * read with pread: maps and arrays on an explicit stack of bounded depth,
 * every length checked against the file (or the ext payload it sits in)
 * before it is used, every count against the bytes left. Data is never
 * read: an array's bytes are a range of the file, read in place; a chunked
 * array (several ranges) is joined on demand into the scratch file
 * (decode.c). Values that are not arrays are not tensors: one note says
 * so. The tree is kept as the metadata "msgpack.tree" (msgpack.h): every
 * path in file order, with the bytes of the values that are not arrays, for
 * a .msgpack output to write them back in the same order. */
#include "runtime/msgpack.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "support/buf.h"
#include "support/diag.h"
#include "support/json.h"
#include "runtime/format.h"
#include "runtime/msgpack_write.h"
#include "support/tensor_name.h"
#include "support/utf8.h"

enum {
    MP_MAX_DEPTH = 64,  /* maps and arrays inside each other */
    MP_WINDOW = 1 << 16,
    MP_JUMP_WINDOW = 1 << 12, /* read after skipping data: the next head is near */
    MP_MAX_DTYPE = 32,  /* bytes of a dtype name */
    MP_SHOWN = 3,       /* skipped values named in the note */
};
#define MP_MAX_NAME_BYTES (256ull << 20) /* all tensor names together */
#define MP_MAX_LEAF_BYTES (64u << 10)    /* values that are not arrays, kept */
#define MP_MAX_LEAF_PATHS (1u << 20)     /* and their paths */
#define MP_MAX_TREE_BYTES (16u << 20)    /* the tensors' paths in the tree kept */
#define CHUNKED_KEY "__msgpack_chunked_array__"

static const struct {
    const char *name;
    surg_dtype dt;
} dtype_names[] = {
    {"bool", SURG_BOOL},          {"int8", SURG_I8},
    {"uint8", SURG_U8},           {"int16", SURG_I16},
    {"uint16", SURG_U16},         {"int32", SURG_I32},
    {"uint32", SURG_U32},         {"int64", SURG_I64},
    {"uint64", SURG_U64},         {"float16", SURG_F16},
    {"bfloat16", SURG_BF16},      {"float32", SURG_F32},
    {"float64", SURG_F64},        {"complex64", SURG_C64},
    {"float8_e4m3fn", SURG_F8_E4M3}, {"float8_e5m2", SURG_F8_E5M2},
    {"float8_e4m3fnuz", SURG_F8_E4M3FNUZ}, {"float8_e5m2fnuz", SURG_F8_E5M2FNUZ},
    {"float8_e8m0fnu", SURG_F8_E8M0},
};

const char *mp_dtype_name(surg_dtype dt)
{
    for (size_t i = 0; i < sizeof dtype_names / sizeof *dtype_names; i++)
        if (dtype_names[i].dt == dt)
            return dtype_names[i].name;
    return NULL;
}

static surg_dtype dtype_of(const char *name, size_t len)
{
    for (size_t i = 0; i < sizeof dtype_names / sizeof *dtype_names; i++)
        if (strlen(dtype_names[i].name) == len && memcmp(dtype_names[i].name, name, len) == 0)
            return dtype_names[i].dt;
    return SURG_DTYPE_COUNT;
}

/* ---- objects ------------------------------------------------------------- */

typedef enum mp_kind {
    MK_NIL, MK_BOOL, MK_UINT, MK_INT, MK_FLOAT, MK_STR, MK_BIN, MK_ARRAY, MK_MAP, MK_EXT,
} mp_kind;

/* An object's head: for STR, BIN and EXT the payload follows (n bytes);
 * for ARRAY and MAP n is the count; for UINT the value; for INT (< 0) the
 * value in i. */
typedef struct mp_obj {
    mp_kind kind;
    uint64_t n;
    int64_t i;
    int8_t ext;
    uint64_t at; /* where its head starts */
} mp_obj;

typedef struct mp_key {
    uint32_t parent; /* the map it is in (node 0: the top) */
    uint32_t len;
    const char *key;
    uint64_t at;
} mp_key;

typedef struct mp_frame {
    uint64_t left;  /* items (pairs) still to read */
    uint64_t index; /* of the next item of an array */
    size_t path_len;
    uint32_t node;
    bool map;
} mp_frame;

/* An entry of the kept tree: a tensor's or a value's. */
typedef struct mp_span {
    size_t from, to;
    bool value;
} mp_span;

typedef struct mp_open {
    arena *keep;
    surg_sink *sink;
    const char *path;
    fmt_table *t;
    int fd;
    uint64_t size, pos, limit; /* limit: the end of what may be read now */
    unsigned char win[MP_WINDOW];
    uint64_t win_at;
    size_t win_len;
    buf name;  /* where the walk is: the keys so far, joined by "/" */
    mp_key *keys;
    size_t n_keys, cap_keys;
    size_t cap[2];
    uint64_t page, name_bytes;
    size_t n_skipped, n_dropped;
    char *skipped[MP_SHOWN];
    buf tree; /* "path": "", "path": "hex of a value's bytes", ... */
    struct mp_span *spans; /* each path's entry in tree */
    size_t n_spans, cap_spans;
    uint64_t leaf_bytes, leaf_paths, tensor_bytes;
    zip_archive *arc; /* the file, for the decoders */
    bool failed;
} mp_open;

/* An error about the file, where the walk is. */
__attribute__((format(printf, 3, 4))) static surg_status bad(mp_open *o, const char *code,
                                                             const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    char shown[80];
    if (o->name.len)
        dg_file(o->sink, SURG_ERROR, code, o->path, "%s (at \"%s\", byte %llu)", msg,
                tn_short(o->name.data, shown, 64), (unsigned long long)o->pos);
    else
        dg_file(o->sink, SURG_ERROR, code, o->path, "%s (at byte %llu)", msg,
                (unsigned long long)o->pos);
    return SURG_EINVALID;
}

static surg_status truncated(mp_open *o, uint64_t need)
{
    bool in_ext = o->limit < o->size;
    return bad(o, "mp-truncated", "%llu bytes run past the end of %s (%llu bytes)",
               (unsigned long long)need, in_ext ? "the array's ext payload" : "the file",
               (unsigned long long)(in_ext ? o->limit : o->size));
}

/* n (<= 16) bytes at pos, which moves past them. */
static surg_status take(mp_open *o, size_t n, const unsigned char **p)
{
    if (n > o->limit - o->pos)
        return truncated(o, n);
    if (o->pos < o->win_at || o->pos + n > o->win_at + o->win_len) {
        /* Past an array's data only a head or two is wanted: a small read,
         * then whole windows again while the structure goes on. */
        bool jump = o->pos > o->win_at + o->win_len;
        uint64_t left = o->size - o->pos, max = jump ? MP_JUMP_WINDOW : MP_WINDOW;
        size_t want = left < max ? (size_t)left : (size_t)max;
        size_t got = 0;
        while (got < want) {
            ssize_t r = pread(o->fd, o->win + got, want - got, (off_t)(o->pos + got));
            if (r < 0 && errno == EINTR)
                continue;
            if (r <= 0)
                return dg_errno(o->sink, o->path, "cannot read", r ? errno : EIO);
            got += (size_t)r;
        }
        o->win_at = o->pos;
        o->win_len = got;
        o->t->file.bytes_read += got;
    }
    *p = o->win + (o->pos - o->win_at);
    o->pos += n;
    return SURG_OK;
}

/* Bytes the file holds after pos (or the payload, within one). */
static surg_status skip(mp_open *o, uint64_t n)
{
    if (n > o->limit - o->pos)
        return truncated(o, n);
    o->pos += n;
    return SURG_OK;
}

/* n bytes at pos copied into the arena, NUL-terminated. */
static surg_status take_text(mp_open *o, uint64_t n, char **out)
{
    if (n > o->limit - o->pos)
        return truncated(o, n);
    char *s = ar_alloc(o->keep, (size_t)n + 1);
    if (!s)
        return dg_nomem(o->sink, o->path);
    for (uint64_t done = 0; done < n;) {
        size_t k = n - done < 16 ? (size_t)(n - done) : 16;
        const unsigned char *p;
        surg_status st = take(o, k, &p);
        if (st)
            return st;
        memcpy(s + done, p, k);
        done += k;
    }
    s[n] = 0;
    *out = s;
    return SURG_OK;
}

static uint64_t be(const unsigned char *p, unsigned n)
{
    uint64_t v = 0;
    for (unsigned i = 0; i < n; i++)
        v = v << 8 | p[i];
    return v;
}

/* The head of the object at pos. Counts are checked against what is left:
 * every item takes a byte at least, every pair two. */
static surg_status head(mp_open *o, mp_obj *v)
{
    const unsigned char *p;
    *v = (mp_obj){.at = o->pos};
    surg_status st = take(o, 1, &p);
    if (st)
        return st;
    unsigned c = *p, len = 0;
    if (c <= 0x7f) {
        *v = (mp_obj){MK_UINT, c, 0, 0, v->at};
        return SURG_OK;
    }
    if (c >= 0xe0) {
        *v = (mp_obj){MK_INT, 0, (int64_t)c - 256, 0, v->at};
        return SURG_OK;
    }
    if (c >= 0x80 && c <= 0x9f) {
        v->kind = c < 0x90 ? MK_MAP : MK_ARRAY;
        v->n = c & 0x0f;
    } else if (c >= 0xa0 && c <= 0xbf) {
        v->kind = MK_STR;
        v->n = c & 0x1f;
    } else {
        switch (c) {
        case 0xc0: v->kind = MK_NIL; return SURG_OK;
        case 0xc2: case 0xc3: v->kind = MK_BOOL; v->n = c & 1; return SURG_OK;
        case 0xc4: case 0xc5: case 0xc6: v->kind = MK_BIN; len = 1u << (c - 0xc4); break;
        case 0xc7: case 0xc8: case 0xc9: v->kind = MK_EXT; len = 1u << (c - 0xc7); break;
        case 0xca: case 0xcb: v->kind = MK_FLOAT; len = c == 0xca ? 4 : 8; break;
        case 0xcc: case 0xcd: case 0xce: case 0xcf: v->kind = MK_UINT; len = 1u << (c - 0xcc); break;
        case 0xd0: case 0xd1: case 0xd2: case 0xd3: v->kind = MK_INT; len = 1u << (c - 0xd0); break;
        case 0xd4: case 0xd5: case 0xd6: case 0xd7: case 0xd8:
            v->kind = MK_EXT; v->n = 1u << (c - 0xd4); break;
        case 0xd9: case 0xda: case 0xdb: v->kind = MK_STR; len = 1u << (c - 0xd9); break;
        case 0xdc: case 0xdd: v->kind = MK_ARRAY; len = c == 0xdc ? 2 : 4; break;
        case 0xde: case 0xdf: v->kind = MK_MAP; len = c == 0xde ? 2 : 4; break;
        default:
            o->pos = v->at;
            return bad(o, "mp-format", "byte 0x%02x begins no msgpack object", c);
        }
        if (len) {
            st = take(o, len, &p);
            if (st)
                return st;
            uint64_t x = be(p, len);
            if (v->kind == MK_INT) {
                /* sign-extend */
                int64_t s = len == 8 ? (int64_t)x : (int64_t)(x ^ (1ull << (8 * len - 1))) -
                                                        (int64_t)(1ull << (8 * len - 1));
                if (s >= 0) {
                    v->kind = MK_UINT;
                    v->n = (uint64_t)s;
                } else {
                    v->i = s;
                }
            } else if (v->kind != MK_FLOAT) {
                v->n = x;
            }
            if (v->kind == MK_FLOAT)
                return SURG_OK;
        }
    }
    if (v->kind == MK_EXT) {
        st = take(o, 1, &p);
        if (st)
            return st;
        v->ext = (int8_t)*p;
    }
    uint64_t left = o->limit - o->pos;
    if ((v->kind == MK_STR || v->kind == MK_BIN || v->kind == MK_EXT) && v->n > left)
        return truncated(o, v->n);
    if ((v->kind == MK_ARRAY && v->n > left) || (v->kind == MK_MAP && v->n > left / 2))
        return bad(o, "mp-count", "a %s of %llu %s cannot fit in the %llu bytes left",
                   v->kind == MK_MAP ? "map" : "array", (unsigned long long)v->n,
                   v->kind == MK_MAP ? "pairs" : "items", (unsigned long long)left);
    return SURG_OK;
}

size_t mp_leaf_len(const unsigned char *p, size_t n)
{
    if (!n)
        return 0;
    unsigned c = p[0];
    uint64_t len = 0, head = 1;
    if (c <= 0x7f || c >= 0xe0 || c == 0x80 || c == 0x90 || c == 0xc0 || c == 0xc2 ||
        c == 0xc3)
        len = 0;
    else if (c >= 0xa0 && c <= 0xbf)
        len = c & 0x1f;
    else if (c >= 0xcc && c <= 0xd3)
        len = 1u << ((c - 0xcc) & 3);
    else if (c == 0xca || c == 0xcb)
        len = c == 0xca ? 4 : 8;
    else if (c >= 0xd4 && c <= 0xd8)
        len = 1 + (1u << (c - 0xd4));
    else if ((c >= 0xc4 && c <= 0xc9) || (c >= 0xd9 && c <= 0xdb)) {
        unsigned k = c <= 0xc6 ? 1u << (c - 0xc4) : c <= 0xc9 ? 1u << (c - 0xc7)
                                                              : 1u << (c - 0xd9);
        if (n < 1 + k)
            return 0;
        len = be(p + 1, k) + (c >= 0xc7 && c <= 0xc9); /* an ext's type */
        head += k;
    } else if ((c == 0xdc || c == 0xde) && n >= 3 && !p[1] && !p[2]) {
        head = 3;
    } else if ((c == 0xdd || c == 0xdf) && n >= 5 && !p[1] && !p[2] && !p[3] && !p[4]) {
        head = 5;
    } else {
        return 0; /* 0xc1, or a container that is not empty */
    }
    return len <= n - head && head <= n ? (size_t)(head + len) : 0;
}

static int hex_digit(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int mp_tree_value(const char *hex, arena *ar, const unsigned char **raw, size_t *len)
{
    size_t n = strlen(hex) / 2;
    unsigned char *p = ar_alloc(ar, n ? n : 1);
    *raw = NULL;
    *len = 0;
    if (!p)
        return -1;
    for (size_t i = 0; i < n; i++) {
        int hi = hex_digit(hex[2 * i]), lo = hex_digit(hex[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return 0;
        p[i] = (unsigned char)(hi << 4 | lo);
    }
    if (!n || hex[2 * n] || mp_leaf_len(p, n) != n)
        return 0;
    *raw = p;
    *len = n;
    return 1;
}

const char *mp_tree_read(const char *text, arena *ar, mp_tree_entry **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    json_reader j;
    json_init(&j, text, strlen(text), ar);
    size_t cap = 0;
    const char *why = NULL;
    int more = json_open(&j, '{') ? json_first(&j, '}') : -1;
    for (; more > 0 && !why; more = json_more(&j, '}')) {
        mp_tree_entry e = {0};
        if (!json_key(&j, &e.path) || !json_string(&j, &e.mark))
            break;
        if (strcmp(e.mark, MP_TREE_ARRAY) != 0 && strcmp(e.mark, MP_TREE_SCALAR) != 0) {
            int ok = mp_tree_value(e.mark, ar, &e.raw, &e.len);
            why = ok < 0 ? "out of memory"
                  : !ok  ? "a value is not one msgpack value that is not a map or an "
                           "array"
                         : NULL;
        }
        if (!why && *n == cap) {
            cap = cap ? cap * 2 : 64;
            mp_tree_entry *x = realloc(*out, cap * sizeof *x);
            why = x ? NULL : "out of memory";
            *out = x ? x : *out;
        }
        if (!why)
            (*out)[(*n)++] = e;
    }
    if (!why && (more != 0 || !json_end(&j)))
        why = !j.failed ? "it is not an object of strings"
              : (why = ar_strdup(ar, j.err)) ? why : "out of memory";
    if (why) {
        free(*out);
        *out = NULL;
        *n = 0;
    }
    return why;
}

bool mp_path_holds(const char *a, const char *b)
{
    size_t n = strlen(a);
    return strncmp(a, b, n) == 0 && (b[n] == 0 || b[n] == '/');
}

/* ---- arrays ---------------------------------------------------------------- */

typedef struct mp_array {
    surg_dtype dtype;
    uint32_t rank;
    uint64_t shape[SURG_MAX_RANK];
    uint64_t nelems, nbytes, data_at;
    bool scalar; /* ext 3 */
} mp_array;

static surg_status shape_product(mp_open *o, mp_array *a)
{
    uint64_t n = 1;
    for (uint32_t d = 0; d < a->rank; d++) {
        if (a->shape[d] && n > UINT64_MAX / a->shape[d])
            return bad(o, "mp-ndarray", "the array's shape overflows 64 bits");
        n *= a->shape[d];
    }
    unsigned esize = surg_dtype_bits(a->dtype) / 8;
    if (n > UINT64_MAX / esize)
        return bad(o, "mp-ndarray", "the array's size overflows 64 bits");
    a->nelems = n;
    a->nbytes = n * esize;
    return SURG_OK;
}

/* The payload of an ext 1 or 3 at pos (len bytes): [shape, dtype, data]. */
static surg_status read_array(mp_open *o, uint64_t len, mp_array *a)
{
    uint64_t outer = o->limit, end = o->pos + len;
    o->limit = end;
    mp_obj v;
    surg_status st = head(o, &v);
    if (!st && (v.kind != MK_ARRAY || v.n != 3))
        st = bad(o, "mp-ndarray", "an array's ext payload is not [shape, dtype, data]");
    if (!st)
        st = head(o, &v);
    if (!st && (v.kind != MK_ARRAY || v.n > SURG_MAX_RANK))
        st = v.kind != MK_ARRAY
                 ? bad(o, "mp-ndarray", "an array's shape is not a msgpack array")
                 : bad(o, "mp-ndarray", "an array has %llu dimensions; surg reads at most %d",
                       (unsigned long long)v.n, SURG_MAX_RANK);
    a->rank = st ? 0 : (uint32_t)v.n;
    for (uint32_t d = 0; !st && d < a->rank; d++) {
        st = head(o, &v);
        if (!st && v.kind != MK_UINT)
            st = bad(o, "mp-ndarray", "dimension %u of an array's shape is not a "
                                      "non-negative integer", d);
        a->shape[d] = v.n;
    }
    if (!st)
        st = head(o, &v);
    if (!st && v.kind != MK_STR && v.kind != MK_BIN)
        st = bad(o, "mp-ndarray", "an array's dtype is not a string");
    char *dname = NULL;
    if (!st && v.n > MP_MAX_DTYPE)
        st = bad(o, "mp-dtype", "an array's dtype name is %llu bytes long: no dtype is",
                 (unsigned long long)v.n);
    if (!st)
        st = take_text(o, v.n, &dname);
    if (!st) {
        a->dtype = dtype_of(dname, (size_t)v.n);
        for (size_t i = 0; i < v.n; i++)
            if (dname[i] < 0x20 || dname[i] > 0x7e)
                dname[i] = '?';
        if (a->dtype == SURG_DTYPE_COUNT)
            st = bad(o, "mp-dtype", "an array has dtype \"%s\", which surg does not read",
                     dname);
    }
    if (!st)
        st = shape_product(o, a);
    if (!st)
        st = head(o, &v);
    if (!st && v.kind != MK_BIN && v.kind != MK_STR)
        st = bad(o, "mp-ndarray", "an array's data is not bytes");
    if (!st && v.n != a->nbytes)
        st = bad(o, "mp-size", "%llu elements of %s need %llu bytes, but the array holds %llu",
                 (unsigned long long)a->nelems, dname, (unsigned long long)a->nbytes,
                 (unsigned long long)v.n);
    a->data_at = o->pos;
    if (!st && o->pos + v.n != end)
        st = bad(o, "mp-ndarray", "an array's ext payload holds %llu bytes after its data",
                 (unsigned long long)(end - o->pos - v.n));
    o->pos = end;
    o->limit = outer;
    return st;
}

/* ---- the table ------------------------------------------------------------- */

/* The path where the walk is, and `value` (a string of JSON, quoted by the
 * caller's `put`), as an entry of the tree kept. */
static surg_status tree_entry(mp_open *o, bool is_value, const char *text)
{
    if (o->n_spans == o->cap_spans) {
        size_t cap = o->cap_spans ? o->cap_spans * 2 : 64;
        mp_span *x = realloc(o->spans, cap * sizeof *x);
        if (!x)
            return dg_nomem(o->sink, o->path);
        o->spans = x;
        o->cap_spans = cap;
    }
    size_t from = o->tree.len;
    buf_json_string(&o->tree, o->name.data ? o->name.data : "");
    buf_puts(&o->tree, ": \"");
    buf_puts(&o->tree, text);
    buf_putc(&o->tree, '"');
    o->spans[o->n_spans++] = (mp_span){from, o->tree.len, is_value};
    return o->tree.failed ? dg_nomem(o->sink, o->path) : SURG_OK;
}

/* The tensor named where the walk is, of `a`'s dtype and `shape`, whose
 * bytes are the n ranges at[i], len[i] (in place when one). */
static surg_status add_tensor(mp_open *o, const mp_array *a, uint32_t rank,
                              const uint64_t *shape, const uint64_t *at, const uint64_t *len,
                              size_t n, uint64_t nelems, uint64_t nbytes)
{
    const char *why = tn_problem(o->name.data ? o->name.data : "", o->name.len);
    if (why) {
        bad(o, "mp-name", "the path does not name a tensor as a tensor may be named: %s",
            why);
        o->failed = true;
        return SURG_OK;
    }
    if (o->name.len > MP_MAX_NAME_BYTES - o->name_bytes)
        return bad(o, "mp-names", "the tensors' names take more than %llu bytes together",
                   (unsigned long long)MP_MAX_NAME_BYTES);
    o->name_bytes += o->name.len;
    char *name = ar_strndup(o->keep, o->name.data, o->name.len);
    uint64_t *sh = ar_array(o->keep, rank ? rank : 1, sizeof *sh);
    if (!name || !sh)
        return dg_nomem(o->sink, o->path);
    memcpy(sh, shape, rank * sizeof *sh);
    surg_tensor_info info = {name, a->dtype, rank, sh, nelems, nbytes};
    if (o->tensor_bytes <= MP_MAX_TREE_BYTES) {
        o->tensor_bytes += o->name.len + 8;
        surg_status st = tree_entry(o, false, a->scalar && !rank ? MP_TREE_SCALAR
                                                                 : MP_TREE_ARRAY);
        if (st)
            return st;
    }
    bool in_place = n <= 1;
    st_entry *x = fmt_add_entry(o->t, in_place ? 0 : 1, o->cap);
    if (!x)
        return dg_nomem(o->sink, o->path);
    if (in_place) {
        uint64_t from = n ? at[0] : 0;
        *x = (st_entry){info, from, from + nbytes};
        return SURG_OK;
    }
    dc_source *s = ar_alloc(o->keep, sizeof *s);
    uint64_t *pa = ar_array(o->keep, n, sizeof *pa), *pl = ar_array(o->keep, n, sizeof *pl);
    if (!s || !pa || !pl)
        return dg_nomem(o->sink, o->path);
    memcpy(pa, at, n * sizeof *pa);
    memcpy(pl, len, n * sizeof *pl);
    *s = (dc_source){.arc = o->arc, .name = name, .esize = surg_dtype_bits(a->dtype) / 8,
                     .rank = rank, .shape = sh, .nbytes = nbytes,
                     .piece_at = pa, .piece_len = pl, .n_pieces = n};
    fmt_table *t = o->t;
    t->src[t->h[1].n - 1] = s;
    *x = (st_entry){info, t->scratch_size, t->scratch_size + nbytes};
    uint64_t end = t->scratch_size + nbytes;
    t->scratch_size = end + (o->page - end % o->page) % o->page;
    return SURG_OK;
}

/* A value that is not a tensor, where the walk is: the bytes from `at` to
 * pos, kept while they fit. */
static surg_status skipped(mp_open *o, uint64_t at)
{
    uint64_t len = o->pos - at;
    if (len <= MP_MAX_LEAF_BYTES - o->leaf_bytes && o->name.len <= MP_MAX_LEAF_PATHS &&
        o->leaf_paths + o->name.len <= MP_MAX_LEAF_PATHS) {
        o->leaf_paths += o->name.len;
        unsigned char *b = malloc(len ? (size_t)len : 1);
        if (!b)
            return dg_nomem(o->sink, o->path);
        ssize_t got = pread(o->fd, b, (size_t)len, (off_t)at);
        if (got != (ssize_t)len) {
            free(b);
            return dg_errno(o->sink, o->path, "cannot read", got < 0 ? errno : EIO);
        }
        char *text = malloc(2 * (size_t)len + 1);
        for (uint64_t i = 0; text && i < len; i++) {
            static const char digits[] = "0123456789abcdef";
            text[2 * i] = digits[b[i] >> 4];
            text[2 * i + 1] = digits[b[i] & 15];
        }
        if (text)
            text[2 * len] = 0;
        free(b);
        surg_status st = text ? tree_entry(o, true, text) : dg_nomem(o->sink, o->path);
        free(text);
        if (st)
            return st;
        o->leaf_bytes += len;
    } else {
        o->n_dropped++;
    }
    if (o->n_skipped < MP_SHOWN) {
        char shown[80];
        o->skipped[o->n_skipped] = ar_strdup(o->keep, tn_short(o->name.data ? o->name.data
                                                                             : "", shown, 64));
        if (!o->skipped[o->n_skipped])
            return dg_nomem(o->sink, o->path);
    }
    o->n_skipped++;
    return SURG_OK;
}

static bool is_index(const char *key, size_t len, uint64_t i)
{
    char want[24];
    int n = snprintf(want, sizeof want, "%llu", (unsigned long long)i);
    return (size_t)n == len && memcmp(key, want, len) == 0;
}

/* A key of a chunked array's map: `want`, or the index i (want NULL). */
static surg_status expect_key(mp_open *o, const char *want, uint64_t i)
{
    mp_obj v;
    char *key = NULL;
    surg_status st = head(o, &v);
    if (!st && v.kind != MK_STR)
        return bad(o, "mp-chunked", "a chunked array's map has a key that is not a string");
    if (!st && v.n > 32)
        return bad(o, "mp-chunked", "a chunked array's map has an unexpected key");
    if (!st)
        st = take_text(o, v.n, &key);
    if (st)
        return st;
    bool ok = want ? strlen(want) == v.n && memcmp(key, want, v.n) == 0
                   : is_index(key, (size_t)v.n, i);
    if (!ok && want)
        return bad(o, "mp-chunked", "a chunked array's map has no \"%s\" where Flax writes it",
                   want);
    if (!ok)
        return bad(o, "mp-chunked", "a chunked array's \"shape\" or \"chunks\" map is not "
                                    "keyed \"0\", \"1\", ... in order");
    return SURG_OK;
}

/* The rest of a chunked array's map of `pairs` pairs, its first key read:
 * true, "shape": {"0": d0, ...}, "chunks": {"0": ext 1, ...}. */
static surg_status read_chunked(mp_open *o, uint64_t pairs)
{
    mp_obj v;
    mp_array a = {0}, c;
    uint64_t *at = NULL, *len = NULL, total = 0;
    size_t n = 0, cap = 0;
    if (pairs != 3)
        return bad(o, "mp-chunked", "a chunked array's map has %llu keys, not 3",
                   (unsigned long long)pairs);
    surg_status st = head(o, &v);
    if (!st && (v.kind == MK_MAP || v.kind == MK_ARRAY || v.kind == MK_EXT))
        st = bad(o, "mp-chunked", "a chunked array's \"" CHUNKED_KEY "\" is not a flag");
    if (!st && (v.kind == MK_STR || v.kind == MK_BIN))
        st = skip(o, v.n);
    if (!st)
        st = expect_key(o, "shape", 0);
    if (!st)
        st = head(o, &v);
    if (!st && (v.kind != MK_MAP || v.n > SURG_MAX_RANK))
        st = bad(o, "mp-chunked", "a chunked array's \"shape\" is not a map of at most %d "
                                  "dimensions", SURG_MAX_RANK);
    a.rank = st ? 0 : (uint32_t)v.n;
    for (uint32_t d = 0; !st && d < a.rank; d++) {
        st = expect_key(o, NULL, d);
        if (!st)
            st = head(o, &v);
        if (!st && v.kind != MK_UINT)
            st = bad(o, "mp-chunked", "dimension %u of a chunked array is not a "
                                      "non-negative integer", d);
        a.shape[d] = v.n;
    }
    if (!st)
        st = expect_key(o, "chunks", 0);
    if (!st)
        st = head(o, &v);
    if (!st && (v.kind != MK_MAP || v.n == 0))
        st = bad(o, "mp-chunked", "a chunked array's \"chunks\" is not a map of chunks");
    uint64_t k = st ? 0 : v.n;
    for (uint64_t i = 0; !st && i < k; i++) {
        st = expect_key(o, NULL, i);
        if (!st)
            st = head(o, &v);
        if (!st && (v.kind != MK_EXT || (v.ext != 1 && v.ext != 3)))
            st = bad(o, "mp-chunked", "chunk %llu of a chunked array is not an array",
                     (unsigned long long)i);
        if (!st)
            st = read_array(o, v.n, &c);
        if (!st && (c.rank != 1 || (i && c.dtype != a.dtype)))
            st = bad(o, "mp-chunked", "chunk %llu of a chunked array is not a flat array of "
                                      "its dtype", (unsigned long long)i);
        if (!st && n == cap) {
            cap = cap ? cap * 2 : 8;
            uint64_t *x = realloc(at, cap * sizeof *x), *y = x ? realloc(len, cap * sizeof *y)
                                                               : NULL;
            if (x)
                at = x;
            if (y)
                len = y;
            if (!x || !y)
                st = dg_nomem(o->sink, o->path);
        }
        if (!st) {
            a.dtype = c.dtype;
            at[n] = c.data_at;
            len[n++] = c.nbytes;
            total += c.nelems; /* each at most the file's size */
        }
    }
    if (!st)
        st = shape_product(o, &a);
    if (!st && total != a.nelems)
        st = bad(o, "mp-chunked", "the chunks of a chunked array hold %llu elements, its "
                                  "shape %llu", (unsigned long long)total,
                 (unsigned long long)a.nelems);
    if (!st)
        st = add_tensor(o, &a, a.rank, a.shape, at, len, n, a.nelems, a.nbytes);
    free(at);
    free(len);
    return st;
}

/* ---- the walk -------------------------------------------------------------- */

static surg_status add_key(mp_open *o, uint32_t parent, const char *key, uint64_t len,
                           uint64_t at)
{
    if (o->n_keys == o->cap_keys) {
        size_t cap = o->cap_keys ? o->cap_keys * 2 : 64;
        mp_key *k = realloc(o->keys, cap * sizeof *k);
        if (!k)
            return dg_nomem(o->sink, o->path);
        o->keys = k;
        o->cap_keys = cap;
    }
    o->keys[o->n_keys++] = (mp_key){parent, (uint32_t)len, key, at};
    return SURG_OK;
}

/* A map's key, appended to the name. */
static surg_status read_key(mp_open *o, const mp_frame *f)
{
    mp_obj v;
    char *key = NULL;
    surg_status st = head(o, &v);
    if (st)
        return st;
    if (v.kind != MK_STR) {
        o->pos = v.at;
        return bad(o, "mp-key", "a map has a key that is not a string (Flax writes string "
                                "keys only)");
    }
    if (v.n > UINT32_MAX)
        return bad(o, "mp-key", "a map has a key of %llu bytes", (unsigned long long)v.n);
    st = take_text(o, v.n, &key);
    if (st)
        return st;
    size_t badc;
    if (!v.n || memchr(key, '/', (size_t)v.n) || memchr(key, 0, (size_t)v.n) ||
        !utf8_valid((const unsigned char *)key, (size_t)v.n, &badc)) {
        o->pos = v.at;
        return bad(o, "mp-key", "a map has a key that is %s",
                   !v.n ? "empty"
                   : memchr(key, '/', (size_t)v.n) ? "not a name segment: it holds \"/\""
                   : memchr(key, 0, (size_t)v.n)   ? "not a name segment: it holds a NUL byte"
                                                   : "not UTF-8");
    }
    if (v.n == sizeof CHUNKED_KEY - 1 && memcmp(key, CHUNKED_KEY, v.n) == 0) {
        o->pos = v.at;
        return bad(o, "mp-chunked", "\"" CHUNKED_KEY "\" is not the first key of its map");
    }
    if (f->path_len)
        buf_putc(&o->name, '/');
    buf_append(&o->name, key, (size_t)v.n);
    st = add_key(o, f->node, key, v.n, v.at);
    return st ? st : o->name.failed ? dg_nomem(o->sink, o->path) : SURG_OK;
}

/* Whether the map whose head was just read is a chunked array: its first
 * key is CHUNKED_KEY (read, then); else pos is back at that key. */
static surg_status chunked_map(mp_open *o, bool *yes)
{
    uint64_t back = o->pos;
    mp_obj v;
    const unsigned char *p = NULL;
    *yes = false;
    surg_status st = head(o, &v);
    if (!st && v.kind == MK_STR && v.n == sizeof CHUNKED_KEY - 1) {
        char key[sizeof CHUNKED_KEY];
        for (size_t i = 0; !st && i < v.n; i++) {
            st = take(o, 1, &p);
            if (!st)
                key[i] = (char)*p;
        }
        *yes = !st && memcmp(key, CHUNKED_KEY, sizeof CHUNKED_KEY - 1) == 0;
    }
    if (!*yes)
        o->pos = back;
    return st;
}

/* The value at pos, named by the walk: a tensor, a container to enter
 * (pushed), or a value skipped. */
static surg_status read_value(mp_open *o, mp_frame *stack, size_t *depth)
{
    mp_obj v;
    surg_status st = head(o, &v);
    if (st)
        return st;
    if ((v.kind == MK_MAP || v.kind == MK_ARRAY) && v.n) {
        if (v.kind == MK_MAP) {
            bool chunked;
            st = chunked_map(o, &chunked);
            if (st || chunked)
                return st ? st : read_chunked(o, v.n);
        }
        if (*depth == MP_MAX_DEPTH)
            return bad(o, "mp-depth", "maps and arrays are nested more than %d deep",
                       MP_MAX_DEPTH);
        uint32_t node = 0;
        if (v.kind == MK_MAP) {
            /* a node of its own, so keys of its map are told from another's */
            st = add_key(o, UINT32_MAX, NULL, 0, v.at);
            node = (uint32_t)(o->n_keys - 1);
        }
        stack[(*depth)++] = (mp_frame){.left = v.n, .path_len = o->name.len, .node = node,
                                       .map = v.kind == MK_MAP};
        return st;
    }
    if (v.kind == MK_EXT && (v.ext == 1 || v.ext == 3)) {
        mp_array a;
        st = read_array(o, v.n, &a);
        a.scalar = v.ext == 3;
        uint64_t at = a.data_at, len = a.nbytes;
        if (!st)
            st = add_tensor(o, &a, a.rank, a.shape, &at, &len, 1, a.nelems, a.nbytes);
        return st;
    }
    if (v.kind == MK_STR || v.kind == MK_BIN || v.kind == MK_EXT)
        st = skip(o, v.n);
    return st ? st : skipped(o, v.at);
}

/* The name cut back to its first len bytes. */
static void name_cut(mp_open *o, size_t len)
{
    o->name.len = len;
    if (o->name.data)
        o->name.data[len] = 0;
}

static int key_order(const void *pa, const void *pb)
{
    const mp_key *a = pa, *b = pb;
    if (a->parent != b->parent)
        return a->parent < b->parent ? -1 : 1;
    size_t n = a->len < b->len ? a->len : b->len;
    int c = n ? memcmp(a->key, b->key, n) : 0;
    if (c)
        return c;
    if (a->len != b->len)
        return a->len < b->len ? -1 : 1;
    return a->at < b->at ? -1 : a->at > b->at;
}

/* No map holds a key twice. */
static surg_status check_duplicates(mp_open *o)
{
    if (o->n_keys < 2)
        return SURG_OK;
    qsort(o->keys, o->n_keys, sizeof *o->keys, key_order);
    for (size_t i = 1; i < o->n_keys; i++) {
        const mp_key *a = &o->keys[i - 1], *b = &o->keys[i];
        if (!b->key || a->parent != b->parent || a->len != b->len ||
            memcmp(a->key, b->key, a->len) != 0)
            continue;
        char shown[80];
        name_cut(o, 0);
        o->pos = b->at;
        return bad(o, "mp-duplicate-key", "a map holds the key \"%s\" twice (first at byte %llu)",
                   tn_short(b->key, shown, 64), (unsigned long long)a->at);
    }
    return SURG_OK;
}

static surg_status walk(mp_open *o)
{
    mp_frame stack[MP_MAX_DEPTH];
    size_t depth = 0;
    mp_obj v;
    surg_status st = head(o, &v);
    if (!st && v.kind != MK_MAP)
        st = bad(o, "mp-top", "the file is not a msgpack map (Flax writes its state dict as "
                              "one)");
    if (!st && v.n) {
        bool chunked;
        st = chunked_map(o, &chunked);
        if (!st && chunked)
            st = bad(o, "mp-top", "the whole file is one chunked array, which has no name");
        st = st ? st : add_key(o, UINT32_MAX, NULL, 0, 0);
        stack[depth++] = (mp_frame){.left = v.n, .map = true};
    }
    while (!st && depth) {
        mp_frame *f = &stack[depth - 1];
        name_cut(o, f->path_len);
        if (!f->left) {
            depth--;
            continue;
        }
        f->left--;
        if (f->map) {
            st = read_key(o, f);
        } else {
            buf_printf(&o->name, "%s%llu", f->path_len ? "/" : "",
                       (unsigned long long)f->index++);
            st = o->name.failed ? dg_nomem(o->sink, o->path) : SURG_OK;
        }
        if (!st)
            st = read_value(o, stack, &depth);
    }
    if (!st)
        name_cut(o, 0);
    if (!st && o->pos != o->size)
        st = bad(o, "mp-trailing", "%llu bytes follow the top map, which ends here",
                 (unsigned long long)(o->size - o->pos));
    return st ? st : check_duplicates(o);
}

static surg_status note_skipped(mp_open *o)
{
    if (!o->n_skipped)
        return SURG_OK;
    buf b;
    buf_init(&b);
    for (size_t i = 0; i < o->n_skipped && i < MP_SHOWN; i++)
        buf_printf(&b, "%s\"%s\"", i ? ", " : "", o->skipped[i]);
    if (o->n_skipped > MP_SHOWN)
        buf_printf(&b, " and %zu more", o->n_skipped - MP_SHOWN);
    surg_status st = SURG_OK;
    if (b.failed)
        st = dg_nomem(o->sink, o->path);
    else
        dg_file(o->sink, SURG_NOTE, "mp-not-tensor", o->path,
                "%zu value%s %s not an array (numbers, strings, None, empty maps, ...), so "
                "not a tensor: %s; %s",
                o->n_skipped, o->n_skipped > 1 ? "s" : "", o->n_skipped > 1 ? "are" : "is",
                b.data, o->n_dropped ? "too many to keep (over 64 KiB, or paths over 1 MiB), they are dropped"
                : "kept in the metadata \"" MP_TREE_KEY "\" for a .msgpack output");
    buf_free(&b);
    return st;
}

/* The tree kept, as the metadata MP_TREE_KEY: the tensors' paths unless
 * they take too much (said), the values' unless one was dropped (all go:
 * the note said so). */
static surg_status keep_tree(mp_open *o)
{
    bool tensors = o->tensor_bytes <= MP_MAX_TREE_BYTES, values = !o->n_dropped;
    if (!tensors)
        dg_file(o->sink, SURG_NOTE, "mp-order", o->path,
                "the tree's paths take more than %u MiB: the order of its keys is not kept "
                "(a .msgpack output sorts them)", MP_MAX_TREE_BYTES >> 20);
    buf v;
    buf_init(&v);
    buf_putc(&v, '{');
    size_t k = 0;
    for (size_t i = 0; i < o->n_spans; i++) {
        const mp_span *x = &o->spans[i];
        if (!(x->value ? values : tensors))
            continue;
        buf_puts(&v, k++ ? ", " : "");
        buf_append(&v, o->tree.data + x->from, x->to - x->from);
    }
    buf_putc(&v, '}');
    surg_status st = SURG_OK;
    fmt_table *out = o->t;
    if (k) {
        out->h[0].meta = malloc(sizeof *out->h[0].meta);
        char *value = v.failed ? NULL : ar_strdup(o->keep, v.data);
        if (!out->h[0].meta || !value)
            st = dg_nomem(o->sink, o->path);
        else
            out->h[0].meta[out->h[0].n_meta++] = (surg_meta_entry){MP_TREE_KEY, value};
    }
    buf_free(&v);
    return st;
}

static surg_status mp_read(arena *keep, surg_sink *sink, const char *path, fmt_table *out)
{
    mp_open *o = calloc(1, sizeof *o);
    if (!o)
        return dg_nomem(sink, path);
    long page = sysconf(_SC_PAGESIZE);
    *o = (mp_open){.keep = keep, .sink = sink, .path = path, .t = out,
                   .page = page > 0 ? (uint64_t)page : 4096};
    buf_init(&o->name);
    buf_init(&o->tree);
    out->own_entries = true;
    out->src = malloc(sizeof *out->src);
    o->arc = ar_alloc(keep, sizeof *o->arc);
    surg_status st = !out->src || !o->arc ? dg_nomem(sink, path) : SURG_OK;
    if (!st)
        st = st_file_open(sink, path, &out->file);
    if (!st) {
        o->fd = out->file.fd;
        o->size = o->limit = out->file.size;
        *o->arc = (zip_archive){.path = path, .fd = o->fd, .size = o->size};
        st = walk(o);
    }
    if (!st)
        st = note_skipped(o);
    if (!st)
        st = keep_tree(o);
    if (!st && o->failed)
        st = SURG_EINVALID;
    buf_free(&o->name);
    buf_free(&o->tree);
    free(o->spans);
    free(o->keys);
    free(o);
    return st;
}

/* A file whose name says nothing is Flax's when it begins with a map whose
 * first key is a string (a top-level map never starts with "{"). */
static bool mp_sniff(const unsigned char *head, size_t n)
{
    if (n < 2)
        return false;
    size_t k = head[0] >= 0x81 && head[0] <= 0x8f ? 1 : head[0] == 0xde ? 3
                                                     : head[0] == 0xdf ? 5 : 0;
    if (!k || n <= k)
        return false;
    unsigned c = head[k];
    return (c >= 0xa1 && c <= 0xbf) || c == 0xd9 || c == 0xda || c == 0xdb;
}

static const char *const mp_suffixes[] = {".msgpack", NULL};

const fmt_reader fmt_msgpack = {
    .id = "msgpack",
    .suffixes = mp_suffixes,
    .sniff = mp_sniff,
    .open = mp_read,
    .called = "a Flax .msgpack",
    .dir_file = "flax_model.msgpack",
    .writes = true,
    .writer = &mpw_writer,
    .names = TN_MSGPACK,
    .paths_meta = MP_TREE_KEY,
};
