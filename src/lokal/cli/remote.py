"""Talking to a lokal (or Ollama) server at `OLLAMA_HOST`, the way Ollama's own CLI does.

When a server answers, `lokal run`, `lokal chat`, `lokal ps` and `lokal rm` go through it, so a model it
already loaded is reused (and `rm` unloads it first); otherwise they work in process. Looking for the
server costs one local connection attempt with a short timeout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx

from lokal import http_client
from lokal.config import Settings
from lokal.errors import LokalError

PROBE_TIMEOUT = 0.5
#: Connecting to a server that answered the probe; between bytes there is no limit (a model may load for minutes).
CONNECT_TIMEOUT = 5.0


class RemoteError(LokalError):
    """An error the server reported, passed on with its message and status."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status_code = status


class RemoteServer:
    def __init__(self, base_url: str, api_key: str | None = None) -> None:
        self.base_url = base_url
        self._client = http_client.make_client(
            base_url, timeout_s=None, connect_timeout_s=CONNECT_TIMEOUT, api_key=api_key
        )

    @classmethod
    def find(cls, settings: Settings) -> RemoteServer | None:
        base = http_client.bound_url(*settings.bind)
        try:
            with http_client.make_client(base, timeout_s=PROBE_TIMEOUT, connect_timeout_s=PROBE_TIMEOUT) as probe:
                response = probe.get("/api/version")
        except httpx.HTTPError:
            return None
        if response.status_code != 200:
            return None
        return cls(base, settings.api_key)

    def close(self) -> None:
        self._client.close()

    def _check(self, response: httpx.Response) -> None:
        if response.status_code >= 400:
            response.read()
            message = http_client.error_message(response)
            raise RemoteError(f"{message} (from the server at {self.base_url})", response.status_code)

    def stream(self, path: str, payload: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """POST with stream=true; yields the NDJSON chunks. Closing the iterator closes the connection,
        which the server takes as a cancellation."""
        with self._client.stream("POST", path, json={**payload, "stream": True}) as response:
            self._check(response)
            for line in response.iter_lines():
                if not line:
                    continue
                chunk = json.loads(line)
                if "error" in chunk:
                    raise RemoteError(chunk["error"], 500)
                yield chunk

    def post(self, path: str, payload: dict[str, Any]) -> Any:
        response = self._client.post(path, json=payload)
        self._check(response)
        return response.json() if response.content else None

    def get(self, path: str) -> Any:
        response = self._client.get(path)
        self._check(response)
        return response.json()

    def delete(self, path: str, payload: dict[str, Any]) -> None:
        response = self._client.request("DELETE", path, json=payload)
        self._check(response)
