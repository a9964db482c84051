"""Units without the kernel: OCI resources checking, conversions, host detection, naming, the disabled driver."""

from __future__ import annotations

from pathlib import Path

import pytest
from minicache.errors import InvalidSpec
from minirun import cgroups
from minirun.cgroups import CgroupError, CgroupWarning, Limits, parse_resources
from minirun.cgroups.disabled import DisabledCgroup
from minirun.cgroups.host import detect_from, parse_mountinfo
from minirun.cgroups.limits import blkio_to_io_weight, cpu_max, shares_to_weight, swap_v2, weight_to_shares

MiB = 1 << 20

# -- OCI linux.resources --------------------------------------------------------------------------------------


def test_a_full_oci_resources_dict() -> None:
    limits = parse_resources(
        {
            "memory": {"limit": 64 * MiB, "reservation": 32 * MiB, "swap": 128 * MiB},
            "cpu": {"shares": 512, "quota": 25000, "period": 100000, "cpus": "0-1", "mems": "0"},
            "pids": {"limit": 20},
            "devices": [{"allow": False, "access": "rwm"}],  # the allowlist: applied, but not a "limit"
        }
    )
    assert limits == Limits(
        memory=64 * MiB,
        memory_reservation=32 * MiB,
        memory_swap=128 * MiB,
        cpu_shares=512,
        cpu_quota=25000,
        cpu_period=100000,
        cpuset_cpus="0-1",
        cpuset_mems="0",
        pids=20,
        devices=((False, "a *:* rwm"),),
    )
    assert limits.requested() == [
        "memory",
        "memory-reservation",
        "memory-swap",
        "cpu-shares",
        "cpu-quota",
        "cpu-period",
        "cpuset-cpus",
        "cpuset-mems",
        "pids-limit",
    ]


def test_block_io_and_hugepages() -> None:
    limits = parse_resources(
        {
            "blockIO": {
                "weight": 300,
                "throttleReadBpsDevice": [{"major": 8, "minor": 0, "rate": 1048576}],
                "throttleWriteIOPSDevice": [{"major": 7, "minor": 1, "rate": 50}],
            },
            "hugepageLimits": [{"pageSize": "2MB", "limit": 4 * MiB}],
        }
    )
    assert limits.blkio_weight == 300
    assert limits.blkio_throttle == (("rbps", 8, 0, 1048576), ("wiops", 7, 1, 50))
    assert limits.hugepages == (("2MB", 4 * MiB),)
    assert limits.requested() == ["blkio-weight", "device-read-bps", "device-write-iops", "hugetlb 2MB"]
    assert [blkio_to_io_weight(w) for w in (10, 300, 500, 1000)] == [1, 2930, 4950, 10000]  # runc's conversion


def test_zero_is_unset_and_negative_pids_is_unlimited() -> None:
    assert parse_resources({"memory": {"limit": 0}, "cpu": {"shares": 0}, "pids": {"limit": 0}}) == Limits()
    assert parse_resources({"pids": {"limit": -5}}).pids == -1
    assert parse_resources(None) == Limits() == parse_resources({})
    assert parse_resources({"memory": None, "cpu": {"cpus": ""}}) == Limits()


