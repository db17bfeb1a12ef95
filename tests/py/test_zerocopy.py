"""test_zerocopy.py: zero-copy outputs and parallel shard writers (issue 18, 2-3).

Layout (on any file system, `--reflink always`): a safetensors output whose
tensors are copies keeps each copy's file offset congruent to its input's
modulo 4096 (runs of tensors contiguous in the input stay contiguous), the
header padded with spaces; every file is still valid by the format's rules
(stnp.parse: no gap, no overlap, the data region exactly covered, the header
JSON with trailing spaces), every tensor aligned to its element size, the
data start a multiple of 8, every value equal to NumPy's, the bytes the same
on every run and for any thread count; `--reflink never` is the reference
layout byte for byte (stnp.save).

XFS (a loop-mounted image made in the test with `mkfs.xfs -m reflink=1`;
skipped, saying why, where it cannot be mounted): rename and drop with the
default `--reflink auto` write the same bytes as `--reflink always` on the
build's file system, their blocks are the input's (FIEMAP: the output's
physical blocks are the input's, flagged shared), the free space barely
moves, the input's bytes (sha256) are unchanged, and the time is printed
beside `--reflink never`'s; every copy_file_range of a block or more that
reaches the kernel (strace) is block-aligned on both sides. A shared output
that runs out of room mid-way
(the shared ranges are not reserved) leaves nothing.

Writers: a sharded output is the same bytes (cmp) for every --writers and
--threads, and a failure on one shard (RLIMIT_FSIZE) leaves nothing.

usage: test_zerocopy.py --surg SURG [unittest args]
"""

import argparse
import array
import fcntl
import hashlib
import os
import re
import resource
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest
import zipfile

import numpy as np

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402

ARGS = None  # filled in by main()
BLOCK = 4096


def model(seed=1, layers=6):
    """A small llama-like stack: F32 weights of whole blocks and of odd
    sizes, F16 embeddings, I64 positions, small biases."""
    rng = np.random.default_rng(seed)
    t = {"embed": ("F16", rng.standard_normal((1000, 64)).astype(np.float16)),
         "positions": ("I64", np.arange(77, dtype="<i8"))}
    for i in range(layers):
        t["layers.%d.w" % i] = ("F32", rng.standard_normal((256, 64 + 16 * i), dtype=np.float32))
        t["layers.%d.b" % i] = ("F32", rng.standard_normal((64 + 16 * i,), dtype=np.float32))
        t["layers.%d.odd" % i] = ("F32", rng.standard_normal((3 + i,), dtype=np.float32))
    return t


