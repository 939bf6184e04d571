#!/usr/bin/env bash
# demo.sh -- `make demo`: the main job of libps on a local cluster.
# Until the linear app lands (issue 5) this runs the end-to-end membership
# demo: a scheduler, 2 servers and 4 workers join over UCX, print the view
# and time 2000 barriers.  Usage: scripts/demo.sh BIN_DIR
set -euo pipefail
bin=${1:-build/bin}
echo "== libps demo: psrun -s 2 -w 4 -- psdemo --barriers 2000"
"$bin/psrun" -s 2 -w 4 --timeout 120 -- "$bin/psdemo" --barriers 2000
