# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
# Both create .venv if it is missing and install the pinned CPU torch first, so pip never pulls a
# multi-GB CUDA build as a dependency of something else.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
TORCH := torch==2.13.0
STAMP := $(VENV)/.installed

TRL_VENV := .venv-trl
TRL_PY := $(TRL_VENV)/bin/python
TRL_STAMP := $(TRL_VENV)/.installed
TRL := trl==1.16.0

RLLIB_VENV := .venv-rllib
RLLIB_PY := $(RLLIB_VENV)/bin/python
RLLIB_STAMP := $(RLLIB_VENV)/.installed

.PHONY: demo test test-slow test-rllib test-distributed bench-trl lint format clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(STAMP): $(PY) setup.cfg pyproject.toml
	$(PY) -m pip install --quiet $(TORCH)
	$(PY) -m pip install --quiet -e ".[test,baselines]"
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m rlhf_envs.cli demo

test: $(STAMP)
	$(PY) -m pytest -q -n 2

test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow

# The data-parallel tests (2 ranks, gloo, CPU; a few minutes): marked slow, run by .ci/run.
test-distributed: $(STAMP)
	$(PY) -m pytest -q -p no:xdist -m slow tests/test_distributed.py

# Ray RLlib pins gymnasium==1.2.2, so the [rllib] extra lives in a venv of its own (same pinned
# CPU torch first, so pip never pulls a CUDA build).
$(RLLIB_STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(RLLIB_VENV)
	$(RLLIB_PY) -m pip install --quiet --upgrade pip
	$(RLLIB_PY) -m pip install --quiet $(TORCH)
	$(RLLIB_PY) -m pip install --quiet -e ".[rllib]" pytest
	touch $(RLLIB_STAMP)

test-rllib: $(RLLIB_STAMP)
	timeout 900 $(RLLIB_PY) -m pytest -q -p no:xdist -m slow -s tests/test_rllib.py

# TRL (for benchmarks/trl_speed.py's comparison) is not a dependency: it gets a venv of its own,
# pinned CPU torch first, then trl, then this checkout (editable) so the benchmark imports it.
$(TRL_STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(TRL_VENV)
	$(TRL_PY) -m pip install --quiet --upgrade pip
	$(TRL_PY) -m pip install --quiet $(TORCH)
	$(TRL_PY) -m pip install --quiet $(TRL)
	$(TRL_PY) -m pip install --quiet -e ".[baselines]"
	touch $(TRL_STAMP)

# The whole throughput benchmark with TRL's rows (a few minutes; writes benchmarks/results/throughput.json).
bench-trl: $(TRL_STAMP)
	$(TRL_PY) -m benchmarks.throughput

lint: $(STAMP)
	$(PY) -m ruff check . && $(PY) -m ruff format --check .

format: $(STAMP)
	$(PY) -m ruff check --fix . && $(PY) -m ruff format .

clean:
	rm -rf $(VENV) $(RLLIB_VENV) $(TRL_VENV) build *.egg-info
