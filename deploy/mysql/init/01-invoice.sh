#!/bin/bash
# Creates the invoice service's schema and its own database user.
# The mysql image runs this once, when the data volume is empty. The file is not executable,
# so the entrypoint sources it and docker_process_sql (root over the local socket) is available.

: "${INVOICE_DB_PASSWORD:?INVOICE_DB_PASSWORD must be set}"

# Escape the password for a single-quoted SQL string.
invoice_db_password=${INVOICE_DB_PASSWORD//\\/\\\\}
invoice_db_password=${invoice_db_password//\'/\'\'}

# The "_" is escaped in GRANT because it is a wildcard in database names there.
docker_process_sql --database=mysql <<SQL
CREATE DATABASE IF NOT EXISTS \`invoice_svc\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'invoice_svc'@'%' IDENTIFIED BY '${invoice_db_password}';
GRANT ALL PRIVILEGES ON \`invoice\\_svc\`.* TO 'invoice_svc'@'%';
SQL

unset invoice_db_password
