"""Stopping without losing a request: on SIGTERM (kill, docker stop, a scheduler) or Ctrl-C the server keeps
answering what it was sent, refuses new work with 503, reports `draining` on /healthz so a load balancer
sends traffic elsewhere, and exits 0 once nothing is in progress. A second signal stops at once."""

from __future__ import annotations

import logging
import signal

logger = logging.getLogger(__name__)

# One line for every request refused while draining: what happened and what the client should do.
REFUSED = b'{"error":"the server is shutting down: send the request again, to another server or after a restart"}'


class Drain:
    """Whether the server is draining, and how many /v1/ requests it is still answering (ASGI middleware)."""

    def __init__(self):
        self.app = None
        self.draining = False
        self.active = 0

    def wrap(self, app) -> "Drain":
        """This drain's state, as middleware around `app` (one object: the server reads what it counts)."""
        self.app = app
        return self

    def begin(self, why: str) -> None:
        self.draining = True
        logger.warning("%s: draining, %d request(s) in progress; new requests get 503 and /healthz says "
                       "draining; a second signal stops at once", why, self.active)

    def done(self) -> bool:
        return self.draining and self.active == 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or not scope["path"].startswith("/v1/"):
            return await self.app(scope, receive, send)
        if self.draining:
            await send({"type": "http.response.start", "status": 503,
                        "headers": [(b"content-type", b"application/json"),
                                    (b"content-length", str(len(REFUSED)).encode()), (b"connection", b"close")]})
            await send({"type": "http.response.body", "body": REFUSED})
            return
        self.active += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.active -= 1


def run_until_drained(app, drain: Drain, host: str, port: int) -> None:
    """Serve `app` with uvicorn until a signal, then until `drain` has answered everything in progress."""
    import uvicorn

    class DrainingServer(uvicorn.Server):
        def handle_exit(self, sig: int, frame) -> None:
            # uvicorn would stop accepting at once, close idle keep-alive connections (a request already
            # written to one is then lost) and raise the signal again after (exit 130 / 143, not 0).
            if drain.draining:
                self.should_exit = self.force_exit = True
                return
            drain.begin(signal.Signals(sig).name)

        async def on_tick(self, counter: int) -> bool:
            stop = await super().on_tick(counter)
            if drain.done() and not stop:
                logger.warning("drained: every request received was answered; exiting")
                return True
            return stop

    # uvicorn picks up uvloop and httptools (dependencies), its faster event loop and HTTP parser.
    DrainingServer(uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False)).run()
