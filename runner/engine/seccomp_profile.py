"""The default seccomp profile (Docker's behaviour) and its resolution into an OCI `linux.seccomp` section.

Profiles are kept in Docker's format (syscall groups with `includes`/`excludes` on capabilities and
architectures), so `--security-opt seccomp=PROFILE.json` takes the same files Docker does. Resolution
against the container's bounding set happens here, in the engine; the runtime only compiles what the spec
says. An allowlist: anything not named returns EPERM, so new kernel syscalls are denied until reviewed.

One deliberate difference from Docker: `ptrace` (with `process_vm_*`, `kcmp`, `pidfd_getfd`) needs
CAP_SYS_PTRACE even on kernels >= 4.8, where Docker allows it to everyone.
"""

from __future__ import annotations

import json
import os
from typing import Any

from minicache.errors import InvalidSpec

_ALLOWED = """
accept accept4 access adjtimex alarm bind brk cachestat capget capset chdir chmod chown chown32 clock_adjtime
clock_adjtime64 clock_getres clock_getres_time64 clock_gettime clock_gettime64 clock_nanosleep
clock_nanosleep_time64 close close_range connect copy_file_range creat dup dup2 dup3 epoll_create epoll_create1
epoll_ctl epoll_ctl_old epoll_pwait epoll_pwait2 epoll_wait epoll_wait_old eventfd eventfd2 execve execveat exit
exit_group faccessat faccessat2 fadvise64 fadvise64_64 fallocate fanotify_mark fchdir fchmod fchmodat fchmodat2
fchown fchown32 fchownat fcntl fcntl64 fdatasync fgetxattr flistxattr flock fork fremovexattr fsetxattr fstat
fstat64 fstatat64 fstatfs fstatfs64 fsync ftruncate ftruncate64 futex futex_requeue futex_time64 futex_wait
futex_waitv futex_wake futimesat getcpu getcwd getdents getdents64 getegid getegid32 geteuid geteuid32 getgid
getgid32 getgroups getgroups32 getitimer getpeername getpgid getpgrp getpid getppid getpriority getrandom
getresgid getresgid32 getresuid getresuid32 getrlimit get_robust_list getrusage getsid getsockname getsockopt
get_thread_area gettid gettimeofday getuid getuid32 getxattr inotify_add_watch inotify_init inotify_init1
inotify_rm_watch io_cancel ioctl io_destroy io_getevents io_pgetevents io_pgetevents_time64 ioprio_get
ioprio_set io_setup io_submit ipc kill landlock_add_rule landlock_create_ruleset landlock_restrict_self lchown
lchown32 lgetxattr link linkat listen listxattr llistxattr _llseek lremovexattr lseek lsetxattr lstat lstat64
madvise map_shadow_stack membarrier memfd_create memfd_secret mincore mkdir mkdirat mknod mknodat mlock mlock2
mlockall mmap mmap2 mprotect mq_getsetattr mq_notify mq_open mq_timedreceive mq_timedreceive_time64
mq_timedsend mq_timedsend_time64 mq_unlink mremap mseal msgctl msgget msgrcv msgsnd msync munlock munlockall
munmap nanosleep newfstatat _newselect open openat openat2 pause pidfd_open pidfd_send_signal pipe pipe2
pkey_alloc pkey_free pkey_mprotect poll ppoll ppoll_time64 prctl pread64 preadv preadv2 prlimit64
process_mrelease pselect6 pselect6_time64 pwrite64 pwritev pwritev2 read readahead readlink readlinkat readv
recv recvfrom recvmmsg recvmmsg_time64 recvmsg remap_file_pages removexattr rename renameat renameat2
restart_syscall rmdir rseq rt_sigaction rt_sigpending rt_sigprocmask rt_sigqueueinfo rt_sigreturn
rt_sigsuspend rt_sigtimedwait rt_sigtimedwait_time64 rt_tgsigqueueinfo sched_getaffinity sched_getattr
sched_getparam sched_get_priority_max sched_get_priority_min sched_getscheduler sched_rr_get_interval
sched_rr_get_interval_time64 sched_setaffinity sched_setattr sched_setparam sched_setscheduler sched_yield
seccomp select semctl semget semop semtimedop semtimedop_time64 send sendfile sendfile64 sendmmsg sendmsg
sendto setfsgid setfsgid32 setfsuid setfsuid32 setgid setgid32 setgroups setgroups32 setitimer setpgid
setpriority setregid setregid32 setresgid setresgid32 setresuid setresuid32 setreuid setreuid32 setrlimit
set_robust_list setsid setsockopt set_thread_area set_tid_address setuid setuid32 setxattr shmat shmctl shmdt
shmget shutdown sigaltstack signalfd signalfd4 sigprocmask sigreturn socketcall socketpair splice stat stat64
statfs statfs64 statx symlink symlinkat sync sync_file_range syncfs sysinfo tee tgkill time timer_create
timer_delete timer_getoverrun timer_gettime timer_gettime64 timer_settime timer_settime64 timerfd_create
timerfd_gettime timerfd_gettime64 timerfd_settime timerfd_settime64 times tkill truncate truncate64 ugetrlimit
umask uname unlink unlinkat utime utimensat utimensat_time64 utimes vfork vmsplice wait4 waitid waitpid write
writev
"""

# Namespace flags a plain `clone` may not carry (CLONE_NEWNS|NEWCGROUP|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET).
_CLONE_NS_FLAGS = 0x7E020000
_EPERM, _ENOSYS = 1, 38
_AF_VSOCK = 40


def _allow(names: str, **extra: Any) -> dict[str, Any]:
    return {"names": names.split(), "action": "SCMP_ACT_ALLOW", **extra}


