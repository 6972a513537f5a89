-- A read-only role for the dashboard: it can read every table of the service's schema,
-- including district tables created later, and can neither write nor create anything.
--
-- Run it once, as the role the service connects with (it owns the tables), e.g.:
--   psql "$DATABASE_URL_FOR_PSQL" -v dashboard=dashboard -v password='...' -v schema=public \
--        -f deploy/dashboard_role.sql
-- Then give the dashboard: postgresql://dashboard:PASSWORD@HOST/DB (and the same search_path).
\set ON_ERROR_STOP on

CREATE ROLE :"dashboard" LOGIN PASSWORD :'password'
  NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT;
GRANT USAGE ON SCHEMA :"schema" TO :"dashboard";
REVOKE CREATE ON SCHEMA :"schema" FROM :"dashboard";
GRANT SELECT ON ALL TABLES IN SCHEMA :"schema" TO :"dashboard";
-- Tables the service creates later (a new district's dataframe_<id>) are readable too:
ALTER DEFAULT PRIVILEGES IN SCHEMA :"schema" GRANT SELECT ON TABLES TO :"dashboard";
-- Cap what a runaway dashboard query can cost.
ALTER ROLE :"dashboard" SET statement_timeout = '60s';
