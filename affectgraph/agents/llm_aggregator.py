"""The LLM aggregator: an LLM reads the evidence and answers with a cited verdict, or the fusion
verdict stands, and the verdict says which and why.

:func:`llm_verdict` sends the evidence as a numbered list (:mod:`affectgraph.agents.llm_prompt`)
and asks for a JSON :class:`~affectgraph.agents.llm_prompt.Answer` through structured output
(``with_structured_output(method="json_schema")``; a server that rejects it is asked in JSON
mode, then by the prompt alone, and the text is parsed). An answer is used only when

1. it is a JSON object of the schema (a canonical label or an abstention with its reason);
2. every id it cites is in the list (an invented id is a hallucination, not a typo);
3. the verifier (:func:`~affectgraph.agents.verifier.verify_verdict`) grounds at least
   :attr:`LLMAggregateOptions.min_grounding` of its steps, and a grounded step names the label.

Otherwise (or on a timeout, or a server error) it asks again, up to
:attr:`LLMAggregateOptions.attempts` times in all, telling the model what was wrong (the
verifier's reasons); then it returns the fusion verdict. Either way ``Verdict.aggregator`` names
who answered and ``Verdict.note`` why: ``"answer by the LLM openai:qwen2.5 at attempt 2 of 3
(attempt 1: cites unknown ids face:99)"`` or ``"the LLM ... gave no usable answer in 3 attempts
(...); this is the fusion verdict"``.

It is a function of its inputs (the chat model, the evidence, the exemplars, the fusion
verdict, options), so the analysis graph's ``aggregate`` node can call it after fusion.
"""

from __future__ import annotations

import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from affectgraph.agents.fusion import valence_arousal
from affectgraph.agents.llm import LocalChatModel, explain_llm_error, llm_name
from affectgraph.agents.llm_prompt import (
    ANSWER_SCHEMA,
    Answer,
    EvidenceList,
    evidence_list,
    expand_aliases,
    parse_json,
    system_prompt,
)
from affectgraph.agents.verifier import EMOTION_WORDS, verify_verdict
from affectgraph.evidence import normalise, top
from affectgraph.labels import LABELS
from affectgraph.verdict import Exemplar, RationaleStep, Verdict, compact_ids, expand_ids

__all__ = ["Attempt", "LLMAggregateOptions", "LLMOutcome", "llm_aggregate", "llm_verdict"]

Mode = Literal["json_schema", "json_mode", "prompt"]
_MODES: tuple[Mode, ...] = ("json_schema", "json_mode", "prompt")
_RUN = re.compile(r"^[a-z]+:(\d+)-(\d+)$")
_REASON_CHARS = 240  # per attempt in the note; the full reasons are in LLMOutcome.attempts


class LLMAggregateOptions(BaseModel):
    """Options of the LLM aggregator.

    ``attempts``: answers asked for in all (the first plus retries); ``min_grounding``: the
    share of steps the verifier must ground; ``structured``: how to ask for JSON (``auto``:
    JSON schema where the chat model supports structured output, else the prompt alone);
    ``hint``: show the model the fusion distribution (labelled a hint, not evidence);
    ``max_runs``: the most face runs listed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    attempts: int = Field(default=3, ge=1, le=10)
    min_grounding: float = Field(default=0.75, ge=0, le=1)
    structured: Literal["auto", "json_schema", "json_mode", "prompt"] = "auto"
    hint: bool = True
    max_runs: int = Field(default=12, ge=1)


@dataclass(frozen=True)
class Attempt:
    """One answer asked for: how it was asked, whether it was used, why not, how long it took."""

    number: int
    mode: Mode
    accepted: bool
    reason: str
    seconds: float
    raw: str = ""


@dataclass(frozen=True)
class LLMOutcome:
    """The verdict returned and the attempts behind it."""

    verdict: Verdict
    attempts: list[Attempt] = field(default_factory=list)

    @property
    def used_llm(self) -> bool:
        return any(a.accepted for a in self.attempts)


class _Rejected(Exception):
    """An answer that cannot be used; the message is told to the model on the next attempt."""


def llm_verdict(chat_model: Any, evidence: Sequence[Any], exemplars: Sequence[Exemplar],
                fusion: Verdict, *, options: LLMAggregateOptions | None = None,
                duration: float | None = None) -> Verdict:
    """The LLM's verified verdict, or ``fusion`` when no attempt gives a usable one; the
    verdict's ``aggregator`` and ``note`` say which it is and why (see the module docstring)."""
    return llm_aggregate(chat_model, evidence, exemplars, fusion, options=options,
                         duration=duration).verdict


