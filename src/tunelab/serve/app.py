"""The HTTP API: thin routes over the checkpoint's task (what a request holds and what it returns), the
micro-batcher (batcher.py), the request limits (limits.py) and the API key and metrics (guard.py)."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

import orjson
from pydantic import BaseModel

from tunelab.errors import TunelabError
from tunelab.options import option
from tunelab.precision import INFERENCE_HELP, check_name
from tunelab.serve.batcher import MicroBatcher, QueueFull
from tunelab.serve.limits import Limits, RequestError

logger = logging.getLogger(__name__)


@dataclass
class ServeOptions:
    """The server's own options (ServeConfig adds the tasks' prediction options); `check` reports every bad
    value at once."""

    checkpoint: str = option(None, "A run's best/ or last/ folder (or the run folder).", cli=False)
    generator: str | None = option(None, "Also serve /v1/generate with this causal LM ('smollm2' is bundled).")
    host: str = option("127.0.0.1", "Address to bind (loopback by default).")
    port: int = option(8000, "Port.")
    api_key: str | None = option(None, "Require this key in X-API-Key (default: $TUNELAB_API_KEY).")
    max_batch_size: int = option(32, "Inputs gathered into one forward pass.")
    max_wait_ms: float = option(5.0, "How long the first request of a batch waits for company.")
    max_queue: int = option(1024, "Queued requests before answering 503.")
    max_texts: int = option(64, "Inputs per request (413 above).")
    max_chars: int = option(5000, "Characters per text (422 above).")
    max_context_chars: int = option(50000, "Characters per long text: a question-answering context (422 above).")
    timeout_s: float = option(30.0, "Seconds before a request gets 504.", flag="--timeout")
    backend: str = option("auto", "auto (ONNX int8 when `tunelab export` wrote it, else torch), torch, or onnx.")
    precision: str = option("auto", INFERENCE_HELP)
    max_new_tokens_limit: int = option(256, "The most new tokens /v1/generate makes.", cli=False)

    def check(self) -> None:
        from tunelab.errors import collect

        problems = []
        for name in ("max_batch_size", "max_queue", "max_texts", "max_chars", "max_context_chars",
                     "max_new_tokens_limit"):
            if getattr(self, name) < 1:
                problems.append(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}")
        if self.max_wait_ms < 0:
            problems.append(f"--max-wait-ms must not be negative, got {self.max_wait_ms}")
        if self.timeout_s <= 0:
            problems.append(f"--timeout must be positive, got {self.timeout_s}")
        if not 0 <= self.port <= 65535:
            problems.append(f"--port must be 0-65535, got {self.port}")
        problems += [p for p in [check_name(self.precision)] if p]
        collect(problems)

    def task_values(self) -> dict:
        """The values of the tasks' prediction options (None: not given)."""
        from tunelab.tasks import task_options

        return {o.name: getattr(self, o.name) for o in task_options("serve")}


def compose() -> type:
    """ServeConfig: the server's options and the prediction options every task declares for `serve`."""
    from tunelab.tasks import task_options

    fields = [(o.name, o.type, option(None, o.help)) for o in task_options("serve")]
    return dataclasses.make_dataclass("ServeConfig", fields, bases=(ServeOptions,), namespace={
        "__doc__": "Every option of `tunelab serve`.", "__module__": __name__})


ServeConfig = compose()


def create_app(config, predictor=None, generator=None):
    """The FastAPI application. `predictor` and `generator` (model, tokenizer) may be passed in (tests)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from fastapi.exceptions import RequestValidationError

    from tunelab.predict import load
    from tunelab.serve.drain import Drain
    from tunelab.serve.guard import Guard, Metrics

    config.check()
    predictor = predictor or load(config.checkpoint, backend=config.backend, precision=config.precision,
                                    **config.task_values())
    if generator is None and config.generator:
        from tunelab.generate import load_generator

        generator = load_generator(config.generator)
    metrics = Metrics()
    batcher = MicroBatcher(lambda items: [p.as_dict() for p in predictor.predict(items)], config.max_batch_size,
                           config.max_wait_ms, config.max_queue, on_batch=metrics.batch_sizes.observe)
    metrics.watch_queue(batcher.queue)

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="tunelab", version=_version(), lifespan=lifespan,
                  description=f"{predictor.task.name} with a fine-tuned checkpoint ({predictor.task.endpoint}); "
                              "generate text (/v1/generate); attention maps (/v1/attention).")
    paths = {predictor.task.endpoint, "/v1/generate", "/v1/attention", "/v1/models", "/healthz", "/metrics", "/"}
    drain = app.state.drain = Drain()
    metrics.watch_drain(drain)
    app.add_middleware(drain.wrap)  # inside the Guard: its 503s are counted too
    app.add_middleware(Guard, api_key=config.api_key, metrics=metrics, known_paths=paths)
    app.exception_handler(RequestValidationError)(invalid)
    add_predict_route(app, config, predictor, batcher)
    add_generate_route(app, config, generator)
    add_attention_route(app, config, predictor, batcher)
    add_info_routes(app, config, predictor, generator, metrics, drain)
    return app


def json_response(content: Any, status: int = 200):
    # orjson straight to bytes: FastAPI's default path (jsonable_encoder, then json.dumps) walks
    # every probability in Python and costs more than an int8 forward pass of one sentence.
    from fastapi.responses import Response

    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def error(status: int, message: str):
    return json_response({"error": message}, status)


async def invalid(request, exc):
    """A body FastAPI could not read: one line that names the field."""
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(p) for p in first.get("loc", []) if p != "body") or "body"
    message = first.get("msg", "invalid request")
    if first.get("type") == "json_invalid":
        message = "the body is not valid JSON"
    return error(422, f"{where}: {message}")


def add_predict_route(app, config, predictor, batcher: MicroBatcher) -> None:
    """The task's route (/v1/classify, /v1/tag, /v1/answer, ...): its inputs, checked, micro-batched."""
    from fastapi import Body

    task = predictor.task
    limits = Limits(config.max_texts, config.max_chars, config.max_context_chars)

    async def predict(body: dict = Body(..., description=task.request_help)):
        try:
            items = task.request_items(body)
            limits.check(task, items)
            results = await asyncio.wait_for(batcher.submit(items), config.timeout_s)
        except RequestError as exc:
            return error(exc.status, exc.message)
        except QueueFull:
            return error(503, "the server is at capacity (request queue full); retry shortly")
        except asyncio.TimeoutError:
            return error(504, f"the request took longer than {config.timeout_s:g} s")
        except TunelabError as exc:
            return error(422, str(exc))
        return json_response({"model": config.checkpoint, "predictions": results})

    predict.__doc__ = task.request_help
    app.post(task.endpoint, summary=f"{task.action} ({task.name})")(predict)


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


