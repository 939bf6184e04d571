#!/usr/bin/env bash
# lda-vs-gensim.sh -- pslda (psrun -s 2 -w 2) against gensim's LdaMulticore
# and scikit-learn's LatentDirichletAllocation on the corpora of
# ../shared/DATA.md, with the same vocabulary (pslda's), K, priors and split,
# every model scored by bench/lda/quality.py (held-out perplexity by document
# completion, NPMI coherence; --selfcheck: each must beat a random and a
# word-frequency matrix).  Then the paper-style figure: pslda's tokens/s and
# time to a target held-out perplexity with 1, 2 and 4 workers.
#
# Usage: bench/lda-vs-gensim.sh [CORPUS...]    (default: brown sotu spamdocs)
#        bench/lda-vs-gensim.sh --figure        (the figure only)
# Environment (defaults): K=50 SWEEPS=200 SEEDS="1 2 3" (gensim; the best is
# reported) PASSES=10 (gensim) SK_ITERS=20 (sklearn; SKLEARN=0 skips it)
# LIMIT=900 (seconds per run: every run is bounded with timeout)
# FIG_CORPUS=brown FIG_SWEEPS=100 FIG_WORKERS="1 2 4" (FIG=0 skips the figure)
# TARGET (perplexity; default: 1.02 x the 1-worker run's final one)
# PS_BIN (default build/bin), OUT (default bench/results/lda).
# Output: one JSON line per corpus, {"corpus", "k", "pslda": {"perplexity",
# "npmi", "wall_seconds"}, "gensim": {...}, "sklearn": {...}}, then one per
# worker count of the figure.  wall_seconds is the whole command (reading,
# training, writing the matrix) for every model.  Needs python3-numpy,
# python3-gensim, python3-sklearn (installed with apt-get when run as root).
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${PS_BIN:-$root/build/bin}
OUT=${OUT:-$root/bench/results/lda}
K=${K:-50} SWEEPS=${SWEEPS:-200} SEEDS=${SEEDS:-"1 2 3"} PASSES=${PASSES:-10}
SK_ITERS=${SK_ITERS:-20} SKLEARN=${SKLEARN:-1} LIMIT=${LIMIT:-900}
FIG=${FIG:-1} FIG_CORPUS=${FIG_CORPUS:-brown} FIG_SWEEPS=${FIG_SWEEPS:-100}
FIG_WORKERS=${FIG_WORKERS:-"1 2 4"}
cache=${LIBPS_DATA_CACHE:-$root/data/cache}
stop=$cache/stopwords/stopwords.txt

die() { echo "lda-vs-gensim: $*" >&2; exit 1; }
log() { echo "== $*" >&2; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }

# Debian's python (pyenv and venvs do not see python3-gensim)
pick_python() {
  for p in ${PYTHON:-} /usr/bin/python3 python3; do
    "$p" -c 'import numpy' 2>/dev/null && { echo "$p"; return; }
  done
  echo /usr/bin/python3
}

need_python() {
  PY=$(pick_python)
  local mods="numpy gensim" pkgs="python3-numpy python3-gensim"
  [ "$SKLEARN" = 1 ] && mods="$mods sklearn" pkgs="$pkgs python3-sklearn"
  for m in $mods; do
    "$PY" -c "import $m" 2>/dev/null && continue
    [ "$(id -u)" = 0 ] || die "python module $m missing: apt-get install -y $pkgs"
    log "installing $pkgs"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $pkgs >&2 || die "apt-get failed"
    PY=/usr/bin/python3
    break
  done
}

# quality PHI CORPUS NAME: quality.py's JSON line of the model
quality() {
  "$PY" "$root/bench/lda/quality.py" "$1" --test "$cache/$2/test.txt" \
    --corpus "$cache/$2/train.txt" --stopwords "$stop" --name "$3" --selfcheck --json \
    >"$OUT/$2/$3.quality.json" || log "$2 $3: quality selfcheck FAILED (see $OUT/$2/$3.quality.json)"
  head -n 1 "$OUT/$2/$3.quality.json"
}

# model JSON: {"perplexity", "npmi", "umass", "wall_seconds"} from a quality line
entry() {
  "$PY" -c 'import json,sys; q=json.loads(sys.argv[1]); print(json.dumps({"perplexity": q["perplexity"], "npmi": round(q["npmi"], 4), "umass": round(q["umass"], 4), "wall_seconds": float(sys.argv[2])}))' "$1" "$2"
}

run_pslda() { # CORPUS WORKERS PREFIX SWEEPS EVAL: log in PREFIX.log
  timeout "$LIMIT" "$BIN/psrun" -s 2 -w "$2" --timeout "$LIMIT" -- "$BIN/pslda" \
    --train "$cache/$1/train.txt" --test "$cache/$1/test.txt" --stopwords "$stop" -k "$K" \
    --sweeps "$4" --eval-every "$5" --save "$3" --json >"$3.log" 2>&1 ||
    die "pslda on $1 failed: $(tail -n 5 "$3.log")"
}

