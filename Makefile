# Set-up and entry points for rewriter.  See README.md.
#
#   make demo     run "rewriter scan" on the Linux 6.12 tree and write the
#                 RFC patch series to outgoing/ ("rewriter series")
#   make test     run the test suite (includes end-to-end tests on the tree)
#   make test-fast  the unit tests only (pytest -m unit): seconds, no spatch
#   make verify   check the patch series like a maintainer's CI (kernel builds)
#
# Both install what is missing first: Debian packages (deps), the Python
# virtual environment (venv) and the kernel tree (kernel).

SHELL := /bin/bash

PYTHON       ?= python3
VENV         := .venv
KERNEL_CACHE ?= $(HOME)/.cache/rewriter
KERNEL_TREE  ?= $(KERNEL_CACHE)/linux-6.12
PYTEST_ARGS  ?=
SERIES       ?= outgoing

# apt-get needs root; use sudo only when we are not root already.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)

VENV_STAMP := $(VENV)/.rewriter-installed

.DEFAULT_GOAL := help
.DELETE_ON_ERROR:
.PHONY: help deps venv kernel test test-fast record-facts demo verify bench clean

help:
	@echo 'Targets:'
	@echo '  deps    install missing Debian packages (coccinelle, git-email, xz-utils, python3-venv)'
	@echo '  venv    create $(VENV) and pip install -e ".[test]" (redone when pyproject.toml changes)'
	@echo '  kernel  prepare the Linux 6.12 git tree at $(KERNEL_TREE)'
	@echo '  test    run pytest with REWRITER_KERNEL_TREE set (extra arguments: PYTEST_ARGS=...)'
	@echo '  test-fast  run the unit tests only (pytest -m unit): no spatch, no git, no kernel tree'
	@echo '  record-facts  record again the spatch facts the unit tests read (tests/recorded/)'
	@echo '  demo    run "rewriter scan" on the kernel tree and write the patch series to $(SERIES)'
	@echo '  verify  rewriter check --build --mail, then --boot, on the series in $(SERIES); the boot tests'
	@echo '  bench   time scan, diff and series on the kernel tree against plain spatch; write bench/RESULTS.md'
	@echo '  clean   remove $(VENV) and its stamp (the kernel cache is kept)'
	@echo 'Variables: KERNEL_CACHE=$(KERNEL_CACHE) KERNEL_TREE=$(KERNEL_TREE) PYTHON=$(PYTHON)'

# Install only what is missing, so that a second run costs nothing.
#   spatch          -> coccinelle
#   git send-email  -> git-email ("git send-email -h" exits non-zero even
#                      when installed, so look for the command itself)
#   xz              -> xz-utils (unpacking linux-source-6.12.tar.xz)
#   venv/ensurepip  -> python3-venv (not part of Debian's python3)
#   with WITH_BUILD_DEPS=1 (make verify sets it), also what
#   "rewriter check --build" needs to build kernel objects: BUILD_DEPS
#   (make, gcc, flex, bison, bc, libelf-dev, libssl-dev, and the cross
#   compilers for the arm and powerpc files of the series).  perl, for
#   checkpatch.pl, comes with git.
BUILD_DEPS := make gcc libc6-dev flex bison bc libelf-dev libssl-dev \
              gcc-arm-linux-gnueabihf gcc-powerpc64le-linux-gnu
# with WITH_BOOT_DEPS=1 (make verify sets it), also what "rewriter check
# --boot" needs: the kernel build tools above, qemu-system-x86_64, a static
# busybox for the initramfs, ccache for the kernel builds, and cpio (kept
# for looking into the initramfs by hand; rewriter writes it itself).
BOOT_DEPS := make gcc libc6-dev flex bison bc libelf-dev libssl-dev \
             qemu-system-x86 busybox-static ccache cpio
deps:
	@missing=; \
	command -v spatch >/dev/null 2>&1 || missing="$$missing coccinelle"; \
	[ -x "$$(git --exec-path)/git-send-email" ] || missing="$$missing git-email"; \
	command -v xz >/dev/null 2>&1 || missing="$$missing xz-utils"; \
	$(PYTHON) -c 'import ensurepip, venv' >/dev/null 2>&1 || missing="$$missing python3-venv"; \
	if [ -n "$(WITH_BUILD_DEPS)$(WITH_BOOT_DEPS)" ]; then \
	    for pkg in $(if $(WITH_BUILD_DEPS),$(BUILD_DEPS)) $(if $(WITH_BOOT_DEPS),$(BOOT_DEPS)); do \
	        dpkg-query -W -f='$${Status}\n' "$$pkg" 2>/dev/null | grep -q '^install ok installed' \
	            || missing="$$missing $$pkg"; \
	    done; \
	fi; \
	if [ -z "$$missing" ]; then \
	    echo "deps: spatch, git send-email, xz and python venv are present$(if $(WITH_BUILD_DEPS), (with the kernel build tools))$(if $(WITH_BOOT_DEPS), (with the boot check's tools))"; \
	else \
	    echo "deps: installing$$missing"; \
	    $(SUDO) apt-get update -q && \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	fi

venv: $(VENV_STAMP)

