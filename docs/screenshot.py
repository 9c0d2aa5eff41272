"""Take docs/playground.png: serve a checkpoint, drive the playground in headless Chromium.

    python docs/screenshot.py runs/bench-sst2-8k/best
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
from playwright.sync_api import sync_playwright


def main(checkpoint: str, out: str = "docs/playground.png") -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "tunelab.cli", "serve", checkpoint, "--port", str(port)],
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.monotonic() + 60
        while True:
            if server.poll() is not None:
                raise SystemExit(f"tunelab serve exited with code {server.returncode}; see its output above")
            if time.monotonic() > deadline:
                raise SystemExit("tunelab serve did not answer /healthz within 60 s")
            try:
                if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", headless=True, args=[
                "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"])
            page = browser.new_page(viewport={"width": 1000, "height": 1100})
            page.goto(f"http://127.0.0.1:{port}/")
            page.wait_for_function("document.getElementById('model-info').textContent.includes('labels')")
            page.fill("#text", "A gripping, beautifully acted film that stays with you.")
            page.click("#classify")
            page.wait_for_function("document.getElementById('label').textContent !== '–'")
            page.select_option("#layer", "0")
            page.click("#show-attention")
            page.wait_for_function("document.getElementById('heatmap').width > 100")
            page.select_option("#layer", "4")
            page.click("#show-attention")
            time.sleep(1)
            page.screenshot(path=out, full_page=True)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {Path(out)}")


if __name__ == "__main__":
    main(*sys.argv[1:])
