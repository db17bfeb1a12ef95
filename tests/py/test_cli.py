"""test_cli.py: the `surg` command as a user meets it: exit codes, help text,
and `surg schema` (tree and --json) on the reference fixtures and examples.

usage: test_cli.py --surg SURG --fixtures DIR --examples DIR [unittest args]
"""

import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stnp  # noqa: E402

ARGS = None  # filled in by main()

PYTHON = "/usr/bin/python3"
# Fixture dtype names (NumPy spelling) -> (safetensors name, recipe name).
FIXTURE_DTYPES = {
    "float16": ("F16", "f16"), "float32": ("F32", "f32"), "float64": ("F64", "f64"),
    "bool": ("BOOL", "bool"), "uint8": ("U8", "u8"), "int8": ("I8", "i8"),
    "int16": ("I16", "i16"), "int32": ("I32", "i32"), "int64": ("I64", "i64"),
}
FIXTURE_SHAPES = [[3], [3, 5], [3, 5, 7]]


def surg(*args, cwd=None):
    r = subprocess.run([ARGS.surg] + [str(a) for a in args], cwd=cwd,
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    return r.returncode, r.stdout.decode("utf-8"), r.stderr.decode("utf-8", errors="replace")


def fixture(*parts):
    return os.path.join(ARGS.fixtures, *parts)


def numpy_fixture():
    return fixture("safetensors-reference", "model.numpy.safetensors")


def sharded_fixture():
    return fixture("safetensors-reference", "sharded")


def fixture_names():
    """{name: (st dtype, recipe dtype, shape)} of model.numpy.safetensors, from its README."""
    out = {}
    for np_name, (st, recipe) in FIXTURE_DTYPES.items():
        for shape in FIXTURE_SHAPES:
            out["%s_%s" % (np_name, "".join(map(str, shape)))] = (st, recipe, shape)
    return out


def tree_leaves(text):
    """[(name, type)] of the lines `name  type` (leaf lines of the tree)."""
    leaves = []
    for line in text.splitlines():
        m = re.match(r"^\s*(\S+)\s+(\S+\[[\d, ]*\])\s*$", line)
        if m:
            leaves.append((m.group(1), m.group(2)))
    return leaves


def type_text(recipe_dtype, shape):
    return "%s[%s]" % (recipe_dtype, ", ".join(str(d) for d in shape))


class CliCase(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="surg-cli-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def ok(self, *args, cwd=None):
        code, out, err = surg(*args, cwd=cwd)
        self.assertEqual(code, 0, "surg %s: exit %d\n%s" % (" ".join(map(str, args)), code, err))
        return out

    def fails(self, code, *args):
        got, out, err = surg(*args)
        self.assertEqual(got, code, "surg %s: exit %d, want %d\nstdout: %s\nstderr: %s" % (
            " ".join(map(str, args)), got, code, out, err))
        return out, err

    def schema_json(self, ckpt):
        out = self.ok("schema", "--json", ckpt)
        try:
            return json.loads(out), out
        except json.JSONDecodeError as e:
            self.fail("surg schema --json %s is not JSON: %s\n%s" % (ckpt, e, out))

    def expected_schema(self, path):
        """The schema a safetensors file should give, from stnp's reading of it."""
        tensors, metadata, _ = stnp.load_raw(path)
        want = {n: {"dtype": d, "shape": s} for n, (d, s, _) in tensors.items()}
        if metadata is not None:
            want["__metadata__"] = metadata
        return want


class TestCommand(CliCase):
    def test_version(self):
        self.assertEqual(self.ok("--version").strip(), "surg 0.1.0")

    def test_help(self):
        out = self.ok("--help")
        self.assertIn("schema", out)

    def test_no_arguments(self):
        _, err = self.fails(2)
        self.assertTrue(err.strip(), "no message on stderr")

    def test_unknown_command(self):
        _, err = self.fails(2, "frobnicate")
        self.assertIn("frobnicate", err)

    def test_schema_help(self):
        out = self.ok("schema", "--help")
        self.assertIn("schema", out)

    def test_schema_usage_errors(self):
        self.fails(2, "schema")
        self.fails(2, "schema", numpy_fixture(), numpy_fixture())
        self.fails(2, "schema", "--no-such-option", numpy_fixture())


class TestSchema(CliCase):
    def test_tree(self):
        out = self.ok("schema", numpy_fixture())
        leaves = dict(tree_leaves(out))
        for name, (_, recipe, shape) in fixture_names().items():
            self.assertIn(name, leaves, "%s not listed:\n%s" % (name, out))
            self.assertEqual(leaves[name], type_text(recipe, shape), name)
        self.assertEqual(len(leaves), 27)
        lines = [l for l in out.splitlines() if l.strip()]
        self.assertTrue(lines[-1].startswith("27 tensors"), lines[-1])

    def test_json(self):
        got, _ = self.schema_json(numpy_fixture())
        want = {n: {"dtype": st, "shape": shape} for n, (st, _, shape) in fixture_names().items()}
        _, metadata, _ = stnp.load(numpy_fixture())
        if metadata is not None:
            want["__metadata__"] = metadata
        self.assertEqual(got, want)

    def test_json_round_trip(self):
        _, text = self.schema_json(numpy_fixture())
        schema = self.path("x.json")
        with open(schema, "w") as f:
            f.write(text)
        self.assertEqual(self.ok("schema", "--json", schema), text)
        # The same abstract state prints the same tree.
        self.assertEqual(self.ok("schema", schema), self.ok("schema", numpy_fixture()))

    def test_json_keeps_metadata_and_scalars(self):
        ckpt = self.path("m.safetensors")
        stnp.save(ckpt, {"s": ("F32", np.array(1.0, "<f4")),
                         "bf": ("BF16", np.zeros((2, 3), "<u2")),
                         "e8": ("F8_E4M3", np.zeros((4,), "u1")),
                         "z": ("U16", np.zeros((0, 2), "<u2"))},
                  {"format": "np", "note": "x"})
        got, text = self.schema_json(ckpt)
        self.assertEqual(got, self.expected_schema(ckpt))
        self.assertEqual(got["s"], {"dtype": "F32", "shape": []})
        self.assertEqual(got["__metadata__"], {"format": "np", "note": "x"})
        schema = self.path("m.json")
        with open(schema, "w") as f:
            f.write(text)
        self.assertEqual(self.ok("schema", "--json", schema), text)

    def test_sharded(self):
        want = {}
        with open(os.path.join(sharded_fixture(), "model.safetensors.index.json")) as f:
            index = json.load(f)
        for shard in sorted(set(index["weight_map"].values())):
            want.update(self.expected_schema(os.path.join(sharded_fixture(), shard)))
        want.pop("__metadata__", None)
        self.assertEqual(len(want), 36)

        got, text = self.schema_json(sharded_fixture())
        got.pop("__metadata__", None)
        self.assertEqual(got, want)
        via_index = self.ok("schema", "--json",
                            os.path.join(sharded_fixture(), "model.safetensors.index.json"))
        self.assertEqual(via_index, text)

        out = self.ok("schema", sharded_fixture())
        self.assertEqual(sorted(n for n, _ in tree_leaves(out)), sorted(want))
        lines = [l for l in out.splitlines() if l.strip()]
        self.assertTrue(lines[-1].startswith("36 tensors"), lines[-1])

    def test_hostile(self):
        path = fixture("hostile", "header-length-past-eof.safetensors")
        out, err = self.fails(1, "schema", path)
        self.assertIn(path, err)
        self.assertIn("error:", err)
        self.assertEqual(out, "")

    def test_bad_schema_json(self):
        schema = self.path("bad.json")
        with open(schema, "w") as f:
            f.write('{"a": {"dtype": "F32", "shape": [2,')
        _, err = self.fails(1, "schema", schema)
        self.assertIn(schema, err)
        self.assertIn("error:", err)

    def test_missing_file(self):
        path = self.path("missing.safetensors")
        _, err = self.fails(2, "schema", path)
        self.assertIn(path, err)

    def test_unknown_format(self):
        # The format follows the file name; a name that says none is a usage error.
        for name in ("foo.xyz", "foo.safetensor"):
            path = self.path(name)
            shutil.copyfile(numpy_fixture(), path)
            _, err = self.fails(2, "schema", path)
            self.assertIn(path, err)


class TestExamples(CliCase):
    CNN = {
        "Conv_0/bias": [32], "Conv_0/kernel": [3, 3, 1, 32],
        "Conv_1/bias": [64], "Conv_1/kernel": [3, 3, 32, 64],
        "Dense_0/bias": [256], "Dense_0/kernel": [3136, 256],
        "Dense_1/bias": [10], "Dense_1/kernel": [256, 10],
    }

    def make_cnn(self, name):
        path = self.path(name)
        r = subprocess.run([PYTHON, os.path.join(ARGS.examples, "make_cnn_checkpoint.py"), path],
                           capture_output=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        self.assertEqual(r.stdout, b"")
        return path

    def test_cnn_checkpoint(self):
        path = self.make_cnn("cnn.safetensors")
        tensors, _, _ = stnp.load(path)
        want = {"opt_state/0/count": ("I32", [])}
        for prefix in ("params/", "opt_state/0/mu/", "opt_state/0/nu/"):
            want.update({prefix + n: ("F32", s) for n, s in self.CNN.items()})
        self.assertEqual({n: (d, list(a.shape)) for n, (d, a) in tensors.items()}, want)
        self.assertEqual(int(tensors["opt_state/0/count"][1]), 100)
        for name, shape in self.CNN.items():
            p = tensors["params/" + name][1]
            if name.endswith("bias"):
                self.assertFalse(p.any(), name)
            else:
                expect = math.sqrt(1.0 / math.prod(shape[:-1]))
                self.assertAlmostEqual(float(p.std()) / expect, 1.0, delta=0.25, msg=name)
            self.assertTrue((tensors["opt_state/0/nu/" + name][1] >= 0).all(), name)
            self.assertTrue(tensors["opt_state/0/mu/" + name][1].any(), name)
        # Deterministic, and already in the reference layout.
        with open(path, "rb") as f:
            blob = f.read()
        with open(self.make_cnn("again.safetensors"), "rb") as f:
            self.assertEqual(f.read(), blob)

        got, _ = self.schema_json(path)
        self.assertEqual(got, self.expected_schema(path))
        out = self.ok("schema", path)
        lines = [l for l in out.splitlines() if l.strip()]
        self.assertTrue(lines[-1].startswith("25 tensors"), lines[-1])
        self.assertIn("f32[3136, 256]", out)


class CheckReadsHeadersOnly(unittest.TestCase):
    """`surg check` reads the header and nothing else: over a checkpoint that
    claims 16 GiB of data (a sparse file: the data is holes) it answers at
    once, and it never needs the data to be there at all."""

    def test_sparse_checkpoint(self):
        with tempfile.TemporaryDirectory() as d:
            path = os.path.join(d, "big.safetensors")
            n = 1 << 32  # f32[2^32]: 16 GiB
            header = json.dumps({"big": {"dtype": "F32", "shape": [n],
                                         "data_offsets": [0, 4 * n]}}).encode()
            header += b" " * (-len(header) % 8)
            with open(path, "wb") as f:
                f.write(len(header).to_bytes(8, "little") + header)
                f.truncate(8 + len(header) + 4 * n)
            recipe = os.path.join(d, "r.surg")
            with open(recipe, "w") as f:
                f.write('map "big" = x / norm(x)\nrename "big" -> "huge"\n')
            import time
            t0 = time.monotonic()
            rc, out, err = surg("check", recipe, "--from", path)
            elapsed = time.monotonic() - t0
            self.assertEqual((rc, err), (0, ""))
            self.assertIn("1 tensor in, 1 out", out)
            self.assertLess(elapsed, 10.0)  # reading 16 GiB would take far longer


def main():
    global ARGS
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--surg", required=True, help="the surg program")
    parser.add_argument("--fixtures", required=True, help="shared/fixtures")
    parser.add_argument("--examples", required=True, help="the project's examples/")
    ARGS, rest = parser.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
