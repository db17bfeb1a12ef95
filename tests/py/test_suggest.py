#!/usr/bin/env python3
"""surg suggest: drafts for the guides' pairs (TwoLayerMLP -> ModifiedTwoLayerMLP,
a PyTorch nn.Linear saved by torch.save -> a Flax Dense, Hugging Face <-> Meta
Llama names, Flax nn.scan stacking and unstacking) asserted as exact text
(goldens: tests/golden/suggest/*.surg, *.err); each complete draft passes
`surg check --from OLD --to NEW` and `surg fmt --check`, and `surg run` of it on
a real checkpoint gives the tensors the test's own mapping says, compared with
NumPy (a transpose really transposes). Hostile: empty states, 20,000-tensor
states (bounded time), names that need escaping, duplicate types (ambiguity:
comments, exit 1), usage errors.

usage: test_suggest.py --surg SURG --golden DIR --examples DIR [--update]"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402

ARGS = None

# A Hugging Face Llama's names -> Meta's (llama's model.py), for a config of
# `layers` layers: the mapping the test expects, written out by hand.
def llama_names(layers):
    m = {"model.embed_tokens.weight": "tok_embeddings.weight",
         "model.norm.weight": "norm.weight",
         "lm_head.weight": "output.weight"}
    for i in range(layers):
        hf, meta = "model.layers.%d." % i, "layers.%d." % i
        for p in "qkvo":
            m[hf + "self_attn.%s_proj.weight" % p] = meta + "attention.w%s.weight" % p
        m[hf + "mlp.gate_proj.weight"] = meta + "feed_forward.w1.weight"
        m[hf + "mlp.down_proj.weight"] = meta + "feed_forward.w2.weight"
        m[hf + "mlp.up_proj.weight"] = meta + "feed_forward.w3.weight"
        m[hf + "input_layernorm.weight"] = meta + "attention_norm.weight"
        m[hf + "post_attention_layernorm.weight"] = meta + "ffn_norm.weight"
    return m


def llama_shapes(layers, vocab=32, hidden=8, inter=12):
    s = {"model.embed_tokens.weight": [vocab, hidden], "model.norm.weight": [hidden],
         "lm_head.weight": [vocab, hidden]}
    for i in range(layers):
        hf = "model.layers.%d." % i
        for p in "qkvo":
            s[hf + "self_attn.%s_proj.weight" % p] = [hidden, hidden]
        s[hf + "mlp.gate_proj.weight"] = [inter, hidden]
        s[hf + "mlp.up_proj.weight"] = [inter, hidden]
        s[hf + "mlp.down_proj.weight"] = [hidden, inter]
        s[hf + "input_layernorm.weight"] = [hidden]
        s[hf + "post_attention_layernorm.weight"] = [hidden]
    return s


def schema(path, shapes, dtype="F32"):
    with open(path, "w") as f:
        json.dump({k: {"dtype": dtype, "shape": v} for k, v in shapes.items()}, f)
    return path


def checkpoint(path, shapes, seed=0):
    rng = np.random.default_rng(seed)
    stnp.save(path, {k: ("F32", rng.standard_normal(v).astype("<f4"))
                     for k, v in shapes.items()})
    return path


def tensors(path):
    return {k: a for k, (_, a) in stnp.load(path)[0].items()}


class Suggest(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-suggest-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def surg(self, *args, cwd=None, timeout=120):
        r = subprocess.run([ARGS.surg] + [str(a) for a in args], cwd=cwd or self.tmp,
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
        return r.returncode, r.stdout.decode(), r.stderr.decode()

    def golden(self, name, text):
        path = os.path.join(ARGS.golden, "suggest", name)
        if ARGS.update:
            with open(path, "w") as f:
                f.write(text)
        with open(path) as f:
            self.assertEqual(text, f.read(), name)

    def suggest(self, case, old, new, code=0, cwd=None):
        """The draft for OLD -> NEW, against its goldens; its path."""
        rc, out, err = self.surg("suggest", "--from", old, "--to", new, cwd=cwd)
        self.golden(case + ".surg", out)
        self.golden(case + ".err", err)
        self.assertEqual(rc, code, err)
        draft = os.path.join(self.tmp, case + ".surg")
        with open(draft, "w") as f:
            f.write(out)
        rc, out, err = self.surg("fmt", "--check", draft)
        self.assertEqual(rc, 0, out + err)
        return draft

    def checks(self, draft, old, new, cwd=None):
        rc, out, err = self.surg("check", draft, "--from", old, "--to", new, cwd=cwd)
        self.assertEqual(rc, 0, out + err)
        self.assertIn("matching the target", out)

    def run_draft(self, draft, ckpt, name="out.safetensors"):
        out = os.path.join(self.tmp, name)
        rc, _, err = self.surg("run", draft, ckpt, out)
        self.assertEqual(rc, 0, err)
        return tensors(out)

    # ---- the guides' pairs ------------------------------------------------

    def test_two_layer_mlp(self):
        """Flax NNX guide: TwoLayerMLP -> ModifiedTwoLayerMLP, Adam moments too."""
        root = os.path.dirname(os.path.abspath(ARGS.examples))
        old = "examples/mlp/two_layer_mlp.json"
        new = "examples/mlp/modified_two_layer_mlp.json"
        draft = self.suggest("mlp", old, new, cwd=root)
        self.checks(draft, old, new, cwd=root)
        x = os.path.join(self.tmp, "mlp.safetensors")
        subprocess.run([sys.executable, os.path.join(ARGS.examples, "make_mlp_checkpoint.py"), x],
                       check=True, capture_output=True)
        src, got = tensors(x), self.run_draft(draft, x)
        self.assertEqual(len(got), len(src))
        for name, a in src.items():
            np.testing.assert_array_equal(got[name.replace("/linear", "/layer")], a)
        back = self.suggest("mlp_back", new, old, cwd=root)
        self.checks(back, new, old, cwd=root)

    def test_torch_linear_to_flax_dense(self):
        """A state_dict written by torch.save: weight [out, in] becomes a Flax
        kernel [in, out], transposed (also when square), bias stays a bias."""
        import torch
        from collections import OrderedDict
        torch.manual_seed(0)
        mlp = torch.nn.Sequential(OrderedDict(fc1=torch.nn.Linear(5, 6), act=torch.nn.ReLU(),
                                              fc2=torch.nn.Linear(6, 3)))
        torch.save(mlp.state_dict(), os.path.join(self.tmp, "mlp.pt"))
        schema(os.path.join(self.tmp, "flax.json"),
               {"params/Dense_0/kernel": [5, 6], "params/Dense_0/bias": [6],
                "params/Dense_1/kernel": [6, 3], "params/Dense_1/bias": [3]})
        draft = self.suggest("torch_mlp", "mlp.pt", "flax.json")
        self.checks(draft, "mlp.pt", "flax.json")
        got = self.run_draft(draft, os.path.join(self.tmp, "mlp.pt"))
        sd = {k: v.detach().numpy() for k, v in mlp.state_dict().items()}
        self.assertEqual(sorted(got), ["params/Dense_0/bias", "params/Dense_0/kernel",
                                       "params/Dense_1/bias", "params/Dense_1/kernel"])
        for i, fc in enumerate(("fc1", "fc2")):
            np.testing.assert_array_equal(got["params/Dense_%d/kernel" % i], sd[fc + ".weight"].T)
            np.testing.assert_array_equal(got["params/Dense_%d/bias" % i], sd[fc + ".bias"])
        # one square nn.Linear: the shapes cannot tell, the names do
        lin = torch.nn.Linear(4, 4)
        torch.save(lin.state_dict(), os.path.join(self.tmp, "linear.pt"))
        schema(os.path.join(self.tmp, "dense.json"), {"kernel": [4, 4], "bias": [4]})
        draft = self.suggest("torch_linear", "linear.pt", "dense.json")
        self.checks(draft, "linear.pt", "dense.json")
        got = self.run_draft(draft, os.path.join(self.tmp, "linear.pt"), "dense.safetensors")
        w = lin.weight.detach().numpy()
        self.assertFalse(np.array_equal(w, w.T))
        np.testing.assert_array_equal(got["kernel"], w.T)
        np.testing.assert_array_equal(got["bias"], lin.bias.detach().numpy())
        back = self.suggest("flax_dense_to_torch", "flax.json", "mlp.pt")
        self.checks(back, "flax.json", "mlp.pt")

    def test_llama_hf_meta(self):
        """Hugging Face <-> Meta Llama names, a synthetic 2-layer config."""
        shapes = llama_shapes(2)
        names = llama_names(2)
        schema(os.path.join(self.tmp, "hf.json"), shapes)
        schema(os.path.join(self.tmp, "meta.json"), {names[k]: v for k, v in shapes.items()})
        draft = self.suggest("llama_hf_to_meta", "hf.json", "meta.json")
        self.checks(draft, "hf.json", "meta.json")
        x = checkpoint(os.path.join(self.tmp, "hf.safetensors"), shapes)
        src, got = tensors(x), self.run_draft(draft, x, "meta.safetensors")
        self.assertEqual(sorted(got), sorted(names.values()))
        for hf, meta in names.items():
            np.testing.assert_array_equal(got[meta], src[hf])
        back = self.suggest("llama_meta_to_hf", "meta.json", "hf.json")
        self.checks(back, "meta.json", "hf.json")
        again = self.run_draft(back, os.path.join(self.tmp, "meta.safetensors"), "hf2.safetensors")
        for hf in names:
            np.testing.assert_array_equal(again[hf], src[hf])

    def test_scan_stacking(self):
        """Flax nn.scan: layers_0..layers_3 each [a, b] <-> one [4, a, b]."""
        unrolled = {"params/head/kernel": [5, 2]}
        for i in range(4):
            unrolled["params/layers_%d/kernel" % i] = [3, 5]
            unrolled["params/layers_%d/bias" % i] = [5]
        schema(os.path.join(self.tmp, "unrolled.json"), unrolled)
        schema(os.path.join(self.tmp, "scanned.json"),
               {"params/layers/kernel": [4, 3, 5], "params/layers/bias": [4, 5],
                "params/head/kernel": [5, 2]})
        draft = self.suggest("scan_stack", "unrolled.json", "scanned.json")
        self.checks(draft, "unrolled.json", "scanned.json")
        x = checkpoint(os.path.join(self.tmp, "unrolled.safetensors"), unrolled)
        src, got = tensors(x), self.run_draft(draft, x, "scanned.safetensors")
        for leaf in ("kernel", "bias"):
            np.testing.assert_array_equal(
                got["params/layers/" + leaf],
                np.stack([src["params/layers_%d/%s" % (i, leaf)] for i in range(4)]))
        np.testing.assert_array_equal(got["params/head/kernel"], src["params/head/kernel"])
        back = self.suggest("scan_unstack", "scanned.json", "unrolled.json")
        self.checks(back, "scanned.json", "unrolled.json")
        again = self.run_draft(back, os.path.join(self.tmp, "scanned.safetensors"),
                               "unrolled2.safetensors")
        self.assertEqual(sorted(again), sorted(src))
        for name, a in src.items():
            np.testing.assert_array_equal(again[name], a)
        # a name that `*` would also match: the indices are spelled out
        unrolled["params/layers_x/kernel"] = [9]
        schema(os.path.join(self.tmp, "unrolled_x.json"), unrolled)
        draft = self.suggest("scan_stack_spelled", "unrolled_x.json", "scanned.json", code=1)
        x = checkpoint(os.path.join(self.tmp, "unrolled_x.safetensors"), unrolled)
        got = self.run_draft(draft, x, "scanned_x.safetensors")
        np.testing.assert_array_equal(
            got["params/layers/kernel"],
            np.stack([tensors(x)["params/layers_%d/kernel" % i] for i in range(4)]))

    # ---- what it cannot map ------------------------------------------------

    def test_ambiguous_types_are_comments(self):
        """Two tensors of one type on each side and no word to tell them
        apart: comments naming the candidates, never a guess; exit 1, and the
        draft still compiles against OLD."""
        schema(os.path.join(self.tmp, "old.json"),
               {"enc.alpha": [4], "enc.beta": [4], "enc.proj": [4, 6], "enc.extra": [3]})
        schema(os.path.join(self.tmp, "new.json"),
               {"dec.left": [4], "dec.right": [4], "dec.proj": [6, 4], "dec.more": [7]})
        draft = self.suggest("ambiguous", "old.json", "new.json", code=1)
        rc, out, err = self.surg("check", draft, "--from", "old.json")
        self.assertEqual(rc, 0, out + err)

    def test_names_taken(self):
        """A name the draft makes that an old tensor holds: staged through a
        prefix when that tensor moves away too (and transposed in place when
        only its axes move), a comment when it stays."""
        old = {"x.weight": [3], "y.weight": [4], "t": [2, 3, 4]}
        new = {"y.weight": [3], "z.weight": [4], "t": [3, 2, 4]}
        schema(os.path.join(self.tmp, "old.json"), old)
        schema(os.path.join(self.tmp, "new.json"), new)
        draft = self.suggest("staged", "old.json", "new.json")
        self.checks(draft, "old.json", "new.json")
        x = checkpoint(os.path.join(self.tmp, "old.safetensors"), old)
        src, got = tensors(x), self.run_draft(draft, x)
        self.assertEqual(sorted(got), sorted(new))
        np.testing.assert_array_equal(got["y.weight"], src["x.weight"])
        np.testing.assert_array_equal(got["z.weight"], src["y.weight"])
        np.testing.assert_array_equal(got["t"], src["t"].transpose(1, 0, 2))
        schema(os.path.join(self.tmp, "old2.json"), {"a": [3], "b": [5]})
        schema(os.path.join(self.tmp, "new2.json"), {"a": [5], "c": [7]})
        self.suggest("taken", "old2.json", "new2.json", code=1)

    def test_hostile_names(self):
        """Names with every character the recipe's strings, patterns and
        templates treat specially; run on a real checkpoint."""
        old = {'we*ird?[0]/{x,y}.weight': [2, 3], 'dol$lar\\back "q"/w': [5],
               'nl\nname\ttab.t': [7], 'ünï/çødé': [9]}
        new = {'new*[0]/{x}.kernel': [3, 2], 'new$1/"q"\\w': [5], 'nl\nname\ttab.u': [7],
               'ünï/çødé€': [9]}
        schema(os.path.join(self.tmp, "old.json"), old)
        schema(os.path.join(self.tmp, "new.json"), new)
        draft = self.suggest("odd_names", "old.json", "new.json")
        self.checks(draft, "old.json", "new.json")
        x = checkpoint(os.path.join(self.tmp, "odd.safetensors"), old)
        src, got = tensors(x), self.run_draft(draft, x)
        np.testing.assert_array_equal(got['new*[0]/{x}.kernel'], src['we*ird?[0]/{x,y}.weight'].T)
        for o, n in zip(list(old)[1:], list(new)[1:]):
            np.testing.assert_array_equal(got[n], src[o])

    def test_empty_states(self):
        schema(os.path.join(self.tmp, "empty.json"), {})
        schema(os.path.join(self.tmp, "one.json"), {"w": [2]})
        self.suggest("empty", "empty.json", "empty.json")
        self.suggest("empty_to_one", "empty.json", "one.json", code=1)
        self.suggest("one_to_empty", "one.json", "empty.json", code=1)

    def test_large_states_bounded(self):
        """20,000 tensors in a family: one statement, quickly; 20,000 of one
        type with nothing to tell them apart: comments, quickly."""
        n = 20000
        schema(os.path.join(self.tmp, "old.json"),
               {"blocks.%d.mlp.kernel" % i: [3, i % 5 + 1] for i in range(n)})
        schema(os.path.join(self.tmp, "new.json"),
               {"layers.%d.mlp.weight" % i: [i % 5 + 1, 3] for i in range(n)})
        t = time.monotonic()
        rc, out, err = self.surg("suggest", "--from", "old.json", "--to", "new.json",
                                 timeout=120)
        self.assertLess(time.monotonic() - t, 60)
        self.assertEqual(rc, 0, err)
        self.assertEqual([l for l in out.splitlines() if l and not l.startswith("#")],
                         ['map "blocks.*.mlp.kernel" = transpose(x)',
                          'rename "blocks.*.mlp.kernel" -> "layers.$1.mlp.weight"'])
        # letters only (no number to go by), each name its own word
        def word(i, letters):
            return "".join(letters[int(c)] for c in "%08d" % i)
        schema(os.path.join(self.tmp, "a.json"), {"a/" + word(i, "abcdefghij"): [3]
                                                  for i in range(n)})
        schema(os.path.join(self.tmp, "b.json"), {"b." + word(i, "klmnopqrst"): [3]
                                                  for i in range(n)})
        t = time.monotonic()
        rc, out, err = self.surg("suggest", "--from", "a.json", "--to", "b.json", timeout=120)
        self.assertLess(time.monotonic() - t, 60)
        self.assertEqual(rc, 1, err)
        crowded = [l for l in out.splitlines() if "too many to tell apart" in l]
        self.assertEqual(len(crowded), 2 * n)
        self.assertEqual(err, "surg suggest: 20000 of 20000 old and 20000 of 20000 new "
                              "tensors are not mapped: see the comments at the end of the "
                              "draft\n")

    def test_random_families(self):
        """Random layered states renamed by a rule the test knows: every
        draft compiles against OLD, and every complete one, run on tensors
        that each hold their own index, puts each value where the rule says
        (a draft may leave pairs as comments; it may not pair wrongly)."""
        rng = np.random.default_rng(7)
        words = ["a", "b", "q", "k", "v", "o", "w1", "w2", "proj", "attn", "mlp", "weight",
                 "kernel", "bias", "h"]
        rules = [lambda k: k.replace("m", "n", 1), lambda k: k.replace("l", "blk", 1),
                 lambda k: k.replace(".", "/"), lambda k: "p/" + k]
        complete = 0
        for it in range(60):
            old = {}
            for i in range(int(rng.integers(1, 5))):
                for w in rng.choice(words, int(rng.integers(1, 6)), replace=False):
                    sep = str(rng.choice([".", "/", "_"]))
                    old["m%sl%d.%s" % (sep, i, w)] = [int(d) for d in
                                                      rng.choice([2, 3], int(rng.integers(0, 3)))]
            rule = rules[it % len(rules)]
            new = {rule(k): v for k, v in old.items()}
            schema(os.path.join(self.tmp, "old.json"), old)
            schema(os.path.join(self.tmp, "new.json"), new)
            rc, draft, err = self.surg("suggest", "--from", "old.json", "--to", "new.json")
            self.assertIn(rc, (0, 1), err)
            path = os.path.join(self.tmp, "draft.surg")
            with open(path, "w") as f:
                f.write(draft)
            rc2, out, err2 = self.surg("check", path, "--from", "old.json",
                                       *(["--to", "new.json"] if rc == 0 else []))
            self.assertEqual(rc2, 0, draft + err2)
            if rc:
                continue
            complete += 1
            index = {k: i for i, k in enumerate(old)}
            x = os.path.join(self.tmp, "old.safetensors")
            stnp.save(x, {k: ("F32", np.full(v, float(index[k]), "<f4")) for k, v in old.items()})
            got = self.run_draft(path, x)
            self.assertEqual(sorted(got), sorted(new))
            for k, v in old.items():
                np.testing.assert_array_equal(got[rule(k)], np.full(v, float(index[k]), "<f4"),
                                              draft)
        self.assertGreater(complete, 30)

    def test_usage(self):
        schema(os.path.join(self.tmp, "one.json"), {"w": [2]})
        cases = [("usage_none", ["suggest"]),
                 ("usage_no_to", ["suggest", "--from", "one.json"]),
                 ("usage_option", ["suggest", "--from", "one.json", "--to", "one.json",
                                   "--json"]),
                 ("usage_twice", ["suggest", "--from", "one.json", "--from", "one.json"]),
                 ("missing_file", ["suggest", "--from", "nope.json", "--to", "one.json"]),
                 ("malformed", ["suggest", "--from", "one.json", "--to", "bad.json"])]
        with open(os.path.join(self.tmp, "bad.json"), "w") as f:
            f.write('{"w": {"dtype": "F32", "shape": [2]}, "w": {"dtype": "F32"}}')
        for name, args in cases:
            rc, out, err = self.surg(*args)
            self.assertEqual(rc, 2, name)
            self.assertEqual(out, "")
            self.golden(name + ".err", err)
        rc, out, err = self.surg("suggest", "--help")
        self.assertEqual(rc, 0)
        self.assertTrue(out.startswith("usage: surg suggest --from OLD --to NEW"))
        rc, out, err = self.surg("--help")
        self.assertIn("suggest --from OLD --to NEW", out)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ap.add_argument("--golden", required=True)
    ap.add_argument("--examples", required=True)
    ap.add_argument("--update", action="store_true")
    ARGS, rest = ap.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    ARGS.golden = os.path.abspath(ARGS.golden)
    ARGS.examples = os.path.abspath(ARGS.examples)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
