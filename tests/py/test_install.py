"""test_install.py: `cmake --install` into a temporary prefix, and what a
user then finds there: the exact files, libsurg.so's soname and links, man
pages that render without a warning, a bash completion that completes, and
a C program built through pkg-config against the installed library alone,
whose listing of real safetensors fixtures is compared with the test's own
parser (stnp) and NumPy.

usage: test_install.py --cmake CMAKE --build DIR --source DIR --cc CC
                       [--cc-flags FLAGS] --libdir LIBDIR --version X.Y.Z --fixtures DIR
                       [unittest args]
"""

import argparse
import os
import re
import struct
import subprocess
import sys
import unittest

import numpy as np

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import runutil  # noqa: E402
import stnp  # noqa: E402

ARGS = None
PREFIX = None  # the temporary install prefix, made once
TMP = None


def run(cmd, env=None, **kw):
    full = dict(os.environ)
    full.update(env or {})
    r = subprocess.run(cmd, capture_output=True, text=True, env=full, timeout=300,
                       stdin=subprocess.DEVNULL, **kw)
    return r.returncode, r.stdout, r.stderr


def installed_files(root):
    """{relative path: 'file' or 'link -> TARGET'} of everything under root."""
    out = {}
    for top, dirs, files in os.walk(root):
        for f in files + [d for d in dirs if os.path.islink(os.path.join(top, d))]:
            p = os.path.join(top, f)
            rel = os.path.relpath(p, root)
            out[rel] = "link -> " + os.readlink(p) if os.path.islink(p) else "file"
    return out


def expected_files():
    lib, (major, _, _) = ARGS.libdir, ARGS.version.split(".")
    return {
        "bin/surg": "file",
        "include/surg/surg.h": "file",
        f"{lib}/libsurg.so": f"link -> libsurg.so.{major}",
        f"{lib}/libsurg.so.{major}": f"link -> libsurg.so.{ARGS.version}",
        f"{lib}/libsurg.so.{ARGS.version}": "file",
        f"{lib}/pkgconfig/surg.pc": "file",
        "share/man/man1/surg.1": "file",
        "share/man/man5/surg-recipe.5": "file",
        "share/bash-completion/completions/surg": "file",
    }


def dynamic_section(path):
    rc, out, err = run(["readelf", "-d", path])
    assert rc == 0, err
    return out


def completions(words, cwd=None):
    """COMPREPLY of the installed completion for the command line WORDS, the
    last word being the one completed."""
    script = ('source "$1"; shift; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _surg; '
              'printf "%s\\n" "${COMPREPLY[@]}"')
    rc, out, err = run(["bash", "-c", script, "_",
                        os.path.join(PREFIX, "share/bash-completion/completions/surg")] + words,
                       cwd=cwd)
    assert rc == 0 and err == "", err
    return [w for w in out.split("\n") if w]


