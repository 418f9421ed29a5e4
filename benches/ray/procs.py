"""The processes of a Ray session, read from /proc (Linux only).

`ray.init` started from a driver makes every process of the session a
descendant of the driver: gcs_server, raylet, the dashboard head and agents,
log_monitor, the autoscaler monitor, and the workers (started by the raylet).
"""

import os


def proc_status_kib(pid, field):
    """A `/proc/<pid>/status` field in KiB (VmHWM, VmRSS); 0 if unreadable."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for row in f:
                if row.startswith(field + ":"):
                    return int(row.split()[1])
    except (OSError, ValueError):
        pass
    return 0


def descendants(root):
    """`root` and every live process descending from it."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(children.get(pid, []))
    return found


def process_name(pid):
    """raylet, gcs_server, ray::IDLE, log_monitor.py, ... with its pid."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\0") if a]
    except OSError:
        argv = []
    if pid == os.getpid():
        name = "driver+client"
    elif not argv:
        name = "?"
    elif argv[0].startswith("ray::"):
        name = argv[0].split()[0]
    else:
        scripts = [a for a in argv[1:] if a.endswith(".py")]
        name = os.path.basename(scripts[0] if scripts else argv[0])
    return f"{name} ({pid})"


def peak_rss_mib():
    """VmHWM of this process (the driver) and of every process descending
    from it, in MiB by process name."""
    pids = descendants(os.getpid())
    return {process_name(p): proc_status_kib(p, "VmHWM") / 1024 for p in pids}


def reset_peak_rss():
    """Resets the VmHWM of this process and its descendants to their
    current RSS (Linux: `5` written to /proc/<pid>/clear_refs), as
    taskmesh's bench does before each W2 size."""
    for p in descendants(os.getpid()):
        try:
            with open(f"/proc/{p}/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
