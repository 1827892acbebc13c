# The tool cache of the project, ONE rule for every script (sourced, not executed); the Makefile and
# tests/paths.py spell the same rule: RCH_CACHE, else $XDG_CACHE_HOME/redis-cluster-helm, else
# ~/.cache/redis-cluster-helm.
# shellcheck shell=bash
RCH_CACHE=${RCH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/redis-cluster-helm}