# deps is order-only: it must run first (python3-venv), but it must not make
# the stamp out of date.
$(VENV_STAMP): pyproject.toml | deps
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --disable-pip-version-check -e '.[test]'
	touch $@

kernel: deps
	KERNEL_CACHE='$(KERNEL_CACHE)' KERNEL_TREE='$(KERNEL_TREE)' bash scripts/prepare-kernel.sh

# pytest exits with 5 when it collected no tests; that is a failure too.
test: deps venv kernel
	rc=0; \
	REWRITER_KERNEL_TREE='$(KERNEL_TREE)' $(VENV)/bin/python -m pytest -q $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo 'make test: pytest collected no tests' >&2; fi; \
	exit $$rc

# The tests marked unit (pyproject.toml): in-process, on recorded input.
test-fast: venv
	rc=0; \
	$(VENV)/bin/python -m pytest -q -m unit $(PYTEST_ARGS) || rc=$$?; \
	if [ $$rc -eq 5 ]; then echo 'make test-fast: pytest collected no tests' >&2; fi; \
	exit $$rc

# The spatch facts of tests/recorded/, made again from the fixture tree and
# the kernel tree (after a change to the cocci rules or to what they print).
record-facts: deps venv kernel
	$(VENV)/bin/python tests/record_facts.py --kernel-tree '$(KERNEL_TREE)'

# The series' branch and version record go into KERNEL_TREE; --force
# replaces those of the last demo, and SERIES.  Without a git identity in
# the tree the series is signed by a placeholder demo author.
# The scan marks three calls of 6.12 for review; demo/linux-6.12.plan.toml
# is the plan a reviewer settled them in (DEMO_PLAN).
DEMO_AUTHOR := rewriter demo <rewriter-demo@example.invalid>
DEMO_PLAN   ?= demo/linux-6.12.plan.toml
demo: deps venv kernel
	$(VENV)/bin/rewriter scan --tree '$(KERNEL_TREE)'
	@if git -C '$(KERNEL_TREE)' var GIT_AUTHOR_IDENT >/dev/null 2>&1; then \
	    set -x; $(VENV)/bin/rewriter series --tree '$(KERNEL_TREE)' --plan '$(DEMO_PLAN)' -o '$(SERIES)' --force; \
	else \
	    set -x; $(VENV)/bin/rewriter series --tree '$(KERNEL_TREE)' --plan '$(DEMO_PLAN)' -o '$(SERIES)' --force --author '$(DEMO_AUTHOR)'; \
	fi

# The whole check of the real series, as a maintainer's CI would run it:
# checkpatch, every commit built (x86_64, arm, powerpc; the build cache is
# $(KERNEL_CACHE)/build), and the git send-email round trip; then check
# --boot (the base's and the series' kernels booted in qemu with every
# pmd_same() failure path forced), and the boot tests that need kernel
# builds: a series whose map_pte() leaves pvmw->ptl set must fail.  The series is
# read from SERIES; when it is not there, "make demo" is asked to write it.
verify: venv kernel
	@$(MAKE) --no-print-directory deps WITH_BUILD_DEPS=1 WITH_BOOT_DEPS=1
	@if ! ls '$(SERIES)'/*.patch >/dev/null 2>&1; then $(MAKE) --no-print-directory demo; fi
	@ls '$(SERIES)'/*.patch >/dev/null 2>&1 || { \
	    echo "make verify: no patch series in $(SERIES)/; write it with" \
	         "'$(VENV)/bin/rewriter series --tree $(KERNEL_TREE) -o $(SERIES)'" >&2; exit 1; }
	@mkdir -p build
	REWRITER_BUILD_CACHE='$(KERNEL_CACHE)/build' $(VENV)/bin/rewriter check --tree '$(KERNEL_TREE)' --series '$(SERIES)' \
	    --build --mail --mbox build/verify.mbox
	REWRITER_BUILD_CACHE='$(KERNEL_CACHE)/build' REWRITER_BOOT_TESTS=1 REWRITER_KERNEL_TREE='$(KERNEL_TREE)' \
	    $(VENV)/bin/python -m pytest -q tests/test_boot.py
	REWRITER_BUILD_CACHE='$(KERNEL_CACHE)/build' $(VENV)/bin/rewriter check --tree '$(KERNEL_TREE)' --series '$(SERIES)' \
	    --boot | tee build/verify-boot.txt; exit $${PIPESTATUS[0]}

# Timings against a plain spatch pass over the same tree, written to
# bench/RESULTS.md (see bench/run.py).  Takes some minutes: every figure is
# a median of BENCH_RUNS runs, and the growth runs scan up to 1000 calls.
BENCH_RUNS ?= 3
# Byte-compiled first, as Python does on a first run unless told not to
# (PYTHONDONTWRITEBYTECODE): a warm series would otherwise spend a tenth of
# its time compiling rewriter's own modules.
bench: deps venv kernel
	$(VENV)/bin/python -m compileall -q rewriter
	$(VENV)/bin/python bench/run.py --tree '$(KERNEL_TREE)' --runs $(BENCH_RUNS)

clean:
	rm -rf $(VENV) rewriter.egg-info
