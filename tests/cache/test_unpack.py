"""The unpacker: faithful to what a layer says, and unmoved by what a hostile layer tries."""

from __future__ import annotations

import io
import os
import stat
import tarfile
from pathlib import Path

import pytest
from kits.imagekit import Entry, describe_tree, gz, layer, sha256, zst
from minicache.errors import DigestMismatch, InvalidArchive, TooLarge
from minicache.store import Store
from minicache.unpack import Limits, unpack_layer

DIR, SYM, LNK, CHR, FIFO = tarfile.DIRTYPE, tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE, tarfile.FIFOTYPE


def unpack(store: Store, tar: bytes, parent: str | None = None, **kw) -> tuple[str, Path]:
    info = unpack_layer(store, io.BytesIO(tar), parent=parent, **kw)
    return info.chain_id, Path(store.layers.fs(info.chain_id))


def assert_nothing_committed(store: Store, before: set[str] | None = None) -> None:
    assert set(store.layers.all()) == (before or set())
    assert os.listdir(store.tmp_dir) == []


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A directory outside the store that hostile layers try to reach."""
    d = tmp_path / "outside"
    d.mkdir()
    (d / "victim").write_text("untouched")
    return d


# -- faithful unpacking -----------------------------------------------------------------------------------


@pytest.mark.root
@pytest.mark.parametrize("compress", [lambda b: b, gz, zst], ids=["plain", "gzip", "zstd"])
def test_keeps_every_kind_of_entry(store: Store, compress) -> None:
    tar = layer(
        [
            Entry("etc", DIR, mode=0o755, mtime=1_600_000_000),
            Entry("etc/passwd", data=b"root:x:0:0\n", mode=0o644, uid=0, gid=0, mtime=1_600_000_001),
            Entry("bin", DIR, mode=0o755),
            Entry("bin/su", data=b"#!/bin/sh\n", mode=0o4755, uid=0, gid=0),
            Entry("bin/group-file", data=b"g", mode=0o2750, uid=1000, gid=50),
            Entry("tmp", DIR, mode=0o1777),
            Entry("bin/sh", SYM, linkname="busybox", uid=5, gid=6),
            Entry("bin/busybox", data=b"ELF"),
            Entry("bin/hard", LNK, linkname="bin/busybox"),
            Entry("dev", DIR),
            Entry("dev/null", CHR, mode=0o666, devmajor=1, devminor=3),
            Entry("run", DIR),
            Entry("run/fifo", FIFO, mode=0o600),
            Entry(
                "attr",
                data=b"x",
                pax={
                    "SCHILY.xattr.user.note": "hello",
                    "SCHILY.xattr.security.capability": "\x01\x00\x00\x02" + "\x00" * 16,
                },
            ),
        ]
    )
    chain, fs = unpack(store, compress(tar))
    assert chain == sha256(tar)
    assert (fs / "etc/passwd").read_bytes() == b"root:x:0:0\n"
    assert (fs / "etc/passwd").stat().st_mtime == 1_600_000_001
    assert (fs / "etc").stat().st_mtime == 1_600_000_000
    assert stat.S_IMODE((fs / "bin/su").stat().st_mode) == 0o4755
    g = (fs / "bin/group-file").stat()
    assert (stat.S_IMODE(g.st_mode), g.st_uid, g.st_gid) == (0o2750, 1000, 50)
    assert stat.S_IMODE((fs / "tmp").stat().st_mode) == 0o1777
    assert os.readlink(fs / "bin/sh") == "busybox"
    assert (fs / "bin/sh").lstat().st_uid == 5
    assert (fs / "bin/hard").stat().st_ino == (fs / "bin/busybox").stat().st_ino
    null = (fs / "dev/null").lstat()
    assert stat.S_ISCHR(null.st_mode) and null.st_rdev == os.makedev(1, 3)
    assert stat.S_ISFIFO((fs / "run/fifo").lstat().st_mode)
    assert os.getxattr(fs / "attr", "user.note") == b"hello"
    assert os.getxattr(fs / "attr", "security.capability")[:4] == b"\x01\x00\x00\x02"
    assert store.layers.info(chain).size == len(b"root:x:0:0\n#!/bin/sh\ngELFx")


@pytest.mark.root
def test_whiteouts_become_overlay_whiteouts(store: Store) -> None:
    base, _ = unpack(
        store, layer([Entry("a", DIR), Entry("a/old"), Entry("keep", DIR), Entry("keep/x"), Entry("gone")])
    )
    _, fs = unpack(
        store,
        layer([Entry("a/.wh..wh..opq"), Entry("a/new"), Entry(".wh.gone"), Entry("keep/.wh.x")]),
        parent=base,
    )
    assert os.getxattr(fs / "a", "trusted.overlay.opaque") == b"y"
    for name in ("gone", "keep/x"):
        st = (fs / name).lstat()
        assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert (fs / "a/new").exists()
    assert not (fs / ".wh.gone").exists()


@pytest.mark.root
def test_whiteout_does_not_hide_a_file_of_the_same_layer(store: Store) -> None:
    _, fs = unpack(store, layer([Entry("f", data=b"mine"), Entry(".wh.f")]))
    assert (fs / "f").read_bytes() == b"mine"


def test_same_layer_twice_is_stored_once(store: Store) -> None:
    tar = layer([Entry("x", data=b"1")])
    a, _ = unpack(store, tar)
    b, _ = unpack(store, gz(tar))
    assert a == b and store.layers.all() == [a]
    assert unpack_layer(store, io.BytesIO(b"not read"), expected_diff_id=sha256(tar)).chain_id == a


def test_chain_ids_follow_the_parent(store: Store) -> None:
    base, _ = unpack(store, layer([Entry("x")]))
    top = layer([Entry("y")])
    chain, _ = unpack(store, top, parent=base)
    assert chain == sha256(f"{base} {sha256(top)}".encode())
    assert store.layers.info(chain).parent == base


def test_diff_id_mismatch_commits_nothing(store: Store) -> None:
    with pytest.raises(DigestMismatch):
        unpack(store, layer([Entry("x")]), expected_diff_id=sha256(b"something else"))
    assert_nothing_committed(store)


@pytest.mark.root
def test_later_entries_replace_earlier_ones(store: Store) -> None:
    _, fs = unpack(
        store,
        layer(
            [
                Entry("d", DIR),
                Entry("d/f", data=b"1"),
                Entry("d", data=b"now a file"),
                Entry("e"),
                Entry("e", DIR),
                Entry("e/inner", data=b"2"),
            ]
        ),
    )
    assert (fs / "d").read_bytes() == b"now a file"
    assert (fs / "e/inner").read_bytes() == b"2"


def test_missing_parent_directories_are_created(store: Store) -> None:
    _, fs = unpack(store, layer([Entry("usr/local/bin/tool", data=b"t", mode=0o755)]))
    assert (fs / "usr/local/bin/tool").read_bytes() == b"t"


def test_leading_slash_and_dot_names_stay_inside(store: Store) -> None:
    _, fs = unpack(store, layer([Entry("/abs", data=b"a"), Entry("./dot/./x", data=b"b")]))
    assert (fs / "abs").read_bytes() == b"a"
    assert (fs / "dot/x").read_bytes() == b"b"


@pytest.mark.root
def test_hardlink_to_a_lower_layer_file_copies_it_up(store: Store) -> None:
    base, _ = unpack(store, layer([Entry("bin", DIR), Entry("bin/tool", data=b"lower", mode=0o751, uid=7)]))
    _, fs = unpack(store, layer([Entry("bin/alias", LNK, linkname="bin/tool")]), parent=base)
    assert (fs / "bin/alias").read_bytes() == b"lower"
    assert (fs / "bin/tool").stat().st_ino == (fs / "bin/alias").stat().st_ino
    st = (fs / "bin/tool").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid) == (0o751, 7)


@pytest.mark.root
def test_writing_below_a_lower_directory_copies_its_metadata(store: Store) -> None:
    base, _ = unpack(store, layer([Entry("srv", DIR, mode=0o710, uid=3, gid=4)]))
    _, fs = unpack(store, layer([Entry("srv/new", data=b"n")]), parent=base)
    st = (fs / "srv").stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o710, 3, 4)


# -- hostile layers --------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["../escape", "a/../../escape", "a/../b", ".."])
def test_dotdot_names_are_refused(store: Store, name: str) -> None:
    with pytest.raises(InvalidArchive, match=r"'\.\.'"):
        unpack(store, layer([Entry("a", DIR), Entry(name, data=b"x")]))
    assert_nothing_committed(store)


@pytest.mark.parametrize("target", ["{outside}", "../../../../../../../../{outside}", "/../../{outside}"])
def test_file_written_through_a_symlink_stays_inside(store: Store, outside: Path, target: str) -> None:
    link = target.format(outside=str(outside).lstrip("/") if not target.startswith("{") else str(outside))
    _, fs = unpack(store, layer([Entry("evil", SYM, linkname=link), Entry("evil/victim", data=b"pwned")]))
    assert (outside / "victim").read_text() == "untouched"
    landed = [p for p in fs.rglob("victim")]
    assert len(landed) == 1 and landed[0].read_bytes() == b"pwned"
    assert str(landed[0].resolve()).startswith(str(fs.resolve()))


def test_file_written_through_a_symlink_of_a_lower_layer_stays_inside(store: Store, outside: Path) -> None:
    base, base_fs = unpack(
        store, layer([Entry("etc", SYM, linkname=str(outside)), Entry("up", SYM, linkname="../../..")])
    )
    _, fs = unpack(store, layer([Entry("etc/victim", data=b"pwned"), Entry("up/x", data=b"y")]), parent=base)
    assert (outside / "victim").read_text() == "untouched"
    assert (fs / str(outside).lstrip("/") / "victim").read_bytes() == b"pwned"
    assert (fs / "x").read_bytes() == b"y"
    assert not (base_fs / "x").exists()


def test_symlink_replacing_a_directory_cannot_redirect_later_entries(store: Store, outside: Path) -> None:
    _, fs = unpack(
        store,
        layer([Entry("d", DIR), Entry("d", SYM, linkname=str(outside)), Entry("d/victim", data=b"pwned")]),
    )
    assert (outside / "victim").read_text() == "untouched"
    assert os.readlink(fs / "d") == str(outside)


def test_symlink_loop_is_refused(store: Store) -> None:
    with pytest.raises(InvalidArchive, match="symbolic links"):
        unpack(store, layer([Entry("a", SYM, linkname="b"), Entry("b", SYM, linkname="a"), Entry("a/x")]))
    assert_nothing_committed(store)


@pytest.mark.parametrize("target", ["/etc/passwd", "../../../../etc/passwd", "nonexistent"])
def test_hardlinks_to_outside_or_missing_targets_are_refused(store: Store, target: str) -> None:
    with pytest.raises(InvalidArchive):
        unpack(store, layer([Entry("link", LNK, linkname=target)]))
    assert_nothing_committed(store)


def test_hardlink_through_a_symlink_out_stays_inside(store: Store, outside: Path) -> None:
    with pytest.raises(InvalidArchive):
        unpack(store, layer([Entry("o", SYM, linkname=str(outside)), Entry("link", LNK, linkname="o/victim")]))
    assert (outside / "victim").stat().st_nlink == 1
    assert_nothing_committed(store)


def test_hardlink_to_a_symlink_links_the_symlink_itself(store: Store, outside: Path) -> None:
    _, fs = unpack(store, layer([Entry("s", SYM, linkname=str(outside / "victim")), Entry("h", LNK, linkname="s")]))
    assert os.readlink(fs / "h") == str(outside / "victim")
    assert (outside / "victim").stat().st_nlink == 1


def test_file_below_a_regular_file_is_refused(store: Store) -> None:
    with pytest.raises(InvalidArchive, match="not a directory"):
        unpack(store, layer([Entry("f", data=b"x"), Entry("f/g", data=b"y")]))
    assert_nothing_committed(store)


@pytest.mark.root
def test_overlay_xattrs_from_a_layer_are_refused(store: Store) -> None:
    with pytest.raises(InvalidArchive, match="overlayfs"):
        unpack(store, layer([Entry("d", DIR, pax={"SCHILY.xattr.trusted.overlay.redirect": "/etc"})]))
    assert_nothing_committed(store)


@pytest.mark.parametrize("name", [".wh.", ".wh..", "d/.wh..."])
def test_malformed_whiteouts_are_refused(store: Store, name: str) -> None:
    with pytest.raises(InvalidArchive):
        unpack(store, layer([Entry("d", DIR), Entry(name)]))
    assert_nothing_committed(store)


def test_device_nodes_need_root(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(InvalidArchive, match="only root"):
        unpack(store, layer([Entry("dev/sda", tarfile.BLKTYPE, devmajor=8, devminor=0)]))
    assert_nothing_committed(store)


def test_uncompressed_size_limit_stops_a_bomb_early(store: Store) -> None:
    bomb = gz(layer([Entry("zeros", data=b"\0" * (8 << 20))]))
    assert len(bomb) < 64 << 10
    with pytest.raises(TooLarge, match="larger than"):
        unpack(store, bomb, limits=Limits(max_bytes=1 << 20))
    assert_nothing_committed(store)


def test_entry_count_limit(store: Store) -> None:
    with pytest.raises(TooLarge, match="entries"):
        unpack(store, layer([Entry(f"f{i}") for i in range(50)]), limits=Limits(max_entries=10))
    assert_nothing_committed(store)


def test_a_file_larger_than_the_free_space_is_refused(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.statvfs

    class Tiny:
        def __init__(self, st: os.statvfs_result) -> None:
            self.f_frsize, self.f_bavail = st.f_frsize, 10

    monkeypatch.setattr(os, "statvfs", lambda p: Tiny(real(p)))
    huge = layer([Entry("big", data=b"\0" * (65 << 20))])
    with pytest.raises(TooLarge, match="free"):
        unpack(store, huge)
    assert_nothing_committed(store)


def test_oversized_pax_header_is_refused_before_it_is_read(store: Store) -> None:
    tar = layer([Entry("x", pax={"comment": "A" * (2 << 20)})])
    with pytest.raises(TooLarge, match="extended header"):
        unpack(store, tar)
    assert_nothing_committed(store)


@pytest.mark.parametrize(
    "blob",
    [
        pytest.param(layer([Entry("f", data=b"x" * 100_000)])[:3000], id="truncated-tar"),
        pytest.param(gz(layer([Entry("f", data=os.urandom(100_000))]))[:5000], id="truncated-gzip"),
        pytest.param(zst(layer([Entry("f", data=os.urandom(100_000))]))[:5000], id="truncated-zstd"),
        pytest.param(gz(layer([Entry("f", data=b"y" * 100_000)]))[:-8] + b"\0" * 8, id="bad-gzip-crc"),
        pytest.param(b"\x1f\x8b" + os.urandom(2000), id="garbage-gzip"),
        pytest.param(os.urandom(5000), id="garbage"),
        pytest.param(b"", id="empty"),
    ],
)
def test_corrupt_streams_are_refused_cleanly(store: Store, blob: bytes) -> None:
    with pytest.raises(InvalidArchive):
        unpack(store, blob)
    assert_nothing_committed(store)


def test_a_failed_unpack_keeps_what_was_stored(store: Store) -> None:
    good, fs = unpack(store, layer([Entry("keep", data=b"k")]))
    with pytest.raises(InvalidArchive):
        unpack(store, layer([Entry("../x")]), parent=good)
    assert_nothing_committed(store, {good})
    assert (fs / "keep").read_bytes() == b"k"


# -- tar dialects: the header parser against GNU tar ----------------------------------------------------


def _dialect_tar(fmt: int) -> bytes:
    """Every header feature a writer may use: long names and link targets, the ustar prefix, big owners."""
    deep = "/".join(["d" * 40] * 3)  # 122 characters: ustar splits it into prefix + name, GNU/PAX extend
    far = "t" * (120 if fmt != tarfile.USTAR_FORMAT else 99)  # GNU/PAX: longer than the 100-byte link field
    big_id = 3_000_000 if fmt != tarfile.USTAR_FORMAT else 2_000_000  # > 0o7777777: base-256 in GNU
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:

        def add(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", **kw) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.size = kind, len(data)
            info.mode, info.mtime = kw.get("mode", 0o644), kw.get("mtime", 1_650_000_000)
            info.uid, info.gid = kw.get("uid", 0), kw.get("gid", 0)
            info.linkname = kw.get("linkname", "")
            tar.addfile(info, io.BytesIO(data) if data else None)

        add("./", DIR, mode=0o755)
        add(far, data=b"far target")
        add("short-link", SYM, linkname=far)
        parts = deep.split("/")
        for i in range(1, len(parts) + 1):
            add("/".join(parts[:i]), DIR, mode=0o750, uid=big_id, gid=big_id)
        add(f"{deep}/{'f' * 90}", data=b"deep file", mode=0o4755, uid=big_id, gid=7)
        add(f"{deep}/hard", LNK, linkname=far)
        add("plain", data=b"p" * 5000, mode=0o600, mtime=1_000_000_000)
        add("dir-with-slash/", tarfile.AREGTYPE, mode=0o700)  # pre-POSIX: a directory by its trailing slash
    return buf.getvalue()


@pytest.mark.root
@pytest.mark.parametrize(
    "fmt", [tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT, tarfile.PAX_FORMAT], ids=["gnu", "ustar", "pax"]
)
def test_header_dialects_unpack_as_gnu_tar_extracts_them(store: Store, tmp_path: Path, fmt: int) -> None:
    import subprocess

    tar = _dialect_tar(fmt)
    _, fs = unpack(store, tar)
    reference = tmp_path / "gnu-tar"
    reference.mkdir()
    subprocess.run(["tar", "--numeric-owner", "-xpf", "-", "-C", str(reference)], input=tar, check=True)
    ours, theirs = describe_tree(fs, exact=True), describe_tree(reference, exact=True)
    assert ours == theirs
    assert any(v[2] >= 2_000_000 for v in ours.values())  # the big owners made it
    assert os.stat(reference).st_mode & 0o777 == fs.stat().st_mode & 0o777 == 0o755


def test_a_header_with_a_bad_checksum_is_refused(store: Store) -> None:
    tar = bytearray(layer([Entry("a", data=b"1"), Entry("b", data=b"2")]))
    second = tar.index(b"b\0", 512)  # the second entry's header (after a's PAX header, header and data)
    tar[second + 1] = ord("x")
    with pytest.raises(InvalidArchive, match="checksum"):
        unpack(store, bytes(tar))
    assert_nothing_committed(store)


def test_a_stream_cut_at_an_entry_boundary_is_refused(store: Store) -> None:
    """Without its end-of-archive marker a layer may have lost whole entries: refuse, never commit a part."""
    tar = layer([Entry("a", data=b"1"), Entry("b", data=b"2")])
    cut = tar.rstrip(b"\0")
    cut += b"\0" * (-len(cut) % 512)
    with pytest.raises(InvalidArchive, match="end-of-archive"):
        unpack(store, cut)
    assert_nothing_committed(store)


def test_bytes_after_the_end_marker_count_in_the_diff_id(store: Store) -> None:
    """The diff_id is the digest of the whole uncompressed stream, record padding included (as Docker's)."""
    tar = layer([Entry("a", data=b"1")]) + b"\0" * 10240
    chain, fs = unpack(store, tar, expected_diff_id=sha256(tar))
    assert chain == sha256(tar) and (fs / "a").read_bytes() == b"1"


def test_sparse_and_unknown_entries_are_refused(store: Store) -> None:
    with pytest.raises(InvalidArchive, match="sparse"):
        unpack(store, layer([Entry("s", data=b"x", pax={"GNU.sparse.major": "1"})]))
    with pytest.raises(InvalidArchive, match="unsupported type"):
        unpack(store, layer([Entry("odd", b"Z")]))
    assert_nothing_committed(store)


# -- the hand-written tar reader ----------------------------------------------------------------------------
def _tar_with(fmt: int, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=fmt) as tar:
        for info, data in members:
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name: str, data: bytes = b"", **kw) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    for k, v in kw.items():
        setattr(info, k, v)
    return info, data


