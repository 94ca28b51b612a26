#!/usr/bin/env python3
"""Markdown report of bench/run.sh's measurements (stdlib only).

    report.py META RESULTS.tsv PACKS.tsv FAILURES.txt
"""

import csv
import statistics
import sys
from collections import defaultdict

PEERS = ["daemon", "file", "hypha"]
OPS = [
    "clone text", "full push text", "push 1 commit", "fetch 1 commit", "no-op fetch",
    "push 10k tags", "mirror push 1.5k refs", "ls-remote 10k tags", "clone big", "full push big",
]


def med(xs):
    return statistics.median(xs) if xs else None


def mib(b):
    return "%.1f MiB" % (b / 1048576) if b >= 1048576 else "%.1f KiB" % (b / 1024)


def main():
    meta_path, results_path, packs_path, failures_path = sys.argv[1:5]
    meta = dict(line.rstrip("\n").split("=", 1) for line in open(meta_path) if "=" in line)
    rows = list(csv.DictReader(open(results_path), delimiter="\t"))
    packs = [line.rstrip("\n").split("\t") for line in open(packs_path) if line.strip()]
    failures = open(failures_path).read().strip()

    by = defaultdict(list)  # (op, peer) -> rows
    for r in rows:
        by[(r["op"], r["peer"])].append(r)
    # hypha-s3 (BENCH_S3=1): the same server on S3, one more column and ratio.
    s3 = any(r["peer"] == "hypha-s3" for r in rows)
    peers = PEERS + (["hypha-s3"] if s3 else [])
    ops = [op for op in OPS if any((op, p) in by for p in peers)]

    def ok_rows(op, peer):
        return [r for r in by[(op, peer)] if r["ok"] == "1"]

    def secs(op, peer):
        return [float(r["seconds"]) for r in ok_rows(op, peer)]

    out = []
    w = out.append
    w("# git-remote-hypha benchmark")
    w("")
    w("- date: %s (finished %s)" % (meta["started"], meta["finished"]))
    w("- nproc: %s (%s); load average before/after: %s / %s"
      % (meta["nproc"], meta["cpu"], meta["load_before"], meta["load_after"]))
    w("- %s; product at %s" % (meta["git"], meta["product"]))
    w("- datasets: text: %s; tags: %s%s%s" % (
        meta["text"], meta["tags"], ("; mirror: " + meta["mirror"]) if "mirror" in meta else "",
        ("; big: " + meta["big"]) if "big" in meta else ""))
    w("- %s rounds; every cell is the median over the rounds [min-max]; peers interleaved "
      "in each round, order rotated between rounds" % meta["runs"])
    w("")
    w("## Wall time (seconds)")
    w("")
    if s3:
        w("| operation | git daemon | file:// | hypha | hypha on S3 | hypha/daemon | hypha/file "
          "| S3/daemon |")
        w("|---|---:|---:|---:|---:|---:|---:|---:|")
    else:
        w("| operation | git daemon | file:// | hypha | hypha/daemon | hypha/file |")
        w("|---|---:|---:|---:|---:|---:|")
    for op in ops:
        cells, m = [], {}
        for p in peers:
            xs = secs(op, p)
            n_fail = len(by[(op, p)]) - len(xs)
            m[p] = med(xs)
            if xs:
                c = "%.3f [%.3f-%.3f]" % (m[p], min(xs), max(xs))
            else:
                c = "-"
            if n_fail:
                c += " (%d FAILED)" % n_fail
            cells.append(c)
        ratios = [("hypha", "daemon"), ("hypha", "file")] + ([("hypha-s3", "daemon")] if s3 else [])
        for p, q in ratios:
            cells.append("%.2fx" % (m[p] / m[q]) if m[p] and m[q] else "-")
        w("| %s | %s |" % (op, " | ".join(cells)))
    w("")

    w("## hypha: HTTP requests and memory (medians)")
    w("")
    w("Requests are the lines `git hypha serve` logged during the operation (API calls + "
      "presigned `/_store` GET/PUT, which the local store serves itself). Helper RSS: peak of "
      "`git-remote-hypha` or any child it waited for (`git pack-objects`). Client RSS: peak of "
      "the git command or any process it waited for (for file:// this includes "
      "`git upload-pack`/`pack-objects`, i.e. the serving side). Server RSS: VmHWM of "
      "`git hypha serve`, reset before each operation.")
    w("")
    w("| operation | requests (API) | requests by route (round 1) | helper peak RSS | "
      "client peak RSS daemon / file / hypha | server peak RSS |")
    w("|---|---:|---|---:|---:|---:|")
    for op, peer in [(op, "hypha") for op in ops] + [(op, "hypha-s3") for op in ops if s3]:
        hs = ok_rows(op, peer)
        label = op if peer == "hypha" else op + " (S3: API requests only)"
        if not hs:
            w("| %s | - | - | - | - | - |" % label)
            continue
        reqs = med([int(r["requests"]) for r in hs])
        api = med([int(r["api_requests"]) for r in hs])
        routes = sorted(hs, key=lambda r: int(r["round"]))[0]["routes"]
        hrss = med([int(r["helper_rss_kb"]) for r in hs])
        srss = med([int(r["server_hwm_kb"]) for r in hs])
        crss = []
        for p in ("daemon", "file", peer):
            xs = [int(r["client_rss_kb"]) for r in ok_rows(op, p)]
            crss.append("%.0f" % (med(xs) / 1024) if xs else "-")
        w("| %s | %g (%g) | %s | %.0f MiB | %s MiB | %.0f MiB |" % (
            label, reqs, api, routes.replace(" ", ", "), hrss / 1024, " / ".join(crss), srss / 1024))
    w("")

    w("## Pack bytes uploaded")
    w("")
    w("hypha: size of the new `.pack` files in the server's store after the push; "
      "baseline: `git pack-objects --revs --stdout --delta-base-offset` of the same objects; "
      "daemon/file: the `.pack` git receive-pack kept (one-commit pushes are unpacked to loose "
      "objects, so none).")
    w("")
    w("| push | baseline (pack-objects) | hypha | hypha/baseline | thin pack (`--thin`, what git push sends) | git daemon kept | file:// kept |")
    w("|---|---:|---:|---:|---:|---:|---:|")
    pk = defaultdict(list)
    for op, peer, _round, size in packs:
        pk[(op, peer)].append(int(size))
    for op in ("full push text", "push 1 commit", "full push big"):
        base = med(pk[(op, "pack-objects")])
        if base is None:
            continue
        h = med(pk[(op, "hypha")])
        cells = [mib(base), mib(h) if h is not None else "-",
                 "%.3f" % (h / base) if h is not None else "-"]
        thin = med(pk[(op, "pack-objects--thin")])
        cells.append(mib(thin) if thin is not None else "same")
        for p in ("daemon", "file"):
            v = med(pk[(op, p)])
            cells.append(mib(v) if v else "-")
        w("| %s | %s |" % (op, " | ".join(cells)))
    w("")

    if failures:
        w("## Failures")
        w("")
        w(failures)
        w("")
    print("\n".join(out))


if __name__ == "__main__":
    main()
