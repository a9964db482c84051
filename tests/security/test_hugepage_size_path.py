"""A bundle's hugepageLimits[].pageSize names a cgroup file (`hugetlb.<size>.max`): a hostile size must not
reach another file of the container's cgroup or leave it ("../cgroup.procs", "2MB.max/../../x").

The size is checked against the kernel's spelling (digits and KB/MB/GB) before any directory is made.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kits.fakecgroupfs import ALL_CONTROLLERS, FakeCgroupfs, FakeV2Cgroup  # the cgroup tests' fake tree
from minicache.errors import InvalidSpec


@pytest.mark.parametrize("size", ["../../cgroup.procs", "2MB.max/../../../cgroup.subtree_control", "2MB\n", "", "2 MB"])
def test_a_hostile_page_size_is_refused_before_anything_is_made(tmp_path: Path, size: str) -> None:
    root = tmp_path / "cgroupfs"
    root.mkdir()
    fs = FakeCgroupfs(root, enabled=ALL_CONTROLLERS)
    before = {p: p.read_bytes() for p in root.iterdir()}
    with pytest.raises(InvalidSpec, match="pageSize must be a size like 2MB"):
        FakeV2Cgroup("c1", "minicontainer", fs).create({"hugepageLimits": [{"pageSize": size, "limit": 1}]})
    assert not (root / "minicontainer").exists()
    assert {p: p.read_bytes() for p in root.iterdir()} == before
