"""Train the embedded GLM-4.5-architecture model with its MTP layer, on CPU, from the generated corpus.

    python -m scripts.tiny_model.train --out engine/embedded/glm-4.5-tiny            # the full, committed run
    python -m scripts.tiny_model.train --out /tmp/tiny --steps 60 --conversations 2000  # a quick trial

Steps: generate conversations (seeded) -> train the byte-level BPE with tokenizer.bpe_builder and write the
tokenizer files -> tokenize (loss only on model-output tokens) -> train next-token loss + 0.3 x MTP loss with
AdamW -> save a Hugging Face checkpoint. Seeded and single-process: the same arguments give the same weights on
the same machine (torch's CPU kernels may differ across machines in the last bits).
"""

from __future__ import annotations

import os

# NOTE: before torch loads OpenMP: busy-waiting threads collapse throughput on cores shared with other processes.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from engine.embedded_model import EVAL_CONVERSATIONS
from engine.loader import load_model
from engine.model import Glm4MoeForCausalLM
from kernels.attention import DenseAttention
from kernels.attention.base import AttentionMetadata
from scripts.tiny_model.batching import Batch, make_batch, packed_batches
from scripts.tiny_model.checkpoint import build_untrained, hf_config_dict, save_checkpoint
from scripts.tiny_model.conversations import generate
from scripts.tiny_model.corpus import held_out, rendered_texts, tokenize, write_jsonl
from scripts.tiny_model.render import ConversationRenderer
from scripts.tiny_model.router_balance import RouterBalancer
from tokenizer.bpe_builder import train_glm_bpe, write_model_dir
from tokenizer.special_tokens import ENDOFTEXT, GLM45_STOP_TOKENS

logger = logging.getLogger("train")
MTP_LOSS_WEIGHT = 0.3  # GLM-4.5's weight of the MTP loss


def losses(model: Glm4MoeForCausalLM, batch: Batch, attn: DenseAttention) -> tuple[torch.Tensor, torch.Tensor]:
    """(next-token loss, MTP loss), each a mean over its trained rows."""
    attn.plan(AttentionMetadata.for_prefill(batch.lens))
    hidden = model(batch.input_ids, batch.positions, attn)  # [T, H]
    main = F.cross_entropy(model.compute_logits(hidden[batch.main_rows]), batch.main_labels)
    mtp_hidden = model.mtp_forward(batch.mtp_input_ids, hidden, batch.positions, attn)  # [T, H]
    mtp = F.cross_entropy(model.compute_mtp_logits(mtp_hidden[batch.mtp_rows]), batch.mtp_labels)
    return main, mtp


def learning_rate(step: int, total: int, peak: float, warmup: int) -> float:
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return peak * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def make_optimizer(model: Glm4MoeForCausalLM, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in trainable if p.dim() >= 2]
    no_decay = [p for n, p in trainable if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8)


