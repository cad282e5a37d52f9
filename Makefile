# The two commands a new user runs (see README):
#   make demo   set up .venv and run the main job
#   make test   set up .venv and run the whole test suite
# Both need nothing but Python 3.11 (and apt, for Java and a C++ toolchain,
# if they are missing).

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
ALFWORLD_STAMP := $(VENV)/.installed-alfworld
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Extra pytest arguments, e.g. make test PYTEST_ARGS='-m "not slow"'.
PYTEST_ARGS ?=

.PHONY: demo test java build-tools clean

$(STAMP): setup.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@touch $@

# TextWorldExpress runs on the JVM; install one when the machine has none.
java:
	@command -v java >/dev/null 2>&1 || { \
	  echo 'Java not found: installing default-jre-headless'; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq default-jre-headless; }

# ALFWorld's engine compiles jericho and fast-downward-textworld from source.
build-tools:
	@command -v g++ >/dev/null 2>&1 && command -v make >/dev/null 2>&1 && \
	  command -v cmake >/dev/null 2>&1 || { \
	  echo 'C++ build tools not found: installing g++, make, cmake'; \
	  $(SUDO) apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq g++ make cmake; }

# fast-downward-textworld's build runs `python`: it must be the venv's.
$(ALFWORLD_STAMP): $(STAMP) | build-tools
	PATH="$(abspath $(VENV))/bin:$$PATH" $(PY) -m pip install -q -e '.[test,alfworld]'
	@touch $@

test: $(STAMP) $(ALFWORLD_STAMP) java
	$(PY) -m pytest tests -n 2 --dist loadfile -q -rs $(PYTEST_ARGS)

# The main job: a warm start by imitation (skipped once runs/demo/sft/policy
# exists), then G2PO on household-small. Re-running resumes where it stopped.
DEMO_CONFIG := configs/household_small_g2po.py
demo: $(STAMP)
	$(PY) -m experiments.sft --config=$(DEMO_CONFIG) --workdir=runs/demo/sft
	$(PY) -m experiments.train --config=$(DEMO_CONFIG) \
	  --config.model.init_from=runs/demo/sft/policy --workdir=runs/demo/g2po
	@echo 'TensorBoard: $(VENV)/bin/tensorboard --logdir runs/demo'

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache
