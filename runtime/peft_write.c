/* peft_write.c: a PEFT adapter directory (peft_write.h): the LoRA records
 * of the output read back, checked against its tensors and PEFT's names,
 * and turned into adapter_config.json as LoraConfig.save_pretrained writes
 * it (sorted keys, two spaces); the tensors go into one safetensors file
 * laid out as st_write.c lays any out. */
#include "runtime/peft_write.h"

#include <stdlib.h>
#include <string.h>

#include "support/diag.h"
#include "support/json.h"
#include "support/tensor_name.h"
#include "runtime/plan.h"
#include "runtime/st_header.h"

/* One adapted module: its A and B among the output's tensors. */
typedef struct pw_module {
    const char *name; /* in the arena */
    size_t a, b;
    uint64_t r;
    double alpha, dropout;
    bool rslora, fan_in_fan_out;
} pw_module;

typedef struct pw_state {
    arena ar;
    buf config;
    stw_output header_out; /* the output as its safetensors header shows it */
    surg_meta_entry *meta;
} pw_state;

/* An error naming one tensor, or two (b not NULL), shortened when long. */
static surg_status fail(surg_sink *sink, const char *path, const char *code, const char *fmt,
                        const char *a, const char *b)
{
    char x[80], y[80];
    if (b)
        dg_file(sink, SURG_ERROR, code, path, fmt, tn_short(a, x, 64), tn_short(b, y, 64));
    else
        dg_file(sink, SURG_ERROR, code, path, fmt, tn_short(a, x, 64));
    return SURG_EINVALID;
}

/* The output's tensor named `name` (lay->order is sorted by name), or
 * SIZE_MAX. */