def _with_cap(cap: str, names: str) -> dict[str, Any]:
    return _allow(names, includes={"caps": [cap]})


DEFAULT_PROFILE: dict[str, Any] = {
    "defaultAction": "SCMP_ACT_ERRNO",
    "defaultErrnoRet": _EPERM,
    "archMap": [
        {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]},
    ],
    "syscalls": [
        _allow(_ALLOWED),
        *(
            _allow("personality", args=[{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}])
            for value in (0x0, 0x8, 0x20000, 0x20008, 0xFFFFFFFF)
        ),
        _allow("socket", args=[{"index": 0, "value": _AF_VSOCK, "op": "SCMP_CMP_NE"}]),
        _allow("arch_prctl modify_ldt", includes={"arches": ["amd64", "x32", "x86"]}),
        _allow(
            "clone",
            args=[{"index": 0, "value": _CLONE_NS_FLAGS, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
            excludes={"caps": ["CAP_SYS_ADMIN"]},
        ),
        # clone3's flags live in memory seccomp cannot inspect: ENOSYS makes libc fall back to clone.
        {
            "names": ["clone3"],
            "action": "SCMP_ACT_ERRNO",
            "errnoRet": _ENOSYS,
            "excludes": {"caps": ["CAP_SYS_ADMIN"]},
        },
        _with_cap(
            "CAP_SYS_ADMIN",
            "bpf clone clone3 fanotify_init fsconfig fsmount fsopen fspick lookup_dcookie mount mount_setattr "
            "move_mount open_tree perf_event_open pivot_root quotactl quotactl_fd setdomainname sethostname setns "
            "syslog umount umount2 unshare",
        ),
        _with_cap("CAP_SYS_BOOT", "reboot"),
        _with_cap("CAP_SYS_CHROOT", "chroot"),
        _with_cap("CAP_SYS_MODULE", "delete_module init_module finit_module"),
        _with_cap("CAP_SYS_PACCT", "acct"),
        _with_cap("CAP_SYS_PTRACE", "kcmp pidfd_getfd process_madvise process_vm_readv process_vm_writev ptrace"),
        _with_cap("CAP_SYS_RAWIO", "iopl ioperm"),
        _with_cap("CAP_SYS_TIME", "settimeofday stime clock_settime clock_settime64"),
        _with_cap("CAP_SYS_TTY_CONFIG", "vhangup"),
        _with_cap("CAP_SYS_NICE", "get_mempolicy mbind set_mempolicy set_mempolicy_home_node"),
        _with_cap("CAP_SYSLOG", "syslog"),
        _with_cap("CAP_BPF", "bpf"),
        _with_cap("CAP_PERFMON", "perf_event_open"),
        _with_cap("CAP_DAC_READ_SEARCH", "open_by_handle_at"),
    ],
}

# Docker/Go architecture names → seccomp architecture names.
_GO_ARCH = {"x86_64": "amd64", "aarch64": "arm64", "i686": "x86", "armv7l": "arm"}
_SCMP_FOR_GO = {"amd64": "SCMP_ARCH_X86_64", "arm64": "SCMP_ARCH_AARCH64", "x86": "SCMP_ARCH_X86"}


def host_arch() -> str:
    """The Go-style name of this machine's architecture (amd64, arm64, ...)."""
    machine = os.uname().machine
    return _GO_ARCH.get(machine, machine)


def load_file(path: str) -> dict[str, Any]:
    """A Docker-format seccomp profile from a JSON file (`--security-opt seccomp=FILE`)."""
    try:
        with open(path, encoding="utf-8") as f:
            profile = json.loads(f.read())
    except OSError as e:
        raise InvalidSpec(f"cannot read seccomp profile {path}: {e.strerror}") from None
    except ValueError as e:
        raise InvalidSpec(f"seccomp profile {path} is not valid JSON: {e}") from None
    if not isinstance(profile, dict) or "defaultAction" not in profile:
        raise InvalidSpec(f"seccomp profile {path} has no defaultAction", hint="give a Docker-format profile")
    return profile


def _applies(rule: dict[str, Any], caps: set[str], arch: str) -> bool:
    includes, excludes = rule.get("includes") or {}, rule.get("excludes") or {}
    if any(cap in caps for cap in excludes.get("caps") or ()):
        return False
    if arch in (excludes.get("arches") or ()):
        return False
    if any(cap not in caps for cap in includes.get("caps") or ()):
        return False
    return not (includes.get("arches") and arch not in includes["arches"])


def to_oci(profile: dict[str, Any], caps: list[str] | set[str], arch: str | None = None) -> dict[str, Any]:
    """Resolve a Docker-format profile for a container with bounding set `caps` on `arch` (Go name)."""
    arch = arch or host_arch()
    capset = set(caps)
    architectures: list[str] = list(profile.get("architectures") or ())
    native = _SCMP_FOR_GO.get(arch)
    for entry in profile.get("archMap") or ():
        if entry.get("architecture") == native:
            architectures = [native, *entry.get("subArchitectures", [])]
    out: dict[str, Any] = {"defaultAction": profile["defaultAction"], "architectures": architectures}
    if "defaultErrnoRet" in profile:
        out["defaultErrnoRet"] = profile["defaultErrnoRet"]
    syscalls = []
    for rule in profile.get("syscalls") or ():
        if not _applies(rule, capset, arch):
            continue
        names = list(rule.get("names") or ([rule["name"]] if rule.get("name") else []))
        if not names:
            continue
        entry: dict[str, Any] = {"names": names, "action": rule["action"]}
        for key in ("args", "errnoRet"):
            if rule.get(key) is not None:
                entry[key] = rule[key]
        syscalls.append(entry)
    out["syscalls"] = syscalls
    return out
