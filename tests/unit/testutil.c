/* testutil.c: shared test helpers. */
#include "testutil.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void record(const surg_diag *d, void *user)
{
    recorder *r = user;
    size_t n = strlen(r->codes);
    snprintf(r->codes + n, sizeof r->codes - n, "%s ", d->code ? d->code : "-");
    n = strlen(r->messages);
    snprintf(r->messages + n, sizeof r->messages - n, "%s\n", d->message);
}

void rec_init(recorder *r)
{
    memset(r, 0, sizeof *r);
    r->sink.fn = record;
    r->sink.user = r;
}

int rec_has_code(const recorder *r, const char *code)
{
    char key[128];
    snprintf(key, sizeof key, "%s ", code);
    for (const char *p = r->codes; (p = strstr(p, key)); p++)
        if (p == r->codes || p[-1] == ' ')
            return 1;
    return 0;
}

int rec_has_text(const recorder *r, const char *text)
{
    return strstr(r->messages, text) != NULL;
}

static char dir[256];

const char *tmp_dir(void)
{
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "/tmp/surg-test-XXXXXX");
        if (!mkdtemp(dir))
            abort();
    }
    return dir;
}

void tmp_cleanup(void)
{
    if (dir[0]) {
        char cmd[300];
        snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
        if (system(cmd) != 0)
            fprintf(stderr, "could not remove %s\n", dir);
        dir[0] = 0;
    }
}

const char *tmp_path(const char *name)
{
    static char paths[8][512];
    static int slot;
    char *p = paths[slot++ % 8];
    snprintf(p, 512, "%s/%s", tmp_dir(), name);
    return p;
}

void write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

unsigned char *read_all(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *p = malloc((size_t)n + 1);
    if (p && fread(p, 1, (size_t)n, f) != (size_t)n) {
        free(p);
        p = NULL;
    }
    fclose(f);
    *len = (size_t)n;
    return p;
}
