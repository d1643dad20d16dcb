-- Metabase PostgreSQL driver: connection test, database sync (schemas, tables, fields, PKs, FKs,
-- indexes, JSON unfolding), analysis sample and table preview.
-- Source read: github.com/metabase/metabase src/metabase/driver/postgres.clj @ 008fd6675457cdd62da2265628bed3b725a607ea
-- (+ src/metabase/driver/sql_jdbc/{connection,execute}.clj, sql_jdbc/sync/{describe_database,describe_table}.clj);
-- HoneySQL-built queries are rendered by hand (ANSI quoting, bound values inlined) and cross-checked
-- against a published capture of Metabase 0.62 sync traffic. JDBC-driver queries: github.com/pgjdbc/pgjdbc @ c03db5841 (42.7.8).
-- These queries are replayed by the integration tests against Quiver (see tests/bi/README.md).

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/core/v3/ConnectionFactoryImpl.java runInitialQueries (sent only when server_version < 12)
SET extra_float_digits = 3
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/core/v3/ConnectionFactoryImpl.java runInitialQueries (ApplicationName connection property set by Metabase; version and process uuid vary)
SET application_name = 'Metabase v0.56.0 [00000000-0000-0000-0000-000000000000]'
;;

-- source: metabase/metabase src/metabase/driver/sql_jdbc/connection.clj can-connect-with-spec? (connection test)
-- expect: rows
SELECT 1
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/PgConnection.java getTransactionIsolation (c3p0 reads connection defaults on a new pooled connection)
-- expect: rows
SHOW TRANSACTION ISOLATION LEVEL
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/PgConnection.java getCatalog (c3p0 reads connection defaults on a new pooled connection)
-- expect: rows
-- expect: contains {database}
select current_catalog
;;

-- source: metabase/metabase src/metabase/driver/sql_jdbc/execute.clj set-best-transaction-level! -> pgjdbc/src/main/java/org/postgresql/jdbc/PgConnection.java setTransactionIsolation (every do-with-connection-with-options)
SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ UNCOMMITTED
;;

-- source: metabase/metabase src/metabase/driver/sql_jdbc/sync/describe_database.clj all-schemas -> DatabaseMetaData.getSchemas (driver/syncable-schemas)
-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/PgDatabaseMetaData.java getSchemas
-- expect: rows
-- expect: contains {schema}
SELECT nspname AS "TABLE_SCHEM", current_database() AS "TABLE_CATALOG" FROM pg_catalog.pg_namespace  WHERE nspname <> 'pg_toast' AND (nspname !~ '^pg_temp_'  OR nspname = (pg_catalog.current_schemas(true))[1]) AND (nspname !~ '^pg_toast_temp_'  OR nspname = replace((pg_catalog.current_schemas(true))[1], 'pg_temp_', 'pg_toast_temp_'))  ORDER BY "TABLE_SCHEM"
;;

-- source: metabase/metabase src/metabase/driver/postgres.clj sql-jdbc.sync/current-user-table-privileges (via describe_database.clj have-privilege-fn / build-privilege-map)
-- expect: rows
-- expect: contains {table}
with table_privileges as (
 select
   NULL as role,
   t.schemaname as schema,
   t.objectname as table,
   pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'update') as update,
   pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'select') as select,
   pg_catalog.has_any_column_privilege(current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'insert') as insert,
   pg_catalog.has_table_privilege(     current_user, '"' || replace(t.schemaname, '"', '""') || '"' || '.' || '"' || replace(t.objectname, '"', '""') || '"',  'delete') as delete
 from (
   select schemaname, tablename as objectname from pg_catalog.pg_tables
   union
   select schemaname, viewname as objectname from pg_catalog.pg_views
   union
   select schemaname, matviewname as objectname from pg_catalog.pg_matviews
 ) t
 where t.schemaname !~ '^pg_'
   and t.schemaname <> 'information_schema'
   and pg_catalog.has_schema_privilege(current_user, t.schemaname, 'usage')
)
select t.*
from table_privileges t
;;

