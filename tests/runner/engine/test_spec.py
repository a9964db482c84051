"""Spec generation: image config + run options → OCI runtime spec. Pure; no kernel needed."""

from __future__ import annotations

import pytest
from minicache.errors import InvalidSpec
from minirun.engine import spec
from minirun.engine.flags import Tmpfs, Ulimit, Volume
from minirun.engine.spec import RunOptions, SpecContext
from minirun.engine.users import User
from minirun.runtime import caps
from minirun.runtime.config import BUILTIN_INIT_ANNOTATION

CID = "ab" * 32
KERNEL_CAPS = caps.NAMES  # a kernel that knows every capability we know
IMAGE = {
    "Env": ["PATH=/usr/bin:/bin", "LANG=C.UTF-8", "FOO=image"],
    "Entrypoint": None,
    "Cmd": ["/bin/sh"],
    "WorkingDir": "/srv",
}


def build(image: dict | None = None, ctx: SpecContext | None = None, **options) -> dict:
    return spec.build(
        IMAGE if image is None else image,
        RunOptions(**options),
        ctx or SpecContext(container_id=CID, kernel_caps=KERNEL_CAPS),
    )


def mount_of(s: dict, destination: str) -> dict:
    matches = [m for m in s["mounts"] if m["destination"] == destination]
    assert len(matches) == 1, f"{destination}: {matches}"
    return matches[0]


def test_defaults_follow_docker() -> None:
    s = build()
    assert s["ociVersion"] == "1.0.2"
    assert s["root"] == {"path": "rootfs", "readonly": False}
    assert s["hostname"] == CID[:12]
    p = s["process"]
    assert p["args"] == ["/bin/sh"] and p["cwd"] == "/srv" and p["terminal"] is False
    assert p["user"] == {"uid": 0, "gid": 0}
    assert p["noNewPrivileges"] is True
    assert "rlimits" not in p  # the host's limits are inherited unless --ulimit says otherwise
    c = p["capabilities"]
    assert sorted(c["bounding"]) == sorted(caps.DOCKER_DEFAULT) and len(c["bounding"]) == 14
    assert c["effective"] == c["permitted"] == c["bounding"]
    assert c["inheritable"] == [] and c["ambient"] == []
    kinds = sorted(ns["type"] for ns in s["linux"]["namespaces"])
    assert kinds == ["cgroup", "ipc", "mount", "network", "pid", "uts"]
    assert "/proc/kcore" in s["linux"]["maskedPaths"] and "/sys/firmware" in s["linux"]["maskedPaths"]
    assert set(s["linux"]["readonlyPaths"]) == {
        "/proc/bus",
        "/proc/fs",
        "/proc/irq",
        "/proc/sys",
        "/proc/sysrq-trigger",
    }
    assert s["linux"]["seccomp"]["defaultAction"] == "SCMP_ACT_ERRNO"
    assert s["linux"]["resources"]["devices"][0] == {"allow": False, "access": "rwm"}
    assert "annotations" not in s


def test_default_mounts_and_order() -> None:
    s = build()
    dests = [m["destination"] for m in s["mounts"]]
    for needed in ("/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/sys/fs/cgroup"):
        assert needed in dests
    assert dests.index("/dev") < dests.index("/dev/pts") < dests.index("/sys/fs/cgroup")
    assert mount_of(s, "/sys")["options"][-1] == "ro"
    assert "ro" in mount_of(s, "/sys/fs/cgroup")["options"]
    pts = mount_of(s, "/dev/pts")
    assert pts["type"] == "devpts" and "newinstance" in pts["options"] and "ptmxmode=0666" in pts["options"]


def test_env_merge_order_and_extras() -> None:
    s = build(env=["FOO=flag", "NEW=1", "LANG=fr"], tty=True)
    env = s["process"]["env"]
    assert env[:3] == ["PATH=/usr/bin:/bin", "LANG=fr", "FOO=flag"]  # image order kept, values overridden
    assert "NEW=1" in env and f"HOSTNAME={CID[:12]}" in env and "TERM=xterm" in env
    assert "HOME=/root" in env
    assert sum(1 for e in env if e.startswith("PATH=")) == 1  # the image's PATH wins over the default


