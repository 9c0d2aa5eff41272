"""The server as users run it: a real uvicorn process, a browser on the playground, a kill under load."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from conftest import free_port

from tunelab.errors import TunelabError
from tunelab.serve import wait_until_healthy

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def start_server(checkpoint: Path, port: int, *extra: str) -> subprocess.Popen:
    process = subprocess.Popen(
        [sys.executable, "-m", "tunelab.cli", "serve", str(checkpoint), "--port", str(port), *extra],
        env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        wait_until_healthy(process, f"http://127.0.0.1:{port}")
    except TunelabError as exc:
        process.kill()
        raise AssertionError(f"{exc}: {process.stdout.read().decode()[-2000:]}") from None
    return process


def launch_chromium(playwright):
    """Debian's chromium, headless, with the flags that keep it off a network this machine does not have."""
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=[
        "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync"])


@contextmanager
def playground(checkpoint: Path, ready: str, height: int = 700):
    """A headless Chromium page on the playground of a server started on `checkpoint`, once the JavaScript
    condition `ready` holds; the browser and the server stop afterwards."""
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.skip("needs Debian's chromium (make test installs it)")
    port = free_port()
    server = start_server(checkpoint, port)
    try:
        with sync_playwright() as p:
            browser = launch_chromium(p)
            page = browser.new_page(viewport={"width": 1000, "height": height})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function(ready)
            yield page
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=10)


def digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_killed_during_the_onnx_export_leaves_no_export_and_a_restart_completes_it(trained_run, tmp_path):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(trained_run.best_dir, checkpoint)
    before = digest(checkpoint)
    # A server started with --backend onnx writes the export on its first start: kill it mid-write.
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "tunelab.cli", "serve", str(checkpoint), "--port", str(port),
                                "--backend", "onnx"], env={**os.environ, "HF_HUB_OFFLINE": "1"},
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not list(checkpoint.glob(".onnx.tmp.*/model.onnx")) and time.monotonic() < deadline:
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert list(checkpoint.glob(".onnx.tmp.*")), "the export should have been under way"
    assert not (checkpoint / "onnx").exists()  # no half export where a reader looks
    assert digest(checkpoint) == {**before, **{k: v for k, v in digest(checkpoint).items() if ".onnx.tmp." in k}}
    # The checkpoint still loads as it was, and a restart exports it whole.
    restarted = start_server(checkpoint, port, "--backend", "onnx")
    try:
        response = httpx.post(f"http://127.0.0.1:{port}/v1/classify", json={"text": "great superb fun"}, timeout=10)
        assert response.status_code == 200 and response.json()["predictions"][0]["label"] == "positive"
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["classifier"]["backend"] == "onnx"
    finally:
        restarted.terminate()
        restarted.wait(timeout=10)
    assert not list(checkpoint.glob(".onnx.tmp.*"))  # the killed export's leftovers are gone
    assert {p.name for p in (checkpoint / "onnx").iterdir()} == {"model.onnx", "model.int8.onnx"}
    assert {k: v for k, v in digest(checkpoint).items() if not k.startswith("onnx/")} == before


def test_killed_under_load_restarts_healthy_and_nothing_is_corrupt(trained_run, tmp_path):
    checkpoint = tmp_path / "ckpt"
    shutil.copytree(trained_run.best_dir, checkpoint)
    port = free_port()
    server = start_server(checkpoint, port)
    before = digest(checkpoint)
    sent, answered, stop = 0, 0, threading.Event()

    def load():
        nonlocal sent, answered
        with httpx.Client(timeout=5) as client:
            while not stop.is_set():
                sent += 1
                try:
                    client.post(f"http://127.0.0.1:{port}/v1/classify", json={"texts": ["great fun", "awful"]})
                    answered += 1
                except httpx.HTTPError:
                    pass

    workers = [threading.Thread(target=load) for _ in range(4)]
    for w in workers:
        w.start()
    time.sleep(1.5)
    server.send_signal(signal.SIGKILL)
    server.wait(timeout=10)
    stop.set()
    for w in workers:
        w.join(timeout=10)
    assert answered > 0
    restarted = start_server(checkpoint, port)
    try:
        response = httpx.post(f"http://127.0.0.1:{port}/v1/classify", json={"text": "great superb fun"}, timeout=10)
        assert response.status_code == 200 and response.json()["predictions"][0]["label"] == "positive"
    finally:
        restarted.terminate()
        restarted.wait(timeout=10)
    assert digest(checkpoint) == before


def test_sigterm_answers_every_request_received_refuses_new_ones_and_exits_0(trained_run):
    import tunelab

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    # A lone request waits --max-wait-ms for company in the batcher: a 3 s window in which it is in progress.
    server = start_server(trained_run.best_dir, port, "--max-wait-ms", "3000", "--max-batch-size", "64")
    answer = {}
    early = threading.Thread(target=lambda: answer.update(
        response=httpx.post(f"{url}/v1/classify", json={"text": "great superb fun"}, timeout=30)))
    early.start()
    in_progress = "tunelab_requests_in_progress 1.0"
    deadline = time.monotonic() + 10
    while in_progress not in httpx.get(f"{url}/metrics").text:
        assert time.monotonic() < deadline, "the request never reached the server"
        time.sleep(0.05)
    assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
    server.send_signal(signal.SIGTERM)
    time.sleep(0.3)
    health = httpx.get(f"{url}/healthz")
    assert (health.status_code, health.json()) == (503, {"status": "draining"})
    late = httpx.post(f"{url}/v1/classify", json={"text": "awful"})
    assert (late.status_code, late.json()) == (503, {"error": "the server is shutting down: send the request "
                                                              "again, to another server or after a restart"})
    early.join(timeout=30)
    assert server.wait(timeout=30) == 0
    expected = tunelab.load(trained_run.best_dir).predict(["great superb fun"])[0]
    assert answer["response"].status_code == 200
    assert answer["response"].json()["predictions"][0]["label"] == expected.label
    output = server.stdout.read().decode()
    assert ("WARNING: SIGTERM: draining, 1 request(s) in progress; new requests get 503 and /healthz says "
            "draining; a second signal stops at once") in output
    assert "WARNING: drained: every request received was answered; exiting" in output


def test_playground_in_headless_chromium(trained_run, tmp_path):
    with playground(trained_run.best_dir, "document.getElementById('model-info').textContent.includes('labels')",
                    height=900) as page:
        page.fill("#text", "the movie was great and superb fun")
        page.click("#classify")
        page.wait_for_function("document.getElementById('label').textContent !== '–'")
        assert page.inner_text("#label") == "positive"
        assert page.locator(".bar-row").count() == 2
        page.click("#show-attention")
        page.wait_for_function("document.getElementById('heatmap').width > 100")
        page.screenshot(path=str(tmp_path / "playground.png"), full_page=True)
    assert (tmp_path / "playground.png").stat().st_size > 10_000


def test_playground_highlights_entities_of_a_token_classification_checkpoint(ner_run, tmp_path):
    ready = "document.getElementById('model-info').textContent.includes('token-classification')"
    with playground(ner_run.best_dir, ready) as page:
        page.fill("#text", "Carol visited Berlin with Dave.")
        page.click("#classify")
        page.wait_for_function("document.querySelectorAll('mark.entity').length > 0")
        marks = page.eval_on_selector_all(
            "mark.entity", "els => els.map(e => [e.firstChild.textContent, e.querySelector('small').textContent])")
        assert marks == [["Carol", "PER"], ["Berlin", "LOC"], ["Dave", "PER"]]
        assert page.inner_text("#entities").startswith("Carol")
        page.screenshot(path=str(tmp_path / "ner.png"))
