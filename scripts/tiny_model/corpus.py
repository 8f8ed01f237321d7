"""Corpus of the embedded model: seeded conversations, rendered and tokenized for training; held-out JSONL for eval.

    python -m scripts.tiny_model.corpus --seed 0 --count 20 --show       # print rendered samples
    python -m scripts.tiny_model.corpus --seed 1000 --count 300 --out engine/embedded/glm-4.5-tiny/eval.jsonl

No external data: every conversation comes from `conversations.generate(seed, count)`.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

from scripts.tiny_model.conversations import Conversation, generate
from scripts.tiny_model.render import ConversationRenderer, encode_segments


@dataclass(frozen=True)
class Sample:
    ids: list[int]  # token ids of the whole conversation plus its final stop token
    is_output: list[bool]  # per token: produced by the model (trained on) or prompt (masked)


def rendered_texts(conversations: list[Conversation], renderer: ConversationRenderer) -> list[str]:
    """Whole conversations as the tokenizer trainer should see them."""
    return ["".join(text for text, _ in renderer.segments(c)) for c in conversations]


def tokenize(conversations: list[Conversation], renderer: ConversationRenderer, tokenizer,
             max_tokens: int) -> list[Sample]:
    """Samples of at most `max_tokens` tokens (longer conversations are dropped, never cut)."""
    samples = []
    for conv in conversations:
        ids, is_output = encode_segments(tokenizer, renderer.segments(conv))
        if len(ids) <= max_tokens:
            samples.append(Sample(ids, is_output))
    return samples


def held_out(train: list[Conversation], seed: int, count: int, renderer: ConversationRenderer) -> list[Conversation]:
    """`count` conversations from `seed` whose evaluated prompt never occurs among the training conversations'
    prompts, so the evaluation measures generalisation, not recall of a seen prompt."""
    seen = {renderer.prompt(c) for c in train}
    out: list[Conversation] = []
    for conv in generate(seed, 4 * count):
        if renderer.prompt(conv) not in seen:
            out.append(conv)
            if len(out) == count:
                return out
    raise ValueError(f"held_out: fewer than {count} unseen conversations from seed {seed}")


def write_jsonl(conversations: list[Conversation], path: str | Path) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for conv in conversations:
            f.write(json.dumps(conv.to_json(), ensure_ascii=False) + "\n")


def read_jsonl(path: str | Path) -> list[Conversation]:
    with open(path, encoding="utf-8") as f:
        return [Conversation.from_json(json.loads(line)) for line in f if line.strip()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--count", type=int, default=20)
    parser.add_argument("--out", type=Path, help="write the conversations as JSONL")
    parser.add_argument("--show", action="store_true", help="print rendered conversations, outputs marked")
    args = parser.parse_args()
    conversations = generate(args.seed, args.count)
    if args.out:
        write_jsonl(conversations, args.out)
    if args.show:
        renderer = ConversationRenderer()
        for conv in conversations:
            print(f"===== {conv.kind} thinking={conv.enable_thinking}")
            print("".join(f"\x1b[1m{t}\x1b[0m" if out else t for t, out in renderer.segments(conv)))


if __name__ == "__main__":
    main()