def test_default_path_when_image_has_none() -> None:
    s = build(image={"Cmd": ["true"]})
    assert f"PATH={spec.DEFAULT_PATH}" in s["process"]["env"]


@pytest.mark.parametrize(
    ("image", "options", "args"),
    [
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {}, ["/ep", "a"]),
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"command": ["b", "c"]}, ["/ep", "b", "c"]),
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"entrypoint": "/other"}, ["/other"]),  # Cmd dropped, as Docker
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"entrypoint": "/other", "command": ["x"]}, ["/other", "x"]),
        ({"Entrypoint": ["/ep"], "Cmd": ["a"]}, {"entrypoint": "", "command": ["ls"]}, ["ls"]),
        ({"Cmd": ["sh"]}, {"command": ["ls", "-l"]}, ["ls", "-l"]),
    ],
)
def test_entrypoint_and_cmd(image: dict, options: dict, args: list[str]) -> None:
    assert build(image=image, **options)["process"]["args"] == args


def test_no_command_is_an_error() -> None:
    with pytest.raises(InvalidSpec, match="no command"):
        build(image={"Cmd": None})


@pytest.mark.parametrize(
    ("workdir", "expected"),
    [("/a/b/../c", "/a/c"), ("/../../..", "/"), ("//x//y/", "/x/y"), (None, "/srv")],
)
def test_working_dir_is_normalised_and_stays_under_root(workdir: str | None, expected: str) -> None:
    assert build(workdir=workdir)["process"]["cwd"] == expected


@pytest.mark.parametrize("workdir", ["../../..", "relative", ""])
def test_relative_working_dir_is_refused(workdir: str) -> None:
    with pytest.raises(InvalidSpec, match="absolute"):
        build(workdir=workdir)


def test_hostname_flag_and_host_network() -> None:
    assert build(hostname="box")["hostname"] == "box"
    s = build(network="host", ctx=SpecContext(container_id=CID, host_hostname="hosty", kernel_caps=KERNEL_CAPS))
    assert s["hostname"] == "hosty"
    assert "network" not in [ns["type"] for ns in s["linux"]["namespaces"]]
    assert "uts" in [ns["type"] for ns in s["linux"]["namespaces"]]


def test_netns_path_is_joined() -> None:
    s = build(ctx=SpecContext(container_id=CID, netns_path="/run/netns/x", kernel_caps=KERNEL_CAPS))
    assert {"type": "network", "path": "/run/netns/x"} in s["linux"]["namespaces"]


def test_unknown_network_mode() -> None:
    with pytest.raises(InvalidSpec, match="network mode"):
        build(network="bridge")


def test_cap_add_and_drop() -> None:
    c = build(cap_add=["net_admin", "CAP_SYS_TIME"], cap_drop=["chown", "NET_RAW"])["process"]["capabilities"]
    assert "CAP_NET_ADMIN" in c["bounding"] and "CAP_SYS_TIME" in c["effective"]
    assert "CAP_CHOWN" not in c["bounding"] and "CAP_NET_RAW" not in c["permitted"]
    assert len(c["bounding"]) == 14


def test_cap_drop_all_then_add() -> None:
    c = build(cap_drop=["ALL"], cap_add=["NET_BIND_SERVICE"])["process"]["capabilities"]
    assert c["bounding"] == ["CAP_NET_BIND_SERVICE"]


def test_cap_add_all() -> None:
    c = build(cap_add=["all"])["process"]["capabilities"]
    assert c["bounding"] == list(KERNEL_CAPS)


def test_unknown_capability() -> None:
    with pytest.raises(InvalidSpec, match="unknown capability"):
        build(cap_add=["CAP_MAKE_COFFEE"])


