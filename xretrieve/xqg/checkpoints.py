"""A seq2seq generator's training checkpoints: model, tokenizer, optimizer and RNG state, in safetensors and
JSON (no pickle). `state.json` is written last, so a folder without it is incomplete."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from xretrieve.errors import UserError
from xretrieve.manifest import atomic_write_json


def list_checkpoints(folder: Path) -> list[Path]:
    """Complete checkpoints (state.json is written last), oldest first."""
    return sorted(p.parent for p in folder.glob("step-*/state.json"))


def save_checkpoint(folder: Path, step: int, model, tokenizer, optimizer, plan: dict, keep: int) -> None:
    import torch
    from safetensors.torch import save_file

    final = folder / f"step-{step:08d}"
    staging = folder / f".step-{step:08d}.tmp"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    state = optimizer.state_dict()  # no pickle: tensors to safetensors, the rest to JSON
    tensors = {f"{i}.{k}": v.reshape(-1).contiguous() for i, s in state["state"].items() for k, v in s.items()}
    tensors["rng.cpu"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng.cuda"] = torch.cuda.get_rng_state()
    save_file(tensors, staging / "optimizer.safetensors")
    shapes = {f"{i}.{k}": list(v.shape) for i, s in state["state"].items() for k, v in s.items()}
    atomic_write_json(
        staging / "state.json", {"step": step, "plan": plan, "param_groups": state["param_groups"], "shapes": shapes}
    )
    shutil.rmtree(final, ignore_errors=True)
    os.rename(staging, final)
    for old in list_checkpoints(folder)[:-keep]:
        shutil.rmtree(old)


def load_optimizer(checkpoint: Path, optimizer) -> None:
    import torch
    from safetensors.torch import load_file

    state = json.loads((checkpoint / "state.json").read_text())
    tensors = load_file(checkpoint / "optimizer.safetensors")
    per_param: dict[int, dict] = {}
    for key, shape in state["shapes"].items():
        index, name = key.split(".", 1)
        per_param.setdefault(int(index), {})[name] = tensors[key].reshape(shape)
    optimizer.load_state_dict({"state": per_param, "param_groups": state["param_groups"]})
    torch.set_rng_state(tensors["rng.cpu"])
    if "rng.cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng.cuda"])


def latest_checkpoint(folder: Path, plan: dict) -> tuple[Path | None, dict]:
    """The latest complete checkpoint and its state, or (None, {}); one of another run is an error."""
    done = list_checkpoints(folder)
    if not done:
        return None, {}
    state = json.loads((done[-1] / "state.json").read_text())
    if state["plan"] != plan:
        raise UserError(
            f"{done[-1]}: a checkpoint of a different training run (other data or settings): choose a new --out"
        )
    return done[-1], state
