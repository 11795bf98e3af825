# Set-up commands for a fresh machine (Python 3.11). See README.md.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: install demo test bench clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	$(BIN)/pip check
	touch $@

demo: install
	$(BIN)/armdata demo

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile

bench: install
	for f in benchmarks/bench_*.py; do $(BIN)/python $$f || exit 1; done

clean:
	rm -rf $(VENV) armdata-demo
