# Two commands a newcomer needs: `make serve` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: serve test lint bench clean

$(BIN)/libervia: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $(BIN)/libervia

# Starts the gateway on the embedded file storage under ./data, with development secrets generated once into
# .secrets.toml (git-ignored). Production deployments set LIBERVIA_AUTH_PEPPER and ADMIN_TOKEN instead.
serve: $(BIN)/libervia
	$(BIN)/python scripts/dev_secrets.py .secrets.toml
	$(BIN)/libervia serve

test: $(BIN)/libervia
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/python -m pytest -n 2 -p no:cacheprovider

bench: $(BIN)/libervia
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache
