"""test_reads.py: inputs that once made surg block, grow without end, or
take quadratic time; each must now be refused or answered quickly, with
bounded memory and the exact message.

  * reads: a FIFO, a device or a socket named as a checkpoint, a shard (in
    an index or a directory), a schema (--from and --to) or a recipe is
    refused before anything waits on it; `surg fmt` of /dev/zero, and of a
    standard input that never ends, stops at the recipe limit;
  * time: an index naming 100k shards, a did-you-mean search over a 6 MB
    header for a 3 KB pattern, and 5k unmatched patterns on one ~50 KB line
    printed in the human format.

usage: test_reads.py --surg SURG [unittest args]
"""

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree

ARGS = None  # filled in by main()

RECIPE_MAX = 64 << 20
TOO_LONG = "<stdin>: error: more than the %d bytes allowed; stopped reading there\n" % RECIPE_MAX


def sanitized():
    """Whether surg is built with AddressSanitizer (slower, larger)."""
    with open(ARGS.surg, "rb") as f:
        return b"__asan_init" in f.read()


def seconds(n):
    """A time bound, stretched for a sanitized build."""
    return n * 4 if sanitized() else n


class Run:
    """One finished run: exit code, output, error output, peak RSS (MiB), seconds."""

    def __init__(self, rc, out, err, rss_mib, seconds):
        self.rc, self.out, self.err, self.rss_mib, self.seconds = rc, out, err, rss_mib, seconds


