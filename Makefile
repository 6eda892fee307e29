# Everything runs in a local virtualenv, .venv, made on first use. It sees the system's
# site-packages, so a torch that is already installed is reused instead of downloaded again.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed-stamp
PROFILE ?= default
SUBMISSION ?= submissions/finetune.py
ARGS ?=

.PHONY: install score score-all reference check leaderboard ladder test bench clean-cache

install: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[dev]'
	@touch $(STAMP)

score: $(STAMP)
	$(PY) -m harness score $(SUBMISSION) --profile $(PROFILE) $(ARGS)

score-all: $(STAMP)
	$(PY) -m harness score-all --profile $(PROFILE) $(ARGS)

reference: $(STAMP)
	$(PY) -m harness reference --profile $(PROFILE) $(ARGS)

check: $(STAMP)
	$(PY) -m harness check $(SUBMISSION) $(ARGS)

leaderboard: $(STAMP)
	$(PY) -m harness leaderboard --profile $(PROFILE) $(ARGS)

ladder: $(STAMP)
	$(PY) -m harness ladder --profile $(PROFILE) $(ARGS)

test: $(STAMP)
	$(PY) -m pytest -q $(ARGS)

bench: $(STAMP)
	$(PY) -m bench $(ARGS)
