# Two entry points (see README): `make demo` and `make test`. Both set everything up from nothing.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
# What each test lane adds (one line each, so lanes change apart).
APT_VM := qemu-system-x86 linux-image-amd64 kmod e2fsprogs
APT_SERVE := docker.io chromium chromium-driver curl
APT_BUILD := podman
APT_SECURITY := util-linux
# Real engines drive minirun-runtime beside runc: podman (conmon, netavark networking) and containerd (ctr, runc shim).
APT_PEERS := podman conmon netavark containerd runc
APT_PACKAGES := busybox-static docker-registry tini iproute2 nftables iptables runc libseccomp2 \
                python3-venv apache2-utils ca-certificates skopeo umoci \
                $(APT_VM) $(APT_SERVE) $(APT_BUILD) $(APT_SECURITY) $(APT_PEERS)
BENCH_PACKAGES := podman skopeo umoci hyperfine containerd

.PHONY: setup system venv demo test test-vm lint bench clean

setup: system venv

system:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

venv: $(VENV)/.installed
	@# Byte-compile our sources: with PYTHONDONTWRITEBYTECODE set, every run would otherwise recompile them,
	@# and start-up time is part of what minirun promises.
	@$(PY) -m compileall -q builder runner cache >/dev/null

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@# pip writes no bytecode while PYTHONDONTWRITEBYTECODE is set: compile the dependencies once.
	$(PY) -m compileall -q $(VENV)/lib >/dev/null
	touch $@

demo: setup
	./demo.sh

test: setup
	$(VENV)/bin/ruff check .
	@# The thorough Hypothesis profile (tests/conftest.py): as many examples as any property test asks for.
	HYPOTHESIS_PROFILE=ci $(VENV)/bin/pytest -q -p no:cacheprovider $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-vm

# Pure cgroup v2 on Debian's own kernel: one VM boot (virtme-ng, software emulation) runs the `vm` tests.
# Skips, with the reason, on a host that cannot boot it.
test-vm: setup
	$(PY) tests/kits/vmkit.py $(VM_PYTEST_ARGS)

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

bench: setup
	@missing=$$(for p in $(BENCH_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	[ -z "$$missing" ] || (apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing)
	@failed=; for b in bench/*.py; do $(PY) $$b || failed="$$failed $$b"; done; \
	[ -z "$$failed" ] || { echo "bench: these did not finish:$$failed"; exit 1; }

clean:
	rm -rf $(VENV) build *.egg-info
