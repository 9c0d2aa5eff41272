"""`tunelab serve` stopped under load: 32 clients sending continuously, SIGTERM at a random moment; every request
sent before the signal must be answered, and the server must exit 0.

    python -m bench serve-drain --rounds 5

Each round starts a server on 127.0.0.1 (the bundled MiniLM with a seeded two-label head, saved as a checkpoint
here, unless --checkpoint names one), warms it up, then N clients each send one request after another (one
SST-2 dev sentence each, keep-alive connections, raw HTTP like `bench serve`) and keep sending after the signal
as real clients would, until the server is gone. SIGTERM comes at a seeded random moment (uniform over
--signal-between seconds after the load starts). Each request is classified by when it was written (before or
after the signal) and how it ended: answered (200 with a label), refused (503 while draining) or lost (the
connection closed or reset without an answer).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import signal
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import read_tsv, write_result  # noqa: E402
from serve_load import HOST, free_port, post, start  # noqa: E402
from tables import print_table  # noqa: E402


def seeded_checkpoint(folder: Path) -> str:
    """The bundled MiniLM with a seeded, untrained two-label head: serving cost is all that matters here."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from tunelab.modeling import resolve_model

    torch.manual_seed(0)
    name = resolve_model("minilm")
    model = AutoModelForSequenceClassification.from_pretrained(
        name, num_labels=2, id2label={0: "negative", 1: "positive"}, label2id={"negative": 0, "positive": 1})
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(name).save_pretrained(folder)
    return str(folder)


async def request(reader, writer, text: str) -> str:
    """One request on an open connection: 'answered', 'refused' or 'lost'."""
    try:
        status, answer = await post(reader, writer, text)
    except (OSError, asyncio.IncompleteReadError):
        return "lost"
    if status == b"200" and answer.count(b'"label"') == 1:
        return "answered"
    return "refused" if status == b"503" else "lost"


async def load(port: int, texts: list[str], clients: int, signal_at: float, server) -> dict:
    """Clients sending until the server is gone; the signal sent `signal_at` seconds in."""
    counts = {f"{when}_{how}": 0 for when in ("before", "after") for how in ("answered", "refused", "lost")}
    counts["after_not_connected"] = 0
    signalled: list[float] = []
    cursor = iter(range(10**9))

    async def client() -> None:
        while server.poll() is None:
            try:
                reader, writer = await asyncio.open_connection(HOST, port)
            except OSError:
                counts["after_not_connected" if signalled else "before_lost"] += 1
                return
            try:
                while server.poll() is None:
                    written = time.monotonic()
                    how = await request(reader, writer, texts[next(cursor) % len(texts)])
                    counts[f"{'after' if signalled and written >= signalled[0] else 'before'}_{how}"] += 1
                    if how != "answered":
                        break  # the server closed this connection: open another while it runs
            finally:
                writer.close()

    async def stop() -> None:
        await asyncio.sleep(signal_at)
        signalled.append(time.monotonic())
        server.send_signal(signal.SIGTERM)
        while server.poll() is None:
            await asyncio.sleep(0.01)
        counts["drain_s"] = time.monotonic() - signalled[0]

    await asyncio.gather(stop(), *(client() for _ in range(clients)))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a classification checkpoint (default: MiniLM with a seeded head)")
    parser.add_argument("--texts", default="../shared/data/sst2/dev.tsv", help="TSV with a sentence column")
    parser.add_argument("--text-column", default="text")
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--signal-between", type=float, nargs=2, default=(2.0, 8.0), metavar=("FROM", "TO"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", help="the result file (default bench/results/serve-drain.json)")
    args = parser.parse_args()
    (texts,) = read_tsv(args.texts, args.text_column)
    checkpoint = args.checkpoint or seeded_checkpoint(Path(tempfile.mkdtemp()) / "checkpoint")
    moments = random.Random(args.seed)
    rows = []
    for number in range(1, args.rounds + 1):
        port = free_port()
        server = start(checkpoint, port, 32, 5, "torch")
        signal_at = moments.uniform(*args.signal_between)
        counts = asyncio.run(load(port, texts, args.clients, signal_at, server))
        counts.update(round=number, signal_s=signal_at, exit_code=server.wait(timeout=60))
        counts["before_sent"] = counts["before_answered"] + counts["before_refused"] + counts["before_lost"]
        rows.append(counts)
    print(f"{args.clients} clients sending continuously, SIGTERM at a seeded random moment, {args.rounds} rounds")
    print_table("serve-drain", rows)
    print("results:", write_result("serve-drain", rows, args.out, clients=args.clients))


if __name__ == "__main__":
    main()
