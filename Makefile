# Two commands do all the set-up on a fresh machine:
#   make demo   - train the default model on Fashion-MNIST and print its test accuracy
#   make test   - run the test suite
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# one BLAS thread per test worker: two workers on two cores
TEST_WORKERS ?= 2

.PHONY: demo test install data clean

install: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $(STAMP)

data: $(STAMP)
	@PYTHON=$(PY) sh scripts/ensure-fashion-mnist.sh

# LeNet-5 with the CPU-tuned `fast` recipe, 3 epochs (a few minutes on 2 cores); one torch
# thread, because on a 2-core machine two threads were 3x slower for this small net
# (docs/results.md, "Data pipeline")
demo: $(STAMP) data
	$(VENV)/bin/cnnzoo train lenet5 --data fashion-mnist -c fast --epochs 3 --threads 1

test: $(STAMP) data
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

clean:
	rm -rf $(VENV) runs .pytest_cache
