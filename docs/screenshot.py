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

from playwright.sync_api import sync_playwright

from tunelab.errors import TunelabError
from tunelab.serve import wait_until_healthy


def main(checkpoint: str, out: str = "docs/playground.png") -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "tunelab.cli", "serve", checkpoint, "--port", str(port)],
                              env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        try:
            wait_until_healthy(server, f"http://127.0.0.1:{port}")
        except TunelabError as exc:
            raise SystemExit(f"{exc}; see its output above") from None
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
