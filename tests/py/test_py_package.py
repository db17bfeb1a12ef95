"""test_py_package.py: the Python package (python/surg) over libsurg.so.

Every function with real values: run()'s outputs read back with NumPy
(stnp.py, numpy.load) and compared with the transform computed in NumPy;
check()'s SurgError printing exactly what `surg check` prints (and the
goldens), its diagnostics' fields equal to `--diagnostics json`'s; schema()
equal to `surg schema --json`; plan() to `surg plan`; schema_of over NumPy
arrays, PyTorch meta tensors and objects that quack like JAX's
ShapeDtypeStruct and Flax's nnx.State, against the schemas surg reads from
files NumPy and PyTorch wrote; the library exporting only the public API;
and `pip install` into a temporary target, imported from there.

usage: test_py_package.py --surg SURG --lib LIBSURG_SO --package PYTHON_DIR
         --golden GOLDEN_DIR --docs DOCS_DIR --header SURG_H --version V
"""

import argparse
import collections
import contextlib
import dataclasses
import doctest
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest
import warnings

import numpy as np
import torch

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stnp  # noqa: E402

ARGS = None
surg = None  # the package, imported in main() from --package


def cli(*args, cwd=None):
    """(exit code, stdout, stderr) of the `surg` command (under the
    sanitizers, with their options as given, and nothing preloaded: the
    command has the runtime linked in)."""
    env = dict(os.environ, CI="1")
    if "SURG_TEST_ASAN_OPTIONS" in env:
        env.pop("LD_PRELOAD", None)
        env["ASAN_OPTIONS"] = env["SURG_TEST_ASAN_OPTIONS"]
    p = subprocess.run([ARGS.surg, "--color", "never", *map(str, args)], capture_output=True,
                       cwd=cwd, env=env, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(errors="replace"), p.stderr.decode(errors="replace")


@contextlib.contextmanager
def chdir(path):
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


ST_NAME = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16"}


def save_st(path, arrays, metadata=None):
    """A .safetensors file of NumPy arrays, written by stnp (not by surg)."""
    stnp.save(path, {k: (ST_NAME[a.dtype], a) for k, a in arrays.items()}, metadata=metadata)


def load_st(path):
    """{name: array} of a .safetensors file, read by stnp."""
    tensors, _, _ = stnp.load(path)
    return {k: arr for k, (_, arr) in tensors.items()}


def raised(fn, *args, **kw):
    """The SurgError a call raises (failing the test when it raises none)."""
    try:
        fn(*args, **kw)
    except surg.SurgError as e:
        return e
    raise AssertionError(f"{fn.__name__} raised no SurgError")


def json_diags(stderr):
    return [json.loads(line) for line in stderr.splitlines()]


def as_json(d):
    """A Diagnostic as the command's --diagnostics json writes it."""
    out = {"file": d.file}
    if d.line:
        out.update(line=d.line, column=d.column, end_line=d.end_line, end_column=d.end_column)
    out.update(severity=d.severity, code=d.code, message=d.message, notes=list(d.notes))
    return out


class Tmp(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="surg-pytest-")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def bytes_of(self, name):
        with open(self.path(name), "rb") as f:
            return f.read()

    def write(self, name, text):
        with open(self.path(name), "w") as f:
            f.write(text)
        return self.path(name)


class Library(unittest.TestCase):
    def test_exports_only_the_public_api(self):
        """libsurg.so exports exactly the functions surg.h marks SURG_API."""
        out = subprocess.run(["nm", "-D", "--defined-only", ARGS.lib], capture_output=True,
                             text=True, check=True).stdout
        exported = {line.split()[-1] for line in out.splitlines() if line.strip()}
        with open(ARGS.header) as f:
            header = f.read()
        declared = set(re.findall(r"^SURG_API [^;(]*?\b(surg_\w+)\(", header, re.M))
        self.assertGreater(len(declared), 50)
        self.assertEqual(exported, declared)

    def test_structs_follow_the_header(self):
        """Every structure the package passes to the library has the fields
        of its C declaration in surg.h, in order (a field added to the header
        and not here would make the library read past the Python object)."""
        from surg import _lib as lib
        with open(ARGS.header) as f:
            header = f.read()

        def c_fields(name):
            m = re.search(r"typedef struct %s \{(.*?)\} %s;" % (name, name), header, re.S)
            self.assertIsNotNone(m, name)
            body = re.sub(r"/\*.*?\*/", "", m.group(1), flags=re.S)
            return [re.search(r"(\w+)\s*(?:\[[^\]]*\])?$", d.strip()).group(1)
                    for decl in body.split(";") if decl.strip() for d in decl.split(",")]

        for py, c in (("Diag", "surg_diag"), ("Sink", "surg_sink"),
                      ("TensorInfo", "surg_tensor_info"), ("MetaEntry", "surg_meta_entry"),
                      ("Part", "surg_ckpt_part"), ("Input", "surg_input"),
                      ("CompileOpts", "surg_compile_opts"), ("RunPart", "surg_part"),
                      ("RunOpts", "surg_run_opts")):
            self.assertEqual([f[0] for f in getattr(lib, py)._fields_], c_fields(c), py)

    def test_versions_agree(self):
        with open(os.path.join(ARGS.package, "pyproject.toml")) as f:
            pyproject = re.search(r'^version = "([^"]+)"', f.read(), re.M).group(1)
        self.assertEqual({pyproject, surg.__version__, surg.LIBRARY_VERSION}, {ARGS.version})
        self.assertEqual(os.path.realpath(surg.library_path), os.path.realpath(ARGS.lib))


class Check(Tmp):
    def test_golden_errors_print_as_the_command_does(self):
        """Every compile error of tests/golden/check/errors: str(SurgError)
        is the command's standard error (and the golden), each diagnostic's
        fields are the command's JSON diagnostic."""
        cases = sorted(f for f in os.listdir(os.path.join(ARGS.golden, "check", "errors"))
                       if f.endswith(".surg"))
        self.assertGreaterEqual(len(cases), 40)
        with chdir(ARGS.golden):
            for name in cases:
                rel = f"check/errors/{name}"
                with self.subTest(rel):
                    e = raised(surg.check, rel, "check/model.json")
                    rc, _, err = cli("check", rel, "--from", "check/model.json",
                                     cwd=ARGS.golden)
                    self.assertEqual((e.exit_code, e.status), (rc, 1))
                    self.assertEqual(str(e) + "\n", err)
                    with open(rel[:-5] + ".err") as f:
                        self.assertEqual(str(e) + "\n", f.read())
                    _, _, js = cli("--diagnostics", "json", "check", rel, "--from",
                                   "check/model.json", cwd=ARGS.golden)
                    self.assertEqual([as_json(d) for d in e.diagnostics], json_diags(js))
                    self.assertTrue(e.errors)

    def test_one_diagnostic_exactly(self):
        with chdir(ARGS.golden):
            e = raised(surg.check, "check/errors/01-no-match-suggest.surg", "check/model.json")
        [d] = e.diagnostics
        self.assertEqual(dataclasses.astuple(d)[:10], (
            "error", "match-none", "check/errors/01-no-match-suggest.surg", 1, 5, 1, 28,
            'pattern "params/Dense_1/kernal" matches no tensor',
            ('did you mean "params/Dense_1/kernel"?',),
            'map "params/Dense_1/kernal" = x * 2'))
        self.assertEqual(str(d), d.text.rstrip("\n"))

    def test_named_inputs(self):
        """A dict NAME -> path is several inputs, as --in NAME=PATH."""
        cases = ["01-missing-prefix", "03-no-such-tensor"]
        with chdir(ARGS.golden):
            for name in cases:
                rel = f"check/inputs/{name}.surg"
                e = raised(surg.check, rel, {"base": "check/inputs/base.json",
                                             "lora": "check/inputs/lora.json"})
                _, _, err = cli("check", rel, "--in", "base=check/inputs/base.json",
                                "--in", "lora=check/inputs/lora.json", cwd=ARGS.golden)
                self.assertEqual(str(e) + "\n", err)
            e = raised(surg.check, 'drop "x/**"', {"bad name": "check/inputs/base.json"})
            self.assertEqual([d.code for d in e.diagnostics], ["input-name"])

    def test_result_and_target(self):
        src = surg.schema_of({"params": {"Dense_0": {"kernel": np.zeros((4, 3), np.float32),
                                                     "bias": np.zeros(3, np.float32)}}})
        recipe = 'rename "params/**" -> "$1"\nmap "**/kernel" = cast(x, bf16)\n'
        out = surg.check(recipe, src)
        self.assertEqual(dict(out), {"Dense_0/bias": surg.Tensor("F32", (3,)),
                                     "Dense_0/kernel": surg.Tensor("BF16", (4, 3))})
        # the target as a schema object: each mismatch at the statement that
        # caused it, as the command reports it
        target = surg.schema_of({"Dense_0": {"kernel": np.zeros((4, 3), np.float32)}})
        e = raised(surg.check, recipe, src, target)
        self.assertEqual(str(e), '<recipe>:1:23: error: the result has "Dense_0/bias" (f32[3]), '
                                 'which the target does not\n'
                                 '    1 | rename "params/**" -> "$1"\n'
                                 '      |                       ^~~~\n'
                                 '<recipe>:2:1: error: the result\'s "Dense_0/kernel" is '
                                 'bf16[4, 3], but the target has f32[4, 3]\n'
                                 '    2 | map "**/kernel" = cast(x, bf16)\n'
                                 '      | ^~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~\n'
                                 'note: to match the target: map "Dense_0/kernel" = cast(x, f32)')
        self.assertEqual(surg.check(recipe, src, out), out)
        # a result with tied names is a target with them too
        tied = surg.check('tie "params/Dense_0/bias" = "params/Dense_0/kernel"',
                          surg.schema_of({"params/Dense_0/kernel": np.zeros(3, np.float32),
                                          "params/Dense_0/bias": np.zeros(3, np.float32)}))
        self.assertEqual((list(tied), tied.ties), (["params/Dense_0/kernel"],
                                                   {"params/Dense_0/bias":
                                                    "params/Dense_0/kernel"}))
        self.assertEqual(json.loads(tied.to_dict()["__metadata__"]["surg.ties"]), tied.ties)
        self.assertEqual(surg.check('rename "w" -> "params/Dense_0/kernel"\n'
                                    'fill "params/Dense_0/bias": f32[3] = 0\n'
                                    'tie "params/Dense_0/bias" = "params/Dense_0/kernel"',
                                    {"w": np.zeros(3, np.float32)}, tied).ties, tied.ties)
        e = raised(surg.check, 'rename "w" -> "params/Dense_0/kernel"',
                   {"w": np.zeros(3, np.float32)}, tied)
        self.assertEqual(str(e), '<result>: error: the result lacks "params/Dense_0/bias" '
                                 '(f32[3] in the target, tied)')
        # and as a file: the command's words exactly
        r = self.write("r.surg", recipe)
        s = self.write("s.json", src.json())
        t = self.write("t.json", target.json())
        e = raised(surg.check, r, s, t)
        _, _, err = cli("check", r, "--from", s, "--to", t)
        self.assertEqual(str(e) + "\n", err)

    def test_recipe_text_and_paths(self):
        src = surg.schema_of({"w": np.zeros(2, np.float32)})
        e = raised(surg.check, 'drop "w"\nfrob', src)
        self.assertEqual(e.diagnostics[0].file, "<recipe>")
        self.assertEqual((e.diagnostics[0].line, e.diagnostics[0].column), (2, 1))
        r = self.write("x.surg", 'drop "w"\nfrob')
        _, _, err = cli("check", r, "--from", self.write("w.json", src.json()))
        self.assertEqual(str(e) + "\n", err.replace(r, "<recipe>"))
        self.assertEqual(str(raised(surg.check, r, src)) + "\n", err)
        # a path that names no file is an I/O error, not recipe text
        e = raised(surg.check, self.path("missing.surg"), src)
        self.assertEqual((e.status, e.exit_code), (2, 2))
        _, _, err = cli("check", self.path("missing.surg"), "--from", self.path("w.json"))
        self.assertEqual(str(e) + "\n", err)


class Schema(Tmp):
    def test_schema_is_the_commands(self):
        fx = os.path.join(ARGS.fixtures, "safetensors-reference")
        arrays = {"a/b": np.arange(6, dtype=np.int16).reshape(2, 3), "c": np.float64(1.5)}
        np.savez(self.path("n.npz"), **arrays)
        torch.save({"fc.weight": torch.zeros(3, 4, dtype=torch.bfloat16),
                    "fc.bias": torch.zeros(3)}, self.path("m.pt"))
        paths = [os.path.join(fx, "model.numpy.safetensors"), os.path.join(fx, "sharded"),
                 self.path("n.npz"), self.path("m.pt"),
                 os.path.join(ARGS.golden, "check", "meta", "meta.json")]
        for p in paths:
            with self.subTest(p):
                s = surg.schema(p)
                rc, out, _ = cli("schema", "--json", p)
                self.assertEqual(rc, 0)
                self.assertEqual(s.json(), out)
                self.assertEqual(s.to_dict(), json.loads(out))
        # against NumPy and PyTorch themselves
        self.assertEqual({k: (v.dtype, v.shape) for k, v in surg.schema(paths[2]).items()},
                         {"a/b": ("I16", (2, 3)), "c": ("F64", ())})
        self.assertEqual(dict(surg.schema(paths[3])), {"fc.bias": surg.Tensor("F32", (3,)),
                                                      "fc.weight": surg.Tensor("BF16", (3, 4))})
        self.assertEqual(surg.schema(paths[4]).metadata["author"], "surg tests")

    def test_schema_errors(self):
        p = self.write("bad.json", '{"w": {"dtype": "F99", "shape": [1]}}')
        e = raised(surg.schema, p)
        _, _, err = cli("schema", p)
        self.assertEqual(str(e) + "\n", err)
        self.assertEqual(e.diagnostics[0].code, "st-dtype")


# Objects that quack like JAX's and Flax's (neither is installable here).
class ShapeDtypeStruct:
    """jax.ShapeDtypeStruct: a shape tuple and a NumPy dtype."""

    def __init__(self, shape, dtype):
        self.shape = tuple(shape)
        self.dtype = np.dtype(dtype) if isinstance(dtype, str) else dtype


class BF16:
    """A dtype that is not NumPy's but has a .name, as ml_dtypes' has."""
    name = "bfloat16"


class VariableState:
    """nnx.VariableState / nnx.Param: the array is .value."""

    def __init__(self, value):
        self.value = value


class State(dict):
    """nnx.State: a nested mapping of VariableStates, with to_pure_dict()
    giving the same tree with the bare values."""

    def to_pure_dict(self):
        def pure(x):
            return {k: pure(v) for k, v in x.items()} if isinstance(x, dict) else x.value
        return pure(self)


class FlatOnly:
    """A state that only flattens: flat_state() -> [(path tuple, leaf)]."""

    def __init__(self, pairs):
        self.pairs = pairs

    def flat_state(self):
        return self.pairs


AdamState = collections.namedtuple("ScaleByAdamState", "count mu nu")


class SchemaOf(Tmp):
    def test_numpy_tree_equals_the_npz_read(self):
        tree = {"params": {"Dense_0": {"kernel": np.ones((4, 3), np.float32),
                                       "bias": np.ones(3, np.float16)},
                           "layers": [np.zeros((2,), np.int8), np.zeros((), np.uint64)]},
                "step": 7}
        s = surg.schema_of(tree)
        flat = {"params/Dense_0/kernel": tree["params"]["Dense_0"]["kernel"],
                "params/Dense_0/bias": tree["params"]["Dense_0"]["bias"],
                "params/layers/0": tree["params"]["layers"][0],
                "params/layers/1": tree["params"]["layers"][1]}
        np.savez(self.path("t.npz"), **flat)
        self.assertEqual(s, surg.schema(self.path("t.npz")))
        self.assertEqual(list(s), sorted(flat))
        self.assertEqual(s["params/layers/1"], surg.Tensor("U64", ()))

    def test_torch_meta_state_dict_equals_the_saved_one(self):
        def model(device):
            m = torch.nn.Sequential(torch.nn.Linear(4, 8, device=device),
                                    torch.nn.LayerNorm(8, device=device),
                                    torch.nn.Embedding(10, 8, device=device))
            m[2].to(torch.bfloat16)
            return m
        meta = model("meta").state_dict()
        self.assertTrue(all(t.device.type == "meta" for t in meta.values()))
        torch.save(model("cpu").state_dict(), self.path("m.pt"))
        s = surg.schema_of(meta)
        self.assertEqual(s, surg.schema(self.path("m.pt")))
        self.assertEqual(s["2.weight"], surg.Tensor("BF16", (10, 8)))
        self.assertIn("0.weight", s)  # a state_dict's keys are kept as they are
        # nested torch objects join with "." as the torch reader names them
        ck = {"model": meta, "optimizer": {"state": {0: {"exp_avg": meta["0.weight"]}}}}
        torch.save({"model": model("cpu").state_dict(),
                    "optimizer": {"state": {0: {"exp_avg": torch.zeros(8, 4)}}}},
                   self.path("ck.pt"))
        self.assertEqual(surg.schema_of(ck, sep="."), surg.schema(self.path("ck.pt")))
        for dt, name in [(torch.float16, "F16"), (torch.int64, "I64"), (torch.bool, "BOOL"),
                         (getattr(torch, "float8_e4m3fn", torch.uint8), "F8_E4M3"),
                         (torch.uint8, "U8")]:
            if name == "F8_E4M3" and dt is torch.uint8:
                continue  # a PyTorch without float8
            t = torch.empty(2, 3, dtype=dt, device="meta")
            self.assertEqual(surg.schema_of({"t": t})["t"], surg.Tensor(name, (2, 3)))

    def test_jax_and_flax_shaped_objects(self):
        abstract = {"params": {"Dense_0": {"kernel": ShapeDtypeStruct((784, 256), "float32"),
                                           "bias": ShapeDtypeStruct((256,), "float32")},
                               "embed": ShapeDtypeStruct((100, 16), BF16())}}
        want = {"params/Dense_0/bias": surg.Tensor("F32", (256,)),
                "params/Dense_0/kernel": surg.Tensor("F32", (784, 256)),
                "params/embed": surg.Tensor("BF16", (100, 16))}
        self.assertEqual(dict(surg.schema_of(abstract)), want)
        state = State({"params": {"Dense_0": {"kernel": VariableState(abstract["params"]
                                                                     ["Dense_0"]["kernel"]),
                                              "bias": VariableState(abstract["params"]
                                                                    ["Dense_0"]["bias"])},
                                  "embed": VariableState(abstract["params"]["embed"])}})
        self.assertEqual(dict(surg.schema_of(state)), want)
        flat = FlatOnly([(("params", "Dense_0", "kernel"), VariableState(
            ShapeDtypeStruct((784, 256), "float32")))])
        self.assertEqual(dict(surg.schema_of(flat)),
                         {"params/Dense_0/kernel": surg.Tensor("F32", (784, 256))})
        # Orbax names an nnx.State saved as it is with each Variable's "value"
        nested = {"linear": {"kernel": VariableState(ShapeDtypeStruct((2, 3), "float32"))}}
        self.assertEqual(list(surg.schema_of(nested, variable_value=True)),
                         ["linear/kernel/value"])
        self.assertEqual(list(surg.schema_of(nested)), ["linear/kernel"])
        # optax's namedtuples are named by their fields, as Flax serializes them
        opt = (AdamState(count=ShapeDtypeStruct((), "int32"), mu={"w": np.zeros(2)},
                         nu={"w": np.zeros(2)}), None)
        self.assertEqual(list(surg.schema_of({"opt_state": opt})),
                         ["opt_state/0/count", "opt_state/0/mu/w", "opt_state/0/nu/w"])

        @dataclasses.dataclass
        class TrainState:  # flax.struct.dataclass: apply_fn is no pytree node
            step: object
            params: object
            apply_fn: object = dataclasses.field(metadata={"pytree_node": False},
                                                 default=print)
        ts = TrainState(step=ShapeDtypeStruct((), "int32"), params=abstract["params"])
        self.assertEqual(list(surg.schema_of(ts)), ["params/Dense_0/bias",
                                                     "params/Dense_0/kernel", "params/embed",
                                                     "step"])

    def test_check_against_the_abstract_state(self):
        """The three lines of CI: the new model's abstract state as target."""
        old = {"params": {"Dense_0": {"kernel": np.zeros((4, 3), np.float32)}}}
        new = State({"encoder": {"proj": {"kernel": VariableState(
            ShapeDtypeStruct((4, 3), "float32"))}}})
        self.assertEqual(dict(surg.check('rename "params/Dense_0/**" -> "encoder/proj/$1"',
                                         old, new)),
                         {"encoder/proj/kernel": surg.Tensor("F32", (4, 3))})
        e = raised(surg.check, 'rename "params/Dense_0/**" -> "encoder/dense/$1"', old, new)
        self.assertEqual(str(e), '<recipe>:1:31: error: the result has "encoder/dense/kernel" '
                                 'where the target has "encoder/proj/kernel" (f32[4, 3]): '
                                 'renamed?\n'
                                 '    1 | rename "params/Dense_0/**" -> "encoder/dense/$1"\n'
                                 '      |                               ^~~~~~~~~~~~~~~~~~\n'
                                 'note: to match the target: rename "encoder/dense/kernel" -> '
                                 '"encoder/proj/kernel"')

    def test_refusals(self):
        e = raised(surg.schema_of, {"w": np.zeros(2, np.complex128)})
        self.assertEqual([(d.file, d.code) for d in e.diagnostics], [("<schema_of>", "st-dtype")])
        self.assertTrue(str(e).startswith('<schema_of>: error: tensor "w": unknown dtype '
                                          '"complex128"; a schema takes bool, '))
        with self.assertRaisesRegex(TypeError, r"schema_of: 'a/b': object is neither an array"):
            surg.schema_of({"a": {"b": object()}})
        with self.assertRaisesRegex(ValueError, r"the name 'a/b' is reached twice"):
            surg.schema_of({"a/b": np.zeros(1), "a": {"b": np.zeros(1)}})
        loop = {}
        loop["x"] = loop
        with self.assertRaisesRegex(ValueError, r"'x': the same container appears twice"):
            surg.schema_of(loop)
        deep = np.zeros(1)
        for _ in range(200):
            deep = [deep]
        with self.assertRaisesRegex(ValueError, r"the tree nests deeper than 128"):
            surg.schema_of(deep)
        with self.assertRaisesRegex(ValueError, r"an array at the root has no name"):
            surg.schema_of(np.zeros(3))
        with self.assertRaisesRegex(TypeError, r"shape \(None, 3\) is not a tuple of integers"):
            surg.schema_of({"w": type("S", (), {"shape": (None, 3), "dtype": "float32"})()})


class Run(Tmp):
    def test_run_against_numpy(self):
        rng = np.random.default_rng(5)
        w = rng.standard_normal((4, 3)).astype(np.float32)
        b = rng.standard_normal(3).astype(np.float32)
        emb = rng.standard_normal((5, 2)).astype(np.float32)
        save_st(self.path("in.safetensors"), {"model/fc/weight": w, "model/fc/bias": b,
                                                "model/emb": emb})
        recipe = self.write("r.surg", 'rename "model/**" -> "$1"\n'
                                      'map "fc/weight" = transpose(x) * 2 + 1\n'
                                      'drop "emb"\n')
        out = self.path("out.safetensors")
        ticks = []
        result = surg.run(recipe, self.path("in.safetensors"), out, threads=2,
                          progress=lambda done, total: ticks.append((done, total)))
        self.assertTrue(ticks)
        self.assertEqual(ticks[-1][0], ticks[-1][1])
        self.assertGreater(ticks[-1][1], 0)
        got = load_st(out)
        self.assertEqual(sorted(got), ["fc/bias", "fc/weight"])
        np.testing.assert_array_equal(got["fc/weight"], w.T * np.float32(2) + np.float32(1))
        np.testing.assert_array_equal(got["fc/bias"], b)
        self.assertEqual(dict(result), {"fc/bias": surg.Tensor("F32", (3,)),
                                        "fc/weight": surg.Tensor("F32", (3, 4))})
        # recipe text, and an .npz output read by NumPy
        surg.run('map "**" = x * 0.5', out, self.path("half.npz"))
        with np.load(self.path("half.npz")) as z:
            np.testing.assert_array_equal(z["fc/weight"], (w.T * np.float32(2) + np.float32(1))
                                          * np.float32(0.5))
            np.testing.assert_array_equal(z["fc/bias"], b * np.float32(0.5))

    def test_run_reflink_and_writers(self):
        """reflink and writers reach the library: the same bytes as the
        command's with the same options (the zero-copy layout moves the
        copies, which the reference layout does not), shards alike for
        any number of writers."""
        rng = np.random.default_rng(3)
        save_st(self.path("in.safetensors"),
                {"a": rng.standard_normal(77).astype(np.float32),
                 "b": rng.standard_normal((64, 64)).astype(np.float32)})
        recipe = self.write("r.surg", 'rename "a" -> "z"\n')
        for how in ("always", "never"):
            mine, theirs = self.path(how + ".safetensors"), self.path(how + "-cli.safetensors")
            surg.run(recipe, self.path("in.safetensors"), mine, reflink=how)
            rc, _, err = cli("run", "-q", recipe, self.path("in.safetensors"), theirs,
                             "--reflink", how)
            self.assertEqual((rc, err), (0, ""))
            with open(mine, "rb") as f, open(theirs, "rb") as g:
                self.assertEqual(f.read(), g.read(), how)
        self.assertNotEqual(self.bytes_of("always.safetensors"),
                            self.bytes_of("never.safetensors"))
        for w in (1, 3):
            surg.run(recipe, self.path("in.safetensors"), self.path("s%d" % w), writers=w,
                     max_shard_size=20000)
        for f in os.listdir(self.path("s1")):
            self.assertEqual(self.bytes_of(os.path.join("s1", f)),
                             self.bytes_of(os.path.join("s3", f)))
        with self.assertRaisesRegex(ValueError, r"reflink takes 'auto', 'always' or 'never', "
                                                r"not 'yes'"):
            surg.run(recipe, self.path("in.safetensors"), self.path("x"), reflink="yes")
        with self.assertRaisesRegex(ValueError, r"writers takes a number from 1 to 1024, not 0"):
            surg.run(recipe, self.path("in.safetensors"), self.path("x.safetensors"), writers=0)

    def test_run_named_inputs_and_torch(self):
        rng = np.random.default_rng(9)
        a = {"fc.weight": torch.tensor(rng.standard_normal((3, 4)).astype(np.float32)),
             "fc.bias": torch.tensor(rng.standard_normal(3).astype(np.float32))}
        b = {k: torch.tensor(rng.standard_normal(tuple(v.shape)).astype(np.float32))
             for k, v in a.items()}
        torch.save(a, self.path("a.pt"))
        np.savez(self.path("b.npz"), **{k: v.numpy() for k, v in b.items()})
        merge = 'map "a/**" = (x + tensor("b/$1")) / 2\nkeep "a/**"\nrename "a/**" -> "$1"\n'
        surg.run(merge, {"a": self.path("a.pt"), "b": self.path("b.npz")},
                 self.path("m.safetensors"), threads=1)
        got = load_st(self.path("m.safetensors"))
        for k in a:
            want = (a[k].numpy() + b[k].numpy()) / np.float32(2)
            np.testing.assert_array_equal(got[k], want)
        self.assertEqual(sorted(got), sorted(a))

    def test_run_refusals_leave_nothing(self):
        save_st(self.path("in.safetensors"), {"w": np.ones(3, np.float32)})
        before = self.bytes_of("in.safetensors")
        # the output is the input: refused before anything is read
        recipe = self.write("r.surg", 'map "w" = x + 1\n')
        e = raised(surg.run, recipe, self.path("in.safetensors"), self.path("in.safetensors"))
        rc, _, err = cli("run", recipe, self.path("in.safetensors"), self.path("in.safetensors"))
        self.assertEqual((e.exit_code, str(e) + "\n"), (rc, err))
        self.assertEqual(self.bytes_of("in.safetensors"), before)
        # a recipe error: no output appears
        e = raised(surg.run, 'map "v" = x', self.path("in.safetensors"), self.path("o.safetensors"))
        self.assertEqual(e.diagnostics[0].code, "match-none")
        self.assertFalse(os.path.exists(self.path("o.safetensors")))
        # the target refuses the result
        e = raised(surg.run, recipe, self.path("in.safetensors"), self.path("o.safetensors"),
                   target=surg.schema_of({"w": np.zeros(4, np.float32)}))
        self.assertEqual([d.code for d in e.diagnostics], ["target-mismatch"])
        self.assertFalse(os.path.exists(self.path("o.safetensors")))
        with self.assertRaisesRegex(TypeError, "a schema has no data to run on"):
            surg.run(recipe, {"a": surg.schema_of({"w": np.zeros(1)})}, self.path("x.npz"))
        def broken(done, total):
            raise KeyError("from the callback")
        with self.assertRaisesRegex(KeyError, "from the callback"):
            surg.run(recipe, self.path("in.safetensors"), self.path("p.safetensors"),
                     progress=broken)
        with self.assertRaisesRegex(ValueError, "threads takes a number from 1 to 1024"):
            surg.run(recipe, self.path("in.safetensors"), self.path("o.safetensors"), threads=0)

    def test_warnings_are_python_warnings(self):
        """A run that succeeds with warnings warns them, as the command prints
        them (metadata an .npz cannot carry)."""
        save_st(self.path("in.safetensors"), {"w": np.ones(3, np.float32)},
                  metadata={"author": "me"})
        recipe = self.write("r.surg", 'map "w" = x * 3\n')
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            surg.run(recipe, self.path("in.safetensors"), self.path("o.npz"))
        rc, _, err = cli("run", "-q", recipe, self.path("in.safetensors"), self.path("p.npz"))
        self.assertEqual(rc, 0)
        self.assertTrue(caught)
        self.assertTrue(all(issubclass(w.category, surg.SurgWarning) for w in caught))
        self.assertEqual("".join(str(w.message) + "\n" for w in caught),
                         err.replace("p.npz", "o.npz"))
        with np.load(self.path("o.npz")) as z:
            np.testing.assert_array_equal(z["w"], np.full(3, 3, np.float32))


class Plan(Tmp):
    def test_plan_is_the_commands(self):
        save_st(self.path("in.safetensors"), {"a": np.ones((8, 4), np.float32),
                                                "b": np.ones(4, np.float16)})
        recipe = self.write("r.surg", 'map "a" = x * 2\nrename "b" -> "c"\n')
        p = surg.plan(recipe, self.path("in.safetensors"), threads=2)
        _, text, _ = cli("plan", recipe, "--from", self.path("in.safetensors"), "--threads", 2)
        _, js, _ = cli("plan", recipe, "--from", self.path("in.safetensors"), "--threads", 2,
                       "--json")
        self.assertEqual(p.text, text)
        self.assertEqual(str(p), text)
        self.assertEqual(p.data, json.loads(js))
        self.assertEqual(dict(p.result), {"a": surg.Tensor("F32", (8, 4)),
                                          "c": surg.Tensor("F16", (4,))})


class Install(Tmp):
    def python(self, code, **env):
        e = {k: v for k, v in os.environ.items()
             if k not in ("SURG_LIBRARY", "PYTHONPATH", "LD_LIBRARY_PATH")}
        e.update(env)
        return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=self.tmp, env=e)

    def test_pip_install_and_import_from_there(self):
        src = self.path("src")
        shutil.copytree(ARGS.package, src)  # pip builds in the tree: not in ours
        target = self.path("site")
        p = subprocess.run([sys.executable, "-m", "pip", "install", "--no-build-isolation",
                            "--no-index", "--no-deps", "--quiet", "--target", target, src],
                           capture_output=True, text=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        save_st(self.path("in.safetensors"), {"w": np.arange(4, dtype=np.float32)})
        code = ("import surg, numpy as np\n"
                "assert surg.__file__.startswith(%r), surg.__file__\n"
                "surg.run('map \"w\" = x * x', 'in.safetensors', 'out.npz')\n"
                "print(surg.library_path)\n" % target)
        # the library by $SURG_LIBRARY, then by the system's loader (its soname)
        for env in ({"SURG_LIBRARY": ARGS.lib},
                    {"LD_LIBRARY_PATH": os.path.dirname(os.path.abspath(ARGS.lib))}):
            with self.subTest(env):
                r = self.python(code, PYTHONPATH=target, **env)
                self.assertEqual(r.returncode, 0, r.stderr)
                with np.load(self.path("out.npz")) as z:
                    np.testing.assert_array_equal(z["w"], np.arange(4, dtype=np.float32) ** 2)
                os.remove(self.path("out.npz"))
        self.assertEqual(r.stdout.strip(), "libsurg.so.0")
        r = self.python("import surg", PYTHONPATH=target, SURG_LIBRARY=self.path("nope.so"))
        self.assertIn("ImportError: surg: cannot load libsurg.so; set SURG_LIBRARY to its "
                      f"path, or install it (cmake --install) where the loader finds it. "
                      f"Tried: {self.path('nope.so')} (no such file)", r.stderr)


class Docs(Tmp):
    def test_walkthrough(self):
        """docs/python.md's examples, run as doctests in a fresh directory."""
        with chdir(self.tmp):
            r = doctest.testfile(os.path.join(ARGS.docs, "python.md"), module_relative=False,
                                 globs={}, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        self.assertGreater(r.attempted, 10)
        self.assertEqual(r.failed, 0)


def preload():
    """Under the sanitizers (SURG_TEST_PRELOAD: their runtime), run this
    script again with the runtime preloaded, as Python must be to load an
    instrumented libsurg.so."""
    rt = os.environ.get("SURG_TEST_PRELOAD")
    if not rt or "SURG_TEST_ASAN_OPTIONS" in os.environ:
        return
    env = dict(os.environ, LD_PRELOAD=rt,
               SURG_TEST_ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", ""))
    env["ASAN_OPTIONS"] = ":".join(filter(None, [env["SURG_TEST_ASAN_OPTIONS"],
                                                 "detect_leaks=0"]))
    os.execve(sys.executable, [sys.executable] + sys.argv, env)


def main():
    global ARGS, surg
    preload()
    ap = argparse.ArgumentParser()
    for opt in ("--surg", "--lib", "--package", "--golden", "--docs", "--header", "--version",
                "--fixtures"):
        ap.add_argument(opt, required=True)
    ARGS, rest = ap.parse_known_args()
    os.environ["SURG_LIBRARY"] = os.path.abspath(ARGS.lib)
    sys.path.insert(0, os.path.abspath(ARGS.package))
    import surg as pkg
    surg = pkg
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
