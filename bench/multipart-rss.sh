#!/usr/bin/env bash
# By hand, after `cargo build --release --bins` (issue 3): a 300 MiB pack of random data
# pushed through multipart to `git hypha serve` on s3s-fs (default 64 MiB threshold) and cloned
# back; prints wall times and the peak RSS of the helper with its children (/usr/bin/time -v).
set -euo pipefail
R=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
M=$(mktemp -d "${TMPDIR:-/tmp}/hypha-multipart.XXXXXX")
BIN=$R/target/release
SERVE=
cd $R && scripts/s3-services.sh start $M/s3env >/dev/null
trap 'cd $R && scripts/s3-services.sh stop $M/s3env; [ -n "$SERVE" ] && kill $SERVE 2>/dev/null || true; rm -rf $M' EXIT
set -a; . $M/s3env; set +a
mkdir -p $M/bin $M/rss; rm -f $M/rss/*
cat > $M/bin/git-remote-hypha <<EOW
#!/bin/sh
exec /usr/bin/time -v -o $M/rss/\$(date +%s%N).txt $BIN/git-remote-hypha "\$@"
EOW
chmod +x $M/bin/git-remote-hypha
export HYPHA_JWT_SECRET=measure-secret-0123456789
$BIN/git-hypha serve --root $M/unused --listen 127.0.0.1:0 \
  --s3-endpoint $HYPHA_TEST_S3_ENDPOINT --s3-bucket $HYPHA_TEST_S3_BUCKET \
  --s3-prefix measure --s3-path-style > $M/serve.out 2> $M/serve.log &
SERVE=$!
for i in $(seq 50); do grep -q listening $M/serve.out && break; sleep 0.2; done
URL=$(sed -n 's/listening on //p' $M/serve.out | head -1)
export PATH=$M/bin:$BIN:$PATH
export HYPHA_TOKEN=$($BIN/git-hypha token --workspace ws --permission rw)
git hypha create hypha::$URL/ws/big
rm -rf $M/src $M/clone; mkdir $M/src; cd $M/src; git init -q -b main
for i in $(seq 1 10); do head -c $((30*1024*1024)) /dev/urandom > f$i.bin; done
git add -A; git -c user.name=a -c user.email=a@b commit -q -m big
git remote add origin hypha::$URL/ws/big
/usr/bin/time -f "push wall %e s" git push -q origin main 2>&1 | tail -3
echo "push: peak RSS of helper incl. children (KiB):"; grep -h "Maximum resident" $M/rss/*.txt; rm -f $M/rss/*
cd $M
/usr/bin/time -f "clone wall %e s" git clone -q hypha::$URL/ws/big clone 2>&1 | tail -3
echo "clone: peak RSS of helper incl. children (KiB):"; grep -h "Maximum resident" $M/rss/*.txt
git -C clone fsck --full && echo fsck ok
[ "$(git -C clone rev-parse HEAD)" = "$(git -C src rev-parse HEAD)" ] && echo same HEAD
ls -l clone/.git/objects/pack/*.pack
grep -c "multipart" $M/serve.log || true; grep "multipart" $M/serve.log | cut -c1-160 | head -5
rm -rf $M/src $M/clone
