"""Loading Hugging Face model directories: layouts, dtypes, and a clear error for every kind of bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from engine.config import ConfigError, ModelConfig
from engine.loader import WeightLoadError, build_model, load_model
from model_factory import load_hf_model, make_tiny_model_dir


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory):
    return make_tiny_model_dir(tmp_path_factory.mktemp("tiny"))


@pytest.fixture
def copy_dir(tiny_dir, tmp_path):
    dest = tmp_path / "model"
    shutil.copytree(tiny_dir, dest)
    return dest


def rewrite_tensors(path, edit) -> None:
    tensors = load_file(path / "model.safetensors")
    edit(tensors)
    save_file(tensors, path / "model.safetensors")


def test_sharded_checkpoint_loads_identically(tiny_dir, tmp_path):
    hf = load_hf_model(tiny_dir)
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="100KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    a = load_model(tiny_dir, load_mtp=False)
    b = load_model(tmp_path / "sharded")
    assert not b.has_mtp  # transformers does not re-save the MTP layer
    for (name, x), (_, y) in zip(a.state_dict().items(), b.state_dict().items()):
        assert torch.equal(x, y), name


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, "float32"])
def test_dtype_option_keeps_router_in_fp32(tiny_dir, dtype):
    model = load_model(tiny_dir, dtype=dtype)
    expected = dtype if isinstance(dtype, torch.dtype) else torch.float32
    assert model.lm_head.weight.dtype == expected
    assert model.model.layers[1].mlp.w13.dtype == expected
    assert model.model.layers[1].mlp.gate.weight.dtype == torch.float32
    assert model.model.layers[1].mlp.gate.e_score_correction_bias.dtype == torch.float32


def test_load_without_mtp(tiny_dir):
    model = load_model(tiny_dir, load_mtp=False)
    assert not model.has_mtp and model.num_kv_layers == model.config.num_hidden_layers


def test_mtp_head_kept_when_it_differs(copy_dir):
    rewrite_tensors(copy_dir, lambda t: t["model.layers.4.shared_head.head.weight"].mul_(2.0))
    model = load_model(copy_dir)
    assert model.mtp.head is not None
    assert torch.equal(model.mtp.head.weight, 2.0 * model.lm_head.weight)


def test_mtp_copies_are_optional(copy_dir):
    def drop(t):
        del t["model.layers.4.shared_head.head.weight"], t["model.layers.4.embed_tokens.weight"]

    rewrite_tensors(copy_dir, drop)
    assert load_model(copy_dir).mtp.head is None


def test_malformed_config(copy_dir):
    (copy_dir / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="config.json: malformed JSON"):
        load_model(copy_dir)


def test_unsupported_architecture(copy_dir):
    raw = json.loads((copy_dir / "config.json").read_text())
    raw["architectures"] = ["LlamaForCausalLM"]
    (copy_dir / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="unsupported architectures.*LlamaForCausalLM"):
        load_model(copy_dir)


def test_invalid_config_value_names_the_key(copy_dir):
    raw = json.loads((copy_dir / "config.json").read_text())
    raw["n_group"] = 3  # 8 experts are not divisible into 3 groups
    (copy_dir / "config.json").write_text(json.dumps(raw))
    with pytest.raises(ConfigError, match="n_routed_experts=8 is not divisible by n_group=3"):
        load_model(copy_dir)


def test_missing_shard(tiny_dir, tmp_path):
    load_hf_model(tiny_dir).save_pretrained(tmp_path / "m", max_shard_size="100KB")
    shard = sorted((tmp_path / "m").glob("model-*.safetensors"))[1]
    shard.unlink()
    with pytest.raises(WeightLoadError, match=f"shard {shard.name} is missing"):
        load_model(tmp_path / "m")


def test_missing_tensor(copy_dir):
    rewrite_tensors(copy_dir, lambda t: t.pop("model.layers.2.mlp.experts.5.up_proj.weight"))
    with pytest.raises(WeightLoadError, match=r"1 missing tensor\(s\): model.layers.2.mlp.experts.5.up_proj.weight"):
        load_model(copy_dir)


def test_unexpected_tensor(copy_dir):
    rewrite_tensors(copy_dir, lambda t: t.update({"model.layers.1.mlp.experts.8.up_proj.weight": torch.zeros(32, 64)}))
    with pytest.raises(WeightLoadError, match=r"unexpected tensor.*experts.8.up_proj.weight \(model.safetensors\)"):
        load_model(copy_dir)


def test_misshaped_tensor(copy_dir):
    rewrite_tensors(copy_dir, lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": torch.zeros(16, 64)}))
    with pytest.raises(WeightLoadError, match=r"k_proj.weight has shape \[16, 64\], expected \[32, 64\]"):
        load_model(copy_dir)


def test_not_a_model_directory(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_model(tmp_path / "nope")
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Glm4MoeForCausalLM"], "vocab_size": 10}))
    with pytest.raises(ConfigError, match="config.json"):
        load_model(tmp_path)


REAL_CONFIGS = {
    # Published config.json values (shared/reference/glm45-model.md section 1).
    "GLM-4.5-Air": dict(hidden_size=4096, intermediate_size=10944, moe_intermediate_size=1408, num_hidden_layers=46,
                        first_k_dense_replace=1, n_routed_experts=128, use_qk_norm=False, routed_scaling_factor=1.0),
    "GLM-4.5": dict(hidden_size=5120, intermediate_size=12288, moe_intermediate_size=1536, num_hidden_layers=92,
                    first_k_dense_replace=3, n_routed_experts=160, use_qk_norm=True, routed_scaling_factor=2.5),
}


@pytest.mark.parametrize("name, billions", [("GLM-4.5-Air", 106.85), ("GLM-4.5", 352.8)])
def test_real_sizes_on_meta_device(name, billions):
    raw = dict(architectures=["Glm4MoeForCausalLM"], vocab_size=151552, num_attention_heads=96,
               num_key_value_heads=8, head_dim=128, n_shared_experts=1, num_experts_per_tok=8, n_group=1,
               topk_group=1, norm_topk_prob=True, attention_bias=True, partial_rotary_factor=0.5,
               rope_theta=1e6, max_position_embeddings=131072, num_nextn_predict_layers=1,
               tie_word_embeddings=False, **REAL_CONFIGS[name])
    config = ModelConfig.from_dict(raw)
    with torch.device("meta"):
        from engine.model import Glm4MoeForCausalLM

        model = Glm4MoeForCausalLM(config)
    total = sum(p.numel() for n, p in model.named_parameters() if not n.startswith("mtp."))
    digits = 2 if billions < 200 else 1
    assert round(total / 1e9, digits) == billions
    assert model.num_kv_layers == config.num_hidden_layers + 1
    assert build_model  # the loader builds through the same class on the meta device
