#!/usr/bin/env python3
"""Deterministic `git fast-import` streams for the benchmark (stdlib only).

    python3 bench/gen.py text | git -C REPO fast-import --quiet
    python3 bench/gen.py tags | git -C REPO fast-import --quiet
    python3 bench/gen.py big  | git -C REPO fast-import --quiet

Same arguments -> byte-identical stream (fixed seed, fixed names, fixed dates), so the
repositories, and every object id in them, are the same on every machine.

text  ~2000 commits over 300 text files in 15 directories; each commit makes small line edits
      (a few lines replaced, a few inserted) in 3 files. The first commit imports ~65 MiB of
      word-salad text so that the packed history is ~30 MiB.
tags  10 commits on main and 10,000 lightweight tags (refs/tags/v00000 ... v09999) on them.
big   ~500 MiB packed: 100 commits, each replacing one of 20 binary files with 5 MiB of random
      (incompressible) bytes. Only built with BENCH_BIG=1.
csv   the data workflow (issue 13): data.csv of 8 MiB (rows of random numbers, ~2.4x under
      zlib), then 29 commits that each rewrite one row: 30 commits, 30 versions of the file.
csvbig  the same with a 40 MiB data.csv and one edit: 2 commits.
mirror  the refs of the mirror-push workload (issue 16 item 6), laid over a copy of the text
      history: reads that history's commit ids (oldest first, `git rev-list --reverse main`)
      on stdin and adds 700 branches, 500 lightweight tags and 300 annotated tags on them
      (1,500 refs + main), as a repository that is mirrored into a new remote looks.

Knobs (environment, for experiments; the defaults are what the benchmark uses):
BENCH_TEXT_COMMITS, BENCH_TEXT_FILES, BENCH_TEXT_FILE_KIB, BENCH_TAGS, BENCH_BIG_MIB,
BENCH_CSV_MIB (8), BENCH_CSV_EDITS (29), BENCH_CSVBIG_MIB (40).
"""

import os
import random
import sys

SEED = 20240611
EPOCH = 1_700_000_000  # 2023-11-14T22:13:20Z
AUTHOR = b"Bench Author <bench-author@example.com>"
COMMITTER = b"Bench Committer <bench-committer@example.com>"


def env_int(name, default):
    return int(os.environ.get(name, default))


class Stream:
    def __init__(self, out):
        self.out = out
        self.mark = 0

    def next_mark(self):
        self.mark += 1
        return self.mark

    def blob(self, data):
        m = self.next_mark()
        self.out.write(b"blob\nmark :%d\ndata %d\n" % (m, len(data)))
        self.out.write(data)
        self.out.write(b"\n")
        return m

    def commit(self, ref, n, message, parent, files, deletes=()):
        """files: [(path, blob mark)]; n: commit number, gives the date."""
        m = self.next_mark()
        when = b"%d +0000" % (EPOCH + n * 3600)
        msg = message.encode()
        w = self.out.write
        w(b"commit %s\nmark :%d\n" % (ref.encode(), m))
        w(b"author %s %s\ncommitter %s %s\n" % (AUTHOR, when, COMMITTER, when))
        w(b"data %d\n%s\n" % (len(msg), msg))
        if parent:
            w(b"from :%d\n" % parent)
        for path in deletes:
            w(b"D %s\n" % path.encode())
        for path, blob in files:
            w(b"M 100644 :%d %s\n" % (blob, path.encode()))
        w(b"\n")
        return m

    def reset(self, ref, mark):
        self.out.write(b"reset %s\nfrom :%d\n\n" % (ref.encode(), mark))


def vocabulary(rng, size=30000):
    """Pseudo-words from syllables: text-like, but with enough entropy that zlib gets ~2.5x."""
    syll = [c + v for c in "bcdfghjklmnprstvwz" for v in "aeiou"] + ["th", "ch", "qu", "st", "er"]
    words = set()
    while len(words) < size:
        words.add("".join(rng.choice(syll) for _ in range(rng.randint(1, 4))))
    return sorted(words)


