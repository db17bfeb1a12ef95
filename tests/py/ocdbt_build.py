"""ocdbt_build.py: a small writer of TensorStore's OCDBT databases, written
from the format's documentation (TensorStore's kvstore/ocdbt/index.rst,
"Storage format", as decoded in docs/design/flax-orbax-formats.md §3), not
from surg's reader: the tests build databases with it and compare what
surg reads with what was written.

Two levels. The pieces (varint, crc32c, envelope, data_file_table,
leaf_body, interior_body, manifest_body) encode one structure each from
plain Python values and leave every field to the caller, so a test can
write any field wrong. `build` lays out a whole database: sorted keys in
leaves of a few entries, interior levels above them with subtree common
prefixes, values over `max_inline` bytes kept in data files, nodes and
values in files below optional base paths (as Orbax's merged databases
point into `ocdbt.process_N/d/...`), nodes compressed with zstd or not.
"""

import os
import subprocess

MAGIC_MANIFEST = 0x0CDB3A2A
MAGIC_BTREE = 0x0CDB20DE
MISSING = 2 ** 64 - 1


# ---- primitives -------------------------------------------------------------

def varint(n):
    """Unsigned LEB128."""
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def u64le(n):
    return n.to_bytes(8, "little")


def _crc_table():
    table = []
    for b in range(256):
        c = b
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        table.append(c)
    return table


_CRC = _crc_table()


