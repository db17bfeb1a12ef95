"""test_msgpack.py: Flax's msgpack checkpoints (flax.serialization) in and out
of surg, checked against Debian's python3-msgpack. Inputs are written by
to_bytes below, a re-implementation of flax.serialization.to_bytes from its
rules (ext 1 for arrays, ext 3 for NumPy scalars, ext 2 for complex, lists and
tuples as maps keyed "0", "1", ..., chunked maps for arrays over the chunk
size) with msgpack and NumPy, or byte by byte for hostile files; outputs are
read back with msgpack.unpackb and stnp and compared value for value.

usage: test_msgpack.py --surg SURG --knobs WRITE_KNOBS [unittest args]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import unittest

import msgpack
import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stnp  # noqa: E402
from runutil import run_surg  # noqa: E402
from test_npz import sample  # noqa: E402  (values of every kind a dtype has)

ARGS = None  # filled in by main()

MAX_CHUNK = 2 ** 30

# NumPy dtype -> safetensors name
ST = {"bool": "BOOL", "int8": "I8", "uint8": "U8", "int16": "I16", "uint16": "U16",
      "int32": "I32", "uint32": "U32", "int64": "I64", "uint64": "U64", "float16": "F16",
      "float32": "F32", "float64": "F64", "complex64": "C64"}


def st_tensors(arrays):
    """{name: array} as stnp.save takes it."""
    return {k: (ST[a.dtype.name], a) for k, a in arrays.items()}


# ---- flax.serialization, re-implemented ------------------------------------

def ndarray_ext(a, code=1):
    """ext `code` of [shape, dtype name, C-order bytes], as Flax packs it."""
    a = np.asarray(a)
    return msgpack.ExtType(code, msgpack.packb((list(a.shape), a.dtype.name, a.tobytes("C")),
                                               use_bin_type=True))


def chunked(a, chunk_elems):
    """Flax's map for an array over the chunk size, in chunks of chunk_elems."""
    flat = np.asarray(a).reshape(-1)
    chunks = {str(i): ndarray_ext(flat[k:k + chunk_elems])
              for i, k in enumerate(range(0, max(flat.size, 1), chunk_elems))}
    return {"__msgpack_chunked_array__": True,
            "shape": {str(i): d for i, d in enumerate(a.shape)}, "chunks": chunks}