class TestInstall(unittest.TestCase):
    def test_files(self):
        self.assertEqual(installed_files(PREFIX), expected_files())
        # The same files with DESTDIR, under the configured prefix.
        stage = os.path.join(TMP, "stage")
        rc, out, err = run([ARGS.cmake, "--install", ARGS.build, "--prefix", "/opt/surg"],
                           env={"DESTDIR": stage})
        self.assertEqual(rc, 0, err)
        self.assertEqual(installed_files(os.path.join(stage, "opt/surg")), expected_files())

    def test_installed_copies(self):
        for src, dst in [("include/surg/surg.h", "include/surg/surg.h"),
                         ("man/surg.1", "share/man/man1/surg.1"),
                         ("man/surg-recipe.5", "share/man/man5/surg-recipe.5"),
                         ("completion/surg.bash", "share/bash-completion/completions/surg")]:
            with open(os.path.join(ARGS.source, src), "rb") as a, \
                    open(os.path.join(PREFIX, dst), "rb") as b:
                self.assertEqual(a.read(), b.read(), dst)

    def test_version_everywhere(self):
        rc, out, _ = run([os.path.join(PREFIX, "bin/surg"), "--version"])
        self.assertEqual((rc, out), (0, f"surg {ARGS.version}\n"))
        with open(os.path.join(PREFIX, "include/surg/surg.h")) as f:
            self.assertIn(f'#define SURG_VERSION "{ARGS.version}"\n', f.read())
        rc, out, err = run(["pkg-config", "--modversion", "surg"], env=self.pc_env())
        self.assertEqual((rc, out, err), (0, ARGS.version + "\n", ""))
        for page in ["share/man/man1/surg.1", "share/man/man5/surg-recipe.5"]:
            with open(os.path.join(PREFIX, page)) as f:
                th = next(line for line in f if line.startswith(".TH"))
            self.assertIn(f'"surg {ARGS.version}"', th)

    def test_soname(self):
        major = ARGS.version.split(".")[0]
        lib = os.path.join(PREFIX, ARGS.libdir, f"libsurg.so.{ARGS.version}")
        dyn = dynamic_section(lib)
        self.assertEqual(re.findall(r"\(SONAME\)\s+Library soname: \[(.*)\]", dyn),
                         [f"libsurg.so.{major}"])
        # zlib and zstd are the library's own needs: -lsurg alone links.
        needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.*?)\]", dyn)
        self.assertIn("libz.so.1", needed)
        self.assertIn("libzstd.so.1", needed)
        # Nothing installed points back into the build tree.
        self.assertNotRegex(dyn, r"R(UN)?PATH")
        self.assertNotIn(os.path.realpath(ARGS.build),
                         dynamic_section(os.path.join(PREFIX, "bin/surg")))

    def pc_env(self):
        return {"PKG_CONFIG_PATH": os.path.join(PREFIX, ARGS.libdir, "pkgconfig")}

    def test_pkg_config(self):
        rc, out, err = run(["pkg-config", "--cflags", "--libs", "surg"], env=self.pc_env())
        self.assertEqual((rc, err), (0, ""))
        words = out.split()
        inc = [w[2:] for w in words if w.startswith("-I")]
        libdirs = [w[2:] for w in words if w.startswith("-L")]
        self.assertEqual([os.path.realpath(p) for p in inc],
                         [os.path.realpath(os.path.join(PREFIX, "include"))])
        self.assertEqual([os.path.realpath(p) for p in libdirs],
                         [os.path.realpath(os.path.join(PREFIX, ARGS.libdir))])
        self.assertEqual([w for w in words if w.startswith("-l")], ["-lsurg"])
        rc, out, err = run(["pkg-config", "--static", "--libs", "surg"], env=self.pc_env())
        self.assertEqual(rc, 0, err)
        for lib in ["-lsurg", "-lz", "-lzstd", "-lm"]:
            self.assertIn(lib, out.split())

    def build_program(self):
        exe = os.path.join(TMP, "surg_ls")
        if not os.path.exists(exe):
            rc, flags, err = run(["pkg-config", "--cflags", "--libs", "surg"], env=self.pc_env())
            self.assertEqual(rc, 0, err)
            src = os.path.join(ARGS.source, "tests/install/surg_ls.c")
            rc, out, err = run([ARGS.cc, "-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic",
                                "-o", exe, src] + ARGS.cc_flags.split() + flags.split())
            self.assertEqual(rc, 0, out + err)
            needed = re.findall(r"\(NEEDED\)\s+Shared library: \[(.*?)\]",
                                dynamic_section(exe))
            self.assertIn(f"libsurg.so.{ARGS.version.split('.')[0]}", needed)
        return exe

    def list_with_program(self, path):
        env = {"LD_LIBRARY_PATH": os.path.join(PREFIX, ARGS.libdir)}
        return run([self.build_program(), path], env=env)

    def expected_listing(self, files):
        """The lines surg_ls should print for safetensors FILES (one
        checkpoint), from stnp's parser and NumPy: tensors in byte order of
        names, each value summed in double in C order; then the metadata."""
        tensors, metadata = {}, {}
        for path in files:
            raw, meta, _ = stnp.load_raw(path)
            tensors.update(raw)
            metadata = meta or metadata
        lines = []
        for name in sorted(tensors, key=lambda n: n.encode()):
            dtype, shape, data = tensors[name]
            total = 0.0
            for v in values_f64(dtype, data).tolist():
                total += v
            lines.append((name, dtype, shape, total))
        return lines, sorted((metadata or {}).items())

    def parse_listing(self, out):
        tensors, meta = [], []
        for line in out.splitlines():
            if line.startswith("meta "):
                k, _, v = line[5:].partition("=")
                meta.append((k, v))
                continue
            m = re.fullmatch(r"(\S+) (\S+) \[([0-9, ]*)\] (\S+)", line)
            self.assertIsNotNone(m, line)
            shape = [int(d) for d in m.group(3).split(", ")] if m.group(3) else []
            tensors.append((m.group(1), m.group(2), shape, float(m.group(4))))
        return tensors, meta

    def test_program_on_reference_file(self):
        path = os.path.join(ARGS.fixtures, "safetensors-reference/model.numpy.safetensors")
        rc, out, err = self.list_with_program(path)
        self.assertEqual((rc, err), (0, ""))
        got = self.parse_listing(out)
        self.assertEqual(got, self.expected_listing([path]))
        # The fixture's README: 27 tensors, each arange(prod(shape)) (bools % 2).
        self.assertEqual(len(got[0]), 27)
        for name, dtype, shape, total in got[0]:
            n = int(np.prod(shape))
            self.assertEqual(total, float(sum(i % 2 for i in range(n)) if dtype == "BOOL"
                                          else n * (n - 1) // 2), name)

    def test_program_on_sharded_checkpoint(self):
        d = os.path.join(ARGS.fixtures, "safetensors-reference/sharded")
        shards = sorted(os.path.join(d, f) for f in os.listdir(d) if f.endswith(".safetensors"))
        rc, out, err = self.list_with_program(d)
        self.assertEqual((rc, err), (0, ""))
        tensors, _ = self.parse_listing(out)
        expected, _ = self.expected_listing(shards)
        self.assertEqual(len(tensors), 36)
        self.assertEqual(tensors, expected)

    def test_program_on_hostile_file(self):
        path = os.path.join(ARGS.fixtures, "hostile/header-length-past-eof.safetensors")
        with open(path, "rb") as f:
            blob = f.read()
        (claimed,) = struct.unpack("<Q", blob[:8])
        rc, out, err = self.list_with_program(path)
        self.assertEqual((rc, out), (1, ""))
        self.assertEqual(err, (
            '{"file":"%s","severity":"error","code":"st-header-past-eof","message":'
            '"the header claims %d bytes, but only %d follow the length field","notes":[]}\n'
            % (path, claimed, len(blob) - 8)))

    def test_example_of_the_docs(self):
        """docs/install.md's program, built as it says."""
        with open(os.path.join(ARGS.source, "docs/install.md")) as f:
            src_text = re.search(r"^```c\n(.*?)^```$", f.read(), re.S | re.M).group(1)
        src, exe = os.path.join(TMP, "ls.c"), os.path.join(TMP, "ls")
        with open(src, "w") as f:
            f.write(src_text)
        rc, flags, err = run(["pkg-config", "--cflags", "--libs", "surg"], env=self.pc_env())
        rc, out, err = run([ARGS.cc, "-std=c11", "-Wall", "-Wextra", "-Werror", src, "-o", exe]
                           + ARGS.cc_flags.split() + flags.split())
        self.assertEqual(rc, 0, out + err)
        path = os.path.join(ARGS.fixtures, "safetensors-reference/model.numpy.safetensors")
        rc, out, err = run([exe, path], env={"LD_LIBRARY_PATH": os.path.join(PREFIX, ARGS.libdir)})
        self.assertEqual((rc, err), (0, ""))
        tensors, _, _ = stnp.load_raw(path)
        self.assertEqual(out, "".join(f"{n} {tensors[n][0]} rank {len(tensors[n][1])}\n"
                                      for n in sorted(tensors, key=lambda n: n.encode())))

    def test_man_pages_render_without_warnings(self):
        for page in ["share/man/man1/surg.1", "share/man/man5/surg-recipe.5"]:
            path = os.path.join(PREFIX, page)
            rc, out, err = run(["groff", "-man", "-Tutf8", "-ww", "-z", path])
            self.assertEqual((rc, out, err), (0, "", ""), page)
            rc, out, err = run(["man", "-l", "--warnings", path],
                               env={"MANWIDTH": "80", "MAN_KEEP_FORMATTING": ""})
            self.assertEqual((rc, err), (0, ""), page)
            text = re.sub(r".\x08", "", out)
            name = os.path.basename(page).rsplit(".", 1)
            self.assertTrue(text.startswith(f"{name[0].upper()}({name[1]})"), text[:80])
            for section in ["NAME", "SYNOPSIS", "DESCRIPTION", "EXAMPLES", "SEE ALSO"]:
                self.assertIn(f"\n{section}\n", text, page)
            self.assertEqual([line for line in text.splitlines() if len(line) > 80], [], page)

    def test_man_finds_the_pages_in_the_prefix(self):
        env = {"MANPATH": os.path.join(PREFIX, "share/man"), "MANWIDTH": "80"}
        for args, first in [(["surg"], "SURG(1)"), (["5", "surg-recipe"], "SURG-RECIPE(5)")]:
            rc, out, err = run(["man"] + args, env=env)
            self.assertEqual((rc, err), (0, ""))
            self.assertTrue(re.sub(r".\x08", "", out).startswith(first))

    def test_completion(self):
        work = os.path.join(TMP, "completion")
        os.makedirs(os.path.join(work, "sub"), exist_ok=True)
        for f in ["a.surg", "b.safetensors", "c.txt", "d e.npz", "f.json"]:
            open(os.path.join(work, f), "w").close()
        cases = [
            (["surg", "ch"], ["check"]),
            (["surg", ""], ["run", "check", "plan", "index", "fmt", "schema", "diff", "invert",
                              "lsp", "suggest"]),
            (["surg", "--"], ["--help", "--version", "--diagnostics", "--color"]),
            (["surg", "--color", "never", "p"], ["plan"]),
            (["surg", "--diagnostics", ""], ["human", "json", "github"]),
            (["surg", "fmt", "-"], ["--check", "-w", "--write", "--tree", "-h", "--help",
                                    "--diagnostics", "--color"]),
            (["surg", "schema", "--"], ["--json", "--format", "--help", "--diagnostics",
                                        "--color"]),
            (["surg", "run", "--out-format", ""], ["safetensors", "npz", "msgpack", "orbax",
                                                   "peft"]),
            (["surg", "run", "--format", "n"], ["npz", "npy"]),
            (["surg", "check", ""], ["sub", "a.surg"]),
            (["surg", "fmt", "--check", ""], ["sub", "a.surg"]),
            (["surg", "schema", ""], ["sub", "b.safetensors", "d e.npz", "f.json"]),
            (["surg", "check", "a.surg", "--from", "b"], ["b.safetensors"]),
            (["surg", "run", "a.surg", ""], ["sub", "b.safetensors", "d e.npz", "f.json"]),
            (["surg", "run", "a.surg", "--in", "x", "=", "b"], ["b.safetensors"]),
            (["surg", "run", "a.surg", "--in", "x=d"], ["x=d e.npz"]),
            (["surg", "plan", "a.surg", "--threads", ""], []),
            (["surg", "diff", "--recipe", ""], ["sub", "a.surg"]),
        ]
        for words, want in cases:
            self.assertEqual(sorted(completions(words, cwd=work)), sorted(want), words)


def values_f64(dtype, data):
    """The values of a safetensors tensor's bytes as float64, by NumPy and
    the 8-bit formats' definitions (runutil)."""
    plain = {"BOOL": np.bool_, "U8": np.uint8, "I8": np.int8, "I16": np.int16,
             "U16": np.uint16, "I32": np.int32, "U32": np.uint32, "I64": np.int64,
             "U64": np.uint64, "F16": np.float16, "F32": np.float32, "F64": np.float64}
    if dtype in plain:
        return np.frombuffer(data, dtype=np.dtype(plain[dtype]).newbyteorder("<")).astype(
            np.float64)
    if dtype == "BF16":
        return runutil.bf16_to_f32(np.frombuffer(data, dtype="<u2")).astype(np.float64)
    fmt = {"F8_E4M3": runutil.E4M3, "F8_E5M2": runutil.E5M2}[dtype]
    return np.array([fmt.decode(b) for b in data], dtype=np.float64)


def main():
    global ARGS
    p = argparse.ArgumentParser()
    for a in ["cmake", "build", "source", "cc", "libdir", "version", "fixtures"]:
        p.add_argument("--" + a, required=True)
    p.add_argument("--cc-flags", default="", help="e.g. the sanitizers of the build")
    ARGS, rest = p.parse_known_args()
    runutil.unittest_in_temporary_dir("surg-install-", install, rest)


def install(tmp):
    """cmake --install into TMP/prefix, once for every test."""
    global PREFIX, TMP
    TMP, PREFIX = tmp, os.path.join(tmp, "prefix")
    rc, out, err = run([ARGS.cmake, "--install", ARGS.build, "--prefix", PREFIX])
    if rc:
        sys.exit("cmake --install failed:\n" + out + err)


if __name__ == "__main__":
    main()