@pytest.mark.parametrize(
    "fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT], ids=["ustar", "gnu", "pax"]
)
def test_header_formats_long_names_and_big_numbers(store: Store, fmt: int) -> None:
    long_dir = "/".join(["component"] * 12)  # > 100 bytes: ustar prefix, GNU long name or PAX path
    members = [
        _info(f"{long_dir}/file", b"deep", mtime=1_600_000_000),
        _info(".hidden/./x", b"h"),  # not a plain name: the general path cleans it
        _info("plain", b"p" * 3000, mode=0o640),
    ]
    if fmt != tarfile.USTAR_FORMAT:
        members.append(_info("big-uid", b"u", uid=3_000_000, gid=3_000_001))  # base-256 (GNU) or PAX
    _, fs = unpack(store, _tar_with(fmt, members))
    assert (fs / long_dir / "file").read_bytes() == b"deep"
    assert (fs / long_dir / "file").stat().st_mtime == 1_600_000_000
    assert (fs / ".hidden/x").read_bytes() == b"h"
    assert stat.S_IMODE((fs / "plain").stat().st_mode) == 0o640
    if fmt != tarfile.USTAR_FORMAT and os.geteuid() == 0:
        st = (fs / "big-uid").stat()
        assert (st.st_uid, st.st_gid) == (3_000_000, 3_000_001)


