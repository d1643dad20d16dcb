-- Grafana PostgreSQL data source (grafana-postgresql-datasource): health check, version/feature
-- detection, schema/table/column lookups of the query editor, and a builder preview query.
-- Source read: github.com/grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/
-- postgresMetaQuery.ts @ 12f912ab8d01, datasource.ts @ 04282cd93150, sqlUtil.ts @ 1137a659434e,
-- configuration/useAutoDetectFeatures.ts @ 3af0110a1a21, pkg/tsdb/grafana-postgresql-datasource/pgx/sql_engine.go @ 124e2418015e.
-- Also the legacy (Grafana <= 9.x) editor queries of public/app/plugins/datasource/postgres/meta_query.ts @ 027e669f230f.
-- The backend sends every query verbatim over the simple-query protocol (pgx PgConn.Exec).
-- These queries are replayed by the integration tests against Quiver (see tests/bi/README.md).

-- source: grafana/grafana public/app/plugins/datasource/postgres/datasource.ts testDatasource (Grafana <= 9.x 'Save & test'; current versions call the backend CheckHealth -> pgxpool Ping, which sends the empty statement '-- ping')
-- expect: rows
SELECT 1
;;

-- source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts getVersion (configuration/useAutoDetectFeatures.ts -> datasource.ts getVersion)
-- expect: rows
SELECT current_setting('server_version_num')::int/100 as version
;;

-- source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts getTimescaleDBVersion (configuration/useAutoDetectFeatures.ts, version >= 9.6)
SELECT extversion FROM pg_extension WHERE extname = 'timescaledb'
;;

-- source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts showSchemas
-- expect: rows
-- expect: contains {schema}
SELECT schema_name AS "name"
    FROM information_schema.schemata
    WHERE schema_name NOT IN ('information_schema',
                              'pg_catalog',
                              'pg_toast',
                              '_timescaledb_cache',
                              '_timescaledb_catalog',
                              '_timescaledb_internal',
                              '_timescaledb_config',
                              'timescaledb_information',
                              'timescaledb_experimental')
    ORDER BY schema_name
;;

-- source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts showTables() (no schema; datasource.ts fetchTables / getDB().tables / lookup)
-- expect: rows
-- expect: contains {table}
SELECT
    CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      THEN quote_ident(table_name)
      ELSE quote_ident(table_schema) || '.' || quote_ident(table_name)
    END AS "table"
    FROM information_schema.tables
    WHERE quote_ident(table_schema) NOT IN ('information_schema',
                             'pg_catalog',
                             '_timescaledb_cache',
                             '_timescaledb_catalog',
                             '_timescaledb_internal',
                             '_timescaledb_config',
                             'timescaledb_information',
                             'timescaledb_experimental')
    ORDER BY CASE WHEN 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          ) THEN 0 ELSE 1 END, 1
;;

-- source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts showTables(schema)
-- expect: rows
-- expect: contains {table}
SELECT quote_ident(table_name) AS "table"
      FROM information_schema.tables
      WHERE quote_ident(table_schema) = '{schema}'
      ORDER BY 1
;;

-- source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/postgresMetaQuery.ts getSchema(table) (datasource.ts fetchFields; table as returned by showTables)
-- expect: rows
-- expect: contains id
-- expect: contains title
-- expect: contains embedding
SELECT quote_ident(column_name) AS "column", data_type AS "type"
    FROM information_schema.columns
    WHERE
      CASE WHEN array_length(parse_ident('{table}'),1) = 2
        THEN quote_ident(table_schema) = (parse_ident('{table}'))[1]
          AND quote_ident(table_name) = (parse_ident('{table}'))[2]
        ELSE quote_ident(table_name) = '{table}'
          AND 
          quote_ident(table_schema) IN (
          SELECT
            CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
          FROM
            generate_series(
              array_lower(string_to_array(current_setting('search_path'),','),1),
              array_upper(string_to_array(current_setting('search_path'),','),1)
            ) as i,
            string_to_array(current_setting('search_path'),',') s
          )
      END
;;

