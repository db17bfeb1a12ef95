"""test_faults.py: faults injected into `surg run`, each checked the same
way: a clear message, a non-zero exit, no output file (and no temporary one
left beside it), and the input's bytes unchanged (or, where the test itself
changes the input, the change reported).

  * a file-size limit reached mid-write (RLIMIT_FSIZE, as `ulimit -f`);
  * an output directory that is missing, or cannot take files;
  * SIGKILL and SIGINT in the middle of a large run;
  * an input truncated, or rewritten in place, while it is being read.

usage: test_faults.py --surg SURG [unittest args]
"""

import argparse
import os
import resource
import signal
import subprocess
import sys
import tempfile
import time
import unittest

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402

ARGS = None  # filled in by main()


class FaultCase(unittest.TestCase):
    def setUp(self):
        self._tmp = tempfile.TemporaryDirectory(prefix="surg-faults-", dir=ARGS.tmp)
        self.tmp = self._tmp.name

    def tearDown(self):
        self._tmp.cleanup()

    def path(self, *parts):
        return os.path.join(self.tmp, *parts)

    def recipe(self, text):
        p = self.path("r.surg")
        with open(p, "w") as f:
            f.write(text + "\n")
        return p

    def big_input(self, mib):
        """A checkpoint of `mib` MiB of f32 in 16 tensors."""
        p = self.path("in.safetensors")
        n = mib * (1 << 20) // 4 // 16
        stnp.save(p, {"t%02d" % i: ("F32", np.full(n, i, np.float32)) for i in range(16)})
        return p

    def assertNothingWritten(self, out):
        self.assertFalse(os.path.exists(out), "the output appeared")
        self.assertEqual(runutil.temporaries(os.path.dirname(out)), [],
                         "temporary files left beside the output")

    def start(self, *args, **kw):
        return subprocess.Popen([ARGS.surg, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, **kw)

    def running_after(self, proc, seconds):
        """Wait; fail the test's premise loudly if the run already ended."""
        time.sleep(seconds)
        if proc.poll() is not None:
            self.skipTest("the run ended before the fault could be injected (machine too fast)")


class TestWriteFaults(FaultCase):
    def test_file_size_limit(self):
        """Past RLIMIT_FSIZE a write fails (EFBIG): reported, cleaned up."""
        inp = self.big_input(8)
        digest = runutil.sha256(inp)
        out = self.path("out.safetensors")

        def limit():
            resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, 1 << 20))

        r = subprocess.run([ARGS.surg, "run", self.recipe('map "**" = x * 2'), inp, out],
                           capture_output=True, preexec_fn=limit, timeout=120)
        err = r.stderr.decode()
        self.assertNotEqual(r.returncode, 0, err)
        self.assertGreater(r.returncode, 0, "killed by a signal, not an error: %d" % r.returncode)
        self.assertIn(out, err)
        self.assertIn("File too large", err)
        self.assertNothingWritten(out)
        self.assertEqual(runutil.sha256(inp), digest)

    def test_missing_directory(self):
        inp = self.big_input(1)
        out = self.path("no", "such", "dir", "out.safetensors")
        code, _, err = runutil.run_surg(ARGS.surg, "run", self.recipe('map "**" = x + 1'), inp,
                                        out)
        self.assertEqual(code, 2, err)
        self.assertIn("out.safetensors", err)
        self.assertIn("No such file or directory", err)
        self.assertFalse(os.path.exists(self.path("no")))

    def test_directory_that_takes_no_files(self):
        """/proc/self takes no new files, even from root."""
        inp = self.big_input(1)
        code, _, err = runutil.run_surg(ARGS.surg, "run", self.recipe('map "**" = x + 1'), inp,
                                        "/proc/self/out.safetensors")
        self.assertEqual(code, 2, err)
        self.assertIn("/proc/self/out.safetensors", err)
        self.assertIn("cannot create the output", err)

    @unittest.skipIf(os.geteuid() == 0, "root writes into read-only directories")
    def test_read_only_directory(self):
        inp = self.big_input(1)
        d = self.path("ro")
        os.mkdir(d, 0o555)
        try:
            code, _, err = runutil.run_surg(ARGS.surg, "run", self.recipe('map "**" = x + 1'),
                                            inp, os.path.join(d, "out.safetensors"))
        finally:
            os.chmod(d, 0o755)
        self.assertEqual(code, 2, err)
        self.assertIn("Permission denied", err)
        self.assertEqual(os.listdir(d), [])


class TestSignals(FaultCase):
    """A large fill (1 GiB, one thread) interrupted early."""

    RECIPE = "\n".join('fill "n%d" : f32[%d] = normal(0, 1)' % (i, 1 << 26) for i in range(4))

    def interrupted(self, sig):
        inp = self.path("in.safetensors")
        stnp.save(inp, {"a": ("F32", np.ones(4, np.float32))})
        digest = runutil.sha256(inp)
        out = self.path("out.safetensors")
        proc = self.start("run", "--threads", "1", self.recipe(self.RECIPE), inp, out)
        self.running_after(proc, 0.3)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        self.assertNothingWritten(out)
        self.assertEqual(runutil.sha256(inp), digest)
        return proc.returncode, err.decode()

    def test_sigkill(self):
        """Nothing to clean up after SIGKILL: the output had no name yet."""
        code, _ = self.interrupted(signal.SIGKILL)
        self.assertEqual(code, -signal.SIGKILL)

    def test_sigint(self):
        code, _ = self.interrupted(signal.SIGINT)
        self.assertEqual(code, -signal.SIGINT)

    def test_sigterm(self):
        code, _ = self.interrupted(signal.SIGTERM)
        self.assertEqual(code, -signal.SIGTERM)


class TestInputChanges(FaultCase):
    """The input changed under a running surg: refused, nothing written."""

    def test_truncated(self):
        inp = self.big_input(512)
        out = self.path("out.safetensors")
        proc = self.start("run", "--threads", "1", self.recipe('map "**" = x * 2'), inp, out)
        self.running_after(proc, 0.2)
        os.truncate(inp, os.path.getsize(inp) // 2)
        _, err = proc.communicate(timeout=120)
        err = err.decode()
        self.assertGreater(proc.returncode, 0, err)
        # Read short, caught by a mapping (SIGBUS), or seen changed at the
        # end: each message says the input was truncated.
        self.assertIn("truncated", err)
        self.assertNothingWritten(out)

    def test_rewritten_in_place(self):
        """Same size, new bytes: seen by the modification time."""
        inp = self.big_input(512)
        out = self.path("out.safetensors")
        proc = self.start("run", "--threads", "1", self.recipe('map "**" = x * 2'), inp, out)
        self.running_after(proc, 0.2)
        with open(inp, "r+b") as f:
            f.seek(-4, os.SEEK_END)
            f.write(b"\x00\x00\x80\x7f")
        _, err = proc.communicate(timeout=120)
        err = err.decode()
        self.assertGreater(proc.returncode, 0, err)
        self.assertIn(inp, err)
        self.assertIn("changed while it was being read", err)
        self.assertNothingWritten(out)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ap.add_argument("--tmp", default=None, help="where the large scratch files go")
    ARGS, rest = ap.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
