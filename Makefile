# The two set-up commands of the README are `make demo` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin
EXAMPLE = examples/media/ravdess-happy-actor05.mp4

.PHONY: demo test install install-dev lint bench

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

install: $(BIN)/python
	$(BIN)/pip install --quiet -e .
	$(BIN)/affectgraph models pull

install-dev: $(BIN)/python
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/affectgraph models pull
	$(BIN)/affectgraph models pull smollm2-135m-instruct

demo: install
	$(BIN)/affectgraph analyze $(EXAMPLE) --exclude-group ravdess_speech/actor05 --json out/example.json --report out/example.html

test: install-dev
	$(BIN)/python -m pytest

lint:
	$(BIN)/ruff check affectgraph tests benchmarks
	$(BIN)/mypy affectgraph

bench:
	$(BIN)/python benchmarks/analyze_speed.py
