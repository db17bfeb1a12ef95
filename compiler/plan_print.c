/* plan_print.c: a plan as text for people and as JSON for tools. */
#include <string.h>

#include "support/buf.h"
#include "runtime/plan.h"

static const char *kind_name(pl_kind k)
{
    static const char *names[] = {"copy", "move", "generate", "compute"};
    return names[k];
}

static void human(buf *b, uint64_t n)
{
    char s[32];
    surg_format_size(n, s, sizeof s);
    buf_puts(b, s);
}

static void type(buf *b, const pl_tensor *t)
{
    buf_printf(b, "%s[", surg_dtype_recipe_name(t->dtype));
    for (uint32_t i = 0; i < t->rank; i++)
        buf_printf(b, "%s%llu", i ? ", " : "", (unsigned long long)t->shape[i]);
    buf_putc(b, ']');
}

static size_t width(const char *s)
{
    size_t w = 0;
    for (; *s; s++)
        w += ((unsigned char)*s & 0xC0) != 0x80;
    return w;
}

static void pad(buf *b, size_t have, size_t want)
{
    for (; have < want; have++)
        buf_putc(b, ' ');
}

static void tensor_line(buf *b, const pl_tensor *t, size_t name_w, size_t type_w)
{
    buf types;
    buf_init(&types);
    type(&types, t);
    buf_printf(b, "  %s", t->name);
    pad(b, width(t->name), name_w + 2);
    buf_puts(b, types.data ? types.data : "");
    pad(b, types.len, type_w + 2);
    buf_printf(b, "%-9s ", kind_name(t->kind));
    if (t->kind == PL_COMPUTE)
        buf_printf(b, "%u pass%s: ", t->passes, t->passes == 1 ? "" : "es");
    if (t->kind == PL_COPY && t->n_segs > 1)
        buf_printf(b, "%zu byte ranges of ", t->n_segs);
    buf_puts(b, t->how ? t->how : "");
    buf_putc(b, '\n');
    if (t->n_held) {
        pad(b, 0, name_w + type_w + 6);
        buf_puts(b, "holds ");
        human(b, t->held);
        if (t->n_held > 1)
            buf_printf(b, " in %u values, the most", t->n_held);
        buf_printf(b, ": %s\n", t->held_how ? t->held_how : "");
    }
    b->failed |= types.failed; /* a line short of its type is no line */
    buf_free(&types);
}

static const char *kind_format(surg_ckpt_kind k)
{
    static const char *names[] = {"safetensors", "sharded", "schema", "npz",
                                  "npy",         "torch",   "msgpack", "orbax"};
    return (size_t)k < sizeof names / sizeof *names ? names[k] : "?";
}

/* input base  base.safetensors (safetensors): 4 tensors, 96 B; 4 used */
static void inputs_text(buf *b, const surg_plan *pl)
{
    size_t name_w = 0;
    for (size_t i = 0; i < pl->n_inputs; i++)
        name_w = width(pl->inputs[i].prefix) > name_w ? width(pl->inputs[i].prefix) : name_w;
    for (size_t i = 0; i < pl->n_inputs; i++) {
        const pl_input *x = &pl->inputs[i];
        size_t w = width(x->prefix) - 1;
        buf_printf(b, "  input %.*s", (int)w, x->prefix);
        pad(b, w, name_w + 1);
        buf_printf(b, "%s (%s): %zu tensor%s, ", x->path, kind_format(x->kind), x->n,
                   x->n == 1 ? "" : "s");
        human(b, x->bytes);
        buf_printf(b, "; %zu used\n", x->used);
    }
    buf_putc(b, '\n');
}

static void totals_row(buf *b, const char *what, uint64_t plan, uint64_t naive)
{
    buf x, y;
    buf_init(&x);
    buf_init(&y);
    human(&x, plan);
    human(&y, naive);
    buf_printf(b, "  %-12s %12s %12s\n", what, x.data ? x.data : "", y.data ? y.data : "");
    b->failed |= x.failed || y.failed;
    buf_free(&x);
    buf_free(&y);
}