def text(s):
    rng = random.Random(SEED)
    vocab = [w.encode() for w in vocabulary(rng)]
    n_commits = env_int("BENCH_TEXT_COMMITS", 2000)
    n_files = env_int("BENCH_TEXT_FILES", 300)
    file_kib = env_int("BENCH_TEXT_FILE_KIB", 220)

    def line():
        return b" ".join(rng.choices(vocab, k=rng.randint(4, 16))) + b"\n"

    # ~60 bytes per line on average.
    lines_per_file = file_kib * 1024 // 60
    paths = ["doc%02d/chapter-%03d.txt" % (i % 15, i) for i in range(n_files)]

    # Plan the history first: which files each commit touches and the edits, as operations on
    # line numbers that are resolved when the file's versions are replayed below.
    touched = [list(range(n_files))]  # commit 0 imports every file
    edits = [[] for _ in paths]  # per file: [(commit, [ops])]
    for n in range(1, n_commits):
        picked = sorted(rng.sample(range(n_files), 3))
        touched.append(picked)
        for i in picked:
            ops = [("set", rng.random(), line()) for _ in range(rng.randint(1, 4))]
            ops += [("ins", rng.random(), line()) for _ in range(rng.randint(0, 6))]
            if rng.random() < 0.3:
                ops.append(("del", rng.random(), None))
            edits[i].append((n, ops))

    # Blobs grouped by file, versions in order: fast-import deltas each blob against the blob
    # just before it in the stream, so this gives the small deltas a real history would have.
    blob_mark = {}  # (file, commit) -> mark
    for i, path in enumerate(paths):
        f = [line() for _ in range(lines_per_file)]
        blob_mark[(i, 0)] = s.blob(b"".join(f))
        for n, ops in edits[i]:
            for op, where, text_line in ops:
                if op == "set":
                    f[int(where * len(f))] = text_line
                elif op == "ins":
                    f.insert(int(where * (len(f) + 1)), text_line)
                elif len(f) > 10:
                    del f[int(where * len(f))]
            blob_mark[(i, n)] = s.blob(b"".join(f))

    tip = None
    for n, picked in enumerate(touched):
        if n == 0:
            msg = "import %d files" % n_files
        else:
            msg = "edit %s\n\nCommit %d of the text benchmark history." % (
                ", ".join(paths[i] for i in picked), n)
        tip = s.commit("refs/heads/main", n, msg, tip,
                       [(paths[i], blob_mark[(i, n)]) for i in picked])


def tags(s):
    n_tags = env_int("BENCH_TAGS", 10000)
    tip = None
    commits = []
    for n in range(10):
        b = s.blob(b"release notes %d\n" % n)
        tip = s.commit("refs/heads/main", n, "release %d" % n, tip, [("NOTES", b)])
        commits.append(tip)
    for t in range(n_tags):
        s.reset("refs/tags/v%05d" % t, commits[t % len(commits)])


def big(s):
    rng = random.Random(SEED + 1)
    total_mib = env_int("BENCH_BIG_MIB", 500)
    per = 5 * 1024 * 1024
    tip = None
    for n in range(total_mib // 5):
        path = "assets/blob-%02d.bin" % (n % 20)
        b = s.blob(rng.randbytes(per))
        tip = s.commit("refs/heads/main", n, "replace %s" % path, tip, [(path, b)])


def csv_history(s, seed, mib, edits):
    """data.csv of `mib` MiB, then `edits` commits that each rewrite one row."""
    rng = random.Random(seed)

    def row(i):
        return b"%d,2024-%02d-%02dT%02d:%02d:%02dZ,sensor-%03d,%.6f,%.6f,%d\n" % (
            i, rng.randint(1, 12), rng.randint(1, 28), rng.randint(0, 23), rng.randint(0, 59),
            rng.randint(0, 59), rng.randint(0, 999), rng.uniform(-90, 90), rng.uniform(-180, 180),
            rng.randint(0, 10**6))

    rows = [b"id,time,sensor,lat,lon,count\n"]
    size = len(rows[0])
    while size < mib * 1024 * 1024:
        rows.append(row(len(rows)))
        size += len(rows[-1])
    tip = s.commit("refs/heads/main", 0, "import data.csv", None, [("data.csv", s.blob(b"".join(rows)))])
    for n in range(1, edits + 1):
        i = rng.randrange(1, len(rows))
        rows[i] = row(i)
        tip = s.commit("refs/heads/main", n, "edit row %d" % i, tip,
                       [("data.csv", s.blob(b"".join(rows)))])


def csv(s):
    csv_history(s, SEED + 2, env_int("BENCH_CSV_MIB", 8), env_int("BENCH_CSV_EDITS", 29))


def csvbig(s):
    csv_history(s, SEED + 3, env_int("BENCH_CSVBIG_MIB", 40), 1)


def mirror(s):
    commits = [line.strip().encode() for line in sys.stdin if line.strip()]
    if not commits:
        sys.exit("gen.py mirror: no commit ids on stdin (git rev-list --reverse main)")
    rng = random.Random(SEED + 4)
    w = s.out.write
    # Branches and tags land on commits all over the history (as in a real project's
    # release branches and tags), so the push's pack holds the whole history.
    for b in range(700):
        w(b"reset refs/heads/topic/%04d\nfrom %s\n\n" % (b, rng.choice(commits)))
    for t in range(500):
        w(b"reset refs/tags/build-%04d\nfrom %s\n\n" % (t, rng.choice(commits)))
    for t in range(300):
        msg = b"Release 1.%d\n" % t
        w(b"tag v1.%d\nfrom %s\ntagger %s %d +0000\ndata %d\n%s\n"
          % (t, rng.choice(commits), COMMITTER, EPOCH + t * 86400, len(msg), msg))


def main():
    kinds = {"text": text, "tags": tags, "big": big, "csv": csv, "csvbig": csvbig,
             "mirror": mirror}
    if len(sys.argv) != 2 or sys.argv[1] not in kinds:
        sys.exit("usage: gen.py text|tags|big|csv|csvbig|mirror > fast-import stream")
    out = sys.stdout.buffer
    s = Stream(out)
    kinds[sys.argv[1]](s)
    out.write(b"done\n")
    out.flush()


if __name__ == "__main__":
    main()
