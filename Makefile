# bci-stream: the two commands are `make demo` and `make test`; each creates .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
# torch is pinned: the CPU build 2.13.0; an unpinned torch pulls several GB of CUDA wheels (revisit: pyproject.toml).
TORCH  := torch==2.13.0

DEMO_RECORDING := build/demo.fif
DEMO_SYNTH     := --seconds 60 --seed 7 --classes 8 --subject 1

# make demo-real / make models: the N170 faces-vs-houses student (issue 11). Training data: subject 01, runs 1-5
# of the shared N170 set; run 6 ships in data/n170/ and is only ever replayed.
N170_DATA      ?= ../shared/data/n170
N170_TRAIN     := $(foreach r,1 2 3 4 5,$(N170_DATA)/sub-01_ses-01_run-0$(r)_eeg.fif)
N170_DEMO      := data/n170/sub-01_ses-01_run-06_eeg.fif
N170_MODEL     := exported/n170-faces-houses.onnx
N170_RECIPE    := --events '^stim/' --label 'stim/(?P<label>face|house)' --tmin 0 --tmax 0.8 --bandpass 1 30 \
                  --reject-uv 150 --split by-recording --baseline xdawn --epochs 20 --seed 0
# The student shortlist, chosen blind to subject 01 (its training runs 1-5 and the demo's run 6): `make
# n170-shortlist` cross-validates N170_CANDIDATES leave-one-run-out on subject 02 only (runs 1 and 2, never
# trained on here) with N170_RECIPE; the shortlist is the two with the highest accuracy there (rule fixed before
# that run). crossval on runs 1-5 then picks the better one and --export retrains it on all five runs.
# Result (2026-12-03, 395 trials, chance 0.506): eegnet+bal 0.577, eegnet 0.549, conv1d+bal 0.521,
# shallow-fbcsp+bal 0.514, shallow-fbcsp 0.511, conv1d 0.486 (xdawn baseline 0.582). The same two students had
# been shortlisted earlier after the subject-01 six-run table (run 6 included) was seen; this blind rerun keeps them.
N170_CANDIDATES := eegnet,eegnet+bal,shallow-fbcsp,shallow-fbcsp+bal,conv1d,conv1d+bal
N170_SUB02     := $(foreach r,1 2,$(N170_DATA)/sub-02_ses-01_run-0$(r)_eeg.fif)
N170_STUDENT   := eegnet,eegnet+bal

.PHONY: demo test lint models bench clean venv demo-real n170-shortlist

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

demo-real: $(STAMP)
	$(BIN)/bci-stream demo --recording $(N170_DEMO) --model $(N170_MODEL) --config configs/daemon.toml \
	    --speed 4 --offline-accuracy

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check bci_stream training tests
	$(BIN)/ruff format --check bci_stream training tests
	$(BIN)/mypy bci_stream training

models: $(STAMP)
	$(BIN)/bci-train models --out-dir exported
	$(BIN)/bci-train valence evaluate --config configs/train-valence-synth.toml --threads 1 --synth \
	    --report build/valence-report.md --json build/valence-report.json
	$(BIN)/bci-train valence export --config configs/train-valence-synth.toml --threads 1 --synth \
	    --metrics build/valence-report.json --out exported/valence-synth.onnx
	$(BIN)/bci-train crossval --recordings $(N170_TRAIN) $(N170_RECIPE) --students $(N170_STUDENT) \
	    --out build/n170-crossval --export $(N170_MODEL)

n170-shortlist: $(STAMP)
	$(BIN)/bci-train crossval --recordings $(N170_SUB02) $(N170_RECIPE) --students $(N170_CANDIDATES) \
	    --out build/n170-shortlist

# the peer baseline (a hand-built mne-lsl pipeline) needs the `bench` extra; the results land in build/bench.json
bench: $(STAMP)
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/bci-stream bench exported/cogninet-synth.onnx --baseline mne-lsl --out build/bench.json

clean:
	rm -rf build runs .pytest_cache .mypy_cache .ruff_cache
