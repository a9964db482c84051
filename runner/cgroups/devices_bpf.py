"""The device allowlist on cgroup v2: an eBPF program of type CGROUP_DEVICE attached to the container's cgroup.

cgroup v2 has no devices controller; the kernel asks a BPF program attached to the cgroup instead
(`bpf_cgroup_dev_ctx`: access_type = access << 16 | type, major, minor; return 1 to allow, 0 to deny).
The program is generated from the OCI rules (already checked by `limits._devices`) with v1's meaning:
the last rule that matches a request decides, nothing matching is denied. An allow rule matches when it
grants every access asked for; a deny rule when it takes away any of them.

It stays attached as long as the cgroup exists: nothing to clean up.
"""

from __future__ import annotations

import ctypes
import os
import struct

_SYS_BPF = {"x86_64": 321, "aarch64": 280}
_BPF_PROG_LOAD, _BPF_PROG_ATTACH = 5, 8
_BPF_PROG_TYPE_CGROUP_DEVICE = 15
_BPF_CGROUP_DEVICE = 6  # attach type
_BPF_F_ALLOW_MULTI = 2
_TYPES = {"b": 1, "c": 2}  # BPF_DEVCG_DEV_BLOCK, BPF_DEVCG_DEV_CHAR
_ACCESS = {"m": 1, "r": 2, "w": 4}  # BPF_DEVCG_ACC_MKNOD, _READ, _WRITE
_RWM = 7

# Instruction codes (linux/bpf_common.h, linux/bpf.h).
_LDXW = 0x61  # BPF_LDX | BPF_MEM | BPF_W
_AND32_K = 0x54  # BPF_ALU | BPF_AND | BPF_K
_RSH32_K = 0x74  # BPF_ALU | BPF_RSH | BPF_K
_MOV64_X = 0xBF  # BPF_ALU64 | BPF_MOV | BPF_X
_MOV64_K = 0xB7  # BPF_ALU64 | BPF_MOV | BPF_K
_JNE_K = 0x55  # BPF_JMP | BPF_JNE | BPF_K
_JEQ_K = 0x15  # BPF_JMP | BPF_JEQ | BPF_K
_JSET_K = 0x45  # BPF_JMP | BPF_JSET | BPF_K
_EXIT = 0x95
# Registers: R1 the context; R2 type, R3 access, R4 major, R5 minor; R6 scratch; R0 the verdict.
_TYPE, _ACC, _MAJOR, _MINOR, _TMP = 2, 3, 4, 5, 6


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> tuple[int, int, int, int, int]:
    return code, dst, src, off, imm


def _rule_block(allow: bool, rule: str) -> list[tuple[int, int, int, int, int]]:
    """The instructions for one rule ("c 1:3 rwm"); a jump offset of None means "to the next rule"."""
    kind, numbers, access = rule.split()
    major, minor = numbers.split(":")
    mask = sum(_ACCESS[a] for a in access)
    block: list = []
    if kind != "a":
        block.append([_JNE_K, _TYPE, 0, None, _TYPES[kind]])
    if mask != _RWM:
        if allow:  # matches only if nothing outside the rule's access is asked for
            block.append([_JSET_K, _ACC, 0, None, _RWM & ~mask])
        else:  # matches if any of the rule's access is asked for
            block.append([_MOV64_X, _TMP, _ACC, 0, 0])
            block.append([_AND32_K, _TMP, 0, 0, mask])
            block.append([_JEQ_K, _TMP, 0, None, 0])
    if major != "*":
        block.append([_JNE_K, _MAJOR, 0, None, int(major)])
    if minor != "*":
        block.append([_JNE_K, _MINOR, 0, None, int(minor)])
    block.append([_MOV64_K, 0, 0, 0, 1 if allow else 0])
    block.append([_EXIT, 0, 0, 0, 0])
    for i, insn in enumerate(block):  # "next rule" is just past this block
        if insn[3] is None:
            insn[3] = len(block) - i - 1
    return [tuple(insn) for insn in block]


def program(rules: tuple[tuple[bool, str], ...]) -> bytes:
    """The BPF program (struct bpf_insn[]) for OCI device rules in v1 syntax, as `Limits.devices` holds them."""
    insns = [
        _insn(_LDXW, _TYPE, 1, 0),
        _insn(_AND32_K, _TYPE, imm=0xFFFF),
        _insn(_LDXW, _ACC, 1, 0),
        _insn(_RSH32_K, _ACC, imm=16),
        _insn(_LDXW, _MAJOR, 1, 4),
        _insn(_LDXW, _MINOR, 1, 8),
    ]
    for allow, rule in reversed(rules):  # the last matching rule wins: test it first
        block = _rule_block(allow, rule)
        insns += block
        if len(block) == 2:  # matches everything ("a *:* rwm"): the verifier refuses unreachable code after it
            break
    else:
        insns += [_insn(_MOV64_K, 0, imm=0), _insn(_EXIT)]  # nothing matched: denied
    return b"".join(struct.pack("<BBhi", c, (s << 4) | d, o, i) for c, d, s, o, i in insns)


def _bpf(command: int, attr: bytes) -> int:
    number = _SYS_BPF.get(os.uname().machine)
    if number is None:
        raise OSError(0, f"bpf(2) is not wired for {os.uname().machine}")
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(attr, 128)  # the rest of union bpf_attr: zeros
    result = libc.syscall(ctypes.c_long(number), ctypes.c_int(command), buf, ctypes.c_uint(128))
    if result < 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))
    return result


def attach(cgroup_dir: str, rules: tuple[tuple[bool, str], ...]) -> None:
    """Load the program for `rules` and attach it to the cgroup v2 directory; OSError if the kernel refuses."""
    code = ctypes.create_string_buffer(program(rules))
    license_ = ctypes.create_string_buffer(b"Apache-2.0")
    log = ctypes.create_string_buffer(65536)
    attr = struct.pack(
        "<IIQQIIQII16s",
        _BPF_PROG_TYPE_CGROUP_DEVICE,
        len(code.raw) // 8,  # the buffer has one NUL more
        ctypes.addressof(code),
        ctypes.addressof(license_),
        1,  # log_level: the verifier's reason, if it refuses
        len(log),
        ctypes.addressof(log),
        0,
        0,
        b"mc_devices",
    )
    try:
        prog = _bpf(_BPF_PROG_LOAD, attr)
    except OSError as err:
        reason = log.value.decode(errors="replace").strip().splitlines()
        raise OSError(err.errno, f"{err.strerror}{': ' + ' '.join(reason[:3]) if reason else ''}") from None
    target = os.open(cgroup_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        _bpf(_BPF_PROG_ATTACH, struct.pack("<IIII", target, prog, _BPF_CGROUP_DEVICE, _BPF_F_ALLOW_MULTI))
    finally:
        os.close(target)
        os.close(prog)
