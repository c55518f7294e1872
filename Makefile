# The README's two commands:
#   make run    set up .venv and run the main job on the embedded default data
#   make test   set up .venv and run the test suite (what .ci/run calls)
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
RUN_DIR ?= runs/default

.PHONY: setup run test bench clean

setup: $(VENV)/.installed

$(VENV)/.installed: requirements/cpu.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q -r requirements/cpu.txt
	$(BIN)/python -m pip install -q --no-deps torchrec==1.9.2
	$(BIN)/python -m pip install -q --no-deps -e .
	$(BIN)/python -c "import torchrec, fbgemm_gpu, trl, robustrec, alignment"
	touch $@

run: setup
	$(BIN)/python -m robustrec train --out $(RUN_DIR) --overwrite  # a rerun replaces the demo run (atomically)

test: setup
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) runs .pytest_cache
