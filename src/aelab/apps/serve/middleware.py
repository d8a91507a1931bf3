"""Server-side timing and the body-size limit, as plain ASGI middleware (cheap, and
independent of FastAPI's middleware API across versions)."""

from __future__ import annotations

import json
import time
from array import array

import numpy as np
from fastapi import HTTPException

MAX_BODY_BYTES = 1_000_000  # a 784-pixel image is ~10 KB of JSON; 1 MB leaves room, not abuse
TIMING_RING = 20_000  # server-side times kept per route for /api/stats


class Timings:
    """Handler times per route in fixed-size rings, so memory does not grow with traffic."""

    def __init__(self, keys, size: int = TIMING_RING):
        self.size = size
        self.keys = set(keys) | {"other"}
        self.reset()

    def reset(self) -> None:
        self._rings = {k: array("d", bytes(8 * self.size)) for k in self.keys}
        self._counts = dict.fromkeys(self.keys, 0)

    def record(self, key: str, seconds: float) -> None:
        key = key if key in self.keys else "other"  # never a key per client-chosen path
        self._rings[key][self._counts[key] % self.size] = seconds
        self._counts[key] += 1

    def summary(self) -> dict:
        out = {}
        for key, n in self._counts.items():
            if n:
                ms = np.frombuffer(self._rings[key], dtype=np.float64)[: min(n, self.size)] * 1e3
                out[key] = {"count": n, "p50_ms": float(np.percentile(ms, 50)),
                            "p99_ms": float(np.percentile(ms, 99)), "max_ms": float(ms.max())}
        return out


class TimingMiddleware:
    """Records each request's time to its response start; sends it as a Server-Timing header."""

    def __init__(self, app, timings: Timings):
        self.app, self.timings = app, timings

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()

        async def timed_send(message):
            if message["type"] == "http.response.start":
                dt = time.perf_counter() - t0
                self.timings.record(scope["path"], dt)
                header = (b"server-timing", f"app;dur={dt * 1e3:.3f}".encode())
                message = {**message, "headers": [*message.get("headers", []), header]}
            await send(message)

        await self.app(scope, receive, timed_send)


class BodyLimitMiddleware:
    """413 for a body over `limit` bytes, whether declared (Content-Length) or streamed."""

    def __init__(self, app, limit: int = MAX_BODY_BYTES):
        self.app, self.limit = app, limit

    def _message(self, size: str) -> str:
        return f"request body is {size}; the limit is {self.limit:,} bytes"

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            return await self._reject(send, self._message(f"{int(declared):,} bytes"))
        received = 0

        async def limited_receive():
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:  # FastAPI re-raises an HTTPException while reading a body
                raise HTTPException(413, self._message(f"over {self.limit:,} bytes"))
            return message

        await self.app(scope, limited_receive, send)

    @staticmethod
    async def _reject(send, detail: str) -> None:
        body = json.dumps({"detail": detail}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