def test_data_of_entries_that_are_not_files_is_skipped(store: Store) -> None:
    sym = tarfile.TarInfo("link")
    sym.type, sym.linkname, sym.size = SYM, "target", 700  # a symlink that carries bytes: they are skipped
    raw = sym.tobuf(tarfile.USTAR_FORMAT, "utf-8", "strict") + b"z" * 700 + bytes(-700 % 512)
    raw += layer([Entry("after", data=b"a")])
    _, fs = unpack(store, raw)
    assert os.readlink(fs / "link") == "target"
    assert (fs / "after").read_bytes() == b"a"


@pytest.mark.root
def test_many_directories_and_hardlinks_keep_descriptors_straight(store: Store) -> None:
    """More directories than the descriptor cache holds, with hardlinks across them: every link lands in
    its own directory (a descriptor closed and reused while still in use would misplace it)."""
    entries = []
    for i in range(300):
        entries += [Entry(f"d{i}", DIR), Entry(f"d{i}/f", data=f"{i}".encode())]
    entries += [Entry(f"d{i}/link", LNK, linkname=f"d{(i * 7) % 300}/f") for i in range(300)]
    _, fs = unpack(store, layer(entries))
    for i in range(300):
        assert (fs / f"d{i}/link").read_bytes() == f"{(i * 7) % 300}".encode()


