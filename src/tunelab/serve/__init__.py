"""An HTTP API over a checkpoint: the task's route with dynamic micro-batching and limits, generation,
attention maps, metrics and a browser playground (`create_app`, `serve`)."""

from __future__ import annotations

import logging
import time

from tunelab.errors import TunelabError
from tunelab.serve.app import ServeConfig, create_app
from tunelab.serve.batcher import MicroBatcher, QueueFull

__all__ = ["MicroBatcher", "QueueFull", "ServeConfig", "create_app", "serve", "wait_until_healthy"]

logger = logging.getLogger(__name__)


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
    """Load the models and serve until a signal, then until every request received is answered."""
    from tunelab.serve.drain import run_until_drained

    app = create_app(config)
    logger.info("serving %s on http://%s:%d (playground at /, API docs at /docs)", config.checkpoint, config.host,
                config.port)
    run_until_drained(app, app.state.drain, config.host, config.port)
