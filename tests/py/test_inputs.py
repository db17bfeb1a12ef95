"""test_inputs.py: several inputs in one run (`--in NAME=PATH`), each mounted
under NAME/: model merges written as recipes over two and three inputs of
different formats (safetensors written by stnp, .npz by NumPy, Flax msgpack
by python3-msgpack), every value checked against NumPy; `check` and `plan`
over schema files; the output's metadata; every usage error with its exact
message and exit status; an output never replacing any input; and
--params/--state as the inputs "params" and "opt_state".

usage: test_inputs.py --surg SURG [unittest args]
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

import msgpack
import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import stnp  # noqa: E402
from runutil import run_surg, sha256, temporaries  # noqa: E402

ARGS = None  # filled in by main()
F = np.float32

NOTE_STEP = (': note: 1 value is not an array (numbers, strings, None, empty maps, ...), so '
             'not a tensor: "step"; kept in the metadata "msgpack.tree" for a .msgpack output\n')

NAME_RULE = ("cannot name an input: a name is one segment of at most 64 letters, "
             "digits, '_' and '-', not starting with '-'")


def sanitized():
    """Whether surg is built with AddressSanitizer (larger)."""
    with open(ARGS.surg, "rb") as f:
        return b"__asan_init" in f.read()


# Runs a command and prints its exit status and peak RSS (KiB). A child's
# peak RSS counts what it shared with its parent before exec, so the
# command is started from this small fresh process, not from the test's.
PEAK_RSS = """
import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.PIPE)
err = p.stderr.read()
_, status, usage = os.wait4(p.pid, 0)
sys.stderr.buffer.write(err)
print(os.waitstatus_to_exitcode(status), usage.ru_maxrss)
"""


def peak_rss(cmd, timeout=120):
    """(exit status, stderr, peak RSS in MiB) of cmd."""
    r = subprocess.run([sys.executable, "-c", PEAK_RSS] + cmd, capture_output=True,
                       timeout=timeout, env=dict(os.environ, CI="1"))
    rc, kib = r.stdout.split()
    return int(rc), r.stderr.decode("utf-8", "replace"), int(kib) / 1024


def flax_bytes(tree):
    """flax.serialization.to_bytes of a tree of dicts, arrays and numbers:
    arrays as ext 1 of [shape, dtype name, C-order bytes]."""
    def state(x):
        if isinstance(x, dict):
            return {k: state(v) for k, v in x.items()}
        if isinstance(x, np.ndarray):
            return msgpack.ExtType(1, msgpack.packb((list(x.shape), x.dtype.name,
                                                     x.tobytes("C")), use_bin_type=True))
        return x
    return msgpack.packb(state(tree), use_bin_type=True)


def flax_restore(data):
    def hook(code, payload):
        shape, name, buf = msgpack.unpackb(payload, raw=False)
        return np.frombuffer(buf, dtype=np.dtype(name)).reshape(shape)
    return msgpack.unpackb(data, ext_hook=hook, raw=False)


def model(seed, shapes):
    rng = np.random.default_rng(seed)
    return {n: rng.standard_normal(s).astype(F) for n, s in shapes.items()}


SHAPES = {"params/Dense_0/kernel": (6, 5), "params/Dense_0/bias": (5,),
          "params/Dense_1/kernel": (5, 3), "params/Dense_1/bias": (3,)}


class InputsCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-inputs-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def surg(self, *args):
        return run_surg(ARGS.surg, *args)

    def recipe(self, text, name="r.surg"):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    # Three checkpoints of one architecture, in three formats.
    def st(self, arrays, name="a.safetensors", metadata=None):
        p = self.path(name)
        stnp.save(p, {n: ("F32", a) for n, a in arrays.items()}, metadata)
        return p

    def npz(self, arrays, name="b.npz", compressed=True):
        p = self.path(name)
        (np.savez_compressed if compressed else np.savez)(p, **arrays)
        return p

    def mp(self, arrays, name="c.msgpack", step=7):
        tree = {"params": {}, "step": step}
        for n, a in arrays.items():
            _, layer, leaf = n.split("/")
            tree["params"].setdefault(layer, {})[leaf] = a
        p = self.path(name)
        with open(p, "wb") as f:
            f.write(flax_bytes(tree))
        return p

    def schema(self, arrays, name):
        p = self.path(name)
        with open(p, "w") as f:
            json.dump({n: {"dtype": "F32", "shape": list(a.shape)} for n, a in arrays.items()}, f)
        return p

    def load(self, path):
        t, meta, _ = stnp.load(path)
        return {n: a for n, (dt, a) in t.items()}, meta

    def assertBits(self, got, want, what):
        self.assertEqual(got.shape, want.shape, what)
        self.assertEqual(got.dtype, want.dtype, what)
        self.assertTrue(np.array_equal(got.view(np.uint32), want.view(np.uint32)),
                        "%s: %s != %s" % (what, got, want))

    def assertRefused(self, args, code, err):
        out = self.path("out.safetensors")
        rc, o, e = self.surg(*args)
        self.assertEqual((rc, e), (code, err), args)
        self.assertEqual(o, "")
        self.assertFalse(os.path.exists(out))
        self.assertEqual(temporaries(self.tmp), [])


AVERAGE2 = ('map "a/**" = (x + tensor("b/$1")) / 2\n'
            'rename "a/**" -> "$1"\n'
            'drop "b/**"\n')

AVERAGE3 = ('map "a/**" = (x + tensor("b/$1") + tensor("c/$1")) / 3\n'
            'keep "a/**"\n'
            'rename "a/**" -> "$1"\n')


class TestMerges(InputsCase):
    def test_average_of_two_formats(self):
        """A linear merge of a safetensors and a deflated .npz checkpoint."""
        a, b = model(1, SHAPES), model(2, SHAPES)
        pa, pb = self.st(a, metadata={"format": "flax", "from": "a"}), self.npz(b)
        before = (sha256(pa), sha256(pb))
        r = self.recipe(AVERAGE2)
        outs = []
        for threads in ("1", "3"):
            out = self.path("avg%s.safetensors" % threads)
            rc, o, e = self.surg("run", r, "--in", "a=" + pa, "--in", "b=" + pb, out,
                                 "--threads", threads)
            self.assertEqual((rc, e), (0, ""))
            outs.append(out)
        self.assertEqual((sha256(pa), sha256(pb)), before, "an input changed")
        self.assertEqual(sha256(outs[0]), sha256(outs[1]), "threads changed the output")
        got, meta = self.load(outs[0])
        self.assertEqual(sorted(got), sorted(SHAPES))
        for n in SHAPES:
            self.assertBits(got[n], (a[n] + b[n]) / F(2), n)
        # The first input's metadata, and only its.
        self.assertEqual(meta, {"format": "flax", "from": "a"})

    def test_average_of_three_formats(self):
        """safetensors + npz + msgpack: the mean of three, `keep` dropping
        the other inputs' tensors and the msgpack's step with them."""
        a, b, c = model(3, SHAPES), model(4, SHAPES), model(5, SHAPES)
        pa, pb, pc = self.st(a), self.npz(b, compressed=False), self.mp(c)
        out = self.path("avg.safetensors")
        rc, o, e = self.surg("run", self.recipe(AVERAGE3), "--in", "a=" + pa, "--in",
                             "b=" + pb, "--in", "c=" + pc, out)
        self.assertEqual((rc, e), (0, pc + NOTE_STEP))
        got, _ = self.load(out)
        self.assertEqual(sorted(got), sorted(SHAPES))
        for n in SHAPES:
            self.assertBits(got[n], (a[n] + b[n] + c[n]) / F(3), n)

    def test_msgpack_first_keeps_its_values(self):
        """A Flax output from a Flax first input: its step travels with the
        rename, the other inputs' go with their drop."""
        a, b, c = model(6, SHAPES), model(7, SHAPES), model(8, SHAPES)
        pa, pb, pc = self.mp(a, "a.msgpack", step=11), self.st(b, "b.safetensors"), \
            self.mp(c, "c.msgpack", step=99)
        r = self.recipe('map "a/params/**" = x + 0.5 * (tensor("b/params/$1") - '
                        'tensor("c/params/$1"))\n'
                        'drop "b/**"\ndrop "c/**"\nrename "a/**" -> "$1"\n')
        out = self.path("out.msgpack")
        rc, o, e = self.surg("run", r, "--in", "a=" + pa, "--in", "b=" + pb, "--in",
                             "c=" + pc, out)
        self.assertEqual((rc, e), (0, pa + NOTE_STEP + pc + NOTE_STEP))
        with open(out, "rb") as f:
            tree = flax_restore(f.read())
        self.assertEqual(sorted(tree), ["params", "step"])
        self.assertEqual(tree["step"], 11)
        for n in SHAPES:
            _, layer, leaf = n.split("/")
            want = a[n] + F(0.5) * (b[n] - c[n])
            self.assertBits(np.array(tree["params"][layer][leaf]), want, n)

    def test_task_arithmetic_order_of_inputs(self):
        """The first --in gives the metadata, whichever name it has."""
        base, ft = model(9, SHAPES), model(10, SHAPES)
        pb = self.st(base, "base.safetensors", {"format": "pt", "base": "1"})
        pf = self.st(ft, "ft.safetensors", {"format": "pt", "ft": "1"})
        r = self.recipe('map "base/**" = x + 0.25 * (tensor("ft/$1") - x)\n'
                        'keep "base/**"\nrename "base/**" -> "$1"\n')
        out = self.path("out.safetensors")
        rc, o, e = self.surg("run", r, "--in", "ft=" + pf, "--in", "base=" + pb, out)
        self.assertEqual((rc, e), (0, ""))
        got, meta = self.load(out)
        self.assertEqual(meta, {"format": "pt", "ft": "1"})
        for n in SHAPES:
            self.assertBits(got[n], base[n] + F(0.25) * (ft[n] - base[n]), n)

    def test_metadata_of_another_input(self):
        """The first input's metadata, with a key taken from another by a
        meta statement."""
        a, b = model(19, SHAPES), model(20, SHAPES)
        pa = self.st(a, "a.safetensors", {"format": "pt", "base": "yes"})
        pb = self.st(b, "b.safetensors", {"format": "pt", "task": "math"})
        r = self.recipe(AVERAGE2 + 'meta "task" = input("b", "task")\n')
        out = self.path("out.safetensors")
        rc, o, e = self.surg("run", r, "--in", "a=" + pa, "--in", "b=" + pb, out)
        self.assertEqual((rc, e), (0, ""))
        _, meta = self.load(out)
        self.assertEqual(meta, {"format": "pt", "base": "yes", "task": "math"})

    def test_everything_kept_under_the_names(self):
        """No statement: the output is the state, every input under its name."""
        a, b = model(11, SHAPES), model(12, SHAPES)
        pa, pb = self.st(a), self.npz(b)
        out = self.path("both.safetensors")
        rc, o, e = self.surg("run", self.recipe(""), "--in", "x=" + pa, "--in", "y_2=" + pb, out)
        self.assertEqual((rc, e), (0, ""))
        got, _ = self.load(out)
        want = {"x/" + n: v for n, v in a.items()}
        want.update({"y_2/" + n: v for n, v in b.items()})
        self.assertEqual(sorted(got), sorted(want))
        for n, v in want.items():
            self.assertBits(got[n], v, n)

    def test_one_named_input(self):
        a = model(13, SHAPES)
        out = self.path("out.safetensors")
        rc, o, e = self.surg("run", self.recipe('rename "m/**" -> "$1"\n'), "--in",
                             "m=" + self.st(a), out)
        self.assertEqual((rc, e), (0, ""))
        got, _ = self.load(out)
        for n in SHAPES:
            self.assertBits(got[n], a[n], n)

    def test_mirror_across_inputs(self):
        """Parameters from one input, Adam's moments from another: a mirror
        over the mounted names moves the moments with the parameters."""
        a = model(14, SHAPES)
        mu = model(15, SHAPES)
        pa = self.st(a)
        ps = self.st({"0/mu/" + n[len("params/"):]: v for n, v in mu.items()}, "s.safetensors")
        r = self.recipe('mirror "m/params/" -> "opt/0/mu/"\n'
                        'rename "m/params/Dense_0/**" -> "m/params/hidden/$1"\n'
                        'map "m/params/hidden/kernel" = transpose(x)\n')
        out = self.path("out.safetensors")
        rc, o, e = self.surg("run", r, "--in", "m=" + pa, "--in", "opt=" + ps, out)
        self.assertEqual((rc, e), (0, ""))
        got, _ = self.load(out)
        self.assertBits(got["m/params/hidden/kernel"], a["params/Dense_0/kernel"].T.copy(), "k")
        self.assertBits(got["opt/0/mu/hidden/kernel"], mu["params/Dense_0/kernel"].T.copy(),
                        "mu")
        self.assertBits(got["opt/0/mu/hidden/bias"], mu["params/Dense_0/bias"], "mu bias")

    def test_to_target(self):
        a, b = model(16, SHAPES), model(17, SHAPES)
        pa, pb = self.st(a), self.npz(b)
        target = self.schema(a, "target.json")
        rc, o, e = self.surg("check", self.recipe(AVERAGE2), "--in", "a=" + pa, "--in",
                             "b=" + pb, "--to", target)
        self.assertEqual((rc, e), (0, ""))
        self.assertEqual(o, self.path("r.surg") + ": ok: 8 tensors in, 4 out, matching the "
                         "target\n")
        # Without the rename the result does not match, tensor by tensor.
        rc, o, e = self.surg("check", self.recipe('drop "b/**"\n'), "--in", "a=" + pa, "--in",
                             "b=" + pb, "--to", target)
        self.assertEqual(rc, 1)
        self.assertIn('target.json: error: the result has "a/params/Dense_0/bias" where the '
                      'target has "params/Dense_0/bias" (f32[5]): renamed?\nnote: to match the '
                      'target: rename "a/params/Dense_0/bias" -> "params/Dense_0/bias"\n', e)

    def test_memory_bounded(self):
        """Two 64 MiB inputs averaged: the run holds chunks, not inputs. (The
        arrays are gone from this process before surg is started: a child's
        peak RSS counts what it shared with its parent before exec.)"""
        n = 16 << 20
        rng = np.random.default_rng(18)
        pa = self.st({"w": rng.standard_normal(n).astype(F)})
        pb = self.st({"w": rng.standard_normal(n).astype(F)}, "b.safetensors")
        out = self.path("out.safetensors")
        r = self.recipe('map "a/w" = (x + tensor("b/w")) / 2\nkeep "a/**"\n'
                        'rename "a/**" -> "$1"\n')
        rc, e, rss = peak_rss([ARGS.surg, "run", r, "--in", "a=" + pa, "--in", "b=" + pb, out,
                               "--threads", "2", "-q"])
        self.assertEqual((rc, e), (0, ""))
        # The inputs are 128 MiB, the output 64 MiB: the run stays far below.
        self.assertLess(rss, 160 if sanitized() else 64, "peak RSS in MiB")
        got, _ = self.load(out)
        a, _ = self.load(pa)
        b, _ = self.load(pb)
        self.assertBits(got["w"], (a["w"] + b["w"]) / F(2), "w")