static size_t find(const stw_layout *lay, const char *name)
{
    size_t lo = 0, hi = lay->out->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(lay->out->tensors[lay->order[mid]].name, name);
        if (c == 0)
            return lay->order[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return SIZE_MAX;
}

/* The module of an A named base_model.model.<module>.lora_A.weight, whose
 * B is named the same with lora_B: 1; 0 when the names are not PEFT's; -1
 * when out of memory. */
static int module_of(arena *ar, const char *a, const char *b, const char **out)
{
    static const char tail_a[] = ".lora_A.weight", tail_b[] = ".lora_B.weight";
    size_t p = strlen(PW_PREFIX), n = strlen(a), t = sizeof tail_a - 1;
    if (n <= p + t || strncmp(a, PW_PREFIX, p) != 0 || strcmp(a + n - t, tail_a) != 0 ||
        strlen(b) != n || strncmp(a, b, n - t) != 0 || strcmp(b + n - t, tail_b) != 0)
        return 0;
    *out = ar_strndup(ar, a + p, n - p - t);
    return *out ? 1 : -1;
}

/* The record's module, its tensors checked: A [r, in] and B [out, r]. */
static surg_status add_module(stw_layout *lay, surg_sink *sink, const char *out_path,
                              pw_state *z, const cg_lora *r, pw_module *m)
{
    const stw_output *out = lay->out;
    size_t a = find(lay, r->a), b = find(lay, r->b);
    const char *name = NULL;
    int named = module_of(&z->ar, r->a, r->b, &name);
    if (named < 0)
        return dg_nomem(sink, out_path);
    if (!named)
        return fail(sink, out_path, "peft-name",
                    "the LoRA adapter \"%s\", \"%s\" is not named as PEFT loads one: "
                    "base_model.model.<module>.lora_A.weight and .lora_B.weight "
                    "(init-lora ... style peft names it so)",
                    r->a, r->b);
    const surg_tensor_info *ta = &out->tensors[a], *tb = &out->tensors[b];
    uint64_t rank = (uint64_t)r->rank;
    if (ta->rank != 2 || tb->rank != 2 || ta->shape[0] != rank || tb->shape[1] != rank)
        return fail(sink, out_path, "peft-shape",
                    "the LoRA adapter \"%s\", \"%s\" is not shaped [r, in] and [out, r] with "
                    "its recorded rank",
                    r->a, r->b);
    *m = (pw_module){name, a, b, rank, r->alpha, r->dropout, r->rslora, r->fan_in_fan_out};
    return SURG_OK;
}

/* Every record of style peft whose A and B are in the output, as modules
 * in name order; *n_out 0 when there are none. */
static surg_status read_modules(stw_layout *lay, surg_sink *sink, const char *out_path,
                                pw_state *z, pw_module **mods, size_t *n_out)
{
    const char *text = stw_meta(lay->out, "surg.lora");
    *n_out = 0;
    *mods = malloc((lay->out->n + 1) * sizeof **mods);
    if (!*mods)
        return dg_nomem(sink, out_path);
    if (!text)
        return SURG_OK;
    json_reader j;
    json_init(&j, text, strlen(text), &z->ar);
    int more = json_open(&j, '[') ? json_first(&j, ']') : -1;
    surg_status st = SURG_OK;
    for (; more > 0 && !st; more = json_more(&j, ']')) {
        cg_lora r;
        if (!pl_lora_read(&j, &r)) {
            more = -1;
            break;
        }
        if (!r.target || r.flax ||
            find(lay, r.a) == SIZE_MAX || find(lay, r.b) == SIZE_MAX)
            continue;
        if (*n_out == lay->out->n) /* more than the tensors: some are shared */
            return fail(sink, out_path, "peft-tensor",
                        "\"%s\" is the A or B of two LoRA records", r.a, NULL);
        st = add_module(lay, sink, out_path, z, &r, &(*mods)[(*n_out)++]);
    }
    if (!st && (more < 0 || !json_end(&j))) {
        dg_file(sink, SURG_ERROR, "peft-records", out_path,
                "the LoRA records (\"surg.lora\") cannot be read: %s",
                j.failed ? j.err : "not a list of records");
        st = SURG_EINVALID;
    }
    return st;
}

static int by_name(const void *x, const void *y)
{
    return strcmp(((const pw_module *)x)->name, ((const pw_module *)y)->name);
}

/* Every tensor is one module's A or B, once; the options PEFT holds once
 * per adapter agree. */
static surg_status check_modules(const stw_layout *lay, surg_sink *sink, const char *out_path,
                                 pw_module *m, size_t n)
{
    const stw_output *out = lay->out;
    unsigned char *used = calloc(out->n + 1, 1);
    if (!used)
        return dg_nomem(sink, out_path);
    surg_status st = SURG_OK;
    for (size_t i = 0; i < n && !st; i++) {
        if (used[m[i].a] || used[m[i].b])
            st = fail(sink, out_path, "peft-tensor",
                      "\"%s\" is the A or B of two LoRA records",
                      out->tensors[used[m[i].a] ? m[i].a : m[i].b].name, NULL);
        used[m[i].a] = used[m[i].b] = 1;
    }
    for (size_t t = 0; t < out->n && !st; t++)
        if (!used[t])
            st = fail(sink, out_path, "peft-tensor",
                      "\"%s\" is no A or B of an init-lora of style peft: a PEFT adapter holds "
                      "only those",
                      out->tensors[t].name, NULL);
    free(used);
    for (size_t i = 1; i < n && !st; i++) {
        const char *what = m[i].rslora != m[0].rslora                   ? "rslora"
                           : m[i].fan_in_fan_out != m[0].fan_in_fan_out ? "fan_in_fan_out"
                           : m[i].dropout != m[0].dropout               ? "dropout"
                                                                        : NULL;
        if (!what)
            continue;
        char x[80], y[80];
        dg_file(sink, SURG_ERROR, "peft-options", out_path,
                "the adapters of \"%s\" and \"%s\" differ in %s, which a PEFT adapter's "
                "config gives once for all its modules: write them as two adapters",
                tn_short(m[0].name, x, 64), tn_short(m[i].name, y, 64), what);
        st = SURG_EINVALID;
    }
    return st;
}

/* A float as Python's json.dumps writes one (0.0, not 0). */
static void py_float(buf *b, double v)
{
    size_t at = b->len;
    buf_double(b, v);
    if (!b->failed && !strpbrk(b->data + at, ".eEn"))
        buf_puts(b, ".0");
}

/* lora_alpha: an int, as PEFT's field is, unless the recipe gave a fraction. */
static void alpha_text(buf *b, double v)
{
    if (v == (double)(long long)v && v < 1e15)
        buf_printf(b, "%lld", (long long)v);
    else
        buf_double(b, v);
}

/* A module's name as a regular expression matching it alone (rank_pattern
 * keys are matched with re.match(rf"(.*\.)?({key})$", module)). */
static void pattern_key(buf *b, const char *name)
{
    buf re;
    buf_init(&re);
    for (const char *p = name; *p; p++) {
        if (strchr("\\.^$*+?{}[]|()", *p))
            buf_putc(&re, '\\');
        buf_putc(&re, *p);
    }
    if (re.failed)
        b->failed = true;
    else
        buf_json_ascii(b, re.data ? re.data : "");
    buf_free(&re);
}

/* The modules whose rank (or alpha) is not the first's, as a JSON object. */
static void pattern(buf *b, const pw_module *m, size_t n, size_t first, bool ranks)
{
    size_t k = 0;
    buf_putc(b, '{');
    for (size_t i = 0; i < n; i++) {
        bool differs = ranks ? m[i].r != m[first].r : m[i].alpha != m[first].alpha;
        if (!differs)
            continue;
        buf_puts(b, k++ ? ",\n    " : "\n    ");
        pattern_key(b, m[i].name);
        buf_puts(b, ": ");
        if (ranks)
            buf_printf(b, "%llu", (unsigned long long)m[i].r);
        else
            alpha_text(b, m[i].alpha);
    }
    buf_puts(b, k ? "\n  }" : "}");
}

/* adapter_config.json as PeftConfigMixin.save_pretrained writes it:
 * json.dumps(config, indent=2, sort_keys=True), with the fields PEFT has
 * known since 0.7 (use_rslora), newer ones at their defaults left out, so
 * older versions load it too. `first`: the module of the first record,
 * whose rank and alpha are the config's r and lora_alpha. */
static void config_text(buf *b, const pw_module *m, size_t n, size_t first)
{
    const pw_module *f = &m[first];
    buf_puts(b, "{\n  \"alpha_pattern\": ");
    pattern(b, m, n, first, false);
    buf_puts(b, ",\n  \"base_model_name_or_path\": null,\n  \"bias\": \"none\",\n"
                "  \"fan_in_fan_out\": ");
    buf_puts(b, f->fan_in_fan_out ? "true" : "false");
    buf_puts(b, ",\n  \"inference_mode\": true,\n  \"init_lora_weights\": true,\n"
                "  \"layers_pattern\": null,\n  \"layers_to_transform\": null,\n"
                "  \"lora_alpha\": ");
    alpha_text(b, f->alpha);
    buf_puts(b, ",\n  \"lora_dropout\": ");
    py_float(b, f->dropout);
    buf_printf(b, ",\n  \"modules_to_save\": null,\n  \"peft_type\": \"LORA\",\n"
                  "  \"r\": %llu,\n  \"rank_pattern\": ",
               (unsigned long long)f->r);
    pattern(b, m, n, first, true);
    buf_puts(b, ",\n  \"revision\": null,\n  \"target_modules\": [");
    for (size_t i = 0; i < n; i++) {
        buf_puts(b, i ? ",\n    " : "\n    ");
        buf_json_ascii(b, m[i].name);
    }
    buf_puts(b, "\n  ],\n  \"task_type\": null,\n  \"use_rslora\": ");
    buf_puts(b, f->rslora ? "true" : "false");
    buf_puts(b, "\n}\n");
}

/* The safetensors header's metadata: the output's, without the LoRA
 * records (the config holds them; their targets are not in the adapter),
 * marked as surg's PEFT adapter (outpath.h). */
static surg_status header_output(pw_state *z, const stw_output *out)
{
    z->meta = ar_array(&z->ar, out->n_meta + 1, sizeof *z->meta);
    if (!z->meta)
        return SURG_ENOMEM;
    z->header_out = *out;
    z->header_out.meta = z->meta;
    z->header_out.n_meta = 0;
    z->header_out.mark = OUTP_PEFT_MARK_VALUE;
    for (size_t i = 0; i < out->n_meta; i++)
        if (strcmp(out->meta[i].key, "surg.lora") != 0)
            z->meta[z->header_out.n_meta++] = out->meta[i];
    return SURG_OK;
}

static surg_status layout_weights(stw_layout *lay, surg_sink *sink, const char *out_path)
{
    pw_state *z = lay->state;
    size_t n = lay->out->n;
    lay->files = calloc(1, sizeof *lay->files);
    if (!lay->files)
        return dg_nomem(sink, out_path);
    stw_file *f = &lay->files[0];
    lay->n_files = 1;
    buf_init(&f->header);
    f->path = strdup(PW_WEIGHTS);
    f->idx = malloc((n ? n : 1) * sizeof *f->idx);
    if (!f->path || !f->idx)
        return dg_nomem(sink, out_path);
    for (size_t i = 0; i < n; i++)
        f->idx[f->n++] = i;
    if (stw_header(&z->header_out, f->idx, f->n, &f->header) != SURG_OK)
        return dg_nomem(sink, out_path);
    if (f->header.len - 8 > ST_MAX_HEADER) {
        dg_file(sink, SURG_ERROR, "out-header-too-large", out_path,
                "the header of " PW_WEIGHTS " would be %zu bytes, more than the %u a reader "
                "accepts: shorten the names",
                f->header.len - 8, ST_MAX_HEADER);
        return SURG_EINVALID;
    }
    uint64_t at = f->header.len;
    for (size_t i = 0; i < f->n; i++) {
        lay->file_of[f->idx[i]] = 0;
        lay->offset[f->idx[i]] = at;
        at += lay->out->tensors[f->idx[i]].nbytes;
    }
    f->size = at;
    return SURG_OK;
}

static surg_status pw_make(surg_sink *sink, const char *out_path, const stw_output *out,
                           stw_layout *lay)
{
    pw_state *z = calloc(1, sizeof *z);
    lay->state = z;
    if (!z)
        return dg_nomem(sink, out_path);
    ar_init(&z->ar);
    buf_init(&z->config);
    for (size_t i = 0; out->same_as && i < out->n; i++)
        if (out->same_as[i] != SIZE_MAX)
            return fail(sink, out_path, "peft-tie",
                        "\"%s\" is a tied name: a PEFT adapter holds each tensor as an array "
                        "of its own; untie it",
                        out->tensors[i].name, NULL);
    pw_module *m;
    size_t n;
    surg_status st = read_modules(lay, sink, out_path, z, &m, &n);
    if (!st && n == 0) {
        dg_file(sink, SURG_ERROR, "peft-none", out_path,
                "a PEFT adapter holds the A and B of each init-lora of style peft, and "
                "the output has none");
        st = SURG_EINVALID;
    }
    if (!st)
        st = check_modules(lay, sink, out_path, m, n);
    if (!st) {
        const pw_module *first = &m[0];
        pw_module keep = *first;
        qsort(m, n, sizeof *m, by_name);
        size_t at = 0;
        while (at < n && strcmp(m[at].name, keep.name) != 0)
            at++;
        config_text(&z->config, m, n, at < n ? at : 0);
        st = z->config.failed ? dg_nomem(sink, out_path) : SURG_OK;
    }
    free(m);
    if (!st)
        st = header_output(z, out) ? dg_nomem(sink, out_path) : SURG_OK;
    return st ? st : layout_weights(lay, sink, out_path);
}

static surg_status pw_open(stw_layout *lay, surg_sink *sink)
{
    pw_state *z = lay->state;
    stw_file *f = &lay->files[0];
    of_file *config;
    surg_status st = of_dir_file(lay->dir, sink, f->path, &f->of);
    if (!st)
        st = of_reserve(f->of, sink, f->size);
    if (!st)
        st = of_write(f->of, sink, f->header.data, f->header.len);
    if (!st)
        st = of_dir_file(lay->dir, sink, PW_CONFIG, &config);
    if (!st)
        st = of_write(config, sink, z->config.data, z->config.len);
    return st;
}

static surg_status pw_finish(stw_layout *lay, surg_sink *sink)
{
    (void)lay;
    (void)sink;
    return SURG_OK; /* every byte is written; the directory syncs its files */
}

static void pw_free(stw_layout *lay)
{
    pw_state *z = lay->state;
    if (!z)
        return;
    buf_free(&z->config);
    ar_free(&z->ar);
    free(z);
    lay->state = NULL;
}

const stw_writer pw_writer = {
    .dir = true,
    .make = pw_make,
    .open = pw_open,
    .finish = pw_finish,
    .free = pw_free,
};