def sha(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def parse(path):
    """{name: (dtype, absolute offset, bytes)} of a file checked by the
    format's rules and by the alignment the reference keeps."""
    with open(path, "rb") as f:
        blob = f.read()
    entries, _, raw, data = stnp.parse(blob, path)
    start = 8 + len(raw)
    assert start % 8 == 0, "%s: data starts at %d" % (path, start)
    text = raw.decode("utf-8")
    assert text.rstrip(" ").endswith("}"), path
    out = {}
    for name, dtype, shape, b, e in entries:
        size = max(1, stnp.DTYPES[dtype][1] // 8)
        assert b % size == 0, "%s: %s at %d, not aligned to %d" % (path, name, b, size)
        out[name] = (dtype, start + b, data[b:e])
    return out


def tensor_bytes(tensors):
    return {n: (d, np.ascontiguousarray(a).tobytes()) for n, (d, a) in tensors.items()}


class Base(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="surg-zc-")

    def tearDown(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def path(self, *p):
        return os.path.join(self.dir, *p)

    def run_ok(self, *args):
        rc, out, err = runutil.run_surg(ARGS.surg, "run", *args)
        self.assertEqual((rc, err), (0, ""), args)

    def recipe(self, text):
        p = self.path("r%d.surg" % len(os.listdir(self.dir)))
        with open(p, "w") as f:
            f.write(text)
        return p

    def assert_values(self, path, want):
        """Every tensor of `path` is exactly NumPy's `want` {name: (dtype, bytes)}."""
        self.assert_same(parse(path), want)

    def assert_same(self, got, want):
        self.assertEqual(sorted(got), sorted(want))
        for n, (d, b) in want.items():  # bytes compared without a diff of megabytes
            self.assertEqual(got[n][0], d, n)
            self.assertTrue(got[n][-1] == b, "%s: other bytes" % n)

    def assert_shards(self, out, want):
        got = {}
        for f in sorted(os.listdir(out)):
            if f.endswith(".safetensors"):
                got.update(parse(os.path.join(out, f)))
        self.assert_same(got, want)


class Layout(Base):
    """The layout itself, on whatever file system the build is on."""

    def congruent(self, out, inp, names):
        """Bytes of `names` (output name -> input name) whose offsets agree mod BLOCK."""
        o, i = parse(out), parse(inp)
        return sum(len(o[n][2]) for n, m in names.items()
                   if (o[n][1] - i[m][1]) % BLOCK == 0)

    def test_rename_keeps_every_offset(self):
        inp = self.path("in.safetensors")
        t = model()
        t["head"] = t["embed"]
        stnp.save(inp, t)
        r = self.recipe('rename "layers.**" -> "model.layers.$1"\ntie "head" = "embed"\n')
        del t["head"]  # a tie: metadata
        out, ref = self.path("out.safetensors"), self.path("ref.safetensors")
        self.run_ok(r, inp, out, "--reflink", "always")
        self.run_ok(r, inp, ref, "--reflink", "never")
        want = {("model." + n if n.startswith("layers.") else n): v
                for n, v in tensor_bytes(t).items()}
        self.assert_values(out, want)
        self.assert_values(ref, want)
        names = {n: n[len("model."):] if n.startswith("model.") else n for n in want}
        self.assertEqual(self.congruent(out, inp, names), sum(len(b) for _, b in want.values()))
        # the cost: the header's padding, less than a block
        self.assertLess(os.path.getsize(out) - os.path.getsize(ref), BLOCK)
        # never: the reference layout, byte for byte (the tie is metadata)
        with open(ref, "rb") as f:
            ref_bytes = f.read()
        meta = stnp.parse(ref_bytes)[1]
        self.assertEqual(sorted(meta), ["format", "surg.ties"])
        expect = stnp.save(self.path("np.safetensors"),
                           {n: t[names[n]] for n in want}, metadata=meta)
        self.assertEqual(ref_bytes, expect)
        # the same bytes every time, for any thread count
        again = self.path("again.safetensors")
        self.run_ok(r, inp, again, "--reflink", "always", "--threads", "1")
        with open(out, "rb") as a, open(again, "rb") as b:
            self.assertEqual(a.read(), b.read())

    def test_drop_of_whole_blocks_keeps_every_offset(self):
        inp = self.path("in.safetensors")
        t = model()
        stnp.save(inp, t)
        # layers.2.w is 256 x 96 x 4 bytes: 24 blocks, and its neighbours'
        # sizes are whole blocks too once layers.2.b (384 bytes) goes with them
        r = self.recipe('drop "layers.2.*"\n')
        out = self.path("out.safetensors")
        self.run_ok(r, inp, out, "--reflink", "always")
        want = {n: v for n, v in tensor_bytes(t).items() if not n.startswith("layers.2.")}
        self.assert_values(out, want)
        copied = self.congruent(out, inp, {n: n for n in want})
        # a drop that shifts the rest by less than a block: the larger side keeps its offsets
        self.assertGreaterEqual(copied, sum(len(b) for _, b in want.values()) // 2)

    def test_split_and_computed(self):
        inp = self.path("in.safetensors")
        t = model()
        stnp.save(inp, t)
        r = self.recipe('split "layers.0.w" axis 0 -> "q", "k"\n'
                        'map "layers.1.w" = x * 2\n')
        out = self.path("out.safetensors")
        self.run_ok(r, inp, out, "--reflink", "always")
        want = tensor_bytes(t)
        w0 = t["layers.0.w"][1]
        del want["layers.0.w"]
        want["q"] = ("F32", w0[:128].tobytes())
        want["k"] = ("F32", w0[128:].tobytes())
        want["layers.1.w"] = ("F32", (t["layers.1.w"][1] * np.float32(2)).tobytes())
        self.assert_values(out, want)
        o, i = parse(out), parse(inp)
        self.assertEqual((o["q"][1] - i["layers.0.w"][1]) % BLOCK, 0)
        self.assertEqual((o["k"][1] - i["layers.0.w"][1] - 128 * 64 * 4) % BLOCK, 0)

    def test_conversion_from_torch(self):
        import torch
        src = self.path("pytorch_model.bin")
        torch.manual_seed(0)
        sd = {"a": torch.randn(300, 64), "b": torch.randn(77), "c": torch.randn(64, 64)}
        torch.save(sd, src)
        out = self.path("out.safetensors")
        self.run_ok(self.recipe('rename "a" -> "z"\n'), src, out, "--reflink", "always")
        want = {"z" if n == "a" else n: ("F32", v.numpy().tobytes()) for n, v in sd.items()}
        self.assert_values(out, want)
        # each tensor's bytes in the zip: its stored entry's data offset
        at = {}
        with zipfile.ZipFile(src) as z, open(src, "rb") as f:
            for info in z.infolist():
                f.seek(info.header_offset)
                head = f.read(30)
                n, e = struct.unpack("<HH", head[26:30])
                at[info.filename] = info.header_offset + 30 + n + e
        o = parse(out)
        with open(src, "rb") as f:
            blob = f.read()
        shared = 0
        for name, (_, off, data) in o.items():
            where = [k for k, v in at.items() if blob[v:v + len(data)] == data]
            self.assertEqual(len(where), 1, name)
            shared += (off - at[where[0]]) % BLOCK == 0
        self.assertGreaterEqual(shared, 1)

    def test_sharded(self):
        inp = self.path("in.safetensors")
        t = model(layers=8)
        stnp.save(inp, t)
        r = self.recipe('rename "layers.**" -> "h.$1"\n')
        out = self.path("shards")
        self.run_ok(r, inp, out, "--reflink", "always", "--max-shard-size", "200KB")
        want = {("h." + n[len("layers."):] if n.startswith("layers.") else n): v
                for n, v in tensor_bytes(t).items()}
        self.assert_shards(out, want)

    def test_never_is_default_elsewhere(self):
        """Where the file system shares nothing, auto is the reference layout."""
        inp = self.path("in.safetensors")
        stnp.save(inp, model())
        r = self.recipe('rename "embed" -> "e"\n')
        a, n = self.path("a.safetensors"), self.path("n.safetensors")
        self.run_ok(r, inp, a)
        self.run_ok(r, inp, n, "--reflink", "never")
        probe = subprocess.run(["cp", "--reflink=always", inp, self.path("probe")],
                               capture_output=True)
        with open(a, "rb") as x, open(n, "rb") as y:
            same = x.read() == y.read()
        self.assertEqual(same, probe.returncode != 0)

    def test_bad_option(self):
        rc, _, err = runutil.run_surg(ARGS.surg, "run", "r", "in", "out", "--reflink", "sometimes")
        self.assertEqual(rc, 2)
        self.assertIn("surg run: --reflink takes auto, always or never, not 'sometimes'", err)
        rc, _, err = runutil.run_surg(ARGS.surg, "run", "r", "in", "out", "--writers", "0")
        self.assertEqual(rc, 2)
        self.assertIn("surg run: --writers takes a number from 1 to 1024, not '0'", err)


# ---- XFS -----------------------------------------------------------------

FS_IOC_FIEMAP = 0xC020660B
FIEMAP_FLAG_SYNC = 1
FIEMAP_EXTENT_LAST = 0x1
FIEMAP_EXTENT_SHARED = 0x2000


def extents(path):
    """[(logical, physical, length, flags)] of a file, by the FIEMAP ioctl."""
    out, start, count = [], 0, 256
    with open(path, "rb") as f:
        while True:
            req = bytearray(struct.pack("=QQIIII", start, (1 << 64) - 1 - start,
                                        FIEMAP_FLAG_SYNC, 0, count, 0) + b"\0" * 56 * count)
            buf = array.array("B", req)
            fcntl.ioctl(f.fileno(), FS_IOC_FIEMAP, buf, True)
            mapped = struct.unpack_from("=I", buf, 20)[0]
            last = False
            for k in range(mapped):
                lo, ph, ln = struct.unpack_from("=QQQ", buf, 32 + 56 * k)
                fl = struct.unpack_from("=I", buf, 32 + 56 * k + 40)[0]
                out.append((lo, ph, ln, fl))
                last = bool(fl & FIEMAP_EXTENT_LAST)
            if not mapped or last:
                return out
            start = out[-1][0] + out[-1][2]


def shared_blocks(out, inp):
    """Blocks of `out` that are blocks of `inp`, flagged shared."""
    phys = set()
    for _, ph, ln, _ in extents(inp):
        phys.update(range(ph // BLOCK, (ph + ln) // BLOCK))
    n = 0
    for _, ph, ln, fl in extents(out):
        if fl & FIEMAP_EXTENT_SHARED:
            n += sum(1 for b in range(ph // BLOCK, (ph + ln) // BLOCK) if b in phys)
    return n


def free_bytes(path):
    os.sync()
    v = os.statvfs(path)
    return v.f_bfree * v.f_frsize


class Xfs(Base):
    """On an XFS image with reflinks, mounted through a loop device."""

    mnt = None
    why = None

    @classmethod
    def mount(cls, size, reflink):
        """(image dir, mount point) or raise unittest.SkipTest saying why."""
        if os.geteuid() != 0:
            raise unittest.SkipTest("not root: mounting a loop device needs root")
        if not shutil.which("mkfs.xfs"):
            raise unittest.SkipTest("mkfs.xfs not installed (xfsprogs)")
        top = tempfile.mkdtemp(prefix="surg-xfs-")
        img, mnt = os.path.join(top, "img"), os.path.join(top, "mnt")
        os.mkdir(mnt)
        with open(img, "wb") as f:
            f.truncate(size)
        mk = subprocess.run(["mkfs.xfs", "-q", "-m", "reflink=%d" % reflink, img],
                            capture_output=True, text=True)
        if mk.returncode:
            shutil.rmtree(top)
            raise unittest.SkipTest("mkfs.xfs failed: " + mk.stderr.strip())
        m = subprocess.run(["mount", "-o", "loop", img, mnt], capture_output=True, text=True)
        if m.returncode:
            shutil.rmtree(top)
            raise unittest.SkipTest("cannot mount an XFS image through a loop device here "
                                    "(no loop device, or no CAP_SYS_ADMIN in a container): "
                                    + m.stderr.strip())
        return top, mnt

    @classmethod
    def unmount(cls, top, mnt):
        if subprocess.run(["umount", mnt], capture_output=True).returncode:
            subprocess.run(["umount", "-l", mnt], capture_output=True)
        shutil.rmtree(top, ignore_errors=True)

    @classmethod
    def setUpClass(cls):
        cls.top, cls.mnt = cls.mount(512 << 20, 1)

    @classmethod
    def tearDownClass(cls):
        cls.unmount(cls.top, cls.mnt)

    def tearDown(self):
        super().tearDown()
        for f in os.listdir(self.mnt):
            p = os.path.join(self.mnt, f)
            shutil.rmtree(p) if os.path.isdir(p) else os.unlink(p)

    def big_input(self):
        """~64 MiB: 16 F32 layers of 4 MiB and small tensors between them."""
        rng = np.random.default_rng(7)
        t = {}
        for i in range(16):
            t["layers.%02d.w" % i] = ("F32", rng.standard_normal((1024, 1024), dtype=np.float32))
            t["layers.%02d.norm" % i] = ("F32", rng.standard_normal(1024, dtype=np.float32))
        t["head"] = ("F32", rng.standard_normal((1000, 1000), dtype=np.float32))
        inp = os.path.join(self.mnt, "in.safetensors")
        stnp.save(inp, t)
        return inp, t

    def timed(self, *args):
        t0 = time.monotonic()
        self.run_ok(*args)
        return time.monotonic() - t0

    def share_case(self, text, want_of):
        inp, t = self.big_input()
        before = sha(inp)
        r = self.recipe(text)
        out = os.path.join(self.mnt, "out.safetensors")
        ref = os.path.join(self.mnt, "ref.safetensors")
        here = self.path("here.safetensors")  # the build's file system
        free0 = free_bytes(self.mnt)
        secs = self.timed(r, inp, out)  # --reflink auto
        used = free0 - free_bytes(self.mnt)
        free1 = free_bytes(self.mnt)
        secs_never = self.timed(r, inp, ref, "--reflink", "never")
        used_never = free1 - free_bytes(self.mnt)
        self.run_ok(r, inp, here, "--reflink", "always")
        want = want_of(tensor_bytes(t))
        self.assert_values(out, want)
        self.assert_values(ref, want)
        with open(out, "rb") as a, open(here, "rb") as b:
            self.assertTrue(a.read() == b.read(), "auto on XFS != always elsewhere")
        self.assertEqual(sha(inp), before)  # the input is only read
        size = os.path.getsize(out)
        blocks = shared_blocks(out, inp)
        sys.stderr.write("\n  %s: %d of %d blocks shared with the input; %.3f s and %d KiB "
                         "used, --reflink never %.3f s and %d KiB\n"
                         % (text.strip(), blocks, size // BLOCK, secs, used >> 10, secs_never,
                            used_never >> 10))
        self.assertEqual(shared_blocks(ref, inp), 0)
        self.assertGreaterEqual(used_never, size - BLOCK)
        return size, blocks, used

    def test_rename(self):
        size, blocks, used = self.share_case(
            'rename "layers.**" -> "model.layers.$1"\n',
            lambda w: {("model." + n if n.startswith("layers.") else n): v for n, v in w.items()})
        # every block but the one the header ends in
        self.assertGreaterEqual(blocks, size // BLOCK - 2)
        self.assertLess(used, size // 16)

    def test_drop(self):
        size, blocks, used = self.share_case(
            'drop "layers.0[3-5].**"\n',
            lambda w: {n: v for n, v in w.items()
                       if not n.startswith(("layers.03.", "layers.04.", "layers.05."))})
        # the norms and weights dropped are whole blocks: nothing shifts
        self.assertGreaterEqual(blocks, size // BLOCK - 2)
        self.assertLess(used, size // 16)

    def test_copies_are_block_aligned(self):
        """What reaches the kernel (strace): every copy_file_range of a block
        or more starts at a block on both sides; together they are all the
        data but the block the header ends in."""
        if not shutil.which("strace"):
            self.skipTest("strace not installed")
        inp, _ = self.big_input()
        r = self.recipe('rename "layers.**" -> "model.layers.$1"\n')
        out, log = os.path.join(self.mnt, "out.safetensors"), self.path("strace")
        subprocess.run(["strace", "-f", "-e", "trace=copy_file_range", "-o", log, ARGS.surg,
                        "run", "-q", r, inp, out], check=True,
                       env=dict(os.environ, CI="1",  # LeakSanitizer cannot run under ptrace
                                ASAN_OPTIONS=os.environ.get("ASAN_OPTIONS", "") + ":detect_leaks=0"))
        calls, pending = [], {}  # a call a thread is in: "<unfinished ...>", then "resumed"
        with open(log) as f:
            for line in f:
                pid = line.split()[0]
                m = re.search(r"copy_file_range\((\d+), \[(\d+)\], \d+, \[(\d+)\], (\d+), 0",
                              line)
                if m:
                    pending[pid] = tuple(int(x) for x in m.groups()[1:])
                done = re.search(r"\) += (-?\d+)", line)
                if done and pid in pending and ("copy_file_range" in line):
                    calls.append(pending.pop(pid) + (int(done.group(1)),))
        big = [c for c in calls if c[2] >= BLOCK]
        self.assertTrue(big)
        for src, dst, n, done in big:
            self.assertEqual((src % BLOCK, dst % BLOCK, done), (0, 0, n), (src, dst, n))
        self.assertGreaterEqual(sum(c[2] for c in big), os.path.getsize(out) - 2 * BLOCK)

    def test_full_midway_leaves_nothing(self):
        """Shared ranges are not reserved: where they cannot be shared after
        all (another file system) the copy fills the disk mid-way, and the
        failure leaves nothing."""
        top, small = self.mount(300 << 20, 0)
        try:
            inp, _ = self.big_input()
            before = sha(inp)
            filler = os.path.join(small, "filler")
            with open(filler, "wb") as f:  # leave ~40 MiB free
                f.truncate(0)
                os.posix_fallocate(f.fileno(), 0, max(0, free_bytes(small) - (40 << 20)))
            r = self.recipe('rename "layers.**" -> "x.$1"\n')
            out = os.path.join(small, "shards")
            rc, _, err = runutil.run_surg(ARGS.surg, "run", r, inp, out, "--reflink", "always",
                                          "--max-shard-size", "8MB", "--writers", "2")
            self.assertEqual(rc, 2, err)
            # each writer that ran out says so
            self.assertRegex(err, r"^(%s/model-000\d\d-of-000\d\d\.safetensors: error: cannot "
                                  r"write: No space left on device\n)+$" % out)
            self.assertEqual(sorted(os.listdir(small)), ["filler"])
            self.assertEqual(sha(inp), before)
        finally:
            self.unmount(top, small)


# ---- writers -------------------------------------------------------------

class Writers(Base):
    def sharded(self, *extra):
        out = self.path("out-" + "-".join(extra))
        self.run_ok(self.recipe_path, self.inp, out, "--max-shard-size", "300KB", *extra)
        return out

    def setUp(self):
        super().setUp()
        self.inp = self.path("in.safetensors")
        self.t = model(layers=10)
        stnp.save(self.inp, self.t)
        self.recipe_path = self.recipe('map "layers.1*.w" = x * 3\nrename "embed" -> "e"\n')

    def test_same_bytes_for_any_writers(self):
        base = self.sharded("--threads", "1", "--writers", "1")
        files = sorted(os.listdir(base))
        self.assertGreater(len(files), 4)
        for extra in (("--threads", "4", "--writers", "1"), ("--threads", "4", "--writers", "3"),
                      ("--threads", "2", "--writers", "8"), ("--threads", "3"),
                      ("--threads", "4", "--writers", "4", "--reflink", "never")):
            other = self.sharded(*extra)
            self.assertEqual(sorted(os.listdir(other)), files, extra)
            for f in files:
                r = subprocess.run(["cmp", os.path.join(base, f), os.path.join(other, f)])
                self.assertEqual(r.returncode, 0, (extra, f))
        want = tensor_bytes(self.t)
        want["e"] = want.pop("embed")
        for n in want:
            if re.fullmatch(r"layers\.1[^.]*\.w", n):
                want[n] = ("F32", (self.t[n][1] * np.float32(3)).tobytes())
        self.assert_shards(base, want)

    def test_one_shard_failing_leaves_nothing(self):
        """A file size limit some shards pass: its room cannot be
        reserved, and no shard, index or directory is left."""
        before = sha(self.inp)
        out = self.path("out")

        def limit():
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
            resource.setrlimit(resource.RLIMIT_FSIZE, (200 << 10, 200 << 10))

        env = dict(os.environ, CI="1")
        r = subprocess.run([ARGS.surg, "run", self.recipe_path, self.inp, out,
                            "--max-shard-size", "300KB", "--writers", "4", "--threads", "4"],
                           capture_output=True, text=True, preexec_fn=limit, env=env)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertRegex(r.stderr, r"^%s/model-000\d\d-of-000\d\d\.safetensors: error: cannot "
                                   r"reserve room for the output: File too large\n$" % out)
        self.assertFalse(os.path.exists(out))
        self.assertEqual(sha(self.inp), before)


def main():
    global ARGS
    ap = argparse.ArgumentParser()
    ap.add_argument("--surg", required=True)
    ARGS, rest = ap.parse_known_args()
    ARGS.surg = os.path.abspath(ARGS.surg)
    unittest.main(argv=[sys.argv[0]] + rest, verbosity=2)


if __name__ == "__main__":
    main()