-- source: metabase/metabase src/metabase/driver/postgres.clj get-tables-sql / describe-syncable-tables (HoneySQL rendered; bound values inlined: 0, '^pg_', 'information_schema', schema list)
-- expect: rows
-- expect: contains {table}
-- expect: contains {schema}
SELECT "n"."nspname" AS "schema", "c"."relname" AS "name", CASE "c"."relkind" WHEN 'r' THEN 'TABLE' WHEN 'p' THEN 'PARTITIONED TABLE' WHEN 'v' THEN 'VIEW' WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'm' THEN 'MATERIALIZED VIEW' ELSE NULL END AS "type", "d"."description" AS "description", "stat"."n_live_tup" AS "estimated_row_count" FROM "pg_catalog"."pg_class" AS "c" INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "c"."relnamespace" = "n"."oid" LEFT JOIN "pg_catalog"."pg_description" AS "d" ON ("c"."oid" = "d"."objoid") AND ("d"."objsubid" = 0) AND ("d"."classoid" = 'pg_class'::regclass) LEFT JOIN "pg_stat_user_tables" AS "stat" ON ("n"."nspname" = "stat"."schemaname") AND ("c"."relname" = "stat"."relname") WHERE ("c"."relnamespace" = "n"."oid") AND ("n"."nspname" !~ '^pg_') AND ("n"."nspname" <> 'information_schema') AND c.relkind in ('r', 'p', 'v', 'f', 'm') AND ("n"."nspname" IN ('{schema}')) ORDER BY "type" ASC, "schema" ASC, "name" ASC
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/PgConnection.java setTransactionIsolation (c3p0 resets the isolation level when the connection is checked in)
SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL READ COMMITTED
;;

-- source: metabase/metabase src/metabase/driver/postgres.clj driver/db-default-timezone (sync-timezone; sent as "show timezone;")
-- expect: rows
show timezone
;;

-- source: metabase/metabase src/metabase/driver/postgres.clj enum-types (describe-fields-pre-process-xf)
SELECT nspname, typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace WHERE t.oid IN (SELECT DISTINCT enumtypid FROM pg_enum e)
;;

-- source: metabase/metabase src/metabase/driver/postgres.clj sql-jdbc.sync/describe-fields-sql (HoneySQL rendered; :schema-names inlined, no :table-names)
-- source: metabase/metabase src/metabase/driver/sql_jdbc/sync/describe_table.clj describe-fields
-- expect: rows
-- expect: contains {table}
-- expect: contains id
-- expect: contains title
-- expect: contains embedding
SELECT "c"."column_name" AS "name", CASE WHEN "c"."udt_schema" IN ('public', 'pg_catalog') THEN FORMAT('%s', "c"."udt_name") ELSE FORMAT('"%s"."%s"', "c"."udt_schema", "c"."udt_name") END AS "database-type", "c"."ordinal_position" - 1 AS "database-position", "c"."table_schema" AS "table-schema", "c"."table_name" AS "table-name", "pk"."column_name" IS NOT NULL AS "pk?", COL_DESCRIPTION(CAST(CAST(FORMAT('%I.%I', CAST("c"."table_schema" AS TEXT), CAST("c"."table_name" AS TEXT)) AS REGCLASS) AS OID), "c"."ordinal_position") AS "field-comment", (("column_default" IS NULL) OR (LOWER("column_default") = 'null')) AND ("is_nullable" = 'NO') AND NOT ((("column_default" IS NOT NULL) AND ("column_default" LIKE '%nextval(%')) OR ("is_identity" <> 'NO')) AS "database-required", (("column_default" IS NOT NULL) AND ("column_default" LIKE '%nextval(%')) OR ("is_identity" <> 'NO') AS "database-is-auto-increment" FROM "information_schema"."columns" AS "c" LEFT JOIN (SELECT "tc"."table_schema", "tc"."table_name", "kc"."column_name" FROM "information_schema"."table_constraints" AS "tc" INNER JOIN "information_schema"."key_column_usage" AS "kc" ON ("tc"."constraint_name" = "kc"."constraint_name") AND ("tc"."table_schema" = "kc"."table_schema") AND ("tc"."table_name" = "kc"."table_name") WHERE "tc"."constraint_type" = 'PRIMARY KEY') AS "pk" ON ("c"."table_schema" = "pk"."table_schema") AND ("c"."table_name" = "pk"."table_name") AND ("c"."column_name" = "pk"."column_name") WHERE c.table_schema !~ '^information_schema|catalog_history|pg_' AND ("c"."table_schema" IN ('{schema}')) UNION ALL SELECT "pa"."attname" AS "name", CASE WHEN "ptn"."nspname" IN ('public', 'pg_catalog') THEN FORMAT('%s', "pt"."typname") ELSE FORMAT('"%s"."%s"', "ptn"."nspname", "pt"."typname") END AS "database-type", "pa"."attnum" - 1 AS "database-position", "pn"."nspname" AS "table-schema", "pc"."relname" AS "table-name", FALSE AS "pk?", NULL AS "field-comment", FALSE AS "database-required", FALSE AS "database-is-auto-increment" FROM "pg_catalog"."pg_class" AS "pc" INNER JOIN "pg_catalog"."pg_namespace" AS "pn" ON "pn"."oid" = "pc"."relnamespace" INNER JOIN "pg_catalog"."pg_attribute" AS "pa" ON "pa"."attrelid" = "pc"."oid" INNER JOIN "pg_catalog"."pg_type" AS "pt" ON "pt"."oid" = "pa"."atttypid" INNER JOIN "pg_catalog"."pg_namespace" AS "ptn" ON "ptn"."oid" = "pt"."typnamespace" WHERE ("pc"."relkind" = 'm') AND ("pa"."attnum" >= 1) AND ("pn"."nspname" IN ('{schema}')) ORDER BY "table-schema" ASC, "table-name" ASC, "database-position" ASC
;;

