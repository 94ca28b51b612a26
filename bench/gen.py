#!/usr/bin/env python3
"""Deterministic `git fast-import` streams for the benchmark (stdlib only).

    python3 bench/gen.py text | git -C REPO fast-import --quiet
    python3 bench/gen.py tags | git -C REPO fast-import --quiet
    python3 bench/gen.py big  | git -C REPO fast-import --quiet

Same arguments -> byte-identical stream (fixed seed, fixed names, fixed dates), so the
repositories, and every object id in them, are the same on every machine.

text  ~2000 commits over 300 text files in 15 directories; each commit makes small line edits
      (a few lines replaced, a few inserted) in 3 files. The first commit imports ~75 MiB of
      word-salad text so that the packed history is ~30 MiB.
tags  10 commits on main and 10,000 lightweight tags (refs/tags/v00000 ... v09999) on them.
big   ~500 MiB packed: 100 commits, each replacing one of 20 binary files with 5 MiB of random
      (incompressible) bytes. Only built with BENCH_BIG=1.

Knobs (environment, for experiments; the defaults are what the benchmark uses):
BENCH_TEXT_COMMITS, BENCH_TEXT_FILES, BENCH_TEXT_FILE_KIB, BENCH_TAGS, BENCH_BIG_MIB.
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
    file_kib = env_int("BENCH_TEXT_FILE_KIB", 250)

    def line():
        return b" ".join(rng.choices(vocab, k=rng.randint(4, 16))) + b"\n"

    # ~60 bytes per line on average.
    lines_per_file = file_kib * 1024 // 60
    paths = ["doc%02d/chapter-%03d.txt" % (i % 15, i) for i in range(n_files)]
    files = [[line() for _ in range(lines_per_file)] for _ in paths]

    tip = s.commit(
        "refs/heads/main", 0, "import %d files" % n_files, None,
        [(p, s.blob(b"".join(f))) for p, f in zip(paths, files)],
    )
    for n in range(1, n_commits):
        touched = rng.sample(range(n_files), 3)
        changes = []
        for i in touched:
            f = files[i]
            for _ in range(rng.randint(1, 4)):  # replace a few lines
                f[rng.randrange(len(f))] = line()
            for _ in range(rng.randint(0, 6)):  # insert a few lines
                f.insert(rng.randrange(len(f) + 1), line())
            if rng.random() < 0.3 and len(f) > 10:  # sometimes delete one
                del f[rng.randrange(len(f))]
            changes.append((paths[i], s.blob(b"".join(f))))
        msg = "edit %s\n\nCommit %d of the text benchmark history." % (
            ", ".join(paths[i] for i in touched), n)
        tip = s.commit("refs/heads/main", n, msg, tip, changes)


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


def main():
    kinds = {"text": text, "tags": tags, "big": big}
    if len(sys.argv) != 2 or sys.argv[1] not in kinds:
        sys.exit("usage: gen.py text|tags|big > fast-import stream")
    out = sys.stdout.buffer
    s = Stream(out)
    kinds[sys.argv[1]](s)
    out.write(b"done\n")
    out.flush()


if __name__ == "__main__":
    main()
