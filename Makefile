# Two commands do everything on a fresh machine:
#   make demo   install into .venv, then segment the sample cases in test/cases into out/ (with QC pictures)
#   make test   install into .venv, then run the test suite
# What gets installed (README "Install"):
#   TORCH   PyTorch build: cpu (default) or a CUDA tag of PyTorch's wheel index, e.g. cu130
#   EXTRAS  the project's extras: dev (default: ONNX Runtime for the CPU, torch, training and test tools);
#           on a GPU machine gpu,train,test (onnxruntime-gpu instead of onnxruntime)
#   e.g.    make test TORCH=cu130 EXTRAS=gpu,train,test
# A torch wheel of that build that pip finds without an index (a local wheel folder in pip's
# find-links) is used first; otherwise it comes from PyTorch's index, TORCH_INDEX.

PYTHON ?= python3
TORCH ?= cpu
TORCH_VERSION := 2.13.0
TORCH_INDEX ?= https://download.pytorch.org/whl/$(TORCH)
EXTRAS ?= dev
VENV := .venv
BIN := $(VENV)/bin

$(BIN)/spider-segment: pyproject.toml
	@echo "installing into $(VENV): torch $(TORCH_VERSION)+$(TORCH), extras [$(EXTRAS)]"
	@$(PYTHON) -m venv $(VENV)
	@$(BIN)/pip install -q --upgrade pip
	@$(BIN)/pip install -q --no-index --no-deps "torch==$(TORCH_VERSION)+$(TORCH)" 2>/dev/null \
		|| $(BIN)/pip install -q "torch==$(TORCH_VERSION)+$(TORCH)" --extra-index-url "$(TORCH_INDEX)"
	@$(BIN)/pip install -q -e ".[$(EXTRAS)]"
	@touch $@

install: $(BIN)/spider-segment

demo: install
	@for case in test/cases/*/; do \
		name=$$(basename "$$case"); mkdir -p "out/$$name"; \
		$(BIN)/spider-segment -i "$$case/input" -o "out/$$name" --qc 2>"out/$$name/log.txt" \
			|| { cat "out/$$name/log.txt"; exit 1; }; \
		echo "$$name: mask and QC picture in out/$$name/ ($$(grep -o 'total [0-9.]* s' "out/$$name/log.txt"))"; \
	done
	@echo "segmentations and QC pictures are in out/"

test: install
	$(BIN)/python -m pytest -q

.PHONY: install demo test