-- source: metabase/metabase src/metabase/driver/sql_jdbc/sync/describe_table.clj table->unfold-json-fields -> describe-table-fields -> DatabaseMetaData.getColumns (JSON unfolding of the jsonb column)
-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/PgDatabaseMetaData.java getColumns
-- expect: rows
-- expect: contains {table}
-- expect: contains id
-- expect: contains title
-- expect: contains embedding
SELECT * FROM (SELECT current_database() AS current_database, n.nspname,c.relname,a.attname,a.atttypid,a.attnotnull  OR (t.typtype = 'd' AND t.typnotnull) AS attnotnull,a.atttypmod,a.attlen,t.typtypmod,row_number() OVER (PARTITION BY a.attrelid ORDER BY a.attnum) AS attnum, nullif(a.attidentity, '') as attidentity,nullif(a.attgenerated, '') as attgenerated,pg_catalog.pg_get_expr(def.adbin, def.adrelid) AS adsrc,dsc.description,t.typbasetype,t.typtype  FROM pg_catalog.pg_namespace n  JOIN pg_catalog.pg_class c ON (c.relnamespace = n.oid)  JOIN pg_catalog.pg_attribute a ON (a.attrelid=c.oid)  JOIN pg_catalog.pg_type t ON (a.atttypid = t.oid)  LEFT JOIN pg_catalog.pg_attrdef def ON (a.attrelid=def.adrelid AND a.attnum = def.adnum)  LEFT JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid)  LEFT JOIN pg_catalog.pg_class dc ON (dc.oid=dsc.classoid AND dc.relname='pg_class')  LEFT JOIN pg_catalog.pg_namespace dn ON (dc.relnamespace=dn.oid AND dn.nspname='pg_catalog')  WHERE c.relkind in ('r','p','v','f','m') and a.attnum > 0 AND NOT a.attisdropped  AND n.nspname LIKE '{schema}' AND c.relname LIKE '{table}') c WHERE true  ORDER BY nspname,c.relname,attnum
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/TypeInfoCache.java getPGType(oid) (getColumns TYPE_NAME for the vector column; jsonb is not a built-in in pgjdbc 42.7.8)
-- expect: rows
SELECT n.nspname = ANY(current_schemas(true)), n.nspname, t.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid WHERE t.oid = (SELECT oid FROM pg_catalog.pg_type WHERE typname = 'vector')
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/TypeInfoCache.java getSQLType(oid) (getColumns DATA_TYPE for the vector column; sent with a trailing ';')
-- expect: rows
SELECT typinput='pg_catalog.array_in'::regproc as is_array, typtype, typname, pg_type.oid   FROM pg_catalog.pg_type   LEFT JOIN (select ns.oid as nspoid, ns.nspname, r.r           from pg_namespace as ns           join ( select s.r, (current_schemas(false))[s.r] as nspname                    from generate_series(1, array_upper(current_schemas(false), 1)) as s(r) ) as r          using ( nspname )        ) as sp     ON sp.nspoid = typnamespace  WHERE pg_type.oid = (SELECT oid FROM pg_catalog.pg_type WHERE typname = 'vector')  ORDER BY sp.r, pg_type.oid DESC
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/TypeInfoCache.java getPGType(oid) (getColumns TYPE_NAME for the jsonb column; jsonb is not a built-in in pgjdbc 42.7.8)
-- expect: rows
SELECT n.nspname = ANY(current_schemas(true)), n.nspname, t.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid WHERE t.oid = (SELECT oid FROM pg_catalog.pg_type WHERE typname = 'jsonb')
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/TypeInfoCache.java getSQLType(oid) (getColumns DATA_TYPE for the jsonb column; sent with a trailing ';')
-- expect: rows
SELECT typinput='pg_catalog.array_in'::regproc as is_array, typtype, typname, pg_type.oid   FROM pg_catalog.pg_type   LEFT JOIN (select ns.oid as nspoid, ns.nspname, r.r           from pg_namespace as ns           join ( select s.r, (current_schemas(false))[s.r] as nspname                    from generate_series(1, array_upper(current_schemas(false), 1)) as s(r) ) as r          using ( nspname )        ) as sp     ON sp.nspoid = typnamespace  WHERE pg_type.oid = (SELECT oid FROM pg_catalog.pg_type WHERE typname = 'jsonb')  ORDER BY sp.r, pg_type.oid DESC
;;

