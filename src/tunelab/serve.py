"""An HTTP API over a checkpoint: dynamic micro-batching, limits, metrics and a browser playground.

Concurrent /v1/classify requests are queued and gathered into one micro-batch
(up to `max_batch_size` rows, waiting at most `max_wait_ms` for more), which the
predictor runs as a few length-sorted forward passes. The model runs in a
worker thread, off the event loop. The queue is bounded: when
it is full the server answers 503 at once instead of growing without limit.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
from pydantic import BaseModel, Field

from tunelab.errors import TunelabError

logger = logging.getLogger(__name__)


@dataclass
class ServeConfig:
    """Server options; `check` reports every bad value at once."""

    checkpoint: str
    generator: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    max_batch_size: int = 32
    max_wait_ms: float = 5.0
    max_queue: int = 1024
    max_texts: int = 64
    max_chars: int = 5000
    timeout_s: float = 30.0
    backend: str = "auto"
    max_new_tokens_limit: int = 256
    threshold: float | None = None  # multi-label: one decision threshold instead of the checkpoint's tuned ones

    def check(self) -> None:
        from tunelab.errors import collect

        problems = []
        for name in ("max_batch_size", "max_queue", "max_texts", "max_chars", "max_new_tokens_limit"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            problems.append(f"--max-wait-ms must not be negative, got {self.max_wait_ms}")
        if self.timeout_s <= 0:
            problems.append(f"--timeout must be positive, got {self.timeout_s}")
        if not 0 <= self.port <= 65535:
            problems.append(f"--port must be 0-65535, got {self.port}")
        collect(problems)


class ClassifyRequest(BaseModel):
    texts: list[str] | None = Field(None, description="Texts to classify.")
    text: str | None = Field(None, description="One text (instead of texts).")
    text_pairs: list[str] | None = Field(None, description="Second texts of pairs, one per text.")
    text_pair: str | None = Field(None, description="Second text of a pair (with text).")


class GenerateRequest(BaseModel):
    prompt: str
    max_new_tokens: int = 64
    greedy: bool = False
    temperature: float = 0.8
    top_k: int = 0
    top_p: float = 0.9
    repetition_penalty: float = 1.1
    seed: int | None = None
    chat: bool | None = None


class AttentionRequest(BaseModel):
    text: str
    text_pair: str | None = None
    layer: int = 0
    head: int | None = None


class QueueFull(Exception):
    pass


@dataclass
class _Job:
    texts: list[str]
    pairs: list[str] | None
    future: asyncio.Future


class MicroBatcher:
    """Gathers queued requests into batches and runs them on one worker thread."""

    def __init__(self, predict_fn, max_batch_size: int, max_wait_ms: float, max_queue: int, on_batch=None):
        self.predict_fn = predict_fn  # (texts, pairs or None) -> list of results, one per text
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=max_queue)
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tunelab-model")
        self.on_batch = on_batch
        self.task: asyncio.Task | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self.task:
            self.task.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def submit(self, texts: list[str], pairs: list[str] | None) -> list:
        future = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(_Job(texts, pairs, future))
        except asyncio.QueueFull:
            raise QueueFull from None
        return await future

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            jobs = [await self.queue.get()]
            rows = len(jobs[0].texts)
            deadline = loop.time() + self.max_wait
            # Gather more requests until the batch is full or the wait is over.
            while rows < self.max_batch_size:
                try:
                    job = self.queue.get_nowait() if loop.time() >= deadline else await asyncio.wait_for(
                        self.queue.get(), deadline - loop.time())
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                jobs.append(job)
                rows += len(job.texts)
            jobs = [j for j in jobs if not j.future.cancelled()]
            if not jobs:
                continue
            await self._run_batch(loop, jobs)

    async def _run_batch(self, loop, jobs: list[_Job]) -> None:
        # Mixed single texts and pairs run as separate forward passes.
        for kind in (False, True):
            group = [j for j in jobs if (j.pairs is not None) == kind]
            if not group:
                continue
            texts = [t for j in group for t in j.texts]
            pairs = [p for j in group for p in j.pairs] if kind else None
            if self.on_batch:
                self.on_batch(len(texts))
            try:
                results = await loop.run_in_executor(self.executor, self.predict_fn, texts, pairs)
            except Exception as exc:  # noqa: BLE001 - handed to every waiting request
                for job in group:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            start = 0
            for job in group:
                if not job.future.done():
                    job.future.set_result(results[start:start + len(job.texts)])
                start += len(job.texts)


def create_app(config: ServeConfig, predictor=None, generator=None):
    """The FastAPI application. `predictor` and `generator` (model, tokenizer) may be passed in (tests)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import HTMLResponse, Response
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

    from tunelab.predict import load

    config.check()
    predictor = predictor or load(config.checkpoint, backend=config.backend, threshold=config.threshold)
    if generator is None and config.generator:
        from tunelab.generate import load_generator

        generator = load_generator(config.generator)

    registry = CollectorRegistry()
    requests_total = Counter("tunelab_requests_total", "HTTP requests", ["endpoint", "status"], registry=registry)
    latency = Histogram("tunelab_request_latency_seconds", "Request latency", ["endpoint"], registry=registry,
                        buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30))
    batch_sizes = Histogram("tunelab_batch_size", "Rows per forward pass", registry=registry,
                            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256))

    def classify_rows(texts: list[str], pairs: list[str] | None) -> list[dict]:
        return [p.as_dict() for p in predictor.predict(texts, pairs)]

    batcher = MicroBatcher(classify_rows, config.max_batch_size, config.max_wait_ms, config.max_queue,
                           on_batch=batch_sizes.observe)
    queued = Gauge("tunelab_queue_depth", "Requests waiting for a micro-batch", registry=registry)
    queued.set_function(lambda: batcher.queue.qsize())
    attention_model: dict[str, Any] = {}
    generate_lock = asyncio.Lock()

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="tunelab", version=_version(), lifespan=lifespan,
                  description="Classify texts and text pairs, or tag entities, with a fine-tuned checkpoint; "
                              "generate text.")

    def json_response(content: Any, status: int = 200) -> Response:
        # orjson straight to bytes: FastAPI's default path (jsonable_encoder, then json.dumps) walks
        # every probability in Python and costs more than an int8 forward pass of one sentence.
        return Response(orjson.dumps(content), status_code=status, media_type="application/json")

    def error(status: int, message: str) -> Response:
        return json_response({"error": message}, status)

    app.add_middleware(Guard, api_key=config.api_key, requests_total=requests_total, latency=latency)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", []) if p != "body") or "body"
        message = first.get("msg", "invalid request")
        if first.get("type") == "json_invalid":
            message = "the body is not valid JSON"
        return error(422, f"{where}: {message}")

    async def classify(body: ClassifyRequest):
        """The checkpoint's predictions: labels and probabilities (classification), or tagged words and
        entities with character offsets (token classification)."""
        texts = body.texts if body.texts is not None else ([body.text] if body.text is not None else None)
        pairs = body.text_pairs if body.text_pairs is not None else ([body.text_pair] if body.text_pair else None)
        if not texts:
            return error(422, "give 'texts' (a list) or 'text' (a string) with at least one text")
        if len(texts) > config.max_texts:
            return error(413, f"too many texts: {len(texts)} in one request, the limit is {config.max_texts}; "
                              "split the request")
        if pairs is not None and len(pairs) != len(texts):
            return error(422, f"{len(texts)} texts but {len(pairs)} text_pairs; give one pair text per text")
        for i, text in enumerate(texts + (pairs or [])):
            if len(text) > config.max_chars:
                return error(422, f"text {i % len(texts) + 1} has {len(text)} characters, the limit is "
                                  f"{config.max_chars}; shorten it")
            if not text.strip():
                return error(422, f"text {i % len(texts) + 1} is empty; give non-empty texts")
        try:
            results = await asyncio.wait_for(batcher.submit(texts, pairs), config.timeout_s)
        except QueueFull:
            return error(503, "the server is at capacity (request queue full); retry shortly")
        except asyncio.TimeoutError:
            return error(504, f"the request took longer than {config.timeout_s:g} s")
        except TunelabError as exc:
            return error(422, str(exc))
        return json_response({"model": config.checkpoint, "predictions": results})

    # The task names its route: /v1/classify for classifiers, /v1/tag for token classification.
    app.post(predictor.task.endpoint, summary=f"Predict ({predictor.task.name})")(classify)

    @app.post("/v1/generate")
    async def generate_text(body: GenerateRequest):
        if generator is None:
            return error(404, "no generator loaded; start the server with --generator MODEL (for example smollm2)")
        from tunelab.generate import GenerationOptions, generate

        if body.max_new_tokens > config.max_new_tokens_limit:
            return error(422, f"max_new_tokens is {body.max_new_tokens}, the limit is {config.max_new_tokens_limit}")
        if len(body.prompt) > config.max_chars:
            return error(422, f"the prompt has {len(body.prompt)} characters, the limit is {config.max_chars}")
        options = GenerationOptions(**{k: v for k, v in body.model_dump().items() if k != "prompt"})
        try:
            options.check()
            async with generate_lock:  # one generation at a time: it uses every core
                result = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                    None, generate, generator[0], generator[1], body.prompt, options), config.timeout_s)
        except TunelabError as exc:
            return error(422, str(exc))
        except asyncio.TimeoutError:
            return error(504, f"generation took longer than {config.timeout_s:g} s; ask for fewer tokens")
        return {"text": result.texts[0], "new_tokens": result.new_tokens,
                "tokens_per_second": round(result.tokens_per_second, 2)}

    @app.post("/v1/attention")
    async def attention_map(body: AttentionRequest):
        from tunelab import attention

        def run():
            if "model" not in attention_model:
                attention_model["model"], attention_model["tokenizer"] = attention.load_encoder(config.checkpoint)
            found = attention.inspect(attention_model["model"], attention_model["tokenizer"], body.text,
                                      body.text_pair, max_length=predictor.max_length)
            found.check(body.layer, body.head)
            maps = found.attentions[body.layer]
            matrix = maps.mean(0) if body.head is None else maps[body.head]
            return {"tokens": found.tokens, "layer": body.layer, "head": body.head,
                    "layers": found.num_layers, "heads": found.num_heads,
                    "attention": [[round(float(x), 4) for x in row] for row in matrix]}

        if len(body.text) > config.max_chars:
            return error(422, f"the text has {len(body.text)} characters, the limit is {config.max_chars}")
        try:
            return await asyncio.get_running_loop().run_in_executor(batcher.executor, run)
        except TunelabError as exc:
            return error(422, str(exc))

    @app.get("/healthz")
    async def healthz():
        return {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        return {
            "classifier": {"path": config.checkpoint, "task": predictor.task.name, "endpoint": predictor.task.endpoint,
                           "action": predictor.task.action,
                           "labels": None if predictor.is_regression else predictor.label_names,
                           "max_length": predictor.max_length,
                           "backend": getattr(predictor, "backend", config.backend)},
            "generator": {"name": config.generator} if generator is not None else None,
            "limits": {"max_texts": config.max_texts, "max_chars": config.max_chars,
                       "max_batch_size": config.max_batch_size, "max_wait_ms": config.max_wait_ms},
        }

    @app.get("/metrics")
    async def metrics():
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground():
        return resources.files("tunelab").joinpath("static/playground.html").read_text(encoding="utf-8")

    return app


class Guard:
    """API key check and request metrics as plain ASGI middleware (much cheaper per request than
    Starlette's BaseHTTPMiddleware, which matters when a request's model time is a few milliseconds)."""

    def __init__(self, app, api_key: str | None, requests_total, latency):
        self.app, self.api_key, self.requests_total, self.latency = app, api_key, requests_total, latency

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started = time.perf_counter()
        path = scope["path"]
        endpoint = path if path in KNOWN_PATHS else "other"
        if self.api_key and path.startswith("/v1/"):
            headers = dict(scope["headers"])
            given = headers.get(b"x-api-key") or headers.get(b"authorization", b"").removeprefix(b"Bearer ")
            if not hmac.compare_digest(given, self.api_key.encode()):
                body = b'{"error":"missing or wrong API key: send it in the X-API-Key header"}'
                await send({"type": "http.response.start", "status": 401,
                            "headers": [(b"content-type", b"application/json"),
                                        (b"content-length", str(len(body)).encode())]})
                await send({"type": "http.response.body", "body": body})
                self.requests_total.labels(endpoint, "401").inc()
                return
        status = {"code": 500}

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            self.requests_total.labels(endpoint, str(status["code"])).inc()
            self.latency.labels(endpoint).observe(time.perf_counter() - started)


KNOWN_PATHS = {"/v1/classify", "/v1/tag", "/v1/generate", "/v1/attention", "/v1/models", "/healthz", "/metrics", "/"}


def _version() -> str:
    from tunelab import __version__

    return __version__


def wait_until_healthy(process, url: str, timeout_s: float = 60.0) -> None:
    """Poll `url` + "/healthz" until it answers 200, for scripts that start `tunelab serve` as a process
    (`process`, a subprocess.Popen); raise TunelabError if the process exits first or time runs out."""
    import httpx

    deadline = time.monotonic() + timeout_s
    while True:
        if process.poll() is not None:
            raise TunelabError(f"tunelab serve exited with code {process.returncode} before answering {url}/healthz")
        if time.monotonic() > deadline:
            raise TunelabError(f"tunelab serve did not answer {url}/healthz within {timeout_s:g} s")
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)


def serve(config: ServeConfig) -> None:
    """Load the models and serve until interrupted."""
    import uvicorn

    app = create_app(config)
    logger.info("serving %s on http://%s:%d (playground at /, API docs at /docs)", config.checkpoint, config.host,
                config.port)
    # uvicorn picks up uvloop and httptools (dependencies), its faster event loop and HTTP parser.
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False)
