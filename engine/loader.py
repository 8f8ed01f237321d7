"""Load a Hugging Face GLM-4.5 model directory into `Glm4MoeForCausalLM`.

The model is built on the meta device, given uninitialised storage once, and filled tensor by tensor from the
safetensors files (memory-mapped), so a model is never held twice in memory. Every checkpoint tensor is checked
against `engine.weight_map`: unknown, missing or mis-shaped tensors raise `WeightLoadError` naming the tensor and
its file. Nothing half-loaded is ever returned.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open

from engine.config import ConfigError, ModelConfig, resolve_dtype
from engine.model import Glm4MoeForCausalLM
from engine.weight_map import MTP_EMBED, MTP_HEAD, WeightTarget, checkpoint_weight_map

logger = logging.getLogger(__name__)


class WeightLoadError(ValueError):
    """A checkpoint's files or tensors do not match its config."""


def default_dtype(config: ModelConfig, device: torch.device) -> torch.dtype:
    """dtype="auto": the checkpoint's dtype on accelerators; fp32 on CPU, where half precision is slow and inexact."""
    if device.type == "cpu":
        return torch.float32
    return resolve_dtype(config.torch_dtype, torch.bfloat16)


@contextlib.contextmanager
def _default_dtype(dtype: torch.dtype) -> Iterator[None]:
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        yield
    finally:
        torch.set_default_dtype(previous)


def build_model(config: ModelConfig, dtype: torch.dtype, device: torch.device | str) -> Glm4MoeForCausalLM:
    """The model with uninitialised weights (random init is the caller's business)."""
    with _default_dtype(dtype), torch.device("meta"):
        model = Glm4MoeForCausalLM(config)
    model = model.to_empty(device=device)
    if config.tie_word_embeddings:  # to_empty() materialises shared parameters separately: re-tie them
        model.lm_head.weight = model.model.embed_tokens.weight
    return model.eval().requires_grad_(False)


def checkpoint_files(model_dir: Path) -> dict[str, Path]:
    """Tensor name -> safetensors file, from the index when the checkpoint is sharded."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text())["weight_map"]
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise WeightLoadError(f"{index}: malformed index ({exc!r})") from None
        files = {name: model_dir / shard for name, shard in weight_map.items()}
        for shard in sorted(set(files.values())):
            if not shard.is_file():
                raise WeightLoadError(f"{index}: shard {shard.name} is missing from {model_dir}")
        return files
    single = model_dir / "model.safetensors"
    if not single.is_file():
        raise WeightLoadError(f"{model_dir}: no model.safetensors or model.safetensors.index.json")
    return {}  # read the names from the single file below


def _destination(params: dict[str, torch.Tensor], target: WeightTarget) -> torch.Tensor:
    dest = params[target.param]
    if target.expert is not None:
        dest = dest[target.expert]
    if target.rows is not None:
        dest = dest[target.rows[0] : target.rows[1]]
    return dest


def load_model(
    model_dir: str | Path,
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device = "cpu",
    load_mtp: bool = True,
) -> Glm4MoeForCausalLM:
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        raise ConfigError(f"model directory {model_dir} does not exist")
    config = ModelConfig.from_pretrained(model_dir)
    device = torch.device(device)
    dtype = default_dtype(config, device) if dtype in (None, "auto") else resolve_dtype(dtype)
    files = checkpoint_files(model_dir)
    if not files:
        single = model_dir / "model.safetensors"
        files = {name: single for name in _tensor_names(single)}
    mtp_prefix = f"model.layers.{config.num_hidden_layers}."
    if config.has_mtp and load_mtp and not any(n.startswith(mtp_prefix) for n in files):
        # Some re-saved checkpoints keep num_nextn_predict_layers but drop the layer: serve without speculation.
        logger.warning("%s declares an MTP layer but holds none of its tensors: loading without it", model_dir)
        load_mtp = False
    if not load_mtp and config.has_mtp:
        config = ModelConfig.from_dict({**_raw_config(model_dir), "num_nextn_predict_layers": 0})
    expected = checkpoint_weight_map(config)
    if not load_mtp:
        files = {n: f for n, f in files.items() if not n.startswith(mtp_prefix)}
    unexpected = sorted(set(files) - set(expected))
    if unexpected:
        shown = ", ".join(f"{n} ({files[n].name})" for n in unexpected[:5])
        raise WeightLoadError(f"{model_dir}: {len(unexpected)} unexpected tensor(s) for this config: {shown}")
    missing = sorted(n for n, t in expected.items() if n not in files and not t.optional)
    if missing:
        raise WeightLoadError(f"{model_dir}: {len(missing)} missing tensor(s): {', '.join(missing[:5])}")

    model = build_model(config, dtype, device)
    params = dict(model.named_parameters(remove_duplicate=False))
    mtp_copies: dict[str, Path] = {}
    by_file: dict[Path, list[str]] = defaultdict(list)
    for name, path in files.items():
        if name.endswith((MTP_HEAD, MTP_EMBED)) and name.startswith(f"model.layers.{config.num_hidden_layers}."):
            mtp_copies[name] = path
        elif not (name == "lm_head.weight" and config.tie_word_embeddings):
            by_file[path].append(name)
    for path, names in by_file.items():
        with _open(path) as f:
            for name in names:
                dest = _destination(params, expected[name])
                shape = tuple(f.get_slice(name).get_shape())
                if shape != tuple(dest.shape):
                    raise WeightLoadError(
                        f"{path.name}: tensor {name} has shape {list(shape)}, expected {list(dest.shape)}"
                    )
                dest.copy_(f.get_tensor(name))
    _attach_mtp_copies(model, mtp_copies)
    return model


def _attach_mtp_copies(model: Glm4MoeForCausalLM, copies: dict[str, Path]) -> None:
    """Alias the MTP layer's head to lm_head when the checkpoint's copy is equal (or absent); else keep its own."""
    assert model.mtp is not None or not copies
    for name, path in copies.items():
        target = model.lm_head.weight if name.endswith(MTP_HEAD) else model.model.embed_tokens.weight
        with _open(path) as f:
            tensor = f.get_tensor(name)
        if tuple(tensor.shape) != tuple(target.shape):
            raise WeightLoadError(f"{path.name}: tensor {name} has shape {list(tensor.shape)}, expected {list(target.shape)}")
        if name.endswith(MTP_EMBED):
            continue  # every engine embeds draft inputs with the target's embedding (reference section 4.1)
        if not torch.equal(tensor.to(device=target.device, dtype=target.dtype), target):
            logger.info("MTP shared_head.head differs from lm_head: keeping the MTP layer's own head")
            head = torch.nn.Linear(target.shape[1], target.shape[0], bias=False, device=target.device, dtype=target.dtype)
            head.weight.data.copy_(tensor)
            model.mtp.head = head.requires_grad_(False)  # type: ignore[union-attr]


@contextlib.contextmanager
def _open(path: Path) -> Iterator:
    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            yield f
    except (SafetensorError, OSError) as exc:
        raise WeightLoadError(f"{path}: cannot read safetensors file ({exc})") from None


def _tensor_names(path: Path) -> list[str]:
    with _open(path) as f:
        return list(f.keys())


def _raw_config(model_dir: Path) -> dict:
    return json.loads((model_dir / "config.json").read_text())