def llm_aggregate(chat_model: Any, evidence: Sequence[Any], exemplars: Sequence[Exemplar],
                  fusion: Verdict, *, options: LLMAggregateOptions | None = None,
                  duration: float | None = None) -> LLMOutcome:
    """:func:`llm_verdict` with the record of every attempt."""
    options = options or LLMAggregateOptions()
    name = llm_name(chat_model)
    if not evidence:
        return LLMOutcome(_fallback(fusion, name, "there is no evidence to show it", []))
    listed = evidence_list(evidence, exemplars, duration=duration, max_runs=options.max_runs,
                           hint=fusion.distribution if options.hint else None)
    messages: list[BaseMessage] = [SystemMessage(system_prompt()), HumanMessage(listed.text)]
    modes = _modes(chat_model, options)
    attempts: list[Attempt] = []
    while len(attempts) < options.attempts:
        started = time.perf_counter()
        number = len(attempts) + 1
        try:
            raw = _ask(chat_model, messages, modes[0])
        except _Unsupported:
            modes = modes[1:]  # the server lacks this way of asking: not the model's fault
            continue
        except _Failed as exc:
            attempts.append(Attempt(number, modes[0], False, str(exc), _since(started)))
            if exc.final:
                break
            continue
        try:
            verdict = _accept(raw, listed, evidence, exemplars, fusion, options)
        except _Rejected as exc:
            attempts.append(Attempt(number, modes[0], False, str(exc), _since(started), raw))
            messages += [AIMessage(raw), HumanMessage(_feedback(str(exc)))]
            continue
        attempts.append(Attempt(number, modes[0], True, "used", _since(started), raw))
        return LLMOutcome(_used(verdict, fusion, name, attempts, options), attempts)
    return LLMOutcome(_fallback(fusion, name, _failures(attempts, options), attempts), attempts)


# -- asking ------------------------------------------------------------------------------------

class _Unsupported(Exception):
    """The server rejected this way of asking for JSON."""


class _Failed(Exception):
    """No answer: a timeout, a server error (``final``: retrying cannot help)."""

    def __init__(self, message: str, final: bool = False) -> None:
        super().__init__(message)
        self.final = final


def _modes(chat_model: Any, options: LLMAggregateOptions) -> list[Mode]:
    if options.structured != "auto":
        return list(_MODES[_MODES.index(options.structured):])
    structured = (type(chat_model).with_structured_output
                  is not _base_with_structured_output())
    if isinstance(chat_model, LocalChatModel) or not structured:
        return ["prompt"]  # the default with_structured_output needs tool calls
    return list(_MODES)


def _base_with_structured_output() -> Any:
    from langchain_core.language_models import BaseChatModel

    return BaseChatModel.with_structured_output


def _ask(chat_model: Any, messages: list[BaseMessage], mode: Mode) -> str:
    """The model's answer text (JSON, if it followed the instructions)."""
    import openai

    try:
        if mode == "prompt":
            message = chat_model.invoke(messages)
        else:
            runnable = chat_model.with_structured_output(ANSWER_SCHEMA, method=mode,
                                                         include_raw=True)
            message = runnable.invoke(messages)["raw"]
    except (TimeoutError, openai.APITimeoutError) as exc:
        raise _Failed(f"timed out ({exc})") from None
    except openai.BadRequestError as exc:
        text = str(exc).lower()
        if mode != "prompt" and any(w in text for w in ("response_format", "json_schema",
                                                       "json_object", "structured")):
            raise _Unsupported(str(exc)) from None
        raise _Failed(f"the server refused the request ({exc})", final=True) from None
    except openai.APIError as exc:
        setup = explain_llm_error(exc, chat_model)
        raise _Failed(str(setup or f"the server failed ({exc})"),
                      final=setup is not None) from None
    content = message.content
    return content if isinstance(content, str) else message.text


# -- judging an answer -------------------------------------------------------------------------

def _accept(raw: str, listed: EvidenceList, evidence: Sequence[Any],
            exemplars: Sequence[Exemplar], fusion: Verdict,
            options: LLMAggregateOptions) -> Verdict:
    """The verified verdict of an answer, or :class:`_Rejected` saying what is wrong."""
    try:
        answer = Answer.model_validate(parse_json(raw))
    except ValidationError as exc:
        raise _Rejected("the JSON does not fit the schema: " + _errors(exc)) from None
    except ValueError as exc:
        raise _Rejected(f"invalid JSON: {exc}") from None
    steps = _steps(answer, listed)
    known = {r.id for r in evidence} | {e.citation for e in exemplars}
    unknown = _unknown([c for s in steps for c in s.cites], known)
    if unknown:
        raise _Rejected(f"cites unknown ids {', '.join(unknown)}: cite only ids of the list "
                        f"({', '.join(sorted(listed.ids))})")
    if answer.label is None and not (answer.abstention or "").strip():
        raise _Rejected('"label" is null but "abstention" gives no reason')
    distribution = _distribution(answer, fusion)
    if answer.distribution and answer.label and top(distribution)[0] != answer.label:
        raise _Rejected(f"the label {answer.label} is not the distribution's most probable "
                        f"label ({top(distribution)[0]})")
    verdict = verify_verdict(_verdict(answer, steps, distribution, fusion), evidence, exemplars)
    _check_grounding(verdict, answer, options)
    return verdict