one_corpus() {
  local c=$1 d=$OUT/$1 t0 w q best="" bestp=inf
  mkdir -p "$d"
  log "$c: pslda, K=$K, $SWEEPS sweeps, 2 servers, 2 workers"
  t0=$(now); run_pslda "$c" 2 "$d/pslda" "$SWEEPS" 50; w=$(since "$t0")
  local ps; ps=$(entry "$(quality "$d/pslda.phi.tsv" "$c" pslda)" "$w")
  for s in $SEEDS; do
    log "$c: gensim LdaMulticore, seed $s, $PASSES passes"
    t0=$(now)
    timeout "$LIMIT" "$PY" "$root/bench/lda/baselines.py" gensim --train "$cache/$c/train.txt" \
      --vocab "$d/pslda.phi.tsv" --stopwords "$stop" -k "$K" --seed "$s" --passes "$PASSES" \
      --out "$d/gensim$s.tsv" >"$d/gensim$s.log" 2>&1 || { log "gensim seed $s failed or timed out"; continue; }
    w=$(since "$t0"); q=$(quality "$d/gensim$s.tsv" "$c" "gensim$s")
    local p; p=$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])["perplexity"])' "$q")
    if awk -v a="$p" -v b="$bestp" 'BEGIN { exit !(b == "inf" || a < b) }'; then
      bestp=$p best=$(entry "$q" "$w" | sed "s/}\$/, \"seed\": $s}/")
    fi
  done
  local sk=null
  if [ "$SKLEARN" = 1 ]; then
    log "$c: scikit-learn LatentDirichletAllocation, batch, $SK_ITERS iterations"
    t0=$(now)
    if timeout "$LIMIT" "$PY" "$root/bench/lda/baselines.py" sklearn --train "$cache/$c/train.txt" \
      --vocab "$d/pslda.phi.tsv" --stopwords "$stop" -k "$K" --iters "$SK_ITERS" \
      --out "$d/sklearn.tsv" >"$d/sklearn.log" 2>&1; then
      w=$(since "$t0"); sk=$(entry "$(quality "$d/sklearn.tsv" "$c" sklearn)" "$w")
    else log "sklearn failed or timed out"; fi
  fi
  echo "{\"corpus\": \"$c\", \"k\": $K, \"sweeps\": $SWEEPS, \"gensim_passes\": $PASSES, \"pslda\": $ps, \"gensim\": ${best:-null}, \"sklearn\": $sk}"
}

# The figure: per worker count, tokens/s and seconds to the target perplexity.
figure() {
  local c=$FIG_CORPUS d=$OUT/figure target=${TARGET:-}
  mkdir -p "$d"
  for w in $FIG_WORKERS; do
    log "figure: $c, $w worker(s), $FIG_SWEEPS sweeps"
    run_pslda "$c" "$w" "$d/w$w" "$FIG_SWEEPS" 5
  done
  "$PY" - "$d" "$c" "$target" $FIG_WORKERS <<'PY'
import json, sys
d, corpus, target, ws = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
runs = {}
for w in ws:
    lines = [l.split("] ", 1)[-1] for l in open("%s/w%s.log" % (d, w)) if l.startswith("[scheduler] {")]
    recs = [json.loads(l) for l in lines]
    runs[w] = ([r for r in recs if "sweep" in r], [r for r in recs if "k" in r][-1])
t = float(target) if target else 1.02 * runs[ws[0]][1]["perplexity"]
for w in ws:
    sweeps, final = runs[w]
    hit = next((r for r in sweeps if r["perplexity"] is not None and r["perplexity"] <= t), None)
    print(json.dumps({"figure": "workers", "corpus": corpus, "workers": int(w),
                      "tokens_per_second": round(final["tokens_per_second"]),
                      "target_perplexity": round(t, 1),
                      "seconds_to_target": round(hit["elapsed"], 2) if hit else None,
                      "sweeps_to_target": hit["sweep"] if hit else None,
                      "final_perplexity": final["perplexity"], "train_seconds": final["train_seconds"]}))
PY
}

main() {
  [ "${1:-}" = -h ] || [ "${1:-}" = --help ] && { sed -n '2,25p' "$0"; exit 0; }
  local only_fig=0
  [ "${1:-}" = --figure ] && { only_fig=1; FIG=1; shift; set -- "$FIG_CORPUS"; }
  [ $# -gt 0 ] || set -- brown sotu spamdocs
  [ -x "$BIN/pslda" ] || die "no $BIN/pslda (build first, or set PS_BIN)"
  need_python
  "$root/scripts/data/fetch.sh" "$@" stopwords >&2
  [ "$FIG" = 1 ] && "$root/scripts/data/fetch.sh" "$FIG_CORPUS" >&2
  mkdir -p "$OUT"
  [ $only_fig = 1 ] || for c in "$@"; do one_corpus "$c"; done
  [ "$FIG" = 1 ] && figure
  return 0
}

main "$@"
