"""Load generator for `tunelab serve`: batched serving against batch size 1, on loopback only.

    python bench/serve_load.py --checkpoint runs/bench-sst2-8k/best --texts ../shared/data/sst2/dev.tsv

For each mode a server is started on 127.0.0.1, warmed up, then sent a fixed
number of requests (one text each) by N concurrent clients, bounded in count
and in time. Reports requests/s, p50/p95/p99 latency, the mean batch size the
server ran, and that every request sent was answered (sent = received, no errors).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import read_tsv, write_result  # noqa: E402
from tables import print_table  # noqa: E402
from tunelab.errors import TunelabError  # noqa: E402
from tunelab.serve import wait_until_healthy  # noqa: E402

HOST = "127.0.0.1"  # loopback only


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def start(checkpoint: str, port: int, batch: int, wait_ms: float, backend: str) -> subprocess.Popen:
    command = [sys.executable, "-m", "tunelab.cli", "serve", checkpoint, "--host", HOST, "--port", str(port),
               "--max-batch-size", str(batch), "--max-wait-ms", str(wait_ms), "--backend", backend,
               "--max-queue", "4096"]
    process = subprocess.Popen(command, env={**os.environ, "HF_HUB_OFFLINE": "1"}, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    try:
        wait_until_healthy(process, f"http://{HOST}:{port}", timeout_s=120)
    except TunelabError as exc:
        process.kill()
        raise SystemExit(str(exc)) from None
    return process


async def post(reader, writer, text: str) -> tuple[bytes, bytes]:
    """One POST /v1/classify of `text` on an open keep-alive connection, written and read by hand (the client
    shares the machine's cores with the server, so it stays lean, as wrk would): the status code and body."""
    body = json.dumps({"text": text}).encode()
    writer.write(b"POST /v1/classify HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (HOST.encode(), len(body), body))
    await writer.drain()
    status = (await reader.readline()).split()
    length = 0
    while (line := await reader.readline()) not in (b"\r\n", b""):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return (status[1] if len(status) > 1 else b""), await reader.readexactly(length)


async def drive(port: int, texts: list[str], clients: int, requests: int, max_seconds: float) -> dict:
    """N keep-alive connections, each sending one request at a time, over raw asyncio streams.

    The server and this client share the machine's two cores, so the client is kept lean (an
    HTTP/1.1 request written by hand, the response read by Content-Length), as wrk would be.
    """
    latencies: list[float] = []
    counts = {"sent": 0, "received": 0, "errors": 0}
    next_index = 0
    deadline = time.monotonic() + max_seconds

    async def client() -> None:
        nonlocal next_index
        reader, writer = await asyncio.open_connection(HOST, port)
        try:
            while next_index < requests and time.monotonic() < deadline:
                text = texts[next_index % len(texts)]
                next_index += 1
                counts["sent"] += 1
                started = time.perf_counter()
                status, answer = await post(reader, writer, text)
                if status == b"200" and answer.count(b'"label"') == 1:
                    counts["received"] += 1
                    latencies.append(time.perf_counter() - started)
                else:
                    counts["errors"] += 1
        except (OSError, asyncio.IncompleteReadError):
            counts["errors"] += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(clients)))
    elapsed = time.perf_counter() - started
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return {**counts, "seconds": elapsed, "requests_per_s": counts["received"] / elapsed,
            "p50_ms": pct(0.50), "p95_ms": pct(0.95), "p99_ms": pct(0.99),
            "mean_ms": statistics.fmean(latencies) * 1000 if latencies else float("nan")}


def batch_stats(port: int) -> tuple[float, float]:
    text = httpx.get(f"http://{HOST}:{port}/metrics").text
    total = float(re.search(r"^tunelab_batch_size_sum ([\d.e+]+)$", text, re.M).group(1))
    count = float(re.search(r"^tunelab_batch_size_count ([\d.e+]+)$", text, re.M).group(1))
    return total, count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True)
    parser.add_argument("--texts", required=True, help="TSV with a text column (GLUE style)")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--requests", type=int, default=1500)
    parser.add_argument("--max-seconds", type=float, default=120)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-wait-ms", type=float, default=5)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--out", help="the result file (default bench/results/serve.json)")
    args = parser.parse_args()
    (texts,) = read_tsv(args.texts, args.text_column)

    rows = []
    for name, batch, wait in (("batched", args.batch_size, args.max_wait_ms), ("batch size 1", 1, 0)):
        port = free_port()
        server = start(args.checkpoint, port, batch, wait, args.backend)
        try:
            asyncio.run(drive(port, texts, 4, 40, 30))  # warm-up
            before = batch_stats(port)
            result = asyncio.run(drive(port, texts, args.clients, args.requests, args.max_seconds))
            after = batch_stats(port)
        finally:
            server.terminate()
            server.wait(timeout=30)
        result["mode"] = f"{name} (max batch {batch}, wait {wait:g} ms)"
        result["mean_batch"] = (after[0] - before[0]) / max(after[1] - before[1], 1)
        rows.append(result)
    rows[0]["speedup"], rows[1]["speedup"] = rows[0]["requests_per_s"] / rows[1]["requests_per_s"], 1.0
    print(f"{args.clients} concurrent clients, {args.requests} requests per mode, one text each, {args.backend}")
    print_table("serve", rows)
    print("results:", write_result("serve", rows, args.out, clients=args.clients, backend=args.backend))

if __name__ == "__main__":
    main()