char *surg_plan_text(const surg_plan *pl)
{
    buf b;
    buf_init(&b);
    size_t name_w = 0, type_w = 0;
    for (size_t i = 0; i < pl->n; i++) {
        buf t;
        buf_init(&t);
        type(&t, &pl->t[i]);
        name_w = width(pl->t[i].name) > name_w ? width(pl->t[i].name) : name_w;
        type_w = t.len > type_w ? t.len : type_w;
        b.failed |= t.failed;
        buf_free(&t);
    }
    if (pl->n_inputs && *pl->inputs[0].prefix)
        inputs_text(&b, pl); /* several inputs, each under its name */
    for (size_t i = 0; i < pl->n; i++)
        tensor_line(&b, &pl->t[i], name_w, type_w);
    for (size_t i = 0; i < pl->rec.n_ties; i++)
        buf_printf(&b, "  tied: \"%s\" is stored as \"%s\"\n", pl->rec.ties[i].key,
                   pl->rec.ties[i].value);
    for (size_t i = 0; i < pl->rec.n_edits; i++) {
        const surg_meta_entry *e = &pl->rec.edits[i];
        buf_puts(&b, "  metadata: ");
        buf_json_string(&b, e->key);
        if (e->value) {
            buf_puts(&b, " = ");
            buf_json_string(&b, e->value);
            buf_putc(&b, '\n');
        } else {
            buf_puts(&b, " dropped\n");
        }
    }
    if (pl->dead_inputs) {
        buf_printf(&b, "  never read: %zu input tensor%s (", pl->dead_inputs,
                   pl->dead_inputs == 1 ? "" : "s");
        human(&b, pl->dead_input_bytes);
        buf_puts(&b, ")\n");
    }
    if (pl->decoded_inputs) {
        buf_printf(&b, "  decoded first: %zu input array%s (", pl->decoded_inputs,
                   pl->decoded_inputs == 1 ? "" : "s");
        human(&b, pl->decoded_bytes);
        buf_puts(&b, ") not plainly in their file (deflated, big-endian, Fortran-order or "
                     "strided), into a scratch file\n");
    }
    if (pl->dead_values) {
        buf_printf(&b, "  never made: %zu value%s a later statement replaces or drops (",
                   pl->dead_values, pl->dead_values == 1 ? "" : "s");
        human(&b, pl->dead_value_bytes);
        buf_puts(&b, ")\n");
    }
    buf_printf(&b, "\n  %-12s %12s %12s\n", "", "this plan", "naive");
    totals_row(&b, "read", pl->plan.read, pl->naive.read);
    totals_row(&b, "copied", pl->plan.copied, pl->naive.copied);
    totals_row(&b, "moved", pl->plan.gathered, pl->naive.gathered);
    totals_row(&b, "generated", pl->plan.generated, pl->naive.generated);
    totals_row(&b, "computed", pl->plan.computed, pl->naive.computed);
    totals_row(&b, "written", pl->plan.written, pl->naive.written);
    totals_row(&b, "peak memory", pl->plan.peak, pl->naive.peak);
    buf_printf(&b, "  (%u thread%s; reads count every pass over the data)\n", pl->threads,
               pl->threads == 1 ? "" : "s");
    return buf_take(&b);
}

static void totals_json(buf *b, const pl_totals *t)
{
    buf_printf(b,
               "{\"read\":%llu,\"copied\":%llu,\"moved\":%llu,\"generated\":%llu,"
               "\"computed\":%llu,\"written\":%llu,\"peak\":%llu}",
               (unsigned long long)t->read, (unsigned long long)t->copied,
               (unsigned long long)t->gathered, (unsigned long long)t->generated,
               (unsigned long long)t->computed, (unsigned long long)t->written,
               (unsigned long long)t->peak);
}

