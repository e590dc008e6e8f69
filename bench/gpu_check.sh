#!/usr/bin/env bash
# One prepared check for a CUDA machine, in under 5 minutes:
#   1. nvidia-smi;
#   2. the tests marked gpu (CuPy);
#   3. the benchmark on CuPy against PyTorch-CUDA and JAX-GPU, workload A scaled up to
#      [4096, 4096, 4096, 10] with batch 4096, with CUPY_TF32 off (A, B, C) and on (A).
# Everything it prints also goes to OUTDIR/gpu_check.log; results land in OUTDIR.
# Without a CUDA device it says so and exits 0 having run nothing on a GPU.
#
#   bash bench/gpu_check.sh OUTDIR
set -u
OUT=${1:?usage: bash bench/gpu_check.sh OUTDIR}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
cd "$(dirname "$0")/.."
exec > >(tee -a "$OUT/gpu_check.log") 2>&1
T0=$(date +%s)
elapsed() { echo $(($(date +%s) - T0)); }
step() { echo; echo "== $* (t=$(elapsed) s)"; }
PY=${PYTHON:-python}

# Wheels for packages the machine lacks (array-api-compat, array-api-strict), if provided.
if compgen -G ".whl/*.whl" >/dev/null; then
    step "installing wheels from .whl/ into /tmp/site"
    $PY -m pip install --quiet --no-index --no-deps --target /tmp/site .whl/*.whl \
        || echo "pip install from .whl/ failed; continuing with what is installed"
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # xpmlp from this checkout

skip() {
    echo "SKIP: $*"
    printf '# GPU check skipped\n\n%s\n' "$*" >"$OUT/SKIPPED.md"
    exit 0
}

step "nvidia-smi"
if ! command -v nvidia-smi >/dev/null 2>&1; then
    skip "nvidia-smi is not available: this is not a CUDA machine, so no GPU test or benchmark ran."
fi
nvidia-smi 2>&1 | tee "$OUT/nvidia-smi.txt" || skip "nvidia-smi failed: no usable CUDA driver."

step "CuPy and its device"
if ! $PY - <<'EOF'
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
    skip "CuPy is missing or sees no CUDA device: no GPU test or benchmark ran."
fi
$PY -c "import array_api_compat" 2>/dev/null \
    || echo "WARNING: array_api_compat is not importable; xpmlp needs it (ship it in .whl/)"

step "pytest -m gpu (modules needing packages missing here, e.g. scikit-learn, are skipped at collection)"
timeout 75 $PY -m pytest -m gpu -q -p no:cacheprovider --continue-on-collection-errors 2>&1 | tee "$OUT/pytest-gpu.txt"
echo "pytest exit status: ${PIPESTATUS[0]}"

# The benchmark: B and C with TF32 off only (no large products there), A with both.
step "benchmark, CUPY_TF32=0: A scaled up, B, C"
CUPY_TF32=0 timeout 110 $PY bench/run.py --backend cupy --scale-a 4096 --tf32 off \
    --repeats 3 --no-probes --peers numpy,torch,jax --out "$OUT" --tag=-tf32-off
echo "exit status: $?"

step "benchmark, CUPY_TF32=1: A scaled up"
CUPY_TF32=1 timeout 60 $PY bench/run.py --backend cupy --scale-a 4096 --tf32 on \
    --workloads A --repeats 3 --no-probes --peers numpy,torch,jax --out "$OUT" --tag=-tf32-on
echo "exit status: $?"

step "done"
ls -l "$OUT"
