"""The seccomp filters that the systemd units' `SystemCallFilter=@system-service` and
`MemoryDenyWriteExecute=yes` install, built with libseccomp (as systemd builds them) so that a
test can run our processes under them where systemd is not PID 1.

`python -m tests.unit_filters COMMAND ARG...` installs both filters, then executes COMMAND:
- a system call outside systemd's @system-service group (as this machine's
  `systemd-analyze syscall-filter` expands it) kills the process with SIGSYS, systemd's
  default action;
- mmap() of memory both writable and executable, mprotect()/pkey_mprotect() adding execute
  permission, and shmat() with SHM_EXEC fail with EPERM, the rules of systemd 252's
  seccomp_memory_deny_write_execute().
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import subprocess
import sys

SYSTEM_CALL_GROUP = "@system-service"  # the units' SystemCallFilter=
SCMP_ACT_KILL_PROCESS = 0x80000000
SCMP_ACT_ALLOW = 0x7FFF0000
SCMP_ACT_ERRNO_EPERM = 0x00050000 | 1  # SCMP_ACT_ERRNO(EPERM)
SCMP_CMP_MASKED_EQ = 7
PROT_WRITE, PROT_EXEC, SHM_EXEC = 0x2, 0x4, 0o100000
# (system call, mask of its third argument that must not be fully set)
WRITE_EXECUTE_RULES = (
    ("mmap", PROT_WRITE | PROT_EXEC),
    ("mprotect", PROT_EXEC),
    ("pkey_mprotect", PROT_EXEC),
    ("shmat", SHM_EXEC),
)


class _ArgumentTest(ctypes.Structure):
    """libseccomp's struct scmp_arg_cmp."""

    _fields_ = [
        ("arg", ctypes.c_uint),
        ("op", ctypes.c_int),
        ("datum_a", ctypes.c_uint64),
        ("datum_b", ctypes.c_uint64),
    ]


def syscall_group(name: str) -> set[str]:
    """The system calls of a systemd group, nested groups expanded."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        raise RuntimeError("systemd-analyze is not installed")
    listing = subprocess.run(
        [analyze, "syscall-filter"], capture_output=True, text=True, check=True
    ).stdout
    groups: dict[str, list[str]] = {}
    members: list[str] | None = None
    for line in listing.splitlines():
        if line.startswith("@"):
            members = groups.setdefault(line.strip(), [])
        elif not line.strip():
            members = None
        elif members is not None and not line.strip().startswith("#"):
            members.append(line.strip())

    def expand(group: str) -> set[str]:
        calls: set[str] = set()
        for member in groups[group]:
            calls |= expand(member) if member.startswith("@") else {member}
        return calls

    return expand(name)


def _libseccomp() -> ctypes.CDLL:
    library = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2")
    library.seccomp_init.argtypes = [ctypes.c_uint32]
    library.seccomp_init.restype = ctypes.c_void_p
    library.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    library.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(_ArgumentTest),
    ]
    library.seccomp_load.argtypes = [ctypes.c_void_p]
    library.seccomp_release.argtypes = [ctypes.c_void_p]
    return library


def _checked(result: int, what: str) -> None:
    if result < 0:
        raise OSError(-result, f"libseccomp: {what}: {os.strerror(-result)}")


def install_filters(allowed: set[str]) -> None:
    """Load both filters into this process; they stay through execve()."""
    seccomp = _libseccomp()
    write_execute = seccomp.seccomp_init(SCMP_ACT_ALLOW)
    for call, mask in WRITE_EXECUTE_RULES:
        test = _ArgumentTest(2, SCMP_CMP_MASKED_EQ, mask, mask)
        number = seccomp.seccomp_syscall_resolve_name(call.encode())
        result = seccomp.seccomp_rule_add_array(
            write_execute, SCMP_ACT_ERRNO_EPERM, number, 1, ctypes.byref(test)
        )
        _checked(result, call)
    _checked(seccomp.seccomp_load(write_execute), "load MemoryDenyWriteExecute")
    seccomp.seccomp_release(write_execute)

    allow_list = seccomp.seccomp_init(SCMP_ACT_KILL_PROCESS)
    for call in sorted(allowed):
        number = seccomp.seccomp_syscall_resolve_name(call.encode())
        if number < 0:  # a system call of another architecture
            continue
        _checked(seccomp.seccomp_rule_add_array(allow_list, SCMP_ACT_ALLOW, number, 0, None), call)
    _checked(seccomp.seccomp_load(allow_list), "load SystemCallFilter")
    seccomp.seccomp_release(allow_list)


if __name__ == "__main__":
    command = sys.argv[1:]
    install_filters(syscall_group(SYSTEM_CALL_GROUP))
    os.execv(command[0], command)
