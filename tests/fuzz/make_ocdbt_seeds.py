#!/usr/bin/python3
"""Write the seed corpus of fuzz_ocdbt:

    /usr/bin/python3 tests/fuzz/make_ocdbt_seeds.py tests/fuzz/corpus/ocdbt ../shared/fixtures

A seed is a database in pieces, manifest.ocdbt, d/0 and d/1 joined by
"\\n--ocdbt--\\n" (fuzz_ocdbt.c splits them again): the b-tree nodes Orbax
wrote in its fixtures (v0 and v1) under a manifest naming them d/0,
databases tests/py/ocdbt_build.py builds (several levels, values in d/1,
zstd and plain nodes, older versions, an empty one), and a few that break
one rule (a cycle, a shared child, a bad CRC). Deterministic; files named
crash-* are never touched.
"""
import os
import shutil
import sys

sys.dont_write_bytecode = True
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "py"))
import ocdbt_build as ob  # noqa: E402
from ocdbt_build import Ref, Version, envelope, interior_body, leaf_body, manifest_body  # noqa: E402

SEP = b"\n--ocdbt--\n"
FIXTURE = {"v0": "orbax/v0_checkpoints/direct_checkpoint/checkpoint_metadata_present/"
                 "pytree_checkpointable_has_metadata",
           "v1": "orbax/v1_checkpoints/composite_checkpoint/checkpoint_metadata_present/"
                 "pytree_checkpointable_has_metadata/state"}


def seed(manifest, d0=b"", d1=None):
    return manifest + SEP + d0 + (SEP + d1 if d1 is not None else b"")


def manifest(ref, height=0, files=((b"", b"d/0"),), **kw):
    return envelope(ob.MAGIC_MANIFEST, manifest_body(list(files), [Version(1, ref, height)], **kw))


def built(tmp, items, **kw):
    """A database from the builder, its files read back as one seed."""
    shutil.rmtree(tmp, ignore_errors=True)
    _, files, _ = ob.build(tmp, items, node_file=b"d/0", root_file=b"d/0",
                           value_files=(b"d/1",), **kw)
    assert set(files) <= {b"d/0", b"d/1"}, files
    with open(os.path.join(tmp, "manifest.ocdbt"), "rb") as f:
        m = f.read()
    return seed(m, bytes(files.get(b"d/0", b"")), bytes(files[b"d/1"]) if b"d/1" in files else None)


def fixture_node(fixtures, version):
    d = os.path.join(fixtures, FIXTURE[version], "d")
    (name,) = os.listdir(d)
    with open(os.path.join(d, name), "rb") as f:
        return f.read()


def main():
    out, fixtures = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    tmp = os.path.join(out, ".tmp")
    seeds = {}
    for v in ("v0", "v1"):
        n = fixture_node(fixtures, v)
        seeds["orbax-%s" % v] = seed(manifest(Ref(0, 0, len(n))), n)
    items = {b"a/.zarray": b'{"zarr_format":2}', b"a/0": bytes(range(40)),
             b"b.c/.zarray": b"{}", b"b.c/0": bytes(300), b"b.c/1": b"x" * 200,
             b"params/w/0.0": bytes(range(150)), b"params/w/0.1": b""}
    seeds["levels-plain"] = built(tmp, items, max_inline=100)
    seeds["levels-zstd"] = built(tmp, items, max_inline=100, compression=1)
    seeds["wide-zstd-tool"] = built(tmp, items, leaf_entries=4, fanout=4, compression=1,
                                    zstd=ob.zstd_cli)
    seeds["versions"] = built(tmp, dict(list(items.items())[:3]), versions_before=2)
    missing = Ref(0, ob.MISSING, ob.MISSING)
    seeds["empty"] = seed(envelope(ob.MAGIC_MANIFEST,
                                   manifest_body([(b"", b"")], [Version(1, missing, 0)])))
    # A root whose child is itself, and two entries sharing one leaf.
    body = interior_body(1, [(b"", b"d/0")], [(b"a", 0, Ref(0, 0, 0), (1, 0, 0))])
    size = len(envelope(ob.MAGIC_BTREE, body))
    body = interior_body(1, [(b"", b"d/0")], [(b"a", 0, Ref(0, 0, size), (1, 0, 0))])
    seeds["cycle"] = seed(manifest(Ref(0, 0, size), height=1), envelope(ob.MAGIC_BTREE, body))
    leaf = envelope(ob.MAGIC_BTREE, leaf_body([(b"", b"d/1")], [(b"a", Ref(0, 0, 3))]))
    root = envelope(ob.MAGIC_BTREE, interior_body(
        1, [(b"", b"d/1")], [(b"a", 0, Ref(0, 3, len(leaf)), (1, 0, 0)),
                             (b"b", 0, Ref(0, 3, len(leaf)), (1, 0, 0))]))
    seeds["shared-child"] = seed(manifest(Ref(0, 0, len(root)), height=1), root, b"xyz" + leaf)
    bad = bytearray(fixture_node(fixtures, "v0"))
    bad[-1] ^= 1
    seeds["bad-crc"] = seed(manifest(Ref(0, 0, len(bad))), bytes(bad))
    seeds["path-escape"] = seed(manifest(Ref(0, 0, 30), files=[(b"", b"../d/0")]), b"")
    for name, data in seeds.items():
        with open(os.path.join(out, name), "wb") as f:
            f.write(data)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
