# Releasegate. `make run` starts the app with demo data; `make test` runs the tests;
# `make bench` measures it against the machine's own baselines (bench/README.md).
# Debian's own interpreter when there is one (not a pyenv or other shim first on the PATH):
# it is what users and CI have.
PYTHON ?= $(if $(wildcard /usr/bin/python3),/usr/bin/python3,python3)
VENV := .venv
BIN := $(VENV)/bin

# What the app and the tests need from Debian, as check:package. A check is a command on the
# PATH, a library the dynamic linker knows (lib*.so.N), or a Python module of $(PYTHON).
# bwrap sandboxes hooks and release commands (the worker refuses to start without it); chromium
# runs the browser tests, whose Playwright driver needs libatomic.so.1.
DEBIAN_NEEDS := git:git bash:bash bwrap:bubblewrap chromium:chromium libatomic.so.1:libatomic1 \
	ensurepip:python3-venv

.PHONY: run test lint worker screenshots bench mutation clean debian-packages debian-package-names

# Installs the missing Debian packages when run as root; otherwise names them in one sentence.
# run, test, screenshots, worker and bench check them first (before the virtualenv is made).
debian-packages:
	@missing=""; for need in $(DEBIAN_NEEDS); do check=$${need%%:*}; package=$${need#*:}; \
	  case $$check in \
	    lib*.so.*) PATH="$$PATH:/sbin:/usr/sbin" ldconfig -p | grep -q "$$check " ;; \
	    ensurepip) $(PYTHON) -c 'import ensurepip' 2>/dev/null ;; \
	    *) command -v $$check >/dev/null ;; \
	  esac || missing="$$missing $$package"; done; \
	[ -z "$$missing" ] && exit 0; \
	if [ "$$(id -u)" = 0 ]; then echo "Installing the missing Debian packages:$$missing"; \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $$missing; \
	else echo "Releasegate needs Debian packages that are not installed: run 'sudo apt-get install$$missing' and then make again."; exit 1; fi

# For .ci/run, which installs them all as on a new machine.
debian-package-names:
	@echo $(foreach need,$(DEBIAN_NEEDS),$(lastword $(subst :, ,$(need))))

$(BIN)/activate: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(BIN)/activate

run: debian-packages $(BIN)/activate
	$(BIN)/python scripts/run_local.py

test: debian-packages $(BIN)/activate
	$(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/activate
	$(BIN)/ruff check .

screenshots: debian-packages $(BIN)/activate
	$(BIN)/python scripts/screenshots.py

worker: debian-packages $(BIN)/activate
	$(BIN)/python -m worker

# mutmut over the rule modules (docs/testing.md); ARGS: mutant name globs, or --report.
$(VENV)/.mutation-installed: $(BIN)/activate scripts/mutation-requirements.txt
	$(BIN)/pip install --quiet -r scripts/mutation-requirements.txt
	touch $@

mutation: debian-packages $(VENV)/.mutation-installed
	$(BIN)/python scripts/mutation.py $(ARGS)

# wrk comes from Debian; the profilers only from bench/requirements.txt, never the app's requirements.
$(VENV)/.bench-installed: $(BIN)/activate bench/requirements.txt
	$(BIN)/pip install --quiet -r bench/requirements.txt
	touch $@

bench: debian-packages $(VENV)/.bench-installed
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -qq && apt-get install -y -qq wrk; } \
		|| { echo "wrk is missing: install it (Debian: sudo apt-get install wrk) and run make bench again."; exit 2; }
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) instance .pytest_cache mutants
