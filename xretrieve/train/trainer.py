"""What contrastive training and distillation share: the device, the output and checkpoint folders, the
trainer's arguments, and the model folder written at the end."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from xretrieve.config import DistillConfig, TrainConfig
from xretrieve.errors import UserError
from xretrieve.manifest import atomic_write_json


def training_device(requested: str | None) -> str:
    """The device to train on; also where a missing `train` extra is reported, before any work."""
    import importlib.util

    import torch

    missing = [name for name in ("accelerate", "datasets") if importlib.util.find_spec(name) is None]
    if missing:
        raise UserError(f"training needs {', '.join(missing)}: pip install 'xretrieve[train]'")

    if requested in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if requested.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {requested}: no CUDA device is available")
    return requested


def check_out(out: str) -> Path:
    path = Path(out)
    if path.exists():
        raise UserError(f"{out}: already exists; choose a new --out (checkpoints to resume from stay beside it)")
    return path


def output_folders(config: TrainConfig | DistillConfig) -> tuple[Path, Path, str | None]:
    """(the model folder to write, the checkpoint folder, the checkpoint to resume from or None), checked before
    any work: an existing output or stray checkpoints are errors."""
    out = check_out(config.out)
    checkpoints = Path(config.checkpoints or f"{config.out}.checkpoints")
    return out, checkpoints, resume_point(config, checkpoints)


def training_arguments(config: TrainConfig | DistillConfig, device: str, checkpoints: Path, **extra):
    from sentence_transformers import SentenceTransformerTrainingArguments

    if config.precision == "fp16" and not device.startswith("cuda"):
        raise UserError("--precision fp16 needs a CUDA device (use bf16 or fp32 on CPU)")
    steps = {"max_steps": config.max_steps} if config.max_steps else {"num_train_epochs": config.epochs}
    return SentenceTransformerTrainingArguments(
        output_dir=str(checkpoints),
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.learning_rate,
        warmup_steps=config.warmup_ratio,  # transformers 5 reads a float below 1 as a share of the steps
        fp16=config.precision == "fp16",
        bf16=config.precision == "bf16",
        use_cpu=device == "cpu",
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=config.save_total_limit,
        logging_steps=config.logging_steps,
        seed=config.seed,
        data_seed=config.seed,
        report_to="none",
        disable_tqdm=not config.progress,
        weight_decay=config.weight_decay,
        dataloader_drop_last=False,
        **steps,
        **extra,
    )


def resume_point(config: TrainConfig | DistillConfig, checkpoints: Path) -> str | None:
    if not config.resume:
        if checkpoints.is_dir() and any(checkpoints.glob("checkpoint-*")):
            raise UserError(f"{checkpoints}: holds checkpoints of an earlier run; pass --resume or remove it")
        return None
    from transformers.trainer_utils import get_last_checkpoint

    last = get_last_checkpoint(str(checkpoints)) if checkpoints.is_dir() else None
    if last is None:
        raise UserError(f"--resume: no checkpoint in {checkpoints}")
    return last


def save_model(model, out: Path, settings: dict[str, Any], history: list[dict]) -> Path:
    """The model folder, written beside `out` and renamed into place: no half-written folder."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}."))
    try:
        folder = staging / "model"
        model.save(str(folder))
        atomic_write_json(folder / "xretrieve.json", settings)
        atomic_write_json(folder / "training.json", {"log_history": history})
        os.rename(folder, out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return out


def prompt_text(model, name: str | None) -> str | None:
    return (model.prompts or {}).get(name) if name else None