def run(*args, stdin=subprocess.DEVNULL, timeout=30, cwd=None):
    """Run surg with a deadline; its own peak RSS from wait4. A run that
    outlives the deadline is killed and reported as a hang."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        env = dict(os.environ, CI="1")
        start = time.monotonic()
        p = subprocess.Popen([ARGS.surg] + [str(a) for a in args], stdin=stdin, stdout=out,
                             stderr=err, cwd=cwd, env=env)
        while True:
            pid, status, usage = os.wait4(p.pid, os.WNOHANG)
            if pid:
                break
            if time.monotonic() - start > timeout:
                p.kill()
                os.wait4(p.pid, 0)
                p.returncode = -9
                raise AssertionError("surg %s did not finish within %d s" % (
                    " ".join(map(str, args)), timeout))
            time.sleep(0.01)
        p.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.monotonic() - start
        out.seek(0)
        err.seek(0)
        return Run(p.returncode, out.read().decode("utf-8", "replace"),
                   err.read().decode("utf-8", "replace"), usage.ru_maxrss / 1024, seconds)


class BoundsCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-bounds-")
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def write(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def schema(self, name, names):
        return self.write(name, json.dumps({n: {"dtype": "F32", "shape": [1]} for n in names}))

    def fifo(self, name):
        p = self.path(name)
        os.mkfifo(p)
        return p

    def assertRefused(self, r, rc, err):
        self.assertEqual((r.rc, r.err), (rc, err))
        self.assertEqual(r.out, "")


class TestSpecialFiles(BoundsCase):
    """Nothing is ever waited on: every input named by the user is looked at
    before it is opened, and opened without blocking."""

    def refused_fifo(self, *args, name):
        r = run(*args, timeout=20)
        self.assertRefused(r, 2, "%s: error: is a FIFO, not a regular file\n" % name)

    def test_fifo_checkpoint(self):
        for ext in ("safetensors", "npz", "npy", "pt", "bin"):
            f = self.fifo("model." + ext)
            self.refused_fifo("schema", f, name=f)
            self.refused_fifo("check", self.write("r.surg", 'keep "**"\n'), "--from", f, name=f)

    def test_fifo_shard_in_index(self):
        f = self.fifo("b.safetensors")
        index = self.write("model.safetensors.index.json",
                           json.dumps({"weight_map": {"x": "b.safetensors"}}))
        self.refused_fifo("schema", index, name=f)

    def test_fifo_in_directory(self):
        os.mkdir(self.path("d"))
        f = self.fifo(os.path.join("d", "model.safetensors"))
        self.refused_fifo("schema", self.path("d"), name=f)
        g = self.fifo(os.path.join("d", "model.safetensors.index.json"))
        self.refused_fifo("schema", self.path("d"), name=g)

    def test_fifo_schema_from_and_to(self):
        r = self.write("r.surg", 'keep "**"\n')
        ok = self.schema("ok.json", ["w"])
        f = self.fifo("f.json")
        self.refused_fifo("check", r, "--from", f, name=f)
        self.refused_fifo("check", r, "--from", ok, "--to", f, name=f)
        self.refused_fifo("plan", r, "--from", ok, "--to", f, name=f)

    def test_fifo_recipe(self):
        ok = self.schema("ok.json", ["w"])
        f = self.fifo("r.surg")
        self.refused_fifo("fmt", f, name=f)
        self.refused_fifo("check", f, "--from", ok, name=f)
        self.refused_fifo("plan", f, "--from", ok, name=f)

    def test_devices_sockets_directories(self):
        os.symlink("/dev/null", self.path("null.safetensors"))
        r = run("schema", self.path("null.safetensors"))
        self.assertRefused(r, 2, "%s: error: is a character device, not a regular file\n"
                           % self.path("null.safetensors"))
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.bind(self.path("s.json"))
            r = run("check", self.write("r.surg", 'keep "**"\n'), "--from", self.path("s.json"))
            self.assertRefused(r, 2, "%s: error: is a socket, not a regular file\n"
                               % self.path("s.json"))
        finally:
            s.close()
        os.mkdir(self.path("r2.surg"))
        r = run("check", self.path("r2.surg"), "--from", self.schema("ok.json", ["w"]))
        self.assertRefused(r, 2, "%s: error: is a directory, not a regular file\n"
                           % self.path("r2.surg"))

    def test_dev_stdin(self):
        """/dev/stdin is a path like any other: read when it is a regular file,
        refused when it is a pipe ('-' reads a pipe)."""
        rec = self.write("r.surg", 'keep "w"\n')
        with open(rec) as f:
            r = run("fmt", "/dev/stdin", stdin=f)
        self.assertEqual((r.rc, r.out, r.err), (0, 'keep "w"\n', ""))
        r = run("fmt", "/dev/stdin", stdin=subprocess.PIPE)
        self.assertRefused(r, 2, "/dev/stdin: error: is a FIFO, not a regular file\n")


class TestUnboundedReads(BoundsCase):
    """A recipe is at most 64 MiB; reading stops there, whatever the source."""

    def rss_bound(self):
        return 400 if sanitized() else 200

    def test_fmt_dev_zero(self):
        r = run("fmt", "/dev/zero", timeout=20)
        self.assertRefused(r, 2, "/dev/zero: error: is a character device, not a regular file\n")
        self.assertLess(r.rss_mib, self.rss_bound())

    def test_fmt_stdin_dev_zero(self):
        with open("/dev/zero", "rb") as zero:
            r = run("fmt", "-", stdin=zero, timeout=30)
        self.assertRefused(r, 1, TOO_LONG)
        self.assertLess(r.rss_mib, self.rss_bound())

    def test_fmt_endless_pipe(self):
        yes = subprocess.Popen(["yes"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            r = run("fmt", "-", stdin=yes.stdout, timeout=30)
        finally:
            yes.kill()
            yes.wait()
            yes.stdout.close()
        self.assertRefused(r, 1, TOO_LONG)
        self.assertLess(r.rss_mib, self.rss_bound())

    def test_fmt_check_large_file(self):
        """A (sparse) file one byte over the limit: refused by its size, unread."""
        p = self.path("big.surg")
        with open(p, "wb") as f:
            f.truncate(RECIPE_MAX + 1)
        for cmd in (["fmt", p], ["fmt", "--check", p],
                    ["check", p, "--from", self.schema("ok.json", ["w"])]):
            r = run(*cmd, timeout=20)
            self.assertRefused(r, 1, "%s: error: the file has %d bytes, more than the %d allowed\n"
                               % (p, RECIPE_MAX + 1, RECIPE_MAX))
            self.assertLess(r.rss_mib, 100)

    def test_fmt_stdin_small(self):
        with open(self.write("r.surg", 'drop   "a"\n')) as f:
            r = run("fmt", "-", stdin=f, timeout=20)
        self.assertEqual((r.rc, r.out, r.err), (0, 'drop "a"\n', ""))


class TestQuadratic(BoundsCase):
    """Each of these took from 17 s to minutes; each is now linear or
    bounded (the budget: seconds, generous for a loaded machine)."""

    def test_index_of_100k_shards(self):
        wm = {"t%d" % i: "s%d.safetensors" % i for i in range(100000)}
        index = self.write("model.safetensors.index.json", json.dumps({"weight_map": wm}))
        r = run("schema", index, timeout=60)
        self.assertRefused(r, 2, "%s: error: cannot open: No such file or directory\n"
                           % self.path("s0.safetensors"))
        self.assertLess(r.seconds, seconds(5))

    def test_did_you_mean_long_pattern(self):
        """2000 names of 3000 characters (6 MB) that differ from a 3 KB
        pattern only in their last ten, and three that differ in their
        first: those three are suggested."""
        tail = "q" * 10
        names = ["a" * 2990 + "%010d" % i for i in range(2000)]
        close = [c + "a" * 2989 + tail for c in "bcd"]
        schema = self.schema("big.json", names + close)
        pattern = "a" * 2990 + tail
        rec = self.write("r.surg", 'drop "%s"\n' % pattern)
        r = run("--diagnostics", "json", "check", rec, "--from", schema, timeout=120)
        self.assertEqual(r.rc, 1, r.err[-300:])
        d = json.loads(r.err)
        self.assertEqual(d["message"], 'pattern "%s" matches no tensor' % pattern)
        # (a note holds at most 255 bytes)
        self.assertEqual(d["notes"], [('did you mean "%s"?' % n)[:255] for n in close])
        self.assertLess(r.seconds, seconds(5))

    def test_did_you_mean_wildcards(self):
        """Wildcards on both sides widen what must be searched: the search
        stops at its budget, and the answer comes in bounded time."""
        names = ["a" * 5990 + "%010d" % i for i in range(1000)]
        schema = self.schema("big.json", names)
        patterns = ["*" + "a" * 2990 + "x%d*" % k for k in range(10)]
        rec = self.write("r.surg", "".join('drop "%s"\n' % p for p in patterns))
        r = run("--diagnostics", "json", "check", rec, "--from", schema, timeout=120)
        self.assertEqual(r.rc, 1, r.err[-300:])
        diags = [json.loads(line) for line in r.err.splitlines()]
        self.assertEqual([d["message"] for d in diags],
                         ['pattern "%s" matches no tensor' % p for p in patterns])
        self.assertLess(r.seconds, seconds(5))

    def test_many_diagnostics_on_one_long_line(self):
        """5000 unmatched patterns on one line of ~50 KB, human format: each
        diagnostic written at once, the line shown as a window of 160
        columns around the caret."""
        stmts = ['drop"%x"' % i for i in range(5000)]
        line = ";".join(stmts)
        rec = self.write("r.surg", line + "\n")
        schema = self.schema("ok.json", ["weights.only"])
        r = run("check", rec, "--from", schema, timeout=120)
        self.assertEqual(r.rc, 1)
        self.assertLess(r.seconds, seconds(10))
        lines = r.err.split("\n")
        self.assertEqual(lines[-1], "")
        self.assertEqual(len(lines) - 1, 3 * 5000)
        starts = []
        at = 0
        for s in stmts:
            starts.append(at + 4)  # the pattern's quote, 0-based
            at += len(s) + 1
        width = len(line)
        for k in (0, 1, 7, 2500, 4999):
            col = starts[k]
            pat = stmts[k][5:-1]
            lo = max(0, col - 40)
            lo = min(lo, width - 160)
            hi = lo + 160
            want = [
                "%s:1:%d: error: pattern \"%s\" matches no tensor" % (rec, col + 1, pat),
                "    1 | " + ("..." if lo else "") + line[lo:hi] + ("..." if hi < width else ""),
                "      | " + ("   " if lo else "") + " " * (col - lo) + "^" + "~" * (len(pat) + 1),
            ]
            self.assertEqual(lines[3 * k:3 * k + 3], want)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
