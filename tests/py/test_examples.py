"""test_examples.py: every example of examples/README.md, end to end, as a
user would run it: the example's own script writes the checkpoint, surg
checks, plans and runs the example's recipe, and NumPy checks every tensor
of the result from the input (stnp, the repository's independent
safetensors reader, reads both).

The scenarios are those of Flax's model-surgery guides (Linen and NNX), its
PyTorch conversion guide, weight tying in a Hugging Face checkpoint, and the
conversion of a `pytorch_model.bin` written by PyTorch itself. Each
Flax checkpoint carries Optax Adam state (opt_state/0/{count,mu,nu}); the
tests check that the moments follow their parameters and the step count
stays as it was.

Comparisons: copies, transposes and fills are exact (bit for bit);
arithmetic states its tolerance where it is checked. Every run also checks
that the input is unchanged and that no temporary file is left.

usage: test_examples.py --surg SURG --examples DIR [unittest args]
"""

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402
from runutil import philox4x32_10, philox_key  # noqa: E402  (the documented stream)

ARGS = None  # filled in by main()

F = np.float32
D = np.float64
SLOTS = ("opt_state/0/mu/", "opt_state/0/nu/")
COUNT = "opt_state/0/count"


class ExampleCase(unittest.TestCase):
    """A scratch directory, the examples' scripts and recipes, surg."""

    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-examples-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def example(self, name):
        return os.path.join(ARGS.examples, name)

    def surg(self, *args):
        return runutil.run_surg(ARGS.surg, *args)

    def make(self, script, name, *options):
        """Run examples/SCRIPT [OPTIONS] to write a checkpoint NAME in the
        scratch dir."""
        out = self.path(name)
        r = subprocess.run([sys.executable, self.example(script), *options, out],
                           capture_output=True, timeout=300)
        self.assertEqual(r.returncode, 0, "%s: %s" % (script, r.stderr.decode(errors="replace")))
        self.assertEqual(r.stdout, b"")
        return out

    def check(self, recipe, inp, *opts):
        """`surg check` of an example that must compile; its standard output."""
        code, out, err = self.surg("check", self.example(recipe), "--from", inp, *opts)
        self.assertEqual((code, err), (0, ""), "surg check %s" % recipe)
        return out

    def plan(self, recipe, inp):
        """`surg plan --json`: ({name: entry}, the whole plan)."""
        code, out, err = self.surg("plan", self.example(recipe), "--from", inp, "--json")
        self.assertEqual((code, err), (0, ""), "surg plan %s" % recipe)
        plan = json.loads(out)
        return {t["name"]: t for t in plan["tensors"]}, plan

    def run_example(self, recipe, inp, *opts, out="out.safetensors"):
        """`surg run` of an example that must succeed: (tensors, metadata, OUT)."""
        before = runutil.sha256(inp)
        o = self.path(out)
        code, _, err = self.surg("run", self.example(recipe), inp, o, *opts)
        self.assertEqual(code, 0, "surg run %s failed (exit %d)\n%s" % (recipe, code, err))
        self.assertEqual(runutil.sha256(inp), before, "the input changed")
        self.assertEqual(runutil.temporaries(self.tmp), [], "temporary files left")
        tensors, metadata, _ = stnp.load(o)
        return tensors, metadata, o

    # ---- comparisons ----

    def assertSameTensor(self, got, want, what):
        """Same dtype, shape and bytes."""
        self.assertEqual(got[0], want[0], "%s: dtype" % what)
        self.assertEqual(got[1].shape, want[1].shape, "%s: shape" % what)
        self.assertEqual(got[1].tobytes(), want[1].tobytes(), "%s: bytes differ" % what)

    def assertExactly(self, got, want, what):
        """Float32 values equal bit for bit (so -0 and 0 differ)."""
        got = np.ascontiguousarray(got)
        want = np.ascontiguousarray(want, dtype=got.dtype)
        self.assertEqual(got.shape, want.shape, "%s: shape" % what)
        bad = got.view(np.uint8).reshape(got.size, -1) != want.view(np.uint8).reshape(got.size, -1)
        if bad.any():
            i = np.flatnonzero(bad.any(axis=1))[:5]
            self.fail("%s: %d of %d values differ; first at %s: got %r, want %r" % (
                what, len(np.flatnonzero(bad.any(axis=1))), got.size, i.tolist(),
                got.ravel()[i].tolist(), want.ravel()[i].tolist()))

    def assertNames(self, tensors, want):
        self.assertEqual(sorted(tensors), sorted(want))

    def assertPlanSources(self, plan, sources):
        """Every output tensor's source in the plan: {name: "copy" | "move" | ...}."""
        self.assertEqual({n: t["source"] for n, t in plan.items()}, sources)

    def assertCopiedFrom(self, plan, out_name, in_name, nbytes):
        """The plan copies OUT_NAME as one byte range, the whole of IN_NAME."""
        t = plan[out_name]
        self.assertEqual(t["source"], "copy", out_name)
        self.assertEqual(t["ranges"], [{"input": in_name, "offset": 0, "length": nbytes}],
                         out_name)
        self.assertEqual((t["passes"], t["read"]), (0, 0), out_name)


def mlp_forward(t, x, layers=("linear1", "linear2"), lora=False):
    """TwoLayerMLP.__call__ (no activation) on float32 x, in float32; with
    lora, the first layer is LoRALinear: x @ kernel + bias + x @ lora_a @ lora_b."""
    p = "params/%s/" % layers[0]
    h = x @ t[p + "kernel"][1] + t[p + "bias"][1]
    if lora:
        h = h + (x @ t[p + "lora/lora_a"][1]) @ t[p + "lora/lora_b"][1]
    p = "params/%s/" % layers[1]
    return h @ t[p + "kernel"][1] + t[p + "bias"][1]


def batch(n, d, seed):
    """Inputs that are small multiples of 1/4, so that sums of products of
    them with multiples of 1/2 are exact in float32."""
    return (np.random.default_rng(seed).integers(-8, 9, (n, d)) / 4).astype(F)


def mlp_schema(names):
    """The abstract state of a TwoLayerMLP(4) (or ModifiedTwoLayerMLP) with
    its Adam state, written here from the model definition: what
    nnx.eval_shape and optax.adam(...).init would give, flattened."""
    out = {COUNT: {"dtype": "I32", "shape": []}}
    for prefix in ("params/",) + SLOTS:
        for layer in names:
            out[prefix + layer + "/kernel"] = {"dtype": "F32", "shape": [4, 4]}
            out[prefix + layer + "/bias"] = {"dtype": "F32", "shape": [4]}
    return out


# =============================================================================
# 1. Flax Linen guide: the CNN's last kernel divided by its L2 norm
# =============================================================================