def test_header_checksum_mismatch(store: Store) -> None:
    tar = bytearray(layer([Entry("a", data=b"a")]))
    tar[0] ^= 0x01
    with pytest.raises(InvalidArchive, match="checksum"):
        unpack(store, bytes(tar))
    assert_nothing_committed(store)


def _with_field(tar: bytes, offset: int, value: bytes) -> bytes:
    """The first header of `tar` with the field at `offset` replaced and its checksum made valid again."""
    header = bytearray(tar[:512])
    header[offset : offset + len(value)] = value
    header[148:156] = b" " * 8
    header[148:156] = b"%06o\0 " % sum(header)
    return bytes(header) + tar[512:]


def test_a_negative_size_is_refused(store: Store) -> None:
    # "-1" parses as octal for int(); a negative size would move the stream backwards.
    tar = _with_field(layer([Entry("a", data=b"a")]), 124, b"-0000000001\0")
    with pytest.raises(InvalidArchive, match="negative size"):
        unpack(store, tar)
    assert_nothing_committed(store)


def test_a_negative_pax_size_is_refused(store: Store) -> None:
    info = tarfile.TarInfo("a")
    info.size = 1
    info.pax_headers = {"size": "-1"}
    tar = _tar_with(tarfile.PAX_FORMAT, [(info, b"a")])
    with pytest.raises(InvalidArchive, match="PAX"):
        unpack(store, tar)
    assert_nothing_committed(store)


