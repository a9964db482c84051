"""Linux capabilities: names and numbers, and applying an OCI `process.capabilities` object to this process."""

from __future__ import annotations

from minirun.runtime import syscalls

# Index = capability number (linux/capability.h).
NAMES = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
)
NUMBERS = {name: i for i, name in enumerate(NAMES)}

# Docker's default set (moby oci/caps/defaults.go): 14 capabilities.
DOCKER_DEFAULT = (
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
)


_last_cap: int | None = None


def last_cap() -> int:
    """The highest capability number this kernel knows (read once: the container's /proc may hide it)."""
    global _last_cap
    if _last_cap is None:
        try:
            with open("/proc/sys/kernel/cap_last_cap") as f:
                _last_cap = int(f.read())
        except OSError:
            _last_cap = len(NAMES) - 1
    return _last_cap


def known() -> tuple[str, ...]:
    """Every capability name both we and the running kernel know."""
    return NAMES[: min(last_cap(), len(NAMES) - 1) + 1]


def available() -> tuple[str, ...]:
    """The capabilities this process may hand out: known to the kernel and in our permitted set.

    What --privileged grants; a host without, say, CAP_SYS_RESOURCE (a nested or restricted one)
    cannot give it to a container, so it is left out instead of failing every privileged start.
    """
    _eff, permitted, _inh = syscalls.capget()
    return tuple(name for i, name in enumerate(known()) if permitted >> i & 1)


def normalize(name: str) -> str:
    """`net_admin`, `NET_ADMIN`, `CAP_NET_ADMIN` → `CAP_NET_ADMIN`; `ALL` stays `ALL`; unknown → ValueError."""
    upper = name.strip().upper()
    if upper == "ALL":
        return "ALL"
    full = upper if upper.startswith("CAP_") else f"CAP_{upper}"
    if full not in NUMBERS:
        raise ValueError(f"unknown capability {name!r}")
    return full


def mask(names: list[str] | tuple[str, ...] | None) -> int:
    """A bit mask of capability names (unknown names and ones past the kernel's last are ignored, as runc does)."""
    top = last_cap()
    out = 0
    for name in names or ():
        number = NUMBERS.get(name)
        if number is not None and number <= top:
            out |= 1 << number
    return out


def names_of(bits: int) -> list[str]:
    return [name for i, name in enumerate(NAMES) if bits >> i & 1]


def drop_bounding(keep: int) -> None:
    """Drop every capability not in `keep` from the bounding set (needs CAP_SETPCAP)."""
    for number in range(last_cap() + 1):
        if not keep >> number & 1 and syscalls.prctl(syscalls.PR_CAPBSET_READ, number) == 1:
            syscalls.prctl(syscalls.PR_CAPBSET_DROP, number)


def apply(caps: dict[str, list[str]]) -> None:
    """Set effective, permitted and inheritable sets, then the ambient set, from an OCI capabilities object.

    The bounding set is handled separately (`drop_bounding`), before the user switch, as runc does.
    """
    syscalls.capset(mask(caps.get("effective")), mask(caps.get("permitted")), mask(caps.get("inheritable")))
    syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_CLEAR_ALL)
    for name in caps.get("ambient") or ():
        number = NUMBERS.get(name)
        if number is not None and number <= last_cap():
            syscalls.prctl(syscalls.PR_CAP_AMBIENT, syscalls.PR_CAP_AMBIENT_RAISE, number)
