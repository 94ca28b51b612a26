#!/usr/bin/env python3
"""Markdown table of bench/data.sh's rows (stdlib only).

    python3 bench/data_report.py DATA_TSV AUTOGC_LINES

DATA_TSV: op, peer, ok, seconds, up, down (bytes through the relay, '-' for file://),
helper_rss_kb (peak RSS of git-remote-hypha with its children; optional).
Prints, per workflow, hypha's bytes against git daemon's, the ratio, issue 13's target
(edit-pushes: 2x git's bytes + 8 KiB per push; the clone: 1.5x git daemon) and the times.
"""

import csv
import re
import statistics
import sys


def fmt_bytes(n):
    if n is None:
        return "-"
    for unit, size in (("MB", 1e6), ("KB", 1e3)):
        if n >= size:
            return "%.1f %s" % (n / size, unit)
    return "%d B" % n


def main():
    rows = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
    autogc = open(sys.argv[2]).read().splitlines() if len(sys.argv) > 2 else []
    data = {}  # (workflow, peer) -> [bytes, seconds, pushes, ok, peak helper RSS in KiB]
    for r in rows:
        op, peer = r["op"], r["peer"]
        direction = "down" if op.startswith("clone") else "up"
        n = None if r[direction] == "-" else int(r[direction])
        keys = [op]
        series = re.fullmatch(r"edit-push (\d+) MiB CSV #(\d+)", op)
        if series:
            mib = series.group(1)
            keys = ["edit-pushes %s MiB CSV" % mib]
            if series.group(2) == "1":
                keys.append("edit-push %s MiB CSV" % mib)
        for key in keys:
            acc = data.setdefault((key, peer), [0, 0.0, 0, True, 0])
            acc[0] = None if n is None or acc[0] is None else acc[0] + n
            acc[1] += float(r["seconds"])
            acc[2] += 1
            acc[3] = acc[3] and r["ok"] == "1"
            acc[4] = max(acc[4], int(r.get("helper_rss_kb") or 0))
    def rank(key):
        kind = 0 if key.startswith("edit-push ") else 1 if key.startswith("edit-pushes") else 2
        mib = re.search(r"(\d+) MiB", key)
        return (kind, -int(mib.group(1)) if mib else 0, key)

    order = sorted({k for k, _ in data if not k.startswith("first push")}, key=rank)
    print("\n## Data workflows (issue 13; bench/data.sh, one pass)\n")
    print("Bytes between git and the server, counted by a TCP relay on loopback (hypha: API "
          "calls and presigned transfers; git daemon: git's protocol). Target: edit-pushes at "
          "most 2x git + 8 KiB per push, the clone at most 1.5x git daemon.\n")
    print("| workflow | hypha | git daemon | ratio | target | hypha time | git daemon time "
          "| file:// time | helper peak RSS |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for key in order:
        h, d, f = (data.get((key, p)) for p in ("hypha", "daemon", "file"))
        if not h or not d:
            continue
        name = key
        if key.startswith("edit-pushes"):
            name = "%d edit-pushes of the %s, one each (total)" % (h[2], key.split(" ", 1)[1])
        if key.startswith("clone"):
            target = 1.5 * d[0]
        else:
            target = 2 * d[0] + 8192 * h[2]
        ratio = "%.1fx" % (h[0] / d[0]) if d[0] else "-"
        verdict = "ok" if h[0] <= target else "over"
        bad = "" if h[3] and d[3] else " (failed, see above)"
        print("| %s%s | %s | %s | %s | %s %s | %.2fs | %.2fs | %s | %s |" % (
            name, bad, fmt_bytes(h[0]), fmt_bytes(d[0]), ratio, fmt_bytes(target), verdict,
            h[1], d[1], "%.2fs" % f[1] if f else "-",
            "%d MiB" % (h[4] // 1024) if h[4] else "-"))
    # Per push of the edit-push series: whether a push costs more than the one before
    # (a growing delta chain did: 0.31 s for the first, 1.26 s for the 29th).
    series = {}
    for r in rows:
        m = re.fullmatch(r"edit-push (\d+) MiB CSV #(\d+)", r["op"])
        if m:
            series.setdefault((m.group(1), r["peer"]), []).append(float(r["seconds"]))
    for mib in sorted({m for m, _ in series}, key=int):
        print("\nPer push of the %s MiB CSV's edit-pushes (first, 10th, last, median):\n" % mib)
        print("| peer | first | 10th | last | median |")
        print("|---|---:|---:|---:|---:|")
        for peer in ("hypha", "daemon", "file"):
            t = series.get((mib, peer))
            if t:
                tenth = "%.2fs" % t[9] if len(t) >= 10 else "-"
                print("| %s | %.2fs | %s | %.2fs | %.2fs |" % (
                    peer, t[0], tenth, t[-1], statistics.median(t)))
    if autogc:
        print("\nThe data server's auto-gc (%d lines; last 3):\n" % len(autogc))
        print("```")
        for line in autogc[-3:]:
            print(line)
        print("```")


if __name__ == "__main__":
    main()