def test_missing_end_of_archive_marker_is_truncation(store: Store) -> None:
    tar = layer([Entry("a", data=b"a" * 600)])
    with pytest.raises(InvalidArchive, match="truncated"):
        unpack(store, tar[:1536])  # header + content + padding, then nothing
    assert_nothing_committed(store)


def test_bomb_after_the_end_marker(store: Store) -> None:
    bomb = gz(layer([Entry("a", data=b"a")]) + bytes(32 << 20))
    assert len(bomb) < 256 << 10
    with pytest.raises(TooLarge, match="after its end-of-archive"):
        unpack(store, bomb)
    assert_nothing_committed(store)


def test_sparse_files_are_refused(store: Store) -> None:
    with pytest.raises(InvalidArchive, match="sparse"):
        unpack(store, layer([Entry("s", data=b"x", pax={"GNU.sparse.major": "1", "GNU.sparse.minor": "0"})]))
    assert_nothing_committed(store)


def test_unsupported_entry_type_is_refused(store: Store) -> None:
    with pytest.raises(InvalidArchive, match="unsupported type"):
        unpack(store, layer([Entry("v", type=b"V")]))
    assert_nothing_committed(store)


def test_no_thread_outlives_an_unpack(store: Store) -> None:
    """The reader and flusher threads end with the call, failed or not: minirun forks only unthreaded."""
    import threading

    before = threading.active_count()
    unpack(store, gz(layer([Entry("a", data=os.urandom(3 << 20))])))
    with pytest.raises(InvalidArchive):
        unpack(store, gz(layer([Entry("b", data=os.urandom(3 << 20)), Entry("../evil")])))
    with pytest.raises(InvalidArchive):
        unpack(store, gz(layer([Entry("c", data=os.urandom(3 << 20))]))[:100_000])
    assert threading.active_count() == before


