"""LLM backends from one spec string: ``openai:MODEL``, ``local:PATH`` or ``none``.

Every backend is a LangChain chat model, so the aggregator and the agents use one interface
(``invoke``, ``stream``, ``bind_tools``, ``with_structured_output``) whatever answers:

- ``openai:MODEL``: any OpenAI-compatible server (vLLM, Ollama, llama.cpp server, OpenAI) through
  :class:`langchain_openai.ChatOpenAI`. The base URL comes from :attr:`LLMOptions.base_url`, else
  ``$OPENAI_BASE_URL`` (or ``$OPENAI_API_BASE``), else OpenAI's; the key from the ``api_key``
  argument, else ``$OPENAI_API_KEY`` (a local server needs none). :func:`load_chat_model` asks
  the server for its models first, so an unreachable URL fails at once, naming the URL and the
  fix, instead of on the first verdict.
- ``local:PATH``: a transformers causal LM on this machine, run by :class:`LocalChatModel` with
  the model's own chat template. ``PATH`` is a model folder (``config.json`` + weights), a
  ``.gguf`` file (or a folder holding one), or a registry name such as
  ``smollm2-135m-instruct`` (``affectgraph models pull smollm2-135m-instruct`` fetches it).
  Local models cannot call tools: :func:`with_tools` says so instead of failing later.
- ``none`` (the default): no LLM; :func:`load_chat_model` returns ``None``.

>>> parse_llm_spec("openai:qwen2.5-7b-instruct")
LLMSpec(kind='openai', target='qwen2.5-7b-instruct')
>>> parse_llm_spec("none")
LLMSpec(kind='none', target='')
"""

from __future__ import annotations

import difflib
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, ToolMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr

from affectgraph.errors import AffectGraphError, ConfigError, ModelUnavailable

log = logging.getLogger(__name__)

__all__ = ["LLMOptions", "LLMSpec", "LocalChatModel", "explain_llm_error", "llm_name",
           "load_chat_model", "parse_llm_spec", "stream_text", "with_tools"]

LLMKind = Literal["none", "openai", "local"]
SPEC_FORMS = ("none (no LLM)", "openai:MODEL (an OpenAI-compatible server: vLLM, Ollama, "
              "llama.cpp server, OpenAI)", "local:PATH (a transformers model folder, a .gguf "
              "file, or a registry name such as smollm2-135m-instruct)")
OPENAI_URL = "https://api.openai.com/v1"
LOCAL_INSTALL = "pip install gguf accelerate"
_NO_KEY = "not-needed"  # local servers ignore the key, the openai client insists on one
_TOOLS_FIX = ("use a model and server that support tool calling (vLLM with "
              "--enable-auto-tool-choice --tool-call-parser ..., Ollama with a tools-capable "
              "model, llama.cpp server with --jinja, or OpenAI)")


@dataclass(frozen=True)
class LLMSpec:
    """A parsed ``--llm`` value: the backend kind and its model name or path."""

    kind: LLMKind
    target: str = ""

    def __str__(self) -> str:
        return self.kind if self.kind == "none" else f"{self.kind}:{self.target}"


