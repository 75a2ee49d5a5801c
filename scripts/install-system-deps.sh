#!/usr/bin/env bash
# Installs the Debian packages streamrag's local stack and tests need, only those missing.
# Java + Maven (Kafka, Connect and Debezium jars come from Maven Central), PostgreSQL (the
# operational database), Chromium (dashboard test), and the real text corpora used for evaluation
# (the Debian FAQ, man pages, the Debian Policy Manual), and cmake + g++ for llama-cpp-python's sdist. Idempotent; needs root or sudo for apt-get.
set -euo pipefail

need=()
command -v java >/dev/null 2>&1 || need+=(default-jdk-headless)
command -v mvn >/dev/null 2>&1 || need+=(maven)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
[ -d /usr/share/doc/debian-faq ] || need+=(debian-faq)
[ -d /usr/share/doc/debian-policy/policy.html/_sources ] || need+=(debian-policy)
command -v groff >/dev/null 2>&1 || need+=(groff-base)
command -v man >/dev/null 2>&1 || need+=(man-db)
[ -d /usr/share/man/man2 ] && ls /usr/share/man/man2 | grep -q . || need+=(manpages-dev)
dpkg -s manpages >/dev/null 2>&1 || need+=(manpages)
# Only to build llama-cpp-python from its sdist where no prebuilt wheel is at hand.
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v g++ >/dev/null 2>&1 || need+=(g++)

if [ ${#need[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
echo "system packages to install: ${need[*]}"
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO=sudo; else
    echo "error: not root and no sudo; install them yourself: apt-get install -y ${need[*]}" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# Man pages are excluded by some minimal images (dpkg path-exclude); allow them for the eval corpus.
if [ -f /etc/dpkg/dpkg.cfg.d/excludes ]; then $SUDO sed -i '/usr\/share\/man/d' /etc/dpkg/dpkg.cfg.d/excludes || true; fi
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
echo "system packages: installed ${need[*]}"
