"""test_orbax.py: Orbax checkpoint directories read by surg, checked against
what other tools wrote and read.

Inputs: the checkpoints Orbax itself wrote (../shared/fixtures/orbax: every
directory of the table in docs/design/flax-orbax-formats.md §4), whose values
the brief decodes by hand (`a` = int32 0..7, `b/c` = int32 [1, 2, 3]; the
aggregate files' int64 arrays); and per-array layouts written here with
Debian's python3-zarr (several chunks, zlib or no compressor, C and F order,
missing chunks) beside a `_METADATA` written here as Orbax writes it
(json.dumps of the tree metadata). Values are read back from a .safetensors
output with stnp (or from a .msgpack output with python3-msgpack), never
compared with surg's own reading. Errors are compared as exact text. The
fixtures are opened read-only and hashed before and after.

usage: test_orbax.py --surg SURG --fixtures DIR [unittest args]
"""

import argparse
import json
import os
import shutil
import sys
import tempfile
import unittest

import msgpack
import numpy as np
import numcodecs
import zarr

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stnp  # noqa: E402
from runutil import run_surg, sha256  # noqa: E402

ARGS = None  # filled in by main()

A = np.arange(8, dtype=np.int32)
BC = np.array([1, 2, 3], dtype=np.int32)

# The fixtures that Orbax restores: (directory under orbax/, item prefix).
PREFIXES = ["v0_checkpoints/direct_checkpoint", "v0_checkpoints/composite_checkpoint",
            "v1_checkpoints/composite_checkpoint"]
RESTORED = ["checkpoint_metadata_present/pytree_checkpointable_has_metadata",
            "checkpoint_metadata_missing/pytree_checkpointable_has_metadata",
            "checkpoint_metadata_present/pytree_checkpointable_missing_metadata",
            "checkpoint_metadata_missing/pytree_checkpointable_missing_metadata"] + [
    "non_critical_metadata_alterations/missing_" + what for what in [
        "item_handlers_metadata", "metrics_metadata", "performance_metrics_metadata",
        "init_timestamp_nsecs_metadata", "commit_timestamp_nsecs_metadata",
        "custom_metadata_metadata", "pytree_data_file__sharding"]]


def fixture(rel):
    return os.path.join(ARGS.fixtures, "orbax", rel)


def key_repr(keys):
    """str(tuple(keys)), as Orbax names a tree_metadata entry."""
    return str(tuple(keys))


def metadata(leaves, **flags):
    """_METADATA text as Orbax writes it (json.dumps): leaves are
    (keys, value_type, skip_deserialize, write_shape or None); a key is
    a str (a dict key) or an int (a sequence index)."""
    tree = {}
    for keys, vtype, skip, shape in leaves:
        value = {"value_type": vtype, "skip_deserialize": skip}
        if shape is not None:
            value["write_shape"] = list(shape)
        tree[key_repr([str(k) for k in keys])] = {
            "key_metadata": [{"key": str(k), "key_type": 1 if isinstance(k, int) else 2}
                             for k in keys],
            "value_metadata": value}
    out = {"tree_metadata": tree}
    out.update(flags)
    return json.dumps(out)


def write_zarr(item, param, a, chunks=None, compressor=None, order="C", fill_value=0):
    """The array `a` as python3-zarr writes a zarr v2 directory item/param/."""
    z = zarr.open_array(os.path.join(item, param), mode="w", shape=a.shape,
                        chunks=chunks or a.shape or True, dtype=a.dtype,
                        compressor=compressor, order=order, fill_value=fill_value)
    z[...] = a
    return z


class OrbaxTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.hashes = {name: sha256(fixture(name)) for name in os.listdir(fixture(""))}

    @classmethod
    def tearDownClass(cls):
        after = {name: sha256(fixture(name)) for name in os.listdir(fixture(""))}
        assert after == cls.hashes, "a fixture changed"

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.dir = self.tmp.name
        self.identity = self.path("id.surg")
        open(self.identity, "w").close()

    def tearDown(self):
        self.tmp.cleanup()

    def path(self, *names):
        return os.path.join(self.dir, *names)

    def surg(self, *args):
        return run_surg(ARGS.surg, *args)

    def ok(self, *args):
        rc, out, err = self.surg(*args)
        self.assertEqual(rc, 0, err)
        self.assertNotIn("AddressSanitizer", err)
        return out, err

    def diags(self, *args, rc=1):
        got, out, err = self.surg("--diagnostics", "json", *args)
        self.assertEqual(got, rc, err)
        self.assertNotIn("AddressSanitizer", err)
        return [(d["severity"], d["code"], d["file"], d["message"])
                for d in map(json.loads, err.splitlines())]

    def fails(self, path, code, file, message, rc=1):
        """`surg schema path` fails with exactly this one error."""
        self.assertEqual(self.diags("schema", path, rc=rc), [("error", code, file, message)])

    def schema(self, path):
        out, _ = self.ok("schema", "--json", path)
        return {k: (v["dtype"], v["shape"]) for k, v in json.loads(out).items()
                if k != "__metadata__"}

    def values(self, path, recipe=None):
        """The checkpoint's tensors as a .safetensors output holds them."""
        out = self.path("out.safetensors")
        if os.path.exists(out):
            os.unlink(out)
        self.ok("run", recipe or self.identity, path, out)
        return {k: a for k, (_, a) in stnp.load(out)[0].items()}

    def assert_values(self, got, want):
        self.assertEqual(sorted(got), sorted(want))
        for k, a in want.items():
            self.assertEqual(got[k].shape, a.shape, k)
            self.assertEqual(got[k].dtype, a.dtype, k)
            self.assertTrue(np.array_equal(got[k], a), (k, got[k], a))

    # -- the fixtures Orbax wrote

    def test_fixtures_restored(self):
        for prefix in PREFIXES:
            for rel in RESTORED:
                with self.subTest(prefix + "/" + rel):
                    d = fixture(prefix + "/" + rel)
                    item = "state/" if "composite" in prefix else ""
                    self.assertEqual(self.schema(d), {item + "a": ("I32", [8]),
                                                      item + "b/c": ("I32", [3])})
                    self.assert_values(self.values(d), {item + "a": A, item + "b/c": BC})

    def test_fixture_notes(self):
        d = fixture("v1_checkpoints/composite_checkpoint/checkpoint_metadata_present/"
                    "pytree_checkpointable_has_metadata")
        self.assertEqual(self.diags("schema", d, rc=0), [
            ("note", "ob-missing-item", d,
             "_CHECKPOINT_METADATA lists items that are not here, skipped: descriptor"),
            ("note", "ob-json-item", d, 'item "metadata" holds JSON, not tensors: skipped')])
        d = fixture("v0_checkpoints/direct_checkpoint/checkpoint_metadata_present/"
                    "pytree_checkpointable_missing_metadata")
        self.assertEqual(self.diags("schema", d, rc=0), [
            ("note", "ob-inferred", d,
             'no _METADATA: the tree is inferred from the 2 arrays found, each named by its '
             'name in the store with "." read as "/" (a key that held a "." cannot be told '
             'apart)')])

    def test_fixture_renamed(self):
        d = fixture("v1_checkpoints/composite_checkpoint/checkpoint_metadata_present/"
                    "pytree_checkpointable_has_metadata")
        recipe = self.path("r.surg")
        with open(recipe, "w") as f:
            f.write('rename "state/b/c" -> "params/c"\nrename "state/a" -> "params/a"\n')
        self.assert_values(self.values(d, recipe), {"params/a": A, "params/c": BC})

    def test_fixture_check_and_plan(self):
        d = fixture("v0_checkpoints/direct_checkpoint/checkpoint_metadata_present/"
                    "pytree_checkpointable_has_metadata")
        recipe = self.path("r.surg")
        with open(recipe, "w") as f:
            f.write('map "b/c" = cast(x, f32)\n')
        self.ok("check", recipe, "--from", d)
        out, _ = self.ok("plan", recipe, "--from", d)
        self.assertIn("b/c", out)
        got = self.values(d, recipe)
        self.assert_values(got, {"a": A, "b/c": BC.astype(np.float32)})

    def test_deleted_item(self):
        d = fixture("v1_checkpoints/composite_checkpoint/non_critical_general_alterations/"
                    "deleted_checkpointable")
        self.assertEqual(self.diags("schema", d, rc=0), [
            ("note", "ob-missing-item", d,
             "_CHECKPOINT_METADATA lists items that are not here, skipped: state, descriptor"),
            ("note", "ob-json-item", d, 'item "metadata" holds JSON, not tensors: skipped')])
        self.assertEqual(self.schema(d), {})

    def test_fixtures_critical(self):
        missing = {
            "v0_checkpoints/direct_checkpoint": ("", "d/c2e8aef5dda5292fc58008b2a33c48c2"),
            "v0_checkpoints/composite_checkpoint": ("state/",
                                                    "d/811c01a2316f66930ad790f0a6c22023"),
            "v1_checkpoints/composite_checkpoint": ("state/",
                                                    "d/03194ed32ea90f3aa6819c079076d768"),
        }
        for prefix, (item, data_file) in missing.items():
            base = fixture(prefix + "/critical_metadata_alterations/")
            with self.subTest(prefix + " manifest.ocdbt"):
                d = base + "missing_pytree_data_file_manifest.ocdbt"
                self.fails(d, "ob-missing", d + "/" + item + "manifest.ocdbt",
                           "the item's arrays are in an OCDBT database (_METADATA says "
                           "use_ocdbt), whose manifest.ocdbt is missing")
            with self.subTest(prefix + " d/"):
                d = base + "missing_pytree_data_dir_d"
                self.assertEqual(self.diags("schema", d, rc=2), [
                    ("error", "io", d + "/" + item + data_file,
                     "cannot open: No such file or directory")])
        d = fixture("v1_checkpoints/composite_checkpoint/critical_general_alterations/"
                    "dummy_checkpointable_added")
        self.fails(d, "ob-json", d + "/dummy/_METADATA",
                   "the file is not JSON as Orbax writes it: expected '{' but found 'd' "
                   "(at byte 0)")

    def test_aggregate(self):
        want = {"a": np.arange(8, dtype=np.int64), "b": 2 * np.arange(16, dtype=np.int64),
                "c/a": 3 * np.arange(8, dtype=np.int64).reshape(2, 4),
                "c/e": 4 * np.arange(16, dtype=np.int64).reshape(4, 4)}
        for name in ["aggregate_all.checkpoint", "aggregate_some.checkpoint"]:
            with self.subTest(name):
                d = fixture(name)
                self.assertEqual(self.schema(d), {k: ("I64", list(a.shape))
                                                  for k, a in want.items()})
                self.assertEqual(self.diags("schema", d, rc=0), [])
                self.assert_values(self.values(d), want)

    def test_aggregate_to_msgpack(self):
        """The aggregate file's tree, its placeholders now arrays, written as
        Flax msgpack in the file's order; read back with python3-msgpack."""
        out = self.path("out.msgpack")
        self.ok("run", self.identity, fixture("aggregate_some.checkpoint"), out)
        with open(out, "rb") as f:
            tree = msgpack.unpackb(f.read(), raw=False, ext_hook=self.ndarray)
        self.assertEqual(list(tree), ["a", "b", "c"])
        self.assertEqual(list(tree["c"]), ["a", "e"])
        for got, want in [(tree["a"], np.arange(8)), (tree["b"], 2 * np.arange(16)),
                          (tree["c"]["e"], 4 * np.arange(16).reshape(4, 4))]:
            self.assertEqual(got.dtype, np.int64)
            self.assertTrue(np.array_equal(got, want))

    @staticmethod
    def ndarray(code, data):
        """Flax's ext 1 (and 3): [shape, dtype name, bytes]."""
        shape, dtype, raw = msgpack.unpackb(data, raw=False)
        return np.frombuffer(raw, dtype).reshape(shape)

    def test_not_orbax(self):
        d = fixture("v0_checkpoints/composite_checkpoint/checkpoint_metadata_present")
        self.fails(d, "ck-empty-dir", d,
                   "the directory has none of model.safetensors.index.json, model.safetensors, "
                   "pytorch_model.bin.index.json, pytorch_model.bin, "
                   "flax_model.msgpack.index.json or flax_model.msgpack, and is not an Orbax "
                   "checkpoint", rc=2)
        empty = self.path("empty")
        os.mkdir(empty)
        self.assertEqual(self.diags("schema", "--format", "orbax", empty), [
            ("error", "ob-not-orbax", empty,
             "the directory is not an Orbax checkpoint: it has no _METADATA, manifest.ocdbt, "
             "aggregate checkpoint file or zarr arrays, and no items or steps that have")])
        f = self.path("file")
        open(f, "w").close()
        self.assertEqual(self.diags("schema", "--format", "orbax", f, rc=2), [
            ("error", "ck-format", f,
             "--format orbax opens a directory, and this is not one: give the directory")])

    # -- per-array layouts written with python3-zarr

    def item(self, name, arrays, flags=None, extra=()):
        """An item directory of per-array zarr v2 arrays: arrays maps a
        tensor name to (array, write_zarr keywords); extra leaves too."""
        d = self.path(name)
        os.makedirs(d, exist_ok=True)
        leaves = []
        for tname, (a, kw) in arrays.items():
            write_zarr(d, tname.replace("/", "."), a, **kw)
            leaves.append((tname.split("/"), "np.ndarray", False, a.shape))
        leaves.extend(extra)
        if flags is None:
            flags = {"use_ocdbt": False, "use_zarr3": False,
                     "store_array_data_equal_to_fill_value": True}
        with open(os.path.join(d, "_METADATA"), "w") as f:
            f.write(metadata(leaves, **flags))
        return d

    def test_zarr_chunks(self):
        rng = np.random.default_rng(5)
        arrays = {
            "dense/kernel": (rng.standard_normal((37, 19)).astype(np.float32),
                             {"chunks": (8, 5), "compressor": numcodecs.Zlib(level=1)}),
            "dense/bias": (rng.standard_normal(19).astype(np.float64),
                           {"chunks": (4,), "compressor": None}),
            "f_order": (np.arange(6 * 7 * 3, dtype=np.int16).reshape(6, 7, 3),
                        {"chunks": (4, 3, 2), "compressor": numcodecs.Zlib(level=5),
                         "order": "F"}),
            "flags": (rng.integers(0, 2, (5, 9)).astype(bool), {"chunks": (2, 2)}),
            "u8": ((np.arange(300) % 251).astype(np.uint8).reshape(10, 30),
                   {"chunks": (3, 7), "compressor": None}),
            "empty": (np.zeros((0, 4), np.float32), {"chunks": (1, 4)}),
        }
        d = self.item("ckpt", arrays)
        want = {k: a for k, (a, _) in arrays.items()}
        self.assertEqual(self.schema(d)["dense/kernel"], ("F32", [37, 19]))
        self.assert_values(self.values(d), want)

    def test_arrays_decoded_at_once(self):
        """Several threads decode arrays of one directory store at once: each
        chunk is read from its own file (a store shared by the threads must
        not hand one thread's path to another)."""
        rng = np.random.default_rng(9)
        arrays = {}
        for i in range(24):
            n = 40 + 13 * i
            arrays["layer%d/w" % i] = (rng.standard_normal((n, 7)).astype(np.float32),
                                      {"chunks": (3 + i % 5, 7), "compressor": None})
        d = self.item("ckpt", arrays)
        want = {k: a for k, (a, _) in arrays.items()}
        out = self.path("out.safetensors")
        for _ in range(4):
            if os.path.exists(out):
                os.unlink(out)
            self.ok("run", "--threads", "8", self.identity, d, out)
            self.assert_values({k: a for k, (_, a) in stnp.load(out)[0].items()}, want)

    def test_scalar(self):
        d = self.path("ckpt")
        os.mkdir(d)
        write_zarr(d, "step", np.array(7, dtype=np.int64), chunks=())
        with open(os.path.join(d, "_METADATA"), "w") as f:
            f.write(metadata([(["step"], "scalar", False, None)], use_ocdbt=False))
        self.assertEqual(self.schema(d), {"step": ("I64", [])})
        self.assert_values(self.values(d), {"step": np.array(7, dtype=np.int64)})

    def test_missing_chunks(self):
        a = np.arange(40, dtype=np.float32).reshape(8, 5)
        for stored in [None, False, True]:
            with self.subTest(store_array_data_equal_to_fill_value=stored):
                name = "ckpt%s" % stored
                flags = {"use_ocdbt": False}
                if stored is not None:
                    flags["store_array_data_equal_to_fill_value"] = stored
                d = self.item(name, {"w": (a, {"chunks": (3, 5), "fill_value": 1.5})}, flags)
                os.unlink(os.path.join(d, "w", "1.0"))
                if stored:
                    self.assertEqual(
                        self.diags("run", self.identity, d, self.path("o.safetensors")),
                        [("error", "zarr-missing", 'array "w" chunk 1.0 in ' + d,
                          'is missing (no key "w/1.0"), and missing chunks are not read as '
                          'the fill value in this checkpoint')])
                    self.assertFalse(os.path.exists(self.path("o.safetensors")))
                else:
                    want = a.copy()
                    want[3:6] = 1.5
                    self.assert_values(self.values(d), {"w": want})

    def test_no_metadata_per_array(self):
        d = self.path("ckpt")
        os.mkdir(d)
        write_zarr(d, "params.dense.kernel", np.ones((2, 3), np.float32))
        write_zarr(d, "step", np.array(3, np.int32), chunks=())
        self.assertEqual(self.diags("schema", d, rc=0), [
            ("note", "ob-inferred", d,
             'no _METADATA: the tree is inferred from the 2 arrays found, each named by its '
             'name in the store with "." read as "/" (a key that held a "." cannot be told '
             'apart)')])
        self.assert_values(self.values(d), {"params/dense/kernel": np.ones((2, 3), np.float32),
                                            "step": np.array(3, np.int32)})

    def test_composite(self):
        step = self.path("ckpts", "100")
        params = {"dense/kernel": (np.arange(6, dtype=np.float32).reshape(2, 3), {}),
                  "dense/bias": (np.ones(3, np.float32), {})}
        mu = {"0/mu/dense/kernel": (np.zeros((2, 3), np.float32), {}),
              "0/count": (np.array(4, np.int32), {"chunks": ()})}
        self.item("ckpts/100/params", params)
        self.item("ckpts/100/opt_state", mu,
                  extra=[([1], "Dict", True, None), (["hparams"], "None", True, None)])
        os.makedirs(os.path.join(step, "metadata"))
        with open(os.path.join(step, "metadata", "metadata"), "w") as f:
            f.write('{"step": 100}')
        os.makedirs(os.path.join(step, "params.orbax-checkpoint-tmp-17"))
        with open(os.path.join(step, "_CHECKPOINT_METADATA"), "w") as f:
            json.dump({"item_handlers": {"params": "PyTreeCheckpointHandler",
                                         "opt_state": "PyTreeCheckpointHandler",
                                         "metadata": "JsonCheckpointHandler"}}, f)
        self.assertEqual(self.diags("schema", step, rc=0), [
            ("note", "ob-unfinished", step,
             "skipped, as unfinished saves: params.orbax-checkpoint-tmp-17"),
            ("note", "ob-json-item", step, 'item "metadata" holds JSON, not tensors: skipped'),
            ("note", "ob-not-tensor", step,
             '2 values are not an array (strings, numbers, None, empty containers), so not a '
             'tensor: "opt_state/1", "opt_state/hparams"; kept in the metadata '
             '"msgpack.tree" for a .msgpack output')])
        want = {"params/" + k: a for k, (a, _) in params.items()}
        want.update({"opt_state/" + k: a for k, (a, _) in mu.items()})
        self.assert_values(self.values(step), want)
        # the values that are no arrays, carried to a .msgpack output
        out = self.path("out.msgpack")
        self.ok("run", self.identity, step, out)
        with open(out, "rb") as f:
            tree = msgpack.unpackb(f.read(), raw=False, strict_map_key=False,
                                   ext_hook=lambda code, data: code)
        self.assertEqual(tree["opt_state"]["1"], {})
        self.assertIsNone(tree["opt_state"]["hparams"])
        # an item opens alone
        self.assertEqual(sorted(self.schema(os.path.join(step, "params"))),
                         ["dense/bias", "dense/kernel"])
        # the root of the steps is refused
        self.item("ckpts/200/params", params)
        with open(self.path("ckpts", "200", "_CHECKPOINT_METADATA"), "w") as f:
            f.write("{}")
        os.makedirs(self.path("ckpts", "300.orbax-checkpoint-tmp-99"))
        root = self.path("ckpts")
        self.fails(root, "ob-steps", root,
                   "the directory holds the steps of a CheckpointManager (100, 200), not one "
                   "checkpoint: open one of them, as %s/200" % root)

    def test_strings(self):
        d = self.item("ckpt", {"w": (np.ones(2, np.float32), {})},
                      extra=[(["name"], "string", False, None),
                             (["lost"], "string", False, None)])
        with open(os.path.join(d, "_strings.json"), "w") as f:
            json.dump({"name": "adam"}, f)
        diags = self.diags("schema", d, rc=0)
        self.assertEqual(diags, [
            ("note", "ob-not-tensor", d,
             '2 values are not an array (strings, numbers, None, empty containers), so not a '
             'tensor: "lost", "name"; not all could be kept (a string not in _strings.json, '
             'or over 64 KiB in all): none are kept')])
        os.unlink(os.path.join(d, "_METADATA"))
        d = self.item("ckpt", {"w": (np.ones(2, np.float32), {})},
                      extra=[(["name"], "string", False, None)])
        out = self.path("out.msgpack")
        self.ok("run", self.identity, d, out)
        with open(out, "rb") as f:
            tree = msgpack.unpackb(f.read(), raw=False, ext_hook=lambda code, data: code)
        self.assertEqual(tree["name"], "adam")

    def test_output_inside_refused(self):
        d = self.item("ckpt", {"w": (np.ones(2, np.float32), {})})
        for out in [os.path.join(d, "out.safetensors"), os.path.join(d, "w", "0.safetensors")]:
            with self.subTest(out):
                before = sha256(d)
                self.assertEqual(self.diags("run", self.identity, d, out, rc=2), [
                    ("error", "run-overwrite", out,
                     "the output would go inside %s, a checkpoint directory this run reads; "
                     "write it elsewhere" % d)])
                self.assertEqual(sha256(d), before)

    # -- hostile _METADATA

    def test_hostile_metadata(self):
        d = self.item("ckpt", {"a": (np.arange(3, dtype=np.int32), {}),
                               "b/c": (np.ones(2, np.float32), {})})
        meta = os.path.join(d, "_METADATA")
        good = [(["a"], "np.ndarray", False, [3]), (["b", "c"], "np.ndarray", False, [2])]

        def entry(keys, vtype="np.ndarray", key_types=None):
            km = [{"key": k, "key_type": t}
                  for k, t in zip(keys, key_types or [2] * len(keys))]
            return {"key_metadata": km,
                    "value_metadata": {"value_type": vtype, "skip_deserialize": False}}

        def tree(*entries):
            return json.dumps({"tree_metadata": {str(i): e for i, e in enumerate(entries)},
                               "use_ocdbt": False})

        cases = [
            ("not JSON", '{"tree_metadata": ', "ob-json",
             "the file is not JSON as Orbax writes it: expected '{' but found the end "
             "(at byte 18)"),
            ("not UTF-8", b'{"tree_metadata": {"\xff": 1}}', "ob-json",
             "the file is not JSON: invalid UTF-8 at byte 20"),
            ("bad entry", '{"tree_metadata": {"x": {"key\u0001": 1, "k\x01": 2}}}', "ob-json",
             "the file is not JSON as Orbax writes it: a control character (0x01) inside a "
             "string (at byte 29)"),
            ("a list", "[]", "ob-json",
             "the file is not JSON as Orbax writes it: expected '{' but found '[' (at byte 0)"),
            ("no tree", '{"use_ocdbt": false}', "ob-metadata",
             'the file has no "tree_metadata"'),
            ("flag not bool", '{"tree_metadata": {}, "use_ocdbt": "yes"}', "ob-json",
             "the file is not JSON as Orbax writes it: expected true, false or null "
             "(at byte 35)"),
            ("empty key_metadata", tree({"key_metadata": [], "value_metadata": {
                "value_type": "np.ndarray"}}), "ob-metadata",
             'entry "0": key_metadata is empty: a leaf without a path'),
            ("key_type 3", tree(entry(["a"], key_types=[3])), "ob-metadata",
             'entry "0": a key_type is neither 1 (a sequence index) nor 2 (a dict key)'),
            ("sequence key", tree(entry(["x"], key_types=[1])), "ob-metadata",
             'entry "0": a sequence key (key_type 1) is not a decimal index'),
            ("slash", tree(entry(["a/b"])), "ob-metadata",
             'entry "0": a key holds "/", which would nest names'),
            ("empty key", tree(entry([""])), "ob-metadata", 'entry "0": a key is empty'),
            ("no value_metadata", json.dumps({"tree_metadata": {"x": {"key_metadata": [
                {"key": "a", "key_type": 2}]}}}), "ob-metadata",
             'entry "x" lacks value_metadata'),
            ("unknown type", tree(entry(["a"], "jax.PRNGKey")), "ob-value-type",
             '"a" is a jax.PRNGKey, which surg does not read (it reads jax.Array, np.ndarray, '
             'scalar and string leaves, and empty Dict, List, Tuple, NamedTuple and None)'),
            ("same path twice", tree(entry(["a"]), entry(["a"])), "ob-metadata",
             'two entries have the path "a"'),
            ("leaf and node", tree(entry(["b"]), entry(["b", "c"])), "ob-metadata",
             '"b" is a leaf, and "b/c" goes through it'),
            ("dot dot", tree(entry([".."])), "ob-name",
             '".." names no array Orbax can have written: its directory would be ..'),
            ("absent array", tree(entry(["a"]), entry(["zz"])), "ob-missing",
             'the array "zz" is not in the checkpoint: the item\'s store has no zz/.zarray'),
            ("duplicate key", '{"tree_metadata": {}, "tree_metadata": {}}', "ob-json",
             'the file is not JSON as Orbax writes it: duplicate key "tree_metadata" in the '
             'top object (at byte 42)'),
            ("wrong write_shape", metadata([(["a"], "np.ndarray", False, [4])],
                                           use_ocdbt=False), "ob-shape",
             '_METADATA says "a" was written in shape [4], which does not fit its zarr '
             'array\'s shape [3]'),
            ("skip without aggregate", metadata([(["a"], "np.ndarray", True, [3])],
                                                use_ocdbt=False), "ob-missing",
             '_METADATA says "a" is in the aggregate file checkpoint, which is not there'),
        ]
        for name, text, code, message in cases:
            with self.subTest(name):
                with open(meta, "wb") as f:
                    f.write(text if isinstance(text, bytes) else text.encode())
                file = d if code in ("ob-missing", "ob-shape") and "aggregate" not in message \
                    else meta
                self.fails(d, code, file, message)
        with open(meta, "w") as f:
            f.write(metadata(good, use_ocdbt=False))
        self.assertEqual(self.schema(d), {"a": ("I32", [3]), "b/c": ("F32", [2])})

    def test_hostile_placeholder(self):
        d = self.path("agg")
        os.mkdir(d)
        write_zarr(self.path(), "x", np.ones(2, np.float32))  # beside, never read
        for name, value in [("up", "PLACEHOLDER://../x"), ("slash", "PLACEHOLDER://a/b"),
                            ("empty", "PLACEHOLDER://")]:
            with self.subTest(name):
                with open(os.path.join(d, "checkpoint"), "wb") as f:
                    f.write(msgpack.packb({"a": value}))
                with open(os.path.join(d, "_METADATA"), "w") as f:
                    f.write(metadata([(["a"], "np.ndarray", False, None)]))
                why = ("it is empty" if name == "empty" else
                       "it holds a slash: it would name a directory outside the item")
                self.fails(d, "ob-placeholder", os.path.join(d, "checkpoint"),
                           '"a" is %s, which names no directory of the checkpoint: %s'
                           % (value, why))


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--surg", required=True)
    parser.add_argument("--fixtures", required=True, help="../shared/fixtures")
    ARGS, rest = parser.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