@pytest.mark.parametrize(
    ("resources", "match"),
    [
        ({"memory": {"limit": "64m"}}, "memory.limit must be an integer"),
        ({"memory": {"limit": True}}, "memory.limit must be an integer"),
        ({"memory": {"limit": 1.5}}, "memory.limit must be an integer"),
        ({"memory": {"limit": -2}}, "memory.limit is out of range"),
        ({"memory": {"limit": 2**64}}, "memory.limit is out of range"),
        ({"memory": {"swap": 10 * MiB}}, "needs a memory limit"),
        ({"memory": {"limit": 64 * MiB, "swap": MiB}}, "below the memory limit"),
        ({"cpu": {"shares": -1}}, "cpu.shares is out of range"),
        ({"cpu": {"period": 10}}, "cpu.period must be between"),
        ({"cpu": {"quota": 10}}, "cpu.quota must be -1 or at least"),
        ({"cpu": {"cpus": "0-1\n"}}, "cpu.cpus must be a list"),
        ({"cpu": {"cpus": "../../x"}}, "cpu.cpus must be a list"),
        ({"cpu": {"cpus": "3-1"}}, "backwards range"),
        ({"cpu": {"mems": 0}}, "cpu.mems must be a list"),
        ({"pids": {"limit": "20"}}, "pids.limit must be an integer"),
        ({"memory": []}, "linux.resources.memory must be an object"),
        ([], "linux.resources must be an object"),
        ({"unified": {"memory.max": 5}}, "must be a one-line string"),
        ({"unified": {"memory.max": "1\n2"}}, "must be a one-line string"),
        ({"unified": {"../cgroup.procs": "1"}}, "invalid key"),
        ({"unified": {"cgroup.freeze": "1"}}, "invalid key"),
        ({"unified": ["memory.max"]}, "unified must be an object"),
        ({"devices": {"allow": True}}, "devices must be a list"),
        ({"devices": [{"access": "rwm"}]}, r"devices\[0\] needs a boolean 'allow'"),
        ({"devices": [{"allow": "yes"}]}, "needs a boolean 'allow'"),
        ({"devices": [{"allow": True, "type": "x"}]}, "type must be a, b or c"),
        ({"devices": [{"allow": True, "access": "rwx"}]}, "access must be letters of 'rwm'"),
        ({"devices": [{"allow": True, "access": "rr"}]}, "access must be letters of 'rwm'"),
        ({"devices": [{"allow": True, "access": "r\nc *:* rwm"}]}, "access must be letters"),
        ({"devices": [{"allow": True, "major": "8"}]}, "major must be a device number"),
        ({"devices": [{"allow": True, "minor": -2}]}, "minor must be a device number"),
        ({"devices": [{"allow": True, "major": True}]}, "major must be a device number"),
        ({"devices": [{"allow": True, "major": 8}]}, "type a .all devices. cannot name a major or minor"),
        ({"blockIO": {"weight": 5}}, "weight must be between 10 and 1000"),
        ({"blockIO": {"weight": "300"}}, "weight must be an integer"),
        ({"blockIO": {"leafWeight": 300}}, "leafWeight is not supported"),
        ({"blockIO": {"throttleReadBpsDevice": {"major": 8}}}, "throttleReadBpsDevice must be a list"),
        ({"blockIO": {"throttleReadBpsDevice": [{"major": 8, "rate": 1}]}}, r"\[0\] needs a major, a minor and a rate"),
        ({"blockIO": {"throttleWriteIOPSDevice": [{"major": 8, "minor": 0, "rate": -1}]}}, "rate is out of range"),
        ({"blockIO": {"throttleWriteBpsDevice": [{"major": 2**33, "minor": 0, "rate": 1}]}}, "needs a major"),
        ({"hugepageLimits": {"pageSize": "2MB"}}, "hugepageLimits must be a list"),
        ({"hugepageLimits": [{"pageSize": "2MB"}]}, r"hugepageLimits\[0\] needs a limit"),
        ({"hugepageLimits": [{"pageSize": "2mb", "limit": 1}]}, "pageSize must be a size like 2MB"),
        ({"hugepageLimits": [{"pageSize": "../../cgroup.procs", "limit": 1}]}, "pageSize must be a size like 2MB"),
    ],
)
def test_hostile_resources_are_refused(resources: object, match: str) -> None:
    with pytest.raises(InvalidSpec, match=match):
        parse_resources(resources)  # type: ignore[arg-type]


def test_device_rules_become_v1_devices_list_lines_in_order() -> None:
    limits = parse_resources(
        {
            "devices": [
                {"allow": False, "access": "rwm"},
                {"allow": True, "type": "c", "major": 1, "minor": 3, "access": "rwm"},
                {"allow": True, "type": "c", "major": 136, "access": "rw"},
                {"allow": False, "type": "c", "major": 10, "minor": 229},
                {"allow": True, "type": "b", "major": -1, "minor": -1, "access": "m"},
            ]
        }
    )
    assert limits.devices == (
        (False, "a *:* rwm"),
        (True, "c 1:3 rwm"),
        (True, "c 136:* rw"),
        (False, "c 10:229 rwm"),
        (True, "b *:* m"),
    )
    assert limits.requested() == []  # the default allowlist is no limit the user asked for


def test_device_program_ends_at_a_rule_that_matches_everything() -> None:
    from minirun.cgroups.devices_bpf import program

    insn = 8  # bytes of one struct bpf_insn
    assert len(program(((True, "a *:* rwm"),))) == (6 + 2) * insn  # loads, then "allow; exit": nothing after
    # type, major, minor checks, the verdict, then the default deny for a request no rule matched
    assert len(program(((True, "c 1:3 rwm"),))) == (6 + 5 + 2) * insn
    # Rules are tested last first, and the first rule (deny all) ends the program.
    assert len(program(((False, "a *:* rwm"), (True, "c 1:3 rwm")))) == (6 + 5 + 2) * insn
    assert program(((False, "a *:* rwm"),))[-16:-8] == bytes([0xB7, 0, 0, 0, 0, 0, 0, 0])  # r0 = 0: deny


