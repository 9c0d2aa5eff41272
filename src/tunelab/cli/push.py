"""`tunelab push`: upload a checkpoint folder and its model card to the Hugging Face Hub."""

from __future__ import annotations

from typing import Optional

import typer

from tunelab.cli import app


@app.command()
def push(
    checkpoint: str = typer.Argument(..., help="A run's best/ or last/ folder (or the run folder: its best/)."),
    repo: str = typer.Option(..., help="The Hub repository, user/name; created when missing."),
    private: bool = typer.Option(False, help="Create the repository private."),
    revision: Optional[str] = typer.Option(None, help="Upload to this branch (created when missing)."),
    dry_run: bool = typer.Option(False, help="List what would be uploaded; upload nothing."),
) -> None:
    """Upload CHECKPOINT (weights, config, tokenizer, model card) to the Hub; the token comes from
    `hf auth login` or HF_TOKEN. Training states are never uploaded."""
    from tunelab.hub import push as push_checkpoint

    result = push_checkpoint(checkpoint, repo, private=private, revision=revision, dry_run=dry_run)
    if dry_run:
        typer.echo(f"would upload {len(result.files)} files from {result.folder} to {repo}:")
        for name in result.files:
            typer.echo(f"  {name}")
        return
    typer.echo(f"pushed {len(result.files)} files to {result.url}")
