"""test_ocdbt.py: surg's OCDBT reader (runtime/ocdbt.c) on databases built
here by ocdbt_build.py, a writer made from the format's documentation:
out-of-line values in several data files, b-trees of several levels with
subtree common prefixes, zstd-compressed nodes (the zstd tool's frames and
raw-block frames as TensorStore writes them), base paths into
subdirectories as Orbax's merged databases have them, older versions in the
manifest, an empty database; and every hostile case of the brief's §5,
each refused with its exact message. The reader is reached through
tests/tools/kvdump, whose output is compared with what was written.

usage: test_ocdbt.py --kvdump KVDUMP --fixtures FIXTURES [unittest args]
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import unittest
import zlib

sys.dont_write_bytecode = True  # keep __pycache__ out of the source tree
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ocdbt_build as ob  # noqa: E402
from ocdbt_build import Ref, Version, envelope, leaf_body, interior_body  # noqa: E402
from ocdbt_build import manifest_body, varint, MAGIC_BTREE, MAGIC_MANIFEST, MISSING  # noqa: E402

ARGS = None  # filled in by main()


def kvdump(root, *args):
    r = subprocess.run([ARGS.kvdump, root, *args], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=120)
    return r.returncode, r.stdout.decode(), r.stderr.decode().replace(root, "DB")


def shown(key):
    return "".join(chr(b) if 0x20 < b < 0x7F and b != 0x5C else "\\x%02x" % b for b in key)


def expected_line(key, value, where):
    line = "%s len=%d " % (shown(key), len(value))
    if key in where:
        path, off = where[key]
        line += "file=%s@%d" % (path.decode(), off)
    else:
        line += "inline"
    line += " crc32=%08x" % zlib.crc32(value)
    if len(value) <= 64:
        line += " hex=" + value.hex()
    return line + "\n"


def expected(items, where, prefix=b""):
    return "".join(expected_line(k, items[k], where) for k in sorted(items)
                   if k.startswith(prefix))


def sample_items(n=23):
    """Keys as Orbax writes them (zarr metadata and chunks of several
    arrays, sharing long prefixes), values of every size around the
    inline limit."""
    items = {}
    for a in range(n):
        name = b"params.layer_%d.kernel" % (a // 3) if a % 3 else b"opt_state.mu.%d" % a
        items[name + b"/.zarray"] = b'{"zarr_format":2,"shape":[%d]}' % a
        for c in range(a % 4):
            size = [0, 7, 1024, 1025, 5000][(a + c) % 5]
            items[name + b"/%d.0" % c] = bytes((a * 31 + c * 7 + i) % 251 for i in range(size))
    return items


class Db(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="surg-ocdbt-")

    def tearDown(self):
        shutil.rmtree(self.tmp)

    def dir(self, name):
        d = os.path.join(self.tmp, name)
        os.makedirs(d, exist_ok=True)
        return d

    def check_db(self, items, **kw):
        root = self.dir("db")
        top, files, where = ob.build(root, items, **kw)
        rc, out, err = kvdump(root)
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out, expected(items, where))
        return root, top, files, where


class Valid(Db):
    def test_multi_level_out_of_line(self):
        items = sample_items()
        root, top, files, where = self.check_db(items)
        self.assertGreaterEqual(len(where), 10)
        self.assertEqual({p for p, _ in where.values()}, {b"d/values-0", b"d/values-1"})
        # Leaves of two keys, interior nodes of two: several levels.
        self.assertGreater(len(items), 32)
        with open(os.path.join(root, "d/root"), "rb") as f:
            self.assertGreaterEqual(f.read()[14], 5)  # the root's height, uncompressed

    def test_get_and_prefix(self):
        items = sample_items()
        root, _, _, where = self.check_db(items, leaf_entries=3, fanout=3)
        rc, out, err = kvdump(root, "--prefix", "params.layer_2.kernel/")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out, expected(items, where, b"params.layer_2.kernel/"))
        self.assertEqual(len(out.splitlines()), 4)
        keys = [b"params.layer_5.kernel/0.0", b"opt_state.mu.21/.zarray",
                b"params.layer_1.kernel/0.0"]
        rc, out, err = kvdump(root, *sum((["--get", k.decode()] for k in keys), []),
                              "--get", "params.layer_5.kernel/", "--get", "zzz", "--get", "")
        self.assertEqual((rc, err), (0, ""))
        self.assertEqual(out, "".join(expected_line(k, items[k], where) for k in keys)
                         + "params.layer_5.kernel/: not found\nzzz: not found\n: not found\n")

    def test_wide_tree(self):
        items = {b"k/%05d" % i: (b"v%d" % i) * (i % 300) for i in range(600)}
        self.check_db(items, leaf_entries=7, fanout=5, max_inline=500)

    def test_zstd_tool(self):
        self.check_db(sample_items(), compression=1, zstd=ob.zstd_cli)

    def test_zstd_raw_blocks(self):
        # A leaf over 128 KiB needs two raw blocks.
        items = {b"big/%d" % i: bytes([i]) * 40000 for i in range(5)}
        self.check_db(items, leaf_entries=5, compression=1, max_inline=50000)

    def test_base_path_below_manifest(self):
        _, _, files, where = self.check_db(sample_items(), manifest_base=b"ocdbt.process_0/")
        self.assertTrue(all(p.startswith(b"ocdbt.process_0/d/") for p in files))
        self.assertTrue(all(p.startswith(b"ocdbt.process_0/d/") for p, _ in where.values()))

    def test_base_path_below_root_node(self):
        # As Orbax merges per-process databases: the root node in d/, the
        # rest under ocdbt.process_0/, reached through the root node's
        # table; paths in the nodes below are relative to that.
        _, _, files, where = self.check_db(sample_items(), split_base=b"ocdbt.process_0/",
                                           compression=1)
        self.assertEqual(sorted(files), [b"d/root", b"ocdbt.process_0/d/nodes",
                                         b"ocdbt.process_0/d/values-0",
                                         b"ocdbt.process_0/d/values-1"])

    def test_transitive_paths(self):
        self.check_db(sample_items(), manifest_base=b"outer/", split_base=b"ocdbt.process_1/")

    def test_older_versions(self):
        # Three older versions whose roots are not there: the last is read.
        self.check_db(sample_items(9), versions_before=3)

    def test_one_leaf(self):
        items = {b"a/.zarray": b"{}", b"a/0": bytes(2000)}
        self.check_db(items, leaf_entries=10)

    def test_any_key_bytes(self):
        items = {bytes([0xFF, 0x00, 0x5C]): b"x", b"": b"empty key", b"a\x00b": b"y" * 1500}
        self.check_db(items)

    def test_empty(self):
        root = self.dir("db")
        self.assertIsNone(ob.build(root, {})[0])
        self.assertEqual(kvdump(root), (0, "", ""))

    def test_fixture_root_node_bytes(self):
        # The Orbax fixture's database, read through kvdump too.
        item = os.path.join(ARGS.fixtures, "orbax/v0_checkpoints/direct_checkpoint/"
                            "checkpoint_metadata_present/pytree_checkpointable_has_metadata")
        rc, out, err = kvdump(item, "--prefix", "a/0")
        self.assertEqual((rc, err), (0, ""))
        chunk = bytes.fromhex("28b52ffd0000010100") + b"".join(
            i.to_bytes(4, "little") for i in range(8))
        self.assertEqual(out, expected_line(b"a/0", chunk, {}))


# ---- hostile databases ----------------------------------------------------------

def node(body, compression=0):
    return envelope(MAGIC_BTREE, body, compression)


def manifest(root_ref, height=0, files=((b"", b"d/n"),), **kw):
    return envelope(MAGIC_MANIFEST, manifest_body(list(files), [Version(1, root_ref, height)],
                                                  **kw))


class Hostile(Db):
    def refuse(self, files, message, manifest_bytes=None):
        """Write `files` ({path: bytes}, the manifest among them or given
        apart) and expect kvdump to fail with exactly `message`."""
        root = self.dir("db")
        if manifest_bytes is not None:
            files = dict(files, **{"manifest.ocdbt": manifest_bytes})
        for path, blob in files.items():
            full = os.path.join(root, path)
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(blob)
        rc, out, err = kvdump(root)
        self.assertEqual((rc, out, err), (1, "", message))

    def leaf_db(self, body, message, compression=0, **kw):
        """A database of one leaf node `body` in d/n."""
        blob = node(body, compression)
        self.refuse({"d/n": blob}, message, manifest(Ref(0, 0, len(blob)), **kw))

    def tree_db(self, leaves, root_entries, message, height=1, root_files=((b"", b"d/n"),)):
        """An interior root in d/n at offset 0 over leaf bodies placed after
        it; root_entries(offsets) gives its entries from the leaves'
        (offset, length)."""
        blobs = [node(b) for b in leaves]
        # The root's size depends on the offsets: place leaves far enough.
        at, places = 4096, []
        for b in blobs:
            places.append((at, len(b)))
            at += len(b)
        root = node(interior_body(height, list(root_files), root_entries(places)))
        self.assertLess(len(root), 4096)
        data = root + bytes(4096 - len(root)) + b"".join(blobs)
        self.refuse({"d/n": data}, message, manifest(Ref(0, 0, len(root)), height=height))

    # -- envelopes

    def test_manifest_missing(self):
        self.refuse({"d/n": b""}, "DB/manifest.ocdbt: cannot open: No such file or directory [io]\n")

    def test_manifest_bad_magic(self):
        m = bytearray(manifest(Ref(0, 0, 20)))
        m[0] = 0x1C
        self.refuse({}, "DB/manifest.ocdbt: does not start with the OCDBT manifest magic 0cdb3a2a "
                    "(found 1cdb3a2a) [ocdbt-corrupt]\n", bytes(m))

    def test_manifest_bad_crc(self):
        m = bytearray(manifest(Ref(0, 0, 20)))
        m[20] ^= 1
        crc = int.from_bytes(m[-4:], "little")
        self.refuse({}, "DB/manifest.ocdbt: CRC-32C mismatch: stored %08x, computed %08x "
                    "[ocdbt-corrupt]\n" % (crc, ob.crc32c(bytes(m[:-4]))), bytes(m))

    def test_manifest_bad_length(self):
        m = manifest(Ref(0, 0, 20)) + b"\0"
        self.refuse({}, "DB/manifest.ocdbt: its header gives a length of %d bytes, but it has %d "
                    "[ocdbt-corrupt]\n" % (len(m) - 1, len(m)), m)

    def test_manifest_too_short(self):
        self.refuse({}, "DB/manifest.ocdbt: is 17 bytes long, too short for an OCDBT manifest "
                    "[ocdbt-corrupt]\n", bytes(17))

    def test_node_bad_magic(self):
        blob = bytearray(node(leaf_body([], [(b"a", b"x")])))
        blob[3] = 0xDF
        self.refuse({"d/n": bytes(blob)}, "DB/d/n: b-tree node at byte 0: does not start with the "
                    "OCDBT b-tree node magic 0cdb20de (found 0cdb20df) [ocdbt-corrupt]\n",
                    manifest(Ref(0, 0, len(blob))))

    def test_node_bad_crc(self):
        blob = bytearray(node(leaf_body([], [(b"a", b"x")])))
        blob[-5] ^= 0x40
        self.refuse({"d/n": bytes(blob)}, "DB/d/n: b-tree node at byte 0: CRC-32C mismatch: "
                    "stored %08x, computed %08x [ocdbt-corrupt]\n"
                    % (int.from_bytes(blob[-4:], "little"), ob.crc32c(bytes(blob[:-4]))),
                    manifest(Ref(0, 0, len(blob))))

    def test_node_length_differs_from_reference(self):
        blob = node(leaf_body([], [(b"a", b"x")]))
        self.refuse({"d/n": blob + b"\0"}, "DB/d/n: b-tree node at byte 0: its header gives a "
                    "length of %d bytes, but it has %d [ocdbt-corrupt]\n"
                    % (len(blob), len(blob) + 1), manifest(Ref(0, 0, len(blob) + 1)))

    def test_version_not_zero(self):
        blob = envelope(MAGIC_BTREE, leaf_body([], [(b"a", b"x")]), version=1)
        self.refuse({"d/n": blob}, "DB/d/n: b-tree node at byte 0: has format version 1; only 0 "
                    "is known [ocdbt-unsupported]\n", manifest(Ref(0, 0, len(blob))))

    def test_compression_unknown(self):
        blob = envelope(MAGIC_BTREE, leaf_body([], [(b"a", b"x")]), compression=2)
        self.refuse({"d/n": blob}, "DB/d/n: b-tree node at byte 0: compression 2 is unknown "
                    "(0 none, 1 zstd) [ocdbt-corrupt]\n", manifest(Ref(0, 0, len(blob))))

    def test_zstd_over_max_decoded_node_bytes(self):
        body = leaf_body([], [(b"a", bytes(5000))])
        self.leaf_db(body, "DB/d/n: b-tree node at byte 0: the zstd body decodes to more than "
                     "4096 bytes [ocdbt-limit]\n", compression=1, max_decoded_node_bytes=4096)

    def test_plain_body_over_max_decoded_node_bytes(self):
        body = leaf_body([], [(b"a", bytes(5000))])
        self.leaf_db(body, "DB/d/n: b-tree node at byte 0: its body of %d bytes is larger than "
                     "4096 bytes [ocdbt-limit]\n" % len(body), max_decoded_node_bytes=4096)

    def test_zstd_bytes_after_frame(self):
        body = leaf_body([], [(b"a", b"x")])
        blob = envelope(MAGIC_BTREE, body, 1, zstd=lambda b: ob.zstd_raw(b) + b"junk")
        self.refuse({"d/n": blob}, "DB/d/n: b-tree node at byte 0: 4 bytes follow the zstd frame "
                    "before the CRC [ocdbt-corrupt]\n", manifest(Ref(0, 0, len(blob))))

    def test_zstd_cut_short(self):
        body = leaf_body([], [(b"a", b"x" * 100)])
        blob = envelope(MAGIC_BTREE, body, 1, zstd=lambda b: ob.zstd_raw(b)[:-10])
        self.refuse({"d/n": blob}, "DB/d/n: b-tree node at byte 0: the zstd body is cut short "
                    "[ocdbt-corrupt]\n", manifest(Ref(0, 0, len(blob))))

    def test_zstd_window_too_large(self):
        # A frame asking for a window of 2 GiB (descriptor 0xa8: 2^(10+21))
        # is refused before the decoder allocates it: a window is at most
        # the node's bound (here max_decoded_node_bytes, 100,000,000).
        body = leaf_body([], [(b"a", b"x")])
        frame = lambda b: b"\x28\xb5\x2f\xfd\x00\xa8" + ob.zstd_raw(b)[6:]  # noqa: E731
        blob = envelope(MAGIC_BTREE, body, 1, zstd=frame)
        self.refuse({"d/n": blob}, "DB/d/n: the zstd stream is corrupt: Frame requires too much "
                    "memory for decoding [codec-corrupt]\n", manifest(Ref(0, 0, len(blob))))

    def test_bytes_after_body(self):
        self.leaf_db(leaf_body([], [(b"a", b"x")]) + b"\x07\x07",
                     "DB/d/n: b-tree node at byte 0: 2 bytes follow the leaf's values "
                     "[ocdbt-corrupt]\n")

    # -- varints and field widths

    def test_varint_too_long(self):
        body = bytes([0, 0]) + b"\xff" * 10 + b"\x01"
        self.leaf_db(body, "DB/d/n: b-tree node at byte 0: num_entries is a varint of more than "
                     "64 bits [ocdbt-corrupt]\n")

    def test_varint_past_field_width(self):
        body = bytes([0, 0]) + varint(2 ** 32)
        self.leaf_db(body, "DB/d/n: b-tree node at byte 0: num_entries is 4294967296, more than "
                     "4294967295 [ocdbt-corrupt]\n")

    def test_key_length_past_16_bits(self):
        body = bytes([0, 0, 1]) + varint(65536)
        self.leaf_db(body, "DB/d/n: b-tree node at byte 0: key_suffix_length[0] is 65536, more "
                     "than 65535 [ocdbt-corrupt]\n")

    def test_varint_cut_short(self):
        self.leaf_db(bytes([0, 0, 0x81]), "DB/d/n: b-tree node at byte 0: ends inside "
                     "num_entries [ocdbt-corrupt]\n")

    # -- data file tables and references

    def test_path_dotdot(self):
        self.leaf_db(leaf_body([(b"", b"../secret")], [(b"a", Ref(0, 0, 1))]),
                     "DB/d/n: b-tree node at byte 0: data file path \"../secret\" has a '..' "
                     "segment [ocdbt-path]\n")

    def test_path_dotdot_in_base(self):
        self.leaf_db(leaf_body([(b"d/../../", b"x")], [(b"a", Ref(0, 0, 1))]),
                     "DB/d/n: b-tree node at byte 0: data file path \"d/../../x\" has a '..' "
                     "segment [ocdbt-path]\n")

    def test_path_absolute_in_manifest(self):
        self.refuse({}, "DB/manifest.ocdbt: data file path \"/etc/passwd\" is absolute "
                    "[ocdbt-path]\n", manifest(Ref(0, 0, 30), files=[(b"", b"/etc/passwd")]))

    def test_path_empty_segment(self):
        self.leaf_db(leaf_body([(b"", b"d//x")], [(b"a", Ref(0, 0, 1))]),
                     "DB/d/n: b-tree node at byte 0: data file path \"d//x\" has an empty "
                     "segment [ocdbt-path]\n")

    def test_path_backslash_and_nul(self):
        self.leaf_db(leaf_body([(b"", b"d\\x")], [(b"a", Ref(0, 0, 1))]),
                     "DB/d/n: b-tree node at byte 0: data file path \"d\\x5cx\" holds a backslash "
                     "[ocdbt-path]\n")
        shutil.rmtree(self.dir("db"))
        self.leaf_db(leaf_body([(b"", b"d/x\x00y")], [(b"a", Ref(0, 0, 1))]),
                     "DB/d/n: b-tree node at byte 0: data file path \"d/x\\x00y\" holds a NUL "
                     "byte [ocdbt-path]\n")

    def test_path_empty(self):
        self.leaf_db(leaf_body([(b"", b"")], [(b"a", Ref(0, 0, 1))]),
                     "DB/d/n: b-tree node at byte 0: data file path \"\" is empty [ocdbt-path]\n")

    def test_path_trailing_slash(self):
        self.refuse({}, "DB/manifest.ocdbt: data file path \"d/\" has an empty segment "
                    "[ocdbt-path]\n", manifest(Ref(0, 0, 30), files=[(b"d/", b"")]))

    def test_base_longer_than_path(self):
        # num_files 1, suffix length 1, base length 2, "d"
        body = bytes([0]) + bytes([1, 1, 2]) + b"d" + bytes([1])
        self.leaf_db(body, "DB/d/n: b-tree node at byte 0: base_path_length[0] is 2, more than "
                     "its path's 1 bytes [ocdbt-corrupt]\n")

    def test_path_prefix_past_previous_path(self):
        # 2 files: prefix[1] 5, suffixes 1 and 1, bases 0 and 0, "ab"
        body = bytes([0]) + bytes([2, 5, 1, 1, 0, 0]) + b"ab" + bytes([1])
        self.leaf_db(body, "DB/d/n: b-tree node at byte 0: path_prefix_length[1] is 5, more than "
                     "the previous path's 1 bytes [ocdbt-corrupt]\n")

    def test_path_prefix_past_a_differing_base(self):
        # "ab/x" with base "ab/" then "ab/y" with base "a": prefix 3 runs past "a".
        body = bytes([0]) + bytes([2, 3, 4, 1, 3, 1]) + b"ab/xy" + bytes([1])
        self.leaf_db(body, "DB/d/n: b-tree node at byte 0: path_prefix_length[1] is 3, past a "
                     "base path that differs from the previous one [ocdbt-corrupt]\n")

    def test_too_many_files(self):
        body = bytes([0]) + varint(1000) + bytes(10)
        self.leaf_db(body, "DB/d/n: b-tree node at byte 0: num_files is 1000, more than its 10 "
                     "bytes can hold [ocdbt-corrupt]\n")

    def test_file_id_out_of_range(self):
        self.leaf_db(leaf_body([(b"", b"d/v")], [(b"a", Ref(1, 0, 1))]),
                     "DB/d/n: b-tree node at byte 0: data_file_id[0] is 1, but the data file "
                     "table has 1 files [ocdbt-corrupt]\n")

    def test_root_file_id_out_of_range(self):
        self.refuse({}, "DB/manifest.ocdbt: data_file_id[0] is 3, but the data file table has 1 "
                    "files [ocdbt-corrupt]\n", manifest(Ref(3, 0, 30)))

    def test_value_past_end_of_file(self):
        body = leaf_body([(b"", b"d/v")], [(b"a", Ref(0, 10, 91))])
        blob = node(body)
        self.refuse({"d/n": blob, "d/v": bytes(100)}, "DB/d/n: b-tree node at byte 0: the value "
                    "of \"a\" is bytes 10..101 of d/v, which has 100 bytes [ocdbt-corrupt]\n",
                    manifest(Ref(0, 0, len(blob))))

    def test_value_offset_overflow(self):
        self.leaf_db(leaf_body([(b"", b"d/v")], [(b"a", Ref(0, 2 ** 64 - 2, 5))]),
                     "DB/d/n: b-tree node at byte 0: the value of entry 0: offset "
                     "18446744073709551614 and length 5 overflow [ocdbt-corrupt]\n")

    def test_node_past_end_of_file(self):
        blob = node(leaf_body([], [(b"a", b"x")]))
        self.refuse({"d/n": blob}, "DB/d/n: b-tree node at byte 4: its %d bytes end past the end "
                    "of the file (%d bytes) [ocdbt-corrupt]\n" % (len(blob), len(blob)),
                    manifest(Ref(0, 4, len(blob))))

    def test_value_file_missing(self):
        blob = node(leaf_body([(b"", b"d/gone")], [(b"a", Ref(0, 0, 1))]))
        self.refuse({"d/n": blob}, "DB/d/gone: cannot open: No such file or directory [io]\n",
                    manifest(Ref(0, 0, len(blob))))

    def test_node_file_missing(self):
        self.refuse({}, "DB/d/n: cannot open: No such file or directory [io]\n",
                    manifest(Ref(0, 0, 30)))

    def test_node_file_is_a_directory(self):
        os.makedirs(os.path.join(self.dir("db"), "d/n"))
        self.refuse({}, "DB/d/n: is a directory, not a regular file [not-regular]\n",
                    manifest(Ref(0, 0, 30)))

    # -- b-tree nodes

    def test_no_entries(self):
        self.leaf_db(bytes([0, 0, 0]), "DB/d/n: b-tree node at byte 0: the node has no entries "
                     "[ocdbt-corrupt]\n")

    def test_too_many_entries(self):
        self.leaf_db(bytes([0, 0]) + varint(2 ** 20 + 1),
                     "DB/d/n: b-tree node at byte 0: num_entries is 1048577, more than 1048576 "
                     "[ocdbt-corrupt]\n")

    def test_entries_past_body(self):
        self.leaf_db(bytes([0, 0]) + varint(1000) + bytes(5),
                     "DB/d/n: b-tree node at byte 0: num_entries is 1000, more than its 5 bytes "
                     "can hold [ocdbt-corrupt]\n")

    def test_keys_out_of_order(self):
        body = bytearray(leaf_body([], [(b"a", b"1"), (b"b", b"2")]))
        body[body.index(b"ab")] = ord("c")  # "c", "b"
        self.leaf_db(bytes(body), "DB/d/n: b-tree node at byte 0: keys out of order: \"b\" "
                     "(entry 1) is not after the key before it [ocdbt-corrupt]\n")

    def test_duplicate_keys(self):
        self.leaf_db(leaf_body([], [(b"a", b"1"), (b"a", b"2")]),
                     "DB/d/n: b-tree node at byte 0: keys out of order: \"a\" (entry 1) is not "
                     "after the key before it [ocdbt-corrupt]\n")

    def test_key_prefix_past_previous_key(self):
        # 2 entries, prefix[1] 3 > len("a")
        body = bytes([0, 0, 2, 3, 1, 1]) + b"ab"
        self.leaf_db(body, "DB/d/n: b-tree node at byte 0: key_prefix_length[1] is 3, more than "
                     "the previous key's 1 bytes [ocdbt-corrupt]\n")

    def test_value_kind_2(self):
        self.leaf_db(leaf_body([], [(b"a", b"x")], kinds=[2]),
                     "DB/d/n: b-tree node at byte 0: value_kind[0] is 2; only 0 (inline) and 1 "
                     "(in a data file) are known [ocdbt-corrupt]\n")

    def test_inline_value_over_1_mib(self):
        body = bytes([0, 0, 1, 1]) + b"a" + varint(2 ** 20 + 1) + b"\x00"
        self.leaf_db(body, "DB/d/n: b-tree node at byte 0: value_length[0] is 1048577, more than "
                     "1048576 for an inline value [ocdbt-corrupt]\n")

    def test_inline_value_past_body(self):
        body = bytes([0, 0, 1, 1]) + b"a" + varint(50) + b"\x00" + b"xyz"
        self.leaf_db(body, "DB/d/n: b-tree node at byte 0: ends inside the inline values (50 bytes "
                     "needed, 3 left) [ocdbt-corrupt]\n")

    def test_keys_made_from_prefixes_past_the_bound(self):
        # 10,000 keys of 65,535 bytes, each sharing all but 3 bytes with the
        # one before: 9 bytes an entry encode 640 MB of keys, past the
        # 512 MiB the keys, values and paths may take; refused before any
        # is made.
        n = 10000
        body = bytes([0, 0]) + varint(n) + varint(65532) * (n - 1) + varint(65535) + \
            varint(3) * (n - 1) + b"k" * 65532 + b"".join(i.to_bytes(3, "big") for i in range(n))
        body += bytes(n) + bytes(n)  # empty inline values
        self.leaf_db(body, "DB/d/n: b-tree node at byte 0: the database's keys, values and paths "
                     "need more than 536870912 bytes (the limit) [ocdbt-limit]\n", compression=1)

    def test_root_height_differs(self):
        blob = node(leaf_body([], [(b"a", b"x")]))
        self.refuse({"d/n": blob}, "DB/d/n: b-tree node at byte 0: its height is 0, but 2 is "
                    "expected there [ocdbt-corrupt]\n", manifest(Ref(0, 0, len(blob)), height=2))

    def test_child_height_mismatch(self):
        leaf = leaf_body([], [(b"a", b"x")], height=1)
        self.tree_db([leaf], lambda p: [(b"a", 0, Ref(0, *p[0]), (1, 0, 0))],
                     "DB/d/n: b-tree node at byte 4096: its height is 1, but 0 is expected there "
                     "[ocdbt-corrupt]\n")

    def test_child_first_key_before_entry(self):
        leaf = leaf_body([], [(b"a", b"x")])
        self.tree_db([leaf], lambda p: [(b"b", 0, Ref(0, *p[0]), (1, 0, 0))],
                     "DB/d/n: b-tree node at byte 4096: its first key \"a\" is before \"b\", "
                     "where its parent's entry starts [ocdbt-corrupt]\n")

    def test_keys_out_of_order_across_leaves(self):
        leaves = [leaf_body([], [(b"a", b"1"), (b"m", b"2")]), leaf_body([], [(b"c", b"3")])]
        self.tree_db(leaves, lambda p: [(b"a", 0, Ref(0, *p[0]), (2, 0, 0)),
                                        (b"c", 0, Ref(0, *p[1]), (1, 0, 0))],
                     "DB/d/n: b-tree node at byte %d: keys out of order: \"c\" is not after the "
                     "last key of the node before [ocdbt-corrupt]\n"
                     % (4096 + len(node(leaves[0]))))

    def test_subtree_prefix_past_key(self):
        leaf = leaf_body([], [(b"", b"x")])
        self.tree_db([leaf], lambda p: [(b"ab", 3, Ref(0, *p[0]), (1, 0, 0))],
                     "DB/d/n: b-tree node at byte 0: subtree_common_prefix_length[0] is 3, more "
                     "than its key's 2 bytes [ocdbt-corrupt]\n")

    def test_subtree_prefix_applies(self):
        # The child's keys continue the entry's subtree prefix: "ab" + "c".
        leaf = leaf_body([], [(b"c", b"x")])
        blobs = node(leaf)
        root = node(interior_body(1, [(b"", b"d/n")], [(b"abc", 2, Ref(0, 4096, len(blobs)),
                                                        (1, 0, 0))]))
        d = self.dir("db")
        os.makedirs(os.path.join(d, "d"))
        with open(os.path.join(d, "d/n"), "wb") as f:
            f.write(root + bytes(4096 - len(root)) + blobs)
        with open(os.path.join(d, "manifest.ocdbt"), "wb") as f:
            f.write(manifest(Ref(0, 0, len(root)), height=1))
        self.assertEqual(kvdump(d), (0, "abc len=1 inline crc32=%08x hex=78\n"
                                     % zlib.crc32(b"x"), ""))

    def test_node_references_itself(self):
        # An interior root whose one child is the root.
        body = interior_body(1, [(b"", b"d/n")], [(b"a", 0, Ref(0, 0, 0), (1, 0, 0))])
        size = len(node(body))
        body = interior_body(1, [(b"", b"d/n")], [(b"a", 0, Ref(0, 0, size), (1, 0, 0))])
        blob = node(body)
        self.assertEqual(len(blob), size)
        self.refuse({"d/n": blob}, "DB/d/n: b-tree node at byte 0: the node is reached a second "
                    "time (a cycle, or a subtree shared by two parents) [ocdbt-corrupt]\n",
                    manifest(Ref(0, 0, size), height=1))

    def test_node_references_an_ancestor(self):
        # Heights fall by one per level, so a cycle through an ancestor is
        # first a height mismatch or a node seen twice: the root (height 2)
        # -> a node (height 1) -> the root again.
        mid_body = lambda n: interior_body(1, [(b"", b"d/n")],  # noqa: E731
                                           [(b"a", 0, Ref(0, 0, n), (1, 0, 0))])
        root_body = lambda n: interior_body(2, [(b"", b"d/n")],  # noqa: E731
                                            [(b"a", 0, Ref(0, 4096, n), (1, 0, 0))])
        mid0 = node(mid_body(100))
        root = node(root_body(len(mid0)))
        mid = node(mid_body(len(root)))
        self.assertEqual(len(mid), len(mid0))
        data = root + bytes(4096 - len(root)) + mid
        self.refuse({"d/n": data}, "DB/d/n: b-tree node at byte 0: the node is reached a second "
                    "time (a cycle, or a subtree shared by two parents) [ocdbt-corrupt]\n",
                    manifest(Ref(0, 0, len(root)), height=2))

    def test_shared_subtree(self):
        # Two entries of the root point at one leaf: reading it once per
        # parent could multiply the work at every level.
        leaf = leaf_body([], [(b"a", b"x")])
        self.tree_db([leaf], lambda p: [(b"a", 0, Ref(0, *p[0]), (1, 0, 0)),
                                        (b"b", 0, Ref(0, *p[0]), (1, 0, 0))],
                     "DB/d/n: b-tree node at byte 4096: the node is reached a second time (a "
                     "cycle, or a subtree shared by two parents) [ocdbt-corrupt]\n")

    # -- manifests

    def test_numbered_manifest(self):
        body = bytes(16) + bytes([1]) + varint(1024) + varint(100000000) + bytes([4]) + varint(0)
        self.refuse({}, "DB/manifest.ocdbt: is a numbered manifest (manifest_kind 1: the versions "
                    "are in manifest.<generation> files), which Orbax does not write; only "
                    "manifest_kind 0 (single) is read [ocdbt-unsupported]\n",
                    envelope(MAGIC_MANIFEST, body))

    def test_manifest_kind_unknown(self):
        self.refuse({}, "DB/manifest.ocdbt: manifest_kind 7 is unknown [ocdbt-corrupt]\n",
                    envelope(MAGIC_MANIFEST, bytes(16) + bytes([7])))

    def test_no_versions(self):
        body = manifest_body([(b"", b"d/n")], [])
        self.refuse({}, "DB/manifest.ocdbt: the manifest lists no versions [ocdbt-corrupt]\n",
                    envelope(MAGIC_MANIFEST, body))

    def test_generations_not_increasing(self):
        vs = [Version(2, Ref(0, 0, 30), 0), Version(2, Ref(0, 0, 30), 0)]
        self.refuse({}, "DB/manifest.ocdbt: generation_number[1] is 2, not more than the one "
                    "before [ocdbt-corrupt]\n",
                    envelope(MAGIC_MANIFEST, manifest_body([(b"", b"d/n")], vs)))

    def test_generation_zero(self):
        self.refuse({}, "DB/manifest.ocdbt: generation_number[0] is 0; generations start at 1 "
                    "[ocdbt-corrupt]\n", envelope(MAGIC_MANIFEST, manifest_body(
                        [(b"", b"d/n")], [Version(0, Ref(0, 0, 30), 0)])))

    def test_more_versions_than_arity(self):
        vs = [Version(g + 1, Ref(0, 0, 30), 0) for g in range(5)]
        self.refuse({}, "DB/manifest.ocdbt: num_versions is 5, more than the 4 a node of arity "
                    "2^2 holds [ocdbt-corrupt]\n", envelope(MAGIC_MANIFEST, manifest_body(
                        [(b"", b"d/n")], vs, arity_log2=2)))

    def test_arity_out_of_range(self):
        for arity in (0, 17):
            self.refuse({}, "DB/manifest.ocdbt: version_tree_arity_log2 is %d, not 1 to 16 "
                        "[ocdbt-corrupt]\n" % arity, manifest(Ref(0, 0, 30), arity_log2=arity))
            shutil.rmtree(self.dir("db"))

    def test_version_nodes_checked(self):
        # One version node reference with a file id past the table.
        nodes = varint(1) + varint(1) + varint(5) + varint(0) + varint(30) + varint(1)
        nodes += bytes(8) + bytes([1])
        self.refuse({}, "DB/manifest.ocdbt: data_file_id[0] is 5, but the data file table has 1 "
                    "files [ocdbt-corrupt]\n", manifest(Ref(0, 0, 30), version_nodes=nodes))

    def test_version_nodes_parsed(self):
        # A valid version node list is read past; the root is still found.
        blob = node(leaf_body([], [(b"k", b"v")]))
        nodes = varint(1) + varint(1) + varint(0) + varint(0) + varint(len(blob)) + varint(16)
        nodes += bytes(8) + bytes([1])
        d = self.dir("db")
        os.makedirs(os.path.join(d, "d"))
        with open(os.path.join(d, "d/n"), "wb") as f:
            f.write(blob)
        vs = [Version(17, Ref(0, 0, len(blob)), 0)]
        with open(os.path.join(d, "manifest.ocdbt"), "wb") as f:
            f.write(envelope(MAGIC_MANIFEST, manifest_body([(b"", b"d/n")], vs,
                                                           version_nodes=nodes)))
        self.assertEqual(kvdump(d), (0, "k len=1 inline crc32=%08x hex=76\n" % zlib.crc32(b"v"),
                                     ""))

    def test_bytes_after_manifest(self):
        body = manifest_body([(b"", b"d/n")], [Version(1, Ref(0, 0, 30), 0)]) + b"\x00"
        self.refuse({}, "DB/manifest.ocdbt: 1 bytes follow the manifest [ocdbt-corrupt]\n",
                    envelope(MAGIC_MANIFEST, body))

    def test_empty_root_needs_its_table_entry(self):
        body = manifest_body([], [Version(1, Ref(0, MISSING, MISSING), 0)])
        self.refuse({}, "DB/manifest.ocdbt: data_file_id[0] is 0, but the data file table has 0 "
                    "files [ocdbt-corrupt]\n", envelope(MAGIC_MANIFEST, body))


def main():
    global ARGS
    parser = argparse.ArgumentParser()
    parser.add_argument("--kvdump", required=True)
    parser.add_argument("--fixtures", required=True)
    ARGS, rest = parser.parse_known_args()
    unittest.main(argv=[sys.argv[0]] + rest)


if __name__ == "__main__":
    main()
