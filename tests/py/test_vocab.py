"""test_vocab.py: vocabularies and heads (issue 16 section 5) through `surg
run`, every value against NumPy (inputs written and outputs read with stnp):

  * an embedding and its output head grown by N rows, each the mean of the
    existing rows -- Hugging Face's resize_token_embeddings with
    mean_resizing where the old rows' covariance is not positive definite
    (it then copies the mean; otherwise it samples around it with 1e-9 of
    the covariance): the exact mean, computed in float64 and rounded once
    to the tensor's dtype (f32 and bf16); pad_to_multiple_of's size;
  * the same for a head tied to the embedding (a surg.ties record): the
    head stays tied and follows the grown embedding;
  * truncation (the first rows kept);
  * key/value heads of grouped-query attention repeated as Hugging Face's
    repeat_kv does (each kv head n_rep times in a row), applied to the
    reshaped k_proj/v_proj weights and bias, against np.repeat, and a tiny
    attention in NumPy: grouped-query attention with the old weights and
    plain multi-head attention with the repeated ones give the same output;
  * the Adam slots under `mirror`: zero rows for new rows, sliced with a
    truncation, repeated with the heads;
  * the resize statement (resize_token_embeddings' new size, with
    pad_to_multiple_of) against the same NumPy definitions;
  * the same bytes on 1 and 3 threads.

Compile errors (slots that cannot follow) are golden files under
tests/golden/check/.

usage: test_vocab.py --surg SURG [unittest args]
"""

import argparse
import json
import os
import sys
import tempfile
import unittest

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402

ARGS = None  # filled in by main()

F = np.float32
ADAM = 'mirror "model." -> "opt.mu.", "opt.nu."\n'


def f64_to_bf16(v):
    """float64 values (normal in bf16's range) -> bf16 bit patterns, rounded
    once to nearest, ties to even: the mantissa scaled to 8 significant bits
    is exact in float64, so np.rint rounds it as the definition says."""
    m, e = np.frexp(np.asarray(v, dtype=np.float64))
    r = np.ldexp(np.rint(m * 256.0), e - 8)  # a bf16 value, exact in f32
    return (runutil.f32_bits(r.astype(F)) >> 16).astype(np.uint16)


def mean_rows(w, n):
    """Hugging Face's mean resizing where it copies the mean: n new rows,
    each the mean over the old rows (here exact, rounded once to f32)."""
    mean = w.astype(np.float64).mean(axis=0)
    return np.concatenate([w, np.repeat(mean[None, :].astype(F), n, axis=0)], axis=0)