def test_shares_to_weight_is_runcs_conversion() -> None:
    assert [shares_to_weight(s) for s in (2, 512, 1024, 262144)] == [1, 20, 39, 10000]
    assert shares_to_weight(1) == 1 and shares_to_weight(10**9) == 10000  # clamped like the kernel
    for weight in (1, 39, 100, 10000):
        assert shares_to_weight(weight_to_shares(weight)) == weight


def test_swap_and_cpu_max_conversions() -> None:
    assert swap_v2(None, 64) is None
    assert swap_v2(-1, 64) == -1
    assert swap_v2(128, 64) == 64
    assert swap_v2(64, 64) == 0
    assert cpu_max(None, None) is None
    assert cpu_max(25000, 100000) == "25000 100000"
    assert cpu_max(25000, None) == "25000 100000"
    assert cpu_max(-1, 50000) == "max 50000"
    assert cpu_max(None, 50000) == "max 50000"


# -- host detection -------------------------------------------------------------------------------------------

HYBRID = """\
24 31 0:22 / /sys rw,nosuid,nodev,noexec,relatime shared:7 - sysfs sysfs rw
25 24 0:23 / /sys/fs/cgroup rw,relatime shared:8 - tmpfs tmpfs rw,mode=755
26 25 0:24 / /sys/fs/cgroup/cpu rw,relatime shared:9 - cgroup cgroup rw,cpu
27 25 0:25 / /sys/fs/cgroup/cpuacct rw,relatime shared:10 - cgroup cgroup rw,cpuacct
28 25 0:26 / /sys/fs/cgroup/memory rw,relatime shared:11 - cgroup cgroup rw,memory
29 25 0:27 / /sys/fs/cgroup/pids rw,relatime shared:12 - cgroup cgroup rw,pids
30 25 0:28 / /sys/fs/cgroup/systemd rw,relatime shared:13 - cgroup cgroup rw,name=systemd
31 25 0:29 / /sys/fs/cgroup/unified rw,relatime shared:14 - cgroup2 cgroup2 rw
"""
COMOUNTED = """\
26 25 0:24 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
27 25 0:25 / /sys/fs/cgroup/freezer rw,relatime - cgroup cgroup rw,freezer
40 25 0:25 / /mnt/other\\040freezer rw,relatime - cgroup cgroup rw,freezer
"""
UNIFIED = "30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
ESCAPED = "41 25 0:30 / /run/my\\040cgroups rw - cgroup2 cgroup2 rw\n"


def test_detect_hybrid() -> None:
    host = detect_from(HYBRID)
    assert host.mode == "v1" and host.hybrid
    assert host.v1 == {
        "cpu": "/sys/fs/cgroup/cpu",
        "cpuacct": "/sys/fs/cgroup/cpuacct",
        "memory": "/sys/fs/cgroup/memory",
        "pids": "/sys/fs/cgroup/pids",
    }
    assert str(host.unified) == "/sys/fs/cgroup/unified"


def test_detect_comounted_v1_first_mount_wins() -> None:
    v1, unified = parse_mountinfo(COMOUNTED)
    assert str(v1["cpu"]) == str(v1["cpuacct"]) == "/sys/fs/cgroup/cpu,cpuacct"
    assert str(v1["freezer"]) == "/sys/fs/cgroup/freezer"
    assert unified is None
    assert detect_from(COMOUNTED).mode == "v1" and not detect_from(COMOUNTED).hybrid


def test_detect_unified_and_none() -> None:
    host = detect_from(UNIFIED)
    assert (host.mode, str(host.unified), host.v1) == ("v2", "/sys/fs/cgroup", {})
    assert str(detect_from(ESCAPED).unified) == "/run/my cgroups"
    none = detect_from("22 1 0:5 / /proc rw - proc proc rw\ngarbage line\n")
    assert none.mode == "disabled" and "no cgroup" in none.reason


def test_detect_this_host_is_cheap_and_cached() -> None:
    import timeit

    cgroups.detect.cache_clear()
    first = cgroups.detect()
    assert cgroups.detect() is first
    per_call = timeit.timeit(lambda: cgroups.host.detect_from(Path(cgroups.host.MOUNTINFO).read_text()), number=50) / 50
    print(f"detect: {per_call * 1e6:.0f} us")  # informational; the figure lives in bench/
    assert first.mode in ("v1", "v2", "disabled")


