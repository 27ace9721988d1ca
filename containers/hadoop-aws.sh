#!/bin/bash
# The Hadoop S3A connector for Spark on this machine: hadoop-aws 3.3.1 and the
# AWS SDK bundle 1.11.901 it was built against, into pyspark's jars folder
# (the venv's Spark home, which the driver, a standalone master and its
# workers all load). Maven Central is not reachable here; PyPI is, and the
# sdist of sagemaker-pyspark 1.4.5 carries exactly these two jars. Fetched at
# set-up (make test-scale), checked against pinned SHA-256 sums, never at run
# time. pyspark 4.3 bundles Hadoop 3.5's client: the 3.3 connector works with
# it given numeric timeouts (autoroi.spark.S3A_DEFAULTS).
#
#   containers/hadoop-aws.sh [PYTHON]        (default .venv/bin/python)
set -euo pipefail
cd "$(dirname "$0")/.."
python="${1:-.venv/bin/python}"
jars="$("${python}" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
declare -A want=(
    [hadoop-aws-3.3.1.jar]=6be50ad8a8b445d2802381b085b2a3ede5c29d353450a6a21f16b2fefa962b6e
    [aws-java-sdk-bundle-1.11.901.jar]=b87175b32a16544cc1b37cf40390eb375833e62bed67f8ce6cde4b7ad6429ead
)
ok=1
for jar in "${!want[@]}"; do
    [[ -f "${jars}/${jar}" ]] && echo "${want[$jar]}  ${jars}/${jar}" | sha256sum -c --status || ok=0
done
[[ ${ok} == 1 ]] && exit 0
sdist_sha=05ca2d5081d7138ce29a8fb0a9cba077f28c825288ed07aed46a82e63c0bf1fb
tmp="$(mktemp -d)"
trap 'rm -rf "${tmp}"' EXIT
echo "hadoop-aws: fetching sagemaker-pyspark 1.4.5 (sdist, 181 MB) from PyPI for its two jars" >&2
# pip (the system Python's: the venv has none) through the machine's index settings
python3 -m pip download -q --no-deps --no-binary :all: --dest "${tmp}" sagemaker-pyspark==1.4.5 >&2
mv "${tmp}"/sagemaker_pyspark-1.4.5.tar.gz "${tmp}/s.tar.gz"
echo "${sdist_sha}  ${tmp}/s.tar.gz" | sha256sum -c --status || { echo "hadoop-aws: the sdist's SHA-256 differs" >&2; exit 1; }
tar -xzf "${tmp}/s.tar.gz" -C "${tmp}" --wildcards '*/deps/jars/hadoop-aws-3.3.1.jar' '*/deps/jars/aws-java-sdk-bundle-1.11.901.jar'
for jar in "${!want[@]}"; do
    src="$(find "${tmp}" -name "${jar}")"
    echo "${want[$jar]}  ${src}" | sha256sum -c --status || { echo "hadoop-aws: ${jar}'s SHA-256 differs" >&2; exit 1; }
    cp "${src}" "${jars}/.${jar}.tmp" && mv "${jars}/.${jar}.tmp" "${jars}/${jar}"
done
echo "hadoop-aws: ${!want[*]} -> ${jars}" >&2
