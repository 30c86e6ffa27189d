"""The zero-shot baseline: the base LM the MLLM is tuned on, with no adapter and no connectors.

It reads the same evidence lines as the tuned model (:func:`~affectgraph.agents.mllm.
instructions.prompt_for`), as text only (the soft-token placeholders are dropped), and is told
the answer schema the tuned model learned, with one example of its form, and its answer is
started for it with ``{"label": "`` (:data:`PREFILL`)::

    {"label": "<one of neutral, happy, ...>", "steps": [{"claim": "...", "cites": ["<id>"]}]}

Its answers go through the same reader and verifier (:func:`~affectgraph.agents.mllm.infer.
mllm_verdict`), so the comparison isolates what tuning (LoRA + connectors) adds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from transformers import StoppingCriteria, StoppingCriteriaList

from affectgraph.agents.mllm.instructions import PLACEHOLDERS, Example
from affectgraph.agents.mllm.model import SYSTEM, Manifest, ModelSpec, load_base, torch_threads
from affectgraph.labels import LABELS

__all__ = ["ZERO_SHOT_SYSTEM", "ZeroShotLM"]

BASE = "smollm2-135m-instruct"
PREFILL = '{"label": "'
"""The answer is started for the model: asked for JSON alone, SmolLM2-135M answered prose
("The person shows anger.") to all 24 held-out RAVDESS clips; started as JSON it continues it."""
ZERO_SHOT_SYSTEM = (
    SYSTEM + "\nAnswer with one JSON object and nothing else, of this form:\n"
    '{"label": "<one of ' + ", ".join(LABELS) + '>", "steps": [{"claim": "<what the cited '
    'evidence shows>", "cites": ["<id>"]}]}\n'
    "Cite only the ids in brackets at the start of the evidence lines, and state only what "
    "those lines say, with their labels and numbers.\n"
    'Example: {"label": "angry", "steps": [{"claim": "The voice sounds angry (p=0.62) '
    '[voice:0]", "cites": ["voice:0"]}]}'
)


class ZeroShotLM:
    """The base causal LM answering from the evidence text; ``generate`` has the tuned
    :class:`~affectgraph.agents.mllm.model.AffectMLLM`'s signature."""

    def __init__(self, tokenizer: Any, lm: Any, base: str = BASE, *, threads: int = 1,
                 prefill: str = PREFILL) -> None:
        self.tokenizer, self.lm, self.base, self.threads = tokenizer, lm, base, threads
        self.prefill = prefill
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.lm.eval()
        hidden = int(lm.get_input_embeddings().embedding_dim)
        self.manifest = Manifest(
            spec=ModelSpec(base=base, connectors={}, threads=threads), hidden_size=hidden,
            data={"text_embeddings": False, "zero_shot": True},
            licence="the base model's own (SmolLM2: Apache-2.0); nothing was trained")

    @classmethod
    def load(cls, base: str = BASE, *, prefill: str = PREFILL) -> ZeroShotLM:
        """The base model from the registry (or a model folder / .gguf)."""
        tokenizer, lm = load_base(base)
        return cls(tokenizer, lm, base, prefill=prefill)

    def render(self, prompt: str) -> str:
        """The evidence prompt as text (placeholders dropped) in the chat template."""
        for placeholder in PLACEHOLDERS.values():
            prompt = prompt.replace(" " + placeholder, "").replace(placeholder, "")
        if getattr(self.tokenizer, "chat_template", None):
            return self.tokenizer.apply_chat_template(
                [{"role": "system", "content": ZERO_SHOT_SYSTEM},
                 {"role": "user", "content": prompt}], tokenize=False, add_generation_prompt=True)
        return f"{ZERO_SHOT_SYSTEM}\nUser: {prompt}\nAssistant: "

    @torch.no_grad()
    def generate(self, examples: Sequence[Example], *, max_new_tokens: int = 160) -> list[str]:
        """The greedy answer text to each example's prompt, one at a time (no padding)."""
        with torch_threads(self.threads):
            return [self._answer(e.prompt, max_new_tokens) for e in examples]

    def _answer(self, prompt: str, max_new_tokens: int) -> str:
        text = self.render(prompt) + self.prefill
        ids = self.tokenizer(text, add_special_tokens=False, return_tensors="pt")
        stop = _FirstObject(self.tokenizer, ids["input_ids"].shape[1], self.prefill)
        tokens = self.lm.generate(**ids, do_sample=False, max_new_tokens=max_new_tokens,
                                  pad_token_id=self.tokenizer.pad_token_id,
                                  eos_token_id=self.tokenizer.eos_token_id,
                                  stopping_criteria=StoppingCriteriaList([stop]))
        answer = tokens[0, ids["input_ids"].shape[1]:]
        return (self.prefill + self.tokenizer.decode(answer, skip_special_tokens=True)).strip()


class _FirstObject(StoppingCriteria):
    """Stops once the answer (``prefill`` + new tokens) holds one complete JSON object: started
    as JSON, SmolLM2-135M wrote object after object until its token budget ran out."""

    def __init__(self, tokenizer: Any, start: int, prefill: str) -> None:
        self.tokenizer, self.start, self.prefill = tokenizer, start, prefill

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor, **_: Any) -> bool:
        text = self.prefill + self.tokenizer.decode(input_ids[0, self.start:],
                                                    skip_special_tokens=True)
        return _closes_object(text)


def _closes_object(text: str) -> bool:
    """Whether ``text`` holds a ``{...}`` closed at depth 0 (braces inside strings ignored)."""
    depth, quoted, escaped = 0, False, False
    for char in text:
        if quoted:
            escaped, quoted = (False, quoted) if escaped else (char == "\\", char != '"')
            continue
        if char == '"':
            quoted = True
        elif char == "{":
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                return True
    return False
