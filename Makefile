# passthrough.gpu — the two commands are `make demo` and `make test`.
# Everything they need is installed or built here, idempotently, into git-ignored
# directories (.venv, .cache, .build), so a fresh clone on Debian 12 works.

SHELL := /bin/bash
VENV := $(CURDIR)/.venv
BIN := $(VENV)/bin
COLL := $(CURDIR)/.build/collections/ansible_collections/passthrough/gpu
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export PATH := $(BIN):$(PATH)
PYTEST_ARGS ?=
# Whole test files to two workers: lab VMs spend much of their time booting and waiting, and the
# simulator tests need little CPU. `make test PYTEST_PARALLEL=` runs them one at a time.
PYTEST_PARALLEL ?= -n 2 --dist loadfile

.PHONY: all deps link unit sanity lint lab-image lab-up lab-down integration vcsim molecule bench test test-fast demo clean

all: test

deps: $(VENV)/.deps-stamp link

$(VENV)/.deps-stamp: tools/bootstrap.sh tests/requirements.txt
	bash tools/bootstrap.sh
	touch $@

# The checkout itself is the collection; ansible finds it through this link.
link:
	@mkdir -p $(dir $(COLL))
	@ln -sfn $(CURDIR) $(COLL)

unit: deps
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

sanity: deps
	bash tools/sanity.sh

# Both lab flavours (grub: the default; systemd-boot: tests/lab/README.md); each is rebuilt only
# when its recipe changes, and the second shares the first's debootstrapped base.
lab-image: deps
	bash tests/lab/build-image.sh
	LAB_FLAVOUR=systemd-boot bash tests/lab/build-image.sh

lab-up: lab-image
	bash tests/lab/start.sh

lab-down:
	bash tests/lab/stop.sh

# The vSphere simulator with the GPU extension (tests/vcsim); rebuilt only when its sources change.
vcsim: deps
	bash tests/vcsim/build.sh

integration: lab-image vcsim
	$(BIN)/pytest $(PYTEST_PARALLEL) tests/integration $(PYTEST_ARGS)

# The molecule scenarios alone (make test runs them too, through tests/integration/test_molecule*.py).
# Run from the root: molecule takes a collection's scenarios from extensions/molecule/.
molecule: lab-image vcsim
	env -u ANSIBLE_CONFIG $(BIN)/molecule test --all

# Measurements, not tests (benchmarks/README.md): benchmarks/results.md from benchmarks/results/*.json;
# lab_sysfs_scan.py boots one lab VM (LAB_BOOT_TIMEOUT 900 s unless set). Exit 1: a goal is missed.
bench: lab-image vcsim
	$(BIN)/python benchmarks/run_all.py

# ansible-lint, production profile (make test runs it too, through tests/integration/test_lint.py).
lint: deps
	$(BIN)/ansible-lint

# Fast loop for development: no sanity, no lab.
test-fast: unit

# The whole suite. Sanity first; one pytest run last so its summary line ends the output.
test: deps sanity lab-image vcsim
	$(BIN)/pytest $(PYTEST_PARALLEL) tests/unit tests/integration $(PYTEST_ARGS)

# site.yml on the lab (a KVM VM, a Proxmox-style VM, an ESXi host in the simulator), twice; the
# second run must change nothing. Ends by saying where the readiness report is.
demo: lab-image vcsim
	$(BIN)/python tools/demo.py

clean:
	-bash tests/lab/stop.sh
	rm -rf .build tests/output .pytest_cache

