/* json.h: a strict JSON reader that pulls values one at a time, for the
 * checkpoint formats (safetensors headers, schemas, shard indexes) and the
 * records surg leaves in an output's metadata (ties, LoRA). Headers
 * may hold a million tensors: this reads them in one pass with no tree and
 * no allocation but the strings it keeps, where a general JSON library's tree
 * costs more than everything else surg does with a header.
 *
 * Strict as RFC 8259 and serde_json: no trailing commas, no leading zeros,
 * no control characters in strings, valid escapes and surrogate pairs, no
 * NUL in a string; duplicate keys are an error at every level; nesting is
 * bounded. Every error has a message and the byte offset where it was
 * found. The text must already be valid UTF-8. */
#ifndef SURG_JSON_H
#define SURG_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "support/arena.h"

#define JSON_MAX_DEPTH 128

typedef struct json_reader {
    const char *s;
    char *w;         /* s, writable: strings are decoded in place */
    size_t n, i;
    arena *ar;       /* where decoded strings go, when the text is read-only */
    int depth;
    bool failed;
    bool duplicate;  /* the failure was a duplicate key */
    size_t err_at;
    char err[200];
} json_reader;

void json_init(json_reader *j, const char *s, size_t n, arena *ar);
/* Read a writable text that may be changed: each string is decoded over its
 * own source text and ended with a NUL where its closing quote was, so the
 * strings live as long as the text and nothing is copied. */
void json_init_in_place(json_reader *j, char *s, size_t n);
bool json_fail(json_reader *j, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The next character after white space, or -1 at the end. */
int json_peek(json_reader *j);
/* Consume `c` (after white space) or fail. */
bool json_expect(json_reader *j, char c);
/* Only white space is left. */
bool json_end(json_reader *j);

/* Containers: `open` ('{' or '['), then json_first and json_more give 1 while
 * another member follows, 0 at the closing bracket, -1 on an error. For an
 * object the caller then reads the key with json_key. */
bool json_open(json_reader *j, char open);
int json_first(json_reader *j, char close);
int json_more(json_reader *j, char close);
/* A key and its ':'. */
bool json_key(json_reader *j, const char **key);

/* A string, decoded and NUL-terminated in the arena. */
bool json_string(json_reader *j, const char **out);
/* A non-negative integer that fits 64 bits, written as JSON writes one. */
bool json_count(json_reader *j, uint64_t *out);
/* A JSON number, as strtod reads its text. */
bool json_number(json_reader *j, double *out);
/* true or false. */
bool json_truth(json_reader *j, bool *out);
/* Any value, checked and thrown away. */
bool json_skip(json_reader *j);

/* Detect a duplicate among `n` keys (sorting them); fails naming it. */
bool json_unique(json_reader *j, const char **keys, size_t n, const char *where);

/* The keys of one object, gathered to check for duplicates at the end. */
typedef struct json_keys {
    const char **v;
    size_t n, cap;
} json_keys;

bool json_keys_add(json_reader *j, json_keys *k, const char *key);
/* Check for a duplicate, and free the list. */
bool json_keys_unique(json_reader *j, json_keys *k, const char *where);
void json_keys_free(json_keys *k);

/* Is the next value digits alone (no sign, fraction or exponent)? */
bool json_is_count(json_reader *j);

#endif
