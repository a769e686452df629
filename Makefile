# `make demo` and `make test` each build .venv themselves on a fresh machine.
VENV   := .venv
PY     := $(VENV)/bin/python
export PREFECT_SERVER_ANALYTICS_ENABLED := false

.PHONY: demo test lint serve bench clean sandbox

$(VENV)/.base: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ".[email]"
	touch $@

# torch==2.13.0 is the CPU build that lies on this kind of machine's disk
$(VENV)/.dev: $(VENV)/.base
	$(PY) -m pip install -q -e ".[dev,email,search,studies,torch,gpu,mlflow]"
	touch $@

# bubblewrap sandboxes every evaluation, slirp4netns gives one that asks for the network a
# network of its own: installed here when we may (root with apt-get); elsewhere the README says
# how, and `autoresearch run` says so too.
sandbox:
	@missing=""; command -v bwrap >/dev/null || missing="bubblewrap"; \
	command -v slirp4netns >/dev/null || missing="$$missing slirp4netns"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	  else echo "note: not installed: $$missing; see README, 'The sandbox'"; fi; fi

demo: $(VENV)/.base sandbox
	$(VENV)/bin/autoresearch run artifacts/cooling -n 20 --proposer auto

# two workers, each taking whole files (their fixtures shared): half the time on two cores;
# then, alone on the machine, the tests that time code (a busy neighbour blurs a timing)
test: $(VENV)/.dev sandbox
	$(PY) -m pytest -q -n 2 --dist loadfile -m "not serial"
	$(PY) -m pytest -q -m serial

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

serve: $(VENV)/.base
	$(VENV)/bin/autoresearch serve

bench: $(VENV)/.dev
	$(PY) bench/overhead.py

clean:
	rm -rf $(VENV) runs
