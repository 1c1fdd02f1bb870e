# bci-stream: the two commands are `make demo` and `make test`; each creates .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# torch is pinned: the CPU build 2.13.0; an unpinned torch pulls several GB of CUDA wheels (revisit: pyproject.toml).
TORCH  := torch==2.13.0

DEMO_RECORDING := build/demo.fif
DEMO_SYNTH     := --seconds 60 --seed 7 --classes 8 --subject 1

.PHONY: demo test lint models bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[train,dev,dashboard]"
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/bci-train synth --out $(DEMO_RECORDING) $(DEMO_SYNTH)
	$(BIN)/bci-stream demo --recording $(DEMO_RECORDING) --model exported/cogninet-synth.onnx \
	    --valence-model exported/valence-synth.onnx --config configs/daemon.toml

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check bci_stream training tests
	$(BIN)/ruff format --check bci_stream training tests
	$(BIN)/mypy bci_stream

models: $(STAMP)
	$(BIN)/bci-train models --out-dir exported
	$(BIN)/bci-train valence export --config configs/train-valence-synth.toml --threads 1 --synth --out exported/valence-synth.onnx

bench: $(STAMP)
	$(BIN)/bci-stream bench exported/cogninet-synth.onnx

clean:
	rm -rf build runs .pytest_cache .mypy_cache .ruff_cache
