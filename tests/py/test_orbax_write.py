"""test_orbax_write.py: Orbax checkpoints out of surg (`--out-format orbax`),
and `--out-format` for the other outputs. Every output is checked without
surg: each array read back with Debian's python3-zarr and compared with the
NumPy values the input was written from; `_METADATA`,
`_CHECKPOINT_METADATA` and each `.zarray` parsed with json and checked field
by field against the form Orbax's fixtures show (their key sets compared with
the fixture's own files, the tree keys with Python's str(tuple(keys)), the
bytes with json.dumps as Orbax calls it); `.msgpack` outputs read back with
python3-msgpack. Atomicity: a run that fails leaves neither the target nor
a temporary directory, an earlier output it was to replace stays whole, and
a directory surg did not write is refused untouched.

usage: test_orbax_write.py --surg SURG --knobs WRITE_KNOBS [unittest args]
"""

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import msgpack
import numpy as np
import zarr

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402
from runutil import run_surg  # noqa: E402
from test_msgpack import ST, msgpack_restore, sample, st_tensors, to_bytes, train_state  # noqa: E402

ARGS = None  # filled in by main()

FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..", "shared",
                       "fixtures", "orbax", "v0_checkpoints", "direct_checkpoint",
                       "checkpoint_metadata_present", "pytree_checkpointable_has_metadata")
HANDLER = "orbax.checkpoint._src.handlers.pytree_checkpoint_handler.PyTreeCheckpointHandler"
ZDTYPE = {"bool": "|b1", "int8": "|i1", "uint8": "|u1", "int16": "<i2", "uint16": "<u2",
          "float16": "<f2", "int32": "<i4", "uint32": "<u4", "float32": "<f4",
          "int64": "<i8", "uint64": "<u8", "float64": "<f8", "complex64": "<c8"}
WRITTEN = "give safetensors, npz, msgpack, orbax or peft"


def read(path, mode="r"):
    with open(path, mode) as f:
        return f.read()


def fixture_json(name):
    return json.loads(read(os.path.join(FIXTURE, name)))


class OrbaxCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-orbaxw-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def recipe(self, text=""):
        p = self.path("r.surg")
        with open(p, "w") as f:
            f.write(text + "\n")
        return p

    def surg(self, *args):
        return run_surg(ARGS.surg, *args)

    def ok(self, *args):
        code, out, err = self.surg(*args)
        self.assertEqual(code, 0, err)
        return err

    def refused(self, args, message, code=2):
        c, _, err = self.surg(*args)
        self.assertEqual(c, code, err)
        self.assertIn(message, err)
        return err

    def st_input(self, arrays, name="in.safetensors"):
        p = self.path(name)
        stnp.save(p, st_tensors(arrays))
        return p

    def assertNoTemporaries(self, directory=None):
        left = [n for n in os.listdir(directory or self.tmp) if "surg-tmp" in n]
        self.assertEqual(left, [], "temporary directories left beside the output")

    # ---- the independent checks ----------------------------------------------

    def check_arrays(self, out, arrays):
        """Every array read back with python3-zarr: values, dtype, shape."""
        for name, want in arrays.items():
            param = name.replace("/", ".")
            with self.subTest(array=name):
                z = zarr.open(os.path.join(out, param), mode="r")
                self.assertIsNone(z.compressor)
                self.assertEqual(z.shape, want.shape)
                self.assertEqual(z.dtype, want.dtype)
                self.assertEqual(z.fill_value, None)
                got = z[...]
                np.testing.assert_array_equal(got, want)
                text = read(os.path.join(out, param, ".zarray"))
                meta = json.loads(text)
                self.assertEqual(meta, {
                    "chunks": meta["chunks"], "compressor": None, "dimension_separator": ".",
                    "dtype": ZDTYPE[want.dtype.name], "fill_value": None, "filters": None,
                    "order": "C", "shape": list(want.shape), "zarr_format": 2})
                # TensorStore's own form: compact, keys sorted, no newline.
                self.assertEqual(text, json.dumps(meta, sort_keys=True, separators=(",", ":")))

    def check_metadata(self, out, entries):
        """_METADATA against entries {name: (value_type, skip, write_shape or None)}."""
        text = read(os.path.join(out, "_METADATA"))
        meta = json.loads(text)
        self.assertEqual(json.dumps(meta), text, "not as json.dumps writes it")
        self.assertEqual(set(meta), set(fixture_json("_METADATA")))
        self.assertEqual(meta["use_ocdbt"], False)
        self.assertEqual(meta["use_zarr3"], False)
        self.assertEqual(meta["store_array_data_equal_to_fill_value"], True)
        self.assertIsNone(meta["custom_metadata"])
        tree = meta["tree_metadata"]
        want = {str(tuple(n.split("/"))): n for n in entries}
        self.assertEqual(sorted(tree), sorted(want))
        fixture_entry = next(iter(fixture_json("_METADATA")["tree_metadata"].values()))
        for key, name in want.items():
            value_type, skip, shape = entries[name]
            e = tree[key]
            with self.subTest(entry=key):
                self.assertEqual(set(e), set(fixture_entry))
                self.assertEqual(e["key_metadata"],
                                 [{"key": k, "key_type": 2} for k in name.split("/")])
                v = e["value_metadata"]
                self.assertEqual(v["value_type"], value_type)
                self.assertIs(v["skip_deserialize"], skip)
                if shape is None:
                    self.assertNotIn("write_shape", v)
                else:
                    self.assertEqual(v["write_shape"], list(shape))
                    self.assertEqual(set(v), set(fixture_entry["value_metadata"]))
        # the tree's order: JAX's, keys sorted at each level
        self.assertEqual(list(tree), sorted(tree, key=lambda k: list(eval(k))))
        return meta

    def check_checkpoint_metadata(self, out):
        text = read(os.path.join(out, "_CHECKPOINT_METADATA"))
        meta = json.loads(text)
        self.assertEqual(json.dumps(meta), text)
        self.assertEqual(set(meta), set(fixture_json("_CHECKPOINT_METADATA")))
        self.assertEqual(meta["item_handlers"], HANDLER)
        self.assertEqual(meta["metrics"], {})
        self.assertEqual(meta["performance_metrics"], {})
        self.assertEqual(meta["custom_metadata"], {"surg.output": "orbax"})
        for k in ("init_timestamp_nsecs", "commit_timestamp_nsecs"):
            self.assertIsInstance(meta[k], int)
            self.assertLess(abs(meta[k] - time.time_ns()), 600 * 10 ** 9)


