# Two commands do all set-up on a fresh machine: `make run` and `make test`.
VENV := .venv
PY := $(VENV)/bin/python
# The CPU build of torch lies on this machine's disk; pinning it keeps pip from fetching CUDA builds.
TORCH := torch==2.13.0

.PHONY: run test clean

$(VENV)/.base: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q $(TORCH)
	$(PY) -m pip install -q -e .
	touch $@

# The gguf extra builds llama.cpp (several minutes, once) so that the llama.cpp interop test runs.
$(VENV)/.dev: $(VENV)/.base
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" $(PY) -m pip install -q -e '.[dev,gguf]'
	touch $@

run: $(VENV)/.base
	$(VENV)/bin/quantgpt run

test: $(VENV)/.dev
	$(PY) -m pytest -q -n 2 --dist loadgroup --timeout 600

clean:
	rm -rf $(VENV) build src/*.egg-info
