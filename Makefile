# The two commands that matter: `make run` and `make test` (see README.md).
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Debian packages the test suite talks to: independent MQTT clients, and mosquitto as the benchmark's yardstick;
# Node.js runs MicroPython's WebAssembly port for the firmware-samples tests; Chromium shows the web page to
# tests/page (driven by Playwright, which uses this one instead of downloading its own). systemd brings
# systemd-analyze, which checks systemd/gateway.service (tests/system/test_systemd.py); mtools, dosfstools and fdisk
# assemble a small disk image the way the SD image build does (tests/image).
TEST_DEBS := mosquitto-clients mosquitto iproute2 nodejs chromium systemd mtools dosfstools fdisk
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: run test lint typecheck unit bench debs clean image image-test

$(BIN)/gateway: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e .
	touch $@

$(VENV)/.test-deps: pyproject.toml $(BIN)/gateway
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

# What the firmware-samples tests (tests/firmware) need beyond the test packages: umqtt.simple from PyPI, which pip
# cannot install (tests/firmware/fetch_umqtt.py says why), and MicroPython's WebAssembly port from npm, as
# tests/firmware/node/package-lock.json pins it. Debian's nodejs may come without npm: then Debian's npm too.
FIRMWARE_NODE := tests/firmware/node
$(VENV)/.firmware-deps: tests/firmware/fetch_umqtt.py $(VENV)/.test-deps
	$(BIN)/python tests/firmware/fetch_umqtt.py
	touch $@

# MQTT.js, the browsers' MQTT client, for the MQTT-over-WebSocket tests (tests/system/test_websocket.py), as
# tests/websocket/node/package-lock.json pins it.
WEBSOCKET_NODE := tests/websocket/node

# Each Node.js project of the tests, installed as its lock file pins it.
%/node_modules/.package-lock.json: %/package-lock.json
	@command -v npm >/dev/null || { echo "installing Debian packages: npm"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq npm; }
	cd $* && npm ci --no-audit --no-fund --loglevel=error
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
	$(BIN)/ruff check gateway tests bench image-build
	$(BIN)/ruff format --check gateway tests bench image-build

typecheck: $(VENV)/.test-deps
	$(BIN)/mypy

test: debs $(VENV)/.test-deps $(VENV)/.firmware-deps $(FIRMWARE_NODE)/node_modules/.package-lock.json \
		$(WEBSOCKET_NODE)/node_modules/.package-lock.json lint typecheck
	$(BIN)/pytest -n 2 -q

bench: debs $(VENV)/.test-deps
	$(BIN)/python bench/broker.py
	$(BIN)/python bench/ingest.py
	$(BIN)/python bench/mqttsn.py
	$(BIN)/python bench/sdwear.py
	$(BIN)/python bench/uplink.py

# The SD image (docs/image.md): built as root on an x86_64 Debian machine, in about 30 minutes; `make image-test`
# boots it under QEMU (several more minutes). Neither is part of `make test`.
IMAGE_VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE := image-build/out/gateway-$(IMAGE_VERSION)-arm64.img
IMAGE_TEST_DEBS := qemu-system-arm openssh-client mtools fdisk

image: $(BIN)/gateway
	PYTHONPATH=image-build $(BIN)/python -m imagebuild.build

image-test: $(VENV)/.test-deps
	@[ -e $(IMAGE) ] || $(MAKE) image
	@missing=""; for p in $(IMAGE_TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi
	PYTHONPATH=image-build $(BIN)/python -m imagebuild.boot_test --image $(IMAGE)

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache $(FIRMWARE_NODE)/node_modules $(WEBSOCKET_NODE)/node_modules
