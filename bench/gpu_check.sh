#!/usr/bin/env bash
# Every GPU figure the plan and the multi-GPU path rest on, in one call (bench/gpu_check.py):
#
#   bash bench/gpu_check.sh DIR            # one GPU, <= 8 minutes: writes and checks DIR/gpu_check.yaml
#   bash bench/gpu_check.sh --smoke DIR    # the same code on the CPU with tiny shapes (CI), about a minute
#   bash bench/gpu_check.sh --only NAME[,NAME] DIR   # some measurements (again), added to DIR/gpu_check.yaml
#
# then: python -m nsr_study plan --configfile config/config.yaml --throughput DIR/gpu_check.yaml --card CARD
# (CARD: checks.machine.card in the file). Nothing is downloaded; the machine needs this package's
# Python dependencies (pyyaml, jsonschema, numpy, xxhash, snakemake for reading the config): the
# preflight names any missing one, and NSR_WHEELS=FOLDER installs them from a folder of wheels.
set -euo pipefail
usage="usage: bash bench/gpu_check.sh [--smoke] [--only NAME[,NAME]] DIR"
smoke=() only=() cmd="bash bench/gpu_check.sh"
while [ $# -gt 1 ]; do
  case "$1" in
    --smoke) smoke=(--smoke); cmd+=" --smoke"; shift ;;
    --only) only=(--only "$2"); shift 2 ;;
    *) echo "$usage" >&2; exit 2 ;;
  esac
done
[ $# -eq 1 ] && [[ "$1" != -* ]] || { echo "$usage" >&2; exit 2; }
dir=$1
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
# the Python that holds torch: $PYTHON, else `python` (an activated environment), else `python3`
# (a GPU image may have `python3` alone)
py=${PYTHON:-$(command -v python || command -v python3)} || { echo "gpu_check: no python or python3 on PATH" >&2; exit 3; }

modules=(torch transformers yaml jsonschema numpy xxhash snakemake)
missing=$("$py" - "${modules[@]}" <<'EOF'
import importlib.util, sys
print(" ".join(m for m in sys.argv[1:] if importlib.util.find_spec(m) is None))
EOF
)
if [ -n "$missing" ] && [ -n "${NSR_WHEELS:-}" ]; then
  declare -A pkg=([yaml]=pyyaml)
  "$py" -m pip install --quiet --no-index --find-links "$NSR_WHEELS" $(for m in $missing; do echo "${pkg[$m]:-$m}"; done)
  missing=""
fi
if [ -n "$missing" ]; then
  echo "gpu_check: missing Python modules: $missing (pip install them, or set NSR_WHEELS to a folder of their wheels)" >&2
  exit 3
fi

mkdir -p "$dir"
status=0
# the script starts no measurement it has no time left for (--budget-s, NSR_GPU_CHECK_BUDGET_S, 390 s);
# the timeout ends a hung one, and the file keeps every figure measured before
timeout --signal=INT --kill-after=20 "${NSR_GPU_CHECK_TIMEOUT_S:-450}" \
  "$py" bench/gpu_check.py --out "$dir/gpu_check.yaml" ${NSR_GPU_CHECK_BUDGET_S:+--budget-s "$NSR_GPU_CHECK_BUDGET_S"} \
  --command "$cmd" "${smoke[@]}" "${only[@]}" || status=$?
"$py" bench/gpu_check.py --check "$dir/gpu_check.yaml" "${smoke[@]}" || status=$((status ? status : 1))
exit "$status"
