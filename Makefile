# Two entry points for a fresh machine: `make demo` and `make test` (see README.md).
SHELL := /bin/bash
VENV ?= .venv
PYTHON ?= python3
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(CURDIR)/$(VENV)/bin:$(PATH)

.PHONY: check install install-serving tools cluster-tools charts prometheus checkov clients oci-tools image venv venv-serving generate check-generated lint demo demo-down test test-helm4 test-kubernetes-newest test-under-load e2e cluster-up cluster-down bench bench-cluster bench-autoscaling bench-serving soak soak-queue crd-schemas fuzz-values clean

install: tools venv charts

# The model server's dependencies (torch, diffusers: several GB) only where serving code runs.
install-serving: install venv-serving

tools:
	bash scripts/install-tools.sh

# The local control plane the end-to-end tests run on (kube-apiserver, etcd, kwok, ...) and the
# upstream CRDs it installs; both built or fetched once from the Go module proxy.
cluster-tools: venv build/crds/.complete
	bash scripts/install-cluster-tools.sh

# Rewritten when an add-on version (terraform/addons.yaml) or the script changes.
build/crds/.complete: terraform/addons.yaml scripts/update-crd-schemas.py | venv
	rm -rf build/crds
	cd "$$(mktemp -d)" && go mod init crds >/dev/null 2>&1 && \
	  $(CURDIR)/$(VENV)/bin/python $(CURDIR)/scripts/update-crd-schemas.py --crds $(CURDIR)/build/crds >/dev/null
	touch $@

prometheus:
	bash scripts/install-prometheus.sh

# podman, buildah, skopeo, debootstrap, Debian's docker-registry and shellcheck (Debian packages).
oci-tools:
	bash scripts/install-oci-tools.sh

# The model server image's cpu target, the neuron-standin test target on top of it (the Neuron path
# with a stand-in torch_neuronx), and the pod usage exporter's image; scripts/build-image.sh, cached
# layers, wheels from build/wheels.
image: oci-tools venv-serving
	bash scripts/build-image.sh cpu
	bash scripts/build-image.sh neuron-standin
	bash scripts/build-image.sh pod-usage-exporter

# checkov has many pinned dependencies of its own: it lives in a venv apart from the project's.
CHECKOV_VENV ?= .venv-checkov
checkov: $(CHECKOV_VENV)/.installed

$(CHECKOV_VENV)/.installed:
	test -x $(CHECKOV_VENV)/bin/python || $(PYTHON) -m venv $(CHECKOV_VENV)
	$(CHECKOV_VENV)/bin/pip install --quiet --upgrade pip
	$(CHECKOV_VENV)/bin/pip install --quiet checkov==3.2.469
	touch $@

# The OpenAI API clients the server is tested with (Python SDK, LiteLLM, JS SDK), apart from the
# project's own dependencies: tests/clients/requirements.txt and package.json pin them.
CLIENTS_VENV ?= .venv-clients
clients: $(CLIENTS_VENV)/.installed build/clients-js/.installed

$(CLIENTS_VENV)/.installed: tests/clients/requirements.txt
	test -x $(CLIENTS_VENV)/bin/python || $(PYTHON) -m venv $(CLIENTS_VENV)
	$(CLIENTS_VENV)/bin/pip install --quiet --upgrade pip
	$(CLIENTS_VENV)/bin/pip install --quiet -r tests/clients/requirements.txt
	touch $@

build/clients-js/.installed: tests/clients/package.json
	mkdir -p build/clients-js
	cp tests/clients/package.json build/clients-js/
	npm install --prefix build/clients-js --no-audit --no-fund --silent
	touch $@

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml pod-usage-exporter/pyproject.toml
	test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -e '.[test,cluster]' -e ./pod-usage-exporter
	touch $@

venv-serving: $(VENV)/.installed-serving

# The serving requirements from the wheelhouse the server image is built from too (downloaded once).
$(VENV)/.installed-serving: $(VENV)/.installed serving/pyproject.toml
	bash scripts/download-server-wheels.sh build/wheels
	$(VENV)/bin/pip install --quiet --no-index --find-links build/wheels -r <($(VENV)/bin/python scripts/serving-requirements.py)
	$(VENV)/bin/pip install --quiet --no-index --find-links build/wheels --no-deps -e ./serving
	touch $@

# The charts' file:// dependencies (the library chart, the umbrella's subcharts): helm dependency build.
charts: tools venv
	$(VENV)/bin/nchart deps

# Instance lists, values schemas, chart READMEs and dashboards from their sources; SNAPSHOTS=1 also
# rewrites tests/charts/snapshots/ (review the diff).
generate: tools venv
	$(VENV)/bin/nchart generate
	if [ -n "$(SNAPSHOTS)" ]; then $(VENV)/bin/python -m pytest -q tests/charts/test_snapshots.py --update-snapshots; fi

check-generated: tools venv
	$(VENV)/bin/nchart generate --check

lint: install
	nchart lint

