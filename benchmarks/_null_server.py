"""An OpenAI-compatible endpoint that does no work: it answers every chat completion at once with a fixed
stream of chunks. Benchmarking it measures the harness itself (its TTFT, ITL and request-rate floor).

Plain asyncio streams rather than FastAPI/uvicorn: the point is that the server's own cost is negligible next
to the client's, so it must not parse JSON through a framework or pass through middleware. It speaks just
enough HTTP/1.1 (keep-alive, Content-Length bodies) for httpx.

    python benchmarks/_null_server.py --port 8999 --chunks 64    # serve until Ctrl-C
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import threading

MODEL = "null"


def _sse_body(chunks: int) -> bytes:
    parts = []
    for i in range(chunks):
        delta = {"role": "assistant", "content": "x"} if i == 0 else {"content": "x"}
        event = {
            "id": "n",
            "object": "chat.completion.chunk",
            "model": MODEL,
            "choices": [{"index": 0, "delta": delta}],
        }
        parts.append(b"data: " + json.dumps(event).encode() + b"\n\n")
    done = {
        "id": "n",
        "object": "chat.completion.chunk",
        "model": MODEL,
        "choices": [{"index": 0, "delta": {}, "finish_reason": "length"}],
    }
    usage = {
        "id": "n",
        "object": "chat.completion.chunk",
        "model": MODEL,
        "choices": [],
        "usage": {"prompt_tokens": 10, "completion_tokens": chunks, "total_tokens": 10 + chunks},
    }
    parts += [b"data: " + json.dumps(done).encode() + b"\n\n", b"data: " + json.dumps(usage).encode() + b"\n\n"]
    parts.append(b"data: [DONE]\n\n")
    return b"".join(parts)


def _response(status: str, content_type: str, body: bytes) -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    return head.encode() + body


class NullServer:
    """Runs in a background thread; `url` is ready once `start()` returns."""

    def __init__(self, chunks: int = 64, host: str = "127.0.0.1", port: int = 0) -> None:
        self.chunks, self.host, self.port = chunks, host, port
        self._stream = _response("200 OK", "text/event-stream", _sse_body(chunks))
        models = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model", "owned_by": "null"}]})
        self._models = _response("200 OK", "application/json", models.encode())
        self._loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="null-server", daemon=True)
        self.requests = 0

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                method, path = lines[0].split(" ")[:2]
                length = 0
                for line in lines[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value.strip())
                if length:
                    await reader.readexactly(length)
                if method == "POST" and path.endswith("/chat/completions"):
                    self.requests += 1
                    writer.write(self._stream)
                elif method == "GET" and path.endswith("/models"):
                    writer.write(self._models)
                else:
                    writer.write(_response("404 Not Found", "application/json", b'{"error":"not found"}'))
                await writer.drain()
        writer.close()

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        server = self._loop.run_until_complete(asyncio.start_server(self._handle, self.host, self.port))
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        self._loop.run_forever()
        server.close()

    def start(self) -> NullServer:
        self._thread.start()
        self._ready.wait(10)
        return self

    def stop(self) -> None:
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=8999)
    parser.add_argument("--chunks", type=int, default=64)
    args = parser.parse_args()
    server = NullServer(args.chunks, port=args.port).start()
    print(f"null OpenAI endpoint at {server.url}/v1 ({args.chunks} chunks per answer); Ctrl-C stops")
    with contextlib.suppress(KeyboardInterrupt):
        threading.Event().wait()
    server.stop()


if __name__ == "__main__":
    main()
