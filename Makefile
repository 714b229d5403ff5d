# Two commands matter: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := demo

.PHONY: setup demo test test-fast lint clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[dev,lightning,hf]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	@mkdir -p $(DEMO)
	@test -f $(DEMO)/trainer.key || $(BIN)/pol keygen --out $(DEMO)/trainer
	$(BIN)/pol train --task digits-mlp --out $(DEMO)/run.pol.h5 --key $(DEMO)/trainer.key --every 10 --epochs 1 --seed 0 --force
	$(BIN)/pol verify $(DEMO)/run.pol.h5 --key $(DEMO)/trainer.pub

# The default suite first (under 10 minutes on 2 cores), then the slow tests (the fuzz corpus,
# 20 SIGKILLs of a recording, the workers benchmark's document): CI runs both.
test: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow"
	$(BIN)/python -m pytest -n 2 -q -m slow

test-fast: $(STAMP)
	$(BIN)/python -m pytest -n 2 -q -m "not slow"

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache
