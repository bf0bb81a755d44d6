# statefs-qemu: the two commands users need are `make qemu-test` and `make test`.
# Every target installs what it needs first (scripts/setup-host.sh is idempotent and quiet).

VENV    ?= .venv
PY      := $(VENV)/bin/python
ARCH    ?= aarch64
PYTEST_ARGS ?=
# The riscv64 lane of `make test`: the two-boot contract and the short power-cut campaign,
# on the riscv64 image, and that image's bytecode (the aarch64 lane is the whole suite).
RISCV64_LANE := tests/harness/test_harness_vm.py::test_qemu_test_script_passes_the_full_contract \
	tests/powercut/test_powercut_vm.py::test_short_power_cut_campaign_loses_nothing \
	tests/image/test_bytecode.py::test_the_image_ships_bytecode_whenever_a_compiler_exists

.PHONY: help setup test unit lint fmt image qemu-test bench clean

help:
	@echo "make qemu-test   boot the VM and prove the marker contract (installs what is missing)"
	@echo "                 ARCH=riscv64 for the riscv64 guest (default aarch64)"
	@echo "make test        lint + every host test + the QEMU tests, then the riscv64 lane"
	@echo "make unit        host tests only, no VM"
	@echo "make image       build the guest image into build/images/$(ARCH)"
	@echo "make lint        ruff check + format check + mypy (guest/, harness/)"
	@echo "make bench       print the benchmark tables"

setup:
	@./scripts/setup-host.sh

lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy

fmt: setup
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

unit: setup
	$(PY) -m pytest -m "not qemu" $(PYTEST_ARGS)

test: lint
	$(PY) -m pytest $(PYTEST_ARGS)
	$(PY) -m pytest --qemu-arch riscv64 $(RISCV64_LANE) $(PYTEST_ARGS)

image: setup
	$(PY) -m harness image --arch $(ARCH)

qemu-test: setup
	ARCH=$(ARCH) ./scripts/qemu-test.sh

bench: setup
	@$(VENV)/bin/pip install -q --disable-pip-version-check -e '.[bench]'
	$(PY) -m bench

clean:
	rm -rf build .pytest_cache .ruff_cache
