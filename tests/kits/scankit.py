"""What a container's process sees of others: scanners that report a host process showing inside a container."""

from __future__ import annotations

# Every process whose executable is not the container's busybox (or cannot be read) is looked at closely:
# a readable host executable, the host's marker in its environment, or a writable mem is a finding.
# The control proves the scanner can see what it looks for: the mem of its own child (same user, dumpable).
# The kernel refuses a non-dumpable process's mem, so a mem opened before an exec to busybox is a finding.
SCANNER = r"""
sleep 1000 & control=$!
if (exec 3<>/proc/$control/mem) 2>/dev/null; then echo ok > /tmp/control; fi
kill $control
me=$$
: > /tmp/findings
echo started > /tmp/started
while :; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$me" ] && continue
    e=$(readlink $d/exe 2>/dev/null)
    [ "$e" = /bin/busybox ] && continue
    [ -n "$e" ] && echo "exe $p $e" >> /tmp/findings
    grep -q "HOST-ONLY-" $d/environ 2>/dev/null && echo "environ $p" >> /tmp/findings
    if (exec 3<>$d/mem) 2>/dev/null; then
      after=$(readlink $d/exe 2>/dev/null)  # it may have exec'ed busybox since: then it is the container's
      state=$(cut -d' ' -f3 $d/stat 2>/dev/null)  # a process that ended has no memory: its mem opens empty
      [ "$after" = /bin/busybox ] || [ -z "$state" ] || [ "$state" = Z ] || echo "mem $p $e" >> /tmp/findings
    fi
  done
done
"""


# With CAP_SYS_PTRACE the container may read and write any of its processes (dumpable or not), so the
# joining process runs from a sealed memfd copy of the interpreter: its exe may be that memfd (which
# no write reaches), never a file of the host's, and its environment is empty.
PTRACE_SCANNER = r"""
me=$$
: > /tmp/findings
echo started > /tmp/started
echo ok > /tmp/control
while :; do
  for d in /proc/[0-9]*; do
    p=${d#/proc/}
    [ "$p" = "$me" ] && continue
    e=$(readlink $d/exe 2>/dev/null)
    case "$e" in
      /bin/busybox|"") ;;
      /memfd:*) if (printf x 1<>$d/exe) 2>/dev/null; then echo "writable exe $p $e" >> /tmp/findings; fi ;;
      *) echo "exe $p $e" >> /tmp/findings ;;
    esac
    grep -q "HOST-ONLY-" $d/environ 2>/dev/null && echo "environ $p" >> /tmp/findings
  done
done
"""
