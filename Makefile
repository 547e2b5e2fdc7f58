# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed
# A second environment with the engine alone: no Scipion, the newest numpy/scipy/MONAI
# the resolver gives (what a GPU workstation's engine environment installs).
ENGINE_VENV := .venv-engine
ENGINE_PY := $(ENGINE_VENV)/bin/python
ENGINE_INSTALLED := $(ENGINE_VENV)/.installed
# The template-matching peer of the accuracy benchmark, pyTME, in its own environment.
BENCH_VENV := .venv-bench
PYTME_VERSION := 0.3.6
# The linter and formatter (rules in ruff.toml), pinned so formatting does not drift.
RUFF_VERSION := 0.17.6

# Headless Scipion under the repository: no prompts, no network, no usage statistics.
export SCIPION_HOME := $(CURDIR)/.scipion
export SCIPION_USER_DATA := $(CURDIR)/.scipion/userdata
export SCIPION_TESTS := $(CURDIR)/.scipion/data/tests
export SCIPION_DOMAIN := pwem
export SCIPION_NOTIFY := False
export SCIPION_TEST_NOSYNC := 1
export SCIPION_PYTHON := $(CURDIR)/$(PY)
SCIPION_CONFIG_FILE := $(SCIPION_HOME)/config/scipion.conf

.PHONY: demo test test-engine lint install install-engine install-bench device-wheels clean

install: $(INSTALLED)

install-engine: $(ENGINE_INSTALLED)

# torch first, by itself: the exact pin resolves to the CPU wheel shipped on this machine's
# disk; everything else in one resolver run so the Scipion pins (numpy, scipy) hold.
$(INSTALLED): setup.py tomocpt_scipion/engine/requirements.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test,engine]'
	touch $@

# One resolver run for the engine's dependencies, then the package itself without Scipion's.
$(ENGINE_INSTALLED): setup.py tomocpt_scipion/engine/requirements.txt
	test -x $(ENGINE_PY) || $(PYTHON) -m venv $(ENGINE_VENV)
	$(ENGINE_PY) -m pip install --quiet torch==2.13.0 -r tomocpt_scipion/engine/requirements.txt pytest \
		ruff==$(RUFF_VERSION)
	$(ENGINE_PY) -m pip install --quiet --no-deps -e .
	touch $@

install-bench: $(BENCH_VENV)/bin/pytme

$(BENCH_VENV)/bin/pytme:
	test -x $(BENCH_VENV)/bin/python || $(PYTHON) -m venv $(BENCH_VENV)
	$(BENCH_VENV)/bin/python -m pip install --quiet pytme==$(PYTME_VERSION)

# The packages the device machine's python3 (3.12: torch with CUDA, numpy 2, scipy, scikit-image,
# pandas, pyarrow) lacks, as wheels for benchmarks/gpu_check.sh to install there: the engine's own
# without their dependencies, pydantic (for imodmodel) with its own.
DEVICE_PYTHON_VERSION ?= 3.12
DEVICE_WHEEL_PLATFORM := --only-binary=:all: --python-version $(DEVICE_PYTHON_VERSION) --implementation cp \
	--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64
device-wheels: $(INSTALLED)
	rm -rf .whl
	$(PY) -m pip download --quiet --no-deps $(DEVICE_WHEEL_PLATFORM) -d .whl monai mrcfile starfile imodmodel
	$(PY) -m pip download --quiet $(DEVICE_WHEEL_PLATFORM) -d .whl pydantic

$(SCIPION_CONFIG_FILE): $(INSTALLED)
	mkdir -p $(SCIPION_HOME) $(SCIPION_USER_DATA)
	cd $(SCIPION_HOME) && $(CURDIR)/$(PY) -m scipion config --unattended > config.log 2>&1 \
		|| (cat config.log; exit 1)

demo: $(SCIPION_CONFIG_FILE)
	$(PY) -m tomocpt_scipion.demo

# Lint and format check, the engine tests where Scipion is absent, then the whole suite in the
# Scipion environment.
test: $(INSTALLED) lint test-engine
	$(PY) -m pytest

lint: $(ENGINE_INSTALLED)
	$(ENGINE_PY) -m ruff check .
	$(ENGINE_PY) -m ruff format --check .

test-engine: $(ENGINE_INSTALLED)
	$(ENGINE_PY) -m pytest tests/engine

clean:
	rm -rf $(VENV) $(ENGINE_VENV) $(BENCH_VENV) .scipion