class TestCheckAndPlan(InputsCase):
    def test_check_with_schemas(self):
        a, b = model(20, SHAPES), model(21, SHAPES)
        sa, sb = self.schema(a, "a.json"), self.schema(b, "b.json")
        r = self.recipe(AVERAGE2)
        rc, o, e = self.surg("check", r, "--in", "a=" + sa, "--in", "b=" + sb)
        self.assertEqual((rc, o, e), (0, r + ": ok: 8 tensors in, 4 out\n", ""))
        # A schema mixes with a checkpoint, and --format names an input's.
        bare = self.path("b_ckpt")
        with open(bare, "wb") as f:
            with open(self.mp(b), "rb") as g:
                f.write(g.read())
        rc, o, e = self.surg("check", self.recipe(AVERAGE3), "--in", "a=" + sa, "--in",
                             "b=" + self.npz(b), "--in", "c=" + bare, "--format", "msgpack")
        self.assertEqual(rc, 0, e)
        self.assertEqual(o, r + ": ok: 12 tensors in, 4 out\n")
        self.assertEqual(e, bare + ': note: 1 value is not an array (numbers, strings, None, '
                         'empty maps, ...), so not a tensor: "step"; kept in the metadata '
                         '"msgpack.tree" for a .msgpack output\n')

    def test_plan_names_each_input(self):
        a, b = model(22, SHAPES), model(23, SHAPES)
        pa, pb = self.st(a), self.schema(b, "b.json")
        c = self.schema({"x": np.zeros(3, F)}, "unused.json")
        r = self.recipe(AVERAGE2 + 'drop "long_name/**"\n')
        rc, o, e = self.surg("plan", r, "--in", "a=" + pa, "--in", "b=" + pb, "--in",
                             "long_name=" + c)
        self.assertEqual((rc, e), (0, ""))
        lines = o.splitlines()
        self.assertEqual(lines[:4], [
            "  input a          %s (safetensors): 4 tensors, 212 B; 4 used" % pa,
            "  input b          %s (schema): 4 tensors, 212 B; 4 used" % pb,
            "  input long_name  %s (schema): 1 tensor, 12 B; 0 used" % c,
            ""])
        self.assertTrue(lines[4].startswith("  params/Dense_0/bias "), lines[4])
        rc, o, e = self.surg("plan", r, "--in", "a=" + pa, "--in", "b=" + pb, "--in",
                             "long_name=" + c, "--json")
        self.assertEqual((rc, e), (0, ""))
        plan = json.loads(o)
        self.assertEqual(plan["inputs"], [
            {"name": "a", "prefix": "a/", "path": pa, "format": "safetensors", "tensors": 4,
             "bytes": 212, "used": 4, "used_bytes": 212},
            {"name": "b", "prefix": "b/", "path": pb, "format": "schema", "tensors": 4,
             "bytes": 212, "used": 4, "used_bytes": 212},
            {"name": "long_name", "prefix": "long_name/", "path": c, "format": "schema",
             "tensors": 1, "bytes": 12, "used": 0, "used_bytes": 0}])

    def test_each_input_byte_read_once(self):
        """The plan reads each input byte once per pass: a mean of two reads
        both inputs once; a tensor made from both with a reduction reads
        them twice (the reduction's pass, then the values')."""
        a, b = model(24, SHAPES), model(25, SHAPES)
        pa, pb = self.st(a), self.st(b, "b.safetensors")
        total = sum(v.nbytes for v in a.values()) * 2
        rc, o, e = self.surg("plan", self.recipe(AVERAGE2), "--in", "a=" + pa, "--in",
                             "b=" + pb, "--json")
        self.assertEqual((rc, e), (0, ""))
        self.assertEqual(json.loads(o)["totals"]["plan"]["read"], total)
        rc, o, e = self.surg("plan", self.recipe(
            'map "a/params/Dense_0/kernel" = x / norm(tensor("b/params/Dense_0/kernel"))\n'
            'keep "a/**"\n'), "--in", "a=" + pa, "--in", "b=" + pb, "--json")
        self.assertEqual((rc, e), (0, ""))
        t = {x["name"]: x for x in json.loads(o)["tensors"]}["a/params/Dense_0/kernel"]
        self.assertEqual((t["passes"], t["read"]), (2, 6 * 5 * 4 + 6 * 5 * 4))

    def test_warning_for_names_left_under_an_input(self):
        a, b = model(26, SHAPES), model(27, SHAPES)
        pa, pb = self.st(a), self.npz(b)
        r = self.recipe('map "a/**" = (x + tensor("b/$1")) / 2\nrename "a/**" -> "$1"\n')
        rc, o, e = self.surg("check", r, "--in", "a=" + pa, "--in", "b=" + pb)
        self.assertEqual(rc, 0)
        self.assertEqual(e, r + ': warning: the output keeps 4 names under "b/", the input "b" '
                         '("b/params/Dense_0/bias", "b/params/Dense_0/kernel", '
                         '"b/params/Dense_1/bias" and 1 more), beside names out of every '
                         'input\'s prefix; drop "b/**" unless they belong in it\n')
        # Every name still under its input, or none: no warning.
        for text in ('map "a/**" = x * 2\n', AVERAGE2):
            rc, o, e = self.surg("check", self.recipe(text), "--in", "a=" + pa, "--in", "b=" + pb)
            self.assertEqual((rc, e), (0, ""))

    def test_a_pattern_lacking_the_prefix(self):
        a = model(28, SHAPES)
        pa, pb = self.st(a), self.schema(a, "b.json")
        r = self.recipe('map "params/**/kernel" = x * 2\n')
        rc, o, e = self.surg("check", r, "--in", "a=" + pa, "--in", "b=" + pb)
        self.assertEqual((rc, o), (1, ""))
        self.assertEqual(e, r + ':1:5: error: pattern "params/**/kernel" matches no tensor\n'
                         '    1 | map "params/**/kernel" = x * 2\n'
                         '      |     ^~~~~~~~~~~~~~~~~~\n'
                         'note: did you mean "a/params/**/kernel"? the input "a" is mounted '
                         'under "a/"\n'
                         'note: did you mean "b/params/**/kernel"? the input "b" is mounted '
                         'under "b/"\n')


