# The two commands that matter: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the test suite talks to: independent MQTT clients, and mosquitto as the benchmark's yardstick.
TEST_DEBS := mosquitto-clients mosquitto iproute2
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint typecheck unit bench debs clean

$(BIN)/gateway: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-deps: pyproject.toml $(BIN)/gateway
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

run: $(BIN)/gateway
	$(BIN)/gateway serve

debs:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

lint: $(VENV)/.test-deps
	$(BIN)/ruff check gateway tests bench
	$(BIN)/ruff format --check gateway tests bench

typecheck: $(VENV)/.test-deps
	$(BIN)/mypy

test: debs $(VENV)/.test-deps lint typecheck
	$(BIN)/pytest -n 2 -q

bench: debs $(VENV)/.test-deps
	$(BIN)/python bench/broker.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/mqttsn.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
