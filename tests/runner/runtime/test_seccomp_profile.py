"""The default seccomp profile and its resolution, and the BPF compilation cache (libseccomp, no kernel)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from minicache.errors import InvalidSpec
from minirun.engine import seccomp_profile
from minirun.runtime import caps, seccomp

DEFAULT_CAPS = list(caps.DOCKER_DEFAULT)


def test_resolution_for_amd64() -> None:
    sec = seccomp_profile.to_oci(seccomp_profile.DEFAULT_PROFILE, DEFAULT_CAPS, "amd64")
    assert sec["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
    assert sec["defaultAction"] == "SCMP_ACT_ERRNO" and sec["defaultErrnoRet"] == 1
    names = {n for rule in sec["syscalls"] for n in rule["names"]}
    assert "arch_prctl" in names  # amd64-only group included
    blocked = {
        "kexec_load",
        "init_module",
        "finit_module",
        "keyctl",
        "add_key",
        "request_key",
        "bpf",
        "mount",
        "umount2",
        "unshare",
        "setns",
        "perf_event_open",
        "ptrace",
        "reboot",
        "swapon",
        "clock_settime",
        "open_by_handle_at",
        "userfaultfd",
        "fsopen",
        "fsmount",
        "move_mount",
        "open_tree",
    }
    allowed = {n for r in sec["syscalls"] if r["action"] == "SCMP_ACT_ALLOW" for n in r["names"]}
    assert not blocked & allowed


def test_arm64_drops_x86_only_rules() -> None:
    sec = seccomp_profile.to_oci(seccomp_profile.DEFAULT_PROFILE, DEFAULT_CAPS, "arm64")
    assert sec["architectures"] == ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"]
    assert "arch_prctl" not in {n for rule in sec["syscalls"] for n in rule["names"]}


def test_load_file(tmp_path: Path) -> None:
    good = tmp_path / "p.json"
    good.write_text(json.dumps({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}))
    assert seccomp_profile.load_file(str(good))["defaultAction"] == "SCMP_ACT_ALLOW"
    bad = tmp_path / "bad.json"
    bad.write_text("{nope")
    with pytest.raises(InvalidSpec, match="not valid JSON"):
        seccomp_profile.load_file(str(bad))
    bad.write_text("{}")
    with pytest.raises(InvalidSpec, match="defaultAction"):
        seccomp_profile.load_file(str(bad))
    with pytest.raises(InvalidSpec, match="cannot read"):
        seccomp_profile.load_file(str(tmp_path / "missing.json"))


def test_compile_and_cache(tmp_path: Path) -> None:
    sec = seccomp_profile.to_oci(seccomp_profile.DEFAULT_PROFILE, DEFAULT_CAPS)
    first = seccomp.program(sec, tmp_path)
    assert len(first) % 8 == 0 and len(first) > 800
    cached = list(tmp_path.iterdir())
    assert [p.name for p in cached] == [f"{seccomp.cache_key(sec)}.bpf"]
    identity = cached[0].read_bytes()[: -len(first)]
    cached[0].write_bytes(identity + b"\0" * 8)  # the cache is what is used when present
    assert seccomp.program(sec, tmp_path) == b"\0" * 8
    other = seccomp_profile.to_oci(seccomp_profile.DEFAULT_PROFILE, [*DEFAULT_CAPS, "CAP_SYS_ADMIN"])
    assert seccomp.cache_key(other) != seccomp.cache_key(sec)


def test_a_cache_entry_of_another_section_is_not_used(tmp_path: Path) -> None:
    """The entry's name is a checksum: one that collides (here: another section's entry under this name)
    must not hand this section another section's filter."""
    sec = seccomp_profile.to_oci(seccomp_profile.DEFAULT_PROFILE, DEFAULT_CAPS)
    other = seccomp_profile.to_oci(seccomp_profile.DEFAULT_PROFILE, [*DEFAULT_CAPS, "CAP_SYS_ADMIN"])
    wanted = seccomp.program(sec)
    foreign = seccomp.program(other, tmp_path)
    (tmp_path / f"{seccomp.cache_key(other)}.bpf").rename(tmp_path / f"{seccomp.cache_key(sec)}.bpf")
    assert foreign != wanted
    assert seccomp.program(sec, tmp_path) == wanted
    assert seccomp.program(sec, tmp_path) == wanted  # compiled over: now the entry is this section's


def test_compile_errors() -> None:
    with pytest.raises(InvalidSpec, match="action"):
        seccomp.compile_section({"defaultAction": "SCMP_ACT_MAYBE"})
    with pytest.raises(InvalidSpec, match="architecture"):
        seccomp.compile_section({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_Z80"]})
    with pytest.raises(InvalidSpec, match="comparison"):
        seccomp.compile_section(
            {
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ERRNO", "args": [{"index": 0, "op": "LIKE"}]}],
            }
        )


def test_unknown_syscall_names_are_skipped() -> None:
    bpf = seccomp.compile_section(
        {
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["no_such_call", "mkdir"], "action": "SCMP_ACT_ERRNO"}],
        }
    )
    assert len(bpf) % 8 == 0