class TestErrors(InputsCase):
    def files(self):
        a = model(30, SHAPES)
        return self.st(a), self.npz(a), self.recipe(AVERAGE2)

    def test_duplicate_name(self):
        pa, pb, r = self.files()
        for cmd in ("run", "check", "plan"):
            args = [cmd, r, "--in", "a=" + pa, "--in", "b=" + pb, "--in", "a=" + pb]
            if cmd == "run":
                args.append(self.path("out.safetensors"))
            self.assertRefused(args, 2, 'surg %s: the input name "a" is given twice\n'
                               '(see `surg %s --help`)\n' % (cmd, cmd))

    def test_bad_names(self):
        pa, pb, r = self.files()
        out = self.path("out.safetensors")
        for name in ("a/b", "a.b", "", "-a", "a*", "ü", "x" * 65, "a b"):
            self.assertRefused(
                ["run", r, "--in", "%s=%s" % (name, pa), out], 2,
                'surg run: --in %s=%s: "%s" %s\n(see `surg run --help`)\n'
                % (name, pa, name, NAME_RULE))
        # The longest name there may be.
        rc, o, e = self.surg("check", self.recipe(""), "--in", "x" * 64 + "=" + pa)
        self.assertEqual((rc, e), (0, ""))

    def test_malformed_in(self):
        pa, pb, r = self.files()
        out = self.path("out.safetensors")
        cases = [
            (["--in", pa, out], "--in takes NAME=PATH, not '%s'" % pa),
            (["--in", "a=", out], '--in a=: which file is the input "a"?'),
            (["--in"], "--in needs a value: NAME=PATH"),
            (["--in", "a=" + pa], "RECIPE --in NAME=PATH ... OUT: where does the result go?"),
            (["--in", "a=" + pa, pb, out],
             "--in names every input: give RECIPE --in NAME=PATH ... OUT, without a "
             "positional IN ('%s')" % pb),
            (["--in", "a=" + pa, "--params", pb, out],
             '--in and --params/--state both name the inputs: use one (--params P is the '
             'input "params" with an output of its own, OUT_P)'),
        ]
        for extra, msg in cases:
            self.assertRefused(["run", r] + extra, 2,
                               "surg run: %s\n(see `surg run --help`)\n" % msg)
        self.assertRefused(["check", r, "--in", "a=" + pa, "--from", pb], 2,
                           "surg check: --in replaces --from: give one or the other\n"
                           "(see `surg check --help`)\n")
        self.assertRefused(["plan", r, "--in", "a=" + pa, pb], 2,
                           "surg plan: one recipe at a time\n(see `surg plan --help`)\n")

    def test_missing_file(self):
        pa, pb, r = self.files()
        missing = self.path("nowhere", "b.safetensors")
        for cmd in ("run", "check"):
            args = [cmd, r, "--in", "a=" + pa, "--in", "b=" + missing]
            if cmd == "run":
                args.append(self.path("out.safetensors"))
            self.assertRefused(args, 2, "%s: error: cannot open: No such file or directory\n"
                               % missing)

    def test_unknown_format(self):
        pa, pb, r = self.files()
        rc, o, e = self.surg("check", r, "--in", "a=" + pa, "--in", "b=" + pb, "--format",
                             "nope")
        self.assertEqual(rc, 2)
        self.assertIn("--format nope is not a format", e)

    def test_output_never_replaces_an_input(self):
        """OUT is checked against every input's files, by device and inode:
        the first input, the third, and another spelling of the second."""
        a = model(31, SHAPES)
        pa, pb, pc = self.st(a), self.st(a, "b.safetensors"), self.st(a, "c.safetensors")
        link = self.path("link.safetensors")
        os.link(pb, link)
        sym = self.path("sym.safetensors")
        os.symlink(pc, sym)
        r = self.recipe('keep "a/**"\nrename "a/**" -> "$1"\n')
        before = [sha256(p) for p in (pa, pb, pc)]
        dot_c = os.path.join(self.tmp, ".", "c.safetensors")
        for out, named in ((pa, pa), (pc, pc), (link, pb), (dot_c, pc)):
            rc, o, e = self.surg("run", r, "--in", "a=" + pa, "--in", "b=" + pb, "--in",
                                 "c=" + pc, out)
            self.assertEqual(rc, 2, e)
            self.assertEqual(e, "%s: error: the output would replace %s, which this run reads; "
                             "write it elsewhere\n" % (out, named), out)
        # A sharded input's shards and index are files the run reads too.
        os.mkdir(self.path("sh"))
        names = sorted(SHAPES)
        weight_map = {}
        for k, part in enumerate((names[:2], names[2:])):
            shard = "model-%05d-of-00002.safetensors" % (k + 1)
            stnp.save(self.path("sh", shard), {n: ("F32", a[n]) for n in part})
            weight_map.update({n: shard for n in part})
        index = self.path("sh", "model.safetensors.index.json")
        with open(index, "w") as f:
            json.dump({"metadata": {}, "weight_map": weight_map}, f)
        shard2 = self.path("sh", "model-00002-of-00002.safetensors")
        for out in (self.path("sh", "model-00001-of-00002.safetensors"), shard2):
            rc, o, e = self.surg("run", r, "--in", "a=" + pa, "--in", "s=" + self.path("sh"),
                                 out)
            self.assertEqual((rc, e), (2, "%s: error: the output would replace %s, which this "
                                       "run reads; write it elsewhere\n" % (out, out)))
        rc, o, e = self.surg("run", r, "--in", "a=" + pa, "--in", "b=" + pb, "--in", "c=" + pc,
                             sym)
        self.assertEqual(rc, 2, e)
        self.assertIn("symbolic link", e)
        self.assertEqual([sha256(p) for p in (pa, pb, pc)], before)
        self.assertEqual(temporaries(self.tmp), [])


