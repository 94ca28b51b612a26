#!/usr/bin/env python3
"""Run a command and sample the memory of it and its descendants (stdlib only, Linux).

    rss_sample.py [--every SECONDS] -- CMD...

/usr/bin/time's peak RSS counts file-backed pages too: a process that mmaps a 500 MiB pack
shows 500 MiB even though the kernel can drop those pages at will. This samples
/proc/PID/status of the command's process tree every 20 ms and prints, per program, the peak
of VmRSS and of its parts RssAnon (heap: what the program really allocated) and RssFile
(mapped files), in MiB, on stderr. The command's exit status is passed on.
"""

import os
import subprocess
import sys
import time
from collections import defaultdict


def children():
    """pid -> parent pid for every process."""
    out = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat = f.read()
            out[int(d)] = int(stat[stat.rindex(")") + 2:].split()[1])
        except (OSError, ValueError):
            pass
    return out


def status(pid):
    """(program name, {field: kB}) from /proc/PID/status, or None if it is gone."""
    try:
        with open("/proc/%d/status" % pid) as f:
            lines = f.read().splitlines()
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            argv = f.read().split(b"\0")
    except OSError:
        return None
    fields = {}
    for line in lines:
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "RssShmem"):
            fields[key] = int(value.split()[0])
    # "git pack-objects", "git-remote-hypha": the program and, for git, its subcommand.
    words = [os.path.basename(a.decode(errors="replace")) for a in argv if a]
    if not words:
        return None
    name = words[0]
    if name == "git":
        # The subcommand: the first word that is neither an option nor an option's value.
        rest = iter(words[1:])
        for w in rest:
            if w in ("-C", "-c", "--git-dir", "--work-tree", "--namespace"):
                next(rest, None)
            elif not w.startswith("-"):
                name = "git " + w
                break
    return name, fields


def main():
    args = sys.argv[1:]
    every = 0.02
    if args[:1] == ["--every"]:
        every = float(args[1])
        args = args[2:]
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        sys.exit("usage: rss_sample.py [--every SECONDS] -- CMD...")
    peak = defaultdict(lambda: defaultdict(int))  # name -> field -> max kB
    proc = subprocess.Popen(args)
    while proc.poll() is None:
        parents = children()
        tree = {proc.pid}
        grew = True
        while grew:
            grew = False
            for pid, ppid in parents.items():
                if ppid in tree and pid not in tree:
                    tree.add(pid)
                    grew = True
        for pid in tree:
            st = status(pid)
            if st is None:
                continue
            name, fields = st
            for key, kb in fields.items():
                peak[name][key] = max(peak[name][key], kb)
        time.sleep(every)
    for name in sorted(peak):
        f = peak[name]
        print("rss %-24s VmRSS %6.0f MiB  RssAnon %6.0f MiB  RssFile %6.0f MiB" % (
            name, f["VmRSS"] / 1024, f["RssAnon"] / 1024, f["RssFile"] / 1024), file=sys.stderr)
    sys.exit(proc.returncode)


if __name__ == "__main__":
    main()
