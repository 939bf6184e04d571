#!/usr/bin/env bash
# deps.sh -- make sure the Debian packages libps needs are installed.
# As root: installs the missing ones with apt-get.  Otherwise: prints the
# exact command to run and exits 1.  Usage: scripts/deps.sh [build|test|demo|fuzz|bench]
set -euo pipefail
what=${1:-build}
pkgs=(build-essential cmake pkg-config libucx-dev ucx-utils libzstd-dev libxxhash-dev
      libsodium-dev libmicrohttpd-dev zlib1g-dev)
case "$what" in
  test) pkgs+=(libcmocka-dev clang libclang-rt-14-dev python3 iproute2 nftables
              slurm-wlm munge openmpi-bin openssh-server openssh-client chromium prometheus) ;;
  fuzz) pkgs+=(libcmocka-dev clang libclang-rt-14-dev) ;;
  bench) pkgs+=(libcmocka-dev iperf3 hyperfine liblinear-tools gnuplot-nox jq
               python3-gensim python3-sklearn python3-yaml) ;;
esac
missing=()
# make demo fetches its data from the npm registry: Node.js, from Debian if absent
if [ "$what" = demo ] && ! command -v node >/dev/null 2>&1; then pkgs+=(nodejs npm); fi
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "libps needs these Debian packages: ${missing[*]}" >&2
  echo "install them with:  sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi
echo "deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