def test_non_root_user_gets_only_added_caps_as_ambient() -> None:
    ctx = SpecContext(container_id=CID, user=User(1000, 1000, (10, 20), "/home/u", "u"), kernel_caps=KERNEL_CAPS)
    s = build(ctx=ctx, cap_add=["NET_BIND_SERVICE", "NET_ADMIN"])
    c = s["process"]["capabilities"]
    assert len(c["bounding"]) == 15
    for kind in ("effective", "permitted", "inheritable", "ambient"):
        assert c[kind] == ["CAP_NET_BIND_SERVICE", "CAP_NET_ADMIN"]
    assert s["process"]["user"] == {"uid": 1000, "gid": 1000, "additionalGids": [10, 20]}
    assert "HOME=/home/u" in s["process"]["env"]
    plain = build(ctx=ctx)["process"]["capabilities"]
    assert plain["effective"] == plain["ambient"] == []


def test_privileged() -> None:
    devices = [{"path": "/dev/loop0", "type": "b", "major": 7, "minor": 0}]
    ctx = SpecContext(container_id=CID, host_devices=devices, kernel_caps=KERNEL_CAPS)
    s = build(ctx=ctx, privileged=True)
    c = s["process"]["capabilities"]
    assert c["bounding"] == c["effective"] == list(KERNEL_CAPS)
    assert "seccomp" not in s["linux"]
    assert "maskedPaths" not in s["linux"] and "readonlyPaths" not in s["linux"]
    assert s["linux"]["devices"] == devices
    assert s["linux"]["resources"]["devices"] == [{"allow": True, "access": "rwm"}]
    assert "rw" in mount_of(s, "/sys")["options"] and "rw" in mount_of(s, "/sys/fs/cgroup")["options"]


def test_privileged_follows_the_kernel() -> None:
    short = KERNEL_CAPS[:38]  # an older kernel without CAP_PERFMON and later
    ctx = SpecContext(container_id=CID, kernel_caps=short)
    assert build(ctx=ctx, privileged=True)["process"]["capabilities"]["bounding"] == list(short)


def test_seccomp_unconfined_and_custom_profile() -> None:
    assert "seccomp" not in build(seccomp="unconfined")["linux"]
    profile = {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]}
    sec = build(seccomp=profile)["linux"]["seccomp"]
    assert sec["defaultAction"] == "SCMP_ACT_ALLOW"
    assert sec["syscalls"] == [{"names": ["mkdir"], "action": "SCMP_ACT_ERRNO"}]


