#!/usr/bin/env python3
"""test_friction.py: what a new user meets first (issue 17 §5): schema files
written by one line of Python from any pytree, with NumPy's dtype names;
`expect` with a dtype alone or any rank; `surg fmt -w`; `surg check -`; the
summary of `surg run`; `__metadata__` in `surg schema`; git-lfs pointers.

usage: test_friction.py --surg SURG --fixtures DIR [unittest args]
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.dont_write_bytecode = True
ARGS = None

# NumPy's name -> safetensors' name (from the safetensors documentation).
ST_NAME = {"float32": "F32", "float16": "F16", "float64": "F64", "int8": "I8",
           "uint8": "U8", "int16": "I16", "int32": "I32", "int64": "I64", "bool": "BOOL",
           "uint16": "U16", "uint32": "U32", "uint64": "U64", "complex64": "C64"}


def tree_map(f, t):
    """jax.tree.map over dicts and lists, for a machine without JAX."""
    if isinstance(t, dict):
        return {k: tree_map(f, v) for k, v in t.items()}
    if isinstance(t, (list, tuple)):
        return [tree_map(f, v) for v in t]
    return None if t is None else f(t)


def flatten(t, prefix=""):
    if isinstance(t, dict):
        items = t.items()
    elif isinstance(t, (list, tuple)):
        items = ((str(i), v) for i, v in enumerate(t))
    else:
        return {prefix: t}
    out = {}
    for k, v in items:
        out.update(flatten(v, prefix + "/" + k if prefix else k))
    return out


def surg(*args, stdin=None, cwd=None):
    p = subprocess.run([ARGS.surg, "--color", "never", *map(str, args)], input=stdin,
                       capture_output=True, cwd=cwd, timeout=120)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


class Case(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="surg-friction-")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def write(self, name, text, mode="w"):
        with open(self.path(name), mode) as f:
            f.write(text)
        return self.path(name)


class Schema(Case):
    def test_pytree_one_line(self):
        """The line docs/formats.md gives, on a tree of NumPy arrays (JAX's
        arrays print their dtypes the same way)."""
        tree = {"params": {"Dense_0": {"kernel": np.zeros((4, 3), np.float32),
                                       "bias": np.zeros(3, np.float16)},
                           "Embed_0": {"embedding": np.zeros((10, 4), np.int8)}},
                "batch_stats": {"mask": np.zeros((2, 2), bool)},
                "opt_state": [{"count": np.zeros((), np.int32)}, {}, None],
                "step": np.zeros((), np.int64)}
        line = json.dumps(tree_map(lambda a: {"dtype": str(a.dtype), "shape": list(a.shape)},
                                   tree))
        path = self.write("tree.json", line)
        rc, out, err = surg("schema", "--json", path)
        self.assertEqual((rc, err), (0, ""))
        got = json.loads(out)
        leaves = {k: v for k, v in flatten(tree).items() if isinstance(v, np.ndarray)}
        want = {k: {"dtype": ST_NAME[str(a.dtype)], "shape": list(a.shape)}
                for k, a in leaves.items()}
        self.assertEqual(got, want)
        self.assertIn("opt_state/0/count", got)

    def test_recipe_and_numpy_names(self):
        names = {"a": ("f32", "F32"), "b": ("bf16", "BF16"), "c": ("bfloat16", "BF16"),
                 "d": ("F8_E4M3", "F8_E4M3"), "e": ("float8_e4m3fn", "F8_E4M3"),
                 "f": ("bool", "BOOL"), "g": ("u8", "U8"), "h": ("float64", "F64")}
        path = self.write("s.json", json.dumps(
            {k: {"dtype": d, "shape": [2]} for k, (d, _) in names.items()}))
        rc, out, err = surg("schema", "--json", path)
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual({k: v["dtype"] for k, v in json.loads(out).items()},
                         {k: st for k, (_, st) in names.items()})

    def test_check_against_nested(self):
        path = self.write("tree.json", json.dumps(
            {"params": {"Dense_0": {"kernel": {"dtype": "float32", "shape": [4, 3]}}}}))
        recipe = self.write("r.surg", 'rename "params/Dense_0/kernel" -> "params/dense/kernel"\n')
        rc, out, err = surg("check", recipe, "--from", path)
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("ok: 1 tensor in, 1 out", out)


UNFORMATTED = 'rename   "params/a"->"params/b"\n'
FORMATTED = 'rename "params/a" -> "params/b"\n'


class FmtWrite(Case):
    def test_rewrites_in_place_keeping_mode(self):
        path = self.write("r.surg", UNFORMATTED)
        os.chmod(path, 0o640)
        ino = os.stat(path).st_ino
        rc, out, err = surg("fmt", "-w", path)
        self.assertEqual((rc, out, err), (0, "", ""))
        with open(path) as f:
            self.assertEqual(f.read(), FORMATTED)
        st = os.stat(path)
        self.assertEqual(st.st_mode & 0o7777, 0o640)
        self.assertNotEqual(st.st_ino, ino, "a new file renamed over the old one")
        self.assertEqual(sorted(os.listdir(self.tmp)), ["r.surg"], "no temporary left")

    def test_formatted_file_untouched(self):
        path = self.write("r.surg", FORMATTED)
        os.utime(path, (1000000000, 1000000000))
        before = os.stat(path)
        rc, out, err = surg("fmt", "--write", path)
        self.assertEqual((rc, out, err), (0, "", ""))
        after = os.stat(path)
        self.assertEqual((after.st_ino, after.st_mtime), (before.st_ino, before.st_mtime))

    def test_several_files(self):
        a = self.write("a.surg", UNFORMATTED)
        b = self.write("b.surg", FORMATTED)
        self.assertEqual(surg("fmt", "-w", a, b), (0, "", ""))
        for p in (a, b):
            with open(p) as f:
                self.assertEqual(f.read(), FORMATTED)

    def test_symlink_refused(self):
        target = self.write("r.surg", UNFORMATTED)
        link = self.path("l.surg")
        os.symlink("r.surg", link)
        rc, out, err = surg("fmt", "-w", link)
        self.assertEqual((rc, out), (2, ""))
        self.assertEqual(err, f"surg fmt: {link}: is a symbolic link; give the file it points "
                              "at (-w rewrites regular files only)\n")
        self.assertTrue(os.path.islink(link))
        with open(target) as f:
            self.assertEqual(f.read(), UNFORMATTED)

    def test_hard_link_refused(self):
        path = self.write("r.surg", UNFORMATTED)
        os.link(path, self.path("h.surg"))
        rc, out, err = surg("fmt", "-w", path)
        self.assertEqual(rc, 2)
        self.assertEqual(err, f"surg fmt: {path}: has several hard links, which a rewrite would "
                              "split; print it with `surg fmt` instead (-w rewrites regular "
                              "files only)\n")
        with open(path) as f:
            self.assertEqual(f.read(), UNFORMATTED)

    def test_syntax_error_leaves_file(self):
        path = self.write("r.surg", 'renme "a" -> "b"\n')
        rc, out, err = surg("fmt", "-w", path)
        self.assertEqual(rc, 1)
        self.assertIn("unknown statement 'renme'", err)
        with open(path) as f:
            self.assertEqual(f.read(), 'renme "a" -> "b"\n')
        self.assertEqual(os.listdir(self.tmp), ["r.surg"])

    def test_usage(self):
        path = self.write("r.surg", UNFORMATTED)
        self.assertEqual(surg("fmt", "-w", "-", stdin=FORMATTED.encode()),
                         (2, "", "surg fmt: -w rewrites files, and '-' is standard input\n"
                                 "(see `surg fmt --help`)\n"))
        self.assertEqual(surg("fmt", "-w", "--check", path),
                         (2, "", "surg fmt: -w rewrites recipes; it goes with neither --check "
                                 "nor --tree\n(see `surg fmt --help`)\n"))
        with open(path) as f:
            self.assertEqual(f.read(), UNFORMATTED)


class CheckStdin(Case):
    def test_check_reads_stdin(self):
        schema = self.write("s.json", json.dumps(
            {"params/a": {"dtype": "F32", "shape": [2]}}))
        rc, out, err = surg("check", "-", "--from", schema, stdin=FORMATTED.encode())
        self.assertEqual((rc, out, err), (0, "<stdin>: ok: 1 tensor in, 1 out\n", ""))
        self.assertEqual(surg("check", "-", "--from", schema,
                              stdin=b'rename "params/zz" -> "params/b"\n'),
                         (1, "", '<stdin>:1:8: error: pattern "params/zz" matches no tensor\n'
                                 '    1 | rename "params/zz" -> "params/b"\n'
                                 '      |        ^~~~~~~~~~~\n'
                                 'note: did you mean "params/a"?\n'))


class RunSummary(Case):
    def npz(self):
        path = self.path("in.npz")
        np.savez(path, x=np.ones((4, 3), np.float32), y=np.ones(2, np.float16))
        return path

    def test_summary(self):
        recipe = self.write("r.surg", 'rename "x" -> "w"\n')
        out = self.path("out.safetensors")
        rc, stdout, err = surg("run", recipe, self.npz(), out)
        self.assertEqual((rc, stdout), (0, ""))
        # 12 f32 and 2 f16: 52 bytes.
        self.assertRegex(err, r"\Asurg run: wrote 2 tensors \(52 B\) to %s in \d+\.\d s\n\Z"
                         % re.escape(out))

    def test_summary_split(self):
        recipe = self.write("r.surg", 'rename "y" -> "w"\n')
        p = self.path("p.npz")
        np.savez(p, k=np.ones(3, np.float32))
        s = self.path("s.npz")
        np.savez(s, mu=np.ones(3, np.float32))
        op, os_ = self.path("op.safetensors"), self.path("os.safetensors")
        rc, _, err = surg("run", recipe, "--params", p, "--state", s, op, os_)
        self.assertEqual(rc, 1, err)  # "y" is nowhere: an error, and no summary
        self.assertNotIn("surg run: wrote", err)
        recipe = self.write("r2.surg", 'rename "params/k" -> "params/w"\n')
        rc, _, err = surg("run", recipe, "--params", p, "--state", s, op, os_)
        self.assertEqual(rc, 0, err)
        self.assertRegex(err, r"\Asurg run: wrote 2 tensors \(24 B\) to %s and %s in "
                         r"\d+\.\d s\n\Z" % (re.escape(op), re.escape(os_)))

    def test_quiet(self):
        recipe = self.write("r.surg", 'rename "x" -> "w"\n')
        for flag in ("-q", "--quiet"):
            self.assertEqual(surg("run", flag, recipe, self.npz(), self.path("o.safetensors")),
                             (0, "", ""))

    def test_quiet_is_for_run(self):
        recipe = self.write("r.surg", 'rename "x" -> "w"\n')
        rc, _, err = surg("check", recipe, "--from", self.npz(), "-q")
        self.assertEqual(rc, 2)
        self.assertIn("unknown option '-q'", err)


class SchemaMetadata(Case):
    def test_tree_shows_metadata(self):
        path = self.write("m.json", json.dumps(
            {"__metadata__": {"format": "pt", "note": "\u00e9" * 50, "ctl": "a\nb"},
             "w": {"dtype": "float32", "shape": [2]}}))
        rc, out, err = surg("schema", path)
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out, "w  f32[2]\n"
                              "__metadata__\n"
                              "  ctl: a\\x0ab\n"
                              "  format: pt\n"
                              "  note: " + "\u00e9" * 36 + " ... (100 bytes)\n"
                              "1 tensor, 2 parameters, 8 B\n")

    def test_safetensors_metadata(self):
        """A file safetensors' own writer would make: header built by hand."""
        header = json.dumps({"__metadata__": {"format": "np"},
                             "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}})
        header += " " * (-len(header) % 8)
        path = self.path("m.safetensors")
        with open(path, "wb") as f:
            f.write(len(header).to_bytes(8, "little") + header.encode() + b"\0" * 4)
        rc, out, err = surg("schema", path)
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("__metadata__\n  format: np\n", out)


# A pointer as git-lfs writes it (its spec, docs/spec.md).
LFS = ("version https://git-lfs.github.com/spec/v1\n"
       "oid sha256:4d7a214614ab2935c943f9e0ff69d22eadbb8f32b1258daaa5e2ca24d17e2393\n"
       "size 2336927755\n")


class LfsPointer(Case):
    def want(self, path):
        return (f"{path}: error: a git-lfs pointer, not the file itself (which has 2336927755 "
                "bytes): run `git lfs pull` in its repository\n")

    def test_every_file_format(self):
        for name in ("model.safetensors", "w.npz", "w.npy", "pytorch_model.bin", "w.pt",
                     "flax_model.msgpack", "s.json", "model.safetensors.index.json",
                     "no-extension"):
            with self.subTest(name):
                path = self.write(name, LFS)
                rc, out, err = surg("schema", path)
                self.assertEqual((rc, out, err), (1, "", self.want(path)))

    def test_format_given(self):
        path = self.write("weights", LFS)
        rc, _, err = surg("schema", "--format", "safetensors", path)
        self.assertEqual((rc, err), (1, self.want(path)))

    def test_a_shard_and_a_directory(self):
        d = self.path("repo")
        os.mkdir(d)
        index = {"metadata": {}, "weight_map": {"a": "model-00001-of-00001.safetensors"}}
        with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
            json.dump(index, f)
        shard = os.path.join(d, "model-00001-of-00001.safetensors")
        with open(shard, "w") as f:
            f.write(LFS)
        rc, _, err = surg("schema", d)
        self.assertEqual(rc, 1)
        self.assertIn(self.want(shard), err)
        recipe = self.write("r.surg", 'rename "a" -> "b"\n')
        rc, _, err = surg("run", recipe, d, self.path("out.safetensors"))
        self.assertEqual(rc, 1)
        self.assertIn(self.want(shard), err)
        self.assertFalse(os.path.exists(self.path("out.safetensors")))

    def test_without_size_and_not_a_pointer(self):
        path = self.write("model.safetensors", "version https://git-lfs.github.com/spec/v1\n")
        rc, _, err = surg("schema", path)
        self.assertEqual((rc, err), (1, f"{path}: error: a git-lfs pointer, not the file itself: "
                                        "run `git lfs pull` in its repository\n"))
        # Text that only looks like one further in is the reader's business.
        path = self.write("x.safetensors", "x" + LFS)
        rc, _, err = surg("schema", path)
        self.assertEqual(rc, 1)
        self.assertNotIn("git-lfs", err)


class JaxInitializers(Case):
    def test_aliases_are_the_same_initializers(self):
        """glorot_uniform is xavier_uniform, and variance_scaling(s, mode,
        distribution) the initializer it names, as jax.nn.initializers
        defines them: the same values, within the bound JAX's glorot_uniform
        has (sqrt(6 / (fan_in + fan_out)) for a [64, 32] kernel)."""
        src = self.path("in.npz")
        np.savez(src, **{"dense/kernel": np.zeros((64, 32), np.float32),
                         "conv/kernel": np.zeros((3, 3, 8, 16), np.float32)})
        outs = {}
        for name, init in (("xavier", "xavier_uniform"), ("glorot", "glorot_uniform"),
                           ("vs", 'variance_scaling(1.0, "fan_avg", "uniform")'),
                           ("he", "he_normal"),
                           ("vs_he", "variance_scaling(2, fan_in, truncated_normal)")):
            recipe = self.write(name + ".surg", "seed 1\nfill \"**/kernel\" = %s\n" % init)
            out = self.path(name + ".npz")
            rc, _, err = surg("run", "-q", recipe, src, out)
            self.assertEqual((rc, err), (0, ""), name)
            with np.load(out) as z:
                outs[name] = {k: z[k] for k in z.files}
        for a, b in (("xavier", "glorot"), ("xavier", "vs"), ("he", "vs_he")):
            for k in outs[a]:
                np.testing.assert_array_equal(outs[a][k], outs[b][k], err_msg=f"{a} {b} {k}")
        k = outs["glorot"]["dense/kernel"]
        bound = np.sqrt(6 / (64 + 32))
        self.assertLessEqual(np.abs(k).max(), bound)
        self.assertAlmostEqual(float(k.std()), bound / np.sqrt(3), delta=0.05 * bound)

    def test_whole_name_with_dots(self):
        schema = self.write("s.json", json.dumps(
            {"model.fc.weight": {"dtype": "float32", "shape": [2, 2]}}))
        recipe = self.write("r.surg", 'drop "weight"\n')
        self.assertEqual(surg("check", recipe, "--from", schema),
                         (1, "", recipe + ':1:6: error: pattern "weight" matches no tensor\n'
                                 '    1 | drop "weight"\n'
                                 '      |      ^~~~~~~~\n'
                                 'note: did you mean "**.weight"? a pattern matches whole '
                                 'names\n'))


class HelpExample(Case):
    def test_example_runs(self):
        """The example `surg --help` and `surg run --help` give ports a
        PyTorch Linear saved by torch to a Flax Dense: checked against the
        Dense's schema, and run, its kernel is the weight transposed."""
        import torch
        rc, text, err = surg("help", "example")
        self.assertEqual((rc, err), (0, ""))
        lines = [l.strip() for l in text.splitlines()
                 if l.startswith("  rename") or l.startswith("  map")]
        self.assertEqual(len(lines), 3, text)
        recipe = self.write("port.surg", "\n".join(lines) + "\n")
        torch.manual_seed(0)
        model = torch.nn.Module()
        model.dense = torch.nn.Linear(4, 10)
        pt = self.path("model.pt")
        torch.save(model.state_dict(), pt)
        target = self.write("flax_model.json", json.dumps(
            {"dense": {"kernel": {"dtype": "float32", "shape": [4, 10]},
                       "bias": {"dtype": "float32", "shape": [10]}}}))
        rc, out, err = surg("check", recipe, "--from", pt, "--to", target)
        self.assertEqual((rc, err), (0, ""))
        self.assertIn("matching the target", out)
        out_path = self.path("out.npz")
        rc, _, err = surg("run", "-q", recipe, pt, out_path)
        self.assertEqual((rc, err), (0, ""))
        with np.load(out_path) as z:
            np.testing.assert_array_equal(z["dense/kernel"],
                                          model.dense.weight.detach().numpy().T)
            np.testing.assert_array_equal(z["dense/bias"], model.dense.bias.detach().numpy())


def write_st(path, tensors):
    """A safetensors file from its documentation: {name: (dtype, uint array)}."""
    hdr, data, off = {}, b"", 0
    for k, (dt, arr) in tensors.items():
        b = arr.tobytes()
        hdr[k] = {"dtype": dt, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        data += b
    h = json.dumps(hdr).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + data)


class FoldedDtypeErrors(Case):
    def bf16(self, n):
        return {"layers.%d.w" % i: ("BF16", np.zeros(2, np.uint16)) for i in range(n)}

    def run_npz(self, tensors, recipe='keep "**"\n'):
        src = self.path("in.safetensors")
        write_st(src, tensors)
        out = self.path("o.npz")
        rc, stdout, err = surg("run", self.write("r.surg", recipe), src, out)
        self.assertEqual((rc, stdout), (1, ""))
        self.assertFalse(os.path.exists(out))
        return out, err

    def test_one(self):
        out, err = self.run_npz(self.bf16(1))
        self.assertEqual(err, f'{out}: error: tensor "layers.0.w" is bf16, which .npy cannot '
                              'hold: cast it (map "layers.0.w" = cast(x, f32)) or write '
                              '.safetensors\n')

    def test_many_fold_into_one(self):
        out, err = self.run_npz(self.bf16(21))
        self.assertEqual(err, f'{out}: error: 21 tensors are bf16, which .npy cannot hold '
                              '("layers.0.w", "layers.1.w", "layers.10.w" and 18 more): cast '
                              'them (map "**" = cast(x, f32)) or write .safetensors\n')
        # The fix it gives works.
        src = self.path("in.safetensors")
        rc, _, err = surg("run", "-q", self.write("f.surg", 'map "**" = cast(x, f32)\n'), src,
                          out)
        self.assertEqual((rc, err), (0, ""))
        with np.load(out) as z:
            self.assertEqual(len(z.files), 21)
            self.assertEqual(z["layers.3.w"].dtype, np.float32)

    def test_mixed_dtypes(self):
        t = self.bf16(3)
        t["e"] = ("F8_E4M3", np.zeros(2, np.uint8))
        t["n"] = ("F32", np.zeros(2, np.float32))
        out, err = self.run_npz(t)
        self.assertEqual(err, f'{out}: error: 4 tensors are f8e4m3 (1) or bf16 (3), which .npy '
                              'cannot hold ("e", "layers.0.w", "layers.1.w" and 1 more): cast '
                              'them (map "**" = cast(x, f32)) or write .safetensors\n')
        # An i32 beside them: "**" would change it too, so each is to be cast.
        out, err = self.run_npz(t, 'map "n" = cast(x, i32)\n')
        self.assertEqual(err, f'{out}: error: 4 tensors are f8e4m3 (1) or bf16 (3), which .npy '
                              'cannot hold ("e", "layers.0.w", "layers.1.w" and 1 more): cast '
                              'each (map "e" = cast(x, f32), and so on) or write .safetensors\n')


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ap.add_argument("--fixtures", required=True)
    ARGS, rest = ap.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=1)


if __name__ == "__main__":
    main()