static void tensor_json(buf *b, const surg_plan *pl, const pl_tensor *t)
{
    buf_puts(b, "{\"name\":");
    buf_json_string(b, t->name);
    buf_printf(b, ",\"dtype\":\"%s\",\"shape\":[", surg_dtype_st_name(t->dtype));
    for (uint32_t i = 0; i < t->rank; i++)
        buf_printf(b, "%s%llu", i ? "," : "", (unsigned long long)t->shape[i]);
    buf_printf(b, "],\"bytes\":%llu,\"source\":\"%s\",\"passes\":%u,\"read\":%llu,\"work\":%llu,",
               (unsigned long long)t->nbytes, kind_name(t->kind), t->passes,
               (unsigned long long)t->read, (unsigned long long)t->work);
    buf_printf(b, "\"held\":%llu,", (unsigned long long)t->held);
    buf_puts(b, "\"how\":");
    buf_json_string(b, t->how ? t->how : "");
    if (t->kind == PL_COPY) {
        buf_puts(b, ",\"ranges\":[");
        for (size_t i = 0; i < t->n_segs; i++) {
            buf_puts(b, i ? ",{\"input\":" : "{\"input\":");
            buf_json_string(b, surg_ckpt_tensor(pl->input, t->segs[i].input)->name);
            buf_printf(b, ",\"offset\":%llu,\"length\":%llu}",
                       (unsigned long long)t->segs[i].offset, (unsigned long long)t->segs[i].len);
        }
        buf_putc(b, ']');
    }
    buf_putc(b, '}');
}

char *surg_plan_json(const surg_plan *pl)
{
    buf b;
    buf_init(&b);
    buf_printf(&b, "{\"threads\":%u,\"header_bytes\":%llu,\"tensors\":[", pl->threads,
               (unsigned long long)pl->header_bytes);
    for (size_t i = 0; i < pl->n; i++) {
        buf_puts(&b, i ? ",\n" : "\n");
        tensor_json(&b, pl, &pl->t[i]);
    }
    buf_puts(&b, "],\n\"inputs\":[");
    for (size_t i = 0; i < pl->n_inputs; i++) {
        const pl_input *x = &pl->inputs[i];
        size_t len = strlen(x->prefix);
        buf_puts(&b, i ? ",{\"name\":" : "{\"name\":");
        buf name;
        buf_init(&name);
        buf_printf(&name, "%.*s", (int)(len ? len - 1 : 0), x->prefix);
        buf_json_string(&b, name.data ? name.data : "");
        b.failed |= name.failed;
        buf_free(&name);
        buf_puts(&b, ",\"prefix\":");
        buf_json_string(&b, x->prefix);
        buf_puts(&b, ",\"path\":");
        buf_json_string(&b, x->path);
        buf_printf(&b, ",\"format\":\"%s\",\"tensors\":%zu,\"bytes\":%llu,\"used\":%zu,"
                       "\"used_bytes\":%llu}",
                   kind_format(x->kind), x->n, (unsigned long long)x->bytes, x->used,
                   (unsigned long long)x->used_bytes);
    }
    buf_puts(&b, "],\n\"ties\":{");
    for (size_t i = 0; i < pl->rec.n_ties; i++) {
        buf_puts(&b, i ? "," : "");
        buf_json_string(&b, pl->rec.ties[i].key);
        buf_putc(&b, ':');
        buf_json_string(&b, pl->rec.ties[i].value);
    }
    buf_printf(&b,
               "},\n\"never_read\":{\"tensors\":%zu,\"bytes\":%llu},"
               "\"never_made\":{\"values\":%zu,\"bytes\":%llu},"
               "\"decoded_first\":{\"tensors\":%zu,\"bytes\":%llu},\n\"metadata\":{",
               pl->dead_inputs, (unsigned long long)pl->dead_input_bytes, pl->dead_values,
               (unsigned long long)pl->dead_value_bytes, pl->decoded_inputs,
               (unsigned long long)pl->decoded_bytes);
    for (size_t i = 0; i < pl->n_meta; i++) {
        buf_puts(&b, i ? "," : "");
        buf_json_string(&b, pl->meta[i].key);
        buf_putc(&b, ':');
        buf_json_string(&b, pl->meta[i].value);
    }
    buf_puts(&b, "},\n\"totals\":{\"plan\":");
    totals_json(&b, &pl->plan);
    buf_puts(&b, ",\"naive\":");
    totals_json(&b, &pl->naive);
    buf_puts(&b, "}}\n");
    return buf_take(&b);
}