def test_seccomp_depends_on_caps() -> None:
    def allowed(s: dict) -> set[str]:
        return {
            n
            for r in s["linux"]["seccomp"]["syscalls"]
            if r["action"] == "SCMP_ACT_ALLOW" and not r.get("args")
            for n in r["names"]
        }

    default = allowed(build())
    assert "mount" not in default and "unshare" not in default and "ptrace" not in default
    assert "read" in default and "chroot" in default  # CAP_SYS_CHROOT is a default capability
    admin = allowed(build(cap_add=["SYS_ADMIN"]))
    assert {"mount", "umount2", "unshare", "setns", "clone", "clone3"} <= admin
    assert "ptrace" in allowed(build(cap_add=["SYS_PTRACE"]))
    rules = build()["linux"]["seccomp"]["syscalls"]
    clone3 = [r for r in rules if "clone3" in r["names"]]
    assert clone3 == [{"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}]
    clone = next(r for r in rules if r["names"] == ["clone"])
    assert clone["args"][0]["op"] == "SCMP_CMP_MASKED_EQ" and clone["args"][0]["value"] == 0x7E020000


def test_no_new_privileges_can_be_turned_off() -> None:
    assert build(no_new_privileges=False)["process"]["noNewPrivileges"] is False


def test_volumes_tmpfs_and_read_only() -> None:
    s = build(
        volumes=[Volume("/host/data", "/data", readonly=True), Volume("/host/rw", "/srv/rw")],
        tmpfs=[Tmpfs("/run", ("size=64m", "exec")), Tmpfs("/tmp")],
        read_only=True,
    )
    assert s["root"]["readonly"] is True
    data = mount_of(s, "/data")
    assert data == {
        "destination": "/data",
        "type": "bind",
        "source": "/host/data",
        "options": ["rbind", "rprivate", "ro"],
    }
    assert "ro" not in mount_of(s, "/srv/rw")["options"]
    run = mount_of(s, "/run")
    assert run["type"] == "tmpfs" and "size=64m" in run["options"]
    assert "noexec" not in run["options"] and "exec" in run["options"]
    assert mount_of(s, "/tmp")["options"] == ["nosuid", "nodev", "noexec"]


def test_user_mount_replaces_default_on_same_path() -> None:
    s = build(volumes=[Volume("/host/shm", "/dev/shm")])
    assert mount_of(s, "/dev/shm")["type"] == "bind"


def test_duplicate_user_destinations_refused() -> None:
    with pytest.raises(InvalidSpec, match="same destination"):
        build(volumes=[Volume("/a", "/x")], tmpfs=[Tmpfs("/x")])


def test_files_are_bind_mounted() -> None:
    files = {"/etc/hosts": "/c/hosts", "/etc/hostname": "/c/hostname", "/etc/resolv.conf": "/c/resolv.conf"}
    s = build(ctx=SpecContext(container_id=CID, files=files, kernel_caps=KERNEL_CAPS))
    for dest, source in files.items():
        m = mount_of(s, dest)
        assert m["source"] == source and m["type"] == "bind"


def test_ulimits() -> None:
    s = build(ulimits=[Ulimit("RLIMIT_NOFILE", 1024, 2048)])
    assert s["process"]["rlimits"] == [{"type": "RLIMIT_NOFILE", "soft": 1024, "hard": 2048}]


def test_init_with_tini_and_builtin() -> None:
    ctx = SpecContext(container_id=CID, init_path="/usr/bin/tini-static", kernel_caps=KERNEL_CAPS)
    s = build(ctx=ctx, init=True, command=["sleep", "1"])
    assert s["process"]["args"] == ["/dev/init", "--", "sleep", "1"]
    assert mount_of(s, "/dev/init")["source"] == "/usr/bin/tini-static"
    builtin = build(init=True, command=["sleep", "1"])
    assert builtin["process"]["args"] == ["sleep", "1"]
    assert builtin["annotations"][BUILTIN_INIT_ANNOTATION] == "builtin"


def test_tty_console_size_and_stop_signal() -> None:
    ctx = SpecContext(container_id=CID, console_size=(40, 100), kernel_caps=KERNEL_CAPS)
    s = build(image={**IMAGE, "StopSignal": "SIGQUIT"}, ctx=ctx, tty=True)
    assert s["process"]["terminal"] is True
    assert s["process"]["consoleSize"] == {"height": 40, "width": 100}
    assert s["annotations"]["org.opencontainers.image.stopSignal"] == "SIGQUIT"


def test_resources_and_cgroups_path_pass_through() -> None:
    ctx = SpecContext(
        container_id=CID,
        resources={"memory": {"limit": 1 << 30}},
        cgroups_path="/minicontainer/x",
        kernel_caps=KERNEL_CAPS,
    )
    s = build(ctx=ctx)
    assert s["linux"]["resources"]["memory"] == {"limit": 1 << 30}
    assert s["linux"]["cgroupsPath"] == "/minicontainer/x"


def test_build_is_pure() -> None:
    assert build() == build()


def test_adding_a_capability_the_host_withholds_is_an_error() -> None:
    without_resource = tuple(c for c in KERNEL_CAPS if c != "CAP_SYS_RESOURCE")
    ctx = SpecContext(container_id=CID, kernel_caps=without_resource)
    with pytest.raises(InvalidSpec, match="cannot add CAP_SYS_RESOURCE"):
        build(ctx=ctx, cap_add=["SYS_RESOURCE"])
    assert "CAP_SYS_RESOURCE" not in build(ctx=ctx, privileged=True)["process"]["capabilities"]["bounding"]
