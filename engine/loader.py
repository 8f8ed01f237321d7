"""Load a Hugging Face GLM-4.5 model directory into `Glm4MoeForCausalLM`.

The model is built on the meta device, given uninitialised storage once, and filled tensor by tensor from the
safetensors files (memory-mapped), so a model is never held twice in memory. Every checkpoint tensor is checked
against `engine.weight_map`: unknown, missing or mis-shaped tensors raise `WeightLoadError` naming the tensor and
its file. Nothing half-loaded is ever returned.

With tensor parallelism each rank builds only its part of the model and reads only its slices: `get_slice(name)[..]`
on the memory-mapped file, never the whole tensor (another rank's experts are not touched at all).
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
from engine.distributed.parallel_state import TensorParallelGroup
from engine.model import Glm4MoeForCausalLM
from engine.parallel.vocab import ParallelLMHead
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


def build_model(config: ModelConfig, dtype: torch.dtype, device: torch.device | str,
                tp: TensorParallelGroup | None = None) -> Glm4MoeForCausalLM:
    """This rank's model with uninitialised weights (random init is the caller's business)."""
    with _default_dtype(dtype), torch.device("meta"):
        model = Glm4MoeForCausalLM(config, tp)
    model = model.to_empty(device=device)
    if config.tie_word_embeddings:  # to_empty() materialises shared parameters separately: re-tie them
        model.lm_head.weight = model.model.embed_tokens.weight
    if model.tp.world_size > 1:  # the last rank's vocabulary padding rows are never loaded
        model.model.embed_tokens.weight.data.zero_()
        model.lm_head.weight.data.zero_()
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


def _read_tensor(f, name: str, target: WeightTarget, dest_shape: tuple[int, ...], path: Path) -> torch.Tensor:
    """This rank's part of checkpoint tensor `name`, after checking the whole tensor's shape in the file header."""
    expected = list(dest_shape)
    if target.shard is not None:
        expected[target.shard.dim] = target.shard.full_size
    view = _check_shape(f, name, expected, path)
    if target.shard is None:
        return f.get_tensor(name)
    shard = target.shard
    return view[(slice(None),) * shard.dim + (slice(shard.start, shard.end),)]


def _check_shape(f, name: str, expected: list[int], path: Path):
    """The tensor's lazy slice view, after checking its header shape (nothing is read)."""
    view = f.get_slice(name)
    shape = list(view.get_shape())
    if shape != expected:
        raise WeightLoadError(f"{path.name}: tensor {name} has shape {shape}, expected {expected}")
    return view


def load_model(
    model_dir: str | Path,
    dtype: str | torch.dtype | None = "auto",
    device: str | torch.device = "cpu",
    load_mtp: bool = True,
    tp: TensorParallelGroup | None = None,
) -> Glm4MoeForCausalLM:
    """This rank's model (all of it without `tp`), filled from the directory's safetensors files."""
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
    tp = tp if tp is not None else TensorParallelGroup()
    expected = checkpoint_weight_map(config, layout=tp.layout)
    if not load_mtp:
        files = {n: f for n, f in files.items() if not n.startswith(mtp_prefix)}
    unexpected = sorted(set(files) - set(expected))
    if unexpected:
        shown = ", ".join(f"{n} ({files[n].name})" for n in unexpected[:5])
        raise WeightLoadError(f"{model_dir}: {len(unexpected)} unexpected tensor(s) for this config: {shown}")
    missing = sorted(n for n, t in expected.items() if n not in files and not t.optional)
    if missing:
        raise WeightLoadError(f"{model_dir}: {len(missing)} missing tensor(s): {', '.join(missing[:5])}")

    model = build_model(config, dtype, device, tp)
    params = dict(model.named_parameters(remove_duplicate=False))
    mtp_copies: dict[str, Path] = {}
    by_file: dict[Path, list[str]] = defaultdict(list)
    for name, path in files.items():
        if name.endswith((MTP_HEAD, MTP_EMBED)) and name.startswith(f"model.layers.{config.num_hidden_layers}."):
            mtp_copies[name] = path
        elif not (name == "lm_head.weight" and config.tie_word_embeddings) and expected[name].on_this_rank:
            by_file[path].append(name)
    for path, names in by_file.items():
        with _open(path) as f:
            for name in names:
                dest = _destination(params, expected[name])
                dest.copy_(_read_tensor(f, name, expected[name], tuple(dest.shape), path))
    _attach_mtp_copies(model, mtp_copies, expected, params)
    return model


def _attach_mtp_copies(model: Glm4MoeForCausalLM, copies: dict[str, Path], expected: dict[str, WeightTarget],
                       params: dict[str, torch.Tensor]) -> None:
    """Alias the MTP layer's head to lm_head when the checkpoint's copy is equal (or absent); else keep its own.
    NOTE: with tensor parallelism each rank compares its own vocabulary slice; a rank whose slice is equal aliases
    it, which computes the same logits as a copy would."""
    assert model.mtp is not None or not copies
    for name, path in copies.items():
        dest = _destination(params, expected[name])
        with _open(path) as f:
            if name.endswith(MTP_EMBED):  # every engine embeds draft inputs with the target's embedding (4.1)
                _check_shape(f, name, [model.config.vocab_size, model.config.hidden_size], path)
                continue
            tensor = _read_tensor(f, name, expected[name], tuple(dest.shape), path)
        if not torch.equal(tensor.to(device=dest.device, dtype=dest.dtype), dest):
            logger.info("MTP shared_head.head differs from lm_head: keeping the MTP layer's own head")
            lm_head = model.lm_head.weight
            with _default_dtype(lm_head.dtype), torch.device(lm_head.device):
                head = ParallelLMHead(model.config.vocab_size, model.config.hidden_size, model.tp)
            head.weight.data.zero_()
            head.weight.data[: dest.shape[0]].copy_(tensor)
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