@pytest.mark.root
def test_directory_replacing_a_symlink_cannot_be_redirected(store: Store, outside: Path) -> None:
    _, fs = unpack(store, layer([Entry("s", SYM, linkname=str(outside)), Entry("s", DIR), Entry("s/f", data=b"in")]))
    assert (fs / "s").is_dir() and not (fs / "s").is_symlink()
    assert (fs / "s/f").read_bytes() == b"in"
    assert sorted(os.listdir(outside)) == ["victim"]


def test_absurd_size_in_a_header_is_refused_before_writing(store: Store) -> None:
    """A header that claims a petabyte: refused at once (free space), not after filling the disk."""
    with pytest.raises(TooLarge):
        unpack(store, layer([Entry("huge", data=b"x" * 100, size=1 << 50)]))
    assert_nothing_committed(store)


@pytest.mark.root
def test_a_directory_copied_up_keeps_its_mtime(store: Store) -> None:
    """As overlayfs's own copy-up: the merged view must not show the unpack time on untouched parents."""
    base, _ = unpack(store, layer([Entry("usr", DIR, mtime=1_500_000_000), Entry("usr/lib", DIR, mtime=1_500_000_001)]))
    _, fs = unpack(store, layer([Entry("usr/lib/new", data=b"n")]), parent=base)
    assert (fs / "usr").stat().st_mtime == 1_500_000_000
    assert (fs / "usr/lib").stat().st_mtime == 1_500_000_001


