#!/bin/sh
# Runs once, when the database volume is created (the postgres image's /docker-entrypoint-initdb.d).
# The superuser only prepares: a non-superuser role that owns the application's database, and the
# pgvector extension in it (creating an extension needs a superuser). Migrations and the service
# then connect as that role, never as the superuser.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
  -v app_password="$APP_DB_PASSWORD" <<'SQL'
CREATE ROLE vps LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_password';
CREATE DATABASE vps OWNER vps;
\connect vps
CREATE EXTENSION IF NOT EXISTS vector;
SQL
