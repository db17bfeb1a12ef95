/* fuzz_schema.c: libFuzzer harness for schema files (SPEC §2). The input is
 * a .json schema. It must be refused with an error diagnostic, or open into
 * tables that keep their invariants; then the schema it prints must reopen
 * to the same abstract state (names, dtypes, shapes, metadata) and print the
 * same text again. A schema holds no data: asking for it is a usage error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_util.h"
#include "surg/surg.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char *schema_of(const surg_ckpt *ck)
{
    char *text = NULL;
    if (surg_ckpt_schema_json(ck, &text) != SURG_OK || !text)
        fz_fail("surg_ckpt_schema_json failed", NULL);
    return text;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = fz_path(0, "in.json");
    const char *out = fz_path(1, "out.json");
    const char *nowhere = fz_path(2, "never.safetensors");
    fz_write(in, data, size);

    size_t total = 0;
    surg_sink sink = fz_sink(&total);
    surg_ckpt *ck = NULL;
    if (surg_ckpt_open(in, &sink, &ck) != SURG_OK) {
        if (ck || sink.errors == 0)
            fz_fail("a refused schema gave a checkpoint or no error", NULL);
        return 0;
    }
    if (surg_ckpt_kind_of(ck) != SURG_CKPT_SCHEMA)
        fz_fail("a .json file opened as another kind", NULL);
    fz_check_tables(ck);

    const void *p = &p;
    if (surg_ckpt_count(ck) &&
        (surg_ckpt_data(ck, 0, &sink, &p) != SURG_EUSAGE || p != NULL))
        fz_fail("a schema gave tensor data", NULL);
    if (surg_ckpt_write(ck, nowhere, NULL, &sink) != SURG_EUSAGE)
        fz_fail("a schema was written as safetensors", NULL);

    char *text = schema_of(ck);
    fz_write(out, text, strlen(text));
    surg_ckpt *back = NULL;
    if (surg_ckpt_open(out, &sink, &back) != SURG_OK || !back)
        fz_fail("the printed schema does not open", NULL);
    fz_check_tables(back);
    fz_same_tensors(ck, back);
    if (surg_ckpt_meta_count(ck) != surg_ckpt_meta_count(back))
        fz_fail("the metadata count changed", NULL);
    for (size_t i = 0; i < surg_ckpt_meta_count(ck); i++) {
        const surg_meta_entry *a = surg_ckpt_meta(ck, i), *b = surg_ckpt_meta(back, i);
        if (strcmp(a->key, b->key) != 0 || strcmp(a->value, b->value) != 0)
            fz_fail("a metadata entry changed", a->key);
    }
    char *again = schema_of(back);
    if (strcmp(text, again) != 0)
        fz_fail("printing the printed schema changed it", NULL);
    free(again);
    free(text);
    surg_ckpt_close(back);
    surg_ckpt_close(ck);
    return 0;
}
