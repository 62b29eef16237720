# One Makefile for humans, pre-commit and CI.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
EXTRAS ?= dev,models,servers,ray,pools

.PHONY: install run test lint ruff typecheck pytest test-images format bench chaos soak fuzz clean system-deps ui-assets

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e '.[$(EXTRAS)]'
	touch $@

install: $(VENV)/.installed  ## create .venv with nuvem and everything its tests need

run: install  ## start nuvem with the example stack on http://127.0.0.1:8080
	$(BIN)/nuvem up -f examples/nuvem.yaml  # the banner names the dashboard: /ui

lint: ruff typecheck  ## ruff, and mypy (strict) over src and tests

ruff: install
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: install
	$(BIN)/mypy

format: install
	$(BIN)/ruff check --fix src tests bench examples
	$(BIN)/ruff format src tests bench examples

# mypy runs beside the tests, not before them: on a clean clone it is ~45 s of CPU (~55 s
# wall), and most of the suite waits on servers and worker processes it started. ruff, a
# second, still runs first. Both halves run to the end; either failing fails the target.
test: install system-deps ruff  ## lint, then the whole test suite (mypy alongside)
	$(MAKE) --no-print-directory -j2 typecheck pytest

# The container tests make their Debian base image (debootstrap, cached under
# ~/.cache/nuvem-test-data) when it is missing, inside the run and beside the other tests;
# this makes it ahead, on its own.
test-images: install  ## the container tests' Debian base image, made once and cached
	$(BIN)/python tests/podman_images.py

# Two pytest-xdist workers: most tests wait on the servers and processes they start, so two
# share the two cores well. A module's tests keep to one worker, so do the tests that share
# the Ray cluster and those that build podman images (tests/xdist_scopes.py; loadgroup is
# the --dist it extends). TEST_WORKERS=0 runs them in-process. The 20 slowest are listed at
# the end, to keep an eye on the suite's length.
TEST_WORKERS ?= 2
pytest: install
	$(BIN)/pytest --durations=20 $(if $(filter 0,$(TEST_WORKERS)),,-n $(TEST_WORKERS) --dist loadgroup)

fuzz: install  ## fuzz the parsers of outside bytes with many more examples (profile "fuzz")
	NUVEM_FUZZ_PROFILE=fuzz $(BIN)/pytest tests/fuzz -q --timeout 0 -k "not atheris"
	for target in oip gzip multipart stack; do \
	  $(BIN)/python tests/fuzz/atheris_targets.py $$target -max_total_time=$${FUZZ_SECONDS:-120} -rss_limit_mb=2048 -artifact_prefix=/tmp/nuvem-fuzz- || exit 1; \
	done

system-deps:  ## Debian packages the benchmarks and server tests use (wrk, redis-server, influxd, prometheus, alertmanager, chromium, podman, runc, debootstrap, docker-registry, shellcheck)
	@command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }
	@command -v influxd >/dev/null || { apt-get update -qq && apt-get install -y -qq influxdb; }
	@command -v prometheus >/dev/null || { apt-get update -qq && apt-get install -y -qq prometheus; }
	@command -v prometheus-alertmanager >/dev/null || { apt-get update -qq && apt-get install -y -qq prometheus-alertmanager; }
	@command -v chromium >/dev/null || { apt-get update -qq && apt-get install -y -qq chromium; }
	@command -v podman >/dev/null || { apt-get update -qq && apt-get install -y -qq podman; }
	@test -x /usr/sbin/runc || { apt-get update -qq && apt-get install -y -qq runc; }
	@command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap; }
	@command -v docker-registry >/dev/null || { apt-get update -qq && apt-get install -y -qq docker-registry; }
	@command -v shellcheck >/dev/null || { apt-get update -qq && apt-get install -y -qq shellcheck; }

UI := src/nuvem/gateway/ui
ui-assets:  ## refresh the dashboard's vendored front-end files from the npm lockfile (needs npm)
	cd $(UI) && npm ci --no-audit --no-fund
	cp $(UI)/node_modules/uplot/dist/uPlot.iife.min.js $(UI)/node_modules/uplot/dist/uPlot.min.css $(UI)/static/vendor/
	cp $(UI)/node_modules/uplot/LICENSE $(UI)/static/vendor/uPlot.LICENSE

bench: install system-deps  ## benchmarks: echo against a baseline; async jobs, autoscaling and cluster mode against their goals
	$(BIN)/python bench/echo.py
	$(BIN)/python bench/jobs.py
	$(BIN)/python bench/autoscale.py
	$(BIN)/python bench/cluster.py
	$(BIN)/python bench/observability.py
	$(BIN)/python bench/deploy.py

chaos: install system-deps  ## faults under load (replicas, models, the gateway, Redis, PostgreSQL, a Ray node killed): nothing lost
	$(BIN)/python bench/chaos.py --backend servers --models --cluster

soak: install  ## 10 minutes at 80% of the measured maximum: memory, fds and p99 stay flat
	$(BIN)/python bench/soak.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
