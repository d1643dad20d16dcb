-- DBeaver (PostgreSQL plugin org.jkiss.dbeaver.ext.postgresql) start-up and schema-discovery queries.
-- Source read: github.com/dbeaver/dbeaver @ 2428359b748778a5a345432906ab3da69289c20c (DBeaver CE 24.2.4-SNAPSHOT, 2024-10-24),
-- plus the queries its bundled JDBC driver sends: github.com/pgjdbc/pgjdbc @ c03db5841 (42.7.8 release).
-- Default connection settings (single database, no schema filter, readAllTypes=false), server version >= 12.
-- Order: connect (main + metadata context), navigator Schemas -> public -> Tables -> {table} (columns,
-- constraints, indexes, properties), then the Data tab preview.
-- These queries are replayed by the integration tests against Quiver (see tests/bi/README.md).

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/core/v3/ConnectionFactoryImpl.java runInitialQueries (driver, sent only when server_version < 12)
SET extra_float_digits = 3
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/core/v3/ConnectionFactoryImpl.java runInitialQueries (default ApplicationName, assumeMinServerVersion unset)
SET application_name = 'PostgreSQL JDBC Driver'
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreDataSource.java openConnection -> pgConnection.setClientInfo(ApplicationName)
-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/PgConnection.java setClientInfo
SET application_name = 'DBeaver 24.2.4 - Main <{database}>'
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreExecutionContext.java refreshDefaults
-- expect: rows
-- expect: contains {schema}
-- expect: contains {user}
SELECT current_schema(),session_user
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreDatabase.java SchemaCache.prepareLookupStatement (no schema filter)
-- expect: rows
-- expect: contains {schema}
SELECT n.oid,n.*,d.description FROM pg_catalog.pg_namespace n
LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=n.oid AND d.objsubid=0 AND d.classoid='pg_namespace'::regclass
 ORDER BY nspname
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/TypeInfoCache.java getPGType(oid) / prepareGetNameStatement (triggered when DBeaver reads pg_namespace.nspacl, aclitem[] oid 1034)
SELECT n.nspname = ANY(current_schemas(true)), n.nspname, t.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid WHERE t.oid = '1034'
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/TypeInfoCache.java getSQLType(oid) / getSQLTypeQuery(true) (aclitem[] oid 1034; sent with a trailing ';')
SELECT typinput='pg_catalog.array_in'::regproc as is_array, typtype, typname, pg_type.oid   FROM pg_catalog.pg_type   LEFT JOIN (select ns.oid as nspoid, ns.nspname, r.r           from pg_namespace as ns           join ( select s.r, (current_schemas(false))[s.r] as nspname                    from generate_series(1, array_upper(current_schemas(false), 1)) as s(r) ) as r          using ( nspname )        ) as sp     ON sp.nspoid = typnamespace  WHERE pg_type.oid = '1034'  ORDER BY sp.r, pg_type.oid DESC
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreExecutionContext.java refreshDefaults
-- expect: rows
SHOW search_path
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreDataSource.java openConnection -> setClientInfo (metadata context; it then repeats current_schema/schemas/search_path above)
SET application_name = 'DBeaver 24.2.4 - Metadata <{database}>'
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreDatabase.java readDatabaseInfo
-- expect: rows
-- expect: contains {database}
SELECT db.oid,db.* FROM pg_catalog.pg_database db WHERE datname='{database}'
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreDataSource.java initializeRemoteInstance -> SettingCache.prepareLookupStatement(standard_conforming_strings)
-- expect: rows
select * from pg_catalog.pg_settings where name='standard_conforming_strings'
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.model.jdbc/src/org/jkiss/dbeaver/model/impl/jdbc/JDBCSQLDialect.java loadDriverKeywords -> metaData.getSQLKeywords()
-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/PgDatabaseMetaData.java getSQLKeywords
-- expect: rows
select string_agg(word, ',') from pg_catalog.pg_get_keywords() where word <> ALL ('{a,abs,absolute,action,ada,add,admin,after,all,allocate,alter,always,and,any,are,array,as,asc,asensitive,assertion,assignment,asymmetric,at,atomic,attribute,attributes,authorization,avg,before,begin,bernoulli,between,bigint,binary,blob,boolean,both,breadth,by,c,call,called,cardinality,cascade,cascaded,case,cast,catalog,catalog_name,ceil,ceiling,chain,char,char_length,character,character_length,character_set_catalog,character_set_name,character_set_schema,characteristics,characters,check,checked,class_origin,clob,close,coalesce,cobol,code_units,collate,collation,collation_catalog,collation_name,collation_schema,collect,column,column_name,command_function,command_function_code,commit,committed,condition,condition_number,connect,connection_name,constraint,constraint_catalog,constraint_name,constraint_schema,constraints,constructors,contains,continue,convert,corr,corresponding,count,covar_pop,covar_samp,create,cross,cube,cume_dist,current,current_collation,current_date,current_default_transform_group,current_path,current_role,current_time,current_timestamp,current_transform_group_for_type,current_user,cursor,cursor_name,cycle,data,date,datetime_interval_code,datetime_interval_precision,day,deallocate,dec,decimal,declare,default,defaults,deferrable,deferred,defined,definer,degree,delete,dense_rank,depth,deref,derived,desc,describe,descriptor,deterministic,diagnostics,disconnect,dispatch,distinct,domain,double,drop,dynamic,dynamic_function,dynamic_function_code,each,element,else,end,end-exec,equals,escape,every,except,exception,exclude,excluding,exec,execute,exists,exp,external,extract,false,fetch,filter,final,first,float,floor,following,for,foreign,fortran,found,free,from,full,function,fusion,g,general,get,global,go,goto,grant,granted,group,grouping,having,hierarchy,hold,hour,identity,immediate,implementation,in,including,increment,indicator,initially,inner,inout,input,insensitive,insert,instance,instantiable,int,integer,intersect,intersection,interval,into,invoker,is,isolation,join,k,key,key_member,key_type,language,large,last,lateral,leading,left,length,level,like,ln,local,localtime,localtimestamp,locator,lower,m,map,match,matched,max,maxvalue,member,merge,message_length,message_octet_length,message_text,method,min,minute,minvalue,mod,modifies,module,month,more,multiset,mumps,name,names,national,natural,nchar,nclob,nesting,new,next,no,none,normalize,normalized,not,\"null\",nullable,nullif,nulls,number,numeric,object,octet_length,octets,of,old,on,only,open,option,options,or,order,ordering,ordinality,others,out,outer,output,over,overlaps,overlay,overriding,pad,parameter,parameter_mode,parameter_name,parameter_ordinal_position,parameter_specific_catalog,parameter_specific_name,parameter_specific_schema,partial,partition,pascal,path,percent_rank,percentile_cont,percentile_disc,placing,pli,position,power,preceding,precision,prepare,preserve,primary,prior,privileges,procedure,public,range,rank,read,reads,real,recursive,ref,references,referencing,regr_avgx,regr_avgy,regr_count,regr_intercept,regr_r2,regr_slope,regr_sxx,regr_sxy,regr_syy,relative,release,repeatable,restart,result,return,returned_cardinality,returned_length,returned_octet_length,returned_sqlstate,returns,revoke,right,role,rollback,rollup,routine,routine_catalog,routine_name,routine_schema,row,row_count,row_number,rows,savepoint,scale,schema,schema_name,scope_catalog,scope_name,scope_schema,scroll,search,second,section,security,select,self,sensitive,sequence,serializable,server_name,session,session_user,set,sets,similar,simple,size,smallint,some,source,space,specific,specific_name,specifictype,sql,sqlexception,sqlstate,sqlwarning,sqrt,start,state,statement,static,stddev_pop,stddev_samp,structure,style,subclass_origin,submultiset,substring,sum,symmetric,system,system_user,table,table_name,tablesample,temporary,then,ties,time,timestamp,timezone_hour,timezone_minute,to,top_level_count,trailing,transaction,transaction_active,transactions_committed,transactions_rolled_back,transform,transforms,translate,translation,treat,trigger,trigger_catalog,trigger_name,trigger_schema,trim,true,type,uescape,unbounded,uncommitted,under,union,unique,unknown,unnamed,unnest,update,upper,usage,user,user_defined_type_catalog,user_defined_type_code,user_defined_type_name,user_defined_type_schema,using,value,values,var_pop,var_samp,varchar,varying,view,when,whenever,where,width_bucket,window,with,within,without,work,write,year,zone}'::text[])
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreDataSource.java initialize
-- expect: rows
SELECT version()
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreDataSource.java initialize -> PostgreUtils.isMetaObjectExists(pg_enum, *) (server >= 12; failure tolerated)
SELECT * FROM pg_catalog.pg_enum WHERE 1<>1 LIMIT 1
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreDataSource.java initialize -> PostgreUtils.isMetaObjectExists(pg_class, reltype) (failure tolerated)
SELECT reltype FROM pg_catalog.pg_class WHERE 1<>1 LIMIT 1
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreDatabase.java cacheDataTypes (readAllTypes=false, server >= 10)
-- expect: rows
SELECT t.oid,t.*,c.relkind,format_type(nullif(t.typbasetype, 0), t.typtypmod) as base_type_name, d.description
FROM pg_catalog.pg_type t
LEFT OUTER JOIN pg_catalog.pg_type et ON et.oid=t.typelem 
LEFT OUTER JOIN pg_catalog.pg_class c ON c.oid=t.typrelid
LEFT OUTER JOIN pg_catalog.pg_description d ON t.oid=d.objoid
WHERE t.typname IS NOT NULL
AND (c.relkind IS NULL OR c.relkind = 'c') AND (et.typcategory IS NULL OR et.typcategory <> 'C')
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreDatabase.java EnumValueCache.prepareObjectsStatement (via initEnumTypesCache)
SELECT * FROM pg_catalog.pg_enum
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/PgConnection.java getTransactionIsolation (called by DBeaver JDBCExecutionContext.getTransactionIsolation for the toolbar)
-- expect: rows
SHOW TRANSACTION ISOLATION LEVEL
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreSchema.java TableCache.prepareLookupStatement (all tables of the schema; relnamespace bound as the schema oid)
-- expect: rows
-- expect: contains {table}
SELECT c.oid,c.*,d.description,pg_catalog.pg_get_expr(c.relpartbound, c.oid) as partition_expr,  pg_catalog.pg_get_partkeydef(c.oid) as partition_key 
FROM pg_catalog.pg_class c
LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_class'::regclass
WHERE c.relnamespace=(SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = '{schema}') AND c.relkind not in ('i','I','c')
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreSchema.java collectObjectStatistics (Tables folder editor with sizes)
-- expect: rows
select c.oid,pg_catalog.pg_total_relation_size(c.oid) as total_rel_size,pg_catalog.pg_relation_size(c.oid) as rel_size
FROM pg_class c
WHERE c.relnamespace=(SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = '{schema}')
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreSchema.java TableCache.prepareChildrenStatement (forTable; c.oid bound as the table oid)
-- expect: rows
-- expect: contains {table}
-- expect: contains id
-- expect: contains title
-- expect: contains embedding
SELECT c.relname,a.*,pg_catalog.pg_get_expr(ad.adbin, ad.adrelid, true) as def_value,dsc.description,dep.objid
FROM pg_catalog.pg_attribute a
INNER JOIN pg_catalog.pg_class c ON (a.attrelid=c.oid)
LEFT OUTER JOIN pg_catalog.pg_attrdef ad ON (a.attrelid=ad.adrelid AND a.attnum = ad.adnum)
LEFT OUTER JOIN pg_catalog.pg_description dsc ON (c.oid=dsc.objoid AND a.attnum = dsc.objsubid)
LEFT OUTER JOIN pg_depend dep on dep.refobjid = a.attrelid AND dep.deptype = 'i' and dep.refobjsubid = a.attnum and dep.classid = dep.refclassid
WHERE NOT a.attisdropped AND c.relkind not in ('i','I','c') AND c.oid='{schema}.{table}'::regclass
ORDER BY a.attnum
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreSchema.java ConstraintCache.prepareObjectsStatement (forParent; c.conrelid bound as the table oid)
-- expect: rows
-- expect: contains {table}
SELECT c.oid,c.*,t.relname as tabrelname,rt.relnamespace as refnamespace,d.description, case when c.contype='c' then "substring"(pg_get_constraintdef(c.oid), 7) else null end consrc_copy
FROM pg_catalog.pg_constraint c
INNER JOIN pg_catalog.pg_class t ON t.oid=c.conrelid
LEFT OUTER JOIN pg_catalog.pg_class rt ON rt.oid=c.confrelid
LEFT OUTER JOIN pg_catalog.pg_description d ON d.objoid=c.oid AND d.objsubid=0 AND d.classoid='pg_constraint'::regclass
WHERE c.conrelid='{schema}.{table}'::regclass
ORDER BY c.oid
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreDatabase.java AccessMethodCache.prepareObjectsStatement (PostgreIndex.getAccessMethod)
-- expect: rows
SELECT am.oid,am.* FROM pg_catalog.pg_am am 
ORDER BY am.oid
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreSchema.java IndexCache.prepareObjectsStatement (forTable; i.indrelid bound as the table oid)
-- expect: rows
-- expect: contains {table}
SELECT i.*,i.indkey as keys,c.relname,c.relnamespace,c.relam,c.reltablespace,tc.relname as tabrelname,dsc.description,pg_catalog.pg_get_expr(i.indpred, i.indrelid) as pred_expr,pg_catalog.pg_get_expr(i.indexprs, i.indrelid, true) as expr,pg_catalog.pg_relation_size(i.indexrelid) as index_rel_size,pg_catalog.pg_stat_get_numscans(i.indexrelid) as index_num_scans
FROM pg_catalog.pg_index i
INNER JOIN pg_catalog.pg_class c ON c.oid=i.indexrelid
INNER JOIN pg_catalog.pg_class tc ON tc.oid=i.indrelid
LEFT OUTER JOIN pg_catalog.pg_description dsc ON i.indexrelid=dsc.objoid
WHERE  i.indrelid='{schema}.{table}'::regclass ORDER BY c.relname
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreTable.java initSuperTables (getSuperTables property)
SELECT i.*,c.relnamespace FROM pg_catalog.pg_inherits i,pg_catalog.pg_class c WHERE i.inhrelid='{schema}.{table}'::regclass AND c.oid=i.inhparent ORDER BY i.inhseqno
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreDatabase.java RoleCache.prepareObjectsStatement (table owner property, PostgreTableBase.getOwner)
-- expect: rows
-- expect: contains {user}
SELECT a.oid,a.*,pd.description FROM pg_catalog.pg_roles a 
left join pg_catalog.pg_shdescription pd on a.oid = pd.objoid
ORDER BY a.rolname
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreDatabase.java TablespaceCache.prepareObjectsStatement (PostgreTable.getTablespace -> getDefaultTablespace)
-- expect: rows
SELECT t.oid,t.*,pg_tablespace_location(t.oid) loc
FROM pg_catalog.pg_tablespace t 
ORDER BY t.oid
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.ext.postgresql/src/org/jkiss/dbeaver/ext/postgresql/model/PostgreTableReal.java readTableStatistics (both parameters bound as the table oid)
-- expect: rows
select pg_catalog.pg_total_relation_size('{schema}.{table}'::regclass) as total_rel_size,pg_catalog.pg_relation_size('{schema}.{table}'::regclass) as rel_size
;;

