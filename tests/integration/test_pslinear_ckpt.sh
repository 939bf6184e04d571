#!/usr/bin/env bash
# test_pslinear_ckpt.sh -- pslinear's checkpoints (--checkpoint-dir,
# --checkpoint-every, --resume) on the tiny fixture of test_pslinear_ref.sh
# (pslinear_fixture.awk), BPG with the KKT filter on, tau 0 unless said:
#  - psrun -s 2 -w 2 runs 24 iterations uninterrupted (iterations count
#    from 0, as pslinear prints them);
#  - the same run stopped at --iters 14 with --checkpoint-every 3 prints one
#    line per checkpoint (iterations 2, 5, 8, 11), leaves 4 complete
#    checkpoints and the same objectives as the uninterrupted run;
#  - -s 3 -w 2 --resume goes on from iteration 11 to 23: every objective of
#    iterations 12..23 matches the uninterrupted run to 1e-12 relative, with
#    the same nnz.  The weights are bit for bit those of the uninterrupted
#    run (two workers' pushes sum alike in either order, and the margins
#    rebuilt from the float weights are exact in double here); only the
#    servers' running norm sums (doubles) are grouped differently over 3
#    servers, so 1e-12 rather than 0 (the difference seen is 0);
#  - with --tau 2 the scheduler drains outstanding iterations before each
#    checkpoint (its line follows the progress line of its own iteration,
#    and the workers apply every outstanding update), and resuming one (still
#    checkpointing every 3) gives the final objective of an uninterrupted
#    --tau 2 run that checkpoints every 3 (1e-12; --delay-rule bound, the
#    deterministic step rule): with a real bounded delay
#    the drains are part of the trajectory;
#  - a flipped byte in the newest checkpoint's file: the resume falls back to
#    the previous checkpoint (iteration 8), with a warning naming the file,
#    and reaches the same final objective (1e-12);
#  - other numbers of workers: with the KKT filter off (its per-worker share
#    of l1 makes the trajectory depend on the number of workers), -s 1 -w 3
#    resumes a -w 2 checkpoint; each worker rounds its gradient to float32
#    before the servers sum 3 pushes in arrival order, so the last bits
#    differ: an uninterrupted -w 3 run is ~3e-10 off the -w 2 one, and the
#    resumed final objective must be within 1e-8 relative of the -w 2 run;
#  - --resume from a folder with no complete checkpoint exits nonzero at once
#    with a clear message; bad flag combinations exit 2; --help lists them.
. "$(dirname "$0")/lib.sh"

awk -v seed=11 -f "$(dirname "$0")/pslinear_fixture.awk" </dev/null >"$TMP/train.svm" ||
    fail "fixture"
KKT="--blocks 4 --l1 0.004 --kkt"
NOKKT="--blocks 3 --l2 0.01 --lr 0.7 --no-kkt"
CK=$TMP/ck

