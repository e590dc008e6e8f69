#!/usr/bin/env bash
# One prepared check for a CUDA machine, in under 5 minutes:
#   1. nvidia-smi;
#   2. the tests marked gpu (CuPy);
#   3. the benchmark on CuPy against PyTorch-CUDA and JAX-GPU, workload A scaled up to
#      [4096, 4096, 4096, 10] with batch 4096, with CUPY_TF32 off (A, then B and C) and on
#      (A), each part under its own time limit so that a slow one does not cost the rest,
#      and every step (the set-up's too) within what is left of 285 s: a step that would
#      start with less than 10 s left is skipped and counts as failed.
# Everything it prints (nvidia-smi and pytest included) also goes to OUTDIR/gpu_check.log;
# the benchmark's results land in OUTDIR: 7 files in all. Without a CUDA device it says so
# and exits 0 having run nothing on a GPU. It exits 1 when the tests or a benchmark call
# failed or ran out of time (the others still run), 2 when array-api-compat is missing, 3
# when nvidia-smi sees a GPU that CuPy cannot reach (CuPy missing, or another CUDA). A
# machine without array-api-compat and without network needs its wheel in .whl/ (see
# bench/README.md), which git ignores: bring that folder along with the checkout.
#
#   bash bench/gpu_check.sh OUTDIR
set -u -o pipefail
OUT=${1:?usage: bash bench/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
LOG_PID=$!
T0=$(date +%s)
DEADLINE=$((T0 + ${GPU_CHECK_SECONDS:-285}))  # the whole check, kill grace included
elapsed() { echo $(($(date +%s) - T0)); }
step() { echo; echo "== $* (t=$(elapsed) s)"; }
FAILED=0  # 1 once the tests or a benchmark call fail
within() {  # SECONDS CMD...: CMD under timeout, at most SECONDS and within the deadline
    local want=$1 left grace=5
    shift
    left=$((DEADLINE - $(date +%s) - grace))
    if [ "$left" -lt 10 ]; then
        echo "NO TIME LEFT: skipped (${left} s before the deadline): $*"
        FAILED=1
        return 124
    fi
    [ "$want" -lt "$left" ] || want=$left
    timeout -s INT -k "$grace" "$want" "$@"
    local status=$?
    [ "$status" -ne 124 ] || echo "TIMED OUT after $want s: $*"
    return "$status"
}
PY=${PYTHON:-$(command -v python3 || command -v python)}
export XLA_PYTHON_CLIENT_PREALLOCATE=false  # JAX takes GPU memory as it needs it, not 75 %

# Wheels for packages the machine lacks (array-api-compat, array-api-strict), if provided.
if compgen -G ".whl/*.whl" >/dev/null; then
    step "installing wheels from .whl/ into /tmp/site"
    within 30 $PY -m pip install --quiet --no-index --no-deps --target /tmp/site .whl/*.whl \
        || echo "pip install from .whl/ failed; continuing with what is installed"
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # xpmlp from this checkout

skip() {  # [status] message
    local status=0
    [[ $1 =~ ^[0-9]+$ ]] && status=$1 && shift
    echo "SKIP: $*"
    printf '# GPU check skipped\n\n%s\n' "$*" >"$OUT/SKIPPED.md"
    exit "$status"
}

step "nvidia-smi"
if ! command -v nvidia-smi >/dev/null 2>&1; then
    skip "nvidia-smi is not available: this is not a CUDA machine, so no GPU test or benchmark ran."
fi
within 20 nvidia-smi 2>&1 || skip "nvidia-smi failed or timed out (see above): no usable CUDA driver."

step "CuPy and its device"
if ! within 40 $PY - <<'EOF'
import sys
try:
    import cupy
    n = cupy.cuda.runtime.getDeviceCount()
except Exception as exc:  # no CuPy, or no driver
    print(f"CuPy cannot reach a CUDA device: {type(exc).__name__}: {exc}")
    sys.exit(1)
print(f"cupy {cupy.__version__}, {n} device(s):",
      cupy.cuda.runtime.getDeviceProperties(0)["name"].decode())
sys.exit(0 if n else 1)
EOF
then
    skip 3 "nvidia-smi sees a GPU, but CuPy is missing, reaches no CUDA device or timed out (see above): no GPU test or benchmark ran."
fi
if ! within 20 $PY -c "import array_api_compat" 2>/dev/null; then
    echo "FAILED: array_api_compat is not importable (or timed out) and xpmlp needs it: put its wheel in .whl/"
    echo "(pip download --no-deps -d .whl array-api-compat array-api-strict) and run again."
    exit 2
fi

step "pytest -m gpu (modules needing packages missing here, e.g. scikit-learn, are skipped at collection)"
# SIGINT at the limit: pytest then names the test it was in and prints its summary
CUPY_TF32=0 within 60 $PY -m pytest -m gpu -q -rs -p no:cacheprovider \
    --continue-on-collection-errors 2>&1 | tee /tmp/xpmlp-pytest-gpu.txt
status=${PIPESTATUS[0]}
echo "pytest exit status: $status"
[ "$status" -eq 0 ] || FAILED=1
if grep -q "no CUDA device (CuPy)" /tmp/xpmlp-pytest-gpu.txt; then
    echo "WARNING: the tests found no CUDA device though CuPy did above: see the skip reasons"
fi

# The benchmark: B and C with TF32 off only (no large products there), A with both.
# bench/run.py sets CUPY_TF32 from --tf32 itself, so CuPy and the peers match.
bench() {
    local limit=$1 repeats=$2
    shift 2
    within "$limit" $PY bench/run.py --backend cupy --repeats "$repeats" --no-probes \
        --peers numpy,torch,jax --out "$OUT" "$@"
    local status=$?
    echo "exit status: $status"
    [ "$status" -eq 0 ] || FAILED=1
}
step "benchmark, TF32 off: A scaled up"
bench 75 3 --workloads A --scale-a 4096 --tf32 off --tag=-a-tf32-off

step "benchmark, TF32 off: B and C (6000 small steps a runner: two repeats)"
bench 70 2 --workloads B,C --tf32 off --tag=-bc

step "benchmark, TF32 on: A scaled up"
bench 55 3 --workloads A --scale-a 4096 --tf32 on --tag=-a-tf32-on

step "done ($([ $FAILED -eq 0 ] && echo 'all passed' || echo 'SOMETHING FAILED: see above'))"
ls -l "$OUT"
exec >&- 2>&-  # the log's tee sees the end of its input, and is waited for
wait "$LOG_PID" 2>/dev/null || true
exit "$FAILED"
