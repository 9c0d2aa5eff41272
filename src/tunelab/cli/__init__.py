"""The `tunelab` command: one thin typer command per module, over library functions."""

from __future__ import annotations

import logging
import os
import sys

import typer

from tunelab.errors import Stopped, TunelabError

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Fine-tune, evaluate, predict with, serve and inspect Hugging Face transformers for every head: "
         "classification, token classification, question answering, multiple choice, language models.",
)


@app.callback()
def _options(verbose: bool = typer.Option(False, "--verbose", "-v", help="Debug logging.")) -> None:
    """tunelab: fine-tune, evaluate, predict with and inspect Hugging Face transformers."""


def _register() -> None:
    from tunelab.cli import (attention, evaluate, export, generate, predict, push, runs, serve, sweep,  # noqa: F401
                             tokenize, train)  # each adds its command


def dataclass_parameters(kind, skip: tuple[str, ...] = ()) -> list:
    """One command-line option per field of the dataclass `kind` (declared with tunelab.options.option):
    --field-name (and its extra flags), its type, its default and its help; booleans get --name/--no-name."""
    import dataclasses
    import inspect
    import typing

    types = typing.get_type_hints(kind)
    out = []
    for f in dataclasses.fields(kind):
        if not f.metadata.get("cli", True) or f.name in skip:
            continue
        flag = f.metadata.get("flag") or "--" + f.name.replace("_", "-")
        flags = (f"{flag}/--no-{flag[2:]}",) if types[f.name] is bool else (flag, *f.metadata.get("flags", ()))
        out.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, annotation=types[f.name],
                                     default=typer.Option(f.default, *flags, help=f.metadata.get("help"))))
    return out


def option_parameters(command: str, default_help: str = "") -> list:
    """The options the tasks declare for `command` (evaluate, predict): each --flag with its type and help,
    None (not given) by default; `default_help` says what not giving it means."""
    import inspect
    import typing

    from tunelab.tasks import task_options

    out = []
    for item in task_options(command):
        kind = item.type if item.default is None or item.type is bool else typing.Optional[item.type]
        helped = item.help + (f" (default: {default_help})" if default_help and item.stored else "")
        if item.type is bool:
            kind, flags = typing.Optional[bool], (f"{item.flag}/--no-{item.flag[2:]}",)
        else:
            flags = (item.flag, *item.flags)
        out.append(inspect.Parameter(item.name, inspect.Parameter.KEYWORD_ONLY, annotation=kind,
                                     default=typer.Option(None, *flags, help=helped)))
    return out


def process_rank() -> int:
    """This process's rank under torchrun, accelerate launch or MPI (0 when alone)."""
    for name in ("RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "MV2_COMM_WORLD_RANK"):
        if os.environ.get(name, "").isdigit():
            return int(os.environ[name])
    return 0


def is_main_process() -> bool:
    return process_rank() == 0


def setup_logging(verbose: bool = False) -> None:
    # Under a multi-process launcher only the main process talks; the others report problems only.
    level = logging.DEBUG if verbose else logging.INFO if is_main_process() else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(levelname)s: %(message)s" if not verbose else "%(asctime)s %(name)s %(levelname)s: %(message)s",
        stream=sys.stderr,
    )
    # Keep the libraries' own chatter out of a user's terminal.
    for noisy in ("transformers", "datasets", "accelerate", "httpx", "huggingface_hub", "urllib3", "filelock"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        import transformers
        import datasets

        transformers.logging.set_verbosity_error()
        transformers.utils.logging.disable_progress_bar()  # "Loading weights" / "Writing model shards"
        datasets.logging.set_verbosity_error()
        datasets.disable_progress_bars()
    except ImportError:
        pass


def main(argv: list[str] | None = None) -> int:
    """Entry point: run a command; a TunelabError becomes one line on stderr and exit code 1."""
    _register()
    args = sys.argv[1:] if argv is None else argv
    setup_logging(verbose="--verbose" in args or "-v" in args)
    signals = record_signals()
    try:
        code = app(args=argv, standalone_mode=False)
        if isinstance(code, int) and code:
            # typer turns a KeyboardInterrupt inside a command (Ctrl-C, or SIGTERM through record_signals)
            # into exit code 130, returned rather than raised: say so, and give the signal's own code.
            return _interrupted(signals)
    except TunelabError as exc:
        typer.echo(f"error: {exc}", err=True)
        return 1
    except Stopped as exc:
        typer.echo(str(exc), err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        return _interrupted(signals)
    except Exception as exc:  # click's usage errors (typer >= 0.29 ships its own copy of click)
        clicks = _click_modules()
        if isinstance(exc, tuple(m.exceptions.ClickException for m in clicks)):
            exc.show()
            return exc.exit_code
        aborts = tuple(a for m in clicks for a in (getattr(m.exceptions, "Abort", None), getattr(m, "Abort", None)) if a)
        if isinstance(exc, aborts):
            return 1
        raise
    return 0


def record_signals() -> dict:
    """Ctrl-C and SIGTERM (kill, docker stop, a scheduler's preemption) stop a command through the same
    clean-up, a KeyboardInterrupt, instead of ending the process at once; the dict it returns holds the
    signal that came. (Training sets its own handlers while it runs: it stops after the step under way.)"""
    import signal
    import threading

    seen: dict = {}
    if threading.current_thread() is threading.main_thread():
        def handle(number, frame):
            seen["signal"] = number
            raise KeyboardInterrupt

        for number in (signal.SIGINT, signal.SIGTERM):
            signal.signal(number, handle)
    return seen


def _interrupted(signals: dict) -> int:
    """One line for a command a signal stopped (nothing was written: output comes at the end), and the
    code a shell expects of it: 128 + the signal's number."""
    import signal

    number = signals.get("signal", signal.SIGINT)  # a second Ctrl-C in training comes through its own handler
    typer.echo(f"interrupted ({signal.Signals(number).name}) before the command finished", err=True)
    return 128 + int(number)


def _click_modules() -> list:
    """The click package typer raises usage errors from: its vendored typer._click, or click itself."""
    import importlib

    found = []
    for name in ("typer._click", "click"):
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            pass
    return found


def run() -> None:
    sys.exit(main())