@torch.no_grad()
def held_out_losses(model: Glm4MoeForCausalLM, batches: list[Batch], attn: DenseAttention) -> tuple[float, float]:
    model.eval()
    pairs = [losses(model, b, attn) for b in batches]
    model.train()
    return (sum(float(m) for m, _ in pairs) / len(pairs), sum(float(t) for _, t in pairs) / len(pairs))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="checkpoint directory to write")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conversations", type=int, default=16000, help="training conversations to generate")
    parser.add_argument("--mix", default=None,
                        help='JSON share of each kind, e.g. {"arithmetic": 0.6, "echo": 0.4} (default: DEFAULT_MIX)')
    parser.add_argument("--eval-conversations", type=int, default=400, help="held-out conversations to write")
    parser.add_argument("--tokenizer-conversations", type=int, default=6000)
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--max-tokens", type=int, default=1024, help="longest training sequence")
    parser.add_argument("--steps", type=int, default=1800)
    parser.add_argument("--tokens-per-step", type=int, default=3072)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--short-share", type=float, default=0.1, help="share of steps on short samples first")
    parser.add_argument("--short-tokens", type=int, default=160, help="longest sample of the curriculum's start")
    parser.add_argument("--warmup", type=int, default=50)
    parser.add_argument("--weight-decay", type=float, default=0.05)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--config-overrides", default="{}", help="JSON object of config.json values to change")
    parser.add_argument("--init-from", type=Path, default=None,
                        help="start from this checkpoint's weights (same corpus seed, so the same tokenizer)")
    parser.add_argument("--log-every", type=int, default=20)
    parser.add_argument("--max-minutes", type=float, default=45.0,
                        help="guard: stop early (and say so) if training runs past this; the schedule stays step-based")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    started = time.time()

    renderer = ConversationRenderer()
    conversations = generate(args.seed, args.conversations, json.loads(args.mix) if args.mix else None)
    evaluation = held_out(conversations, args.seed + 1, args.eval_conversations, renderer)
    bpe = train_glm_bpe(rendered_texts(conversations[: args.tokenizer_conversations], renderer),
                        vocab_size=args.vocab_size)
    write_model_dir(bpe, args.out)
    write_jsonl(evaluation, args.out / EVAL_CONVERSATIONS)
    samples = tokenize(conversations, renderer, bpe, args.max_tokens)
    held_samples = tokenize(evaluation[:64], renderer, bpe, args.max_tokens)
    num_tokens = sum(len(s.ids) for s in samples)
    logger.info("corpus: %d samples, %d tokens (%.0f per sample), %.1f%% model output; %.0fs", len(samples),
                num_tokens, num_tokens / len(samples),
                100 * sum(sum(s.is_output) for s in samples) / num_tokens, time.time() - started)

    pad_id = bpe.token_to_id(ENDOFTEXT)
    stop_ids = [bpe.token_to_id(t) for t in GLM45_STOP_TOKENS]
    vocab = 64 * math.ceil(bpe.get_vocab_size() / 64)
    hf_config = hf_config_dict(vocab, stop_ids, pad_id, **json.loads(args.config_overrides))
    model = build_untrained(hf_config, args.seed).train()
    if args.init_from:  # a second, lower-LR pass over the same seeded corpus (`make train-tiny` runs both)
        model.load_state_dict(load_model(args.init_from, dtype=torch.float32, device="cpu").state_dict())
    config = model.config
    logger.info("model: %.2fM parameters", sum(p.numel() for p in model.parameters()) / 1e6)
    attn = DenseAttention(config.num_attention_heads, config.num_key_value_heads, config.head_dim,
                          config.head_dim**-0.5)
    optimizer = make_optimizer(model, args.lr, args.weight_decay)
    balancer = RouterBalancer(model, rate=3e-3)
    held_batches = [make_batch(held_samples[i : i + 16], pad_id) for i in range(0, len(held_samples), 16)]
    # Curriculum: content-based attention (copying values from the user message) is learned much faster in short
    # contexts, where the right token is not one of hundreds; then it carries over to long tool prompts.
    short = [s for s in samples if len(s.ids) <= args.short_tokens]
    short_batches = packed_batches(short, args.tokens_per_step, args.seed)
    batches = packed_batches(samples, args.tokens_per_step, args.seed)
    short_steps = int(args.short_share * args.steps)
    logger.info("curriculum: %d steps on the %d samples of <= %d tokens first", short_steps, len(short),
                args.short_tokens)
    tokens_seen, window_start = 0, time.time()
    for step in range(args.steps):
        batch = make_batch(next(short_batches if step < short_steps else batches), pad_id)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate(step, args.steps, args.lr, args.warmup)
        main, mtp = losses(model, batch, attn)
        optimizer.zero_grad(set_to_none=True)
        (main + MTP_LOSS_WEIGHT * mtp).backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        balancer.update()
        tokens_seen += batch.num_tokens
        if (step + 1) % args.log_every == 0 or step + 1 == args.steps:
            elapsed = time.time() - window_start
            logger.info("step %d/%d loss %.4f mtp %.4f lr %.2e | %.0f tok/s | expert load max/min %s | %.0fs",
                        step + 1, args.steps, main.item(), mtp.item(), optimizer.param_groups[0]["lr"],
                        tokens_seen / elapsed, balancer.imbalance(), time.time() - started)
            tokens_seen, window_start = 0, time.time()
        if (step + 1) % (args.log_every * 10) == 0 or step + 1 == args.steps:
            logger.info("held-out loss %.4f mtp %.4f", *held_out_losses(model, held_batches, attn))
        if time.time() - started > 60 * args.max_minutes:
            logger.warning("stopping at step %d of %d: past --max-minutes %.0f", step + 1, args.steps, args.max_minutes)
            break
    save_checkpoint(model.eval(), hf_config, args.out)
    (args.out / "training_args.json").write_text(json.dumps({k: str(v) for k, v in vars(args).items()}, indent=2))
    logger.info("saved %s in %.0fs", args.out, time.time() - started)


if __name__ == "__main__":
    main()
