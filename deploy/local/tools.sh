#!/usr/bin/env bash
# Installs the operations tools the tests run for real, from Debian's packages (no Docker engine here):
#   prometheus, promtool            (package prometheus)
#   prometheus-alertmanager, amtool (package prometheus-alertmanager)
#   docker-compose                  (package docker-compose; only `config -q` is used, no engine needed)
#   openssl                         (the local broker's TLS certificates)
#   kcat                            (a librdkafka producer: the tests publish with its default partitioner)
#   chromium                        (headless: the audit report's test renders it and takes its screenshot)
# Packages already present are left alone. Services are never started: the tests start their own on loopback.
set -euo pipefail

need=()
command -v promtool >/dev/null || need+=(prometheus)
command -v amtool >/dev/null || need+=(prometheus-alertmanager)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v openssl >/dev/null || need+=(openssl)  # kafka.sh makes the TLS listener's CA with it
command -v kcat >/dev/null || need+=(kcat)
command -v chromium >/dev/null || need+=(chromium)
[ ${#need[@]} -eq 0 ] && exit 0

sudo=()
[ "$(id -u)" -ne 0 ] && sudo=(sudo)
echo "installing ${need[*]} from Debian's packages" >&2
# policy-rc.d 101: the packages must not start their services (the tests bind their own ports).
policy=/usr/sbin/policy-rc.d
created=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${sudo[@]}" tee "$policy" >/dev/null
  "${sudo[@]}" chmod +x "$policy"
  created=1
fi
trap '[ $created -eq 1 ] && "${sudo[@]}" rm -f "$policy"' EXIT
"${sudo[@]}" apt-get update -qq >/dev/null || true
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
