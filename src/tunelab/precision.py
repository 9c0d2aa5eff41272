"""Which precision training and inference compute in: bf16 autocast (fp32 master weights) where the hardware
computes bf16 natively, fp32 elsewhere. Checkpoints are always written in fp32."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from tunelab.errors import TunelabError

logger = logging.getLogger(__name__)

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LEGACY = {"no": "fp32"}  # --mixed-precision no, as runs before --precision wrote it
NATIVE_ENV = "TUNELAB_NATIVE_BF16"  # 1 or 0: what to take the device's bf16 support as (tests; odd CPU flags)
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")
# --precision of predict, evaluate and serve (declared here once; training's is TrainConfig.precision)
INFERENCE_HELP = ("auto: bf16 autocast where the CPU (AMX, AVX512-BF16) or GPU computes bf16 natively, fp32 "
                  "elsewhere; fp32 or bf16 force it. The torch backend only (ONNX runs int8).")


@dataclass(frozen=True)
class Precision:
    """The precision a command computes in (fp32, bf16 or fp16) and why it was chosen."""

    name: str
    reason: str

    @property
    def accelerate(self) -> str:
        """accelerate's name for it (`mixed_precision`)."""
        return "no" if self.name == "fp32" else self.name

    def describe(self) -> str:
        """For the start-of-run line: "bf16 autocast with fp32 weights (CPU has amx_bf16)", "fp32 (...)"."""
        if self.name == "fp32":
            return f"fp32 ({self.reason})"
        return f"{self.name} autocast with fp32 weights ({self.reason})"

    def autocast(self):
        """A context that runs inference in this precision (nothing for fp32)."""
        import torch

        if self.name == "fp32":
            return contextlib.nullcontext()
        device = "cuda" if torch.cuda.is_available() else "cpu"
        return torch.autocast(device, dtype=torch.bfloat16 if self.name == "bf16" else torch.float16)


def native_bf16() -> tuple[bool, str]:
    """Whether this device computes bf16 natively, and what says so."""
    import torch

    forced = os.environ.get(NATIVE_ENV, "").strip()
    if forced in ("0", "1"):
        return forced == "1", f"{NATIVE_ENV}={forced}"
    if torch.cuda.is_available():
        supported = torch.cuda.is_bf16_supported()
        return supported, f"GPU {'supports' if supported else 'has no'} bf16"
    found = [flag for flag in CPU_BF16_FLAGS if flag in cpu_flags()]
    if found:
        return True, f"CPU has {', '.join(found)}"
    return False, "this CPU has no native bf16 (no AMX or AVX512-BF16)"


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The CPU's feature flags as Linux lists them (empty elsewhere); read once."""
    info = Path("/proc/cpuinfo")
    if not info.exists():
        return set()
    for line in info.read_text(errors="replace").splitlines():
        if line.startswith("flags"):
            return frozenset(line.split(":", 1)[1].split())
    return frozenset()


def check_name(requested: str) -> str | None:
    """The problem with a --precision value, or None."""
    if LEGACY.get(requested, requested) not in PRECISIONS:
        return f"--precision must be one of {', '.join(PRECISIONS)}, got '{requested}'"
    return None


def resolve(requested: str) -> Precision:
    """The precision `requested` (auto, fp32, bf16, fp16) means on this device; refuses what it cannot run."""
    import torch

    requested = LEGACY.get(requested, requested)
    problem = check_name(requested)
    if problem:
        raise TunelabError(problem)
    native, reason = native_bf16()
    if requested == "auto":
        return Precision("bf16", reason) if native else Precision("fp32", reason)
    if requested == "fp16":
        if not torch.cuda.is_available():
            raise TunelabError("--precision fp16 needs a CUDA GPU and none is available; use --precision auto "
                               "(bf16 where the CPU has it) or fp32")
        return Precision("fp16", "asked for")
    if requested == "bf16":
        if torch.cuda.is_available() and not native:
            raise TunelabError("--precision bf16: this GPU has no bf16 support; use --precision fp16")
        if not native:
            logger.warning("--precision bf16 on a CPU without native bf16 (%s): it runs several times slower "
                           "than fp32; --precision auto would choose fp32", reason)
        return Precision("bf16", "asked for")
    return Precision("fp32", "asked for")