def crc32c(data):
    """CRC-32C (Castagnoli), reflected, init and final xor 0xFFFFFFFF."""
    c = 0xFFFFFFFF
    for b in data:
        c = _CRC[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def zstd_cli(data):
    """A zstd frame made by the zstd command line tool."""
    return subprocess.run(["zstd", "-q", "-c", "-3"], input=data, check=True,
                          stdout=subprocess.PIPE).stdout


def zstd_raw(data):
    """A zstd frame by hand, as TensorStore's are: no content size, a
    window of 128 KiB, the bytes in raw blocks (RFC 8878 §3.1.1)."""
    out = bytearray(b"\x28\xb5\x2f\xfd")
    out += bytes([0x00, 0x38])  # no size, no checksum; window 2^(10+7)
    chunks = [data[i:i + 131072] for i in range(0, len(data), 131072)] or [b""]
    for i, chunk in enumerate(chunks):
        last = i == len(chunks) - 1
        out += (len(chunk) << 3 | last).to_bytes(3, "little")  # type 0: raw
        out += chunk
    return bytes(out)


def envelope(magic, body, compression=0, zstd=zstd_raw, version=0):
    """An encoded object: magic (big-endian), length, version, compression,
    the body (a zstd frame when compression is 1), CRC-32C of the rest."""
    payload = varint(version) + varint(compression)
    payload += zstd(body) if compression == 1 else body
    head = magic.to_bytes(4, "big") + u64le(4 + 8 + len(payload) + 4)
    data = head + payload
    return data + crc32c(data).to_bytes(4, "little")


def common_prefix(a, b):
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


# ---- structures ---------------------------------------------------------------

def data_file_table(files):
    """files: [(base_path, relative_path)] as bytes, in the order given:
    num_files, path prefix lengths (shared with the previous path), suffix
    lengths, base path lengths, then the suffixes."""
    paths = [b + r for b, r in files]
    prefix = [0] + [common_prefix(paths[i - 1], paths[i]) for i in range(1, len(paths))]
    # A prefix may run past a base path only into an identical base path.
    for i in range(1, len(files)):
        bi, bp = len(files[i][0]), len(files[i - 1][0])
        if prefix[i] > min(bi, bp) and not (bi == bp and prefix[i] >= bi):
            prefix[i] = min(bi, bp)
    out = varint(len(files))
    out += b"".join(varint(p) for p in prefix[1:])
    out += b"".join(varint(len(p) - prefix[i]) for i, p in enumerate(paths))
    out += b"".join(varint(len(b)) for b, _ in files)
    out += b"".join(p[prefix[i]:] for i, p in enumerate(paths))
    return out


def key_columns(keys):
    """Prefix lengths (from the second key) and suffix lengths, and the
    suffixes, of keys as a node stores them."""
    prefix = [common_prefix(keys[i - 1], keys[i]) for i in range(1, len(keys))]
    full = [0] + prefix
    return (b"".join(varint(p) for p in prefix),
            b"".join(varint(len(k) - full[i]) for i, k in enumerate(keys)),
            b"".join(k[full[i]:] for i, k in enumerate(keys)))


class Ref:
    """Bytes [offset, offset + length) of data file `file` (an index into
    the node's data file table)."""

    def __init__(self, file, offset, length):
        self.file, self.offset, self.length = file, offset, length


def leaf_body(files, entries, height=0, kinds=None):
    """A leaf: entries [(key relative to the node's prefix, bytes | Ref)].
    `kinds` overrides the value kind column."""
    keys = [k for k, _ in entries]
    pre, suf, text = key_columns(keys)
    out = bytes([height]) + data_file_table(files) + varint(len(entries)) + pre + suf + text
    out += b"".join(varint(v.length if isinstance(v, Ref) else len(v)) for _, v in entries)
    kinds = kinds or [1 if isinstance(v, Ref) else 0 for _, v in entries]
    out += bytes(kinds)
    refs = [v for _, v in entries if isinstance(v, Ref)]
    out += b"".join(varint(r.file) for r in refs)
    out += b"".join(varint(r.offset) for r in refs)
    out += b"".join(v for _, v in entries if not isinstance(v, Ref))
    return out


def interior_body(height, files, entries):
    """An interior node: entries [(key relative to the node's prefix,
    subtree common prefix length, Ref of the child, (num_keys,
    num_tree_bytes, num_indirect_value_bytes))]."""
    keys = [e[0] for e in entries]
    pre, suf, text = key_columns(keys)
    out = bytes([height]) + data_file_table(files) + varint(len(entries)) + pre + suf
    out += b"".join(varint(e[1]) for e in entries) + text
    for field in ("file", "offset", "length"):
        out += b"".join(varint(getattr(e[2], field)) for e in entries)
    for k in range(3):
        out += b"".join(varint(e[3][k]) for e in entries)
    return out


class Version:
    def __init__(self, generation, root, root_height, stats=(0, 0, 0), commit_time=0):
        self.generation, self.root, self.root_height = generation, root, root_height
        self.stats, self.commit_time = stats, commit_time


def manifest_body(files, versions, manifest_kind=0, max_inline=1024,
                  max_decoded_node_bytes=100000000, arity_log2=4, compression=None,
                  version_nodes=b"\x00", uuid=bytes(range(16))):
    """The manifest: config (uuid, kind, max inline value bytes, max decoded
    node bytes, version tree arity, compression), the data file table,
    the inline versions in columns, then the version tree nodes (by
    default none)."""
    out = uuid + bytes([manifest_kind]) + varint(max_inline) + varint(max_decoded_node_bytes)
    out += bytes([arity_log2])
    out += varint(0) if compression is None else varint(1) + compression.to_bytes(4, "little")
    out += data_file_table(files)
    out += varint(len(versions))
    out += b"".join(varint(v.generation) for v in versions)
    out += bytes(v.root_height for v in versions)
    for field in ("file", "offset", "length"):
        out += b"".join(varint(getattr(v.root, field)) for v in versions)
    for k in range(3):
        out += b"".join(varint(v.stats[k]) for v in versions)
    out += b"".join(u64le(v.commit_time) for v in versions)
    return out + version_nodes


# ---- whole databases ----------------------------------------------------------

class Files:
    """The data files of a database being built, by path from its root."""

    def __init__(self):
        self.data = {}

    def append(self, path, blob):
        buf = self.data.setdefault(path, bytearray())
        at = len(buf)
        buf += blob
        return at

    def write(self, root):
        for path, blob in self.data.items():
            full = os.path.join(root, path.decode())
            os.makedirs(os.path.dirname(full), exist_ok=True)
            with open(full, "wb") as f:
                f.write(blob)


class Node:
    """A node written: where (path from the root), its first full key,
    the common prefix of its keys, its statistics."""

    def __init__(self, path, offset, length, first, prefix, stats):
        self.path, self.offset, self.length = path, offset, length
        self.first, self.prefix, self.stats = first, prefix, stats


def _lcp(keys):
    n = len(keys[0])
    for k in keys[1:]:
        n = min(n, common_prefix(keys[0], k))
    return keys[0][:n]


def build(root, items, leaf_entries=2, fanout=2, max_inline=1024, compression=0,
          zstd=zstd_raw, value_files=(b"d/values-0", b"d/values-1"), node_file=b"d/nodes",
          root_file=b"d/root", manifest_base=b"", split_base=b"", versions_before=0):
    """Write a database of `items` ({key bytes: value bytes}) under `root`.

    Leaves hold `leaf_entries` keys, interior nodes `fanout` children; each
    node's keys are stored relative to its subtree's common prefix. Values
    longer than `max_inline` go to the value files in turn. The manifest
    reaches the root node with base path `manifest_base`; the root node
    (when it is interior, in `root_file`) reaches its children with base
    path `split_base`, so everything below it lives under
    manifest_base + split_base. `versions_before` older versions come
    first in the manifest, with roots that are not there (a reader must
    take the last). Returns the root Node (None when there are no items),
    the data files by path, and {key: (path, offset)} of the values kept
    in data files."""
    files = Files()
    keys = sorted(items)
    below = manifest_base  # where the nodes below the root live
    groups = [keys[i:i + leaf_entries] for i in range(0, len(keys), leaf_entries)]
    height = 0
    n = len(groups)
    while n > 1:
        height += 1
        n = (n + fanout - 1) // fanout
    if height:
        below = manifest_base + split_base
    turn = [0]
    where = {}  # key -> (data file path, offset) of each value kept out of line

    def put_leaf(group, at_root):
        home = manifest_base if at_root else below
        prefix = b"" if at_root else _lcp(group)  # the root's prefix is always empty
        table, entries, indirect = [], [], 0
        for k in group:
            v = items[k]
            if len(v) > max_inline:
                vf = value_files[turn[0] % len(value_files)]
                turn[0] += 1
                off = files.append(home + vf, v)
                where[k] = (home + vf, off)
                if (b"", vf) not in table:
                    table.append((b"", vf))
                entries.append((k[len(prefix):], (vf, off, len(v))))
                indirect += len(v)
            else:
                entries.append((k[len(prefix):], v))
        table.sort()
        entries = [(k, Ref(table.index((b"", v[0])), v[1], v[2]) if isinstance(v, tuple) else v)
                   for k, v in entries]
        blob = envelope(MAGIC_BTREE, leaf_body(table, entries), compression, zstd)
        path = home + (root_file if at_root else node_file)
        off = files.append(path, blob)
        return Node(path, off, len(blob), group[0], prefix, (len(group), len(blob), indirect))

    def put_interior(level, children, at_root):
        home = manifest_base if at_root else below
        base = split_base if at_root else b""
        prefix = b"" if at_root else _lcp([c.prefix for c in children])
        rel = [(base, c.path[len(home + base):]) for c in children]
        table = sorted(set(rel))
        entries = []
        for c, r in zip(children, rel):
            stats = c.stats
            entries.append((c.first[len(prefix):], len(c.prefix) - len(prefix),
                            Ref(table.index(r), c.offset, c.length), stats))
        blob = envelope(MAGIC_BTREE, interior_body(level, table, entries), compression, zstd)
        path = home + (root_file if at_root else node_file)
        off = files.append(path, blob)
        stats = tuple(sum(c.stats[k] for c in children) for k in range(3))
        stats = (stats[0], stats[1] + len(blob), stats[2])
        return Node(path, off, len(blob), children[0].first, prefix, stats)

    if not keys:
        top, height = None, 0
    else:
        nodes = [put_leaf(g, height == 0) for g in groups]
        level = 0
        while len(nodes) > 1:
            level += 1
            nodes = [put_interior(level, nodes[i:i + fanout], level == height)
                     for i in range(0, len(nodes), fanout)]
        top = nodes[0]
    if top is None:
        table = [(b"", b"")]
        root_ref = Ref(0, MISSING, MISSING)
        stats = (0, 0, 0)
    else:
        table = [(manifest_base, top.path[len(manifest_base):])]
        root_ref = Ref(0, top.offset, top.length)
        stats = top.stats
    versions = [Version(g + 1, Ref(0, 1000000 + g, 99), 0) for g in range(versions_before)]
    versions.append(Version(versions_before + 1, root_ref, height, stats, 1778718340771198958))
    manifest = envelope(MAGIC_MANIFEST, manifest_body(table, versions), compression, zstd)
    files.write(root)
    with open(os.path.join(root, "manifest.ocdbt"), "wb") as f:
        f.write(manifest)
    return top, files.data, where
