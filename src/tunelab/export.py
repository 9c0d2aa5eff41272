"""The fast prediction path: ONNX export with dynamic int8 quantization, run by ONNX Runtime.

On this class of CPU (AVX2, no AVX-512) ONNX Runtime's dynamic int8 kernels
ran MiniLM about 1.85x faster than PyTorch fp32; the accuracy change is
measured in BENCHMARKS.md.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from tunelab.checkpoint import writing
from tunelab.errors import TunelabError
from tunelab.modeling import check_checkpoint

logger = logging.getLogger(__name__)

ONNX_DIR = "onnx"
FP32_FILE = "model.onnx"
INT8_FILE = "model.int8.onnx"


def _require(module: str, pip_name: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise TunelabError(f"the ONNX fast path needs {pip_name}; install it with: pip install {pip_name}") from None


def onnx_path(checkpoint: str | Path, quantized: bool = True) -> Path:
    return Path(checkpoint) / ONNX_DIR / (INT8_FILE if quantized else FP32_FILE)


def export_onnx(checkpoint: str | Path, quantize: bool = True, progress: bool = False) -> Path:
    """Export a checkpoint (any tunelab task's head) to CHECKPOINT/onnx/ (fp32, and int8 when `quantize`)."""
    _require("onnx", "onnx")
    _require("onnxruntime", "onnxruntime")
    checkpoint = check_checkpoint(checkpoint)
    for stale in checkpoint.glob(".onnx.tmp.*"):  # left by an export that was killed
        shutil.rmtree(stale, ignore_errors=True)
    # About the weights in fp32, and a quarter more for the int8 copy.
    needed = sum(f.stat().st_size for f in checkpoint.glob("*.safetensors")) * (5 / 4 if quantize else 1)
    with writing(checkpoint / ONNX_DIR, int(needed), "the checkpoint and any earlier export are as they were"):
        return _export(checkpoint, quantize, progress)


def _export(checkpoint: Path, quantize: bool, progress: bool) -> Path:
    from tunelab.progress import bar

    staging = Path(tempfile.mkdtemp(dir=checkpoint, prefix=".onnx.tmp."))
    stages = bar(1 + quantize, "export", unit="stage", enabled=progress)
    try:
        stages.set_postfix_str("tracing to ONNX")
        trace(checkpoint, staging / FP32_FILE)
        stages.update()
        if quantize:
            from onnxruntime.quantization import QuantType, quantize_dynamic

            stages.set_postfix_str("quantizing to int8")
            # Per-channel scales with 7-bit weights: on CPUs without VNNI (AVX2) the int8 kernels can
            # saturate 16-bit sums; measured here, per-tensor 8-bit lost 0.7 points on MRPC, this none.
            quantize_dynamic(str(staging / FP32_FILE), str(staging / INT8_FILE), weight_type=QuantType.QInt8,
                             per_channel=True, reduce_range=True)
            stages.update()
        target = checkpoint / ONNX_DIR
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        stages.close()
    logger.info("exported %s", target)
    return onnx_path(checkpoint, quantize)


def trace(checkpoint: Path, target: Path) -> None:
    """The checkpoint's model traced to ONNX on an example batch of its task (two inputs of different
    lengths, so the trace keeps the attention-mask path), with the task's outputs and dynamic axes."""
    import torch
    from transformers import AutoConfig

    from tunelab.collate import MODEL_INPUTS
    from tunelab.modeling import load_tokenizer
    from tunelab.predict import Predictor, read_settings
    from tunelab.tasks import task_for_config

    task = task_for_config(AutoConfig.from_pretrained(checkpoint))
    # Eager attention exports to plain ops that ONNX Runtime fuses and quantizes well.
    model = task.model_class().from_pretrained(checkpoint, attn_implementation="eager").eval()
    predictor = Predictor(model, load_tokenizer(str(checkpoint)), task=task, settings=read_settings(checkpoint, task))
    encoded = task.encode_items(predictor, task.export_items())
    batch = predictor.collator([encoded[i] for i in range(len(encoded))])
    names = [n for n in MODEL_INPUTS if n in batch]
    outputs = task.output_names

    class Outputs(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, *inputs):
            found = self.inner(**dict(zip(names, inputs)))
            return tuple(found[name] for name in outputs)

    axes = {name: task.input_axes() for name in names}
    axes.update(task.output_axes())
    with torch.inference_mode(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notes
        torch.onnx.export(Outputs(model), tuple(batch[n] for n in names), str(target), input_names=names,
                          output_names=list(outputs), dynamic_axes=axes, opset_version=17, dynamo=False)


class OnnxRunner:
    """Runs an exported model with ONNX Runtime; called with the same batches as the torch model."""

    def __init__(self, path: str | Path, threads: int | None = None):
        ort = _require("onnxruntime", "onnxruntime")
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.outputs = [o.name for o in self.session.get_outputs()]

    def __call__(self, batch: dict) -> dict[str, np.ndarray]:
        feed = {name: batch[name].numpy().astype(np.int64) for name in self.inputs}
        return dict(zip(self.outputs, self.session.run(self.outputs, feed)))
