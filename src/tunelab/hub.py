"""Pushing a checkpoint folder, with its model card, to the Hugging Face Hub."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import TunelabError

logger = logging.getLogger(__name__)

# Never uploaded even when found inside a checkpoint folder: what a training state holds.
TRAINING_STATE_FILES = ("optimizer.pt", "scheduler.pt", "trainer_state.json", "rng_state.pth")


@dataclass
class PushResult:
    folder: Path
    files: list[str]  # relative to the folder, in upload order
    url: str | None = None  # None for a dry run


def checkpoint_files(folder: Path) -> list[str]:
    """The files a push uploads: everything in the checkpoint folder except hidden files (half-written
    leftovers) and training-state files."""
    files = []
    for path in sorted(folder.rglob("*")):
        relative = path.relative_to(folder)
        if not path.is_file() or any(part.startswith(".") for part in relative.parts):
            continue
        if path.name in TRAINING_STATE_FILES or path.name.startswith("rng-"):
            continue
        files.append(relative.as_posix())
    return files


def push(checkpoint: str | Path, repo: str, private: bool = False, revision: str | None = None,
         dry_run: bool = False) -> PushResult:
    """Upload a checkpoint folder (a run folder means its best/) to `repo` on the Hub, in one commit."""
    from tunelab.modeling import check_checkpoint

    folder = check_checkpoint(checkpoint)
    if repo.count("/") != 1 or not all(repo.split("/")):
        raise TunelabError(f"--repo {repo}: expected a Hub repository as user/name (or organization/name)")
    files = checkpoint_files(folder)
    if "README.md" not in files:
        logger.warning("%s has no model card (README.md): it was saved before tunelab wrote cards", folder)
    if dry_run:
        return PushResult(folder, files)
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        raise TunelabError("cannot push: HF_HUB_OFFLINE is set, so no network call is made; unset it to upload "
                           "(or use --dry-run to list what would be uploaded)")
    from huggingface_hub import CommitOperationAdd, HfApi, get_token

    token = get_token()
    if not token:
        raise TunelabError("cannot push: no Hugging Face token; log in with `hf auth login` or set HF_TOKEN")
    api = HfApi(token=token)
    try:
        url = api.create_repo(repo, private=private, exist_ok=True, repo_type="model")
        if revision:
            api.create_branch(repo, branch=revision, exist_ok=True)
        operations = [CommitOperationAdd(path_in_repo=f, path_or_fileobj=str(folder / f)) for f in files]
        api.create_commit(repo, operations=operations, revision=revision,
                          commit_message=f"Upload {folder.name} with tunelab")
    except Exception as exc:  # noqa: BLE001 - network, auth and Hub refusals all become one line
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TunelabError(f"could not push {folder} to {repo}: {first}") from None
    return PushResult(folder, files, f"{url}" + (f"/tree/{revision}" if revision else ""))
