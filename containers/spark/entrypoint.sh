#!/bin/bash
# Entrypoint of the autoroi spark image.
#
#   executor    a Spark-on-Kubernetes executor: the driver (the preprocess step,
#               with master.spark.master = k8s://...) creates executor pods from
#               this image with the single argument "executor" and hands over
#               everything else as SPARK_* environment variables
#   (otherwise) the autoroi command, as in the components image
#
# KFP steps replace the entrypoint with their own command, so neither branch
# runs there. tini (PID 1) forwards signals and reaps the JVM's children.
set -euo pipefail

if [[ "${1:-}" != "executor" ]]; then
    exec tini -- autoroi "$@"
fi

# SPARK_JAVA_OPT_0, _1, ...: the executor's JVM options, in their numeric order
mapfile -t java_opts < <(env | grep '^SPARK_JAVA_OPT_' | sort -t_ -k4 -n | cut -d= -f2-)
classpath="${SPARK_HOME}/conf:${SPARK_HOME}/jars/*${SPARK_EXTRA_CLASSPATH:+:${SPARK_EXTRA_CLASSPATH}}"

exec tini -- java "${java_opts[@]}" \
    -Xms"${SPARK_EXECUTOR_MEMORY}" -Xmx"${SPARK_EXECUTOR_MEMORY}" \
    -cp "${classpath}" \
    org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
    --driver-url "${SPARK_DRIVER_URL}" \
    --executor-id "${SPARK_EXECUTOR_ID}" \
    --cores "${SPARK_EXECUTOR_CORES}" \
    --app-id "${SPARK_APPLICATION_ID}" \
    --hostname "${SPARK_EXECUTOR_POD_IP}" \
    --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID}" \
    --podName "${SPARK_EXECUTOR_POD_NAME}"