def state(x, max_chunk=MAX_CHUNK):
    """to_state_dict then Flax's msgpack hooks: the tree msgpack.packb gets."""
    if isinstance(x, dict):
        return {str(k): state(v, max_chunk) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return {str(i): state(v, max_chunk) for i, v in enumerate(x)}
    if isinstance(x, np.ndarray):
        if x.nbytes > max_chunk:
            return chunked(x, max(1, max_chunk // x.dtype.itemsize))
        return ndarray_ext(x)
    if isinstance(x, np.generic):
        return ndarray_ext(x, 3)
    if isinstance(x, complex):
        return msgpack.ExtType(2, msgpack.packb((x.real, x.imag)))
    return x


def to_bytes(x, max_chunk=MAX_CHUNK):
    return msgpack.packb(state(x, max_chunk), use_bin_type=True)


def ext_hook(code, data):
    if code in (1, 3):
        shape, name, buf = msgpack.unpackb(data, raw=False)
        a = np.frombuffer(buf, dtype=np.dtype(name)).reshape(shape)
        return a if code == 1 else a[()]
    if code == 2:
        return complex(*msgpack.unpackb(data))
    return msgpack.ExtType(code, data)


def unchunk(x):
    if isinstance(x, dict):
        if "__msgpack_chunked_array__" in x:
            shape = tuple(x["shape"][str(i)] for i in range(len(x["shape"])))
            parts = [x["chunks"][str(i)] for i in range(len(x["chunks"]))]
            return np.concatenate(parts).reshape(shape)
        return {k: unchunk(v) for k, v in x.items()}
    return x


def msgpack_restore(data):
    """flax.serialization.msgpack_restore."""
    return unchunk(msgpack.unpackb(data, ext_hook=ext_hook, raw=False))


def flat(tree, prefix=""):
    """{"a/b": array} of a restored tree's arrays (NumPy scalars as 0-d)."""
    out = {}
    for k, v in tree.items():
        name = prefix + k
        if isinstance(v, dict):
            out.update(flat(v, name + "/"))
        elif isinstance(v, (np.ndarray, np.generic)):
            out[name] = np.asarray(v)
    return out


def train_state():
    """A Flax TrainState with optax.adam's state, as to_state_dict orders it."""
    params = {"Dense_0": {"bias": sample("float32", (3,), 1),
                          "kernel": sample("float32", (4, 3), 2)},
              "Dense_1": {"bias": sample("float16", (2,), 3),
                          "kernel": sample("float16", (3, 2), 4)}}
    zeros = {k: {n: np.zeros_like(a) + 0.5 for n, a in v.items()} for k, v in params.items()}
    adam = {"count": np.array(7, np.int32), "mu": zeros, "nu": zeros}
    return {"step": 12, "params": params, "opt_state": (adam, {})}


def state_dict(x):
    """x with lists and tuples as maps keyed "0", "1", ... (to_state_dict)."""
    if isinstance(x, (list, tuple)):
        x = {str(i): v for i, v in enumerate(x)}
    if isinstance(x, dict):
        return {k: state_dict(v) for k, v in x.items()}
    return x


def ordered_state():
    """A TrainState as to_bytes writes it (in place: insertion order, which is
    not sorted): step first, each Dense's kernel before its bias, a list of 12
    layers in index order, NumPy scalars (ext 3) and values of every kind."""
    params = {"Dense_0": {"kernel": sample("float32", (4, 3), 2),
                          "bias": sample("float32", (3,), 1)},
              "Dense_1": {"kernel": sample("float16", (3, 2), 4),
                          "bias": sample("float16", (2,), 3)}}
    zeros = {k: {n: np.zeros_like(a) + 0.5 for n, a in v.items()} for k, v in params.items()}
    adam = {"count": np.array(7, np.int32), "mu": zeros, "nu": zeros}
    return {"step": 12, "params": params,
            "layers": [np.full(2, i, np.int16) for i in range(12)],
            "opt_state": (adam, {}), "scale": np.float32(0.5),
            "meta": {"name": "run-7", "lr": np.float64(1e-3), "z": complex(1, -2)}}


# ---- the tests ---------------------------------------------------------------

class MsgpackTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.identity = self.path("id.surg")
        open(self.identity, "w").close()

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, data):
        p = self.path(name)
        with open(p, "wb") as f:
            f.write(data)
        return p

    def read(self, p):
        with open(p, "rb") as f:
            return f.read()

    def surg(self, *args):
        return run_surg(ARGS.surg, *args)

    def ok(self, *args):
        rc, out, err = self.surg(*args)
        self.assertEqual(rc, 0, err)
        return out, err

    def fails(self, path, code, message):
        rc, out, err = self.surg("--diagnostics", "json", "schema", path)
        self.assertEqual(rc, 1, err)
        diags = [json.loads(line) for line in err.splitlines()]
        self.assertEqual([(d["code"], d["message"]) for d in diags], [(code, message)])
        self.assertNotIn("AddressSanitizer", err)
        return err

    def to_safetensors(self, src):
        out = self.path("out.safetensors")
        self.ok("run", self.identity, src, out)
        return stnp.load(out)[0]

    def assert_same(self, got, want):
        """got: stnp's {name: (dtype, array)}; want: {name: array}."""
        self.assertEqual(sorted(got), sorted(want))
        for name, a in want.items():
            b = got[name][1]
            self.assertEqual(b.shape, a.shape, name)
            self.assertEqual(b.tobytes(), np.ascontiguousarray(a).tobytes(), name)

    # -- reading

    def test_train_state(self):
        tree = train_state()
        p = self.write("ckpt.msgpack", to_bytes(tree))
        out, err = self.ok("schema", p)
        self.assertIn("opt_state/0/\n  count       i32[]\n", out)
        self.assertIn('note: 2 values are not an array (numbers, strings, None, empty maps, '
                      '...), so not a tensor: "step", "opt_state/1"; kept in the metadata '
                      '"msgpack.tree" for a .msgpack output', err)
        want = flat(msgpack_restore(self.read(p)))
        self.assertIn("opt_state/0/mu/Dense_1/kernel", want)
        self.assert_same(self.to_safetensors(p), want)

    def test_every_dtype(self):
        names = ["bool", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
                 "uint64", "float16", "float32", "float64", "complex64"]
        tree = {n: sample(n, (2, 3), i) for i, n in enumerate(names)}
        tree["zero_d"] = sample("float32", (), 9)
        tree["empty"] = np.zeros((0, 4), np.float32)
        tree["scalar"] = np.float64(2.5)
        bf16 = np.arange(6, dtype=np.uint16) + 0x3f80
        packed = state(tree)
        # bfloat16 (NumPy knows it through ml_dtypes, absent here): its bits
        packed["bf16"] = msgpack.ExtType(1, msgpack.packb(([6], "bfloat16", bf16.tobytes())))
        p = self.write("d.msgpack", msgpack.packb(packed, use_bin_type=True))
        out, _ = self.ok("schema", p, "--json")
        self.assertIn('"bf16": {"dtype": "BF16", "shape": [6]}', out)
        self.assertIn('"scalar": {"dtype": "F64", "shape": []}', out)
        got = self.to_safetensors(p)
        want = {k: np.asarray(v) for k, v in tree.items()}
        want["bf16"] = bf16
        self.assertEqual(sorted(got), sorted(want))
        for k, a in want.items():
            self.assertEqual(got[k][1].tobytes(), np.ascontiguousarray(a).tobytes(), k)

    def test_chunked(self):
        a = sample("float32", (5, 7), 3)
        b = sample("int16", (3,), 4)
        tree = {"w": chunked(a, 8), "one": chunked(b, 100), "x": ndarray_ext(a[0])}
        p = self.write("c.msgpack", msgpack.packb(tree, use_bin_type=True))
        self.assert_same(self.to_safetensors(p), {"w": a, "one": b, "x": a[0]})
        # the reference agrees
        self.assertTrue(np.array_equal(msgpack_restore(self.read(p))["w"], a))

    def test_flax_model_directory(self):
        d = self.path("hf")
        os.mkdir(d)
        with open(os.path.join(d, "flax_model.msgpack"), "wb") as f:
            f.write(to_bytes({"a": {"b": np.ones(2, np.float32)}}))
        out, _ = self.ok("schema", d)
        self.assertIn("a/b  f32[2]", out)

    def test_by_content(self):
        """legacy flax.training.checkpoints' checkpoint_N and t5x's `checkpoint`
        have no extension: the content tells."""
        for name in ["checkpoint_5", "checkpoint"]:
            p = self.write(name, to_bytes({"params": {"w": np.arange(3, dtype=np.int32)}}))
            out, _ = self.ok("schema", p)
            self.assertIn("params/w  i32[3]", out)
            self.assert_same(self.to_safetensors(p), {"params/w": np.arange(3, dtype=np.int32)})
        p = self.write("checkpoint_6", b"\x7b\x22a\x22: 1}")  # JSON, not msgpack
        rc, _, err = self.surg("schema", p)
        self.assertEqual(rc, 2, err)
        self.assertIn("cannot tell the format", err)

    def test_format_option(self):
        """--format names the format of an input whose name does not say."""
        arrays = {"w": np.arange(4, dtype=np.float32)}
        src = self.path("weights")
        stnp.save(src, st_tensors(arrays))
        rc, _, err = self.surg("schema", src)
        self.assertEqual(rc, 2, err)
        self.assertIn("cannot tell the format from the name: expected a .safetensors file, "
                      "a sharded checkpoint (a directory or a .safetensors.index.json), a "
                      "NumPy .npz or .npy, a PyTorch .pt, .pth or .bin, a Flax .msgpack, or "
                      "a .json schema (or give --format NAME)", err)
        out, _ = self.ok("schema", src, "--format", "safetensors")
        self.assertIn("w  f32[4]", out)
        dst = self.path("out.msgpack")
        self.ok("run", self.identity, src, dst, "--format", "safetensors")
        self.assertEqual(self.read(dst), to_bytes(arrays))
        out, _ = self.ok("check", self.identity, "--from", src, "--format", "safetensors")
        self.assertIn("ok: 1 tensor in, 1 out", out)
        # an empty state dict is no map content tells
        empty = self.write("empty", to_bytes({}))
        self.assertEqual(self.surg("schema", empty)[0], 2)
        out, _ = self.ok("schema", empty, "--format", "msgpack")
        self.assertIn("0 tensors", out)
        # a name that says is followed
        self.ok("schema", dst, "--format", "safetensors")
        rc, _, err = self.surg("schema", src, "--format", "flax")
        self.assertEqual(rc, 2, err)
        self.assertIn("error: --format flax is not a format: give safetensors, npz, npy, "
                      "torch, msgpack, orbax, peft or schema", err)

    # -- writing

    def assert_tree(self, data, want):
        """data decodes (as msgpack_restore does) to the tree of arrays `want`."""
        got = msgpack_restore(data)

        def same(g, w, where):
            if isinstance(w, dict):
                self.assertIsInstance(g, dict, where)
                self.assertEqual(list(g), list(w), where)  # the same keys, in order
                for k in w:
                    same(g[k], w[k], where + "/" + k)
            elif not isinstance(w, (np.ndarray, np.generic)):
                self.assertEqual((type(g), g), (type(w), w), where)
            elif isinstance(w, np.generic):  # ext 3 comes back a NumPy scalar
                self.assertIsInstance(g, np.generic, where)
                self.assertEqual((g.dtype, g.tobytes()), (w.dtype, w.tobytes()), where)
            else:
                self.assertIsInstance(g, np.ndarray, where)
                self.assertEqual(g.dtype, w.dtype, where)
                self.assertEqual(g.shape, w.shape, where)
                self.assertEqual(g.tobytes(), w.tobytes(), where)
        same(got, want, "")

    @staticmethod
    def sorted_tree(x):
        """x with every map's keys in byte order, as JAX leaves a state dict."""
        if isinstance(x, (list, tuple)):
            x = {str(i): v for i, v in enumerate(x)}
        if isinstance(x, dict):
            return {k: MsgpackTest.sorted_tree(x[k])
                    for k in sorted(x, key=lambda k: k.encode())}
        return x

    @staticmethod
    def arrays_only(x):
        """x without the leaves that are not arrays (NumPy scalars as 0-d)."""
        if isinstance(x, dict):
            out = {k: MsgpackTest.arrays_only(v) for k, v in x.items()}
            out = {k: v for k, v in out.items() if v is not None}
            return out or None  # an empty map is not carried either
        if isinstance(x, (np.ndarray, np.generic)):
            return np.asarray(x)
        return None

    def test_msgpack_to_msgpack(self):
        tree = train_state()
        tree["meta"] = {"name": "run-7", "lr": 1e-3, "done": False, "none": None,
                        "z": complex(1, -2), "blob": b"\x00\x01", "neg": -5, "big": 2 ** 40}
        tree = self.sorted_tree(tree)
        src = self.write("in.msgpack", to_bytes(tree))
        out = self.path("out.msgpack")
        self.ok("run", self.identity, src, out)
        data = self.read(out)
        self.assert_tree(data, tree)
        # what Flax's to_bytes writes for the same tree
        self.assertEqual(data, to_bytes(tree))
        # through safetensors (the leaves ride in its metadata) and back
        mid, back = self.path("mid.safetensors"), self.path("back.msgpack")
        self.ok("run", self.identity, src, mid)
        self.assertIn("msgpack.tree", stnp.load(mid)[1])
        self.ok("run", self.identity, mid, back)
        self.assertEqual(self.read(back), data)

    def keys(self, data):
        """Every map's keys in order, as python3-msgpack reads them."""
        def walk(x):
            if isinstance(x, dict):
                return [(k, walk(v)) for k, v in x.items()]
            return None
        return walk(msgpack.unpackb(data, strict_map_key=False))

    def recipe(self, text):
        p = self.path("r%d.surg" % len(os.listdir(self.dir)))
        with open(p, "w") as f:
            f.write(text)
        return p

    def test_key_order_kept(self):
        """The input's key order comes back (to_bytes writes insertion order:
        step first, kernel before bias, a list's indices in number order), and
        NumPy scalars come back as scalars (ext 3)."""
        tree = ordered_state()
        src = self.write("in.msgpack", to_bytes(tree))
        out = self.path("out.msgpack")
        self.ok("run", self.identity, src, out)
        data = self.read(out)
        self.assertEqual(data, to_bytes(tree))
        raw = msgpack.unpackb(data, strict_map_key=False)
        self.assertEqual(list(raw), ["step", "params", "layers", "opt_state", "scale", "meta"])
        self.assertEqual(list(raw["layers"]), [str(i) for i in range(12)])
        self.assertEqual(raw["scale"].code, 3)
        self.assertEqual(raw["opt_state"]["0"]["count"].code, 1)  # a 0-d array stays one
        self.assert_tree(data, state_dict(tree))
        # through safetensors and back: the same tree
        mid, back = self.path("mid.safetensors"), self.path("back.msgpack")
        self.ok("run", self.identity, src, mid)
        self.ok("run", self.identity, mid, back)
        self.assertEqual(self.read(back), data)

    def renamed_state(self):
        """ordered_state() after RENAMES, as Flax would write it: renamed keys
        where they were, new keys where sorted dicts put them."""
        t = ordered_state()
        p = t["params"]
        t["params"] = {"Conv_0": p["Dense_0"], "Dense_0b": {"bias": np.zeros(2, np.float32)},
                       "Dense_1": p["Dense_1"]}
        t["layers"] = t["layers"] + [np.zeros(2, np.int16)]
        t["scale"] = np.float32(1.0)
        del t["meta"]["name"]
        out = {}
        for k, v in t.items():
            out[{"step": "global_step", "opt_state": "opt"}.get(k, k)] = v
        out["opt"] = {"0": out["opt"][0], "1": {}}
        return out

    RENAMES = ('rename "params/Dense_0/**" -> "params/Conv_0/$1"\n'
               'rename "opt_state/**" -> "opt/$1"\n'
               'fill "params/Dense_0b/bias" : f32[2] = 0\n'
               'fill "layers/12" : i16[2] = 0\n'
               'map "scale" = x * 2\n'
               'drop "meta/name"\n'
               'rename "step" -> "global_step"\n')

    def test_key_order_after_renames(self):
        """Renames keep a key's place and move the values under it (a glob
        rename of a subtree, a rename of a value alone), drops drop values,
        new keys go where Flax's sorted dicts put them (number order in a
        list's map)."""
        src = self.write("in.msgpack", to_bytes(ordered_state()))
        recipe = self.recipe(self.RENAMES)
        out = self.path("out.msgpack")
        self.ok("run", recipe, src, out)
        want = self.renamed_state()
        data = self.read(out)
        self.assertEqual(self.keys(data), self.keys(to_bytes(want)))
        top = [k for k, _ in self.keys(data)]
        self.assertEqual(top, ["global_step", "params", "layers", "opt", "scale", "meta"])
        self.assertEqual(msgpack.unpackb(data, strict_map_key=False)["opt"]["1"], {})
        self.assert_tree(data, state_dict(want))
        self.assertEqual(data, to_bytes(want))
        # the same recipe on the tree carried through safetensors
        mid, back = self.path("mid.safetensors"), self.path("back.msgpack")
        self.ok("run", self.identity, src, mid)
        self.ok("run", recipe, mid, back)
        self.assertEqual(self.read(back), data)
        # and on the way out to safetensors: the metadata is renamed too
        mid2 = self.path("mid2.safetensors")
        self.ok("run", recipe, src, mid2)
        tree = json.loads(stnp.load(mid2)[1]["msgpack.tree"])
        self.assertEqual(list(tree)[:3], ["global_step", "params/Conv_0/kernel",
                                          "params/Conv_0/bias"])
        self.assertEqual(tree["opt/1"], "80")
        self.assertEqual(tree["scale"], "s")
        self.assertNotIn("meta/name", tree)
        self.assertNotIn("params/Dense_0b/bias", tree)  # new: placed by the writer

    def test_drop_and_keep_values(self):
        """drop and keep take the values their patterns match (and only them)."""
        src = self.write("in.msgpack", to_bytes(ordered_state()))
        out = self.path("out.msgpack")
        self.ok("run", self.recipe('keep "params/**", "meta/**"\n'), src, out)
        t = ordered_state()
        self.assertEqual(self.read(out), to_bytes({"params": t["params"], "meta": t["meta"]}))
        self.ok("run", self.recipe('drop "opt_state/**"\ndrop "meta/*"\n'), src, out)
        del t["opt_state"], t["meta"]
        self.assertEqual(self.read(out), to_bytes(t))
        # a pattern that matches neither a tensor nor a value is still an error
        rc, _, err = self.surg("run", self.recipe('drop "nothing/**"\n'), src, out)
        self.assertEqual(rc, 1, err)
        self.assertIn('pattern "nothing/**" matches no tensor', err)
        # and a value is no tensor to other statements
        rc, _, err = self.surg("run", self.recipe('map "step" = x * 2\n'), src, out)
        self.assertEqual(rc, 1, err)
        self.assertIn('pattern "step" matches no tensor', err)

    def test_leaves_bounded(self):
        """Values kept are bounded: 64 KiB of them, 1 MiB of paths; else none."""
        deep = {"k" * 200000: {"k" * 200000: {"k" * 200000: {str(i): None for i in range(5)}}}}
        many = {"s": "x" * 70000, "w": np.ones(1, np.int8)}
        for name, tree in (("deep", deep), ("many", many)):
            p = self.write(name + ".msgpack", to_bytes(tree))
            out = self.path(name + "-out.msgpack")
            rc, _, err = self.surg("run", self.identity, p, out)
            self.assertEqual(rc, 0, err)
            self.assertIn("too many to keep (over 64 KiB, or paths over 1 MiB), they are "
                          "dropped", err)
            self.assertEqual(msgpack_restore(self.read(out)), self.arrays_only(tree) or {})

    def test_leaves_give_way(self):
        """A tensor the recipe puts where a kept value was wins; metadata that
        is not leaves is not written."""
        src = self.write("in.msgpack", to_bytes({"step": 3, "x": {"y": np.ones(2, np.int8)}}))
        recipe = self.path("r.surg")
        with open(recipe, "w") as f:
            f.write('rename "x/y" -> "step"\n')
        out = self.path("out.msgpack")
        rc, _, err = self.surg("run", recipe, src, out)
        self.assertEqual(rc, 0, err)
        self.assertIn('warning: 1 value of the metadata "msgpack.tree" ("step") is not '
                      'written: a tensor of the output, or a value before it, is there', err)
        self.assertEqual(self.read(out), to_bytes({"step": np.ones(2, np.int8)}))
        st = self.path("in.safetensors")
        stnp.save(st, st_tensors({"a": np.zeros(1, np.int8)}),
                  metadata={"msgpack.tree": '{"b": "c1"}'})
        rc, _, err = self.surg("run", self.identity, st, out)
        self.assertEqual(rc, 0, err)
        self.assertIn('warning: the metadata "msgpack.tree" is not a tree a .msgpack can keep '
                      '(a value is not one msgpack value that is not a map or an array): its '
                      'order and values are not used', err)
        self.assertEqual(self.read(out), to_bytes({"a": np.zeros(1, np.int8)}))
        # the compiler, which moves its paths, says when it is not paths and strings
        for value, why in (('[1]', "expected '{' but found '['"),
                           ('{"b": 1}', "expected '\"' but found '1'")):
            stnp.save(st, st_tensors({"a": np.zeros(1, np.int8)}),
                      metadata={"msgpack.tree": value})
            mid = self.path("mid.safetensors")
            rc, _, err = self.surg("run", self.identity, st, mid)
            self.assertEqual(rc, 0, err)
            self.assertIn('warning: the metadata "msgpack.tree" is not an object of paths and '
                          'strings (%s); it is dropped' % why, err)
            self.assertNotIn("msgpack.tree", stnp.load(mid)[1])

    def test_safetensors_to_msgpack(self):
        rng = np.random.default_rng(5)
        tensors = {
            "params/Dense_10/kernel": rng.standard_normal((3, 300)).astype(np.float32),
            "params/Dense_2/kernel": rng.standard_normal((2, 2)).astype(np.float64),
            "params/Dense_2/bias": np.arange(70000, dtype=np.uint8),  # bin32, ext32
            "a-b": np.arange(6, dtype=np.int8),  # a payload of 16 bytes: fixext 16
            "a/c": np.array(True),
            "k" * 40: np.zeros((0, 70000), np.int16),  # str8 key, uint32 dimension
            "wide/" + "x": np.ones((1, 1, 1), np.uint64),
        }
        for i in range(20):  # a map of 20 keys: map16
            tensors["many/%02d" % i] = np.full((2,), i, np.int32)
        src = self.path("in.safetensors")
        stnp.save(src, st_tensors(tensors), metadata={"note": "x"})
        out = self.path("out.msgpack")
        rc, _, err = self.surg("run", self.identity, src, out)
        self.assertEqual(rc, 0, err)
        self.assertIn('.msgpack holds a tree of arrays only: the metadata "note" is not '
                      'written', err)
        want = {}
        for name, a in tensors.items():
            node = want
            *maps, leaf = name.split("/")
            for m in maps:
                node = node.setdefault(m, {})
            node[leaf] = a
        want = self.sorted_tree(want)
        self.assertEqual(list(want), ["a", "a-b", "k" * 40, "many", "params", "wide"])
        self.assert_tree(self.read(out), want)
        self.assertEqual(self.read(out), to_bytes(want))
        # and surg reads it back
        self.assert_same(self.to_safetensors(out), tensors)

    def test_chunked_output(self):
        """Arrays over the chunk size are written as Flax chunks them (over
        2^30 bytes; the test tool makes the size small)."""
        tree = {"params": {"big": sample("float32", (5, 7), 1),  # 140 B: chunks of 8
                           "even": sample("int16", (4, 4), 2),  # 32 B: chunks of 16
                           "small": sample("float64", (4,), 3),  # 32 B: one ext
                           "tiny": np.arange(33, dtype=np.uint8)}}  # chunks of 32, 1
        src = self.path("in.safetensors")
        stnp.save(src, st_tensors(flat(tree)))
        out = self.path("out.msgpack")
        r = subprocess.run([ARGS.knobs, src, out, "--chunk-bytes", "32"], capture_output=True)
        self.assertEqual(r.returncode, 0, r.stderr)
        data = self.read(out)
        self.assertEqual(data, to_bytes(tree, max_chunk=32))
        raw = msgpack.unpackb(data)
        self.assertEqual(sorted(raw["params"]["big"]["chunks"]), [str(i) for i in range(5)])
        self.assertIsInstance(raw["params"]["small"], msgpack.ExtType)
        self.assert_tree(data, tree)
        # surg reads its chunks back
        self.assert_same(self.to_safetensors(out), flat(tree))
        again = self.path("again.msgpack")
        self.ok("run", self.identity, out, again)
        self.assertEqual(self.read(again), to_bytes(tree))

    def test_writer_refuses(self):
        src = self.path("in.safetensors")
        stnp.save(src, st_tensors({"a": np.zeros(2, np.float32), "a/b": np.zeros(2, np.float32)}))
        out = self.path("out.msgpack")
        rc, _, err = self.surg("run", self.identity, src, out)
        self.assertEqual(rc, 1, err)
        self.assertIn('error: tensor "a" and tensor "a/b" cannot both be in a tree: "a" would '
                      'be an array and a map', err)
        self.assertFalse(os.path.exists(out))
        stnp.save(src, st_tensors({"a//b": np.zeros(2, np.float32)}))
        rc, _, err = self.surg("run", self.identity, src, out)
        self.assertNotEqual(rc, 0, err)
        self.assertIn('a .msgpack nests maps at each "/": a name may not begin or end with "/" '
                      'or hold "//"', err)
        self.assertFalse(os.path.exists(out))
        stnp.save(src, st_tensors({"a/b": np.zeros(2, np.float32)}))
        rc, _, err = self.surg("run", self.identity, src, out, "--max-shard-size", "1KB")
        self.assertEqual(rc, 2, err)
        self.assertIn("a .msgpack is one file: --max-shard-size writes safetensors shards", err)

    # -- refusing

    def test_hostile(self):
        good = to_bytes({"a": np.arange(4, dtype=np.float32)})
        deep = "a/" * 32
        chunked_short = chunked(np.arange(6, dtype=np.int8), 4)
        chunked_short["shape"] = {"0": 7}
        cases = [
            ("trunc", good[:-3], "mp-truncated",
             '29 bytes run past the end of the file (32 bytes) (at "a", byte 6)'),
            ("top", msgpack.packb([1, 2]), "mp-top",
             "the file is not a msgpack map (Flax writes its state dict as one) (at byte 1)"),
            ("trailing", good + b"\xc0", "mp-trailing",
             "1 bytes follow the top map, which ends here (at byte 35)"),
            ("c1", b"\x81\xa1a\xc1", "mp-format",
             'byte 0xc1 begins no msgpack object (at "a", byte 3)'),
            ("huge_map", b"\x81\xa1a\xdf\xff\xff\xff\xff", "mp-count",
             'a map of 4294967295 pairs cannot fit in the 0 bytes left (at "a", byte 8)'),
            ("huge_str", b"\x81\xdb\xff\xff\xff\xff", "mp-truncated",
             "4294967295 bytes run past the end of the file (6 bytes) (at byte 6)"),
            ("int_key", msgpack.packb({1: 2}), "mp-key",
             "a map has a key that is not a string (Flax writes string keys only) "
             "(at byte 1)"),
            ("slash_key", to_bytes({"a/b": np.zeros(1)}), "mp-key",
             'a map has a key that is not a name segment: it holds "/" (at byte 1)'),
            ("nul_key", to_bytes({"\0w": np.zeros(1)}), "mp-key",
             "a map has a key that is not a name segment: it holds a NUL byte (at byte 1)"),
            ("empty_key", to_bytes({"": np.zeros(1)}), "mp-key",
             "a map has a key that is empty (at byte 1)"),
            ("dup", b"\x82\xa1a\xc0\xa1a\xc0", "mp-duplicate-key",
             'a map holds the key "a" twice (first at byte 1) (at byte 4)'),
            ("deep", b"\x81\xa1a" * 70 + b"\xc0", "mp-depth",
             'maps and arrays are nested more than 64 deep (at "%s\u2026", byte 193)'
             % deep[:64]),
            ("size", msgpack.packb({"a": msgpack.ExtType(
                1, msgpack.packb(([3], "float32", b"\0" * 8)))}), "mp-size",
             '3 elements of float32 need 12 bytes, but the array holds 8 (at "a", byte 19)'),
            ("dtype", msgpack.packb({"a": msgpack.ExtType(
                1, msgpack.packb(([1], "complex128", b"\0" * 16)))}), "mp-dtype",
             'an array has dtype "complex128", which surg does not read (at "a", byte 20)'),
            ("payload", msgpack.packb({"a": msgpack.ExtType(
                1, msgpack.packb(([1], "int8")))}), "mp-ndarray",
             'an array\'s ext payload is not [shape, dtype, data] (at "a", byte 6)'),
            ("neg_dim", msgpack.packb({"a": msgpack.ExtType(
                1, msgpack.packb(([-1], "int8", b"")))}), "mp-ndarray",
             'dimension 0 of an array\'s shape is not a non-negative integer (at "a", byte 9)'),
            ("extra", msgpack.packb({"a": msgpack.ExtType(
                1, msgpack.packb(([1], "int8", b"x")) + b"\xc0")}), "mp-ndarray",
             'an array\'s ext payload holds 1 bytes after its data (at "a", byte 16)'),
            ("chunks_short", msgpack.packb({"w": chunked_short}), "mp-chunked",
             'the chunks of a chunked array hold 6 elements, its shape 7 (at "w", byte 85)'),
            ("chunks_keys", msgpack.packb({"w": {
                "__msgpack_chunked_array__": True, "shape": {"0": 2},
                "chunks": {"1": ndarray_ext(np.zeros(2, np.int8))}}}), "mp-chunked",
             'a chunked array\'s "shape" or "chunks" map is not keyed "0", "1", ... in order '
             '(at "w", byte 51)'),
            ("chunk_late", msgpack.packb({"w": {"a": 1, "__msgpack_chunked_array__": True}}),
             "mp-chunked",
             '"__msgpack_chunked_array__" is not the first key of its map (at "w", byte 7)'),
        ]
        for name, data, code, message in cases:
            with self.subTest(name):
                self.fails(self.write(name + ".msgpack", data), code, message)


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--surg", required=True)
    parser.add_argument("--knobs", required=True, help="the write_knobs tool")
    ARGS, rest = parser.parse_known_args()
    ARGS.knobs = os.path.abspath(ARGS.knobs)
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
