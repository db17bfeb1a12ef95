/* plan_meta.c: an output's metadata from the plan: the input's own, and the
 * records of the tensors under the output's prefix (tied names, LoRA
 * records), written as JSON with the prefix taken off. */
#include <string.h>

#include "support/buf.h"
#include "support/json.h"
#include "runtime/format.h"
#include "runtime/plan.h"
#include "runtime/torch.h"

/* `name` without `prefix`, or NULL when it is not under it. */
static const char *under(const char *name, const char *prefix)
{
    size_t n = strlen(prefix);
    return strncmp(name, prefix, n) == 0 ? name + n : NULL;
}

static void lora_json(buf *b, const cg_lora *r, const char *prefix)
{
    buf_printf(b, "{\"r\":%lld,\"lora_alpha\":", r->rank);
    buf_double(b, r->alpha);
    buf_printf(b, ",\"style\":\"%s\",\"target\":", r->flax ? "flax" : "peft");
    buf_json_string(b, under(r->target, prefix));
    buf_puts(b, ",\"lora_a\":");
    buf_json_string(b, under(r->a, prefix));
    buf_puts(b, ",\"lora_b\":");
    buf_json_string(b, under(r->b, prefix));
    /* PEFT's options, when the recipe gave them */
    if (r->rslora)
        buf_puts(b, ",\"use_rslora\":true");
    if (r->fan_in_fan_out)
        buf_puts(b, ",\"fan_in_fan_out\":true");
    if (r->dropout != 0) {
        buf_puts(b, ",\"lora_dropout\":");
        buf_double(b, r->dropout);
    }
    buf_putc(b, '}');
}

bool pl_lora_read(struct json_reader *j, cg_lora *r)
{
    *r = (cg_lora){0};
    r->alpha = -1;
    const char *style = NULL;
    uint64_t rank = 0;
    bool have_rank = false;
    if (!json_open(j, '{'))
        return false;
    int more = json_first(j, '}');
    for (; more > 0; more = json_more(j, '}')) {
        const char *key;
        if (!json_key(j, &key))
            return false;
        bool ok = strcmp(key, "r") == 0                ? (have_rank = json_count(j, &rank))
                  : strcmp(key, "lora_alpha") == 0     ? json_number(j, &r->alpha)
                  : strcmp(key, "style") == 0          ? json_string(j, &style)
                  : strcmp(key, "target") == 0         ? json_string(j, &r->target)
                  : strcmp(key, "lora_a") == 0         ? json_string(j, &r->a)
                  : strcmp(key, "lora_b") == 0         ? json_string(j, &r->b)
                  : strcmp(key, "use_rslora") == 0     ? json_truth(j, &r->rslora)
                  : strcmp(key, "fan_in_fan_out") == 0 ? json_truth(j, &r->fan_in_fan_out)
                  : strcmp(key, "lora_dropout") == 0   ? json_number(j, &r->dropout)
                                                       : json_skip(j);
        if (!ok)
            return false;
    }
    if (more < 0)
        return false;
    bool flax = style && strcmp(style, "flax") == 0, peft = style && strcmp(style, "peft") == 0;
    if (!have_rank || rank == 0 || rank > (1u << 20) || r->alpha < 0 || !(flax || peft) ||
        !r->a || !r->b || !(r->dropout >= 0 && r->dropout <= 1) || (flax && r->fan_in_fan_out))
        r->target = NULL;
    r->rank = (long long)rank;
    r->flax = flax;
    return true;
}

bool pl_records_json(const pl_records *r, const char *prefix, bool ties, arena *ar, char **out)
{
    buf b;
    buf_init(&b);
    size_t k = 0;
    buf_putc(&b, ties ? '{' : '[');
    if (ties) {
        for (size_t i = 0; i < r->n_ties; i++) {
            const char *alias = under(r->ties[i].key, prefix);
            const char *target = under(r->ties[i].value, prefix);
            if (!alias || !target)
                continue;
            buf_puts(&b, k++ ? "," : "");
            buf_json_string(&b, alias);
            buf_putc(&b, ':');
            buf_json_string(&b, target);
        }
    } else {
        for (const cg_lora *x = r->lora; x; x = x->next)
            if (under(x->target, prefix) && under(x->a, prefix) && under(x->b, prefix)) {
                buf_puts(&b, k++ ? "," : "");
                lora_json(&b, x, prefix);
            }
    }
    buf_putc(&b, ties ? '}' : ']');
    *out = b.failed || !k ? NULL : ar_strdup(ar, b.data);
    bool ok = !b.failed && (!k || *out);
    buf_free(&b);
    return ok;
}

