"""Saving and loading trained weights with their JSON metadata (``models/weights``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def save_model(model: nn.Module, out_dir: Path, name: str, metadata: dict[str, Any]) -> Path:
    """Write ``<name>.pt`` (a plain state dict, loadable with ``weights_only=True``) and
    ``<name>.json`` (version, classes, input spec, seed, data, metrics)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{name}.pt"
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    torch.save(state, path)
    (out_dir / f"{name}.json").write_text(json.dumps(metadata, indent=2, sort_keys=True) + "\n")
    return path


def load_metadata(weights_dir: Path, name: str) -> dict[str, Any]:
    return json.loads((Path(weights_dir) / f"{name}.json").read_text())


def load_state(weights_dir: Path, name: str) -> dict[str, torch.Tensor]:
    return torch.load(Path(weights_dir) / f"{name}.pt", map_location="cpu", weights_only=True)
