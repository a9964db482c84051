"""Tar-split records: the layer tar of an import is rebuilt byte for byte from its snapshot, or refused."""

from __future__ import annotations

import gzip
import io
import os
import sys
import tarfile
from pathlib import Path

import pytest
from kits.imagekit import Entry, describe_tree, gz, layer, sha256, zst
from minibuild.importer import import_tarball
from minicache import gc, tarsplit
from minicache.errors import DigestMismatch
from minicache.store import Store
from minicache.unpack import CHUNK, unpack_layer

DIR, SYM, LNK, CHR, BLK, FIFO = (
    tarfile.DIRTYPE,
    tarfile.SYMTYPE,
    tarfile.LNKTYPE,
    tarfile.CHRTYPE,
    tarfile.BLKTYPE,
    tarfile.FIFOTYPE,
)


def rebuilt(store: Store, chain_id: str) -> bytes:
    with tarsplit.open_layer_tar(store, chain_id) as f:
        return f.read()


def round_trip(store: Store, tar: bytes, source: bytes | None = None) -> str:
    """Unpack `source` (default: `tar`) with a record; assert the rebuilt tar is `tar` exactly."""
    info = unpack_layer(store, io.BytesIO(source if source is not None else tar), record=True)
    assert info.diff_id == sha256(tar)
    assert rebuilt(store, info.chain_id) == tar
    return info.chain_id


def pad_after(tar: bytes, content: bytes, filler: bytes) -> bytes:
    """`tar` with the zero padding after the block holding `content` replaced by `filler` bytes."""
    at = tar.index(content) + len(content)
    n = -at % 512
    return tar[:at] + (filler * n)[:n] + tar[at + n :]


EVERY_KIND = [
    Entry("etc/", DIR, mode=0o755),
    Entry("etc/passwd", data=b"root:x:0:0::/root:/bin/sh\n"),
    Entry("etc/empty"),
    Entry("etc/setuid", data=b"#!/bin/sh\n", mode=0o4755, uid=1000, gid=1000),
    Entry("etc/link", LNK, linkname="etc/passwd"),
    Entry("etc/sym", SYM, linkname="passwd"),
    Entry("dev/", DIR),
    Entry("dev/null", CHR, mode=0o666, devmajor=1, devminor=3),
    Entry("dev/loop9", BLK, mode=0o660, devmajor=7, devminor=9),
    Entry("dev/fifo", FIFO),
    Entry("old/.wh.gone"),
    Entry("opaque/.wh..wh..opq"),
    Entry("long/" + "n" * 150 + "/" + "f" * 120, data=b"a PAX path\n"),
    Entry("xattr", data=b"with attributes", pax={"SCHILY.xattr.user.note": "hello", "SCHILY.xattr.security.x": "y"}),
    Entry("unicode-\u00e9t\u00e9", data=b"utf-8 name"),
    Entry("big", data=os.urandom(CHUNK + 12345)),  # content across the reader's chunk boundary
    Entry("after-big", data=b"x" * 700),
]


@pytest.mark.root
def test_every_entry_kind_round_trips(store: Store) -> None:
    round_trip(store, layer(EVERY_KIND))


def test_gnu_long_names_and_trailing_records_round_trip(store: Store) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in [("d/" + "g" * 200, b"gnu long name"), ("l" * 90 + "/x", b"prefix")]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        link = tarfile.TarInfo("h" * 130)
        link.type, link.linkname = LNK, "d/" + "g" * 200
        tar.addfile(link)
    round_trip(store, buf.getvalue() + bytes(20 * 512))  # more zero records than any writer pads with


def test_non_zero_padding_and_trailer_are_kept(store: Store) -> None:
    tar = layer([Entry("a", data=b"content-a"), Entry("b", data=b"content-b")])
    tar = pad_after(tar, b"content-a", b"\xa5") + b"junk after the end-of-archive marker"
    round_trip(store, tar)


def test_data_of_entries_that_are_not_files_is_kept(store: Store) -> None:
    tar = layer(
        [Entry("s", SYM, linkname="t", data=b"symlink payload".ljust(512, b"\0"), size=15), Entry("f", data=b"f")]
    )
    round_trip(store, tar)


