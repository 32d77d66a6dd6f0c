#!/usr/bin/env bash
# Installs the peers that benchmarks/peers.py serves half_plus_two with, one virtualenv each,
# under benchmarks/.venvs/ (kept out of git):
#   mlserver  Seldon MLServer (V2 REST and gRPC) + TensorFlow, for a custom runtime, and
#             mlserver-xgboost (MLServer's own XGBoost runtime) for benchmarks/servables.py
#   triton    NVIDIA Triton through nvidia-pytriton (its wheel bundles tritonserver) + TensorFlow
# Everything comes from PyPI; nothing is fetched when the peers run.
#
#   bash benchmarks/setup_peers.sh             # both (about 2 GB of downloads the first time)
#   bash benchmarks/setup_peers.sh mlserver    # one of them
#   PYTHON=python3.11 bash benchmarks/setup_peers.sh
#
# Re-runnable: a venv whose packages are already installed (recorded in its
# .fastserve-peer file, and present) is skipped. Delete benchmarks/.venvs/<peer> to
# reinstall it from scratch.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venvs="$here/.venvs"
python="${PYTHON:-python3}"

# The versions the peers were measured with; TensorFlow matches fastserve's own.
TENSORFLOW="tensorflow-cpu==2.21.0"
# MLServer 1.7.1's inference workers call asyncio.get_event_loop() with no loop set, which
# uvloop 0.22 and later refuse ("There is no current event loop"): keep the uvloop of its day.
# mlserver-xgboost is released with MLServer (same version); xgboost is the version
# fastserve's xgboost kind was measured with, so both servers run the same library.
XGBOOST="mlserver-xgboost==1.7.1 xgboost==3.2.0"
declare -A PACKAGES=(
    [mlserver]="mlserver==1.7.1 uvloop==0.21.0 $TENSORFLOW $XGBOOST"
    [triton]="nvidia-pytriton==0.7.0 $TENSORFLOW"
)
# Imported once after an install; a re-run only checks that they are still there.
declare -A MODULES=(
    [mlserver]="mlserver tensorflow mlserver_xgboost xgboost"
    [triton]="pytriton tensorflow"
)

version="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
if [[ "$version" != "3.11" ]]; then
    echo "setup_peers: $python is Python $version; the peers are pinned for Python 3.11" >&2
    echo "setup_peers: set PYTHON=python3.11 to choose another interpreter" >&2
    exit 1
fi

peers=("$@")
if [[ ${#peers[@]} -eq 0 ]]; then
    peers=(mlserver triton)
fi

quiet() { grep -v "^WARNING: Location 'file:" || true; }

mkdir -p "$venvs"
for peer in "${peers[@]}"; do
    if [[ -z "${PACKAGES[$peer]:-}" ]]; then
        echo "setup_peers: unknown peer '$peer' (known: ${!PACKAGES[*]})" >&2
        exit 2
    fi
    venv="$venvs/$peer"
    stamp="$venv/.fastserve-peer"
    wanted="${PACKAGES[$peer]}"
    modules="${MODULES[$peer]}"
    if [[ -f "$stamp" && "$(cat "$stamp")" == "$wanted" ]] \
        && "$venv/bin/python" -c "import importlib.util as u, sys
sys.exit(not all(u.find_spec(m) for m in '$modules'.split()))" 2>/dev/null; then
        echo "setup_peers: $peer: already installed in $venv ($wanted); skipped"
        continue
    fi
    start=$SECONDS
    if [[ ! -x "$venv/bin/python" ]]; then
        echo "setup_peers: $peer: creating $venv with $python (Python $version)"
        "$python" -m venv "$venv"
    fi
    echo "setup_peers: $peer: installing $wanted"
    # (pip's notes about local index folders this machine's pip.conf names are left out)
    "$venv/bin/python" -m pip install --quiet --upgrade pip 2>&1 | quiet
    # shellcheck disable=SC2086
    "$venv/bin/python" -m pip install --quiet $wanted 2>&1 | quiet
    if ! "$venv/bin/python" -c "import ${modules// /, }" >/dev/null 2>&1; then
        echo "setup_peers: $peer: 'import ${modules// /, }' fails in $venv" >&2
        exit 1
    fi
    echo "$wanted" >"$stamp"
    size="$(du -sh "$venv" | cut -f1)"
    echo "setup_peers: $peer: installed in $((SECONDS - start)) s; $venv is $size"
done

libdir="$("$python" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')"
echo "setup_peers: done. Triton's Python backend loads libpython from $libdir;"
echo "setup_peers: benchmarks/peers.py puts it on LD_LIBRARY_PATH itself."