-- source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts @ 027e669f230f (legacy query editor, Grafana <= 9.x) findMetricTable (sent with a trailing ';')
SELECT
	quote_ident(table_name) as table_name,
	( SELECT
	    quote_ident(column_name) as column_name
	  FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name IN ('timestamptz','timestamp')
    ORDER BY ordinal_position LIMIT 1
  ) AS time_column,
  ( SELECT
      quote_ident(column_name) AS column_name
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name='float8'
    ORDER BY ordinal_position LIMIT 1
  ) AS value_column
FROM information_schema.tables t
WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND
  EXISTS
  ( SELECT 1
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name IN ('timestamptz','timestamp')
  ) AND
  EXISTS
  ( SELECT 1
    FROM information_schema.columns c
    WHERE
      c.table_schema = t.table_schema AND
      c.table_name = t.table_name AND
      udt_name='float8'
  )
LIMIT 1
;;

-- source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts @ 027e669f230f (legacy query editor, Grafana <= 9.x) buildTableQuery
-- expect: rows
-- expect: contains {table}
SELECT quote_ident(table_name) FROM information_schema.tables WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) ORDER BY table_name
;;

-- source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts @ 027e669f230f (legacy query editor, Grafana <= 9.x) buildColumnQuery(undefined) (table not schema-qualified)
-- expect: rows
-- expect: contains id
-- expect: contains title
-- expect: contains embedding
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = '{table}' ORDER BY column_name
;;

-- source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts @ 027e669f230f (legacy query editor, Grafana <= 9.x) buildColumnQuery('time')
-- expect: rows
-- expect: contains id
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = '{table}' AND data_type IN ('timestamp without time zone','timestamp with time zone','bigint','integer','double precision','real') ORDER BY column_name
;;

-- source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts @ 027e669f230f (legacy query editor, Grafana <= 9.x) buildColumnQuery('metric')
-- expect: rows
-- expect: contains title
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = '{table}' AND data_type IN ('text','character','character varying') ORDER BY column_name
;;

-- source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts @ 027e669f230f (legacy query editor, Grafana <= 9.x) buildColumnQuery('value') (default timeColumn 'time')
-- expect: rows
-- expect: contains id
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = '{table}' AND data_type IN ('bigint','integer','double precision','real','numeric') AND column_name <> 'time' ORDER BY column_name
;;

-- source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts @ 027e669f230f (legacy query editor, Grafana <= 9.x) buildColumnQuery('group')
-- expect: rows
-- expect: contains title
SELECT quote_ident(column_name) FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = '{table}' AND data_type IN ('text','character','character varying','uuid') ORDER BY column_name
;;

-- source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts @ 027e669f230f (legacy query editor, Grafana <= 9.x) buildDatatypeQuery(column)
-- expect: rows
SELECT udt_name FROM information_schema.columns WHERE 
table_schema IN (
  SELECT
    CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
  FROM
    generate_series(
      array_lower(string_to_array(current_setting('search_path'),','),1),
      array_upper(string_to_array(current_setting('search_path'),','),1)
    ) as i,
    string_to_array(current_setting('search_path'),',') s
) AND table_name = '{table}' AND column_name = 'title'
;;

-- source: grafana/grafana public/app/plugins/datasource/postgres/meta_query.ts @ 027e669f230f (legacy query editor, Grafana <= 9.x) buildAggregateQuery
-- expect: rows
SELECT DISTINCT proname FROM pg_aggregate INNER JOIN pg_proc ON pg_aggregate.aggfnoid = pg_proc.oid INNER JOIN pg_type ON pg_type.oid=pg_proc.prorettype WHERE pronargs=1 AND typname IN ('float8') AND aggkind='n' ORDER BY 1
;;

-- source: grafana/grafana public/app/plugins/datasource/grafana-postgresql-datasource/sqlUtil.ts toRawSql (visual query builder: column '*', table {table}, default limit 50; sent verbatim by pkg/tsdb/grafana-postgresql-datasource/pgx/sql_engine.go execQuery via PgConn.Exec)
SELECT * FROM {table} LIMIT 50
;;