def pad_to_multiple_of(n, m):
    """resize_token_embeddings' rounding of the new size."""
    return ((n + m - 1) // m) * m


def repeat_kv(states, n_rep):
    """Hugging Face's repeat_kv on [batch, kv_heads, seq, head_dim]: expand a
    new axis after the heads, then merge it in (each head n_rep times in a
    row)."""
    b, kv, s, d = states.shape
    return np.broadcast_to(states[:, :, None], (b, kv, n_rep, s, d)).reshape(b, kv * n_rep, s, d)


def attention(x, wq, wk, wv, heads, kv_heads, head_dim, bk=None, bv=None):
    """Causal-free scaled dot-product attention of a Llama-style layer
    (no rotary, no output projection) on x [seq, hidden], in float64, the
    keys and values repeated with repeat_kv when kv_heads < heads."""
    x = x.astype(np.float64)
    s = x.shape[0]
    q = (x @ wq.T.astype(np.float64)).reshape(s, heads, head_dim).transpose(1, 0, 2)[None]
    k = x @ wk.T.astype(np.float64) + (0 if bk is None else bk)
    v = x @ wv.T.astype(np.float64) + (0 if bv is None else bv)
    k = k.reshape(s, kv_heads, head_dim).transpose(1, 0, 2)[None]
    v = v.reshape(s, kv_heads, head_dim).transpose(1, 0, 2)[None]
    k, v = repeat_kv(k, heads // kv_heads), repeat_kv(v, heads // kv_heads)
    a = q @ k.transpose(0, 1, 3, 2) / np.sqrt(head_dim)
    a = np.exp(a - a.max(axis=-1, keepdims=True))
    a /= a.sum(axis=-1, keepdims=True)
    return (a @ v)[0]


class Case(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-vocab-")
        self.tmp = self._tmp.name
        self.rng = np.random.default_rng(16)

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, name):
        return os.path.join(self.tmp, name)

    def normal(self, *shape):
        return self.rng.standard_normal(shape).astype(F)

    def run_recipe(self, text, tensors, *opts, metadata=None, out="out.safetensors"):
        """Run TEXT on TENSORS (stnp entries); the output's arrays by name
        and its metadata."""
        inp = self.path("in.safetensors")
        stnp.save(inp, tensors, metadata=metadata)
        r = self.path("r.surg")
        with open(r, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        code, _, err = runutil.run_surg(ARGS.surg, "run", r, inp, self.path(out), *opts)
        self.assertEqual(code, 0, "surg run failed\n%s\n%s" % (text, err))
        got, meta, _ = stnp.load(self.path(out))
        return {k: v[1] for k, v in got.items()}, meta or {}

    def with_adam(self, params):
        """params (name under "model." -> array) with Adam's mu and nu."""
        t = {}
        for name, w in params.items():
            t["model." + name] = ("F32", w)
            t["opt.mu." + name] = ("F32", self.normal(*w.shape))
            t["opt.nu." + name] = ("F32", np.abs(self.normal(*w.shape)))
        return t


GROW = "concat(x, repeat(mean(x, axis=0, keepdims=true), %d, 0), 0)"


class TestGrow(Case):
    def test_embedding_and_head_grow_by_the_mean(self):
        """32000-like vocabulary 13 -> pad_to_multiple_of(13 + 2, 8) = 16:
        3 new rows of the mean in the embedding and the (untied) head, their
        Adam moments zero; the old rows and moments unchanged."""
        emb, head = self.normal(13, 6), self.normal(13, 6)
        t = self.with_adam({"embed_tokens.weight": emb, "lm_head.weight": head})
        n = pad_to_multiple_of(13 + 2, 8) - 13
        self.assertEqual(n, 3)
        got, _ = self.run_recipe(ADAM + 'map "model.{embed_tokens,lm_head}.weight" = ' + GROW % n, t)
        for name, w in (("embed_tokens.weight", emb), ("lm_head.weight", head)):
            np.testing.assert_array_equal(got["model." + name], mean_rows(w, n), name)
            for slot in ("mu", "nu"):
                old = t["opt.%s.%s" % (slot, name)][1]
                want = np.concatenate([old, np.zeros((n, 6), F)])
                np.testing.assert_array_equal(got["opt.%s.%s" % (slot, name)], want)

    def test_bf16_embedding_with_f32_moments(self):
        """A bf16 embedding: the mean in float64 rounded once to bf16; the
        f32 moments get f32 zero rows."""
        w = self.normal(9, 5)
        bits = runutil.f32_to_bf16(w)
        vals = runutil.bf16_to_f32(bits).astype(np.float64)
        t = {"model.embed.weight": ("BF16", bits),
             "opt.mu.embed.weight": ("F32", self.normal(9, 5)),
             "opt.nu.embed.weight": ("F32", self.normal(9, 5))}
        got, _ = self.run_recipe(ADAM + 'map "model.embed.weight" = ' + GROW % 2, t)
        want = np.concatenate([bits, np.repeat(f64_to_bf16(vals.mean(axis=0))[None], 2, 0)])
        np.testing.assert_array_equal(got["model.embed.weight"], want)
        self.assertEqual(got["opt.mu.embed.weight"].dtype, F)
        np.testing.assert_array_equal(got["opt.mu.embed.weight"][9:], np.zeros((2, 5), F))

    def test_bias_grows_by_its_mean(self):
        """An output head's bias: new entries the mean of the old ones
        (Hugging Face draws them from N(mean, 1e-9 std): the mean), here
        with pad's scalar value."""
        b = self.normal(7)
        got, _ = self.run_recipe('map "head.bias" = pad(x, 0, 0, 3, mean(x))', {"head.bias": ("F32", b)})
        want = np.concatenate([b, np.full(3, F(b.astype(np.float64).mean()))])
        np.testing.assert_array_equal(got["head.bias"], want)

    def test_tied_head_follows(self):
        """A head tied to the embedding (surg.ties): growing the embedding
        grows the head, which stays tied; it needs no slots of its own."""
        emb = self.normal(10, 4)
        t = {"model.embed.weight": ("F32", emb),
             "opt.mu.embed.weight": ("F32", self.normal(10, 4)),
             "opt.nu.embed.weight": ("F32", self.normal(10, 4))}
        ties = {"surg.ties": json.dumps({"model.head.weight": "model.embed.weight"})}
        got, meta = self.run_recipe(ADAM + 'map "model.embed.weight" = ' + GROW % 6, t,
                                    metadata=ties)
        self.assertEqual(json.loads(meta["surg.ties"]), {"model.head.weight": "model.embed.weight"})
        self.assertNotIn("model.head.weight", got)
        np.testing.assert_array_equal(got["model.embed.weight"], mean_rows(emb, 6))
        np.testing.assert_array_equal(got["opt.nu.embed.weight"][10:], np.zeros((6, 4), F))
        # Matched together, the tied name follows too (no value of its own).
        got, meta = self.run_recipe(ADAM + 'map "model.{embed,head}.weight" = ' + GROW % 6, t,
                                    metadata=ties)
        self.assertEqual(json.loads(meta["surg.ties"]), {"model.head.weight": "model.embed.weight"})
        np.testing.assert_array_equal(got["model.embed.weight"], mean_rows(emb, 6))

    def test_truncate(self):
        """The first 5 rows kept, the slots sliced alike."""
        t = self.with_adam({"embed.weight": self.normal(8, 3), "head.weight": self.normal(8, 3)})
        got, _ = self.run_recipe(ADAM + 'map "model.{embed,head}.weight" = slice(x, 0, 0, 5)', t)
        for name in ("embed.weight", "head.weight"):
            for tree in ("model.", "opt.mu.", "opt.nu."):
                np.testing.assert_array_equal(got[tree + name], t[tree + name][1][:5])

    def test_flax_head_grows_along_columns(self):
        """A Flax head kernel [hidden, vocab] grows along axis 1; pad adds
        zero columns, whose moments are zero too."""
        k = self.normal(4, 6)
        t = self.with_adam({"head.kernel": k})
        got, _ = self.run_recipe(
            ADAM + 'map "model.head.kernel" = concat(x, repeat(mean(x, axis=1, keepdims=true), 2, 1), 1)', t)
        mean = k.astype(np.float64).mean(axis=1, keepdims=True).astype(F)
        np.testing.assert_array_equal(got["model.head.kernel"], np.concatenate([k, mean, mean], 1))
        np.testing.assert_array_equal(got["opt.mu.head.kernel"],
                                      np.concatenate([t["opt.mu.head.kernel"][1], np.zeros((4, 2), F)], 1))

    def test_pieces_of_x_and_new_rows(self):
        """Every operand of concat that holds x's places carries its slots;
        the others (another tensor, a value of another shape) are new: zero
        slots. pad's places are new and 0 in the slots, whatever the value's
        pad value."""
        w, extra = self.normal(4, 3), self.normal(2, 3)
        t = self.with_adam({"w": w})
        t["extra"] = ("F32", extra)
        got, _ = self.run_recipe(
            ADAM + 'map "model.w" = concat(slice(x, 0, 2), tensor("extra"), '
            'pad(slice(x, 0, 0, 2), 0, 1, 0, 7), mean(x, axis=0, keepdims=true), 0)', t)
        mean = w.astype(np.float64).mean(axis=0, keepdims=True).astype(F)
        np.testing.assert_array_equal(
            got["model.w"], np.concatenate([w[2:], extra, np.full((1, 3), 7, F), w[:2], mean]))
        mu = t["opt.mu.w"][1]
        z = np.zeros((1, 3), F)
        np.testing.assert_array_equal(got["opt.mu.w"], np.concatenate([mu[2:], z, z, z, mu[:2], z]))

    def test_threads(self):
        """The same bytes on 1 and 3 threads, over many chunks."""
        t = self.with_adam({"embed.weight": self.normal(20000, 48)})
        text = ADAM + 'map "model.embed.weight" = ' + GROW % 40
        a, _ = self.run_recipe(text, t, "--threads", "1", out="a.safetensors")
        b, _ = self.run_recipe(text, t, "--threads", "3", out="b.safetensors")
        with open(self.path("a.safetensors"), "rb") as fa, open(self.path("b.safetensors"), "rb") as fb:
            self.assertEqual(fa.read(), fb.read())
        np.testing.assert_array_equal(a["model.embed.weight"], mean_rows(t["model.embed.weight"][1], 40))


class TestResize(Case):
    """resize P axis A to S [multiple M]: resize_token_embeddings(S,
    pad_to_multiple_of=M) with mean resizing, for every match."""

    def test_grow_to_a_multiple_and_truncate(self):
        emb, head, bias = self.normal(13, 6), self.normal(13, 6), self.normal(13)
        t = self.with_adam({"embed_tokens.weight": emb, "lm_head.weight": head,
                            "lm_head.bias": bias})
        size = pad_to_multiple_of(15, 8)
        got, _ = self.run_recipe(
            ADAM + 'resize "model.{embed_tokens,lm_head}.weight" axis 0 to 15 multiple 8\n'
            'resize "model.lm_head.bias" axis 0 to 15 multiple 8', t)
        for name, w in (("embed_tokens.weight", emb), ("lm_head.weight", head)):
            np.testing.assert_array_equal(got["model." + name], mean_rows(w, size - 13))
            np.testing.assert_array_equal(got["opt.nu." + name][13:], np.zeros((size - 13, 6), F))
            np.testing.assert_array_equal(got["opt.nu." + name][:13], t["opt.nu." + name][1])
        np.testing.assert_array_equal(
            got["model.lm_head.bias"],
            np.concatenate([bias, np.full(size - 13, F(bias.astype(np.float64).mean()))]))
        got, _ = self.run_recipe(ADAM + 'resize "model.**" axis 0 to 9', t)
        for name in ("embed_tokens.weight", "lm_head.weight", "lm_head.bias"):
            for tree in ("model.", "opt.mu.", "opt.nu."):
                np.testing.assert_array_equal(got[tree + name], t[tree + name][1][:9])

    def test_tied_head_and_columns(self):
        """A tied head follows its embedding; a Flax kernel grows along
        axis 1; a tensor already of the size is left as it is."""
        emb, k = self.normal(10, 4), self.normal(4, 10)
        t = {"embed.weight": ("F32", emb), "head.kernel": ("F32", k), "same": ("F32", self.normal(3, 8))}
        ties = {"surg.ties": json.dumps({"head.weight": "embed.weight"})}
        got, meta = self.run_recipe('resize "{embed,head}.weight" axis 0 to 12\n'
                                    'resize "head.kernel" axis 1 to 12\n'
                                    'resize "same" axis 1 to 8', t, metadata=ties)
        self.assertEqual(json.loads(meta["surg.ties"]), {"head.weight": "embed.weight"})
        np.testing.assert_array_equal(got["embed.weight"], mean_rows(emb, 2))
        np.testing.assert_array_equal(got["head.kernel"], mean_rows(k.T, 2).T)
        np.testing.assert_array_equal(got["same"], t["same"][1])
        # The size it has: nothing changes, the tied head matched with it included.
        got, meta = self.run_recipe('resize "{embed,head}.weight" axis 0 to 10', t, metadata=ties)
        self.assertEqual(json.loads(meta["surg.ties"]), {"head.weight": "embed.weight"})
        np.testing.assert_array_equal(got["embed.weight"], emb)


class TestRepeatKV(Case):
    HEADS, KV, HD, HIDDEN = 8, 2, 3, 24

    def recipe(self):
        h, kv, hd, hid = self.HEADS, self.KV, self.HD, self.HIDDEN
        rep = h // kv
        return (ADAM +
                'map "model.layers.*.self_attn.{k,v}_proj.weight" = '
                'reshape(repeat(reshape(x, %d, %d, %d), %d, 0), %d, %d)\n'
                'map "model.layers.*.self_attn.{k,v}_proj.bias" = '
                'reshape(repeat(reshape(x, %d, %d), %d, 0), %d)\n'
                % (kv, hd, hid, rep, h * hd, hid, kv, hd, rep, h * hd))

    def test_weights_slots_and_attention(self):
        h, kv, hd, hid = self.HEADS, self.KV, self.HD, self.HIDDEN
        rep = h // kv
        p = {}
        for i in range(2):
            a = "layers.%d.self_attn." % i
            p[a + "q_proj.weight"] = self.normal(h * hd, hid)
            p[a + "k_proj.weight"] = self.normal(kv * hd, hid)
            p[a + "v_proj.weight"] = self.normal(kv * hd, hid)
            p[a + "k_proj.bias"] = self.normal(kv * hd)
            p[a + "v_proj.bias"] = self.normal(kv * hd)
        t = self.with_adam(p)
        got, _ = self.run_recipe(self.recipe(), t)
        for i in range(2):
            a = "layers.%d.self_attn." % i
            for w in ("k_proj", "v_proj"):
                for tree in ("model.", "opt.mu.", "opt.nu."):
                    old = t[tree + a + w + ".weight"][1]
                    want = np.repeat(old.reshape(kv, hd, hid), rep, axis=0).reshape(h * hd, hid)
                    np.testing.assert_array_equal(got[tree + a + w + ".weight"], want)
                    old = t[tree + a + w + ".bias"][1]
                    np.testing.assert_array_equal(got[tree + a + w + ".bias"],
                                                  np.repeat(old.reshape(kv, hd), rep, 0).reshape(-1))
            # Head j of the result is kv head j // rep: repeat_kv's order.
            k = got["model." + a + "k_proj.weight"].reshape(h, hd, hid)
            for j in range(h):
                np.testing.assert_array_equal(k[j], p[a + "k_proj.weight"].reshape(kv, hd, hid)[j // rep])
            x = self.normal(5, hid)
            gqa = attention(x, p[a + "q_proj.weight"], p[a + "k_proj.weight"], p[a + "v_proj.weight"],
                            h, kv, hd, p[a + "k_proj.bias"], p[a + "v_proj.bias"])
            mha = attention(x, p[a + "q_proj.weight"], got["model." + a + "k_proj.weight"],
                            got["model." + a + "v_proj.weight"], h, h, hd,
                            got["model." + a + "k_proj.bias"], got["model." + a + "v_proj.bias"])
            np.testing.assert_allclose(mha, gqa, rtol=1e-12, atol=1e-12)
            # np.tile's order (kv0, kv1, kv0, ...) would pair the wrong heads.
            tiled = np.tile(p[a + "k_proj.weight"].reshape(kv, hd, hid), (rep, 1, 1)).reshape(h * hd, hid)
            wrong = attention(x, p[a + "q_proj.weight"], tiled, got["model." + a + "v_proj.weight"],
                              h, h, hd, got["model." + a + "k_proj.bias"], got["model." + a + "v_proj.bias"])
            self.assertFalse(np.allclose(wrong, gqa))


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=1)


if __name__ == "__main__":
    main()
