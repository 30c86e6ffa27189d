"""The LangGraph server: ``langgraph dev`` serves the graphs of langgraph.json on a free localhost
port, and runs go through ``langgraph_sdk`` as any client's would."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from affectgraph.graphs.checkpoints import STATE_TYPES, allowlist, serializer

from .conftest import REPO

CONFIG = REPO / "langgraph.json"
LANGGRAPH = Path(sys.executable).with_name("langgraph")
STARTUP = 90.0  # seconds the server may take to come up on a busy machine


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``langgraph dev`` on a free port, run from a scratch folder (it keeps its dev state in
    ``.langgraph_api`` under the working folder); stopped after the module's tests."""
    if not LANGGRAPH.exists():
        pytest.fail("langgraph-cli is not installed: pip install 'langgraph-cli[inmem]'")
    port, folder = _free_port(), tmp_path_factory.mktemp("langgraph")
    env = {**os.environ, "LANGSMITH_TRACING": "false", "LANGCHAIN_TRACING_V2": "false",
           "LANGGRAPH_CLI_NO_ANALYTICS": "1"}
    log = (folder / "server.log").open("w")
    proc = subprocess.Popen([str(LANGGRAPH), "dev", "--port", str(port), "--no-browser",
                             "--no-reload", "--config", str(CONFIG)],
                            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(url, proc, folder / "server.log")
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _wait_until_up(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + STARTUP
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"langgraph dev exited ({proc.returncode}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    pytest.fail(f"langgraph dev did not answer within {STARTUP:.0f} s:\n{log.read_text()[-3000:]}")


def test_langgraph_json_lets_the_checkpointer_rebuild_the_state_types() -> None:
    config = json.loads(CONFIG.read_text())
    listed = config["checkpointer"]["serde"]["allowed_msgpack_modules"]
    assert [tuple(pair) for pair in listed] == allowlist()
    assert config["graphs"] == {"analysis": "affectgraph.graphs.server:analysis_graph",
                                "chat": "affectgraph.graphs.server:chat_graph"}


def test_the_serializer_rebuilds_state_records(speech_wav: Path) -> None:
    from affectgraph.media import probe

    serde = serializer()
    info = probe(speech_wav)
    assert serde.loads_typed(serde.dumps_typed(info)) == info
    assert len(STATE_TYPES) == len(set(allowlist()))


def test_an_analysis_run_through_the_sdk(server: str, speech_wav: Path) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    (assistant,) = client.assistants.search(graph_id="analysis")
    schemas = client.assistants.get_schemas(assistant["assistant_id"])
    assert set(schemas["context_schema"]["properties"]) == {"options"}
    state = client.runs.wait(None, "analysis", input={"path": str(speech_wav)},
                             context={"options": {"specialists": ["voice"]}})
    assert "__error__" not in state, state
    assert state["skipped"] == {"face": "switched off", "transcript": "switched off"}
    assert [e["id"] for e in state["evidence"]] == ["voice:0"]
    verdict = state["verdict"]
    assert verdict["label"] == "angry" and verdict["grounding"] == 1.0
    assert verdict["rationale"] and all(s["grounded"] for s in verdict["rationale"])
    assert verdict["modality_weights"] == {"voice": 1.0}


def test_a_chat_thread_through_the_sdk(server: str, speech_wav: Path) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    thread = client.threads.create()["thread_id"]
    context = {"options": {"specialists": ["voice"]}, "llm": "none"}

    def ask(question: str, **inputs: str) -> dict:
        message = {"role": "user", "content": question}
        return client.runs.wait(thread, "chat", input={**inputs, "messages": [message]},
                                context=context)

    first = ask("what emotion is it?", path=str(speech_wav))
    answer = first["answers"][-1]
    assert answer["intent"] == "emotion" and answer["answerer"] == "offline"
    assert answer["text"].startswith("The clip reads as angry") and answer["grounded"]
    assert "voice:0" in answer["cites"]
    assert first["messages"][-1]["type"] == "ai" and first["messages"][-1]["content"] == (
        answer["text"])
    second = ask("why?")
    assert len(second["answers"]) == 2 and "angry" in second["answers"][-1]["text"]
    assert second["analysis"] == first["analysis"]  # the thread kept it: not analysed again


def test_bad_context_fails_the_run_naming_the_problem(server: str, speech_wav: Path) -> None:
    from langgraph_sdk import get_sync_client

    client = get_sync_client(url=server)
    with pytest.raises(Exception, match=r"unknown LLM spec 'opnai:x'. Did you mean openai:x\?"):
        client.runs.wait(None, "chat", input={"path": str(speech_wav)},
                         context={"llm": "opnai:x"})
    with pytest.raises(Exception, match=r"(?s)ValidationError.*options\.specialist\n.*"
                                        r"Extra inputs are not permitted"):
        client.runs.wait(None, "analysis", input={"path": str(speech_wav)},
                         context={"options": {"specialist": ["voice"]}})
