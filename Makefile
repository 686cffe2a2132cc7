# Two commands do everything on a fresh machine:
#   make demo   install into .venv, then segment the bundled sample cases into out/ (with QC pictures)
#   make test   install into .venv, then run the test suite
# PyTorch comes from the CPU wheel (torch==2.13.0); on a GPU machine see README "Installing on a GPU machine".

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/spider-segment: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/spider-segment

demo: install
	@for case in test/cases/*/; do \
		$(BIN)/spider-segment -i $$case/input -o out/$$(basename $$case) --qc || exit 1; \
	done
	@echo "segmentations and QC pictures are in out/"

test: install
	$(BIN)/python -m pytest -q

.PHONY: install demo test
