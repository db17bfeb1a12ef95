/* glob.h: the patterns and templates of SPEC §3.1. A pattern is compiled
 * once; matching is anchored, bounded by (pattern length × name length) with
 * no exponential backtracking, and records every wildcard as a capture. */
#ifndef SURG_GLOB_H
#define SURG_GLOB_H

#include <stdbool.h>
#include <stdint.h>

#include "support/arena.h"
#include "support/buf.h"

typedef enum gl_kind {
    GL_LIT,      /* literal text */
    GL_STAR,     /* *  : any characters inside one segment */
    GL_DSTAR,    /* ** : any characters across segments */
    GL_DSTAR_SEG,/* ** then a separator: zero or more whole segments
                    (captured without the trailing separator) */
    GL_QMARK,    /* ?  : one character inside a segment */
    GL_CLASS,    /* [..], [!..] : one character of a class */
    GL_ALT,      /* {a,b}: one of the alternatives (plain text) */
} gl_kind;

typedef struct gl_tok {
    gl_kind kind;
    const char *text; /* GL_LIT; GL_DSTAR_SEG: its separator */
    uint32_t len;
    uint8_t set[32];  /* GL_CLASS: the bytes in the class (after negation) */
    const char **alts; /* GL_ALT */
    uint32_t *alt_lens;
    uint32_t n_alts;
    uint32_t capture; /* 1-based capture number; 0 for GL_LIT */
} gl_tok;

typedef struct gl_pattern {
    const char *source;
    gl_tok *toks;
    uint32_t n_toks;
    uint32_t n_captures; /* every token but GL_LIT is one */
    uint32_t prefix_len; /* literal text every match starts with */
    const char *suffix;  /* literal text every match ends with */
    uint32_t suffix_len;
    const char *must;    /* the longest literal inside: every match holds it */
    uint32_t must_len;
    bool literal;        /* no wildcard: matches one name */
} gl_pattern;

typedef struct gl_span {
    uint32_t start, end;
} gl_span;

#define GL_MAX_CAPTURES 64

/* Compile a pattern into `ar`. On a malformed pattern returns false with a
 * message in `err` (unclosed '[' or '{', a wildcard inside '{}', ...). */
bool gl_compile(arena *ar, const char *pattern, gl_pattern *out, char *err,
                size_t err_size);

/* Memory for matching, reused across calls: the states known to fail, marked
 * with a generation stamp so nothing is cleared between names. */
/* The states (token, position) of a search that failed, one bit each: a
 * name of n bytes against t tokens takes (t + 1) * (n + 1) / 8 bytes,
 * cleared for each name (a name is at most the 100 MB of a header). */
typedef struct gl_scratch {
    uint8_t *failed;
    size_t cap; /* bytes */
} gl_scratch;

void gl_scratch_free(gl_scratch *s);

/* Match a whole name. On success caps[0] is the whole name and
 * caps[1..n_captures] the captured spans. Returns -1 when out of memory. */
int gl_match(const gl_pattern *p, const char *name, uint32_t len, gl_span *caps,
             gl_scratch *scratch);

/* A template: text with $0..$9, ${N}, $i (the index, where allowed) and $$. */
typedef struct gl_template {
    const char *source;
    struct gl_part *parts;
    uint32_t n_parts;
    uint32_t max_capture; /* highest $N used, 0 if none */
    bool uses_index;      /* $i */
    uint64_t used;        /* bit N set when $N (N < 64) appears */
} gl_template;

bool gl_template_compile(arena *ar, const char *text, bool allow_index,
                         gl_template *out, char *err, size_t err_size);

/* How many bytes gl_expand makes (without the NUL), in time linear in the
 * template's parts, allocating nothing. */
uint64_t gl_expand_len(const gl_template *t, const gl_span *caps, uint64_t index);

/* Expand for a match of `name` with `caps`; `index` replaces $i. Returns a
 * string in `ar`, or NULL when out of memory. */
char *gl_expand(arena *ar, const gl_template *t, const char *name,
                const gl_span *caps, uint64_t index);

/* One byte of a name written into a pattern that matches it literally
 * (each of *?[]{}\\ escaped by a backslash), or, with `template`, into a
 * template that makes it ($ doubled); unquoted. */
void gl_put_char(buf *b, char c, bool template);

/* A quoted string literal of `name` for a recipe: as a pattern matching
 * exactly it (each of *?[]{}\\ escaped by a backslash), or, with
 * `template`, as a template making exactly it ($ doubled). */
void gl_put_literal(buf *b, const char *name, bool template);

/* Is c a segment separator? */
static inline bool gl_is_sep(char c) { return c == '/' || c == '.'; }

#endif
