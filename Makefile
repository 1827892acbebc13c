# Entry points of the project. `make demo` runs the whole thing; `make test` runs every test.
SHELL := /bin/bash
# The tool cache, one rule everywhere (ci/cache.sh, tests/paths.py): RCH_CACHE, else
# $XDG_CACHE_HOME/redis-cluster-helm, else ~/.cache/redis-cluster-helm. Exported for every script.
CACHE := $(or $(RCH_CACHE),$(or $(XDG_CACHE_HOME),$(HOME)/.cache)/redis-cluster-helm)
export RCH_CACHE := $(CACHE)
export PATH := $(CACHE)/bin:$(CURDIR)/.venv/bin:$(PATH)
PY := .venv/bin/python

.PHONY: bootstrap lint test bench bench-slots chart-docs plugin-package release-dry-run clean demo

bootstrap: ## install every pinned tool (idempotent; seconds when warm)
	@ci/bootstrap.sh

# Linting reaches no cluster: KUBECONFIG=/dev/null for helm and ct.
lint: bootstrap ## ruff, yamllint, helm lint, ct lint, chart README freshness
	ruff check src tests benchmarks ci/*.py
	ruff format --check src tests benchmarks ci/*.py
	yamllint --strict -c ci/lintconf.yaml charts/redis-cluster/Chart.yaml charts/redis-cluster/values.yaml \
	  charts/redis-cluster/ci tests/chart/invalid
	KUBECONFIG=/dev/null helm lint --strict charts/redis-cluster
	KUBECONFIG=/dev/null ct lint --all --config ci/ct.yaml
	$(PY) ci/chart_docs.py --check charts/redis-cluster

test: bootstrap ## every test: static, Redis-level, then Kubernetes (e2e) and Argo CD (gitops)
	@ci/test.sh

bench: bootstrap ## formation benchmark: helm-redis init versus redis-cli --cluster create
	$(PY) benchmarks/formation.py

bench-slots: bootstrap ## slot migration benchmark: atomic (Valkey 9) versus key-by-key MIGRATE, four engines
	ci/engines/fetch.sh
	$(PY) benchmarks/slot_migration.py

chart-docs: bootstrap ## regenerate the chart README values table from values.yaml comments
	$(PY) ci/chart_docs.py charts/redis-cluster

# Signed with KEY (a key name) from KEYRING (a secret keyring file: `gpg --export-secret-keys > FILE`).
plugin-package: bootstrap ## the Helm plugin's packages in dist/plugin (Helm 4, signed with KEY= KEYRING=; Helm 3)
	ci/plugin/package.sh dist/plugin $(if $(KEY),--key '$(KEY)' --keyring '$(KEYRING)')

# REGISTRY (default $$RCH_REGISTRY, the local cluster's) and PREFIX (default release-dry-run/redis-cluster-helm).
release-dry-run: bootstrap ## the release workflow against a loopback registry: image, index, SBOM, cosign, chart
	ci/release/dry-run.sh $(REGISTRY) $(if $(PREFIX),--prefix '$(PREFIX)')

clean:
	rm -rf .venv .pytest_cache .ruff_cache build dist src/*.egg-info

-include ci/k8s.mk
-include ci/argocd.mk

demo: bootstrap ## the whole thing: local Kubernetes (or yours), install, hook, verify, a crash drill
	@ci/demo.sh