class TestCnnNormalize(ExampleCase):
    KERNEL = "params/Dense_1/kernel"

    def test_normalize(self):
        inp = self.make("make_cnn_checkpoint.py", "cnn.safetensors")
        self.assertIn("ok: 25 tensors in, 25 out", self.check("cnn_normalize.surg", inp))
        before, _, _ = stnp.load(inp)

        # One tensor computed (a reduction pass, then the division); the other
        # 24, slots included, are byte ranges copied without being read.
        plan, whole = self.plan("cnn_normalize.surg", inp)
        self.assertPlanSources(plan, {n: "compute" if n == self.KERNEL else "copy"
                                      for n in before})
        self.assertEqual(plan[self.KERNEL]["passes"], 2)
        for name, (_, arr) in before.items():
            if name != self.KERNEL:
                self.assertCopiedFrom(plan, name, name, arr.nbytes)
        totals = whole["totals"]["plan"]
        self.assertEqual((totals["computed"], totals["generated"], totals["moved"]),
                         (256 * 10 * 4, 0, 0))
        self.assertEqual(totals["read"], 2 * 256 * 10 * 4)  # two passes over the kernel

        after, _, out = self.run_example("cnn_normalize.surg", inp)
        self.assertNames(after, before)
        # The reference in float64, rounded once: within 2 float32 ulps (the
        # norm is summed in float64 and rounded to float32, then divided in
        # float32, two roundings).
        x = before[self.KERNEL][1].astype(D)
        want = x / np.sqrt(np.sum(x * x))
        got = after[self.KERNEL][1]
        self.assertEqual((after[self.KERNEL][0], got.shape), ("F32", (256, 10)))
        ulps = runutil.ulp_distance_f32(got, want.astype(F))
        self.assertLessEqual(int(ulps.max()), 2)
        self.assertAlmostEqual(float(np.sqrt(np.sum(got.astype(D) ** 2))), 1.0, delta=1e-6)
        # A value map leaves the Adam moments alone: they and every other
        # tensor are the input's bytes; the step count is untouched.
        for name in before:
            if name != self.KERNEL:
                self.assertSameTensor(after[name], before[name], name)
        self.assertEqual(int(after[COUNT][1]), 100)

        # The verify script of `./dev example` agrees.
        r = subprocess.run([sys.executable, self.example("verify_cnn_normalize.py"), inp, out],
                           capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        self.assertTrue(r.stdout.startswith(b"ok: "), r.stdout)


# =============================================================================
# 1b. The same CNN saved by Flax as msgpack (a TrainState), same recipe
# =============================================================================

def flax_restore(path):
    """flax.serialization.msgpack_restore of the file at `path`, with
    python3-msgpack: (the raw tree, {name: (dtype, array)} of its arrays)."""
    import msgpack
    with open(path, "rb") as f:
        raw = msgpack.unpackb(f.read(), strict_map_key=False)
    flat = {}
    names = {"float32": "F32", "int32": "I32"}

    def walk(x, prefix):
        if isinstance(x, dict):
            for k, v in x.items():
                walk(v, prefix + k + "/")
        elif isinstance(x, msgpack.ExtType) and x.code == 1:
            shape, dtype, data = msgpack.unpackb(x.data)
            flat[prefix[:-1]] = (names[dtype], np.frombuffer(data, dtype).reshape(shape))
    walk(raw, "")
    return raw, flat


def key_tree(x):
    """Every map's keys, in order, and the values that are not arrays."""
    import msgpack
    if isinstance(x, dict):
        return [(k, key_tree(v)) for k, v in x.items()]
    return "array" if isinstance(x, msgpack.ExtType) and x.code == 1 else x


class TestCnnNormalizeMsgpack(ExampleCase):
    """The Linen guide's CNN and Adam state as flax.serialization.to_bytes
    writes a TrainState (make_cnn_checkpoint.py OUT.msgpack), normalized by
    the very recipe of scenario 1: Flax's names are the same."""

    KERNEL = "params/Dense_1/kernel"

    def test_normalize(self):
        import msgpack
        inp = self.make("make_cnn_checkpoint.py", "cnn.msgpack")
        ref = self.make("make_cnn_checkpoint.py", "cnn.safetensors")
        raw_in, before = flax_restore(inp)
        # the same values as the safetensors file of scenario 1
        self.assertNames(before, stnp.load(ref)[0])
        for name, t in stnp.load(ref)[0].items():
            self.assertSameTensor(before[name], t, name)
        code, out, err = self.surg("check", self.example("cnn_normalize.surg"), "--from", inp)
        self.assertEqual(code, 0, err)
        self.assertIn("ok: 25 tensors in, 25 out", out)
        self.assertIn('2 values are not an array (numbers, strings, None, empty maps, ...), so '
                      'not a tensor: "step", "opt_state/1"', err)

        o = self.path("out.msgpack")
        sha = runutil.sha256(inp)
        code, _, err = self.surg("run", self.example("cnn_normalize.surg"), inp, o)
        self.assertEqual(code, 0, err)
        self.assertEqual(runutil.sha256(inp), sha, "the input changed")
        self.assertEqual(runutil.temporaries(self.tmp), [], "temporary files left")
        raw_out, after = flax_restore(o)
        self.assertNames(after, before)
        x = before[self.KERNEL][1].astype(D)
        got = after[self.KERNEL][1]
        self.assertEqual((after[self.KERNEL][0], got.shape), ("F32", (256, 10)))
        ulps = runutil.ulp_distance_f32(got, (x / np.sqrt(np.sum(x * x))).astype(F))
        self.assertLessEqual(int(ulps.max()), 2)
        for name in before:
            if name != self.KERNEL:
                self.assertSameTensor(after[name], before[name], name)
        # The tree is the input's: step first, kernel before bias in params
        # and bias before kernel in mu and nu as the file had them, the step
        # and the empty state kept.
        self.assertEqual(key_tree(raw_out), key_tree(raw_in))
        self.assertEqual(raw_out["step"], 100)
        self.assertEqual(raw_out["opt_state"]["1"], {})
        self.assertEqual(list(raw_out["params"]["Dense_1"]), ["kernel", "bias"])
        self.assertEqual(list(raw_out["opt_state"]["0"]["mu"]["Dense_1"]), ["bias", "kernel"])
        # Byte for byte what to_bytes writes for the input's tree with the new
        # kernel in it.
        raw_in["params"]["Dense_1"]["kernel"] = msgpack.ExtType(1, msgpack.packb(
            ([256, 10], "float32", got.tobytes()), use_bin_type=True))
        with open(o, "rb") as f:
            self.assertEqual(f.read(), msgpack.packb(raw_in, use_bin_type=True))

        r = subprocess.run([sys.executable, self.example("verify_cnn_normalize.py"), inp, o],
                           capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        self.assertTrue(r.stdout.startswith(b"ok: "), r.stdout)


class TestMsgpackConvert(ExampleCase):
    """A Flax msgpack to safetensors and back with the empty recipe
    (convert.surg): the tensors are the msgpack's values, bit for bit; the
    tree (key order, the values that are not arrays) rides in the metadata
    "msgpack.tree", so the msgpack that comes back is the original file."""

    def test_there_and_back(self):
        inp = self.make("make_cnn_checkpoint.py", "cnn.msgpack")
        _, arrays = flax_restore(inp)
        tensors, metadata, st = self.run_example("convert.surg", inp, out="cnn.safetensors")
        self.assertNames(tensors, arrays)
        for name, t in arrays.items():
            self.assertSameTensor(tensors[name], t, name)
        tree = json.loads(metadata["msgpack.tree"])
        self.assertEqual(list(tree)[:3], ["step", "params/Conv_0/kernel", "params/Conv_0/bias"])
        self.assertEqual((tree["step"], tree["opt_state/1"]), ("64", "80"))  # 100, {}
        back = self.path("back.msgpack")
        code, _, err = self.surg("run", self.example("convert.surg"), st, back)
        self.assertEqual((code, err), (0, ""))
        self.assertEqual(runutil.sha256(back), runutil.sha256(inp))


# =============================================================================
# 2. Flax NNX guide: TwoLayerMLP -> ModifiedTwoLayerMLP
# =============================================================================

class TestMlpRename(ExampleCase):
    OLD = mlp_schema(("linear1", "linear2"))
    NEW = mlp_schema(("layer1", "layer2"))

    def setUp(self):
        super().setUp()
        self.inp = self.make("make_mlp_checkpoint.py", "mlp.safetensors")

    def schema_file(self, schema, name):
        p = self.path(name)
        with open(p, "w") as f:
            json.dump(schema, f)
        return p

    def test_schemas_are_the_models(self):
        """examples/mlp's schemas are the two models' abstract states, and
        the checkpoint script writes the old one."""
        for name, want in (("two_layer_mlp.json", self.OLD),
                           ("modified_two_layer_mlp.json", self.NEW)):
            with open(self.example(os.path.join("mlp", name))) as f:
                self.assertEqual(json.load(f), want, name)
        code, out, err = self.surg("schema", self.inp, "--json")
        self.assertEqual((code, err), (0, ""))
        got = json.loads(out)
        self.assertEqual(got.pop("__metadata__"), {"format": "pt"})
        self.assertEqual(got, self.OLD)

    def test_rename(self):
        target = self.example(os.path.join("mlp", "modified_two_layer_mlp.json"))
        out = self.check("mlp_rename.surg", self.inp, "--to", target)
        self.assertIn("ok: 13 tensors in, 13 out, matching the target", out)
        before, _, _ = stnp.load(self.inp)

        def old_name(name):
            return name.replace("layer", "linear")

        # Renames are metadata: every tensor a whole-range copy of its old name.
        plan, whole = self.plan("mlp_rename.surg", self.inp)
        self.assertEqual(sorted(plan), sorted(self.NEW))
        for name in plan:
            self.assertCopiedFrom(plan, name, old_name(name), before[old_name(name)][1].nbytes)
        totals = whole["totals"]["plan"]
        self.assertEqual((totals["read"], totals["computed"], totals["generated"]), (0, 0, 0))

        after, _, out = self.run_example("mlp_rename.surg", self.inp, "--to", target)
        self.assertNames(after, self.NEW)
        for name in after:
            self.assertSameTensor(after[name], before[old_name(name)], name)
        # The slots moved with their parameters: mu/layer1/kernel is what
        # mu/linear1/kernel was; the step count is untouched.
        self.assertSameTensor(after["opt_state/0/mu/layer1/kernel"],
                              before["opt_state/0/mu/linear1/kernel"], "mu")
        self.assertSameTensor(after["opt_state/0/nu/layer2/bias"],
                              before["opt_state/0/nu/linear2/bias"], "nu")
        self.assertSameTensor(after[COUNT], before[COUNT], COUNT)
        # As the guide asserts: the restored model computes what the old one did.
        x = np.ones((3, 4), F)
        self.assertExactly(mlp_forward(after, x, ("layer1", "layer2")),
                           mlp_forward(before, x), "ModifiedTwoLayerMLP(ones)")
        # And the result's abstract state is the new model's.
        code, text, err = self.surg("schema", out, "--json")
        self.assertEqual((code, err), (0, ""))
        got = json.loads(text)
        got.pop("__metadata__", None)
        self.assertEqual(got, self.NEW)

    def test_suggest(self):
        """`surg suggest` drafts the rename from the two schemas; the draft
        does what mlp_rename.surg does, tensor for tensor."""
        old = self.example(os.path.join("mlp", "two_layer_mlp.json"))
        new = self.example(os.path.join("mlp", "modified_two_layer_mlp.json"))
        code, draft, err = self.surg("suggest", "--from", old, "--to", new)
        self.assertEqual(code, 0, err)
        self.assertIn('rename "params/linear*/{bias,kernel}" -> "params/layer$1/$2"\n', draft)
        p = self.path("port.surg")
        with open(p, "w") as f:
            f.write(draft)
        want, _, _ = self.run_example("mlp_rename.surg", self.inp, "--to", new)
        o = self.path("drafted.safetensors")
        code, _, err = self.surg("run", p, self.inp, o, "--to", new)
        self.assertEqual(code, 0, err)
        got, _, _ = stnp.load(o)
        self.assertNames(got, self.NEW)
        for name in got:
            self.assertSameTensor(got[name], want[name], name)

    def test_wrong_target(self):
        """--to the old model (the recipe forgotten, or the wrong file): every
        tensor is named, and run writes nothing."""
        old = self.example(os.path.join("mlp", "two_layer_mlp.json"))
        code, out, err = self.surg("check", self.example("mlp_rename.surg"), "--from", self.inp,
                                   "--to", old)
        self.assertEqual((code, out), (1, ""))
        # Each new name paired with the old one it came from, at the rename
        # that made it (issue 17 §4).
        for name in self.NEW:
            if name != COUNT:
                old_name = name.replace("layer", "linear")
                self.assertIn('mlp_rename.surg:7:35: error: the result has "%s" where the target '
                              'has "%s" (' % (name, old_name), err)
                self.assertIn('note: "%s" was renamed to "%s" on line 7\n' % (old_name, name),
                              err)
                self.assertIn('note: to match the target: rename "%s" -> "%s"\n'
                              % (name, old_name), err)

        before = runutil.sha256(self.inp)
        o = self.path("out.safetensors")
        code, out, run_err = self.surg("run", self.example("mlp_rename.surg"), self.inp, o,
                                       "--to", old)
        self.assertEqual(code, 1)
        self.assertEqual(run_err, err)
        self.assertFalse(os.path.exists(o), "run wrote an output for a wrong target")
        self.assertEqual(os.listdir(self.tmp), ["mlp.safetensors"])
        self.assertEqual(runutil.sha256(self.inp), before)

        # A target that differs in one shape names that tensor and both types.
        wrong = dict(self.NEW)
        wrong["params/layer2/kernel"] = {"dtype": "F32", "shape": [4, 8]}
        p = self.schema_file(wrong, "wrong.json")
        code, out, err = self.surg("run", self.example("mlp_rename.surg"), self.inp, o, "--to", p)
        self.assertEqual(code, 1)
        # At the rename that gave the name (the type is the input's).
        self.assertEqual(err, self.example("mlp_rename.surg") + ':7:35: error: the result\'s '
                         '"params/layer2/kernel" is f32[4, 4], but the target has f32[4, 8]\n'
                         '    7 | rename "params/linear{1,2}/**" -> "params/layer$1/$2"\n'
                         '      |                                   ^~~~~~~~~~~~~~~~~~~\n')
        self.assertFalse(os.path.exists(o))
        self.assertEqual(runutil.temporaries(self.tmp), [])


# =============================================================================
# 3. Flax NNX guide: partial initialization, a LoRA adapter on linear1
# =============================================================================

class TestOrbaxMlpRename(ExampleCase):
    """Scenario 2 on the checkpoint Orbax writes: a directory of zarr
    arrays with _METADATA (make_orbax_mlp_checkpoint.py), renamed by the same
    recipe into a safetensors file, checked by verify_orbax_mlp_rename.py."""

    NOTE = ('note: 1 value is not an array (strings, numbers, None, empty containers), so '
            'not a tensor: "opt_state/1"; kept in the metadata "msgpack.tree" for a '
            '.msgpack output\n')

    def test_rename(self):
        inp = self.make("make_orbax_mlp_checkpoint.py", "mlp_orbax")
        code, out, err = self.surg("schema", inp, "--json")
        self.assertEqual((code, err), (0, inp + ": " + self.NOTE))
        got = json.loads(out)
        tree = json.loads(got.pop("__metadata__")["msgpack.tree"])
        self.assertEqual(tree, dict({name: "" for name in sorted(TestMlpRename.OLD)},
                                    **{"opt_state/1": "80"}))
        self.assertEqual(got, TestMlpRename.OLD)
        target = self.example(os.path.join("mlp", "modified_two_layer_mlp.json"))
        code, out, err = self.surg("check", self.example("mlp_rename.surg"), "--from", inp,
                                   "--to", target)
        self.assertEqual((code, err), (0, inp + ": " + self.NOTE))
        self.assertIn("ok: 13 tensors in, 13 out, matching the target", out)
        before = runutil.sha256(inp)
        o = self.path("modified.safetensors")
        code, _, err = self.surg("run", self.example("mlp_rename.surg"), inp, o, "--to", target)
        self.assertEqual((code, err), (0, inp + ": " + self.NOTE))
        self.assertEqual(runutil.sha256(inp), before, "the input changed")
        self.assertEqual(runutil.temporaries(self.tmp), [], "temporary files left")
        r = subprocess.run([sys.executable, self.example("verify_orbax_mlp_rename.py"), inp, o],
                           capture_output=True, timeout=300)
        self.assertEqual((r.returncode, r.stdout, r.stderr), (0, b"", b""))
        # and the independent check is no rubber stamp: the unrenamed input fails it
        same = self.path("same.safetensors")
        empty = self.path("empty.surg")
        open(empty, "w").close()
        self.assertEqual(self.surg("run", empty, inp, same)[0], 0)
        r = subprocess.run([sys.executable, self.example("verify_orbax_mlp_rename.py"), inp, same],
                           capture_output=True, timeout=300)
        self.assertEqual(r.returncode, 1)


class TestSplitFiles(ExampleCase):
    """Scenario 7: the rename of scenario 2 on parameters and optimizer state
    kept in two files: each output holds exactly what the combined run puts
    under its prefix, prefix taken off, byte for byte."""

    def test_split(self):
        whole = self.make("make_mlp_checkpoint.py", "mlp.safetensors")
        p, s = self.path("params.safetensors"), self.path("opt.safetensors")
        r = subprocess.run([sys.executable, self.example("make_mlp_checkpoint.py"), "--split",
                            p, s], capture_output=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        code, out, err = self.surg("check", self.example("mlp_rename.surg"), "--params", p,
                                   "--state", s)
        self.assertEqual((code, err), (0, ""))
        want, _, _ = self.run_example("mlp_rename.surg", whole)
        p2, s2 = self.path("params_new.safetensors"), self.path("opt_new.safetensors")
        code, _, err = self.surg("run", self.example("mlp_rename.surg"), "--params", p,
                                 "--state", s, p2, s2)
        self.assertEqual(code, 0, err)
        got = {}
        for prefix, path in (("params/", p2), ("opt_state/", s2)):
            t, _, _ = stnp.load(path)
            got.update({prefix + n: v for n, v in t.items()})
        self.assertEqual(sorted(got), sorted(want))
        for name, (dt, arr) in want.items():
            self.assertEqual(got[name][0], dt, name)
            self.assertEqual(got[name][1].tobytes(), arr.tobytes(), name)
        self.assertIn("params/layer1/kernel", got)
        self.assertIn("opt_state/0/mu/layer2/bias", got)


class TestMlpLora(ExampleCase):
    A = "params/linear1/lora/lora_a"
    B = "params/linear1/lora/lora_b"
    SEED = 42  # the recipe's `seed`

    def test_lora(self):
        inp = self.make("make_mlp_checkpoint.py", "mlp.safetensors")
        self.assertIn("ok: 13 tensors in, 19 out", self.check("mlp_lora.surg", inp))
        before, _, _ = stnp.load(inp)
        new = {n: (4, 3) if n.endswith("lora_a") else (3, 4)
               for n in (p + "linear1/lora/lora_" + ab for p in ("params/",) + SLOTS
                         for ab in "ab")}

        # Only the adapter is made: lora_a from its initializer, lora_b and
        # the four new moments as zeros. Every pretrained tensor is a copy,
        # never read; nothing is computed; no value is made and thrown away.
        plan, whole = self.plan("mlp_lora.surg", inp)
        self.assertPlanSources(plan, {**{n: "copy" for n in before},
                                      **{n: "generate" for n in new}})
        for name, (_, arr) in before.items():
            self.assertCopiedFrom(plan, name, name, arr.nbytes)
        self.assertTrue(plan[self.A]["how"].startswith("he_uniform"), plan[self.A]["how"])
        for name in new:
            if name != self.A:
                self.assertEqual(plan[name]["how"], "fill 0", name)
            self.assertEqual((plan[name]["bytes"], plan[name]["read"]), (48, 0), name)
        totals = whole["totals"]["plan"]
        self.assertEqual(totals["generated"], 6 * 48)
        self.assertEqual(totals["copied"], sum(a.nbytes for _, a in before.values()))
        self.assertEqual((totals["read"], totals["computed"], totals["moved"]), (0, 0, 0))
        self.assertEqual(whole["never_read"], {"tensors": 0, "bytes": 0})
        self.assertEqual(whole["never_made"], {"values": 0, "bytes": 0})

        after, meta, _ = self.run_example("mlp_lora.surg", inp)
        self.assertNames(after, list(before) + list(new))
        for name in before:
            self.assertSameTensor(after[name], before[name], name)
        for name, shape in new.items():
            self.assertEqual((after[name][0], after[name][1].shape), ("F32", shape), name)
        self.assertExactly(after[self.B][1], np.zeros((3, 4), F), "lora_b")
        for prefix in SLOTS:  # new parameters start with no history
            for ab in "ab":
                name = prefix + "linear1/lora/lora_" + ab
                self.assertExactly(after[name][1], np.zeros(new[name], F), name)
        self.assertEqual(runutil.metadata_json(meta, "surg.lora"), [{
            "r": 3, "lora_alpha": 3, "style": "flax", "target": "params/linear1/kernel",
            "lora_a": self.A, "lora_b": self.B}])

        # lora_a is he_uniform for its shape [in, r] = [4, 3]: fan-in 4, so
        # uniform in +-sqrt(6 / 4), as nnx.LoRA's default a_initializer.
        a = after[self.A][1].astype(D)
        limit = math.sqrt(6 / 4)
        self.assertLessEqual(float(np.abs(a).max()), limit)
        self.assertEqual(len(np.unique(a)), a.size, "lora_a has repeated values")
        # The values are the documented stream: draw k of Philox under the
        # key of (seed, "params/linear1/lora/lora_a") gives elements 4k..4k+3,
        # each -l + 2l * u of a 24-bit uniform u. surg computes in float32:
        # within 2 float32 ulps of l of this float64 value.
        w = philox4x32_10(np.arange(3, dtype=np.uint64), philox_key(self.SEED, self.A))
        u = np.stack([(wi >> np.uint64(8)).astype(D) * 2.0 ** -24 for wi in w], axis=1)
        want = (-limit + 2 * limit * u.ravel()).reshape(4, 3)
        self.assertLess(float(np.abs(a - want).max()), 2 * limit * 2.0 ** -23)

        # The adapted model computes exactly what the pretrained one did.
        x = np.random.default_rng(3).standard_normal((16, 4)).astype(F)
        self.assertExactly(mlp_forward(after, x, lora=True), mlp_forward(before, x),
                           "LoRA model vs the pretrained model")

    def test_port_and_lora(self):
        """examples/mlp_port_lora.surg, the SPEC's example: the rename of
        scenario 2, the adapter of scenario 3 on layer1, and layer2's kernel
        normalized (a value map: its moments stay)."""
        inp = self.make("make_mlp_checkpoint.py", "mlp.safetensors")
        before, _, _ = stnp.load(inp)
        after, meta, _ = self.run_example("mlp_port_lora.surg", inp)
        new = [p + "layer1/lora/lora_" + ab for p in ("params/",) + SLOTS for ab in "ab"]
        self.assertNames(after, [n.replace("linear", "layer") for n in before] + new)
        for name in before:
            if name != "params/linear2/kernel":
                self.assertSameTensor(after[name.replace("linear", "layer")], before[name], name)
        x = before["params/linear2/kernel"][1].astype(D)
        ulps = runutil.ulp_distance_f32(after["params/layer2/kernel"][1],
                                        (x / np.sqrt(np.sum(x * x))).astype(F))
        self.assertLessEqual(int(ulps.max()), 2)  # as in scenario 1
        for name in new:
            if not name.startswith("params/") or name.endswith("lora_b"):
                self.assertExactly(after[name][1], np.zeros_like(after[name][1]), name)
        a = after["params/layer1/lora/lora_a"][1]
        self.assertEqual(a.shape, (4, 3))
        self.assertLessEqual(float(np.abs(a).max()), math.sqrt(6 / 4))
        self.assertEqual(runutil.metadata_json(meta, "surg.lora")[0]["target"],
                         "params/layer1/kernel")


# =============================================================================
# 4. Replacing a kernel: linear2's kernel filled with 0.5
# =============================================================================

class TestMlpFillKernel(ExampleCase):
    KERNEL = "params/linear2/kernel"

    def test_fill(self):
        inp = self.make("make_mlp_checkpoint.py", "mlp.safetensors")
        before, _, _ = stnp.load(inp)
        self.check("mlp_fill_kernel.surg", inp)
        slots = [p + "linear2/kernel" for p in SLOTS]

        # The kernel and its moments are generated; the old values are never
        # read; everything else is copied.
        plan, whole = self.plan("mlp_fill_kernel.surg", inp)
        self.assertPlanSources(plan, {n: "generate" if n in [self.KERNEL] + slots else "copy"
                                      for n in before})
        self.assertEqual(plan[self.KERNEL]["how"], "fill 0.5")
        for name in slots:
            self.assertEqual(plan[name]["how"], "fill 0")
        self.assertEqual(whole["never_read"], {"tensors": 3, "bytes": 3 * 64})
        totals = whole["totals"]["plan"]
        self.assertEqual((totals["read"], totals["computed"], totals["generated"]),
                         (0, 0, 3 * 64))

        after, _, _ = self.run_example("mlp_fill_kernel.surg", inp)
        self.assertNames(after, before)
        self.assertEqual(after[self.KERNEL][0], "F32")
        self.assertExactly(after[self.KERNEL][1], np.full((4, 4), 0.5, F), "kernel")
        for name in slots:  # mirror: a filled parameter's moments restart at zero
            self.assertExactly(after[name][1], np.zeros((4, 4), F), name)
        for name in before:
            if name not in [self.KERNEL] + slots:
                self.assertSameTensor(after[name], before[name], name)
        self.assertEqual(int(after[COUNT][1]), 100)

        # The layer now computes y[n, j] = 0.5 * sum(x[n, :]) + bias[j]. The
        # inputs are multiples of 1/4, so both sides are exact in float32.
        x = batch(6, 4, seed=4)
        bias = after["params/linear2/bias"][1]
        y = x @ after[self.KERNEL][1] + bias
        want = F(0.5) * x.sum(axis=1, keepdims=True) + bias[None, :]
        self.assertExactly(y, want, "linear2(x)")
        self.assertExactly(bias, before["params/linear2/bias"][1], "bias")


# =============================================================================
# 5. Flax's PyTorch conversion guide: nn.Linear -> nn.Dense
# =============================================================================

class TestTorchToFlax(ExampleCase):
    PORT = {"fc1": "params/Dense_0", "fc2": "params/Dense_1"}

    def test_port(self):
        inp = self.make("make_torch_mlp_checkpoint.py", "torch.safetensors")
        before, _, _ = stnp.load(inp)
        self.assertEqual(sorted(before), ["fc1.bias", "fc1.weight", "fc2.bias", "fc2.weight"])
        # The Flax model's abstract state (nn.Dense(6), nn.Dense(3) on 5
        # features), as a schema written here from the model.
        target = self.path("flax_mlp.json")
        with open(target, "w") as f:
            json.dump({"params/Dense_0/kernel": {"dtype": "F32", "shape": [5, 6]},
                       "params/Dense_0/bias": {"dtype": "F32", "shape": [6]},
                       "params/Dense_1/kernel": {"dtype": "F32", "shape": [6, 3]},
                       "params/Dense_1/bias": {"dtype": "F32", "shape": [3]}}, f)
        self.assertIn("matching the target", self.check("torch_to_flax.surg", inp, "--to", target))

        # Transposes are strided moves (no arithmetic); biases are copies.
        plan, whole = self.plan("torch_to_flax.surg", inp)
        self.assertPlanSources(plan, {"params/Dense_0/kernel": "move",
                                      "params/Dense_0/bias": "copy",
                                      "params/Dense_1/kernel": "move",
                                      "params/Dense_1/bias": "copy"})
        for torch_name, flax_name in self.PORT.items():
            self.assertCopiedFrom(plan, flax_name + "/bias", torch_name + ".bias",
                                  before[torch_name + ".bias"][1].nbytes)
        self.assertEqual(whole["totals"]["plan"]["computed"], 0)

        after, _, _ = self.run_example("torch_to_flax.surg", inp, "--to", target)
        self.assertNames(after, [p + "/" + k for p in self.PORT.values()
                                 for k in ("kernel", "bias")])
        for torch_name, flax_name in self.PORT.items():
            weight = before[torch_name + ".weight"][1]
            kernel = after[flax_name + "/kernel"]
            self.assertEqual(kernel[0], "F32")
            self.assertExactly(kernel[1], weight.T, flax_name + "/kernel")  # [in, out]
            self.assertSameTensor(after[flax_name + "/bias"], before[torch_name + ".bias"],
                                  flax_name + "/bias")

        # Flax's forward on the ported parameters equals PyTorch's on the
        # originals. Both in float64 from the same float32 values: the two
        # matrix products may sum in different orders, so within 1e-12.
        x = np.random.default_rng(5).standard_normal((7, 5))

        def relu(v):
            return np.maximum(v, 0)

        def p(t, name):
            return t[name][1].astype(D)

        torch_y = relu(x @ p(before, "fc1.weight").T + p(before, "fc1.bias"))
        torch_y = torch_y @ p(before, "fc2.weight").T + p(before, "fc2.bias")
        flax_y = relu(x @ p(after, "params/Dense_0/kernel") + p(after, "params/Dense_0/bias"))
        flax_y = flax_y @ p(after, "params/Dense_1/kernel") + p(after, "params/Dense_1/bias")
        np.testing.assert_allclose(flax_y, torch_y, rtol=1e-12, atol=1e-12)

    def test_port_with_adam(self):
        """A training checkpoint: torch.optim.Adam's state becomes Optax's,
        the moments of each weight transposed with it (mirror)."""
        inp = self.make("make_torch_mlp_checkpoint.py", "train.safetensors", "--adam")
        before, _, _ = stnp.load(inp)
        self.assertEqual(len(before), 4 + 4 * 3)
        index = {"fc1.weight": 0, "fc1.bias": 1, "fc2.weight": 2, "fc2.bias": 3}

        plan, whole = self.plan("torch_to_flax_adam.surg", inp)
        sources = {COUNT: "compute"}
        for flax_name in self.PORT.values():
            for prefix in ("params/",) + SLOTS:
                name = prefix + flax_name[len("params/"):]
                sources[name + "/kernel"] = "move"
                sources[name + "/bias"] = "copy"
        self.assertPlanSources(plan, sources)
        self.assertEqual(whole["never_read"], {"tensors": 3, "bytes": 12})  # the other steps

        after, _, _ = self.run_example("torch_to_flax_adam.surg", inp)
        self.assertNames(after, sources)
        self.assertEqual(after[COUNT][0], "I32")
        self.assertEqual(int(after[COUNT][1]), 100)
        for torch_name, flax_name in self.PORT.items():
            for kind, flax_kind in (("weight", "kernel"), ("bias", "bias")):
                i = index[torch_name + "." + kind]
                pairs = [(torch_name + "." + kind, flax_name + "/" + flax_kind)]
                for slot, prefix in (("exp_avg", SLOTS[0]), ("exp_avg_sq", SLOTS[1])):
                    pairs.append(("optimizer.state.%d.%s" % (i, slot),
                                  prefix + flax_name[len("params/"):] + "/" + flax_kind))
                for src, dst in pairs:
                    if kind == "weight":  # [out, in] -> [in, out], moments too
                        self.assertEqual(after[dst][0], "F32")
                        self.assertExactly(after[dst][1], before[src][1].T, dst)
                    else:
                        self.assertSameTensor(after[dst], before[src], dst)


# =============================================================================
# 6. Weight tying in a Hugging Face llama checkpoint
# =============================================================================

class TestLlamaTie(ExampleCase):
    HEAD = "lm_head.weight"
    EMBED = "model.embed_tokens.weight"

    def test_tie(self):
        inp = self.make("make_llama_checkpoint.py", "model.safetensors")
        self.assertIn("ok: 21 tensors in, 20 out", self.check("llama_tie_embeddings.surg", inp))
        before, _, in_header = stnp.load(inp)
        head_bytes = before[self.HEAD][1].nbytes
        self.assertEqual(head_bytes, 64 * 16 * 2)
        self.assertNotEqual(before[self.HEAD][1].tobytes(), before[self.EMBED][1].tobytes())

        # The head is never read; everything else is copied; the tie is noted.
        plan, whole = self.plan("llama_tie_embeddings.surg", inp)
        kept = [n for n in before if n != self.HEAD]
        self.assertPlanSources(plan, {n: "copy" for n in kept})
        for name in kept:
            self.assertCopiedFrom(plan, name, name, before[name][1].nbytes)
        self.assertEqual(whole["ties"], {self.HEAD: self.EMBED})
        self.assertEqual(whole["never_read"], {"tensors": 1, "bytes": head_bytes})
        totals = whole["totals"]["plan"]
        self.assertEqual((totals["read"], totals["computed"], totals["generated"]), (0, 0, 0))

        after, meta, out = self.run_example("llama_tie_embeddings.surg", inp)
        # Stored once: the head is not among the file's tensors, the tie is
        # in the metadata, and every stored tensor (the embedding included)
        # is the input's bytes.
        self.assertNames(after, kept)
        self.assertEqual(runutil.metadata_json(meta, "surg.ties"), {self.HEAD: self.EMBED})
        self.assertEqual(meta.get("format"), "pt")
        for name in kept:
            self.assertSameTensor(after[name], before[name], name)
        # Smaller by exactly the head's bytes, give or take the header.
        _, _, out_header = stnp.load_raw(out)
        self.assertEqual(os.path.getsize(out) - len(out_header),
                         os.path.getsize(inp) - len(in_header) - head_bytes)
        self.assertEqual(os.path.getsize(out) - os.path.getsize(inp),
                         len(out_header) - len(in_header) - head_bytes)

        # A reader that restores the tie gets the embedding as the head.
        restored = dict(after)
        for alias, stored in runutil.metadata_json(meta, "surg.ties").items():
            restored[alias] = restored[stored]
        self.assertSameTensor(restored[self.HEAD], before[self.EMBED], "restored lm_head")


# =============================================================================
# 10, 11. Vocabularies and heads in the llama checkpoint
# =============================================================================

def bf16_values(bits):
    return runutil.bf16_to_f32(bits).astype(D)


def f64_to_bf16(v):
    """float64 values (normal in bf16's range) -> bf16 bits, rounded once to
    nearest even: the mantissa scaled to 8 significant bits is exact."""
    m, e = np.frexp(np.asarray(v, dtype=D))
    r = np.ldexp(np.rint(m * 256.0), e - 8)
    return (runutil.f32_bits(r.astype(F)) >> 16).astype(np.uint16)


class TestGrowVocab(ExampleCase):
    """resize_token_embeddings(64 + 3, pad_to_multiple_of=8) with mean
    resizing: 8 new rows of the mean, in the embedding and in the head."""

    def test_grow(self):
        inp = self.make("make_llama_checkpoint.py", "model.safetensors")
        self.assertIn("ok: 21 tensors in, 21 out", self.check("grow_vocab.surg", inp))
        plan, _ = self.plan("grow_vocab.surg", inp)
        before, _, _ = stnp.load(inp)
        grown = ("model.embed_tokens.weight", "lm_head.weight")
        self.assertPlanSources(plan, {n: "compute" if n in grown else "copy" for n in before})
        after, _, _ = self.run_example("grow_vocab.surg", inp)
        self.assertNames(after, before)
        new = ((64 + 3 + 7) // 8) * 8 - 64  # pad_to_multiple_of
        for name in before:
            if name not in grown:
                self.assertSameTensor(after[name], before[name], name)
                continue
            old = before[name][1]
            self.assertEqual(after[name][0], "BF16")
            mean = f64_to_bf16(bf16_values(old).mean(axis=0))
            want = np.concatenate([old, np.repeat(mean[None], new, axis=0)])
            self.assertSameTensor(after[name], ("BF16", want), name)


class TestGqaToMha(ExampleCase):
    """repeat_kv's order: query head j uses key/value head j // 2. The
    repeated weights in plain multi-head attention compute what the
    grouped-query layer computes."""

    HEADS, KV, HD, HIDDEN = 4, 2, 4, 16

    def attention(self, x, wq, wk, wv, kv_heads):
        h, hd = self.HEADS, self.HD
        s = x.shape[0]
        q = (x @ wq.T).reshape(s, h, hd).transpose(1, 0, 2)
        k = (x @ wk.T).reshape(s, kv_heads, hd).transpose(1, 0, 2)
        v = (x @ wv.T).reshape(s, kv_heads, hd).transpose(1, 0, 2)
        k, v = np.repeat(k, h // kv_heads, axis=0), np.repeat(v, h // kv_heads, axis=0)
        a = q @ k.transpose(0, 2, 1) / np.sqrt(hd)
        a = np.exp(a - a.max(axis=-1, keepdims=True))
        return (a / a.sum(axis=-1, keepdims=True)) @ v

    def test_repeat(self):
        inp = self.make("make_llama_checkpoint.py", "model.safetensors")
        self.assertIn("ok: 21 tensors in, 21 out", self.check("llama_gqa_to_mha.surg", inp))
        plan, _ = self.plan("llama_gqa_to_mha.surg", inp)
        before, _, _ = stnp.load(inp)
        moved = [n for n in before if "k_proj" in n or "v_proj" in n]
        self.assertPlanSources(plan, {n: "move" if n in moved else "copy" for n in before})
        after, _, _ = self.run_example("llama_gqa_to_mha.surg", inp)
        for name in before:
            if name not in moved:
                self.assertSameTensor(after[name], before[name], name)
                continue
            old = before[name][1].reshape(self.KV, self.HD, self.HIDDEN)
            want = np.repeat(old, self.HEADS // self.KV, axis=0).reshape(16, 16)
            self.assertSameTensor(after[name], ("BF16", want), name)
        x = np.random.default_rng(3).standard_normal((5, self.HIDDEN))
        for i in range(2):
            p = "model.layers.%d.self_attn." % i
            w = {n: bf16_values(t[1]) for n, t in after.items() if n.startswith(p)}
            b = {n: bf16_values(t[1]) for n, t in before.items() if n.startswith(p)}
            gqa = self.attention(x, b[p + "q_proj.weight"], b[p + "k_proj.weight"],
                                 b[p + "v_proj.weight"], self.KV)
            mha = self.attention(x, w[p + "q_proj.weight"], w[p + "k_proj.weight"],
                                 w[p + "v_proj.weight"], self.HEADS)
            np.testing.assert_allclose(mha, gqa, rtol=1e-12, atol=1e-12)


class TestTorchConvert(ExampleCase):
    """Scenario 8: a Hugging Face pytorch_model.bin written by torch.save,
    converted by the empty recipe; values compared with torch.load's."""

    def test_convert(self):
        import torch
        inp = self.make("make_torch_llama_checkpoint.py", "pytorch_model.bin")
        code, tree, err = self.surg("schema", inp)
        self.assertEqual((code, err), (0, ""))
        self.assertIn('tied: "lm_head.weight" is stored as "model.embed_tokens.weight"', tree)
        self.assertIn("20 tensors", tree)
        plan, whole = self.plan("convert.surg", inp)
        self.assertEqual(whole["ties"], {"lm_head.weight": "model.embed_tokens.weight"})
        self.assertEqual(set(t["source"] for t in plan.values()), {"copy"})

        after, meta, _ = self.run_example("convert.surg", inp, out="model.safetensors")
        state = torch.load(inp)
        self.assertNames(after, [n for n in state if n != "lm_head.weight"])
        for name, t in state.items():
            if name == "lm_head.weight":
                continue
            self.assertEqual(after[name][0], "BF16", name)
            want = t.contiguous().view(torch.int16).numpy().view(np.uint16)
            self.assertEqual(after[name][1].shape, want.shape, name)
            self.assertEqual(after[name][1].tobytes(), want.tobytes(), name)
        self.assertEqual(runutil.metadata_json(meta, "surg.ties"),
                         {"lm_head.weight": "model.embed_tokens.weight"})
        self.assertEqual(meta.get("format"), "pt")

# ---- model merges ------------------------------------------------------------

MERGES = ("linear", "task_arithmetic", "slerp", "ties", "dare_linear", "dare_ties")

# Runs a command and prints its exit status and peak RSS (KiB), from a small
# fresh process: a child's peak RSS counts what it shared with its parent
# before exec.
PEAK_RSS = """
import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE)
err = p.stderr.read()
_, status, usage = os.wait4(p.pid, 0)
sys.stderr.buffer.write(err)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def sanitized():
    with open(ARGS.surg, "rb") as f:
        return b"__asan_init" in f.read()


def verify_merge():
    """examples/verify_merge.py as a module: mergekit's methods in NumPy."""
    sys.path.insert(0, ARGS.examples)
    try:
        import verify_merge as vm
    finally:
        sys.path.pop(0)
    return vm


class TestMerges(ExampleCase):
    """Section "Merging models": linear, task arithmetic, SLERP, TIES, DARE
    (linear and TIES) over three checkpoints of one llama, each recipe run
    with --in base= ft1= ft2=, its result checked by verify_merge.py against
    mergekit's definition in NumPy; the same bytes on 1 and 4 threads; the
    inputs unchanged; memory bounded by chunks, not by the models."""

    def inputs(self, d):
        return ["--in", "base=" + os.path.join(d, "base.safetensors"),
                "--in", "ft1=" + os.path.join(d, "ft1.safetensors"),
                "--in", "ft2=" + os.path.join(d, "ft2.safetensors")]

    def merge(self, recipe, d, out, *opts):
        before = [runutil.sha256(os.path.join(d, m + ".safetensors")) for m in ("base", "ft1", "ft2")]
        code, _, err = self.surg("run", recipe, *self.inputs(d), out, *opts)
        self.assertEqual((code, err), (0, ""), "surg run %s" % recipe)
        self.assertEqual([runutil.sha256(os.path.join(d, m + ".safetensors"))
                          for m in ("base", "ft1", "ft2")], before, "an input changed")
        self.assertEqual(runutil.temporaries(os.path.dirname(out)), [], "temporary files left")

    def verify(self, method, d, out):
        r = subprocess.run([sys.executable, self.example("verify_merge.py"), method, d, out],
                           capture_output=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stdout.decode() + r.stderr.decode())
        return r.stdout.decode()

    def test_merges(self):
        d = self.make("make_merge_checkpoints.py", "models")
        for method in MERGES:
            with self.subTest(method):
                recipe = self.example("merge_%s.surg" % method)
                code, out, err = self.surg("check", recipe, *self.inputs(d))
                self.assertEqual((code, out, err),
                                 (0, "%s: ok: 63 tensors in, 21 out\n" % recipe, ""))
                one, four = self.path(method + "_1.safetensors"), self.path(method + "_4.safetensors")
                self.merge(recipe, d, one, "--threads", "1")
                self.merge(recipe, d, four, "--threads", "4")
                self.assertEqual(runutil.sha256(one), runutil.sha256(four), "1 and 4 threads differ")
                said = self.verify(method, d, one)
                self.assertTrue(said.startswith("ok: 21 tensors are mergekit's %s (within " % method),
                                said)
                # The output carries the base's metadata, nothing under an
                # input's prefix.
                tensors, _, _ = stnp.load(one)
                self.assertFalse([n for n in tensors if n.split("/")[0] in ("base", "ft1", "ft2")])

    def test_dare_masks(self):
        """DARE's keep-sets are surg's documented stream (recomputed with a
        NumPy Philox): each kept with probability density; every kept entry
        of the task vector scaled by exactly one factor, the L1 ratio, and
        every dropped one zero. Checked on the task vectors themselves: the
        recipe's map, writing the task vector into ft1 instead of adding it."""
        vm = verify_merge()
        d = self.make("make_merge_checkpoints.py", "models")
        with open(self.example("merge_dare_linear.surg")) as f:
            text = f.read()
        text = text.replace('map "base/**" = x + (0.7 * tv1 + 0.4 * tv2)', 'map "base/**" = tv1')
        self.assertIn('= tv1\n', text)
        r = self.path("dare_tv.surg")
        with open(r, "w") as f:
            f.write(text)
        out = self.path("tv.safetensors")
        self.merge(r, d, out)
        got = stnp.load(out)[0]
        base, ft1 = (stnp.load(os.path.join(d, m + ".safetensors"))[0] for m in ("base", "ft1"))
        kept_total = n_total = 0
        for name, (_, tv) in got.items():
            delta = ft1[name][1] - base[name][1]
            mask = vm.bernoulli_mask(vm.SEED, "base/" + name, 0, 0.6, delta.shape)
            kept_total += int(mask.sum())
            n_total += mask.size
            self.assertTrue((tv[~mask] == 0).all(), name)
            if name == "model.norm.weight":  # no task vector: below eps, kept as it is
                self.assertTrue((tv == 0).all())
                continue
            nz = mask & (delta != 0)
            ratio = tv[nz].astype(D) / delta[nz]
            # sum() of f32 values is an f32 value (added in double, rounded),
            # and the ratio of two is divided in f32.
            want = (F(np.abs(delta).astype(D).sum()) /
                    F(np.abs(np.where(mask, delta, 0)).astype(D).sum()))
            # The one factor, applied in float32: every ratio within an ulp of it.
            self.assertLess(np.abs(ratio / want - 1).max(), 2 ** -22, name)
            self.assertExactly(tv[nz], (delta[nz] * want).astype(F), name)
        self.assertLess(abs(kept_total / n_total - 0.6), 0.005)

    def test_variants(self):
        """The one-line variants the docs give: DARE as the paper rescales
        (divide by the density: mergekit before 2025), and TIES's "count"
        consensus (the sign of the count of signs)."""
        vm = verify_merge()
        d = self.make("make_merge_checkpoints.py", "models")
        models = [stnp.load(os.path.join(d, m + ".safetensors"))[0] for m in ("base", "ft1", "ft2")]
        with open(self.example("merge_dare_linear.surg")) as f:
            dare = f.read()
        dare = dare.replace("let tv1 = where(minimum(l1_1, sum(abs(kept1))) < 1e-7, kept1, kept1 * (l1_1 / sum(abs(kept1))))",
                            "let tv1 = kept1 / 0.6")
        dare = dare.replace("let tv2 = where(minimum(l1_2, sum(abs(kept2))) < 1e-7, kept2, kept2 * (l1_2 / sum(abs(kept2))))",
                            "let tv2 = kept2 / 0.8")
        with open(self.example("merge_ties.surg")) as f:
            ties = f.read()
        ties = ties.replace("let elected = cast(tv1 + tv2 >= 0, f32) * 2 - 1",
                            "let elected = cast(sign(tv1) + sign(tv2) >= 0, f32) * 2 - 1")
        for label, text in (("dare_paper", dare), ("ties_count", ties)):
            self.assertEqual(text.count("/ 0.6") + text.count("sign(tv1) + sign(tv2)"), 1, label)
            r = self.path(label + ".surg")
            with open(r, "w") as f:
                f.write(text)
            out = self.path(label + ".safetensors")
            self.merge(r, d, out)
            got = stnp.load(out)[0]
            for name, (_, value) in got.items():
                base, ft1, ft2 = (m[name][1] for m in models)
                if label == "dare_paper":
                    m1 = vm.bernoulli_mask(vm.SEED, "base/" + name, 0, 0.6, base.shape)
                    m2 = vm.bernoulli_mask(vm.SEED, "base/" + name, 1, 0.8, base.shape)
                    dd = [np.where(m1, ft1 - base, F(0)) / F(0.6), np.where(m2, ft2 - base, F(0)) / F(0.8)]
                    want = vm.gta(base, dd, [0.7, 0.4], False, False)
                else:
                    dd = [vm.magnitude(ft1 - base, 0.5), vm.magnitude(ft2 - base, 0.3)]
                    w = np.array([1.0, 0.6], F).reshape(2, *([1] * base.ndim))
                    weighted = np.stack(dd) * w
                    majority = (np.sign(weighted).sum(0) >= 0).astype(F) * 2 - 1
                    agree = (np.sign(weighted) == majority).astype(F)
                    div = (w * agree).sum(0, dtype=F)
                    div[div == 0] = 1
                    want = (base + (weighted * agree).sum(0, dtype=F) / div).astype(F)
                self.assertExactly(value, want, "%s %s" % (label, name))

    def test_slerp_edge_cases(self):
        """mergekit's SLERP where a plain formula differs: a zero tensor is
        not normalized (norm <= eps), so its dot is 0 and the angle pi/2 --
        the result is sin(t pi/2) times the other, not a lerp; parallel and
        opposite tensors (|cos| > 0.9995) are lerped; an angle near pi is
        interpolated through it."""
        vm = verify_merge()
        rng = np.random.default_rng(5)
        v = rng.standard_normal((40, 50)).astype(F)
        w = rng.standard_normal((40, 50)).astype(F)
        cases = {"zero": (np.zeros_like(v), w), "parallel": (v, 3 * v), "opposite": (v, -2 * v),
                 "wide": (v, -v + 0.1 * w), "tiny": (1e-9 * v, w)}
        d = self.path("edge")
        os.makedirs(d)
        stnp.save(os.path.join(d, "ft1.safetensors"), {k: ("F32", a) for k, (a, _) in cases.items()})
        stnp.save(os.path.join(d, "ft2.safetensors"), {k: ("F32", b) for k, (_, b) in cases.items()})
        stnp.save(os.path.join(d, "base.safetensors"), {k: ("F32", a) for k, (a, _) in cases.items()})
        out = self.path("edge.safetensors")
        self.merge(self.example("merge_slerp.surg"), d, out)
        got = stnp.load(out)[0]
        for name, (a, b) in cases.items():
            # The cosine is an f32 value (sum() of f32 tensors); the rest in
            # double. Near an angle of pi the angle is ill-conditioned, so the
            # cosine's rounding matters there ("wide").
            a64, b64 = a.astype(D), b.astype(D)
            cos = float(F(np.sum(vm.normalize(a64) * vm.normalize(b64))))
            if abs(cos) > 0.9995:
                want = 0.6 * a64 + 0.4 * b64
            else:
                th = np.arccos(cos)
                want = np.sin(th - 0.4 * th) / np.sin(th) * a64 + np.sin(0.4 * th) / np.sin(th) * b64
            scale = np.abs(a).astype(D) + np.abs(b)
            err = np.abs(got[name][1] - want) / np.spacing(scale.astype(F))
            # The angle's condition: f32 steps move it by ulps / sin(theta).
            bound = 8 if abs(cos) > 0.9995 else 8 / (1 - cos * cos)
            self.assertLessEqual(err.max(), bound, name)
        self.assertExactly(got["zero"][1], (F(np.sin(0.4 * np.pi / 2)) * w).astype(F), "zero")

    def test_streaming(self):
        """Three 36 MB checkpoints (108 MB): every merge holds chunks and
        per-tensor scalars, never a model: peak RSS far below the inputs."""
        d = self.make("make_merge_checkpoints.py", "big", "--hidden", "512", "--intermediate",
                      "1024", "--vocab", "4096")
        total = sum(os.path.getsize(os.path.join(d, m + ".safetensors"))
                    for m in ("base", "ft1", "ft2")) / (1 << 20)
        if sanitized():
            # ASan's shadow memory and quarantine of freed blocks are part of
            # the peak RSS there; the gcc build measures the streaming.
            self.skipTest("peak RSS under AddressSanitizer measures the sanitizer")
        self.assertGreater(total, 100)
        for method in MERGES:
            with self.subTest(method):
                out = self.path(method + ".safetensors")
                cmd = [ARGS.surg, "run", self.example("merge_%s.surg" % method),
                       *self.inputs(d), out, "--threads", "2", "-q"]
                r = subprocess.run([sys.executable, "-c", PEAK_RSS] + cmd, capture_output=True,
                                   timeout=600)
                rc, kib = r.stdout.split()
                self.assertEqual((int(rc), r.stderr), (0, b""))
                rss = int(kib) / 1024
                self.assertLess(rss, total / 2,
                                "%s: peak RSS %.0f MiB for %.0f MiB of inputs" % (method, rss, total))
                os.unlink(out)


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surg", required=True, help="the surg executable")
    parser.add_argument("--examples", required=True, help="the project's examples/")
    ARGS, rest = parser.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    ARGS.examples = os.path.abspath(ARGS.examples)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
