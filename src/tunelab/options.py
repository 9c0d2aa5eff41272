"""How an option is declared: once, with its default, its help, and the commands that take it.

Training options are `TrainConfig` fields declared with `option()`; a task declares its own options (its
columns, its switches, its prediction decisions) as `Option` objects. Every command line (`train`,
`evaluate`, `predict`, `serve`, `sweep`), config files and the checkpoint's stored settings are built from
these declarations, so an option added in one place appears everywhere it applies.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

# Where a task option's value is kept with a checkpoint: "columns" for how data is read (evaluate reads new
# data the same way), "info" for what training used (a switch, a limit the predictions repeat), None when
# it is only given to a command.
STORED = ("columns", "info", None)


def option(default: Any, help: str, *, flags: tuple[str, ...] = (), sweep: str | None = None,
           on_resume: bool = False, cli: bool = True, flag: str | None = None):
    """A TrainConfig (or ServeConfig) field with what the command line needs: its help, its flag when not
    --field-name, extra flags (a short form), the plural flag `tunelab sweep` takes for it, and whether
    --resume may change it."""
    return dataclasses.field(default=default, metadata={"help": help, "flags": flags, "sweep": sweep,
                                                        "on_resume": on_resume, "cli": cli, "flag": flag})


@dataclass(frozen=True)
class Option:
    """One option a task reads. `commands` are the commands that take it: "train" makes it a TrainConfig
    field; "evaluate", "predict" and "serve" give it to those commands (default: the checkpoint's value)."""

    name: str
    type: Any
    default: Any
    help: str
    commands: tuple[str, ...] = ("train",)
    stored: str | None = "columns"
    flags: tuple[str, ...] = ()
    sweep: str | None = None
    misplaced: str | None = None  # the refusal when given for another task ({task}: that task), if not the usual
    choices: tuple | None = None  # the values it takes, when they are few

    def problem(self, values: dict) -> str | None:
        """What is wrong with its value in `values` (one of `choices`), or None."""
        value = self.value(values)
        if self.choices and value not in self.choices:
            return f"{self.flag} must be one of {', '.join(map(str, self.choices))}, got '{value}'"
        return None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def field(self) -> tuple[str, Any, dataclasses.Field]:
        """This option as a TrainConfig field: (name, type, field)."""
        return self.name, self.type, option(self.default, self.help, flags=self.flags, sweep=self.sweep)

    def value(self, values: dict) -> Any:
        """Its value in `values` (options as given, or as stored with a checkpoint), else its default."""
        found = values.get(self.name)
        return self.default if found is None else found


def unique(options) -> list[Option]:
    """Options in first-seen order, each once (several tasks share a column option by sharing its object)."""
    seen: dict[str, Option] = {}
    for item in options:
        if item.name in seen and seen[item.name] is not item:
            raise ValueError(f"option {item.name} is declared twice; share one Option object")
        seen.setdefault(item.name, item)
    return list(seen.values())