-- source: metabase/metabase src/metabase/driver/sql_jdbc/sync/describe_table.clj get-table-pks -> DatabaseMetaData.getPrimaryKeys (describe-nested-field-columns)
-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/PgDatabaseMetaData.java getPrimaryKeys (42.7.8, pg_index based)
-- expect: rows
-- expect: contains {table}
-- expect: contains id
SELECT        result.TABLE_CAT AS "TABLE_CAT",        result.TABLE_SCHEM AS "TABLE_SCHEM",        result.TABLE_NAME AS "TABLE_NAME",        result.COLUMN_NAME AS "COLUMN_NAME",        result.KEY_SEQ AS "KEY_SEQ",        result.PK_NAME AS "PK_NAME"FROM      (SELECT current_database() AS TABLE_CAT, n.nspname AS TABLE_SCHEM,   ct.relname AS TABLE_NAME, a.attname AS COLUMN_NAME,   (information_schema._pg_expandarray(i.indkey)).n AS KEY_SEQ, ci.relname AS PK_NAME,   information_schema._pg_expandarray(i.indkey) AS KEYS, a.attnum AS A_ATTNUM, i.indnkeyatts as KEY_COUNT FROM pg_catalog.pg_class ct   JOIN pg_catalog.pg_attribute a ON (ct.oid = a.attrelid)   JOIN pg_catalog.pg_namespace n ON (ct.relnamespace = n.oid)   JOIN pg_catalog.pg_index i ON ( a.attrelid = i.indrelid)   JOIN pg_catalog.pg_class ci ON (ci.oid = i.indexrelid) WHERE true  AND n.nspname = '{schema}' AND ct.relname = '{table}' AND i.indisprimary  ) result where  result.A_ATTNUM = (result.KEYS).x AND result.KEY_SEQ <= KEY_COUNT  ORDER BY result.table_name, result.pk_name, result.key_seq
;;

-- source: metabase/metabase src/metabase/driver/sql_jdbc/sync/describe_table.clj sample-json-row-honey-sql (table has a PK; HoneySQL rendered, nested-field-columns-value-length-limit 50000, sample limit 10000/2)
SELECT CASE WHEN 50000 < LENGTH(CAST("{schema}"."{table}"."meta" AS TEXT)) THEN NULL ELSE "{schema}"."{table}"."meta" END AS "meta" FROM "{schema}"."{table}" INNER JOIN ((SELECT "{schema}"."{table}"."id" FROM "{schema}"."{table}" ORDER BY "{schema}"."{table}"."id" ASC LIMIT 5000) UNION ALL (SELECT "{schema}"."{table}"."id" FROM "{schema}"."{table}" ORDER BY "{schema}"."{table}"."id" DESC LIMIT 5000)) AS "result" ON "result"."id" = "{schema}"."{table}"."id"
;;