/* The path-keyed entry `key` of the paths under `prefix`, as JSON with the
 * prefix taken off, in *out; NULL when there are none. */
static bool paths_json(const pl_records *r, const char *key, const char *prefix, arena *ar,
                       char **out)
{
    buf b;
    buf_init(&b);
    size_t k = 0;
    buf_putc(&b, '{');
    for (size_t i = 0; i < r->n_paths; i++) {
        const char *p = strcmp(r->paths[i].key, key) == 0 ? under(r->paths[i].path, prefix)
                                                          : NULL;
        if (!p || !*p)
            continue;
        buf_puts(&b, k++ ? ", " : "");
        buf_json_string(&b, p);
        buf_puts(&b, ": ");
        buf_json_string(&b, r->paths[i].value);
    }
    buf_putc(&b, '}');
    *out = b.failed || !k ? NULL : ar_strdup(ar, b.data);
    bool ok = !b.failed && (!k || *out);
    buf_free(&b);
    return ok;
}

/* The recipe's edit of `key`, or NULL. */
static const surg_meta_entry *edit_of(const pl_records *r, const char *key)
{
    size_t lo = 0, hi = r->n_edits;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        int c = strcmp(r->edits[mid].key, key);
        if (c == 0)
            return &r->edits[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

bool pl_drops_format(const pl_records *r)
{
    const surg_meta_entry *e = edit_of(r, "format");
    return e && !e->value;
}

/* Whether the path-keyed entry `key` came before entry i of r->paths. */
static bool key_seen(const pl_records *r, size_t i, const char *key)
{
    for (size_t j = 0; j < i; j++)
        if (strcmp(r->paths[j].key, key) == 0)
            return true;
    return false;
}

surg_status pl_metadata(const surg_plan *pl, const char *prefix, arena *ar,
                        surg_meta_entry **out, size_t *n)
{
    const surg_ckpt *from = surg_ckpt_mounted(pl->input, prefix); /* its own file's metadata */
    size_t in = surg_ckpt_meta_count(from);
    surg_meta_entry *m = ar_array(ar, in + 3 + pl->rec.n_paths + pl->rec.n_edits, sizeof *m);
    if (!m)
        return SURG_ENOMEM;
    char *ties, *lora;
    if (!pl_records_json(&pl->rec, prefix, true, ar, &ties) ||
        !pl_records_json(&pl->rec, prefix, false, ar, &lora))
        return SURG_ENOMEM;
    size_t k = 0;
    for (size_t i = 0; i < in; i++) {
        const surg_meta_entry *e = surg_ckpt_meta(from, i);
        /* The input's records were read back as tied names and LoRA
         * records: they are all in the plan's, renamed and dropped as the
         * recipe said. */
        bool ours = strcmp(e->key, "surg.ties") == 0 || strcmp(e->key, "surg.lora") == 0 ||
                    fmt_paths_meta(e->key);
        if (!ours && !edit_of(&pl->rec, e->key)) /* an edited key is the recipe's */
            m[k++] = *e;
    }
    for (size_t i = 0; i < pl->rec.n_edits; i++)
        if (pl->rec.edits[i].value)
            m[k++] = pl->rec.edits[i];
    /* The path-keyed entries were read back as paths too: each is written
     * anew from them, once per key. */
    for (size_t i = 0; i < pl->rec.n_paths; i++) {
        const char *key = pl->rec.paths[i].key;
        char *v;
        if (key_seen(&pl->rec, i, key) || strcmp(key, PT_VALUES_KEY) == 0)
            continue; /* a torch input's values are its own: meta value() lifts them */
        if (!paths_json(&pl->rec, key, prefix, ar, &v))
            return SURG_ENOMEM;
        if (v)
            m[k++] = (surg_meta_entry){key, v};
    }
    if (ties)
        m[k++] = (surg_meta_entry){"surg.ties", ties};
    if (lora)
        m[k++] = (surg_meta_entry){"surg.lora", lora};
    /* Sorted by key, as the writer wants them. */
    for (size_t i = 1; i < k; i++)
        for (size_t j = i; j && strcmp(m[j - 1].key, m[j].key) > 0; j--) {
            surg_meta_entry t = m[j];
            m[j] = m[j - 1];
            m[j - 1] = t;
        }
    *out = m;
    *n = k;
    return SURG_OK;
}
