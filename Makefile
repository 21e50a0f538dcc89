# Suanli: `make run` to start everything, `make test` for the full suite. Needs Python 3.11+, make, Node/npm.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DJANGO_SETTINGS_MODULE := config.settings
# Commands that only import settings (lint, type check, deploy check) need no live database.
OFFLINE_DB := postgres://suanli@localhost:5432/suanli
PROD_ENV := DJANGO_DEBUG=0 SECRET_KEY=check-deploy-$$(date +%s)-a-long-random-secret-key-for-the-deploy-check ALLOWED_HOSTS=suanli.example.com DATABASE_URL=$(OFFLINE_DB) CELERY_BROKER_URL=redis://localhost:6379/0

.PHONY: run test check lint typecheck migrations-check deploy-check security setup messages bench stop-db clean

$(BIN)/.installed: requirements.txt requirements-dev.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	$(BIN)/pip install --quiet --no-deps -e .
	touch $@

node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

messages: $(BIN)/.installed
	$(BIN)/pybabel compile --statistics -d locale -D django

# The matching engine compiled with mypyc into the venv (devtools/build_native.py), rebuilt when its source changes.
# Without a C compiler, or if the build fails, it says so in one line and the pure-Python engine runs.
$(VENV)/suanli-native/.attempted: marketplace/matching.py devtools/build_native.py $(BIN)/.installed
	$(BIN)/python -m devtools.build_native || echo "matching engine: the build step failed; the pure-Python engine will run"
	@mkdir -p $(@D) && touch $@

setup: $(BIN)/.installed $(VENV)/suanli-native/.attempted node_modules/.installed messages

run: setup
	$(BIN)/python -m devtools.run

test: setup
	SUANLI_TESTING=1 $(BIN)/python -m devtools.with_db $(BIN)/pytest $(PYTEST_ARGS)

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: setup
	SUANLI_TESTING=1 DATABASE_URL=$(OFFLINE_DB) $(BIN)/mypy core accounts marketplace metering vouchers green billing config

migrations-check: setup
	SUANLI_TESTING=1 $(BIN)/python -m devtools.with_db $(BIN)/python manage.py makemigrations --check --dry-run

deploy-check: setup
	$(PROD_ENV) $(BIN)/python manage.py check --deploy --fail-level WARNING

# Security gates: bandit over the apps (configured in pyproject.toml; tests are excluded), then pip-audit, strict,
# over the pinned requirements and the installed environment. An unreachable vulnerability database fails the
# gate ("audit NOT performed") unless SUANLI_AUDIT_OFFLINE=warn, which .ci/run sets (see devtools/security_audit.py).
security: setup
	$(BIN)/bandit -c pyproject.toml -q -r core accounts marketplace metering vouchers green billing config devtools
	$(BIN)/python -m devtools.security_audit

check: lint typecheck migrations-check deploy-check security test

stop-db: $(BIN)/.installed
	$(BIN)/python -m devtools.pg stop

clean: stop-db
	rm -rf $(VENV) node_modules .data staticfiles test-output

# Benchmarks: `make bench` (all), `make bench NAME=matching`, `QUICK=1 make bench` for reduced sizes.
bench: setup
	SUANLI_TESTING=1 $(BIN)/python -m devtools.with_db $(BIN)/python -m bench $(NAME)

# API fuzzing (schemathesis, every operation of /api/schema/): many more examples than the bounded run in
# `make test`, plus schemathesis' coverage phase. `make fuzz SUANLI_FUZZ_EXAMPLES=1000` for a longer run.
.PHONY: fuzz faults
fuzz: setup
	SUANLI_TESTING=1 SUANLI_FUZZ_EXAMPLES=$${SUANLI_FUZZ_EXAMPLES:-200} SUANLI_FUZZ_COVERAGE=1 $(BIN)/python -m devtools.with_db $(BIN)/pytest tests/test_api_fuzz.py $(PYTEST_ARGS)

# Fault injection (tests/faults, marker `faults`): real Celery workers killed mid-task, a broker outage while
# business writes continue. Also part of `make test` (about 30 s); this runs only them.
faults: setup
	SUANLI_TESTING=1 $(BIN)/python -m devtools.with_db $(BIN)/pytest -m faults tests/faults $(PYTEST_ARGS)

# Load test (locust in its own process, loopback only): the app under gunicorn on a seeded database of its own,
# LOAD_USERS users (default 30) for LOAD_TIME (default 60s); prints req/s and p50/p95/p99 per endpoint, fails
# above 1% errors. `make load LOAD_USERS=60 LOAD_TIME=120s`.
.PHONY: load
load: setup
	$(BIN)/python -m loadtest.run
