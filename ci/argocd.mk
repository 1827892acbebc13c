# Argo CD on the cluster ci/select-cluster.sh selects (the local one, or RCH_TEST_KUBECONFIG + RCH_TEST_CONTEXT;
# never KUBECONFIG), included by the top Makefile. Built from the Go module proxy and cached in
# $(RCH_CACHE)/argocd-<version>; see ci/argocd/README.md.
.PHONY: argocd-build argocd-up argocd-down argocd-status argocd-env gitops-test

argocd-build: ## build Argo CD (all-in-one) and the helm it pins into the cache
	@ci/argocd/build.sh

argocd-up: ## start Argo CD's redis, repo-server and application-controller against the cluster (idempotent)
	@ci/argocd/up.sh

argocd-down: ## stop the Argo CD processes (by pid) and remove their state; ARGOCD_PURGE=1 also removes the namespace
	@ci/argocd/down.sh

argocd-status: ## Argo CD processes, health and Applications
	@ci/argocd/status.sh

argocd-env: ## print the exports for the running Argo CD: eval "$(make -s argocd-env)"
	@ci/argocd/env.sh

gitops-test: bootstrap ## the gitops tests: the chart synced by a real Argo CD from a local Git repository
	.venv/bin/python -m pytest -m gitops tests/gitops
