#!/bin/bash
# Creates the user service's schema and its own database user.
# The mysql image runs this once, when the data volume is empty. The file is not executable,
# so the entrypoint sources it and docker_process_sql (root over the local socket) is available.

: "${USER_DB_PASSWORD:?USER_DB_PASSWORD must be set}"

# Escape the password for a single-quoted SQL string.
user_db_password=${USER_DB_PASSWORD//\\/\\\\}
user_db_password=${user_db_password//\'/\'\'}

# The "_" is escaped in GRANT because it is a wildcard in database names there.
docker_process_sql --database=mysql <<SQL
CREATE DATABASE IF NOT EXISTS \`user_svc\` CHARACTER SET utf8mb4;
CREATE USER IF NOT EXISTS 'user_svc'@'%' IDENTIFIED BY '${user_db_password}';
GRANT ALL PRIVILEGES ON \`user\\_svc\`.* TO 'user_svc'@'%';
SQL

unset user_db_password
