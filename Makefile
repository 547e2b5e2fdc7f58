# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
INSTALLED := $(VENV)/.installed

# Headless Scipion under the repository: no prompts, no network, no usage statistics.
export SCIPION_HOME := $(CURDIR)/.scipion
export SCIPION_USER_DATA := $(CURDIR)/.scipion/userdata
export SCIPION_TESTS := $(CURDIR)/.scipion/data/tests
export SCIPION_DOMAIN := pwem
export SCIPION_NOTIFY := False
export SCIPION_TEST_NOSYNC := 1
export SCIPION_PYTHON := $(CURDIR)/$(PY)
SCIPION_CONFIG_FILE := $(SCIPION_HOME)/config/scipion.conf

.PHONY: demo test install clean

install: $(INSTALLED)

# torch first, by itself: the exact pin resolves to the CPU wheel shipped on this machine's
# disk; everything else in one resolver run so the Scipion pins (numpy, scipy) hold.
$(INSTALLED): setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet torch==2.13.0
	$(PY) -m pip install --quiet -e '.[test]'
	touch $@

$(SCIPION_CONFIG_FILE): $(INSTALLED)
	mkdir -p $(SCIPION_HOME) $(SCIPION_USER_DATA)
	cd $(SCIPION_HOME) && $(CURDIR)/$(PY) -m scipion config --unattended > config.log 2>&1 \
		|| (cat config.log; exit 1)

demo: $(SCIPION_CONFIG_FILE)
	$(PY) -m tomocpt_scipion.demo

test: $(INSTALLED)
	$(PY) -m pytest

clean:
	rm -rf $(VENV) .scipion