# run NAME S W ARGS...: psrun -s S -w W pslinear ARGS into $TMP/NAME.log; its status.
run() {
    local name=$1 s=$2 w=$3; shift 3
    timeout 60 "$PS_BIN/psrun" -s "$s" -w "$w" --timeout 50 --no-prefix -q -- "$PS_BIN/pslinear" \
        --train "$TMP/train.svm" --json --eval-every 0 --tol 0 "$@" >"$TMP/$name.log" 2>&1
}
# objs NAME: "iter objective nnz" lines of its per-iteration JSON
objs() {
    sed -n 's/^{"iter": \([0-9]*\), "objective": \([^,]*\), "nnz": \([0-9]*\)}$/\1 \2 \3/p' \
        "$TMP/$1.log"
}
# same NAME REF TOL NNZ: every iteration NAME printed is in REF, with an
# objective within TOL relative (and the same nnz if NNZ is 1); prints a summary.
same() {
    local name=$1 ref=$2 tol=$3 nnz=$4
    objs "$ref" >"$TMP/ref.txt"
    objs "$name" | awk -v tol="$tol" -v nnz="$nnz" -v name="$name" -v ref="$ref" '
        NR == FNR { o[$1] = $2; z[$1] = $3; next }
        { n++; last = $1; if (!($1 in o)) { print name ": iteration " $1 " not in " ref; bad = 1; next }
          d = $2 - o[$1]; if (d < 0) d = -d; r = d / o[$1]; if (r > mx) mx = r
          if (r > tol || (nnz && $3 != z[$1])) {
              printf "%s: iteration %s: objective %s nnz %s, %s has %s nnz %s (rel %.3g)\n",
                     name, $1, $2, $3, ref, o[$1], z[$1], r; bad = 1 } }
        END { if (!n) { print name ": no iterations"; exit 1 }
              if (!bad) printf "%d iterations up to %s match %s, max rel diff %.3g", n, last, ref, mx
              exit bad }' "$TMP/ref.txt" - >"$TMP/cmp" || { cat "$TMP/cmp" >&2; fail "$name differs"; }
    cat "$TMP/cmp"
}
last_iter() { objs "$1" | tail -n 1 | cut -d' ' -f1; }
flip() { # FILE OFFSET: flip one bit of the byte at OFFSET
    python3 - "$1" "$2" <<'PY'
import sys
p, off = sys.argv[1], int(sys.argv[2])
b = bytearray(open(p, "rb").read()); b[off] ^= 0x10; open(p, "wb").write(b)
PY
}
ck() { printf '%s/ckpt-%020d' "$1" "$2"; }

# ---- flags ----
"$PS_BIN/pslinear" --help >"$TMP/help.txt" || fail "--help exited $?"
for f in --checkpoint-dir --checkpoint-every --resume; do
    grep -q -- "$f" "$TMP/help.txt" || fail "--help does not show $f"
done
for bad in "--checkpoint-every 3" "--checkpoint-dir $CK" "--checkpoint-every x --checkpoint-dir $CK" \
           "--checkpoint-every -1 --checkpoint-dir $CK" "--algo ftrl --resume $CK" \
           "--algo sgd --checkpoint-every 2 --checkpoint-dir $CK" "--resume" "--resume="; do
    # shellcheck disable=SC2086
    "$PS_BIN/pslinear" --train "$TMP/train.svm" $bad >"$TMP/flags.log" 2>&1; rc=$?
    [ $rc -eq 2 ] || fail "pslinear $bad exited $rc, want 2"
    grep -q "pslinear:" "$TMP/flags.log" || fail "no message for $bad"
done
pass "--help shows the checkpoint flags; bad combinations exit 2 with a message"

# ---- uninterrupted, checkpointed, resumed ----
# shellcheck disable=SC2086
run full 2 2 $KKT --iters 24 || fail "uninterrupted run exited $?"
[ "$(last_iter full)" = 23 ] || fail "the uninterrupted run did not reach iteration 23"
pass "uninterrupted -s 2 -w 2: final objective $(objs full | tail -n 1 | cut -d' ' -f2)"

# shellcheck disable=SC2086
run part 2 2 $KKT --iters 14 --checkpoint-dir "$CK" --checkpoint-every 3 || fail "part exited $?"
[ "$(grep -c '^checkpoint ' "$TMP/part.log")" = 4 ] || fail "part: want 4 checkpoint lines"
for i in 2 5 8 11; do
    grep -Eq "^checkpoint +$i  written to $CK in [0-9.]+s$" "$TMP/part.log" ||
        fail "part: no progress line for checkpoint $i"
    [ -s "$(ck "$CK" $i)/MANIFEST" ] || fail "part: checkpoint $i is not complete"
done
[ "$(last_iter part)" = 13 ] || fail "part did not stop after iteration 13"
cmp=$(same part full 1e-12 1) || exit 1
pass "checkpointed run to iteration 13: checkpoints 2 5 8 11; $cmp"

# shellcheck disable=SC2086
run resume 3 2 $KKT --iters 24 --resume "$CK" || fail "resume exited $?"
grep -q "^resume: from the checkpoint of iteration 11 in $CK" "$TMP/resume.log" ||
    fail "resume: not from iteration 11"
[ "$(objs resume | head -n 1 | cut -d' ' -f1)" = 12 ] || fail "resume: does not start at 12"
[ "$(last_iter resume)" = 23 ] || fail "resume: does not end at 23"
cmp=$(same resume full 1e-12 1) || exit 1
pass "-s 3 -w 2 --resume: $cmp"

