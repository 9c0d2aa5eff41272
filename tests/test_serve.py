"""The HTTP API in-process: every endpoint, every limit, and the micro-batcher."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fastapi.testclient import TestClient

import tunelab
from tunelab.serve import MicroBatcher, QueueFull, ServeConfig, create_app


@pytest.fixture
def client(trained_run):
    app = create_app(ServeConfig(checkpoint=str(trained_run.best_dir), max_texts=4, max_chars=50))
    with TestClient(app) as test_client:
        yield test_client


class HeldPredictor:
    """The real predictor, but every forward pass waits until the test releases it; records batch sizes."""

    def __init__(self, inner):
        self.inner, self.batches, self.release, self.started = inner, [], threading.Event(), threading.Event()

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def predict(self, texts, pairs=None):
        self.batches.append(len(texts))
        self.started.set()
        self.release.wait(timeout=60)
        return self.inner.predict(texts, pairs)


def queue_depth(client) -> float:
    line = next(x for x in client.get("/metrics").text.splitlines() if x.startswith("tunelab_queue_depth "))
    return float(line.split()[1])


def wait_for(condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.01)


def test_classify_one_and_many(client):
    response = client.post("/v1/classify", json={"text": "great superb fun"})
    assert response.status_code == 200
    prediction = response.json()["predictions"][0]
    assert prediction["label"] == "positive" and set(prediction["probabilities"]) == {"negative", "positive"}
    response = client.post("/v1/classify", json={"texts": ["great fun", "awful dull weak"]})
    assert [p["label"] for p in response.json()["predictions"]] == ["positive", "negative"]


def test_pairs_are_accepted(client, trained_run):
    response = client.post("/v1/classify", json={"texts": ["good", "bad"], "text_pairs": ["awful weak", "superb fun"]})
    assert response.status_code == 200 and len(response.json()["predictions"]) == 2
    predictor = tunelab.load(trained_run.best_dir)
    served = [p["probabilities"] for p in response.json()["predictions"]]
    assert served == [p.probabilities for p in predictor.predict(["good", "bad"], ["awful weak", "superb fun"])]
    singles = [p.probabilities for p in predictor.predict(["good", "bad"])]
    assert all(abs(a["positive"] - b["positive"]) > 1e-5 for a, b in zip(served, singles))
    response = client.post("/v1/classify", json={"texts": ["good", "bad"], "text_pairs": ["fine"]})
    assert response.status_code == 422 and response.json()["error"] == "2 texts but 1 text_pairs; give one pair text per text"


def test_health_models_docs_metrics_and_playground(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    models = client.get("/v1/models").json()
    assert models["classifier"]["labels"] == ["negative", "positive"] and models["classifier"]["max_length"] == 64
    assert models["generator"] is None
    assert client.get("/docs").status_code == 200
    assert "/v1/classify" in client.get("/openapi.json").json()["paths"]
    client.post("/v1/classify", json={"text": "great"})
    metrics = client.get("/metrics").text
    assert 'tunelab_requests_total{endpoint="/v1/classify",status="200"} 1.0' in metrics
    assert "tunelab_request_latency_seconds_bucket" in metrics and "tunelab_batch_size_count 1.0" in metrics
    page = client.get("/")
    assert page.status_code == 200 and "tunelab playground" in page.text


def test_limits_and_malformed_input(client):
    response = client.post("/v1/classify", json={"texts": ["a"] * 5})
    assert response.status_code == 413
    assert response.json()["error"] == "too many texts: 5 in one request, the limit is 4; split the request"
    response = client.post("/v1/classify", json={"text": "x" * 51})
    assert response.status_code == 422 and response.json()["error"] == "text 1 has 51 characters, the limit is 50; shorten it"
    response = client.post("/v1/classify", content=b"{not json", headers={"Content-Type": "application/json"})
    assert response.status_code == 422 and "not valid JSON" in response.json()["error"]
    response = client.post("/v1/classify", json={"texts": "not a list"})
    assert response.status_code == 422 and response.json()["error"].startswith("texts:")
    assert client.post("/v1/classify", json={}).status_code == 422
    assert client.post("/v1/classify", json={"text": "  "}).json()["error"] == "text 1 is empty; give non-empty texts"


def test_generate_without_a_generator_is_404(client):
    response = client.post("/v1/generate", json={"prompt": "hello"})
    assert response.status_code == 404 and "--generator" in response.json()["error"]


def test_generate_with_a_generator(trained_run, tiny_gpt2):
    from tunelab.generate import load_generator

    app = create_app(ServeConfig(checkpoint=str(trained_run.best_dir), generator=tiny_gpt2),
                     generator=load_generator(tiny_gpt2))
    with TestClient(app) as test_client:
        body = {"prompt": "once upon a time", "max_new_tokens": 5, "seed": 1}
        first = test_client.post("/v1/generate", json=body).json()
        assert first["new_tokens"] <= 5 and first == {**test_client.post("/v1/generate", json=body).json(),
                                                        "tokens_per_second": first["tokens_per_second"]}
        assert test_client.post("/v1/generate", json={"prompt": "x", "max_new_tokens": 0}).status_code == 422
        assert test_client.get("/v1/models").json()["generator"] == {"name": tiny_gpt2}


def test_attention_endpoint(client):
    data = client.post("/v1/attention", json={"text": "great fun", "layer": 1}).json()
    assert data["tokens"] == ["[CLS]", "great", "fun", "[SEP]"] and data["layers"] == 2 and data["heads"] == 4
    assert all(abs(sum(row) - 1) < 1e-3 for row in data["attention"])
    response = client.post("/v1/attention", json={"text": "great", "layer": 9})
    assert response.status_code == 422 and "--layer 9 is out of range" in response.json()["error"]


def test_api_key(trained_run):
    app = create_app(ServeConfig(checkpoint=str(trained_run.best_dir), api_key="s3cret"))
    with TestClient(app) as test_client:
        response = test_client.post("/v1/classify", json={"text": "great"})
        assert response.status_code == 401 and "X-API-Key" in response.json()["error"]
        assert test_client.post("/v1/classify", json={"text": "great"}, headers={"X-API-Key": "wrong"}).status_code == 401
        assert test_client.post("/v1/classify", json={"text": "great"}, headers={"X-API-Key": "s3cret"}).status_code == 200
        assert test_client.get("/healthz").status_code == 200  # health checks need no key


def test_concurrent_requests_share_forward_passes(trained_run):
    held = HeldPredictor(tunelab.load(trained_run.best_dir))
    app = create_app(ServeConfig(checkpoint=str(trained_run.best_dir), max_batch_size=16, max_wait_ms=0),
                     predictor=held)
    results = []
    with TestClient(app) as test_client:
        def call(i):
            results.append(test_client.post("/v1/classify", json={"text": "great fun" if i % 2 else "awful"}).status_code)

        threads = [threading.Thread(target=call, args=(0,))]
        threads[0].start()
        held.started.wait(timeout=30)  # the first request is in a forward pass, held there
        threads += [threading.Thread(target=call, args=(i,)) for i in range(1, 12)]
        for t in threads[1:]:
            t.start()
        wait_for(lambda: queue_depth(test_client) == 11)  # the other eleven wait in the queue
        held.release.set()
        for t in threads:
            t.join()
    assert results == [200] * 12
    assert held.batches == [1, 11]  # they run together as one micro-batch


def test_full_queue_answers_503_and_slow_requests_504(trained_run):
    held = HeldPredictor(tunelab.load(trained_run.best_dir))
    app = create_app(ServeConfig(checkpoint=str(trained_run.best_dir), max_batch_size=1, max_queue=1, max_wait_ms=0,
                                 timeout_s=0.3), predictor=held)
    with TestClient(app) as test_client:
        codes = {}

        def call(name):
            codes[name] = test_client.post("/v1/classify", json={"text": "great"}).status_code

        first = threading.Thread(target=call, args=("running",))
        first.start()
        held.started.wait(timeout=30)  # held in the forward pass: it will time out (504)
        second = threading.Thread(target=call, args=("queued",))
        second.start()
        wait_for(lambda: queue_depth(test_client) == 1)  # the queue (size 1) is full
        call("refused")
        first.join()
        second.join()
        held.release.set()
        metrics = test_client.get("/metrics").text
    assert codes == {"running": 504, "queued": 504, "refused": 503}
    assert 'status="503"} 1.0' in metrics and 'status="504"} 2.0' in metrics


def test_micro_batcher_gathers_until_full_or_timeout():
    sizes = []

    def predict(items):
        sizes.append(len(items))
        return [t.upper() for t in items]

    async def scenario():
        batcher = MicroBatcher(predict, max_batch_size=4, max_wait_ms=200, max_queue=16)
        batcher.start()
        # Six one-row jobs at once: a full batch of four, then the two left.
        outs = await asyncio.gather(*(batcher.submit([f"t{i}"]) for i in range(6)))
        # A job alone waits up to max_wait for company: one sent 20 ms later joins its batch.
        async def later():
            await asyncio.sleep(0.02)
            return await batcher.submit(["late"])

        together = await asyncio.gather(batcher.submit(["early"]), later())
        # One that comes after max_wait has passed starts a batch of its own.
        alone = [await batcher.submit(["a"])]
        await asyncio.sleep(0.3)
        alone.append(await batcher.submit(["b"]))
        full = MicroBatcher(predict, max_batch_size=4, max_wait_ms=30, max_queue=2)
        with pytest.raises(QueueFull):
            await asyncio.gather(*(full.submit([f"q{i}"]) for i in range(5)))
        await batcher.stop()
        return outs, together, alone

    outs, together, alone = asyncio.run(scenario())
    assert outs == [[f"T{i}"] for i in range(6)] and together == [["EARLY"], ["LATE"]] and alone == [["A"], ["B"]]
    assert sizes == [4, 2, 2, 1, 1]


def test_wait_until_healthy_stops_when_the_server_exits_or_never_answers():
    import socket
    import subprocess
    import sys

    from tunelab.errors import TunelabError
    from tunelab.serve import wait_until_healthy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{s.getsockname()[1]}"  # nothing listens there once the socket closes
    exited = subprocess.Popen([sys.executable, "-c", "raise SystemExit(3)"])
    exited.wait()
    with pytest.raises(TunelabError, match=f"^tunelab serve exited with code 3 before answering {url}/healthz$"):
        wait_until_healthy(exited, url)
    silent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        with pytest.raises(TunelabError, match=f"^tunelab serve did not answer {url}/healthz within 0.5 s$"):
            wait_until_healthy(silent, url, timeout_s=0.5)
    finally:
        silent.kill()
        silent.wait()


def test_serve_command_binds_loopback_and_passes_the_batching_options(trained_run, capsys, monkeypatch):
    from conftest import run_cli

    seen = {}
    monkeypatch.setattr("tunelab.serve.serve", lambda config: seen.setdefault("config", config))
    code, _, err = run_cli(["serve", trained_run.best_dir, "--max-wait-ms", "12", "--max-batch-size", "3"], capsys)
    assert code == 0, err
    config = seen["config"]
    assert config.host == "127.0.0.1" and config.port == 8000
    assert config.max_wait_ms == 12.0 and config.max_batch_size == 3
    with TestClient(create_app(config)) as client:
        limits = client.get("/v1/models").json()["limits"]
    assert limits["max_wait_ms"] == 12.0 and limits["max_batch_size"] == 3
