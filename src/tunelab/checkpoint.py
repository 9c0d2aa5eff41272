"""Run folders and checkpoints, written so that a crash never leaves a half-written one."""

from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path

from tunelab.errors import TunelabError

logger = logging.getLogger(__name__)


FAILED_WRITES = {errno.ENOSPC: "no space left on the device", errno.EDQUOT: "the disk quota is used up",
                 errno.EACCES: "permission denied", errno.EPERM: "permission denied",
                 errno.EROFS: "the filesystem is read-only"}


def write_failure(exc: BaseException) -> str | None:
    """What a failed write ran into, when it is the disk's fault (full, read-only, not ours); else None.
    safetensors reports a full disk in its own error type, with the OS error's number in the text."""
    if isinstance(exc, OSError) and exc.errno in FAILED_WRITES:
        return FAILED_WRITES[exc.errno]
    text = str(exc)
    if "database or disk is full" in text:  # SQLite's words (a sweep's study), through SQLAlchemy
        return FAILED_WRITES[errno.ENOSPC]
    return next((reason for number, reason in FAILED_WRITES.items() if f"(os error {number})" in text), None)


def free_bytes(path: Path) -> int:
    """Free bytes on the filesystem that holds `path` (or its nearest existing parent)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return shutil.disk_usage(path).free


def megabytes(count: float) -> str:
    return f"{count / 2**30:.1f} GB" if count >= 2**30 else f"{count / 2**20:.0f} MB"


@contextmanager
def writing(folder: Path, needed: int, kept: str):
    """Turn a write that fails because of the disk into one line: the folder, what the write needed and what
    is free, and what was kept (`kept`); the writer has removed its temporary files by then."""
    try:
        yield
    except Exception as exc:  # noqa: BLE001 - only the disk's failures are translated, the rest go on
        reason = write_failure(exc)
        if reason is None:
            raise
        raise TunelabError(f"could not write {folder}: {reason} (it needs about {megabytes(needed)}, "
                           f"{megabytes(free_bytes(folder))} free); {kept}") from None


def prepare_run_dir(path: Path, overwrite: bool) -> None:
    """Refuse to touch an existing, non-empty run folder unless overwrite was asked for."""
    if path.exists() and not path.is_dir():
        raise TunelabError(f"--output {path} is a file; pass a folder path for the run")
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        raise TunelabError(
            f"run folder {path} already exists and is not empty; pass --overwrite to replace it, "
            "or choose another --output"
        )


def clear_run_dir(path: Path) -> None:
    """Empty the run folder (only called after every check passed and --overwrite was given)."""
    if path.is_dir():
        shutil.rmtree(path)
    path.mkdir(parents=True, exist_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write to a temporary file beside the target, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def append_jsonl(path: Path, record: dict) -> None:
    """Append one line; a line is written whole with one write call."""
    with open(path, "a", encoding="utf-8") as handle:
        handle.write(json.dumps(record) + "\n")
        handle.flush()


def save_checkpoint(model, tokenizer, path: Path, extra: dict | None = None, card: str | None = None) -> Path:
    """Save a Hugging Face checkpoint (safetensors, config with id2label, tokenizer) atomically.

    Everything is written to a hidden sibling folder first and swapped in with
    renames, so `path` is always either the old checkpoint or the new one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.tmp.*"):  # left by a process killed while writing
        shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.tmp."))
    try:
        from tunelab.lora import is_lora, merged, save_adapter

        if is_lora(model):  # a plain checkpoint with the adapters merged in, and the adapter beside it
            merged(model).save_pretrained(tmp, safe_serialization=True)
            save_adapter(model, tmp)
        else:
            model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        if extra:
            (tmp / "tunelab.json").write_text(json.dumps(extra, indent=2) + "\n", encoding="utf-8")
        if card:
            (tmp / "README.md").write_text(card, encoding="utf-8")
        old = None
        if path.exists():
            old = path.parent / f".{path.name}.old"
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return path


def attach_curves(checkpoint: Path, images: list[Path], card: str) -> None:
    """Copy `images` into a saved checkpoint and replace its card with `card` (which shows them); each file
    is written beside its target and renamed into place."""
    for image in images:
        tmp = checkpoint / f".{image.name}.tmp"
        shutil.copyfile(image, tmp)
        os.replace(tmp, checkpoint / image.name)
    atomic_write_text(checkpoint / "README.md", card)


# ---------------------------------------------------------------- training state


def latest_state(folder: Path) -> Path | None:
    """The newest complete training state (step-NNNNNNNN); half-written ones are hidden .tmp folders."""
    if not folder.is_dir():
        return None
    states = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step-")
                    and (p / "trainer_state.json").exists())
    return states[-1] if states else None


def prune_states(folder: Path, keep: int) -> None:
    """Keep the newest `keep` training states."""
    states = sorted(p for p in folder.iterdir() if p.is_dir() and p.name.startswith("step-"))
    for old in states[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def save_rng(path: Path) -> None:
    """Python, NumPy and torch random states, as plain data (loadable with weights_only=True)."""
    import random

    import numpy as np
    import torch

    kind, keys, position, has_gauss, cached = np.random.get_state()
    state = {"python": random.getstate(), "numpy": [kind, keys.tolist(), position, has_gauss, cached],
             "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(state, path)


def load_rng(path: Path) -> None:
    import random

    import numpy as np
    import torch

    state = torch.load(path, weights_only=True)
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