class LLMOptions(BaseModel):
    """How to reach and run the LLM (the API key is not an option: it must not be saved with
    the options; pass it to :func:`load_chat_model` or set ``$OPENAI_API_KEY``).

    ``timeout``: seconds one answer may take (HTTP read timeout; a local model's generation
    time limit); ``max_retries``: the HTTP client's own retries of failed connections;
    ``max_tokens``: the longest answer; ``threads``: torch threads of a local model.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    base_url: str | None = None
    timeout: float = Field(default=120.0, gt=0)
    max_retries: int = Field(default=1, ge=0)
    max_tokens: int = Field(default=1024, gt=0)
    temperature: float = Field(default=0.0, ge=0)
    threads: int = Field(default=1, ge=1)


def parse_llm_spec(spec: str | None) -> LLMSpec:
    """``"openai:MODEL"``, ``"local:PATH"`` or ``"none"`` -> :class:`LLMSpec`; anything else is a
    :class:`ConfigError` naming the valid forms."""
    text = (spec or "none").strip()
    if text.lower() == "none":
        return LLMSpec("none")
    kind, sep, target = text.partition(":")
    if kind in ("openai", "local") and sep and target.strip():
        return LLMSpec(kind, target.strip())  # type: ignore[arg-type]
    if kind in ("openai", "local"):
        raise ConfigError(f"the LLM spec {text!r} names no model: write {kind}:"
                          f"{'MODEL' if kind == 'openai' else 'PATH'}. Valid forms: "
                          + "; ".join(SPEC_FORMS))
    close = difflib.get_close_matches(kind.lower(), ["openai", "local", "none"], n=1)
    hint = f" Did you mean {close[0]}:{target}?" if close and sep else ""
    raise ConfigError(f"unknown LLM spec {text!r}.{hint} Valid forms: " + "; ".join(SPEC_FORMS))


def load_chat_model(spec: str | LLMSpec | None, *, options: LLMOptions | None = None,
                    api_key: str | None = None, check: bool = True) -> BaseChatModel | None:
    """The chat model a spec names (``None`` for ``none``).

    ``check`` asks an OpenAI-compatible server for its models before returning, so a wrong URL
    or key fails here with the fix; a local model is loaded on its first answer.
    """
    parsed = spec if isinstance(spec, LLMSpec) else parse_llm_spec(spec)
    options = options or LLMOptions()
    if parsed.kind == "none":
        return None
    if parsed.kind == "openai":
        return _openai(parsed.target, options, api_key, check)
    return LocalChatModel.from_spec(parsed.target, options)


def _openai(model: str, options: LLMOptions, api_key: str | None, check: bool) -> BaseChatModel:
    from langchain_openai import ChatOpenAI

    url = (options.base_url or os.environ.get("OPENAI_BASE_URL")
           or os.environ.get("OPENAI_API_BASE") or OPENAI_URL).rstrip("/")
    key = api_key or os.environ.get("OPENAI_API_KEY")
    if not key and url == OPENAI_URL:
        raise ConfigError(f"openai:{model} needs an API key for {url}: set OPENAI_API_KEY, or "
                          "point --llm-base-url / OPENAI_BASE_URL at your own server")
    chat = ChatOpenAI(model=model, base_url=url, api_key=SecretStr(key or _NO_KEY),
                      timeout=options.timeout, max_retries=options.max_retries,
                      temperature=options.temperature,
                      max_completion_tokens=options.max_tokens)
    if check:
        _check_reachable(chat, url, min(options.timeout, 10.0))
    return chat


def _check_reachable(chat: Any, url: str, timeout: float) -> None:
    """``GET /models``: a refused connection or a rejected key fails now, with the fix."""
    import openai

    try:
        chat.root_client.with_options(max_retries=0).models.list(timeout=timeout)
    except (openai.APIConnectionError, openai.AuthenticationError, openai.PermissionDeniedError) \
            as exc:
        raise explain_llm_error(exc, chat) or exc from None
    except openai.APIStatusError:
        pass  # reachable; some servers have no /models


def explain_llm_error(exc: BaseException, chat: Any = None) -> AffectGraphError | None:
    """A clear error for an LLM call that failed because of the setup (unreachable server,
    rejected key, unknown model, no tool calling), or ``None`` for other failures."""
    import openai

    url = _url(chat)
    name = llm_name(chat) if chat is not None else "the LLM"
    if isinstance(exc, openai.APITimeoutError):
        return None  # slow, not misconfigured: the caller decides (retry, fall back)
    if isinstance(exc, openai.APIConnectionError):
        return ModelUnavailable(
            f"cannot reach the OpenAI-compatible server at {url} for {name} ({exc}); start the "
            "server, or point --llm-base-url / OPENAI_BASE_URL at a running one (vLLM: "
            "http://127.0.0.1:8000/v1, Ollama: http://127.0.0.1:11434/v1, llama.cpp: "
            "http://127.0.0.1:8080/v1)")
    if isinstance(exc, openai.AuthenticationError | openai.PermissionDeniedError):
        return ConfigError(f"the server at {url} rejected the API key for {name}: set "
                           "OPENAI_API_KEY (or pass api_key) to a key it accepts")
    if isinstance(exc, openai.NotFoundError):
        return ConfigError(f"the server at {url} does not serve {name} ({_message(exc)}); "
                           f"choose one of: {_served(chat) or 'the models it lists at /models'}")
    if isinstance(exc, openai.BadRequestError) and "tool" in _message(exc).lower():
        return ConfigError(f"{name} at {url} cannot call tools ({_message(exc)}); {_TOOLS_FIX}")
    return None


def with_tools(chat: BaseChatModel, tools: Sequence[Any], **kwargs: Any) -> Any:
    """``chat.bind_tools(tools)``, or a :class:`ConfigError` saying this model cannot call
    tools and what can (for the agents; the aggregator needs no tools)."""
    try:
        return chat.bind_tools(tools, **kwargs)
    except NotImplementedError:
        raise ConfigError(f"{llm_name(chat)} cannot call tools, which this step needs; "
                          f"{_TOOLS_FIX}") from None


def llm_name(chat: Any) -> str:
    """``openai:MODEL`` or ``local:PATH`` (else the class name): what answered."""
    if isinstance(chat, LocalChatModel):
        return f"local:{chat.model_path}"
    model = getattr(chat, "model_name", None) or getattr(chat, "model", None)
    if model and getattr(chat, "openai_api_base", None) is not None:
        return f"openai:{model}"
    return str(model) if isinstance(model, str) else type(chat).__name__


def _url(chat: Any) -> str:
    return str(getattr(chat, "openai_api_base", None) or OPENAI_URL)


def _served(chat: Any) -> str:
    try:
        models = chat.root_client.with_options(max_retries=0).models.list(timeout=5.0)
        return ", ".join(sorted(m.id for m in models.data))
    except Exception:  # only a hint in an error message
        return ""


def _message(exc: BaseException) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(body.get("message"), str):
            return body["message"]
    return str(exc)


# -- local transformers models ---------------------------------------------------------------

class LocalChatModel(BaseChatModel):
    """A transformers causal LM as a LangChain chat model, with the model's chat template.

    Loaded on first use (``from_pretrained``, or ``gguf_file=`` for a GGUF file, which
    transformers dequantises to float32: it needs ``pip install gguf accelerate``); greedy
    unless ``temperature`` > 0. ``max_time`` bounds one generation in seconds: an answer cut
    short by it raises :class:`TimeoutError` (a half answer is no answer). No tool calling.
    """

    model_path: str
    gguf_file: str | None = None
    max_new_tokens: int = 1024
    temperature: float = 0.0
    max_time: float | None = None
    threads: int = 1
    _loaded: tuple[Any, Any] | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @classmethod
    def from_spec(cls, target: str, options: LLMOptions | None = None) -> LocalChatModel:
        """The model ``local:TARGET`` names: a folder, a ``.gguf`` file or a registry name."""
        options = options or LLMOptions()
        folder, gguf = _local_files(target)
        return cls(model_path=str(folder), gguf_file=gguf, max_new_tokens=options.max_tokens,
                   temperature=options.temperature, max_time=options.timeout,
                   threads=options.threads)

    @property
    def _llm_type(self) -> str:
        return "affectgraph-local-transformers"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_path": self.model_path, "gguf_file": self.gguf_file}

    def load(self) -> tuple[Any, Any]:
        """(tokenizer, model), loaded once."""
        with self._lock:
            if self._loaded is None:
                self._loaded = _load_local(self.model_path, self.gguf_file, self.threads)
            return self._loaded

    def _generate(self, messages: list[BaseMessage], stop: list[str] | None = None,
                  run_manager: CallbackManagerForLLMRun | None = None,
                  **kwargs: Any) -> ChatResult:
        import torch

        if kwargs.get("tools"):
            raise ConfigError(f"{llm_name(self)} cannot call tools; {_TOOLS_FIX}")
        tokenizer, model = self.load()
        inputs = tokenizer.apply_chat_template(
            [_chat_turn(m) for m in messages], add_generation_prompt=True,
            return_tensors="pt", return_dict=True)
        sample = self.temperature > 0
        started = time.perf_counter()
        with torch.inference_mode():
            output = model.generate(
                **inputs, max_new_tokens=self.max_new_tokens, do_sample=sample,
                temperature=self.temperature if sample else None, top_p=None, top_k=None,
                max_time=self.max_time, pad_token_id=tokenizer.eos_token_id)
        seconds = time.perf_counter() - started
        new = output[0, inputs["input_ids"].shape[1]:]
        finished = bool(len(new)) and int(new[-1]) == tokenizer.eos_token_id
        if self.max_time and not finished and seconds >= self.max_time:
            raise TimeoutError(f"{llm_name(self)} did not finish its answer within "
                               f"{self.max_time:g} s ({len(new)} tokens)")
        text = _cut(tokenizer.decode(new, skip_special_tokens=True), stop)
        usage = {"input_tokens": int(inputs["input_ids"].shape[1]), "output_tokens": len(new),
                 "total_tokens": int(inputs["input_ids"].shape[1]) + len(new)}
        message = AIMessage(content=text, usage_metadata=usage,  # type: ignore[arg-type]
                            response_metadata={"model_name": llm_name(self), "seconds": seconds,
                                               "finish_reason": "stop" if finished else "length"})
        return ChatResult(generations=[ChatGeneration(message=message)])


def _local_files(target: str) -> tuple[Path, str | None]:
    """(folder, GGUF file name or ``None``) for ``local:TARGET``."""
    path = Path(target).expanduser()
    if not path.exists() and os.sep not in target and "/" not in target:
        from affectgraph.models import ModelRegistry

        registry = ModelRegistry.default()
        if target in registry.specs:
            path = registry.resolve(target)
        else:
            valid = [s.name for s in registry if s.role.endswith("LLM")]
            raise ConfigError(f"local:{target}: no such folder or file, and no LLM of that name "
                              f"in the registry (LLMs: {', '.join(valid)}); give a transformers "
                              "model folder or a .gguf file")
    if path.is_file():
        if path.suffix != ".gguf":
            raise ConfigError(f"local:{target}: a file must be a .gguf model; otherwise give the "
                              "model folder (with config.json)")
        return path.parent, path.name
    if not path.is_dir():
        raise ConfigError(f"local:{target}: no such folder or file")
    if (path / "config.json").is_file():
        return path, None
    ggufs = sorted(p.name for p in path.glob("*.gguf"))
    if len(ggufs) == 1:
        return path, ggufs[0]
    raise ConfigError(f"local:{target}: the folder has no config.json and "
                      f"{'several .gguf files' if ggufs else 'no .gguf file'}; give the model "
                      "folder of a transformers causal LM or one .gguf file")


def _load_local(folder: str, gguf: str | None, threads: int) -> tuple[Any, Any]:
    import importlib.util

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if gguf and not all(importlib.util.find_spec(p) for p in ("gguf", "accelerate")):
        raise ModelUnavailable(f"loading the GGUF model {gguf} needs `{LOCAL_INSTALL}`")
    torch.set_num_threads(threads)
    extra = {"gguf_file": gguf} if gguf else {}
    tokenizer = AutoTokenizer.from_pretrained(folder, **extra)
    if not tokenizer.chat_template:
        raise ConfigError(f"local:{folder}: the model has no chat template, so it cannot take "
                          "chat messages; use an instruct (chat) model")
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **extra)
    model.eval()
    return tokenizer, model


def _chat_turn(message: BaseMessage) -> dict[str, str]:
    role = {"human": "user", "ai": "assistant", "system": "system", "tool": "tool"}.get(
        message.type, "user")
    if isinstance(message, ToolMessage):
        role = "user"  # chat templates without tools have no tool role
    content = message.content if isinstance(message.content, str) else message.text
    return {"role": role, "content": content}


def _cut(text: str, stop: Sequence[str] | None) -> str:
    for word in stop or ():
        if word in text:
            text = text[:text.index(word)]
    return text


def stream_text(chat: BaseChatModel, messages: Sequence[BaseMessage],
                on_token: Callable[[str], None]) -> AIMessage:
    """Stream an answer, calling ``on_token`` with each piece of text; the whole message (tool
    calls kept) is returned."""
    whole: Any = None
    for chunk in chat.stream(list(messages)):
        if isinstance(chunk.content, str) and chunk.content:
            on_token(chunk.content)
        whole = chunk if whole is None else whole + chunk
    if whole is None:
        return AIMessage(content="")
    return AIMessage(content=whole.content, tool_calls=whole.tool_calls,
                     response_metadata=whole.response_metadata)
