# `make run` and `make test` work on a fresh machine: they create .venv, install the pinned
# requirements and generate the protobuf modules first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PROTOS := $(wildcard api_proto/*.proto)
GENERATED := $(PROTOS:.proto=_pb2.py)
RUNTIME_STAMP := $(VENV)/.runtime-installed
TEST_STAMP := $(VENV)/.test-installed
PYTEST_ARGS ?=
# Test processes (pytest-xdist): most tests wait on servers, workers and subprocesses, so two
# processes on two cores halve the run (each has its own redis-server; a file's tests stay together).
TEST_WORKERS ?= 2

.PHONY: run serve worker test bench protos deps clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The .pth file puts the project root on the venv's path, so scripts anywhere (like the guide's
# client, examples/guide_client.py) can `from api_proto import ...`.
$(RUNTIME_STAMP): requirements.txt | $(BIN)/python
	$(BIN)/pip install -q -r requirements.txt
	echo "$(CURDIR)" > "$$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/gpu_quant_platform.pth"
	touch $@

$(TEST_STAMP): requirements-test.txt $(RUNTIME_STAMP)
	$(BIN)/pip install -q -r requirements-test.txt
	touch $@

api_proto/%_pb2.py: api_proto/%.proto $(RUNTIME_STAMP)
	$(BIN)/python -m grpc_tools.protoc -I . --python_out=. --grpc_python_out=. --pyi_out=. $<

# The SDK's own copy of the stubs (gpu_quant/_proto, imports made relative); `pip install .` makes it too.
SDK_STUBS := gpu_quant/_proto/jobs_pb2.py

$(SDK_STUBS): $(PROTOS) gpu_quant/_proto_build.py $(RUNTIME_STAMP)
	$(BIN)/python gpu_quant/_proto_build.py

protos: $(GENERATED) $(SDK_STUBS)

deps: $(RUNTIME_STAMP) protos

run: deps
	$(BIN)/python main_server.py

serve: deps
	$(BIN)/python main_server.py serve

worker: deps
	$(BIN)/python main_server.py worker

test: $(TEST_STAMP) protos
	$(BIN)/python -m pytest -q -n $(TEST_WORKERS) --dist loadfile $(PYTEST_ARGS)
	NUMBA_ENABLE_CUDASIM=1 $(BIN)/python -m pytest -q tests/cudasim

# The anchors (arq needs redis-py < 6) live in their own venv, built here so `make bench`
# compares against them in the same run on a fresh machine too.
ANCHOR_STAMP := bench/.venv/.installed

$(ANCHOR_STAMP): bench/requirements.txt
	test -x bench/.venv/bin/python || $(PYTHON) -m venv bench/.venv
	bench/.venv/bin/pip install -q -r bench/requirements.txt
	touch $@

bench: $(TEST_STAMP) protos $(ANCHOR_STAMP)
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) api_proto/*_pb2.py api_proto/*_pb2_grpc.py api_proto/*_pb2.pyi gpu_quant/_proto/*_pb2*
