/* lsp.h: the pieces of `surg lsp` (cmd_lsp.c) that its files share: the
 * server and its documents, messages out, positions, the abstract state a
 * statement sees, and the requests answered beside the lifecycle. */
#ifndef SURG_LSP_H
#define SURG_LSP_H

#include "cli.h"

/* JSON-RPC's and the LSP's error codes. */
enum {
    RPC_PARSE_ERROR = -32700,
    RPC_INVALID_REQUEST = -32600,
    RPC_METHOD_NOT_FOUND = -32601,
    RPC_INVALID_PARAMS = -32602,
    RPC_NOT_INITIALIZED = -32002,
};

/* ---- the framing of the Language Server Protocol (lsp_io.c) ---- */

/* A header block with Content-Length, then that many bytes of JSON; a
 * message may have at most LSP_MAX_MESSAGE bytes. */
#define LSP_MAX_MESSAGE (64u << 20)
/* The open documents' text the server keeps, at most (a didOpen or
 * didChange past it is not taken: the document stays as it was). */
#define LSP_MAX_OPEN_BYTES ((size_t)4 * SURG_RECIPE_MAX)
#define LSP_MAX_OPEN_DOCS 1024

typedef struct lsp_in {
    int fd;
    char buf[65536];
    size_t pos, len;
    size_t skip; /* bytes of a refused message still to be thrown away */
} lsp_in;

typedef enum lsp_read_rc {
    LSP_MESSAGE,   /* *body (malloc'd, NUL-terminated) holds *len bytes */
    LSP_EOF,       /* the stream ended between messages */
    LSP_TOO_LARGE, /* Content-Length *len is over LSP_MAX_MESSAGE: its body is skipped next */
    LSP_BAD_FRAME, /* no usable header, or the stream ended inside one: *why says */
    LSP_NOMEM,
} lsp_read_rc;

lsp_read_rc lsp_read(lsp_in *in, char **body, size_t *len, const char **why);
/* Send one message; false when the output is gone. */
bool lsp_send(int fd, const char *json, size_t len);

/* An open document: its text as the client last sent it. */
typedef struct lsp_doc {
    char *uri, *path; /* path: the file the URI names, or the URI itself */
    char *text;       /* set through lsp_doc_set_text */
    size_t len;
    size_t *lines;    /* where each line starts, made when first asked (lsp_text.c) */
    size_t n_lines;
    long long version;
    struct lsp_doc *next;
} lsp_doc;

typedef struct lsp_server {
    int out;
    bool initialized, shutdown, gone;
    int units;      /* position encoding: code units of 8 or 16 bits */
    char *root;     /* the workspace's folder, for a relative surg.from */
    char *from;     /* the setting surg.from, as given */
    lsp_doc *docs;
} lsp_server;

/* ---- messages out (lsp_io.c) ---- */

/* A message being written, in memory until it is sent whole. */
typedef struct lsp_msg {
    FILE *f;
    char *p;
    size_t n;
} lsp_msg;

bool lsp_msg_open(lsp_msg *m);
void lsp_msg_send(lsp_server *s, lsp_msg *m);
/* A response: `{"jsonrpc":"2.0","id":ID,"result":` is written; the caller
 * writes the result and calls lsp_reply_end. */
bool lsp_reply_start(lsp_msg *m, const surg_json *id);
void lsp_reply_end(lsp_server *s, lsp_msg *m);
void lsp_reply_raw(lsp_server *s, const surg_json *id, const char *result);
void lsp_reply_error(lsp_server *s, const surg_json *id, int code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* ---- documents and positions (lsp_text.c) ---- */

char *lsp_strndup(const char *s, size_t n);
/* A file: URI's path, percent-decoded; any other URI stands for itself. */
char *lsp_uri_path(const char *uri);
lsp_doc *lsp_find_doc(lsp_server *s, const surg_json *params);
void lsp_doc_free(lsp_doc *d);
/* The document's text is now `text` (malloc'd, len bytes; owned). */
void lsp_doc_set_text(lsp_doc *d, char *text, size_t len);
/* An LSP position object's line and character. */
bool lsp_get_position(const surg_json *pos, uint32_t *line, uint32_t *ch);
/* The offset of an LSP position; past its line's end: the line's end. */
size_t lsp_offset_at(const lsp_doc *d, int units, uint32_t line, uint32_t ch);
/* The offset of a diagnostic's line and column (1-based, in characters). */
size_t lsp_offset_of_col(const lsp_doc *d, uint32_t line, uint32_t col);
/* An LSP range of the bytes [from, to). */
void lsp_put_range(FILE *f, const lsp_doc *d, int units, size_t from, size_t to);

/* ---- the abstract state (lsp_state.c) ---- */

/* Where a document's abstract state comes from (malloc'd), and the bytes
 * of the header line that named it (both 0 for the setting); NULL: none. */
char *lsp_state_path(const lsp_server *s, const lsp_doc *d, size_t *at_from, size_t *at_to);

/* A name of the state, with its type. */
typedef struct lsp_entry {
    const char *name;
    const surg_tensor_info *t; /* a tied name's: its stored tensor's */
    const char *tied;          /* the stored name, for a tied name */
} lsp_entry;

/* The state the statement at `upto` sees: the result of the text before
 * it, names in byte order. */
typedef struct lsp_view {
    surg_ckpt *ck;
    surg_recipe *r;
    surg_program *p;
    lsp_entry *e;
    size_t n;
    bool before_failed; /* the statements before do not compile: the input's state */
} lsp_view;

/* false when there is no state to open (lsp_view_close it either way). */
bool lsp_view_open(const lsp_server *s, const lsp_doc *d, size_t upto, lsp_view *v);
void lsp_view_close(lsp_view *v);
/* `f32[3, 4]` */
void lsp_put_type(FILE *f, const surg_tensor_info *t);

/* ---- the server (lsp_server.c) ---- */

/* Serve one client over a pair of file descriptors until `exit` or the end
 * of the input: 0 after shutdown and exit, 1 otherwise (exit without
 * shutdown, the input's end, lost framing), 2 out of memory. */
int lsp_serve(int in_fd, int out_fd);

/* ---- diagnostics (lsp_check.c) and requests (lsp_features.c) ---- */

/* Check a document as `surg check` would, and publish what it says. */
void lsp_publish(lsp_server *s, const lsp_doc *d);
void lsp_hover(lsp_server *s, const surg_json *id, const surg_json *params);
void lsp_completion(lsp_server *s, const surg_json *id, const surg_json *params);
void lsp_formatting(lsp_server *s, const surg_json *id, const surg_json *params);

#endif
