#!/bin/sh
# Entrypoint of the autoroi dashboard image: render the server template with
# the predictor's address (only ${PREDICTOR_*} and ${NGINX_LOCAL_RESOLVERS};
# nginx's own $variables stay), check it, and run nginx in the foreground.
#   PREDICTOR_HOST, PREDICTOR_PORT, PREDICTOR_SCHEME   where /v1 and /v2 go
#   NGINX_LOCAL_RESOLVERS   the DNS servers nginx re-resolves the predictor
#                           with (default: the nameservers of /etc/resolv.conf)
#   DASHBOARD_CONF_DIR      where the rendered server goes (/tmp/nginx/conf.d, which
#                           nginx.conf includes: /tmp is the one writable path, an
#                           emptyDir on Kubernetes, a tmpfs with docker --read-only)
set -eu

if [ -z "${NGINX_LOCAL_RESOLVERS:-}" ]; then
    NGINX_LOCAL_RESOLVERS="$(awk '/^nameserver/ { if ($2 ~ ":") printf "[%s] ", $2; else printf "%s ", $2 }' /etc/resolv.conf)"
    NGINX_LOCAL_RESOLVERS="${NGINX_LOCAL_RESOLVERS:-127.0.0.1}"
fi
export NGINX_LOCAL_RESOLVERS
conf_dir="${DASHBOARD_CONF_DIR:-/tmp/nginx/conf.d}"
mkdir -p "${conf_dir}"
# shellcheck disable=SC2016  # the list of variables envsubst replaces, not an expansion
envsubst '${PREDICTOR_HOST} ${PREDICTOR_PORT} ${PREDICTOR_SCHEME} ${NGINX_LOCAL_RESOLVERS}' \
    </etc/nginx/templates/dashboard.conf.template >"${conf_dir}/dashboard.conf"
if [ "$#" -gt 0 ]; then
    exec "$@"
fi
exec nginx -g 'daemon off;'