# The stack at work on this machine (scripts/demo.py): the local control plane, the add-ons' real
# controllers, the prod release, the model server answering a prompt, Prometheus, nchart doctor; it
# stays up until `make demo-down`. The YAML alone: `nchart render inf2-24xlarge --env prod`.
demo: install-serving cluster-tools
	$(VENV)/bin/python scripts/demo.py

demo-down: venv
	$(VENV)/bin/python scripts/demo.py --down

# The fast loop (README: "Which check to run when"): formatting, lint, types, nchart lint (the
# generated files' check included) and the unit tests; no image, no control plane, no soak.
check: install-serving build/crds/.complete
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/nchart lint
	$(VENV)/bin/python -m pytest -q -m "not slow and not e2e"

test: install-serving prometheus checkov clients cluster-tools image
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/python -m pytest

# The suite runs with Helm 3 (bin/helm); this runs the parts that drive helm against a cluster again
# with Helm 4 (bin/helm4): the release life cycle (install, upgrade through every environment,
# rollback, uninstall), the release's workloads and `helm test`, the OCI install, the UltraServer
# operator's CRDs (installed from its subchart's crds/), and the API server's dry-run of every render
# (README: "Supported versions"; .ci/run runs it after `make test`).
HELM4_SUITE := tests/e2e/test_lifecycle.py tests/e2e/test_release.py tests/e2e/test_release_oci.py \
  tests/e2e/test_dry_run.py tests/e2e/test_ultraserver_operator.py

test-helm4: install-serving cluster-tools image
	HELM_BIN=$(BIN)/helm4 $(VENV)/bin/python -m pytest -m e2e $(HELM4_SUITE)

# The newest Kubernetes minor EKS supports (README: "Supported versions"); the suite runs on the
# oldest, bin/'s. Its control plane is built into bin/kubernetes-VERSION/ (cold: 8-15 minutes), and
# the parts of the suite that depend on the API version run on it: the dry-run of every render, the
# install and its workloads (my-scheduler as that minor's kube-scheduler with the chart's
# configuration and RBAC), the life cycle, the admission policy, Pod Security admission, DRA and the
# UltraServer operator's CRDs and admission policy.
KUBERNETES_NEWEST := v1.37.2
KUBERNETES_NEWEST_STAGING := v0.37.2
KUBERNETES_SUITE := tests/e2e/test_dry_run.py tests/e2e/test_release.py tests/e2e/test_lifecycle.py \
  tests/e2e/test_admission.py tests/e2e/test_pod_security_admission.py tests/e2e/test_dra.py \
  tests/e2e/test_ultraserver_operator.py

test-kubernetes-newest: install-serving cluster-tools
	bash scripts/install-kubernetes.sh $(KUBERNETES_NEWEST) $(KUBERNETES_NEWEST_STAGING)
	EKS_NEURON_KUBERNETES_BIN=$(BIN)/kubernetes-$(KUBERNETES_NEWEST) $(VENV)/bin/python -m pytest -m e2e $(KUBERNETES_SUITE)

# `make test` three times in a row while two `yes >/dev/null` hogs run (the script's defaults; about
# 70-90 minutes on 2 cores).
test-under-load:
	bash scripts/test-under-load.sh -- $(MAKE) test

e2e: install-serving cluster-tools
	$(VENV)/bin/python -m pytest -m e2e

# The values fuzz at length (README: "Values fuzzing"): DRAWS draws (2000) from SEED (a new one each
# run unless given; `make test` runs 200 from a fixed one).
fuzz-values: install cluster-tools
	VALUES_FUZZ_DRAWS=$(or $(DRAWS),2000) VALUES_FUZZ_SEED=$(or $(SEED),$$(date +%s)) \
	  $(VENV)/bin/python -m pytest -s -q tests/e2e/test_values_fuzz.py -k schema_accepts

cluster-up: install cluster-tools
	nchart cluster up

cluster-down: venv
	nchart cluster down

bench: install
	nchart bench inf2-24xlarge --env prod

bench-cluster: install cluster-tools
	$(VENV)/bin/python bench/cluster/failover.py

# The autoscaling chain with the real controllers (README: "The stack with its real controllers").
bench-autoscaling: install-serving cluster-tools
	HF_HUB_OFFLINE=1 $(VENV)/bin/python bench/cluster/autoscaling.py

bench-serving: install-serving
	HF_HUB_OFFLINE=1 $(VENV)/bin/python bench/serving/loadtest.py

# Ten minutes at twice the server's measured capacity (make test runs a 40 s version).
soak: install-serving
	HF_HUB_OFFLINE=1 $(VENV)/bin/python bench/serving/soak.py --duration 600

# Ten minutes of jobs into a queue worker over SQS and S3 on loopback (make test runs a 40 s version).
soak-queue: install-serving
	HF_HUB_OFFLINE=1 $(VENV)/bin/python bench/serving/queue_soak.py --duration 600

# Regenerates the CRD schemas kubeconform uses (needs the Go module proxy).
crd-schemas: venv
	cd "$$(mktemp -d)" && go mod init crd-schemas >/dev/null 2>&1 && $(CURDIR)/$(VENV)/bin/python $(CURDIR)/scripts/update-crd-schemas.py

clean:
	rm -rf build .pytest_cache