def test_compressed_sources_rebuild_the_uncompressed_tar(store: Store) -> None:
    tar = layer(EVERY_KIND[:6])
    round_trip(store, tar, gz(tar))
    store2 = Store(Path(store.root).parent / "second-store")
    round_trip(store2, tar, zst(tar))


def test_contents_across_chunk_boundaries_round_trip(store: Store) -> None:
    """Many files of a few hundred KB: contents and headers straddle the reader's 4 MB chunks."""
    round_trip(store, layer([Entry(f"d/f{i}", data=os.urandom(300_000 + i)) for i in range(40)]))


@pytest.mark.root
def test_files_the_layer_replaces_or_removes_are_saved(store: Store) -> None:
    tar = layer(
        [
            Entry("dup", data=b"first version"),
            Entry("keep", LNK, linkname="dup"),  # the first version lives on through this link
            Entry("dup", data=b"second version, longer"),
            Entry("dir/", DIR),
            Entry("dir/inner", data=b"inside a directory that a file replaces"),
            Entry("dir/sub/deeper", data=b"deeper"),
            Entry("dir", data=b"now a file"),
            Entry("gone", data=b"replaced by a symlink"),
            Entry("gone", SYM, linkname="dup"),
            Entry("same", data=b"AAAA"),
            Entry("same", data=b"BBBB"),  # same size: the record must not read the later one twice
        ]
    )
    chain = round_trip(store, tar)
    fs = Path(store.layers.fs(chain))
    assert (fs / "dup").read_bytes() == b"second version, longer" and (fs / "dir").read_bytes() == b"now a file"
    assert sorted(os.listdir(Path(store.layers.path(chain)) / tarsplit.RECORD_DIR / tarsplit.SAVED_DIR)) == [
        "0",
        "2",
        "3",
        "5",
        "6",
    ]


@pytest.mark.root
def test_a_directory_deeper_than_the_recursion_limit_replaced_by_a_file(store: Store) -> None:
    """The record keeps aside the files of a replaced directory however deep it nests (no RecursionError)."""
    depth = sys.getrecursionlimit() + 100
    deep = [Entry("d/" * (level + 1), DIR) for level in range(depth)]
    tar = layer([*deep, Entry("d/" * depth + "f", data=b"at the bottom"), Entry("d", data=b"now a file")])
    chain = round_trip(store, tar)
    assert (Path(store.layers.fs(chain)) / "d").read_bytes() == b"now a file"
    assert os.listdir(Path(store.layers.path(chain)) / tarsplit.RECORD_DIR / tarsplit.SAVED_DIR) == ["0"]


@pytest.mark.root
def test_files_written_through_symlinked_directories(store: Store) -> None:
    tar = layer([Entry("real/", DIR), Entry("alias", SYM, linkname="real"), Entry("alias/f", data=b"via the link")])
    chain = round_trip(store, tar)
    assert (Path(store.layers.fs(chain)) / "real" / "f").read_bytes() == b"via the link"


@pytest.mark.root
def test_a_layer_over_a_parent_round_trips(store: Store) -> None:
    base = unpack_layer(store, io.BytesIO(layer([Entry("usr/", DIR), Entry("usr/a", data=b"a")])))
    top = layer([Entry("usr/b", data=b"b"), Entry("usr/.wh.a"), Entry("usr/c", LNK, linkname="usr/a")])
    info = unpack_layer(store, io.BytesIO(top), parent=base.chain_id, record=True)
    assert rebuilt(store, info.chain_id) == top


def test_busybox_rootfs_round_trips(store: Store, busybox_rootfs: Path) -> None:
    tar = subprocess_tar(busybox_rootfs)
    round_trip(store, tar)


def subprocess_tar(root: Path) -> bytes:
    import subprocess

    return subprocess.run(["tar", "-C", str(root), "--xattrs", "-cf", "-", "."], capture_output=True, check=True).stdout


def test_no_record_without_asking(store: Store) -> None:
    info = unpack_layer(store, io.BytesIO(layer([Entry("a", data=b"a")])))
    assert not tarsplit.has_record(store, info.chain_id)


# -- tampering ----------------------------------------------------------------------------------------------
TAMPER_TAR = layer([Entry("bin/", DIR), Entry("bin/tool", data=b"the original tool\n"), Entry("z", data=b"z" * 5000)])