class TestParamsState(InputsCase):
    """--params P --state S are the inputs "params" and "opt_state", each
    with an output of its own; with --in the same two files make one."""

    def files(self):
        p = model(40, {"Dense_0/kernel": (3, 4), "Dense_0/bias": (4,)})
        s = {"0/mu/" + n: v * 0 + 1 for n, v in p.items()}
        s["0/count"] = np.array(3, np.int32)
        pp = self.st(p, "p.safetensors")
        ps = self.path("s.safetensors")
        stnp.save(ps, {n: ("I32" if v.dtype == np.int32 else "F32", v) for n, v in s.items()})
        return pp, ps, p, s

    RECIPE = ('mirror "params/" -> "opt_state/0/mu/"\n'
              'rename "params/Dense_0/**" -> "params/hidden/$1"\n')

    def test_split_and_combined(self):
        pp, ps, p, s = self.files()
        r = self.recipe(self.RECIPE)
        op, os_ = self.path("p2.safetensors"), self.path("s2.safetensors")
        rc, o, e = self.surg("run", r, "--params", pp, "--state", ps, op, os_)
        self.assertEqual((rc, e), (0, ""))
        split = {}
        for prefix, path in (("params/", op), ("opt_state/", os_)):
            t, _ = self.load(path)
            split.update({prefix + n: v for n, v in t.items()})
        both = self.path("both.safetensors")
        rc, o, e = self.surg("run", r, "--in", "params=" + pp, "--in", "opt_state=" + ps, both)
        self.assertEqual((rc, e), (0, ""))
        combined, _ = self.load(both)
        self.assertEqual(sorted(combined), sorted(split))
        for n in combined:
            self.assertEqual(combined[n].tobytes(), split[n].tobytes(), n)
        self.assertEqual(combined["params/hidden/kernel"].tobytes(),
                         p["Dense_0/kernel"].tobytes())
        self.assertEqual(combined["opt_state/0/mu/hidden/bias"].tobytes(),
                         s["0/mu/Dense_0/bias"].tobytes())

    def test_params_twice(self):
        pp, ps, _, _ = self.files()
        r = self.recipe(self.RECIPE)
        self.assertRefused(["run", r, "--params", pp, "--state", ps, "--state", ps,
                            self.path("x.safetensors"), self.path("y.safetensors")], 2,
                           "surg run: --state is given twice\n(see `surg run --help`)\n")

    def test_format_names_a_part(self):
        """--format now reaches --params/--state too."""
        pp, ps, _, _ = self.files()
        bare = self.path("params_ckpt")
        os.link(pp, bare)
        rc, o, e = self.surg("check", self.recipe(self.RECIPE), "--params", bare, "--state", ps,
                             "--format", "safetensors")
        self.assertEqual((rc, e), (0, ""))


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ARGS, rest = ap.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=1)


if __name__ == "__main__":
    main()
