"""Evaluate a GLM-4.5 checkpoint (the embedded one by default) on held-out generated conversations.

    python -m scripts.tiny_model.evaluate                       # embedded model, all held-out conversations
    python -m scripts.tiny_model.evaluate --limit 40 --show 5   # quicker; print 5 failing turns

Generation goes through the project's engine (`engine.LLM`, greedy), prompts through the model directory's own
tokenizer and chat template, outputs through `tokenizer.output_parser.parse_output`. Figures (goals in brackets):
- tool calls: share of tool requests answered with the right number of calls, right names, schema-valid [>= 95%]
  (and, stricter, with every argument equal to the expected value);
- no-call: share of turns that need no tool (tools offered or not) answered without a call;
- arithmetic: share of answers whose last number is the result [>= 80%];
- echo: share of "repeat this text" requests answered verbatim (the copying that tool arguments need);
- thinking: reasoning present with thinking on, absent with thinking off [>= 98%];
- MTP acceptance at k = 1, greedy [>= 0.7]: over the generated tokens, the share of positions p where the MTP draft
  from the target hidden h_p and token t_{p+1} equals the target's greedy t_{p+2} (what k = 1 speculative decoding
  would accept), computed with one dense forward over prompt + output.
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from engine.embedded_model import EVAL_CONVERSATIONS, default_model_path
from scripts.tiny_model.conversations import Conversation
from scripts.tiny_model.corpus import read_jsonl
from scripts.tiny_model.mtp_acceptance import mtp_acceptance
from scripts.tiny_model.scoring import TurnScore, score_turn

GOALS = {"tool_call_rate": 0.95, "arithmetic_rate": 0.80, "thinking_rate": 0.98, "mtp_acceptance": 0.70}


@dataclass(frozen=True)
class Generation:
    prompt_ids: list[int]  # the rendered prompt's tokens
    output_ids: list[int]  # generated tokens, the stop token included when one ended the turn
    text: str  # generated text, special tokens kept, stop token removed (the parser's input)


@dataclass(frozen=True)
class EvalReport:
    turns: int
    tool_requests: int
    tool_call_rate: float  # right calls, schema-valid
    tool_call_exact_rate: float  # right calls with every argument as expected
    no_call_turns: int
    no_call_rate: float
    arithmetic_turns: int
    arithmetic_rate: float
    echo_turns: int
    echo_rate: float  # "repeat this" answered verbatim (copying, which tool arguments need)
    thinking_rate: float
    mtp_acceptance: float
    mtp_positions: int
    engine_dense_agreement: float  # engine greedy tokens equal to the dense forward's argmax (sanity check)

    def meets_goals(self) -> dict[str, bool]:
        return {name: getattr(self, name) >= goal for name, goal in GOALS.items()}


def generate(model_dir: Path, conversations: Sequence[Conversation], max_tokens: int) -> list[Generation]:
    """Greedy generations of each conversation's target turn with the project's engine."""
    from engine import LLM, SamplingParams
    from tokenizer.tokenizer import Tokenizer

    tok = Tokenizer.from_model_dir(model_dir)
    prompts = [tok.encode_chat(c.messages[: c.target_index], c.tools or None, add_generation_prompt=True,
                               enable_thinking=c.enable_thinking) for c in conversations]
    llm = LLM(model=model_dir, dtype="float32", device="cpu", seed=0, skip_tokenizer_init=True)
    params = SamplingParams(temperature=0.0, max_tokens=max_tokens)
    results = llm.generate([{"prompt_token_ids": p} for p in prompts], params, use_tqdm=False)
    stops = set(tok.stop_token_ids)
    out = []
    for prompt, result in zip(prompts, results):
        ids = list(result.outputs[0].token_ids)
        visible = ids[:-1] if ids and ids[-1] in stops else ids
        out.append(Generation(prompt, ids, tok.decode(visible, skip_special_tokens=False)))
    return out


def _rate(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else float("nan")


def summarize(scores: list[TurnScore], acceptance: tuple[int, int], agreement: tuple[int, int]) -> EvalReport:
    tool = [s for s in scores if s.calls_expected > 0]
    no_call = [s for s in scores if s.calls_expected == 0]
    arithmetic = [bool(s.answer_ok) for s in scores if s.kind == "arithmetic"]
    echo = [bool(s.answer_ok) for s in scores if s.kind == "echo"]
    return EvalReport(
        turns=len(scores),
        tool_requests=len(tool),
        tool_call_rate=_rate([s.calls_ok for s in tool]),
        tool_call_exact_rate=_rate([s.calls_exact for s in tool]),
        no_call_turns=len(no_call),
        no_call_rate=_rate([s.calls_ok for s in no_call]),
        arithmetic_turns=len(arithmetic),
        arithmetic_rate=_rate(arithmetic),
        echo_turns=len(echo),
        echo_rate=_rate(echo),
        thinking_rate=_rate([s.thinking_ok for s in scores]),
        mtp_acceptance=acceptance[0] / max(1, acceptance[1]),
        mtp_positions=acceptance[1],
        engine_dense_agreement=agreement[0] / max(1, agreement[1]),
    )


def evaluate(model_dir: Path, conversations: Sequence[Conversation],
             max_tokens: int = 160) -> tuple[EvalReport, list[Generation], list[TurnScore]]:
    generations = generate(model_dir, conversations, max_tokens)
    scores = [score_turn(c, g.text) for c, g in zip(conversations, generations)]
    from engine.loader import load_model

    model = load_model(model_dir, dtype=torch.float32, device="cpu")
    accepted = total = agree = checked = 0
    for g in generations:
        a, t, ag, ch = mtp_acceptance(model, g.prompt_ids, g.output_ids)
        accepted, total, agree, checked = accepted + a, total + t, agree + ag, checked + ch
    return summarize(scores, (accepted, total), (agree, checked)), generations, scores


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="model directory (default: the embedded model)")
    parser.add_argument("--conversations", type=Path, default=None,
                        help=f"held-out JSONL (default: the model directory's {EVAL_CONVERSATIONS})")
    parser.add_argument("--limit", type=int, default=None, help="evaluate only the first N conversations")
    parser.add_argument("--max-tokens", type=int, default=160)
    parser.add_argument("--show", type=int, default=0, help="print up to N failing turns")
    parser.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    torch.set_num_threads(args.threads)
    model_dir = args.model or default_model_path()
    conversations = read_jsonl(args.conversations or model_dir / EVAL_CONVERSATIONS)[: args.limit]
    report, generations, scores = evaluate(model_dir, conversations, args.max_tokens)
    shown = 0
    for conv, gen, score in zip(conversations, generations, scores):
        if score.problems and shown < args.show:
            shown += 1
            print(f"--- {conv.kind} thinking={conv.enable_thinking}: {'; '.join(score.problems)}\n{gen.text!r}")
    goals = report.meets_goals()
    for name, value in asdict(report).items():
        mark = "" if name not in goals else f"   goal >= {GOALS[name]:.2f}: {'met' if goals[name] else 'NOT met'}"
        print(f"{name:24s} {value:.4f}{mark}" if isinstance(value, float) else f"{name:24s} {value}")
    if args.json:
        args.json.write_text(json.dumps(asdict(report), indent=2) + "\n")


if __name__ == "__main__":
    main()
