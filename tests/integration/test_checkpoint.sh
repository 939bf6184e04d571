#!/usr/bin/env bash
# Checkpoints on real clusters: 2 servers and 2 workers push known values
# (a sparse f64 table, a dense f32 table and an AdaGrad table) for 8
# iterations, checkpointing after iterations 3 and 6; a new cluster with 3
# servers restores iteration 6 and every pulled value is exact, and the
# AdaGrad table, continued to iteration 8, matches the uninterrupted run
# bit for bit (its optimizer state was saved); a flipped byte in a block of
# checkpoint 6 makes the restore fall back to checkpoint 3, with a warning
# naming the file; a torn file is caught by its size; a folder with no
# complete checkpoint gives a clear error and a nonzero exit.
. "$(dirname "$0")/lib.sh"

CK=$TMP/ck
KEYS=5000
C3=ckpt-00000000000000000003
C6=ckpt-00000000000000000006

# run NAME SERVERS ARGS...: psrun ps_ckpttest with 2 workers; its exit status.
run() {
  local name=$1 s=$2; shift 2
  timeout 100 "$PS_BIN/psrun" -q -s "$s" -w 2 --timeout 90 -- "$PS_BIN/ps_ckpttest" "$@" \
    >"$TMP/$name.log" 2>&1
}

# ok NAME: the run passed and printed no FAIL line.
ok() {
  grep -q 'FAIL' "$TMP/$1.log" && fail "$1: $(grep FAIL "$TMP/$1.log" | head -3)"
  return 0
}

# exact NAME SERVERS: both workers saw exact values, and the servers hold
# every sparse key exactly once between them; the AdaGrad checksum matches.
exact() {
  local name=$1 s=$2 log=$TMP/$1.log
  [ "$(grep -c 'PASS sparse values exact' "$log")" = 2 ] || fail "$name: sparse values not exact"
  [ "$(grep -c 'PASS dense values exact' "$log")" = 2 ] || fail "$name: dense values not exact"
  local keys; keys=$(grep -o 'server sparse keys [0-9]*' "$log" | awk '{n++; s += $4} END {print n, s}')
  [ "$keys" = "$s $KEYS" ] || fail "$name: servers hold (count, keys) = ($keys), want ($s $KEYS)"
  [ "$(grep -o 'ada checksum .*' "$log")" = "$ADA" ] ||
    fail "$name: AdaGrad values differ from the uninterrupted run: $(grep -o 'ada checksum .*' "$log")"
}

flip() { # FILE OFFSET: flip one bit of the byte at OFFSET
  python3 - "$1" "$2" <<'PY'
import sys
p, off = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read()); b[off] ^= 0x10; open(p, "wb").write(b)
PY
}

run write 2 write --dir "$CK" --keys $KEYS --iters 8 --ckpt 3,6 || fail "write: exit $?"
ok write
[ "$(grep -c 'PASS checkpoint' "$TMP/write.log")" = 2 ] || fail "write: two checkpoints expected"
ADA=$(grep -o 'ada checksum .*' "$TMP/write.log") || fail "write: no AdaGrad checksum"
for c in $C3 $C6; do
  [ -s "$CK/$c/MANIFEST" ] || fail "$c has no MANIFEST"
  [ "$(ls "$CK/$c" | grep -c '\.[01]$')" = 6 ] || fail "$c: want 3 tables x 2 servers: $(ls "$CK/$c")"
done
ls "$CK"/*/*.tmp >/dev/null 2>&1 && fail "temporary files left behind"
pass "2 servers checkpoint iterations 3 and 6"

run restore3 3 check --dir "$CK" --keys $KEYS --want-iter 6 --iters 8 || fail "restore3: exit $?"
ok restore3
exact restore3 3
pass "3 servers resume from iteration 6: exact values, AdaGrad state kept"

cp -r "$CK/$C3" "$TMP/ck3-copy" # pristine, for the torn case below
flip "$CK/$C6/sparse.1" 300     # inside the first block's records
run fallback 3 check --dir "$CK" --keys $KEYS --want-iter 3 --iters 8 || fail "fallback: exit $?"
ok fallback
exact fallback 3
grep -q "$C6 skipped: .*sparse.1: block 0 .*CRC mismatch" "$TMP/fallback.log" ||
  fail "fallback: no warning naming the corrupt file"
pass "a flipped byte in checkpoint 6 falls back to checkpoint 3, with a warning"

run restore1 1 check --dir "$CK" --keys $KEYS --want-iter 3 --iters 8 || fail "restore1: exit $?"
ok restore1
exact restore1 1
pass "1 server resumes from the same checkpoint"

mkdir -p "$TMP/torn" && cp -r "$TMP/ck3-copy" "$TMP/torn/$C3"
truncate -s -10 "$TMP/torn/$C3/dense.0"
mkdir -p "$TMP/torn/$C6" && cp "$CK/$C6/ada.0" "$TMP/torn/$C6/" # no MANIFEST: incomplete
run torn 2 check --dir "$TMP/torn" --keys $KEYS --want-iter 3 && fail "torn: exit 0 without a valid checkpoint"
grep -q "$C3 skipped: .*dense.0: .*torn" "$TMP/torn.log" || fail "torn: no warning naming the torn file"
grep -q "$C6 skipped: .*MANIFEST: missing" "$TMP/torn.log" || fail "torn: incomplete checkpoint not reported"
grep -q "no complete checkpoint in $TMP/torn" "$TMP/torn.log" || fail "torn: no clear error"
pass "torn and incomplete checkpoints are refused with a clear error and a nonzero exit"

run empty 2 check --dir "$TMP/nothing" --keys $KEYS --want-iter 1 && fail "empty: exit 0"
grep -q "no complete checkpoint in $TMP/nothing" "$TMP/empty.log" || fail "empty: no clear error"
pass "a folder without checkpoints is a clear error"
