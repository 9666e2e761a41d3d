#!/bin/sh
# First start of the Postgres container only: the two databases, the login
# roles the services use, and the extensions of the read model. The
# migrations (the `migrate` job, as the owner) grant the group roles created
# here what their members may do (README, "Database roles").
set -eu
psql -v ON_ERROR_STOP=1 --username postgres --dbname postgres <<SQL
CREATE ROLE second_brain LOGIN PASSWORD '${SB_APP_DB_PASSWORD}';
CREATE ROLE second_brain_reader NOLOGIN;
CREATE ROLE second_brain_writer NOLOGIN;
CREATE ROLE second_brain_query LOGIN PASSWORD '${SB_QUERY_DB_PASSWORD}' IN ROLE second_brain_reader;
CREATE ROLE second_brain_commands LOGIN PASSWORD '${SB_COMMANDS_DB_PASSWORD}' IN ROLE second_brain_writer;
CREATE DATABASE second_brain_events OWNER second_brain;
CREATE DATABASE second_brain_read OWNER second_brain;
SQL
psql -v ON_ERROR_STOP=1 --username postgres --dbname second_brain_read <<SQL
CREATE EXTENSION IF NOT EXISTS vector;
CREATE EXTENSION IF NOT EXISTS pg_trgm;
SQL
