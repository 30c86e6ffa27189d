"""Test doubles, shipped so that you can test the graphs you compose without models or servers.

- :class:`ScriptedChatModel`: a LangChain chat model that answers from a script of messages,
  tool calls included; it supports ``bind_tools`` (checking that scripted calls name bound
  tools), ``with_structured_output`` (through tool calls, as LangChain's default does) and
  streaming that keeps tool calls (as ``tool_call_chunks`` that add up to ``tool_calls``).
  LangChain's own fakes lack ``bind_tools`` or drop tool calls when streamed.
- :class:`DeterministicSpecialist`: a specialist that returns fixed evidence records for a clip,
  callable like the built-in ones and usable as a graph node.

>>> from langchain_core.messages import AIMessage
>>> chat = ScriptedChatModel(script=["hello", AIMessage("", tool_calls=[
...     {"name": "face", "args": {"start": 12, "end": 18}, "id": "call_1"}])])
>>> chat.invoke("hi").content
'hello'
>>> chat.invoke("look at the face").tool_calls[0]["args"]
{'start': 12, 'end': 18}
>>> chat.left
0
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import PrivateAttr

from affectgraph.errors import InputError

__all__ = ["DeterministicSpecialist", "ScriptExhausted", "ScriptedCall", "ScriptedChatModel"]

Step = AIMessage | str | Callable[[list[BaseMessage]], AIMessage | str]


class ScriptExhausted(AssertionError):
    """The code under test asked the scripted model more often than the script foresaw."""


@dataclass(frozen=True)
class ScriptedCall:
    """One call the scripted model received: the messages and the names of the bound tools."""

    messages: list[BaseMessage]
    tools: list[str]


class ScriptedChatModel(BaseChatModel):
    """A chat model answering each call with the next step of ``script``.

    A step is an :class:`AIMessage` (text and/or ``tool_calls``), a string (a text answer) or a
    function of the messages returning either. ``calls`` records what each call received;
    asking past the end of the script raises :class:`ScriptExhausted`.
    """

    script: list[Any]
    _cursor: int = PrivateAttr(default=0)
    _calls: list[ScriptedCall] = PrivateAttr(default_factory=list)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @property
    def _llm_type(self) -> str:
        return "affectgraph-scripted"

    @property
    def calls(self) -> list[ScriptedCall]:
        return list(self._calls)

    @property
    def left(self) -> int:
        """Steps of the script not used yet."""
        return len(self.script) - self._cursor

    def bind_tools(self, tools: Sequence[Any], *, tool_choice: Any = None, **kwargs: Any) -> Any:
        """Bind tools as an OpenAI-compatible model would (their schemas go to ``tools``)."""
        formatted = [convert_to_openai_tool(t) for t in tools]
        if tool_choice is not None:
            kwargs["tool_choice"] = tool_choice
        return self.bind(tools=formatted, **kwargs)

    def _next(self, messages: list[BaseMessage], tools: Sequence[Mapping[str, Any]] | None
              ) -> AIMessage:
        names = [t["function"]["name"] for t in tools or ()]
        with self._lock:
            self._calls.append(ScriptedCall(list(messages), names))
            if self._cursor >= len(self.script):
                raise ScriptExhausted(f"the scripted chat model was called {len(self._calls)} "
                                      f"times but its script has {len(self.script)} steps")
            step = self.script[self._cursor]
            self._cursor += 1
        answer = step(list(messages)) if callable(step) else step
        message = AIMessage(answer) if isinstance(answer, str) else answer
        unbound = [c["name"] for c in message.tool_calls if c["name"] not in names]
        if names and unbound:  # with tools bound, a call to another one is a script mistake
            raise ScriptExhausted(f"the script calls the tool(s) {', '.join(unbound)} but the "
                                  f"bound tools are: {', '.join(names) or 'none'}")
        return message

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        message = self._next(messages, kwargs.get("tools"))
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(self, messages: list[BaseMessage], stop: list[str] | None = None,
                run_manager: CallbackManagerForLLMRun | None = None,
                **kwargs: Any) -> Iterator[ChatGenerationChunk]:
        """Text word by word, then each tool call as chunks (name and id, then its arguments
        in two pieces), then an empty last chunk that makes the sum parse its tool calls."""
        message = self._next(messages, kwargs.get("tools"))
        text = message.content if isinstance(message.content, str) else message.text
        for token in re.findall(r"\S+\s*|\s+", text):
            if run_manager:
                run_manager.on_llm_new_token(token)
            yield ChatGenerationChunk(message=AIMessageChunk(content=token, id=message.id))
        for index, call in enumerate(message.tool_calls):
            args = json.dumps(call["args"])
            pieces = [("", call["name"], call["id"]), (args[:len(args) // 2], None, None),
                      (args[len(args) // 2:], None, None)]
            for piece, name, call_id in pieces:
                chunk = {"name": name, "args": piece, "id": call_id, "index": index}
                yield ChatGenerationChunk(message=AIMessageChunk(
                    content="", tool_call_chunks=[chunk], id=message.id))  # type: ignore[list-item]
        yield ChatGenerationChunk(message=AIMessageChunk(
            content="", chunk_position="last", id=message.id,
            response_metadata={"finish_reason": "tool_calls" if message.tool_calls else "stop"}))


@dataclass(frozen=True)
class DeterministicSpecialist:
    """A specialist that returns fixed evidence records instead of analysing the media.

    ``records`` are returned for every clip, or, as a mapping, for the clip whose file name (or
    full path) is the key: another clip is an :class:`~affectgraph.errors.InputError`. Call it
    like a built-in specialist (``specialist(path, turns)``), pass :meth:`as_specialist` to
    :func:`~affectgraph.graphs.compose.compose_analysis_graph`, or add :meth:`node` to a graph
    of your own (it reports its ``seconds`` under ``name`` as the built-in nodes do).
    """

    name: str
    records: Sequence[Any] | Mapping[str, Sequence[Any]]

    @classmethod
    def from_analysis(cls, analysis: Any, modality: str, name: str | None = None
                      ) -> DeterministicSpecialist:
        """The records of one modality of a saved :class:`~affectgraph.analysis.Analysis`."""
        names = {"text": "transcript"}
        return cls(name or names.get(modality, modality), tuple(analysis.of(modality)))

    def __call__(self, path: str | Path, turns: Sequence[Any] = (), *, options: Any = None,
                 progress: Callable[[float], None] | None = None) -> list[Any]:
        records = list(self._for(path))
        if progress is not None and records:
            progress(max(r.span.end for r in records))
        return records

    def node(self, state: Any, runtime: Any = None) -> dict[str, Any]:
        """A graph node: the records for ``state["path"]`` as an ``evidence`` update."""
        return {"evidence": self(state["path"], state.get("turns", ())),
                "seconds": {self.name: 0.0}}

    def as_specialist(self, *, stream: Literal["video", "audio"] = "audio",
                      needs_turns: bool = False) -> Any:
        """A :class:`~affectgraph.graphs.specialists.Specialist` descriptor running this double
        (modality and id prefix read off its records), for composed graphs."""
        from affectgraph.graphs.specialists import Specialist

        records = [r for group in (self.records.values() if isinstance(self.records, Mapping)
                                   else [self.records]) for r in group]
        kinds = {r.modality for r in records}
        if len(kinds) != 1:
            raise InputError(f"the deterministic specialist {self.name!r} needs records of one "
                             f"modality to act as a specialist; it has {sorted(kinds) or 'none'}")
        prefixes = {r.id.split(":")[0] for r in records}
        return Specialist(self.name, kinds.pop(), self.node, needs_turns=needs_turns,
                          stream=stream, id_prefix=prefixes.pop() if len(prefixes) == 1 else "",
                          description="fixed evidence records (affectgraph.testing)")

    def _for(self, path: str | Path) -> Sequence[Any]:
        if not isinstance(self.records, Mapping):
            return self.records
        for key in (str(path), Path(path).name):
            if key in self.records:
                return self.records[key]
        raise InputError(f"the deterministic specialist {self.name!r} has no records for "
                         f"{path}; it has records for: {', '.join(sorted(self.records))}")