-- source: metabase/metabase src/metabase/driver/postgres.clj sql-jdbc.sync/describe-fks-sql (HoneySQL rendered; :schema-names inlined)
SELECT "fk_ns"."nspname" AS "fk-table-schema", "fk_table"."relname" AS "fk-table-name", "fk_column"."attname" AS "fk-column-name", "pk_ns"."nspname" AS "pk-table-schema", "pk_table"."relname" AS "pk-table-name", "pk_column"."attname" AS "pk-column-name" FROM "pg_constraint" AS "c" INNER JOIN "pg_class" AS "fk_table" ON "c"."conrelid" = "fk_table"."oid" INNER JOIN "pg_namespace" AS "fk_ns" ON "c"."connamespace" = "fk_ns"."oid" INNER JOIN "pg_attribute" AS "fk_column" ON "c"."conrelid" = "fk_column"."attrelid" INNER JOIN "pg_class" AS "pk_table" ON "c"."confrelid" = "pk_table"."oid" INNER JOIN "pg_namespace" AS "pk_ns" ON "pk_table"."relnamespace" = "pk_ns"."oid" INNER JOIN "pg_attribute" AS "pk_column" ON "c"."confrelid" = "pk_column"."attrelid" WHERE fk_ns.nspname !~ '^information_schema|catalog_history|pg_' AND ("c"."contype" = 'f'::char) AND ("fk_column"."attnum" = ANY(c.conkey)) AND ("pk_column"."attnum" = ANY(c.confkey)) AND ("fk_ns"."nspname" IN ('{schema}')) ORDER BY "fk-table-schema" ASC, "fk-table-name" ASC
;;

-- source: metabase/metabase src/metabase/driver/postgres.clj sql-jdbc.sync/describe-indexes-sql (HoneySQL rendered; only sent when index sync (:index-info) is enabled, which is off by default)
-- expect: rows
-- expect: contains {table}
-- expect: contains id
SELECT "tmp"."table-schema", "tmp"."table-name", TRIM(BOTH '"' FROM PG_CATALOG.PG_GET_INDEXDEF("tmp"."ci_oid", "tmp"."pos", FALSE)) AS "field-name" FROM (SELECT "n"."nspname" AS "table-schema", "ct"."relname" AS "table-name", "ci"."oid" AS "ci_oid", (INFORMATION_SCHEMA._PG_EXPANDARRAY("i"."indkey"))."n" AS "pos" FROM "pg_catalog"."pg_class" AS "ct" INNER JOIN "pg_catalog"."pg_namespace" AS "n" ON "ct"."relnamespace" = "n"."oid" INNER JOIN "pg_catalog"."pg_index" AS "i" ON "ct"."oid" = "i"."indrelid" INNER JOIN "pg_catalog"."pg_class" AS "ci" ON "ci"."oid" = "i"."indexrelid" WHERE (PG_CATALOG.PG_GET_EXPR("i"."indpred", "i"."indrelid") IS NULL) AND n.nspname !~ '^information_schema|catalog_history|pg_' AND ("n"."nspname" IN ('{schema}'))) AS "tmp" WHERE "tmp"."pos" = 1
;;

-- source: metabase/metabase src/metabase/analyze (fingerprinting via table-rows-sample: text fields truncated with SUBSTRING(..., 1, 1234); alias counter varies; which fields are sampled is approximated)
SELECT SUBSTRING("{schema}"."{table}"."title", 1, 1234) AS "substring1234" FROM "{schema}"."{table}" LIMIT 10000
;;

-- source: metabase/metabase MBQL table preview {:source-table <id>} compiled by metabase.driver.sql.query-processor (default 2000-row limit; Metabase prefixes a '-- Metabase:: userID ...' remark line, omitted here)
SELECT "{schema}"."{table}"."id" AS "id", "{schema}"."{table}"."title" AS "title", "{schema}"."{table}"."embedding" AS "embedding", "{schema}"."{table}"."meta" AS "meta" FROM "{schema}"."{table}" LIMIT 2000
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/PgResultSetMetaData.java fetchFieldMetaData (reading the preview result set; table oid literal in the real query)
-- expect: rows
-- expect: contains {table}
-- expect: contains title
SELECT c.oid, a.attnum, a.attname, c.relname, n.nspname, a.attnotnull OR (t.typtype = 'd' AND t.typnotnull), a.attidentity != '' OR pg_catalog.pg_get_expr(d.adbin, d.adrelid) LIKE '%nextval(%' FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON (c.relnamespace = n.oid) JOIN pg_catalog.pg_attribute a ON (c.oid = a.attrelid) JOIN pg_catalog.pg_type t ON (a.atttypid = t.oid) LEFT JOIN pg_catalog.pg_attrdef d ON (d.adrelid = a.attrelid AND d.adnum = a.attnum) JOIN (SELECT '{schema}.{table}'::regclass::oid AS oid , 1 AS attnum UNION ALL SELECT '{schema}.{table}'::regclass::oid, 2 UNION ALL SELECT '{schema}.{table}'::regclass::oid, 3 UNION ALL SELECT '{schema}.{table}'::regclass::oid, 4) vals ON (c.oid = vals.oid AND a.attnum = vals.attnum) where c.oid in ('{schema}.{table}'::regclass::oid)
;;
