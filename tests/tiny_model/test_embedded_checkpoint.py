"""The committed embedded checkpoint: its files, our loader, transformers, the tokenizer and the MTP layout.

CI never retrains: these tests only read engine/embedded/glm-4.5-tiny/.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from engine.config import ModelConfig
from engine.embedded_model import EMBEDDED_MODEL_DIR, EVAL_CONVERSATIONS, default_model_path
from kernels.attention import DenseAttention
from kernels.attention.base import AttentionMetadata

pytestmark = pytest.mark.skipif(not (EMBEDDED_MODEL_DIR / "model.safetensors").is_file(),
                                reason="embedded checkpoint not trained yet")

REFERENCE_TEMPLATE = Path("/work/shared/reference/glm45_chat_template.jinja")


@pytest.fixture(scope="module")
def model_dir() -> Path:
    return default_model_path()


@pytest.fixture(scope="module")
def ours(model_dir):
    from engine.loader import load_model

    return load_model(model_dir, dtype=torch.float32)


@pytest.fixture(scope="module")
def prompt_ids(model_dir) -> list[int]:
    from scripts.tiny_model.corpus import read_jsonl
    from tokenizer.tokenizer import Tokenizer

    conv = next(c for c in read_jsonl(model_dir / EVAL_CONVERSATIONS) if c.kind == "tool")
    tok = Tokenizer.from_model_dir(model_dir)
    return tok.encode_chat(conv.messages[: conv.target_index], conv.tools, enable_thinking=conv.enable_thinking)


def test_default_model_path_is_the_packaged_directory(model_dir):
    assert model_dir == EMBEDDED_MODEL_DIR and model_dir.is_absolute()
    assert model_dir.is_relative_to(Path(__file__).resolve().parents[2] / "engine")
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", EVAL_CONVERSATIONS):
        assert (model_dir / name).is_file(), name
    assert sum(f.stat().st_size for f in model_dir.iterdir()) < 80 * 2**20


def test_config_is_the_glm45_architecture(model_dir):
    config = ModelConfig.from_pretrained(model_dir)
    assert config.use_qk_norm and config.attention_bias
    assert config.first_k_dense_replace == 1 and config.num_hidden_layers > 1
    assert config.n_routed_experts >= 8 and config.n_shared_experts >= 1
    assert config.num_nextn_predict_layers == 1
    assert config.vocab_size <= 8192


def test_our_loader_loads_everything_including_mtp(ours):
    assert ours.has_mtp and ours.num_kv_layers == ours.config.num_hidden_layers + 1
    assert sum(p.numel() for p in ours.parameters()) <= 20_000_000
    for name, p in ours.named_parameters():
        assert torch.isfinite(p).all(), name


def test_checkpoint_layout_is_the_published_one(model_dir, ours):
    mtp = f"model.layers.{ours.config.num_hidden_layers}."
    with safe_open(str(model_dir / "model.safetensors"), framework="pt") as f:
        names = set(f.keys())
        assert f.get_tensor(mtp + "mlp.gate.e_score_correction_bias").dtype == torch.float32
    for suffix in ("enorm.weight", "hnorm.weight", "eh_proj.weight", "shared_head.norm.weight",
                   "shared_head.head.weight", "embed_tokens.weight", "mlp.experts.7.down_proj.weight",
                   "mlp.shared_experts.gate_proj.weight", "self_attn.q_norm.weight"):
        assert mtp + suffix in names
    assert "model.layers.1.mlp.experts.0.gate_proj.weight" in names
    assert "model.layers.0.mlp.gate_proj.weight" in names  # the dense layer


def test_transformers_loads_it_and_agrees_with_our_model(model_dir, ours, prompt_ids):
    pytest.importorskip("transformers")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from model_factory import load_hf_model

    hf = load_hf_model(model_dir)
    ids = torch.tensor(prompt_ids)
    config = ours.config
    attn = DenseAttention(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                          config.head_dim**-0.5)
    attn.plan(AttentionMetadata.for_prefill([len(ids)]))
    with torch.no_grad():
        expected = hf(ids[None]).logits[0].float()
        got = ours.compute_logits(ours(ids, torch.arange(len(ids)), attn))
    torch.testing.assert_close(got, expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(got[-1].argmax(), expected[-1].argmax())


def test_tokenizer_files_are_glm45(model_dir):
    from tokenizer.special_tokens import GLM45_STOP_TOKENS
    from tokenizer.tokenizer import Tokenizer

    tok = Tokenizer.from_model_dir(model_dir)
    assert tok.vocab_size <= 8192
    stops = [tok.token_to_id(t) for t in GLM45_STOP_TOKENS]
    assert json.loads((model_dir / "generation_config.json").read_text())["eos_token_id"] == stops
    assert ModelConfig.from_pretrained(model_dir).eos_token_id == tuple(stops)
    if REFERENCE_TEMPLATE.is_file():
        template = json.loads((model_dir / "tokenizer_config.json").read_text())["chat_template"]
        assert template == REFERENCE_TEMPLATE.read_text()
    text = "Weather in Zürich? <tool_call>x</tool_call> \\n \"q\" 😊"
    assert tok.decode(tok.encode(text)) == text