# ---- tau 2: checkpoints after draining ----
# shellcheck disable=SC2086
run tau 2 2 $KKT --tau 2 --delay-rule bound --iters 14 --checkpoint-dir "$TMP/ck-tau" --checkpoint-every 3 ||
    fail "tau exited $?"
# drained: each checkpoint line follows the progress line of its own iteration
awk '/^iter / { last = $2 } /^checkpoint / { n++; if ($2 != last) bad = 1 }
     END { exit bad || n != 4 }' "$TMP/tau.log" ||
    fail "tau: want 4 checkpoints, each right after its iteration's progress line"
# shellcheck disable=SC2086
run tau-resume 3 2 $KKT --tau 2 --delay-rule bound --iters 24 --resume "$TMP/ck-tau" --checkpoint-dir "$TMP/ck-tau2" \
    --checkpoint-every 3 || fail "tau-resume exited $?"
grep -q "^resume: from the checkpoint of iteration 11" "$TMP/tau-resume.log" ||
    fail "tau-resume: not from iteration 11"
# shellcheck disable=SC2086
run tau-full 2 2 $KKT --tau 2 --delay-rule bound --iters 24 --checkpoint-dir "$TMP/ck-tau3" --checkpoint-every 3 ||
    fail "tau-full exited $?"
sed -n '/"iter": 23,/p' "$TMP/tau-resume.log" >"$TMP/tau-last.log"
cmp=$(same tau-last tau-full 1e-12 1) || exit 1
pass "--tau 2: 4 checkpoints after draining; resumed final $cmp"

# ---- a corrupt newest checkpoint: fall back to the previous one ----
flip "$(ck "$CK" 11)/w.1" 200
# shellcheck disable=SC2086
run fallback 3 2 $KKT --iters 24 --resume "$CK" || fail "fallback exited $?"
grep -q "ckpt-00000000000000000011 skipped: .*/w.1: .*CRC mismatch" "$TMP/fallback.log" ||
    fail "fallback: no warning naming the corrupt file"
grep -q "^resume: from the checkpoint of iteration 8 in $CK" "$TMP/fallback.log" ||
    fail "fallback: not from iteration 8"
cmp=$(same fallback full 1e-12 1) || exit 1
pass "flipped byte in checkpoint 11: falls back to 8; $cmp"

# ---- another number of workers (and servers) ----
# shellcheck disable=SC2086
run nk-full 2 2 $NOKKT --iters 24 || fail "nk-full exited $?"
# shellcheck disable=SC2086
run nk-part 2 2 $NOKKT --iters 14 --checkpoint-dir "$TMP/ck-nk" --checkpoint-every 3 ||
    fail "nk-part exited $?"
# shellcheck disable=SC2086
run nk-resume 1 3 $NOKKT --iters 24 --resume "$TMP/ck-nk" || fail "nk-resume exited $?"
grep -q "^resume: from the checkpoint of iteration 11" "$TMP/nk-resume.log" ||
    fail "nk-resume: not from iteration 11"
sed -n '/"iter": 23,/p' "$TMP/nk-resume.log" >"$TMP/nk-last.log"
cmp=$(same nk-last nk-full 1e-8 0) || exit 1
pass "-s 1 -w 3 resumes a -w 2 checkpoint (KKT off): final $cmp"

# ---- no complete checkpoint ----
mkdir -p "$TMP/empty"
t0=$(now_ms)
# shellcheck disable=SC2086
run empty 2 2 $KKT --iters 24 --resume "$TMP/empty"; rc=$?
if [ $rc -eq 0 ] || [ $rc -eq 124 ]; then fail "--resume of an empty folder exited $rc"; fi
grep -q "pslinear: --resume $TMP/empty: no complete checkpoint" "$TMP/empty.log" ||
    fail "no clear message for an empty --resume folder"
[ $(( $(now_ms) - t0 )) -lt 20000 ] || fail "--resume of an empty folder took too long"
pass "--resume of a folder without a complete checkpoint exits $rc with a message"
