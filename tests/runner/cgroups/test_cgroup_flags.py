"""Docker's resource flags -> OCI linux.resources: every flag, every unit, every error."""

from __future__ import annotations

import argparse

import pytest
from minicache.errors import InvalidSpec
from minirun.cgroups import CgroupWarning, parse_resources
from minirun.cgroups.flags import parse_bytes, resources_from_args
from minirun.cli.commands.run import RESOURCE_OPTIONS
from minirun.cli.options import add_to

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


def resources(*argv: str, cpus: int = 2) -> dict:
    parser = argparse.ArgumentParser()
    add_to(parser, RESOURCE_OPTIONS)
    result = resources_from_args(
        parser.parse_args(list(argv)), cpu_count=cpus, online_cpus=set(range(cpus)), online_mems={0}
    )
    parse_resources(result)  # whatever the flags make, the OCI checker accepts
    return result


def test_no_flags_no_resources() -> None:
    assert resources() == {}


@pytest.mark.parametrize(
    ("text", "size"),
    [
        ("512", 512),
        ("512b", 512),
        ("10k", 10 * KiB),
        ("10K", 10 * KiB),
        ("10kb", 10 * KiB),
        ("10KiB", 10 * KiB),
        ("64m", 64 * MiB),
        ("64M", 64 * MiB),
        ("64mb", 64 * MiB),
        ("1g", GiB),
        ("1.5g", 3 * GiB // 2),
        ("2 g", 2 * GiB),
        ("1t", 1 << 40),
        ("0.5m", MiB // 2),
    ],
)
def test_sizes_use_dockers_units(text: str, size: int) -> None:
    assert parse_bytes("--memory", text) == size


@pytest.mark.parametrize(
    "text", ["10x", "", "m", "-5m", "1.2.3m", "10 mm", "1e6", "0x10", "\u0661\u0662m", "9" * 30 + "p"]
)
def test_bad_sizes_are_clear_errors(text: str) -> None:
    with pytest.raises(InvalidSpec) as err:
        parse_bytes("--memory", text)
    assert "--memory" in str(err.value)
    assert err.value.hint and "512m" in err.value.hint
    assert err.value.exit_code == 125


def test_memory_sets_limit_and_dockers_default_swap() -> None:
    assert resources("--memory", "64m") == {"memory": {"limit": 64 * MiB, "swap": 128 * MiB}}
    assert resources("-m", "1g") == {"memory": {"limit": GiB, "swap": 2 * GiB}}


def test_memory_10x_is_refused() -> None:
    with pytest.raises(InvalidSpec, match=r"invalid value '10x' for --memory"):
        resources("--memory", "10x")


def test_memory_minimum_is_6m() -> None:
    assert resources("--memory", "6m")["memory"]["limit"] == 6 * MiB
    with pytest.raises(InvalidSpec, match="below the minimum of 6m"):
        resources("--memory", "5m")
    with pytest.raises(InvalidSpec, match="below the minimum of 6m"):
        resources("--memory", "4096")


def test_memory_zero_means_unset() -> None:
    assert resources("--memory", "0") == {}


def test_memory_reservation() -> None:
    assert resources("--memory-reservation", "32m") == {"memory": {"reservation": 32 * MiB}}
    assert resources("--memory", "64m", "--memory-reservation", "64m")["memory"]["reservation"] == 64 * MiB
    with pytest.raises(InvalidSpec, match="--memory-reservation 128m is above --memory 64m"):
        resources("--memory", "64m", "--memory-reservation", "128m")
    with pytest.raises(InvalidSpec, match="below the minimum"):
        resources("--memory-reservation", "1m")
    with pytest.raises(InvalidSpec, match="--memory-reservation"):
        resources("--memory-reservation", "lots")


def test_memory_swap() -> None:
    assert resources("--memory", "64m", "--memory-swap", "-1")["memory"] == {"limit": 64 * MiB, "swap": -1}
    assert resources("--memory", "64m", "--memory-swap", "64m")["memory"]["swap"] == 64 * MiB  # no swap
    assert resources("--memory", "64m", "--memory-swap", "1g")["memory"]["swap"] == GiB
    with pytest.raises(InvalidSpec, match="--memory-swap needs --memory"):
        resources("--memory-swap", "1g")
    with pytest.raises(InvalidSpec, match="--memory-swap 32m is below --memory 64m"):
        resources("--memory", "64m", "--memory-swap", "32m")
    with pytest.raises(InvalidSpec, match="--memory-swap"):
        resources("--memory", "64m", "--memory-swap", "-2")


@pytest.mark.parametrize(
    ("value", "quota"), [("0.25", 25000), ("1", 100000), ("1.5", 150000), ("2", 200000), (".5", 50000), ("0.01", 1000)]
)
def test_cpus_become_quota_per_100ms(value: str, quota: int) -> None:
    assert resources("--cpus", value) == {"cpu": {"quota": quota, "period": 100000}}


def test_cpus_zero_means_unset() -> None:
    assert resources("--cpus", "0") == {}


@pytest.mark.parametrize("value", ["-1", "-0.5", "abc", "1/2", "", "1e3", "nan", "inf"])
def test_bad_cpus_are_clear_errors(value: str) -> None:
    with pytest.raises(InvalidSpec, match=r"--cpus") as err:
        resources("--cpus", value)
    assert err.value.hint


@pytest.mark.parametrize("value", ["3", "2.01", "0.001", "0.009"])
def test_cpus_out_of_range_names_the_host_cpus(value: str) -> None:
    with pytest.raises(InvalidSpec, match=r"--cpus .* out of range") as err:
        resources("--cpus", value, cpus=2)
    assert "0.01 to 2.00" in err.value.hint and "2 CPUs" in err.value.hint


def test_cpus_conflicts_with_period_and_quota() -> None:
    with pytest.raises(InvalidSpec, match="cannot both be set"):
        resources("--cpus", "1", "--cpu-quota", "50000")
    with pytest.raises(InvalidSpec, match="cannot both be set"):
        resources("--cpus", "1", "--cpu-period", "50000")


def test_cpu_period_and_quota() -> None:
    assert resources("--cpu-period", "50000", "--cpu-quota", "25000") == {"cpu": {"period": 50000, "quota": 25000}}
    assert resources("--cpu-quota", "-1") == {"cpu": {"quota": -1}}
    for bad in ("999", "1000001", "x"):
        with pytest.raises(InvalidSpec, match="--cpu-period"):
            resources("--cpu-period", bad)
    for bad in ("999", "-2", "1.5"):
        with pytest.raises(InvalidSpec, match="--cpu-quota"):
            resources("--cpu-quota", bad)


def test_cpu_shares() -> None:
    assert resources("--cpu-shares", "512") == {"cpu": {"shares": 512}}
    assert resources("-c", "1024") == {"cpu": {"shares": 1024}}
    assert resources("--cpu-shares", "0") == {}
    with pytest.warns(CgroupWarning, match="changed to 2"):
        assert resources("--cpu-shares", "1") == {"cpu": {"shares": 2}}
    with pytest.warns(CgroupWarning, match="changed to 262144"):
        assert resources("--cpu-shares", "999999") == {"cpu": {"shares": 262144}}
    with pytest.raises(InvalidSpec, match="--cpu-shares -5 is negative"):
        resources("--cpu-shares", "-5")
    with pytest.raises(InvalidSpec, match="not an integer"):
        resources("--cpu-shares", "half")


def test_cpuset_cpus_and_mems() -> None:
    assert resources("--cpuset-cpus", "0") == {"cpu": {"cpus": "0"}}
    assert resources("--cpuset-cpus", "0-1") == {"cpu": {"cpus": "0-1"}}
    assert resources("--cpuset-cpus", "0,1", "--cpuset-mems", "0") == {"cpu": {"cpus": "0,1", "mems": "0"}}
    assert resources("--cpuset-cpus", "0-3,6", cpus=8)["cpu"]["cpus"] == "0-3,6"


@pytest.mark.parametrize("value", ["a", "0-", "-1", "1-0", "0,,1", "0 1", "0\n1", "0-99999999999"])
def test_bad_cpuset_lists(value: str) -> None:
    with pytest.raises(InvalidSpec, match="--cpuset-cpus"):
        resources("--cpuset-cpus", value)


def test_cpuset_beyond_the_host_names_what_is_available() -> None:
    with pytest.raises(InvalidSpec, match="--cpuset-cpus 0-3: not available") as err:
        resources("--cpuset-cpus", "0-3", cpus=2)
    assert err.value.hint == "available: 0,1"
    with pytest.raises(InvalidSpec, match="--cpuset-cpus 0-999999: not available"):
        resources("--cpuset-cpus", "0-999999")  # refused without expanding a million-entry set
    with pytest.raises(InvalidSpec, match="--cpuset-mems 1: not available"):
        resources("--cpuset-mems", "1")


def test_pids_limit() -> None:
    assert resources("--pids-limit", "20") == {"pids": {"limit": 20}}
    assert resources("--pids-limit", "-1") == {"pids": {"limit": -1}}
    assert resources("--pids-limit", "0") == {"pids": {"limit": -1}}  # Docker: 0 is unlimited too
    for bad in ("-2", "ten", "1.5", "9" * 40):
        with pytest.raises(InvalidSpec, match="--pids-limit"):
            resources("--pids-limit", bad)


def test_all_flags_together_make_one_oci_dict() -> None:
    got = resources(
        *("--memory", "256m", "--memory-reservation", "128m", "--memory-swap", "512m"),
        *("--cpus", "0.5", "--cpu-shares", "512", "--cpuset-cpus", "1", "--cpuset-mems", "0"),
        *("--pids-limit", "100"),
    )
    assert got == {
        "memory": {"limit": 256 * MiB, "reservation": 128 * MiB, "swap": 512 * MiB},
        "cpu": {"quota": 50000, "period": 100000, "shares": 512, "cpus": "1", "mems": "0"},
        "pids": {"limit": 100},
    }


def test_flags_show_in_help() -> None:
    parser = argparse.ArgumentParser()
    add_to(parser, RESOURCE_OPTIONS)
    text = parser.format_help()
    for flag in (
        "--memory",
        "--memory-reservation",
        "--memory-swap",
        "--cpus",
        "--cpu-shares",
        "--cpuset-cpus",
        "--pids-limit",
    ):
        assert flag in text


def test_host_defaults_are_read_from_this_machine() -> None:
    """Without injected values the bounds come from /sys/devices/system (2 CPUs here, maybe more elsewhere)."""
    parser = argparse.ArgumentParser()
    add_to(parser, RESOURCE_OPTIONS)
    assert resources_from_args(parser.parse_args(["--cpus", "1", "--cpuset-cpus", "0"])) == {
        "cpu": {"quota": 100000, "period": 100000, "cpus": "0"}
    }
    with pytest.raises(InvalidSpec, match="out of range"):
        resources_from_args(parser.parse_args(["--cpus", "100000"]))


def test_number_checks_are_the_regexes_they_replace() -> None:
    """--cpus and the integer flags were checked with regexes; plain string code now, with the same answers."""
    import random
    import re

    from minirun.cgroups import flags

    rng = random.Random(7)
    samples = ["", "1" * 19, "1" * 20, "1" * 40, "1" * 41, "1" * 20 + ".5", "1" * 21 + ".5", "." + "5" * 21, "5\n"]
    samples += ["".join(rng.choices("019.-+ \u0663x", k=rng.randint(1, 7))) for _ in range(5000)]
    for text in samples:
        assert flags._is_decimal(text) == bool(re.fullmatch(r"[0-9]{0,20}\.?[0-9]{1,20}", text)), text
        integer = re.fullmatch(r"-?[0-9]{1,19}", text) is not None
        assert flags._ascii_digits(text.removeprefix("-"), 19) == integer, text


@pytest.mark.root
def test_block_io_flags_name_the_device_by_its_numbers(tmp_path) -> None:
    import os
    import stat

    if os.geteuid() != 0:
        pytest.skip("needs root (mknod of a block device node)")
    node = tmp_path / "disk"
    os.mknod(node, 0o600 | stat.S_IFBLK, os.makedev(8, 16))
    got = resources(
        *("--blkio-weight", "300", "--device-read-bps", f"{node}:1mb", "--device-read-bps", f"{node}:2k"),
        *(
            "--device-write-bps",
            f"{node}:1.5m",
            "--device-read-iops",
            f"{node}:100",
            "--device-write-iops",
            f"{node}:7",
        ),
    )
    assert got == {
        "blockIO": {
            "weight": 300,
            "throttleReadBpsDevice": [
                {"major": 8, "minor": 16, "rate": MiB},
                {"major": 8, "minor": 16, "rate": 2 * KiB},
            ],
            "throttleWriteBpsDevice": [{"major": 8, "minor": 16, "rate": 3 * MiB // 2}],
            "throttleReadIOPSDevice": [{"major": 8, "minor": 16, "rate": 100}],
            "throttleWriteIOPSDevice": [{"major": 8, "minor": 16, "rate": 7}],
        }
    }
    assert resources("--blkio-weight", "0") == {}  # Docker's "not set"


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--blkio-weight", "5"], "--blkio-weight 5 is out of range"),
        (["--blkio-weight", "1001"], "--blkio-weight 1001 is out of range"),
        (["--blkio-weight", "heavy"], "invalid value 'heavy' for --blkio-weight"),
        (["--device-read-bps", "/dev/sda"], "invalid value '/dev/sda' for --device-read-bps"),
        (["--device-read-bps", "/no/such/disk:1mb"], "cannot use /no/such/disk: No such file or directory"),
        (["--device-write-bps", "/dev/null:1mb"], "/dev/null is not a block device"),
        (["--device-read-iops", "/dev/null:1mb"], "not an integer"),
        (["--device-write-iops", "/dev/null:-5"], "a negative rate"),
        (["--device-read-bps", "/dev/null:lots"], "invalid value 'lots' for --device-read-bps"),
    ],
)
def test_bad_block_io_flags_are_clear_errors(argv: list[str], match: str) -> None:
    with pytest.raises(InvalidSpec, match=match):
        resources(*argv)