# =============================================================================

class TestArrays(OrbaxCase):
    def test_every_dtype_and_shape(self):
        arrays = {}
        for i, name in enumerate(ST):
            arrays["c/" + name] = sample(name, (3, 4, 2), seed=i)
        arrays["scalar"] = np.array(-7, np.int64)
        arrays["empty"] = np.zeros((0, 5), np.float32)
        arrays["vec"] = np.arange(8, dtype=np.int32)
        out = self.path("ckpt")
        self.ok("run", self.recipe(), self.st_input(arrays), out, "--out-format", "orbax")
        self.check_arrays(out, arrays)
        self.check_metadata(out, {n: ("np.ndarray", False, a.shape) for n, a in arrays.items()})
        self.check_checkpoint_metadata(out)
        # one chunk per array, named as zarr names it; none for no elements
        self.assertEqual(sorted(os.listdir(self.path("ckpt", "c.float32"))), [".zarray", "0.0.0"])
        self.assertEqual(sorted(os.listdir(self.path("ckpt", "scalar"))), [".zarray", "0"])
        self.assertEqual(sorted(os.listdir(self.path("ckpt", "vec"))), [".zarray", "0"])
        self.assertEqual(os.listdir(self.path("ckpt", "empty")), [".zarray"])
        self.assertEqual(json.loads(read(self.path("ckpt", "empty", ".zarray")))["chunks"], [1, 5])
        self.assertEqual(sorted(os.listdir(out)),
                         sorted(["_CHECKPOINT_METADATA", "_METADATA", "scalar", "empty", "vec"]
                                + ["c." + n for n in ST]))
        self.assertNoTemporaries()

    def test_recipe_applied(self):
        a = sample("float32", (4, 3), 5)
        out = self.path("ckpt")
        self.ok("run", self.recipe('map "params/**" = x * 2\nrename "params/w" -> "params/k"'),
                self.st_input({"params/w": a, "step": np.array(3, np.int32)}), out,
                "--out-format", "orbax")
        self.check_arrays(out, {"params/k": a * 2, "step": np.array(3, np.int32)})
        self.check_metadata(out, {"params/k": ("np.ndarray", False, (4, 3)),
                                  "step": ("np.ndarray", False, ())})

    def test_tied_names(self):
        """A tied name (no place for ties in Orbax) is an array of its own."""
        a = sample("float32", (3, 2), 1)
        out = self.path("ckpt")
        self.ok("run", self.recipe('tie "b" = "a"'), self.st_input({"a": a, "b": a}), out,
                "--out-format", "orbax")
        self.check_arrays(out, {"a": a, "b": a})

    def test_names_as_python_repr(self):
        """Keys that need quoting: the _METADATA key is str(tuple(keys))."""
        names = ["it's", 'say "hi"', "both'\"", "back\\slash", "tab\there/new\nline",
                 "ctl\x01\x7f", "ünï/中文", "x/y/z", "dot.ted/k"]
        arrays = {n: np.full((2,), i, np.int16) for i, n in enumerate(names)}
        out = self.path("ckpt")
        self.ok("run", self.recipe(), self.st_input(arrays), out, "--out-format", "orbax")
        self.check_metadata(out, {n: ("np.ndarray", False, (2,)) for n in names})
        self.check_arrays(out, arrays)

    def test_chunks_of_large_arrays(self):
        """Arrays over the chunk size (2 GiB; 100 bytes here) are cut along
        their first dimensions, edge chunks zero-padded: zarr reads the
        array back whole."""
        arrays = {"m": np.arange(60, dtype=np.float32).reshape(5, 3, 4),
                  "v": np.arange(50, dtype=np.int16),
                  "w": np.arange(7 * 9, dtype=np.int64).reshape(7, 9)}
        inp = self.st_input(arrays)
        for chunk_bytes, m_chunks in ((100, [2, 3, 4]), (40, [1, 2, 4]), (10, [1, 1, 2]),
                                      (3, [1, 1, 1])):
            with self.subTest(chunk_bytes=chunk_bytes):
                out = self.path("ckpt%d" % chunk_bytes)
                r = subprocess.run([ARGS.knobs, inp, out, "--format", "orbax", "--chunk-bytes",
                                    str(chunk_bytes)], capture_output=True, timeout=60)
                self.assertEqual(r.returncode, 0, r.stderr.decode())
                self.check_arrays(out, arrays)
                z = zarr.open(os.path.join(out, "m"), mode="r")
                self.assertEqual(list(z.chunks), m_chunks)
                # every chunk stored whole, as zarr v2 stores them
                n_files = 1
                for d, c in zip(z.shape, z.chunks):
                    n_files *= -(-d // c)
                files = [f for f in os.listdir(os.path.join(out, "m")) if f != ".zarray"]
                self.assertEqual(len(files), n_files)
                for f in files:
                    self.assertEqual(os.path.getsize(os.path.join(out, "m", f)),
                                     int(np.prod(z.chunks)) * 4)
        self.assertNoTemporaries()


class TestFromMsgpack(OrbaxCase):
    def test_train_state_with_leaves(self):
        """A Flax TrainState saved as msgpack: arrays, and the values that
        are not arrays as Orbax keeps them (numbers as 0-d arrays of
        value_type scalar, strings in _strings.json, None and empty maps in
        _METADATA only); bytes are not kept, with a warning."""
        t = train_state()
        t.update({"lr": 0.25, "flag": True, "neg": -5, "big": 2 ** 63 + 1,
                  "name": "it's \"x\"\n", "nothing": None, "blob": b"xx"})
        inp = self.path("ts.msgpack")
        with open(inp, "wb") as f:
            f.write(to_bytes(t))
        out = self.path("ckpt")
        err = self.ok("run", self.recipe(), inp, out, "--out-format", "orbax")
        self.assertIn('%s: warning: 1 value of the metadata "msgpack.tree" ("blob") is not '
                      'written: an Orbax checkpoint keeps numbers, strings, None and empty '
                      'containers, under names it can hold, and not bytes or msgpack exts'
                      % out, err)
        arrays = {}

        def walk(x, prefix):
            for k, v in x.items():
                if isinstance(v, dict):
                    walk(v, prefix + k + "/")
                elif isinstance(v, tuple):
                    walk({str(i): e for i, e in enumerate(v)}, prefix + k + "/")
                elif isinstance(v, np.ndarray):
                    arrays[prefix + k] = v
        walk(t, "")
        self.check_arrays(out, arrays)
        scalars = {"step": np.array(12, np.int64), "lr": np.array(0.25, np.float64),
                   "flag": np.array(True), "neg": np.array(-5, np.int64),
                   "big": np.array(2 ** 63 + 1, np.uint64)}
        self.check_arrays(out, scalars)
        entries = {n: ("np.ndarray", False, a.shape) for n, a in arrays.items()}
        entries.update({n: ("scalar", False, None) for n in scalars})
        entries.update({"name": ("string", False, None), "nothing": ("None", True, None),
                        "opt_state/1": ("Dict", True, None)})
        self.check_metadata(out, entries)
        strings = json.loads(read(os.path.join(out, "_strings.json")))
        self.assertEqual(strings, {"name": "it's \"x\"\n"})
        self.assertFalse(os.path.exists(os.path.join(out, "nothing")))
        self.assertFalse(os.path.exists(os.path.join(out, "opt_state.1")))

    def test_leaf_beside_a_new_tensor(self):
        """A leaf where the recipe put a tensor gives way to it."""
        inp = self.path("s.msgpack")
        with open(inp, "wb") as f:
            f.write(to_bytes({"step": 3, "w": np.arange(3, dtype=np.float32)}))
        out = self.path("ckpt")
        err = self.ok("run", self.recipe('fill "step" : i32[] = 0'), inp, out,
                      "--out-format", "orbax")
        self.assertIn('("step") is not written: a tensor of the output is there', err)
        self.check_arrays(out, {"step": np.array(0, np.int32),
                                "w": np.arange(3, dtype=np.float32)})


class TestRoundTrip(OrbaxCase):
    """surg reads back the Orbax checkpoints it writes, and a recipe with
    `mirror` runs on an Orbax checkpoint end to end: the TrainState goes out
    to Orbax, the recipe renames and transposes a parameter on the Orbax
    directory (its Adam moments following), and the result, written as
    msgpack, is checked with python3-msgpack and NumPy."""

    def test_train_state_through_orbax(self):
        t = train_state()
        inp = self.path("ts.msgpack")
        with open(inp, "wb") as f:
            f.write(to_bytes(t))
        ck = self.path("ckpt")
        self.ok("run", self.recipe(), inp, ck, "--out-format", "orbax")
        code, out, err = self.surg("schema", ck)
        self.assertEqual(code, 0, err)
        for line in ("params/", "Dense_0/", "kernel  f32[4, 3]", "count       i32[]",
                     "step          i64[]"):
            self.assertIn(line, out)
        recipe = self.recipe(
            'mirror "params/" -> "opt_state/0/mu/", "opt_state/0/nu/"\n'
            'rename "params/Dense_0/**" -> "params/Encoder/$1"\n'
            'map "params/Dense_1/kernel" = transpose(x)\n')
        back = self.path("back.msgpack")
        self.ok("run", recipe, ck, back)
        with open(back, "rb") as f:
            got = msgpack_restore(f.read())
        p = t["params"]
        adam = t["opt_state"][0]
        want_params = {"Encoder": p["Dense_0"],
                       "Dense_1": {"bias": p["Dense_1"]["bias"],
                                   "kernel": p["Dense_1"]["kernel"].T}}
        self.assertEqual(got["step"], 12)
        self.assertEqual(got["opt_state"]["1"], {})
        self.assertEqual(int(got["opt_state"]["0"]["count"]), 7)
        for tree, src in (("params", want_params),
                          ("mu", adam["mu"]), ("nu", adam["nu"])):
            have = got["params"] if tree == "params" else got["opt_state"]["0"][tree]
            if tree != "params":
                src = {"Encoder": src["Dense_0"],
                       "Dense_1": {"bias": src["Dense_1"]["bias"],
                                   "kernel": src["Dense_1"]["kernel"].T}}
            self.assertEqual(sorted(have), ["Dense_1", "Encoder"])
            for mod, arrays in src.items():
                for name, a in arrays.items():
                    with self.subTest(tree=tree, mod=mod, name=name):
                        self.assertEqual(have[mod][name].dtype, a.dtype)
                        np.testing.assert_array_equal(have[mod][name], a)

    def test_every_dtype_back(self):
        """Arrays of many dtypes and shapes out to Orbax and back through
        surg's reader to safetensors: the same values."""
        arrays = {"a/b": sample("float32", (3, 5), 1), "a/c": sample("int8", (7,), 2),
                  "d": sample("float16", (2, 2, 2), 3), "e": np.array(5, np.int64),
                  "f": sample("uint16", (0, 3), 4), "g": np.array([True, False])}
        inp = self.st_input(arrays)
        ck = self.path("ckpt")
        self.ok("run", self.recipe(), inp, ck, "--out-format", "orbax")
        back = self.path("back.safetensors")
        self.ok("run", self.recipe(), ck, back)
        got = stnp.load(back)[0]
        self.assertEqual(sorted(got), sorted(arrays))
        for name, a in arrays.items():
            with self.subTest(name=name):
                self.assertEqual(got[name][1].dtype, a.dtype)
                np.testing.assert_array_equal(got[name][1].reshape(a.shape), a)


class TestNamesRefused(OrbaxCase):
    def test_refused(self):
        cases = [
            ({"a": 1, "a/b": 2}, 'error: tensor "a" and tensor "a/b" cannot both be in a tree: '
                                 '"a" would be an array and a map'),
            ({"a/b": 1, "a.b": 2}, 'error: "a.b" and "a/b" would both be the array "a.b": Orbax '
                                   'names an array by its keys joined with "."; rename one'),
            ({"_METADATA": 1}, "an Orbax checkpoint keeps a file or directory of its own under "
                               "this name"),
            ({"zero\u200bwidth": 1}, "surg writes that repr only for names whose characters "
                                     "past ASCII it keeps as they are"),
            ({"a//b": 1}, 'an Orbax checkpoint is a tree keyed at each "/": a name may not '
                          'begin or end with "/" or hold "//"'),
            ({"x" * 256: 1}, "a directory's name holds at most 255 bytes"),
        ]
        for arrays, message in cases:
            with self.subTest(names=list(arrays)[:2]):
                inp = self.st_input({k: np.full(2, v, np.int8) for k, v in arrays.items()})
                out = self.path("ckpt")
                c, _, err = self.surg("run", self.recipe(), inp, out, "--out-format", "orbax")
                self.assertEqual(c, 1, err)
                self.assertIn(message, err)
                self.assertFalse(os.path.lexists(out))
                self.assertNoTemporaries()


class TestOutputFormat(OrbaxCase):
    def test_msgpack_without_extension(self):
        """t5x's and flax.training's checkpoint_N: a msgpack file with no
        extension, read back by python3-msgpack."""
        a = sample("float32", (2, 3), 7)
        inp = self.st_input({"params/w": a, "step": np.array(10, np.int32)})
        for flag in ("--out-format", "--format"):
            with self.subTest(flag=flag):
                out = self.path("checkpoint_10" + flag)
                self.ok("run", self.recipe(), inp, out, flag, "msgpack")
                tree = msgpack_restore(read(out, "rb"))
                np.testing.assert_array_equal(tree["params"]["w"], a)
                np.testing.assert_array_equal(tree["step"], np.array(10, np.int32))
                self.assertEqual(tree["params"]["w"].dtype, np.float32)

    def test_format_for_input_and_output(self):
        """--format names an input whose name says nothing, and the output
        too when its name says nothing either."""
        src = self.path("src.msgpack")
        with open(src, "wb") as f:
            f.write(to_bytes({"w": np.arange(4, dtype=np.float32)}))
        inp = self.path("checkpoint_1")
        os.rename(src, inp)
        out = self.path("checkpoint_2")
        self.ok("run", self.recipe('map "w" = x + 1'), inp, out, "--format", "msgpack")
        np.testing.assert_array_equal(msgpack_restore(read(out, "rb"))["w"],
                                      np.arange(4, dtype=np.float32) + 1)
        # a named output keeps its name's format: --format is the input's
        out2 = self.path("o.safetensors")
        self.ok("run", self.recipe(), inp, out2, "--format", "msgpack")
        self.assertEqual(list(stnp.load(out2)[0]), ["w"])

    def test_bad_values_listed(self):
        inp = self.st_input({"w": np.zeros(2, np.float32)})
        for bad in ("flax", "torch", "npy", "schema", ""):
            with self.subTest(bad=bad):
                self.refused(["run", self.recipe(), inp, self.path("o"), "--out-format", bad],
                             "surg: error: --out-format %s is not a format surg writes: %s\n"
                             % (bad, WRITTEN))
        self.assertFalse(os.path.lexists(self.path("o")))

    def test_name_saying_another_format(self):
        inp = self.st_input({"w": np.zeros(2, np.float32)})
        out = self.path("o.safetensors")
        self.refused(["run", self.recipe(), inp, out, "--out-format", "orbax"],
                     "%s: error: the name says safetensors, and --out-format says orbax: give a "
                     "name that says nothing (no extension) or the same\n" % out)
        self.assertFalse(os.path.lexists(out))
        # the same format is fine
        self.ok("run", self.recipe(), inp, out, "--out-format", "safetensors")

    def test_orbax_not_sharded(self):
        inp = self.st_input({"w": np.zeros(2, np.float32)})
        out = self.path("o")
        self.refused(["run", self.recipe(), inp, out, "--out-format", "orbax",
                      "--max-shard-size", "1MB"],
                     "%s: error: an Orbax checkpoint is one directory: --max-shard-size "
                     "writes safetensors shards\n" % out)

    def test_trailing_slash(self):
        a = np.arange(3, dtype=np.float32)
        self.ok("run", self.recipe(), self.st_input({"w": a}), self.path("ckpt") + "/",
                "--out-format", "orbax")
        self.check_arrays(self.path("ckpt"), {"w": a})
        self.assertNoTemporaries()

    def test_params_and_state_outputs(self):
        """--params/--state: both outputs Orbax directories."""
        p, s = sample("float32", (2, 2), 1), sample("float32", (2, 2), 2)
        pin = self.st_input({"w": p}, "p.safetensors")
        sin = self.st_input({"w": s}, "s.safetensors")
        self.ok("run", self.recipe(), "--params", pin, "--state", sin, self.path("P"),
                self.path("S"), "--out-format", "orbax")
        self.check_arrays(self.path("P"), {"w": p})
        self.check_arrays(self.path("S"), {"w": s})
        self.refused(["run", self.recipe(), "--params", pin, "--state", sin, self.path("P"),
                      self.path("P", "x"), "--out-format", "orbax"],
                     "would be written inside the Orbax output %s" % self.path("P"))


class TestAtomic(OrbaxCase):
    def write_ours(self, out, value=1.0):
        self.ok("run", self.recipe(), self.st_input({"w": np.full(3, value, np.float32)},
                                                    "prev.safetensors"),
                out, "--out-format", "orbax")
        return runutil.sha256(out)

    def test_replaces_its_own_earlier_output(self):
        out = self.path("ckpt")
        self.write_ours(out)
        os.makedirs(self.path("ckpt", "gone"))  # an array the new one has no more
        open(self.path("ckpt", "gone", "0"), "wb").close()
        a = np.arange(4, dtype=np.int32)
        self.ok("run", self.recipe(), self.st_input({"v": a}), out, "--out-format", "orbax")
        self.check_arrays(out, {"v": a})
        self.assertEqual(sorted(os.listdir(out)), ["_CHECKPOINT_METADATA", "_METADATA", "v"])
        self.assertNoTemporaries()

    def test_directory_not_ours_refused(self):
        out = self.path("ckpt")
        os.mkdir(out)
        with open(os.path.join(out, "notes.txt"), "w") as f:
            f.write("mine")
        digest = runutil.sha256(out)
        self.refused(["run", self.recipe(), self.st_input({"w": np.zeros(2, np.float32)}), out,
                      "--out-format", "orbax"],
                     '%s: error: the output\'s name holds a directory that surg did not write '
                     '(its _CHECKPOINT_METADATA has no "custom_metadata": {"surg.output": '
                     '"orbax"}): it is not replaced; remove it, or write elsewhere\n' % out)
        self.assertEqual(runutil.sha256(out), digest)
        # an Orbax checkpoint someone else wrote is not surg's either
        other = self.path("other")
        os.mkdir(other)
        with open(os.path.join(other, "_CHECKPOINT_METADATA"), "w") as f:
            json.dump(fixture_json("_CHECKPOINT_METADATA"), f)
        self.refused(["run", self.recipe(), self.st_input({"w": np.zeros(2, np.float32)}),
                      other, "--out-format", "orbax"], "surg did not write")
        self.assertNoTemporaries()

    def test_what_ours_never_holds_refused(self):
        out = self.path("ckpt")
        self.write_ours(out)
        os.mkdir(self.path("ckpt", "w", "deeper"))
        digest = runutil.sha256(out)
        self.refused(["run", self.recipe(), self.st_input({"w": np.zeros(2, np.float32)}), out,
                      "--out-format", "orbax"],
                     "%s: error: the earlier output here holds %s (a directory), which an Orbax "
                     "output of surg never holds: it is not replaced; move it away, or write "
                     "elsewhere\n" % (out, self.path("ckpt", "w", "deeper")))
        self.assertEqual(runutil.sha256(out), digest)

    def test_input_inside_refused(self):
        out = self.path("ckpt")
        self.write_ours(out)
        inp = self.path("ckpt", "w", "in.safetensors")
        stnp.save(inp, {"w": ("F32", np.zeros(2, np.float32))})
        digest = runutil.sha256(out)
        self.refused(["run", self.recipe(), inp, out, "--out-format", "orbax"],
                     "%s: error: the output would replace the directory holding %s, which this "
                     "run reads; write it elsewhere\n" % (out, inp))
        self.assertEqual(runutil.sha256(out), digest)

    def test_file_and_link_refused(self):
        inp = self.st_input({"w": np.zeros(2, np.float32)})
        f = self.path("afile")
        with open(f, "w") as fh:
            fh.write("x")
        self.refused(["run", self.recipe(), inp, f, "--out-format", "orbax"],
                     "%s: error: the output is a regular file: an Orbax checkpoint is a "
                     "directory, and surg replaces only a directory it wrote as one\n" % f)
        ours = self.path("ckpt")
        self.write_ours(ours)
        link = self.path("link")
        os.symlink(ours, link)
        self.refused(["run", self.recipe(), inp, link, "--out-format", "orbax"],
                     "%s: error: the output is a symbolic link" % link)
        self.assertTrue(os.path.islink(link))
        self.refused(["run", self.recipe(), inp, self.path("no", "such", "ckpt"),
                      "--out-format", "orbax"], "No such file or directory")
        self.assertFalse(os.path.exists(self.path("no")))

    def failing_run(self, out):
        """A run that fails half-way: a write past RLIMIT_FSIZE (EFBIG)."""
        inp = self.st_input({"a": np.ones(1 << 19, np.float32), "b": np.ones(1 << 19, np.float32)},
                            "big.safetensors")

        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))
        r = subprocess.run([ARGS.surg, "run", self.recipe('map "**" = x * 2'), inp, out,
                            "--out-format", "orbax"],
                           capture_output=True, preexec_fn=limit, timeout=120,
                           env=dict(os.environ, CI="1"))
        err = r.stderr.decode()
        self.assertGreater(r.returncode, 0, err)
        self.assertIn("File too large", err)

    def test_failure_leaves_nothing(self):
        out = self.path("ckpt")
        self.failing_run(out)
        self.assertFalse(os.path.lexists(out))
        self.assertNoTemporaries()

    def test_failure_keeps_the_earlier_output(self):
        out = self.path("ckpt")
        digest = self.write_ours(out, 5.0)
        self.failing_run(out)
        self.assertEqual(runutil.sha256(out), digest)
        self.check_arrays(out, {"w": np.full(3, 5.0, np.float32)})
        self.assertNoTemporaries()

    def test_sigint_leaves_nothing(self):
        """Interrupted while filling: the handler removes every file and
        directory of the temporary directory."""
        inp = self.st_input({"a": np.ones(4, np.float32)})
        recipe = self.recipe("\n".join('fill "n%d" : f32[%d] = normal(0, 1)' % (i, 1 << 26)
                                       for i in range(4)))
        out = self.path("ckpt")
        proc = subprocess.Popen([ARGS.surg, "run", "--threads", "1", recipe, inp, out,
                                 "--out-format", "orbax"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        time.sleep(0.3)
        if proc.poll() is not None:
            self.skipTest("the run ended before the signal (machine too fast)")
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
        self.assertEqual(proc.returncode, -signal.SIGINT)
        self.assertFalse(os.path.lexists(out))
        self.assertNoTemporaries()


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--surg", required=True)
    parser.add_argument("--knobs", required=True, help="the write_knobs tool")
    ARGS, rest = parser.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    ARGS.knobs = os.path.abspath(ARGS.knobs)
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