def add_generate_route(app, config, generator) -> None:
    """/v1/generate: text from the generator the server was started with (one generation at a time)."""
    lock = asyncio.Lock()  # one generation at a time: it uses every core

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
            async with lock:
                result = await asyncio.wait_for(asyncio.get_running_loop().run_in_executor(
                    None, generate, generator[0], generator[1], body.prompt, options), config.timeout_s)
        except TunelabError as exc:
            return error(422, str(exc))
        except asyncio.TimeoutError:
            return error(504, f"generation took longer than {config.timeout_s:g} s; ask for fewer tokens")
        return {"text": result.texts[0], "new_tokens": result.new_tokens,
                "tokens_per_second": round(result.tokens_per_second, 2)}


def add_attention_route(app, config, predictor, batcher: MicroBatcher) -> None:
    """/v1/attention: a layer's attention map (one head, or their mean) of a text (or pair)."""
    encoder: dict[str, Any] = {}

    def run(body: AttentionRequest) -> dict:
        from tunelab import attention

        if "model" not in encoder:
            encoder["model"], encoder["tokenizer"] = attention.load_encoder(config.checkpoint)
        found = attention.inspect(encoder["model"], encoder["tokenizer"], body.text, body.text_pair,
                                  max_length=predictor.max_length)
        found.check(body.layer, body.head)
        maps = found.attentions[body.layer]
        matrix = maps.mean(0) if body.head is None else maps[body.head]
        return {"tokens": found.tokens, "layer": body.layer, "head": body.head, "layers": found.num_layers,
                "heads": found.num_heads, "attention": [[round(float(x), 4) for x in row] for row in matrix]}

    @app.post("/v1/attention")
    async def attention_map(body: AttentionRequest):
        if len(body.text) > config.max_chars:
            return error(422, f"the text has {len(body.text)} characters, the limit is {config.max_chars}")
        try:
            return await asyncio.get_running_loop().run_in_executor(batcher.executor, run, body)
        except TunelabError as exc:
            return error(422, str(exc))


def add_info_routes(app, config, predictor, generator, metrics, drain) -> None:
    """/healthz, /v1/models, /metrics, the playground at / and its task views."""
    from fastapi.responses import HTMLResponse, Response

    @app.get("/healthz")
    async def healthz():
        # 503 while draining: a load balancer's health check then sends new traffic elsewhere
        return json_response({"status": "draining"}, 503) if drain.draining else {"status": "ok"}

    @app.get("/v1/models")
    async def models():
        task = predictor.task
        return {
            "classifier": {"path": config.checkpoint, "task": task.name, "endpoint": task.endpoint,
                           "action": task.action, "view": task.view, **task.describe(predictor),
                           "max_length": predictor.max_length,
                           "backend": getattr(predictor, "backend", config.backend)},
            "generator": {"name": config.generator} if generator is not None else None,
            "limits": {"max_texts": config.max_texts, "max_chars": config.max_chars,
                       "max_context_chars": config.max_context_chars, "max_batch_size": config.max_batch_size,
                       "max_wait_ms": config.max_wait_ms},
        }

    @app.get("/metrics")
    async def prometheus():
        return Response(metrics.latest(), media_type=metrics.content_type)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def playground():
        return resources.files("tunelab").joinpath("static/playground.html").read_text(encoding="utf-8")

    @app.get("/views/{name}.js", include_in_schema=False)
    async def view(name: str):
        found = resources.files("tunelab").joinpath(f"static/views/{name}.js")
        if not re.fullmatch(r"[a-z][a-z-]*", name) or not found.is_file():
            return error(404, f"no playground view '{name}'")
        return Response(found.read_text(encoding="utf-8"), media_type="text/javascript")


def _version() -> str:
    from tunelab import __version__

    return __version__
