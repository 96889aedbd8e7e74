# One gate for people and CI: `make demo` runs the platform locally, `make test` runs the suite.
SHELL := /bin/bash
PYTHON ?= $(shell scripts/find-python.sh)
VENV := .venv
BIN := $(VENV)/bin
SAM_VENV := .venv-sam
STAMP := $(VENV)/.installed

.PHONY: install test suite-time test-unit test-integration test-e2e lint typecheck check demo serve invoke image push-image \
        sam-venv validate build bench chaos fuzz reliability cost clean scan deploy-edge iam-map

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[local,dev]'
	@touch $(STAMP)

install: $(STAMP)

# Four processes on two cores: most tests wait on sockets, subprocesses and queues. One test
# module is one unit of work, so a module-scoped fixture (a chaos run, a fuzzing stack) runs once;
# units go out in collection order (tests/e2e/conftest.py: session-stack e2e tests last).
TEST_WORKERS ?= 4
test: $(STAMP)
	$(BIN)/python -m pytest tests -n $(TEST_WORKERS) --dist loadscope --no-loadscope-reorder \
	    --cov=nfse_core --cov=functions --cov=adapters_service --cov=nfse_local --cov-branch \
	    --cov-report=term-missing:skip-covered -q --durations=15

# Runs make test and writes its wall time and test count into the README (bench/suite_time.py).
suite-time: $(STAMP)
	$(BIN)/python -m bench.suite_time

test-unit: $(STAMP)
	$(BIN)/python -m pytest tests/unit -q -m unit

test-integration: $(STAMP)
	$(BIN)/python -m pytest tests/integration -q

test-e2e: $(STAMP)
	$(BIN)/python -m pytest tests/e2e -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(STAMP)
	$(BIN)/mypy nfse_core functions adapters_service nfse_local bench

check: lint typecheck validate test

# The static IAM map of docs/security.md: prints it, or fails with the gaps in template.yaml.
iam-map: $(STAMP)
	$(BIN)/python -m nfse_local.iam_map

demo: $(STAMP)
	$(BIN)/python -m nfse_local.demo

serve: $(STAMP)
	$(BIN)/python -m nfse_local serve

# Run a sample event through its handler against moto: make invoke EVENT=events/emit/valid.json
invoke: $(STAMP)
	$(BIN)/python -m nfse_local invoke $(EVENT)