-- source: dbeaver/dbeaver plugins/org.jkiss.dbeaver.model.jdbc/src/org/jkiss/dbeaver/model/impl/jdbc/struct/JDBCTable.java readData (alias x because a data filter is present) + model/impl/sql/QueryTransformerLimit (resultset.maxrows.sql=true for PostgreSQL, 200 rows)
SELECT x.* FROM {schema}.{table} x
LIMIT 200
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/PgResultSetMetaData.java fetchFieldMetaData (DBeaver JDBCColumnMetaData calls getTableName/isNullable; table oid literal in the real query)
-- expect: rows
-- expect: contains {table}
-- expect: contains title
SELECT c.oid, a.attnum, a.attname, c.relname, n.nspname, a.attnotnull OR (t.typtype = 'd' AND t.typnotnull), a.attidentity != '' OR pg_catalog.pg_get_expr(d.adbin, d.adrelid) LIKE '%nextval(%' FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON (c.relnamespace = n.oid) JOIN pg_catalog.pg_attribute a ON (c.oid = a.attrelid) JOIN pg_catalog.pg_type t ON (a.atttypid = t.oid) LEFT JOIN pg_catalog.pg_attrdef d ON (d.adrelid = a.attrelid AND d.adnum = a.attnum) JOIN (SELECT '{schema}.{table}'::regclass::oid AS oid , 1 AS attnum UNION ALL SELECT '{schema}.{table}'::regclass::oid, 2 UNION ALL SELECT '{schema}.{table}'::regclass::oid, 3 UNION ALL SELECT '{schema}.{table}'::regclass::oid, 4) vals ON (c.oid = vals.oid AND a.attnum = vals.attnum) where c.oid in ('{schema}.{table}'::regclass::oid)
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/TypeInfoCache.java getPGType(oid) (ResultSetMetaData.getColumnTypeName on the vector column; jsonb is not a built-in in pgjdbc 42.7.8)
-- expect: rows
SELECT n.nspname = ANY(current_schemas(true)), n.nspname, t.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid WHERE t.oid = (SELECT oid FROM pg_catalog.pg_type WHERE typname = 'vector')
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/TypeInfoCache.java getSQLType(oid) (ResultSetMetaData.getColumnType on the vector column; sent with a trailing ';')
-- expect: rows
SELECT typinput='pg_catalog.array_in'::regproc as is_array, typtype, typname, pg_type.oid   FROM pg_catalog.pg_type   LEFT JOIN (select ns.oid as nspoid, ns.nspname, r.r           from pg_namespace as ns           join ( select s.r, (current_schemas(false))[s.r] as nspname                    from generate_series(1, array_upper(current_schemas(false), 1)) as s(r) ) as r          using ( nspname )        ) as sp     ON sp.nspoid = typnamespace  WHERE pg_type.oid = (SELECT oid FROM pg_catalog.pg_type WHERE typname = 'vector')  ORDER BY sp.r, pg_type.oid DESC
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/TypeInfoCache.java getPGType(oid) (ResultSetMetaData.getColumnTypeName on the jsonb column; jsonb is not a built-in in pgjdbc 42.7.8)
-- expect: rows
SELECT n.nspname = ANY(current_schemas(true)), n.nspname, t.typname FROM pg_catalog.pg_type t JOIN pg_catalog.pg_namespace n ON t.typnamespace = n.oid WHERE t.oid = (SELECT oid FROM pg_catalog.pg_type WHERE typname = 'jsonb')
;;

-- source: pgjdbc/pgjdbc pgjdbc/src/main/java/org/postgresql/jdbc/TypeInfoCache.java getSQLType(oid) (ResultSetMetaData.getColumnType on the jsonb column; sent with a trailing ';')
-- expect: rows
SELECT typinput='pg_catalog.array_in'::regproc as is_array, typtype, typname, pg_type.oid   FROM pg_catalog.pg_type   LEFT JOIN (select ns.oid as nspoid, ns.nspname, r.r           from pg_namespace as ns           join ( select s.r, (current_schemas(false))[s.r] as nspname                    from generate_series(1, array_upper(current_schemas(false), 1)) as s(r) ) as r          using ( nspname )        ) as sp     ON sp.nspoid = typnamespace  WHERE pg_type.oid = (SELECT oid FROM pg_catalog.pg_type WHERE typname = 'jsonb')  ORDER BY sp.r, pg_type.oid DESC
;;
