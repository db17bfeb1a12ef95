"""test_names.py: every name surg accepts is one its output can hold and its
readers (surg's and NumPy's) read back, and every JSON surg prints is valid
JSON whatever bytes a name holds.

Inputs are written with stnp (the repository's independent safetensors
writer) and NumPy; outputs read back with stnp, NumPy and `surg schema`.

usage: test_names.py --surg SURG [unittest args]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stnp  # noqa: E402
from runutil import run_surg, temporaries  # noqa: E402

ARGS = None  # filled in by main()

LONG = "n" * 65532  # "LONG.npy" is 65,536 bytes: one past a zip name's limit
FITS = LONG[:-1]
NPZ_LIMIT = ("cannot be written to {out}: an .npz holds names of at most 65,531 bytes "
             "(the zip entry NAME.npy is at most 65,535)")
# Every control character a recipe can write, and DEL, plus characters that
# are not controls (so the name is more than its controls).
CONTROLS = "".join(chr(c) for c in list(range(1, 0x20)) + [0x7F])
ODD = "x" + CONTROLS + "\u00e9\u0085\u2028\U0001F600" + '"\\' + "/y"


def escaped(name):
    """A recipe string literal holding `name`."""
    out = []
    for ch in name:
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append("\\x%02x" % ord(ch))
        elif ch in '"\\':
            out.append("\\" + ch)
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def strict_json(text):
    """Python's json.loads (strict: no raw control characters in strings),
    also refusing the NaN/Infinity extensions."""
    def no_constant(c):
        raise ValueError("not JSON: " + c)
    return json.loads(text, parse_constant=no_constant)


class Names(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="surg-names-")
        self.input = self.path("in.safetensors")
        stnp.save(self.input, {"a": ("F32", np.arange(3, dtype=np.float32)),
                               "b": ("F32", np.ones(3, dtype=np.float32))})

    def tearDown(self):
        shutil.rmtree(self.dir)

    def path(self, name):
        return os.path.join(self.dir, name)

    def recipe(self, text, name="r.surg"):
        p = self.path(name)
        with open(p, "w", encoding="utf-8") as f:
            f.write(text)
        return p

    def refused(self, args, out, first_line):
        rc, stdout, err = run_surg(ARGS.surg, *args)
        self.assertEqual(rc, 1, err)
        self.assertEqual(err.splitlines()[0], first_line)
        self.assertFalse(os.path.exists(out))
        self.assertEqual(temporaries(self.dir), [])
        return err

    def test_long_name_to_npz_refused_at_compile(self):
        r = self.recipe('# a name for safetensors only\nrename "a" -> "%s"\n' % LONG)
        out = self.path("out.npz")
        shown = "n" * 64 + "\u2026"
        self.refused(["run", r, self.input, out], out,
                     '%s:2:15: error: "%s" (65532 bytes) %s'
                     % (r, shown, NPZ_LIMIT.format(out=out)))
        # One byte shorter fits, and NumPy and surg read it back.
        r = self.recipe('rename "a" -> "%s"\n' % FITS)
        rc, _, err = run_surg(ARGS.surg, "run", r, self.input, out)
        self.assertEqual((rc, err), (0, ""))
        with np.load(out) as z:
            self.assertEqual(sorted(z.files), ["b", FITS])
            np.testing.assert_array_equal(z[FITS], np.arange(3, dtype=np.float32))
        rc, text, err = run_surg(ARGS.surg, "schema", "--json", out)
        self.assertEqual((rc, err), (0, ""))
        self.assertIn(FITS, strict_json(text))

    def test_long_name_to_safetensors(self):
        r = self.recipe('rename "a" -> "%s"\n' % LONG)
        out = self.path("out.safetensors")
        rc, _, err = run_surg(ARGS.surg, "run", r, self.input, out)
        self.assertEqual((rc, err), (0, ""))
        tensors, _, _ = stnp.load(out)
        self.assertEqual(sorted(tensors), ["b", LONG])
        np.testing.assert_array_equal(tensors[LONG][1], np.arange(3, dtype=np.float32))
        rc, text, err = run_surg(ARGS.surg, "schema", "--json", out)
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(strict_json(text)[LONG], {"dtype": "F32", "shape": [3]})
        # surg check and plan know no output: the name is fine there.
        rc, _, err = run_surg(ARGS.surg, "check", r, "--from", self.input)
        self.assertEqual((rc, err), (0, ""))

    def test_input_name_too_long_for_npz(self):
        """A name the input already has: the error names the input."""
        src = self.path("long.safetensors")
        stnp.save(src, {LONG: ("F32", np.zeros(2, dtype=np.float32))})
        r = self.recipe("# nothing changes\n")
        out = self.path("out.npz")
        shown = "n" * 64 + "\u2026"
        self.refused(["run", r, src, out], out,
                     '%s: error: "%s" (65532 bytes) %s' % (src, shown, NPZ_LIMIT.format(out=out)))
        rc, _, err = run_surg(ARGS.surg, "run", r, src, self.path("ok.safetensors"))
        self.assertEqual((rc, err), (0, ""))

    def test_tied_name_too_long_for_npz(self):
        """.npz writes a tied name as an array of its own, so a tied name
        that .npz cannot hold is an error too, pointing at the statement that
        made the name (tying it does not make it writable)."""
        r = self.recipe('rename "a" -> "%s"\ntie "%s" = "b"\n' % (LONG, LONG))
        out = self.path("out.npz")
        shown = "n" * 64 + "\u2026"
        self.refused(["run", r, self.input, out], out,
                     '%s:1:15: error: the tied name "%s" (65532 bytes) %s'
                     % (r, shown, NPZ_LIMIT.format(out=out)))

    def test_split_outputs(self):
        """--params/--state: names are written without their prefix, so a
        tensor named just "params/" would have an empty name."""
        p, s = self.path("p.safetensors"), self.path("s.safetensors")
        stnp.save(p, {"w": ("F32", np.ones(2, dtype=np.float32))})
        stnp.save(s, {"mu": ("F32", np.zeros(2, dtype=np.float32))})
        r = self.recipe('rename "params/w" -> "params/"\n')
        expect = ('%s:1:22: error: "params/" goes to {out} as "" ("params/" taken off), '
                  'which cannot be written there: a name may not be empty' % r)
        for cmd in ("check", "plan"):
            rc, out, err = run_surg(ARGS.surg, cmd, r, "--params", p, "--state", s)
            self.assertEqual(rc, 1, err)
            self.assertEqual(err.splitlines()[0], expect.format(out="its own output"))
        op, os_ = self.path("op.safetensors"), self.path("os.safetensors")
        self.refused(["run", r, "--params", p, "--state", s, op, os_], op,
                     expect.format(out=op))
        self.assertFalse(os.path.exists(os_))
        # Under a prefix, the length an .npz allows counts without it.
        r = self.recipe('rename "params/w" -> "params/%s"\n' % LONG)
        op = self.path("op.npz")
        shown = ("params/" + "n" * 64)[:64] + "\u2026"
        self.refused(["run", r, "--params", p, "--state", s, op, os_], op,
                     '%s:1:22: error: "%s" (65539 bytes) goes to %s as "%s" ("params/" '
                     'taken off), which cannot be written there: an .npz holds names of at '
                     'most 65,531 bytes (the zip entry NAME.npy is at most 65,535)'
                     % (r, shown, op, "n" * 64 + "\u2026"))
        r = self.recipe('rename "params/w" -> "params/%s"\n' % FITS)
        rc, _, err = run_surg(ARGS.surg, "run", r, "--params", p, "--state", s, op, os_)
        self.assertEqual((rc, err), (0, ""))
        with np.load(op) as z:
            self.assertEqual(z.files, [FITS])

    def test_reserved_and_empty_names_every_compile(self):
        for target, why in (("", "a name may not be empty"),
                            ("__metadata__", '"__metadata__" is reserved (safetensors '
                                             'keeps its metadata under it)')):
            r = self.recipe('rename "a" -> "%s"\n' % target)
            line = ('%s:1:15: error: rename of "a" makes "%s", which cannot be a tensor '
                    'name: %s' % (r, target, why))
            for args in (["check", r, "--from", self.input], ["plan", r, "--from", self.input]):
                rc, _, err = run_surg(ARGS.surg, *args)
                self.assertEqual((rc, err.splitlines()[0]), (1, line))
            for ext in ("safetensors", "npz"):
                out = self.path("out." + ext)
                self.refused(["run", r, self.input, out], out, line)


class Json(unittest.TestCase):
    """Each JSON surg prints, parsed strictly, holds the names exactly."""

    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="surg-json-")
        self.input = os.path.join(self.dir, "in.safetensors")
        stnp.save(self.input, {"a": ("F32", np.arange(3, dtype=np.float32)),
                               "b": ("F32", np.ones(2, dtype=np.float32))})
        self.recipe = os.path.join(self.dir, "odd.surg")
        with open(self.recipe, "w", encoding="utf-8") as f:
            f.write("rename \"a\" -> %s\n" % escaped(ODD))

    def tearDown(self):
        shutil.rmtree(self.dir)

    def test_plan_json(self):
        rc, out, err = run_surg(ARGS.surg, "plan", "--json", self.recipe, "--from", self.input)
        self.assertEqual((rc, err), (0, ""))
        plan = strict_json(out)
        self.assertEqual([t["name"] for t in plan["tensors"]], ["b", ODD])
        self.assertNotIn("\x7f", out)  # escaped: no raw control byte reaches a terminal
        self.assertIn("\\u007f", out)
        self.assertIn("\\u2028", out)

    def test_schema_json_and_written_header(self):
        out = os.path.join(self.dir, "odd.safetensors")
        rc, _, err = run_surg(ARGS.surg, "run", self.recipe, self.input, out)
        self.assertEqual((rc, err), (0, ""))
        tensors, _, raw = stnp.load(out)
        self.assertEqual(sorted(tensors), sorted(["b", ODD]))
        rc, text, err = run_surg(ARGS.surg, "schema", "--json", out)
        self.assertEqual((rc, err), (0, ""))
        schema = strict_json(text)
        self.assertEqual(sorted(k for k in schema if k != "__metadata__"), sorted(["b", ODD]))

    def test_index_json(self):
        """The sharded index is byte for byte what Python's json.dumps writes."""
        out = os.path.join(self.dir, "shards")
        rc, _, err = run_surg(ARGS.surg, "run", self.recipe, self.input, out,
                              "--max-shard-size", "8")
        self.assertEqual((rc, err), (0, ""))
        with open(os.path.join(out, "model.safetensors.index.json"), "rb") as f:
            raw = f.read().decode("ascii")
        index = strict_json(raw)
        self.assertEqual(sorted(index["weight_map"]), sorted(["b", ODD]))
        self.assertEqual(raw, json.dumps(index, indent=2, sort_keys=True) + "\n")

    def test_diagnostics_json(self):
        bad = os.path.join(self.dir, "expect.surg")
        with open(bad, "w", encoding="utf-8") as f:
            # in a pattern, a backslash escapes the next character
            f.write("expect %s : f64[3]\n" % escaped(ODD.replace("\\", "\\\\")))
        src = os.path.join(self.dir, "odd.safetensors")
        rc, _, err = run_surg(ARGS.surg, "run", self.recipe, self.input, src)
        self.assertEqual((rc, err), (0, ""))
        rc, _, err = run_surg(ARGS.surg, "--diagnostics", "json", "check", bad, "--from", src)
        self.assertEqual(rc, 1)
        lines = err.splitlines()  # U+2028 in a name is escaped: one line still
        self.assertEqual(len(lines), 1, err)
        d = strict_json(lines[0])
        self.assertEqual(d["message"], '"%s" is f32[3], expected f64[3]' % ODD)
        column = len("expect %s : " % escaped(ODD.replace("\\", "\\\\"))) + 1
        self.assertEqual((d["code"], d["line"], d["column"]), ("expect", 1, column))

    def test_diagnostics_json_bytes_not_utf8(self):
        """A file name is any bytes: what is not UTF-8 shows as U+FFFD."""
        name = os.path.join(self.dir, "x").encode() + b"\xff\xfe.safetensors"
        r = subprocess.run([ARGS.surg, "--diagnostics", "json", "schema", name],
                           capture_output=True, env=dict(os.environ, CI="1"))
        self.assertEqual(r.returncode, 2)
        d = strict_json(r.stderr.decode("utf-8"))  # valid UTF-8 too
        self.assertEqual(d["file"], os.path.join(self.dir, "x") + "\ufffd\ufffd.safetensors")
        self.assertEqual(d["message"], "cannot open: No such file or directory")


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
