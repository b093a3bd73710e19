# The two commands a new user needs: `make demo` and `make test`. Each installs what it needs.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# CPU machines get the CPU build of torch; GPU users install their CUDA torch into .venv first
# (or pass TORCH_SPEC), and the install below keeps it.
TORCH_SPEC ?= torch==2.13.0

.PHONY: install test demo real lint audit score train bench clean-venv table1 table2 table3 table4 table5 table6

$(VENV)/.installed: pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e '.[dev,bench]'
	@touch $@

install: $(VENV)/.installed

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check solo e2e_eval tests bench scripts hydra_plugins

demo: install
	$(PY) -m solo.demo

# The learning check on real pretrained weights (SmolLM2-135M, CPU, about 45 min on 2 cores):
# zero-shot, LoRA, Solo Connection and the peft anchor -> results/real/smollm2-135m.{md,csv,png}
real: install
	$(PY) -m solo.experiments.real $(ARGS)

# make score REFS=references.txt PREDS=predictions.txt [JSON=scores.json]
score: install
	$(PY) -m e2e_eval $(REFS) $(PREDS) $(if $(JSON),--json $(JSON))

# make train ARGS="experiment=table2/solo_r8_s0 profile=tiny"
train: install
	$(PY) -m solo.train $(ARGS)

audit: install
	$(PY) -m solo.methods.audit

# make table2 [profile=tiny] [seeds=1,2,3] [ARGS="launcher=slurm hydra.launcher.partition=gpu"]
table1 table2 table3 table4 table5 table6: install
	$(PY) -m solo.experiments.run_table $(@:table%=%) $(if $(profile),profile=$(profile)) $(if $(seeds),seeds=$(seeds)) $(ARGS)

clean-venv:
	rm -rf $(VENV)