# -- names ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("container_id", ["", ".", "..", "../x", "a/b", "-x", "a b", "x\n", "a" * 129, None])
def test_hostile_container_ids_are_refused(container_id: object) -> None:
    with pytest.raises(InvalidSpec, match="invalid container ID"):
        cgroups.open(container_id, parent="minicontainer")  # type: ignore[arg-type]


@pytest.mark.parametrize("parent", ["", "/", "..", "a/../../b", "a//b", "./a", "a/.", "a b", "x\n"])
def test_hostile_parents_are_refused(parent: str) -> None:
    with pytest.raises(InvalidSpec, match="invalid cgroup parent"):
        cgroups.open("c1", parent=parent)


def test_parent_from_argument_environment_or_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cgroups.PARENT_ENV, raising=False)
    assert cgroups.open("c1").parent == "minicontainer"
    monkeypatch.setenv(cgroups.PARENT_ENV, "/machine/mc")
    cg = cgroups.open("c1")
    assert cg.parent == "/machine/mc" and cg.parent_parts == ("machine", "mc")
    assert cgroups.open("c1", parent="other").parent == "other"
    for path in cg.paths.values():
        assert path.split("/")[-3:] == ["machine", "mc", "c1"]


def test_open_picks_the_driver_for_the_mode() -> None:
    assert cgroups.open("c1", mode="disabled").mode == "disabled"
    assert cgroups.open("c1").mode == cgroups.detect().mode or cgroups.open("c1").mode == "disabled"
    with pytest.raises(InvalidSpec, match="unknown cgroup mode"):
        cgroups.open("c1", mode="v3")


# -- the disabled driver --------------------------------------------------------------------------------------


def test_disabled_warns_when_limits_were_asked_for() -> None:
    cg = DisabledCgroup("c1", "minicontainer", reason="cgroups are not writable here")
    with pytest.warns(CgroupWarning, match=r"not writable here: resource limits ignored \(memory, pids-limit\)"):
        cg.create({"memory": {"limit": 64 * MiB}, "pids": {"limit": 5}})
    with pytest.warns(CgroupWarning, match="cpu-shares"):
        cg.set({"cpu": {"shares": 512}})


def test_disabled_without_limits_is_quiet_and_harmless(recwarn: pytest.WarningsRecorder) -> None:
    cg = DisabledCgroup("c1", "minicontainer")
    cg.create(None)
    cg.join()
    cg.add(1)
    assert cg.pids() == [] and cg.kill_all() == 0 and not cg.oom_killed() and not cg.frozen()
    stats = cg.stats()
    assert stats == cgroups.CgroupStats(read_at=stats.read_at)
    cg.destroy()
    assert not cg.exists() and cg.paths == {}
    assert not recwarn.list


def test_disabled_cannot_pause() -> None:
    cg = DisabledCgroup("c1", "minicontainer", reason="cgroups are disabled")
    with pytest.raises(CgroupError, match="pausing needs the cgroup freezer; cgroups are disabled"):
        cg.freeze()
    with pytest.raises(CgroupError):
        cg.thaw()


def test_bad_resources_fail_before_anything_even_when_disabled() -> None:
    with pytest.raises(InvalidSpec):
        DisabledCgroup("c1", "minicontainer").create({"memory": {"limit": "lots"}})


def test_warnings_print_as_one_cli_line(capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        cgroups.show_warnings("minirun")
        DisabledCgroup("c1", "minicontainer", reason="cgroups are disabled").create({"pids": {"limit": 5}})
        with pytest.warns(UserWarning, match="something else"):  # other warnings keep their usual path
            warnings.warn("something else", UserWarning, stacklevel=1)
    err = capsys.readouterr().err
    assert err == "minirun: warning: cgroups are disabled: resource limits ignored (pids-limit)\n"


def test_warnings_also_reach_the_runtimes_log(capsys: pytest.CaptureFixture[str]) -> None:
    import warnings

    logged: list[str] = []
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        cgroups.show_warnings("minirun-runtime", also=logged.append)
        DisabledCgroup("c1", "minicontainer", reason="cgroups are disabled").create({"pids": {"limit": 5}})
    assert (
        capsys.readouterr().err
        == "minirun-runtime: warning: cgroups are disabled: resource limits ignored (pids-limit)\n"
    )
    assert logged == ["cgroups are disabled: resource limits ignored (pids-limit)"]