def read_until_error(store: Store, chain: str) -> tuple[int, DigestMismatch]:
    """Read the rebuilt tar in small pieces; (bytes handed out before the error, the error)."""
    got = 0
    with tarsplit.open_layer_tar(store, chain) as f, pytest.raises(DigestMismatch) as err:
        while piece := f.read(512):
            got += len(piece)
    return got, err.value


@pytest.mark.root
def test_a_changed_file_is_detected_before_the_last_bytes(store: Store) -> None:
    chain = round_trip(store, TAMPER_TAR)
    (Path(store.layers.fs(chain)) / "bin/tool").write_bytes(b"the evil tool!!!!\n")  # same size
    got, err = read_until_error(store, chain)
    assert got < len(TAMPER_TAR)
    assert "cannot be rebuilt" in str(err) and "import it again" in err.hint


@pytest.mark.root
@pytest.mark.parametrize("how", ["symlink", "removed", "fifo", "longer"])
def test_a_replaced_file_is_refused_and_never_followed(store: Store, tmp_path: Path, how: str) -> None:
    chain = round_trip(store, TAMPER_TAR)
    target = Path(store.layers.fs(chain)) / "bin/tool"
    target.unlink()
    if how == "symlink":
        outside = tmp_path / "secret"
        outside.write_bytes(b"the original tool\n")  # even the right bytes, if reached by a symlink
        target.symlink_to(outside)
    elif how == "fifo":
        os.mkfifo(target)
    elif how == "longer":
        target.write_bytes(b"the original tool\nplus more")
    got, err = read_until_error(store, chain)
    assert "/bin/tool" in str(err) and got < len(TAMPER_TAR)


@pytest.mark.root
def test_a_directory_swapped_for_a_symlink_is_refused(store: Store, tmp_path: Path) -> None:
    chain = round_trip(store, TAMPER_TAR)
    fs = Path(store.layers.fs(chain))
    elsewhere = tmp_path / "elsewhere"
    (fs / "bin").rename(elsewhere)
    (fs / "bin").symlink_to(elsewhere)
    read_until_error(store, chain)


@pytest.mark.root
@pytest.mark.parametrize("part", [tarsplit.RAW_FILE, tarsplit.INDEX_FILE])
@pytest.mark.parametrize("damage", ["truncate", "garble"])
def test_a_corrupt_record_is_refused(store: Store, part: str, damage: str) -> None:
    chain = round_trip(store, TAMPER_TAR)
    path = Path(store.layers.path(chain)) / tarsplit.RECORD_DIR / part
    data = path.read_bytes()
    if damage == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:
        plain = bytearray(gzip.decompress(data))
        plain[len(plain) // 3] ^= 0x41
        path.write_bytes(gzip.compress(bytes(plain)))
    _, err = read_until_error(store, chain)
    assert "cannot be rebuilt" in str(err)


# -- the importer -------------------------------------------------------------------------------------------
def test_flat_import_keeps_a_record_and_no_second_copy(store: Store, busybox_rootfs: Path) -> None:
    tar = subprocess_tar(busybox_rootfs)
    result = import_tarball(store, io.BytesIO(tar), tag="bb:1")
    record = store.images.get(result.images[0][0])
    layer_ref = record.layers[0]
    assert layer_ref.digest == layer_ref.diff_id == sha256(tar) and layer_ref.size == len(tar)
    assert not store.blobs.has(layer_ref.digest)
    assert rebuilt(store, layer_ref.chain_id) == tar
    assert describe_tree(Path(store.layers.fs(layer_ref.chain_id))) == describe_tree(busybox_rootfs)
    assert gc.check(store) == []
    gc.collect(store)
    assert rebuilt(store, layer_ref.chain_id) == tar  # prune keeps the record of a named image's layer


def test_a_layer_imported_without_record_gets_one_on_the_next_import(store: Store) -> None:
    tar = layer([Entry("a", data=b"a"), Entry("a", data=b"b")])
    first = import_tarball(store, io.BytesIO(tar), keep_layer_blob=False)
    chain = store.images.get(first.images[0][0]).layers[0].chain_id
    assert not tarsplit.has_record(store, chain)
    import_tarball(store, io.BytesIO(tar))
    assert rebuilt(store, chain) == tar
    assert gc.check(store) == []
    assert os.listdir(store.tmp_dir) == []
