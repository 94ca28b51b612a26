#!/usr/bin/env python3
"""Markdown report of bench/many-pushes.sh's measurements (stdlib only).

    many_report.py META RESULTS.tsv FAILURES.txt
"""

import csv
import statistics
import sys
from collections import defaultdict

TARGET = 1.5  # issue 4: within 1.5x of the freshly packed repository


def med(xs):
    return statistics.median(xs) if xs else None


def mib(b):
    return "%.1f MiB" % (int(b) / 1048576)


def main():
    meta_path, results_path, failures_path = sys.argv[1:4]
    meta = dict(line.rstrip("\n").split("=", 1) for line in open(meta_path) if "=" in line)
    rows = list(csv.DictReader(open(results_path), delimiter="\t"))
    failures = open(failures_path).read().strip()

    by = defaultdict(list)  # (phase, op, peer) -> rows
    for r in rows:
        by[(r["phase"], r["op"], r["peer"])].append(r)

    def ok(phase, op, peer):
        return [r for r in by[(phase, op, peer)] if r["ok"] == "1"]

    def secs(phase, op, peer):
        return [float(r["seconds"]) for r in ok(phase, op, peer)]

    def cell(xs, n_fail):
        if not xs:
            return "-" + (" (%d FAILED)" % n_fail if n_fail else "")
        c = "%.3f [%.3f-%.3f]" % (med(xs), min(xs), max(xs))
        return c + (" (%d FAILED)" % n_fail if n_fail else "")

    def reqs(phase, op, peer):
        rs = ok(phase, op, peer)
        if not rs:
            return "-"
        first = sorted(rs, key=lambda r: int(r["round"]))[0]["routes"].replace(" ", ", ")
        return "%g: %s" % (med([int(r["requests"]) for r in rs]), first)

    def rss(phase, op, peer):
        xs = [int(r["helper_rss_kb"]) for r in ok(phase, op, peer)]
        return "%.0f MiB" % (med(xs) / 1024) if xs else "-"

    out = []
    w = out.append
    pushes = int(meta["pushes"])
    w("# git-remote-hypha: many pushes stay fast")
    w("")
    w("- date: %s (finished %s)" % (meta["started"], meta["finished"]))
    w("- nproc: %s (%s); load average before/after: %s / %s"
      % (meta["nproc"], meta["cpu"], meta["load_before"], meta["load_after"]))
    w("- %s; product at %s; `git hypha serve` on local disk, release build"
      % (meta["git"], meta["product"]))
    w("- history: the text dataset (%s commits). `many`: main~%d in one push, then %d "
      "single-commit pushes; `packed`: the same history in one push. After gc, `packed-after` "
      "gets the grown history in one push." % (meta["history"], pushes, pushes))
    w("- %s rounds; cells are medians [min-max] in seconds; the two remotes alternate within "
      "each round, order swapped between rounds. Each round pushes one new commit to both "
      "remotes, so each ends with %s more packs." % (meta["runs"], meta["runs"]))
    w("")

    single = secs("setup", "single-commit push", "many")
    if single:
        w("The %d single-commit pushes took %.1f s in all (median %.3f s, max %.3f s)."
          % (len(single), sum(single), med(single), max(single)))
        w("")
    n, b = meta["many_store"].split()
    pn, pb = meta["packed_store"].split()
    gn, gb = meta["gc_store"].split()
    w("Store after the pushes: `many` %s packs, %s; `packed` %s pack, %s. "
      "After gc: %s pack files (retired ones stay until the grace period ends), %s."
      % (n, mib(b), pn, mib(pb), gn, mib(gb)))
    if meta.get("auto_gc", "0") != "0":
        ln, lb, wait = meta["many_live"].split()
        en, eb = meta["many_live_end"].split()
        w("Server auto-gc on (`serve --auto-gc-packs %s`): %s compactions of `many` "
          "(%.1f s in all, %s failed); live packs after the pushes: %s, %s (settled %s s later); "
          "after the \"before gc\" rounds: %s, %s."
          % (meta["auto_gc"], meta["auto_gc_runs"], int(meta["auto_gc_ms"]) / 1000,
             meta["auto_gc_failed"], ln, mib(lb), wait, en, mib(eb)))
    else:
        w("Server auto-gc off (`serve --auto-gc-packs 0`).")
    if "server_hwm_kb" in meta:
        w("Server peak RSS through the pushes and the \"before gc\" rounds (VmHWM of `git hypha "
          "serve`, auto-gc included): %.0f MiB." % (int(meta["server_hwm_kb"]) / 1024))
    gc = ok("gc", "git hypha gc", "many")
    if gc:
        w("`git hypha gc` took %.1f s, %s requests (%s): %s"
          % (float(gc[0]["seconds"]), gc[0]["requests"], gc[0]["routes"].replace(" ", ", "),
             meta.get("gc_said", "")))
    w("")

    w("## Wall time (seconds)")
    w("")
    w("| state | operation | many pushes | freshly packed | ratio | target <= %.1fx |" % TARGET)
    w("|---|---|---:|---:|---:|---|")
    for phase, fresh in (("before gc", "packed"), ("after gc", "packed-after")):
        for op in ("clone", "fetch 1 commit"):
            a, p = secs(phase, op, "many"), secs(phase, op, fresh)
            fa = len(by[(phase, op, "many")]) - len(a)
            fp = len(by[(phase, op, fresh)]) - len(p)
            ratio = med(a) / med(p) if a and p else None
            w("| %s | %s | %s | %s | %s | %s |" % (
                phase, op, cell(a, fa), cell(p, fp),
                "%.2fx" % ratio if ratio else "-",
                ("met" if ratio <= TARGET else "MISSED") if ratio else "-"))
        if phase == "before gc" and by[(phase, "fetch 1 commit, local clone repacked", "many")]:
            op = "fetch 1 commit, local clone repacked"
            a = secs(phase, op, "many")
            p = secs(phase, "fetch 1 commit", fresh)
            fa = len(by[(phase, op, "many")]) - len(a)
            ratio = med(a) / med(p) if a and p else None
            w("| %s | %s | %s | %s | %s | %s |" % (
                phase, op, cell(a, fa), cell(p, 0), "%.2fx" % ratio if ratio else "-",
                ("met" if ratio <= TARGET else "MISSED") if ratio else "-"))
        if phase == "after gc":
            op = "fetch 1 commit, clone from before gc"
            a = secs(phase, op, "many")
            p = secs(phase, "fetch 1 commit", fresh)
            fa = len(by[(phase, op, "many")]) - len(a)
            ratio = med(a) / med(p) if a and p else None
            w("| %s | %s | %s | %s | %s | %s |" % (
                phase, op, cell(a, fa), cell(p, 0), "%.2fx" % ratio if ratio else "-", "(once)"))
    w("")

    w("## HTTP requests (median; by route in round 1) and helper peak RSS (median)")
    w("")
    w("| state | operation | many pushes | freshly packed | helper RSS many / packed |")
    w("|---|---|---|---|---:|")
    for phase, fresh in (("before gc", "packed"), ("after gc", "packed-after")):
        for op in ("clone", "push 1 commit", "fetch 1 commit"):
            w("| %s | %s | %s | %s | %s / %s |" % (
                phase, op, reqs(phase, op, "many"), reqs(phase, op, fresh),
                rss(phase, op, "many"), rss(phase, op, fresh)))
    op = "fetch 1 commit, clone from before gc"
    w("| after gc | %s | %s | - | %s |" % (op, reqs("after gc", op, "many"), rss("after gc", op, "many")))
    w("")

    if failures:
        w("## Failures")
        w("")
        w(failures)
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
