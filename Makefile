# pointcoc: `make test` and `make demo` set everything up on a fresh machine.
#
# Set-up order matters: torch first, then torch-cluster with --no-build-isolation
# (its setup.py imports torch), then this package. Point PIP_FIND_LINKS at a folder
# holding a torch-cluster wheel built for TORCH_VERSION to skip a 20-35 minute compile.

PYTHON ?= python3
VENV ?= .venv
TORCH_VERSION ?= 2.14.1
TORCHVISION_VERSION ?= 0.29.1
TORCH_CLUSTER_VERSION ?= 1.6.3
PYTEST_ARGS ?=

PY := $(VENV)/bin/python
PIP := $(PY) -m pip
STAMP := $(VENV)/.pointcoc-setup-$(TORCH_VERSION)

.PHONY: setup lint test test-fast demo demo-partseg demo-semseg clean print-torch-version

setup: $(STAMP)

$(PY):
	$(PYTHON) -m venv $(VENV)

$(STAMP): setup.cfg pyproject.toml Makefile | $(PY)
	$(PIP) install "torch==$(TORCH_VERSION)" "torchvision==$(TORCHVISION_VERSION)" setuptools wheel
	$(PIP) install --no-build-isolation "torch-cluster==$(TORCH_CLUSTER_VERSION)"
	@# pip's wheel cache may hold a torch-cluster built for another torch: it installs, then fails to import.
	@$(PY) -c "import torch_cluster" 2>/dev/null || { \
	  echo "torch_cluster does not import with torch $(TORCH_VERSION); rebuilding it from source (20-35 min)"; \
	  $(PIP) install --no-build-isolation --no-cache-dir --force-reinstall --no-deps \
	    --no-binary torch-cluster "torch-cluster==$(TORCH_CLUSTER_VERSION)"; }
	$(PY) -c "import torch, torch_cluster; print('torch', torch.__version__, '| torch_cluster', torch_cluster.__version__)"
	$(PIP) install --no-build-isolation -e ".[dev]"
	touch $(STAMP)

lint: setup
	$(VENV)/bin/ruff check pointcoc scripts tests

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

test-fast: setup
	$(PY) -m pytest -m "not slow" $(PYTEST_ARGS)

# The main job: train a 3D context-cluster model on the built-in demo data (generated on first use).
DEMO_DIR ?= runs/demo-$(shell date +%Y%m%d-%H%M%S)
demo: setup
	$(PY) scripts/train_modelnet.py --dataset demo --model pointcoc_tiny --workers 2 --output-dir $(DEMO_DIR)

# Part segmentation: train the context-cluster U-Net on the built-in demo part set; prints instance / class mIoU.
DEMO_PARTSEG_DIR ?= runs/demo-partseg-$(shell date +%Y%m%d-%H%M%S)
demo-partseg: setup
	$(PY) scripts/train_partseg.py --dataset demo --model pointcoc_seg_tiny --workers 1 --output-dir $(DEMO_PARTSEG_DIR)

DEMO_SEMSEG_DIR ?= runs/demo-semseg-$(shell date +%Y%m%d-%H%M%S)
demo-semseg: setup
	$(PY) scripts/train_semseg.py --dataset demo --model pointcoc_seg_tiny --workers 1 --output-dir $(DEMO_SEMSEG_DIR)

print-torch-version:
	@echo $(TORCH_VERSION)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
