"""A real OpenAI-compatible HTTP server on localhost, answering from a script.

So that tests exercise the HTTP path for real (``langchain_openai.ChatOpenAI`` -> the ``openai``
client -> httpx -> a socket), :class:`ScriptedOpenAIServer` serves ``POST /v1/chat/completions``
(JSON answers, tool calls, SSE token streaming, error statuses, slow answers for timeouts) and
``GET /v1/models`` from a stdlib :class:`~http.server.ThreadingHTTPServer` on a free
127.0.0.1 port, in a daemon thread. Each request takes the next :class:`Reply` of the script (or
calls a function of the request body that returns one) and is recorded in ``requests``.

Use the ``openai_server`` fixture (import it into a test module, or a conftest)::

    def test_answer(openai_server):
        openai_server.push(Reply(content="hello"))
        chat = ChatOpenAI(model="scripted", base_url=openai_server.url, api_key="x")
        assert chat.invoke("hi").content == "hello"
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass(frozen=True)
class ToolCall:
    """A tool call the server answers with (``arguments``: a dict, or raw JSON text)."""

    name: str
    arguments: dict[str, Any] | str
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:12]}")

    @property
    def json_arguments(self) -> str:
        return self.arguments if isinstance(self.arguments, str) else json.dumps(self.arguments)


@dataclass(frozen=True)
class Reply:
    """One scripted answer: text and/or tool calls, after ``delay`` seconds; or an error
    (``status`` >= 400 with ``error`` as the message, as OpenAI's API sends them)."""

    content: str | None = ""
    tool_calls: tuple[ToolCall, ...] = ()
    delay: float = 0.0
    status: int = 200
    error: str | None = None
    finish_reason: str | None = None


Script = Reply | Callable[[dict[str, Any]], Reply]


class ScriptedOpenAIServer:
    """An OpenAI-compatible server answering from a script; ``url`` ends in ``/v1``."""

    def __init__(self, script: tuple[Script, ...] = (), *, models: tuple[str, ...] = ("scripted",),
                 api_key: str | None = None) -> None:
        self.models = models
        self.api_key = api_key
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []  # per request, names lower-cased
        self._script: deque[Script] = deque(script)
        self._lock = threading.Lock()
        self._http = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._http.daemon_threads = True
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,),
                                        daemon=True, name="scripted-openai-server")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_port}/v1"

    def push(self, *replies: Script) -> None:
        """Add replies to the end of the script."""
        with self._lock:
            self._script.extend(replies)

    def clear(self) -> None:
        with self._lock:
            self._script.clear()
            self.requests.clear()

    @property
    def left(self) -> int:
        """Replies not used yet."""
        return len(self._script)

    def start(self) -> ScriptedOpenAIServer:
        self._thread.start()
        return self

    def close(self) -> None:
        self._http.shutdown()
        self._http.server_close()

    def __enter__(self) -> ScriptedOpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next_reply(self, body: dict[str, Any], headers: dict[str, str]) -> Reply:
        with self._lock:
            self.requests.append(body)
            self.headers.append(headers)
            if not self._script:
                return Reply(status=500, error=f"the scripted server has no reply left for "
                                               f"request {len(self.requests)}")
            step = self._script.popleft()
        return step(body) if callable(step) else step


def _handler(server: ScriptedOpenAIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
            pass

        def _authorised(self) -> bool:
            if server.api_key and self.headers.get("Authorization") != f"Bearer {server.api_key}":
                self._json(401, {"error": {"message": "Incorrect API key provided",
                                           "type": "invalid_request_error"}})
                return False
            return True

        def do_GET(self) -> None:
            if not self._authorised():
                return None
            if self.path.rstrip("/") != "/v1/models":
                return self._json(404, {"error": {"message": f"no route {self.path}"}})
            data = [{"id": m, "object": "model", "owned_by": "tests"} for m in server.models]
            self._json(200, {"object": "list", "data": data})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            if not self._authorised():
                return None
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._json(404, {"error": {"message": f"no route {self.path}"}})
            reply = server.next_reply(body, {k.lower(): v for k, v in self.headers.items()})
            time.sleep(reply.delay)
            try:
                if reply.status >= 400:
                    error = {"message": reply.error or "error", "type": "invalid_request_error"}
                    self._json(reply.status, {"error": error})
                elif body.get("stream"):
                    self._stream(body, reply)
                else:
                    self._json(200, _completion(body, reply))
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client gave up (a timeout test)

        def _json(self, status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _stream(self, body: dict[str, Any], reply: Reply) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Connection", "close")
            self.end_headers()
            for chunk in _chunks(body, reply):
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
            self.wfile.write(b"data: [DONE]\n\n")
            self.wfile.flush()
            self.close_connection = True

    return Handler


def _finish(reply: Reply) -> str:
    return reply.finish_reason or ("tool_calls" if reply.tool_calls else "stop")


def _usage(body: dict[str, Any], reply: Reply) -> dict[str, int]:
    prompt = sum(len(str(m.get("content") or "").split()) for m in body.get("messages", []))
    answer = len((reply.content or "").split()) + sum(
        len(c.json_arguments) // 4 for c in reply.tool_calls)
    return {"prompt_tokens": prompt, "completion_tokens": answer,
            "total_tokens": prompt + answer}


def _completion(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": reply.content}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function",
             "function": {"name": c.name, "arguments": c.json_arguments}}
            for c in reply.tool_calls]
    return {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion",
            "created": int(time.time()), "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": message, "finish_reason": _finish(reply)}],
            "usage": _usage(body, reply)}


def tokens(text: str) -> list[str]:
    """How the server splits text into streamed tokens: words with their trailing space."""
    return re.findall(r"\S+\s*|\s+", text)


def _chunks(body: dict[str, Any], reply: Reply) -> Iterator[dict[str, Any]]:
    """SSE chunks: role, content tokens, each tool call (name, then its arguments in two
    pieces), the finish reason, and usage when ``stream_options.include_usage`` asks for it."""
    head = {"id": f"chatcmpl-{uuid.uuid4().hex[:12]}", "object": "chat.completion.chunk",
            "created": int(time.time()), "model": body.get("model", "scripted")}

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {**head, "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}

    yield chunk({"role": "assistant", "content": ""})
    for token in tokens(reply.content or ""):
        yield chunk({"content": token})
    for index, call in enumerate(reply.tool_calls):
        yield chunk({"tool_calls": [{"index": index, "id": call.id, "type": "function",
                                     "function": {"name": call.name, "arguments": ""}}]})
        args = call.json_arguments
        for piece in (args[:len(args) // 2], args[len(args) // 2:]):
            yield chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
    yield chunk({}, _finish(reply))
    if (body.get("stream_options") or {}).get("include_usage"):
        yield {**head, "choices": [], "usage": _usage(body, reply)}


@pytest.fixture
def openai_server() -> Iterator[ScriptedOpenAIServer]:
    """A :class:`ScriptedOpenAIServer` on a free localhost port, empty script; closed after."""
    with ScriptedOpenAIServer() as server:
        yield server
