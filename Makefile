# Two commands on a fresh clone (only Python 3.11 needed): `make run` and `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run test test-fast typecheck flake-check bench lint clean

# crowd-kit goes in with --no-deps after the rest, as the step image installs it: its declared dependencies
# pull transformers and pyarrow, which nothing imports (requirements.txt pins what its aggregation imports).
$(STAMP): requirements.txt requirements-crowdkit.txt requirements-dev.txt pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -r requirements-dev.txt
	$(PY) -m pip install --quiet --no-deps -r requirements-crowdkit.txt
	$(PY) -m pip install --quiet --no-deps --no-build-isolation -e .
	$(PY) -c "import toloka.client, crowdkit.aggregation"
	touch $(STAMP)

run: $(STAMP)  ## the whole flow on the local Toloka, scored against the synthetic truth
	$(PY) -m crowdboxes demo $(ARGS)

# Two pytest workers (CI has 2 cores): each starts the lag-bound background scenarios it may need, so
# more workers would mostly add copies of them. mypy runs beside the tests, in their idle waits.
WORKERS ?= 2
test: $(STAMP)  ## mypy beside the whole suite (doctests included, $(WORKERS) workers); fails if either fails
	@log=$$(mktemp); $(PY) -m mypy >"$$log" 2>&1 & mypy=$$!; \
	$(PY) -m pytest -q -n $(WORKERS) $(ARGS); tests=$$?; \
	wait $$mypy; typed=$$?; echo "mypy: $$(tail -n 1 "$$log")"; [ $$typed -eq 0 ] || cat "$$log"; rm -f "$$log"; \
	[ $$tests -eq 0 ] && [ $$typed -eq 0 ]

test-fast: $(STAMP)  ## the tests that start no server or step process: the edit loop (under 60 s)
	$(PY) -m pytest -q -m "not server" $(ARGS)

typecheck: $(STAMP)  ## mypy: strict for aggregation/ and the flow runner, basic elsewhere (config in pyproject.toml)
	$(PY) -m mypy

N ?= 10
flake-check: $(STAMP)  ## the whole suite N times (default 10), as make test runs it, beside a CPU burner on every core; one line per run (NEIGHBOUR=suite: a second copy of the suite instead)
	tests/flake_check.sh $(N) -n $(WORKERS) $(ARGS)

bench: $(STAMP)  ## every benchmark (prints tables; slow)
	$(PY) benchmarks/bench_synth.py
	$(PY) benchmarks/bench_local_toloka.py
	$(PY) benchmarks/bench_aggregation.py  # with bench_modes.py's rows of every mode on the local Toloka

clean:
	rm -rf $(VENV) .pytest_cache runs .demo
