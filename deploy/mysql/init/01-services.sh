#!/bin/bash
# Creates each service's schema (<name>_svc) and a database user of the same name, granted on
# that schema only, for every name in LEDGERLINE_SERVICES (password: <NAME>_DB_PASSWORD).
#
# The mysql image runs this once, when the data volume is empty. The file is not executable,
# so the entrypoint sources it and docker_process_sql (root over the local socket) is available.
# For a service added after the volume was created, run it by hand; it leaves what exists as
# it is (see deploy/README.md):
#   docker compose exec mysql bash /docker-entrypoint-initdb.d/01-services.sh

: "${LEDGERLINE_SERVICES:?LEDGERLINE_SERVICES must list the services, e.g. \"user invoice\"}"

if ! declare -F docker_process_sql >/dev/null; then
    # Run by hand, outside the entrypoint: root over the local socket, the password from the
    # environment rather than the command line.
    docker_process_sql() {
        MYSQL_PWD="${MYSQL_ROOT_PASSWORD}" mysql --protocol=socket -uroot "$@"
    }
fi

ledgerline_create_service_schema() {
    local name=$1
    local password_var password schema
    # The name goes into SQL identifiers: allow only plain names.
    if [[ ! $name =~ ^[a-z][a-z0-9]*$ ]]; then
        echo "01-services.sh: '$name' is not a service name (lower-case letters and digits)" >&2
        return 1
    fi
    password_var="${name^^}_DB_PASSWORD"
    if [[ -z ${!password_var:-} ]]; then
        echo "01-services.sh: $password_var must be set" >&2
        return 1
    fi
    # Escape the password for a single-quoted SQL string.
    password=${!password_var//\\/\\\\}
    password=${password//\'/\'\'}
    schema="${name}_svc"

    # The "_" is escaped in GRANT because it is a wildcard in database names there.
    docker_process_sql --database=mysql <<SQL
CREATE DATABASE IF NOT EXISTS \`${schema}\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS '${schema}'@'%' IDENTIFIED BY '${password}';
GRANT ALL PRIVILEGES ON \`${name}\\_svc\`.* TO '${schema}'@'%';
SQL
    echo "01-services.sh: schema ${schema} and its user are ready"
}

for ledgerline_service in $LEDGERLINE_SERVICES; do
    # Sourced by the entrypoint: a failure must stop the first start, not be passed over.
    ledgerline_create_service_schema "$ledgerline_service" || exit 1
done

unset -f ledgerline_create_service_schema
unset ledgerline_service
