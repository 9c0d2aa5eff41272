"""Who may call the server and what it counts: the API key check and the Prometheus metrics, as plain ASGI
middleware (much cheaper per request than Starlette's BaseHTTPMiddleware, which matters when a request's
model time is a few milliseconds)."""

from __future__ import annotations

import hmac
import time


class Metrics:
    """The server's Prometheus metrics: requests by route and status, latency, rows per forward pass, and
    the queue's depth."""

    def __init__(self):
        from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.content_type = CONTENT_TYPE_LATEST
        self.requests_total = Counter("tunelab_requests_total", "HTTP requests", ["endpoint", "status"],
                                      registry=self.registry)
        self.latency = Histogram("tunelab_request_latency_seconds", "Request latency", ["endpoint"],
                                 registry=self.registry,
                                 buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
        self.batch_sizes = Histogram("tunelab_batch_size", "Rows per forward pass", registry=self.registry,
                                     buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))
        self.queued = Gauge("tunelab_queue_depth", "Requests waiting for a micro-batch", registry=self.registry)
        self.in_progress = Gauge("tunelab_requests_in_progress", "/v1/ requests received and not yet answered",
                                 registry=self.registry)

    def watch_queue(self, queue) -> None:
        self.queued.set_function(lambda: queue.qsize())

    def watch_drain(self, drain) -> None:
        self.in_progress.set_function(lambda: drain.active)

    def latest(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


class Guard:
    """The API key on /v1/ routes, and every request counted and timed."""

    def __init__(self, app, api_key: str | None, metrics: Metrics, known_paths: set[str]):
        self.app, self.api_key, self.metrics, self.known_paths = app, api_key, metrics, known_paths

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path = scope["path"]
        endpoint = path if path in self.known_paths else "other"
        if self.api_key and path.startswith("/v1/") and not self.allowed(scope):
            body = b'{"error":"missing or wrong API key: send it in the X-API-Key header"}'
            await send({"type": "http.response.start", "status": 401,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})
            self.metrics.requests_total.labels(endpoint, "401").inc()
            return
        status = {"code": 500}

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.metrics.requests_total.labels(endpoint, str(status["code"])).inc()
            self.metrics.latency.labels(endpoint).observe(time.perf_counter() - started)

    def allowed(self, scope) -> bool:
        headers = dict(scope["headers"])
        given = headers.get(b"x-api-key") or headers.get(b"authorization", b"").removeprefix(b"Bearer ")
        return hmac.compare_digest(given, self.api_key.encode())
