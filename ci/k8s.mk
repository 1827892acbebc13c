# Local Kubernetes test cluster (included by the top Makefile). Everything is cached in
# $(RCH_CACHE) (the rule: ci/cache.sh); see ci/k8s/README.md.
.PHONY: k8s-build images k8s-up k8s-down k8s-status k8s-check-isolation k8s-smoke k8s-env

k8s-build: ## build Kubernetes, etcd, CoreDNS, crictl into the cache; install containerd/runc/CNI (Debian)
	@ci/k8s/build.sh

images: ## build the pause, redis and hook images locally; import them when the local cluster runs
	@ci/images/build.sh

k8s-up: ## start the local single-node cluster (no-op if a reachable cluster is configured; LOCAL_K8S=1 forces)
	@ci/k8s/up.sh

k8s-down: ## stop every process of the local cluster and remove its state, bridge, routes, iptables rules
	@ci/k8s/down.sh

k8s-status: ## processes, node, pods, isolation and smoke checks of the local cluster
	@ci/k8s/status.sh

k8s-check-isolation: ## only the isolation checks (nothing leaves the machine)
	@ci/k8s/check-isolation.sh

k8s-smoke: ## only the smoke check: redis pod reached through a headless Service FQDN
	@ci/k8s/smoke.sh

k8s-env: ## print the exports for the local cluster: eval "$(make -s k8s-env)"
	@ci/k8s/env.sh