def _unknown(cites: Sequence[str], known: set[str]) -> list[str]:
    """The citations naming nothing known (a run longer than the evidence is not expanded)."""
    out: list[str] = []
    for cite in dict.fromkeys(cites):
        run = _RUN.match(cite)
        if run and int(run[2]) - int(run[1]) > len(known):
            out.append(cite)
        else:
            out += compact_ids(i for i in expand_ids([cite]) if i not in known)
    return out


def _steps(answer: Answer, listed: EvidenceList) -> list[RationaleStep]:
    if not answer.steps:
        raise _Rejected('"steps" is empty: give 2 to 5 cited claims')
    out = []
    for step in answer.steps:
        claim, cites = expand_aliases(step.claim.strip(), step.cites, listed.aliases)
        out.append(RationaleStep(claim=claim, cites=cites))
    return out


def _distribution(answer: Answer, fusion: Verdict) -> dict[str, float]:
    """The answer's distribution; from a confidence alone, the rest of the mass spread as the
    fusion spreads it; with neither (an abstention), the fusion's."""
    if answer.distribution:
        return normalise(answer.distribution)
    if answer.label is None:
        return dict(fusion.distribution)
    p = answer.confidence if answer.confidence is not None else 0.5
    rest = {c: fusion.distribution.get(c, 0.0) for c in LABELS if c != answer.label}
    total = sum(rest.values()) or 1.0
    return normalise({answer.label: p, **{c: (1 - p) * v / total for c, v in rest.items()}})


def _verdict(answer: Answer, steps: list[RationaleStep], distribution: dict[str, float],
             fusion: Verdict) -> Verdict:
    valence, arousal = valence_arousal(distribution)
    label = answer.label
    confidence = distribution[label] if label else top(distribution)[1]
    return Verdict(label=label, distribution=distribution, confidence=confidence,
                   valence=valence, arousal=arousal, timeline=fusion.timeline, rationale=steps,
                   abstention=None if label else (answer.abstention or "").strip())


def _check_grounding(verdict: Verdict, answer: Answer, options: LLMAggregateOptions) -> None:
    share = verdict.grounding or 0.0
    if share < options.min_grounding:
        why = "; ".join(f"step {n}: {s.check}" for n, s in enumerate(verdict.rejected, 1))
        raise _Rejected(f"only {share:.0%} of the steps are grounded (need "
                        f"{options.min_grounding:.0%}); rejected: {why}")
    if answer.label and not any(_names(s.claim, answer.label) for s in verdict.rationale):
        raise _Rejected(f"no grounded step shows {answer.label}: say which evidence shows it")


def _names(claim: str, label: str) -> bool:
    words = claim.lower().replace("’", "'").split()
    return any(EMOTION_WORDS.get(w.strip(".,;:()[]\"'")) == label for w in words)


def _errors(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'answer'}: {e['msg']}"
                     for e in exc.errors()[:5])


def _feedback(reason: str) -> str:
    return (f"Your answer cannot be used: {reason}. Answer again with the corrected JSON object "
            "only, following the rules and citing only ids of the numbered list.")


# -- the verdict returned ------------------------------------------------------------------------

def _used(verdict: Verdict, fusion: Verdict, name: str, attempts: list[Attempt],
          options: LLMAggregateOptions) -> Verdict:
    n = len(attempts)
    said = f"answer by the LLM {name}"
    if n > 1:
        earlier = "; ".join(f"attempt {a.number}: {_short(a.reason)}" for a in attempts[:-1])
        said += f" at attempt {n} of {options.attempts} ({earlier})"
    said += f", grounding {verdict.grounding:.2f}" if verdict.grounding is not None else ""
    note = said + (f"; {fusion.note}" if fusion.note else "")
    return verdict.model_copy(update={"aggregator": f"llm {name}", "note": note})


def _fallback(fusion: Verdict, name: str, why: str, attempts: list[Attempt]) -> Verdict:
    note = f"the LLM {name} gave no usable answer ({why}); this is the fusion verdict"
    if not attempts:
        note = f"the LLM {name} was not asked ({why}); this is the fusion verdict"
    if fusion.note:
        note += f"; {fusion.note}"
    return fusion.model_copy(update={"note": note})


def _failures(attempts: list[Attempt], options: LLMAggregateOptions) -> str:
    listed = "; ".join(f"{a.number}: {_short(a.reason)}" for a in attempts)
    return f"{len(attempts)} of {options.attempts} attempts failed: {listed}"


def _short(text: str) -> str:
    return text if len(text) <= _REASON_CHARS else text[:_REASON_CHARS].rstrip() + "..."


def _since(started: float) -> float:
    return time.perf_counter() - started
