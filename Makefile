# The two commands a newcomer needs:
#   make demo   bring the stack up on local containers and print the URL to browse
#   make test   run every test (lint, unit, conformance, Molecule scenarios)
# Both do their own set-up. `make help` lists the rest.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
PYTHON ?= python3
VENV := .venv
WEB_VENV := .venv-web
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg

.DEFAULT_GOAL := help
MODEL_BASE := build/models
STANDIN_ARCHIVE := build/images/tf-serving-standin.tar

.PHONY: help setup system-deps test-deps venv web-venv images models standin-image collection lint test test-lane-1 test-lane-2 test-all unit molecule demo demo-down bench profile lock clean

help: ## list the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

system-deps: .cache/apt.stamp ## install the Debian packages the controller needs for the demo
.cache/apt.stamp: requirements/apt.txt
	@mkdir -p .cache
	tools/install-debian-packages $<
	@touch $@

# After system-deps: two apt-get runs at once would fight over dpkg's lock.
test-deps: .cache/apt-test.stamp ## install the Debian packages only the tests need (chromium, promtool)
.cache/apt-test.stamp: requirements/apt-test.txt | .cache/apt.stamp
	tools/install-debian-packages $<
	@touch $@

venv: $(VENV)/.installed ## the controller's virtualenv (ansible, molecule, test tools, TensorFlow)
$(VENV)/.installed: requirements/dev.lock.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -r requirements/dev.lock.txt
	@touch $@

web-venv: $(WEB_VENV)/.installed ## the web tier's virtualenv, for the Django app's tests (no TensorFlow)
$(WEB_VENV)/.installed: $(shell git ls-files django_app 2>/dev/null) | venv
	django_app/build-dist build/web-dist
	django_app/setup-test-venv $(WEB_VENV)
	@touch $@

setup: system-deps venv ## what the demo needs on the controller (the tests add test-deps)

# The test hosts the run needs: Debian 12's for the demo and `make test`
# (tests/molecule_matrix.yml runs every scenario on it), Debian 13's as well
# for `make test-all`.
IMAGES ?= testhost-bookworm
images: system-deps ## build the local test-host images (rebuilt only when their recipe changes)
	tests/images/build $(IMAGES)

models: venv ## export the calculator SavedModel (version 1) used by the tests and the demo
	@[ -d $(MODEL_BASE)/calculator/1 ] || $(VENV)/bin/python -m model_src.export --model-base $(MODEL_BASE) --name calculator --version 1

standin-image: images | venv ## build the TF Serving stand-in image (a test fixture, never production) and its archive
	tests/images/build tf-serving-standin
	tests/standin/save-archive $(STANDIN_ARCHIVE)

collection: venv ## build the roles as the collection tarball build/tfsp-serving-<version>.tar.gz
	@mkdir -p build
	ansible-galaxy collection build --force --output-path build

lint: venv ## ansible-lint (production profile), yamllint, ruff, role docs against their specs, ansible-test sanity
	yamllint --strict .
	ansible-lint --offline --profile production
	ruff check .
	ruff format --check .
	$(VENV)/bin/python tools/role_docs.py --check
	tools/collection-sanity

unit: setup test-deps models standin-image web-venv ## every test except the Molecule scenarios
	rc=0; \
	$(WEB_VENV)/bin/pytest django_app || rc=1; \
	pytest model_src tests -m "not molecule" || rc=1; \
	exit $$rc

molecule: setup test-deps images models standin-image ## every Molecule scenario in the CI matrix (tests/molecule_matrix.yml)
	pytest tests -m molecule

# The set-up steps and lint run two at a time (see `demo`), then the tests in
# two lanes at once (below). Lane 2's output is shown as it runs; lane 1's is
# kept in build/test-lane-1.log and printed after it.
test: ## the whole suite, as CI runs it
	$(MAKE) -j2 --output-sync=target setup test-deps images lint models standin-image web-venv
	@mkdir -p build
	rc=0; \
	$(MAKE) test-lane-1 > build/test-lane-1.log 2>&1 & lane_1=$$!; \
	$(MAKE) test-lane-2 || rc=1; \
	wait $$lane_1 || rc=1; \
	echo "---------- lane 1 (build/test-lane-1.log) ----------"; \
	cat build/test-lane-1.log; \
	exit $$rc

# Two lanes on two cores. The role scenarios spend much of their time waiting
# (hosts booting, packages downloading, servers starting), so two at a time
# took 18 minutes against about 40 one after the other. Lane 2 ends with the
# full-stack scenario, whose drills count every failed request under load:
# lane 1 holds more (it ended 4-5 minutes after lane 2's part before the stack),
# so it ends while the stack's hosts are still being created and converged,
# and the drills share the cores with nothing. A new role scenario runs in
# lane 1 unless named in LANE_2_SCENARIOS. `make unit` and `make molecule` run
# the same tests one at a time.
STACK_SCENARIO := molecule/stack
LANE_2_SCENARIOS := nvidia_driver or firewall or calculator_web

test-lane-1: # unit and conformance tests, then the role scenarios not in lane 2
	rc=0; \
	pytest model_src tests -m "not molecule" --durations=15 || rc=1; \
	pytest tests -m molecule -k "not $(STACK_SCENARIO) and not ($(LANE_2_SCENARIOS))" || rc=1; \
	exit $$rc

test-lane-2: # the Django app's tests, the role scenarios of LANE_2_SCENARIOS, then the full stack
	rc=0; \
	$(WEB_VENV)/bin/pytest django_app || rc=1; \
	pytest tests -m molecule -k "$(LANE_2_SCENARIOS)" || rc=1; \
	pytest tests -m molecule -k "$(STACK_SCENARIO)" --durations=10 || rc=1; \
	exit $$rc

test-all: ## the whole suite with every scenario on Debian 12 and 13
	$(MAKE) test MOLECULE_MATRIX=all IMAGES="testhost-bookworm testhost-trixie"

# The set-up steps run two at a time (the images build while pip installs the
# virtualenv), each step's output kept together.
demo: ## bring the stack up on local containers and print the URL
	$(MAKE) -j2 --output-sync=target setup images models standin-image web-venv
	tests/demo/up

bench: venv ## benchmark the local stack (after `make demo`): writes results/
	tests/images/build bench
	cd tests/bench && TF_CPP_MIN_LOG_LEVEL=3 $(CURDIR)/$(VENV)/bin/python -m tfsp_bench $(BENCH_ARGS)

profile: venv ## profile the web tier under wrk (after `make demo`, as root): CPU per process, py-spy top functions
	tests/images/build bench
	cd tests/bench && TF_CPP_MIN_LOG_LEVEL=3 $(CURDIR)/$(VENV)/bin/python -m tfsp_bench.profile $(PROFILE_ARGS)

demo-down: ## tear the local demo stack down
	tests/demo/down

lock: ## re-pin requirements/dev.lock.txt from the .in files
	rm -rf .cache/lock-venv && $(PYTHON) -m venv .cache/lock-venv
	.cache/lock-venv/bin/pip install -q -r requirements/controller.in -r requirements/model.in
	.cache/lock-venv/bin/pip freeze --exclude-editable > requirements/dev.lock.txt
	rm -rf .cache/lock-venv

clean: ## remove virtualenvs and caches (images stay; `docker image rm` them by hand)
	rm -rf $(VENV) $(WEB_VENV) .cache .ansible .pytest_cache build
