# Sourced by bench/run.sh (BENCH_DATA=1, the default): the data workflows of issue 13, side by
# side with git, bytes on the wire and time.
#
#   edit-push 40 MiB CSV     push of a one-line edit of a 40 MiB CSV (csvbig: its first version
#                            is pushed before, not counted)
#   edit-push 8 MiB CSV      the same for an 8 MiB CSV: the first of ...
#   29 edit-pushes 8 MiB CSV one push per edit, bytes summed (BENCH_CSV_EDITS)
#   clone after 30 pushes    a fresh `git clone --bare --no-local` of that history (and one of
#                            the 40 MiB CSV's two versions)
#
# Peers: `git daemon` and `git hypha serve` (local disk, auto-gc on with its defaults) each
# behind a TCP relay on loopback (bench/relay.py) that counts every byte between git and the
# server: git's protocol for the daemon; API calls and presigned transfers for hypha (serve
# `--public-url` points at the relay). `file://` gets times only (no network). Before each
# measured push and before the clone, the bench waits until the server's auto-gc is idle
# (its "compacting" and "merged" log lines pair up): the compaction's own transfers pass the
# relay too and are not the client's. Each workflow runs once per run (it is a sequence), so
# times are single samples; bytes are deterministic up to the server's compaction timing.
#
# Uses run.sh's work, remotes, dport, data, peers helpers (free_port, note, die, check, pids).

data_relay() { # data_relay TARGET_PORT NAME: starts a relay; its ports go to $work/relay-NAME.ports
  local f=$work/relay-$2.ports
  python3 "$here/relay.py" "$1" "$f" 2>>"$work/relay-$2.log" &
  pids+=($!)
  for _ in $(seq 100); do
    [ -s "$f" ] && return
    sleep 0.05
  done
  die "relay $2 did not start: $(cat "$work/relay-$2.log")"
}
data_counts() { # data_counts CONTROL_PORT: "UP DOWN" so far
  local line
  exec 4<>"/dev/tcp/127.0.0.1/$1"
  read -r line <&4
  exec 4<&-
  echo "$line"
}

data_workflows() {
  local drelay dctl hport hrelay hctl dserve_pid peer
  data_relay "$dport" daemon
  read -r drelay dctl <"$work/relay-daemon.ports"
  hport=$(free_port)
  data_relay "$hport" hypha
  read -r hrelay hctl <"$work/relay-hypha.ports"
  git-hypha serve --root "$work/store-data" --listen "127.0.0.1:$hport" \
    --public-url "http://127.0.0.1:$hrelay" >"$work/serve-data.out" 2>"$work/serve-data.log" &
  pids+=($!)
  dserve_pid=$!
  for _ in $(seq 100); do
    grep -q '^listening on' "$work/serve-data.out" 2>/dev/null && break
    kill -0 "$dserve_pid" 2>/dev/null || die "git hypha serve (data) exited: $(cat "$work/serve-data.log")"
    sleep 0.1
  done
  note "data workflows: git daemon behind relay :$drelay, git hypha serve :$hport behind relay :$hrelay"

  data_url() { # data_url PEER NAME
    case $1 in
      daemon) echo "git://127.0.0.1:$drelay/daemon/$2.git" ;;
      file) echo "file://$remotes/file/$2.git" ;;
      hypha) echo "hypha::http://127.0.0.1:$hrelay/bench/$2" ;;
    esac
  }
  data_ctl() { case $1 in daemon) echo "$dctl" ;; hypha) echo "$hctl" ;; *) echo "" ;; esac; }
  data_new() { # data_new PEER NAME
    case $1 in
      daemon | file) git init -q --bare "$remotes/$1/$2.git" ;;
      hypha) git hypha create "$(data_url hypha "$2")" >/dev/null || die "git hypha create $2 failed" ;;
    esac
  }
  # Waits until no compaction runs on the data server (a start line has its end line).
  data_idle() {
    local log=$work/serve-data.log started ended
    sleep 0.3
    for _ in $(seq 3000); do
      started=$(grep -c 'auto-gc [^ ]*: compacting' "$log" || true)
      ended=$(grep -Ec 'auto-gc [^ ]*: (merged|[0-9]+ live packs follow)|auto-gc [^ ]* failed' "$log" || true)
      [ "$started" -le "$ended" ] && return
      sleep 0.2
    done
    note "auto-gc still running after 10 minutes; measuring anyway"
  }
  # data_measure OP PEER CMD...: one row of data.tsv (op, peer, ok, seconds, up, down, peak
  # RSS of the helper with its children in KiB, from bench/env.sh's wrapper; 0 for git's own).
  data_measure() {
    local op=$1 peer=$2 ctl rc=0 t0 t1 before after up=- down=- hrss
    shift 2
    ctl=$(data_ctl "$peer")
    [ "$peer" != hypha ] || data_idle
    [ -z "$ctl" ] || before=$(data_counts "$ctl")
    : >"$work/helper.rss"
    t0=$EPOCHREALTIME
    "$@" >"$work/op.out" 2>"$work/op.err" || rc=$?
    t1=$EPOCHREALTIME
    if [ -n "$ctl" ]; then
      after=$(data_counts "$ctl")
      up=$((${after% *} - ${before% *}))
      down=$((${after#* } - ${before#* }))
    fi
    hrss=$(grep -E '^[0-9]+$' "$work/helper.rss" | sort -n | tail -n1 || true)
    [ "$rc" = 0 ] || failure "$op / $peer: exit $rc" "$work/op.err" "$@"
    printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$op" "$peer" "$([ "$rc" = 0 ] && echo 1 || echo 0)" \
      "$(python3 -c "print($t1 - $t0)")" "$up" "$down" "${hrss:-0}" >>"$work/data.tsv"
  }

  printf 'op\tpeer\tok\tseconds\tup\tdown\thelper_rss_kb\n' >"$work/data.tsv"
  local edits k u tip big_mib=${BENCH_CSVBIG_MIB:-40} mib=${BENCH_CSV_MIB:-8}
  edits=$(($(git -C "$work/src-csv.git" rev-list --count main) - 1))
  for peer in daemon file hypha; do
    note "data workflows: $peer"
    data_new "$peer" csvbig
    u=$(data_url "$peer" csvbig)
    data_measure "first push $big_mib MiB CSV" "$peer" git -C "$work/src-csvbig.git" push -q "$u" main~1:refs/heads/main
    data_measure "edit-push $big_mib MiB CSV" "$peer" git -C "$work/src-csvbig.git" push -q "$u" main:refs/heads/main
    rm -rf "$work/data-clone.git"
    data_measure "clone after 2 pushes of the $big_mib MiB CSV" "$peer" git clone -q --bare --no-local "$u" "$work/data-clone.git"
    check "clone of csvbig from $peer: main" "$(git -C "$work/src-csvbig.git" rev-parse main)" \
      "$(git -C "$work/data-clone.git" rev-parse main 2>&1)"

    data_new "$peer" csv
    u=$(data_url "$peer" csv)
    data_measure "first push $mib MiB CSV" "$peer" git -C "$work/src-csv.git" push -q "$u" "main~$edits:refs/heads/main"
    for ((k = edits - 1; k >= 0; k--)); do
      data_measure "edit-push $mib MiB CSV #$((edits - k))" "$peer" \
        git -C "$work/src-csv.git" push -q "$u" "main~$k:refs/heads/main"
    done
    rm -rf "$work/data-clone.git"
    data_measure "clone after $((edits + 1)) pushes" "$peer" git clone -q --bare --no-local "$u" "$work/data-clone.git"
    tip=$(git -C "$work/src-csv.git" rev-parse main)
    check "clone of csv from $peer: main" "$tip" "$(git -C "$work/data-clone.git" rev-parse main 2>&1)"
    rm -rf "$work/data-clone.git"
  done
  grep 'auto-gc' "$work/serve-data.log" | sed 's/^.*auto-gc/auto-gc/' >"$work/data-autogc.txt" || true
}