@pytest.mark.root
def test_files_finished_by_the_writer_thread_have_their_metadata(store: Store) -> None:
    """Plain files go to the writer thread in batches (by count and by bytes); each keeps content and metadata."""
    modes = (0o4755, 0o600, 0o2711)
    entries = [
        Entry(
            f"f{i:03}", data=os.urandom(i * 997 % 70_000), mode=modes[i % 3], uid=i, gid=i + 1, mtime=1_600_000_000 + i
        )
        for i in range(300)
    ]
    _, fs = unpack(store, layer(entries))
    for e in entries:
        st = (fs / e.name).lstat()
        assert (fs / e.name).read_bytes() == e.data
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime) == (e.mode, e.uid, e.gid, e.mtime)


@pytest.mark.root
def test_a_full_filesystem_while_the_writer_writes(store: Store, tmp_path: Path) -> None:
    """ENOSPC met by the writer thread: TooLarge, nothing committed, no descriptor or thread left behind."""
    import threading

    from minicache.syscalls import mount, umount

    small = tmp_path / f"small-{os.urandom(4).hex()}"
    small.mkdir()
    mount("tmpfs", small, "tmpfs", 0, "size=2m")
    try:
        tiny = Store(small / "store")
        fds, threads = len(os.listdir("/proc/self/fd")), threading.active_count()
        with pytest.raises(TooLarge, match="full"):
            unpack(tiny, layer([Entry(f"f{i}", data=os.urandom(100_000)) for i in range(60)]))
        assert_nothing_committed(tiny)
        assert (len(os.listdir("/proc/self/fd")), threading.active_count()) == (fds, threads)
    finally:
        umount(small)