# aws-sam-cli pins an older boto3 than moto: it lives in its own virtual environment.
$(SAM_VENV)/.installed:
	@test -x $(SAM_VENV)/bin/python || $(PYTHON) -m venv $(SAM_VENV)
	$(SAM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(SAM_VENV)/bin/python -m pip install --quiet 'aws-sam-cli>=1.120,<2' 'cfn-lint>=1.20,<2'
	@touch $@

sam-venv: $(SAM_VENV)/.installed

# sa-east-1 is where the platform deploys (LGPD); us-east-1 is where CloudFront's web ACLs live.
# Then the template resolved for every samconfig environment, region and NetworkMode (names
# within AWS's limits, AutoPause only at 0 ACU, roles it assumes, a route out for the worker).
validate: $(SAM_VENV)/.installed $(STAMP)
	PATH="$(dir $(PYTHON)):$$PATH" $(SAM_VENV)/bin/sam validate --lint --region sa-east-1
	$(SAM_VENV)/bin/cfn-lint --regions us-east-1 sa-east-1 -- template.yaml
	$(SAM_VENV)/bin/cfn-lint --regions us-east-1 -- edge/template.yaml
	$(BIN)/python -m pytest tests/unit/test_template_environments.py -q

build: $(SAM_VENV)/.installed
	PATH="$(dir $(PYTHON)):$$PATH" $(SAM_VENV)/bin/sam build

# IaC scan. checkov pins old packages: it lives in its own virtual environment.
# Suppressions are per resource in template.yaml (Metadata.checkov.skip, each with a reason).
CHECKOV_VENV := .venv-checkov
$(CHECKOV_VENV)/.installed:
	@test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/python -m pip install --quiet 'checkov>=3.2.400,<4'
	@touch $@

scan: $(CHECKOV_VENV)/.installed
	$(CHECKOV_VENV)/bin/checkov --quiet --compact --framework cloudformation \
	    --file template.yaml --file edge/template.yaml --skip-download

# The edge web ACL (CLOUDFRONT scope, which AWS keeps in us-east-1 only) is the companion stack
# edge/template.yaml: deploy it once per account (any main-stack region), then pass the ARN it
# prints as the main stack's EdgeWebAclArn. Needs the AWS CLI and credentials.
# make deploy-edge EDGE_STACK=nfse-edge EDGE_PARAMETERS="WafRateLimit=15000 LogRetentionDays=30"
EDGE_STACK ?= nfse-edge
EDGE_PARAMETERS ?=
deploy-edge:
	aws cloudformation deploy --region us-east-1 --stack-name $(EDGE_STACK) \
	    --template-file edge/template.yaml --no-fail-on-empty-changeset \
	    --tags project=nfse-platform $(if $(EDGE_PARAMETERS),--parameter-overrides $(EDGE_PARAMETERS))
	@echo "WebAclArn, the main stack's EdgeWebAclArn parameter (sam deploy --guided asks for it):"
	@aws cloudformation describe-stacks --region us-east-1 --stack-name $(EDGE_STACK) \
	    --query "Stacks[0].Outputs[?OutputKey=='WebAclArn'].OutputValue" --output text

clean:
	rm -rf .aws-sam .local .pytest_cache .mypy_cache .ruff_cache

# sam build (CoreLayer, BuildMethod makefile): nfse_core + runtime deps for python3.12 on arm64.
# It ships bytecode: /opt is read-only in Lambda, so without it every cold start compiles every
# module (about 3x the import time); unchecked-hash keeps it valid whatever the files' mtimes.
# db/migrations goes in beside nfse_core, where nfse_core.store.migrate finds it (MigrateFn).
build-CoreLayer:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check --no-compile \
	    --platform manylinux2014_aarch64 --implementation cp --python-version 3.12 --only-binary=:all: \
	    --target "$(ARTIFACTS_DIR)/python" -r layers/core/requirements.txt
	cp -R nfse_core "$(ARTIFACTS_DIR)/python/"
	find "$(ARTIFACTS_DIR)/python/nfse_core" -name __pycache__ -prune -exec rm -rf {} +
	mkdir -p "$(ARTIFACTS_DIR)/python/db" && cp -R db/migrations "$(ARTIFACTS_DIR)/python/db/"
	$(PYTHON) -m compileall -q -j 0 --invalidation-mode unchecked-hash "$(ARTIFACTS_DIR)/python"

# Benchmark tables (writes docs/performance.md) and the monthly cost model.
bench: $(STAMP)
	$(BIN)/python -m bench.run

cost: $(STAMP)
	$(BIN)/python -m bench.cost --volume 10000 --volume 1000000 --volume 10000000

# The worker image (needs a Docker engine; none runs on the CI machines) and its ECR repository.
# make ecr-repo creates the repository (IMMUTABLE tags, scan on push, encrypted, lifecycle
# policy: nfse_local/ecr.py) and prints its URI; it can be run again. make push-image builds,
# logs in to ECR, tags with IMAGE_TAG (the commit) and pushes to ECR_REPO (default: the URI
# ensure-repository prints for ECR_NAME in REGION), then prints the stack's WorkerImageUri.
# Tags are immutable: a new image needs a new commit (or IMAGE_TAG=...).
.PHONY: ecr-repo
REGION ?= sa-east-1
ECR_NAME ?= nfse-worker
ECR_REPO ?=
IMAGE_TAG ?= $(shell git rev-parse --short HEAD)
image:
	docker build --platform linux/arm64 -f adapters_service/Dockerfile -t nfse-worker:$(IMAGE_TAG) .

ecr-repo: $(STAMP)
	$(BIN)/python -m nfse_local admin ensure-repository --region $(REGION) --name $(ECR_NAME)

push-image: image $(STAMP)
	@set -euo pipefail; \
	repo="$(ECR_REPO)"; \
	if [ -z "$$repo" ]; then \
	    repo="$$($(BIN)/python -m nfse_local admin ensure-repository --region $(REGION) --name $(ECR_NAME))"; \
	fi; \
	aws ecr get-login-password --region $(REGION) | docker login --username AWS --password-stdin "$${repo%%/*}"; \
	docker tag nfse-worker:$(IMAGE_TAG) "$$repo:$(IMAGE_TAG)"; \
	docker push "$$repo:$(IMAGE_TAG)"; \
	echo "WorkerImageUri=$$repo:$(IMAGE_TAG)"

# The invariants under load, provider faults and worker SIGKILLs (prints a report,
# exits non-zero if one breaks). make chaos CHAOS_N=500 CHAOS_KILLS=3 CHAOS_SEED=7
CHAOS_N ?= 2000
CHAOS_KILLS ?= 6
CHAOS_SEED ?= 1
chaos: $(STAMP)
	$(BIN)/python -m nfse_local.chaos --invoices $(CHAOS_N) --kills $(CHAOS_KILLS) --seed $(CHAOS_SEED)

# The Hypothesis properties and schemathesis with their full example counts: the thorough profile
# of tests/hypothesis_profiles.py (the suite runs a share of each count).
fuzz: $(STAMP)
	$(BIN)/python -m pytest -p bench.case_counter --hypothesis-only --hypothesis-profile=thorough \
	    -q tests/unit tests/integration tests/e2e/test_schemathesis.py

# docs/reliability.md: the chaos run above (same variables), then the Hypothesis properties and the
# hostile-input suites, every figure counted from those runs (bench/reliability.py).
reliability: $(STAMP)
	$(BIN)/python -m bench.reliability --invoices $(CHAOS_N) --kills $(CHAOS_KILLS) --seed $(CHAOS_SEED)
