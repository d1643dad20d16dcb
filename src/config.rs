//! Quiver's configuration: defaults that run embedded, overridden by a TOML
//! file (`--config`), then by command-line flags. Unknown keys are an error.

use std::path::{Path, PathBuf};

use quiver_engine::memory::{MemoryBudget, Shares};
use quiver_engine::{ColdOptions, EngineOptions, SsdOptions};
use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Where the catalog and table data live: a local folder, or an object
    /// store (`"s3://bucket/prefix"`, reached as `[object_store]` says;
    /// then `[storage] local_dir` keeps what must stay local).
    pub data_dir: PathBuf,
    /// Address the Postgres wire protocol listens on.
    pub listen: String,
    /// Log filter, e.g. `info` or `quiver_sql=debug,info` (Lance's own info-level
    /// audit of every file it writes is left out by default).
    pub log_level: String,
    /// Statements that run at least this long are logged with their text
    /// (PostgreSQL's setting: milliseconds or with a unit; `-1`: none, `0`:
    /// all); the default of every session's `log_min_duration_statement`.
    pub log_min_duration_statement: String,
    pub cache: CacheConfig,
    pub search: SearchConfig,
    pub storage: StorageConfig,
    pub object_store: ObjectStoreConfig,
    pub metrics: MetricsConfig,
}

/// `[metrics]`: the HTTP listener for Prometheus and load balancers.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// Address of `/metrics`, `/healthz` and `/readyz`; empty: no listener.
    pub listen: String,
    /// Shard series `/metrics` shows at most; a table whose shards do not
    /// fit any more is one series with `shard="all"`.
    pub max_shard_series: usize,
    /// Normalized statements `quiver_stat_statements` keeps at most (the
    /// least called go first).
    pub max_statements: usize,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9433".into(),
            max_shard_series: quiver_sql::metrics::DEFAULT_MAX_SHARD_SERIES,
            max_statements: quiver_sql::stat_statements::DEFAULT_MAX_STATEMENTS,
        }
    }
}

/// `[storage]`: how table data is kept.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// How long superseded table versions are kept before cleanup removes
    /// them (`"1h"`, `"30m"`, `"0"`); versions readers hold are always kept.
    pub version_retention: String,
    /// Make every commit durable (files, manifest, folders synced) before it
    /// is acknowledged; `false` trades crash safety for speed, like
    /// PostgreSQL's `fsync = off`.
    pub fsync: bool,
    /// How long rows acknowledged through a table's write-ahead log may wait
    /// in memory before they are flushed to Lance as one version (`"1s"`;
    /// fewer rows wait when many come: see the README).
    pub log_flush_interval: String,
    /// Rows one step of `ALTER TABLE … SET (shards = M)` moves, about: a
    /// writer to the table waits for at most one step.
    pub reshard_step_rows: u64,
    /// The cold tier's root, e.g. `"s3://bucket/prefix"` (reached as
    /// `[object_store]` says); empty: no cold tier, every table on local
    /// disk (or, with `data_dir` on an object store, the data directory).
    pub cold_root: String,
    /// With `data_dir` on an object store: the local folder for the
    /// write-ahead logs, hot tables, function modules and the SSD cache.
    pub local_dir: String,
    /// The folder of the local-SSD cache of cold-tier data (emptied at
    /// start); empty: `<data_dir>/ssd-cache`.
    pub ssd_cache_dir: String,
    /// Bytes the SSD cache may keep (`"10GiB"`; `"0"`: no cache).
    pub ssd_cache_size: String,
    /// The unit the SSD cache fetches and keeps (`"1MiB"`).
    pub ssd_cache_block: String,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            version_retention: "1h".into(),
            fsync: true,
            log_flush_interval: "1s".into(),
            reshard_step_rows: quiver_engine::reshard::STEP_ROWS,
            cold_root: String::new(),
            local_dir: "./quiver-local".into(),
            ssd_cache_dir: String::new(),
            ssd_cache_size: "10GiB".into(),
            ssd_cache_block: "1MiB".into(),
        }
    }
}

/// `[object_store]`: how the cold tier's object store is reached (S3 or
/// an S3-compatible server).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObjectStoreConfig {
    /// The S3 endpoint, e.g. `"http://127.0.0.1:9000"`; empty: AWS's own.
    pub endpoint: String,
    pub region: String,
    /// Credentials; empty: taken from the environment (`AWS_ACCESS_KEY_ID`, …).
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Allow `http://` endpoints.
    pub allow_http: bool,
    /// How long one request may take (`"30s"`).
    pub timeout: String,
    /// How long connecting may take (`"5s"`).
    pub connect_timeout: String,
    /// How often a failed request is tried again.
    pub retries: u32,
    /// How long a request is tried again at most, all tries together (`"30s"`).
    pub retry_timeout: String,
}

impl Default for ObjectStoreConfig {
    fn default() -> Self {
        ObjectStoreConfig {
            endpoint: String::new(),
            region: "us-east-1".into(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            allow_http: false,
            timeout: "30s".into(),
            connect_timeout: "5s".into(),
            retries: 3,
            retry_timeout: "30s".into(),
        }
    }
}

/// `[cache]`: memory for cached table data.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// One budget for everything cached, e.g. `"2GiB"`, `"256MiB"`, split
    /// by the shares below (percent; Lance's metadata cache gets the rest,
    /// at least 5 %).
    pub memory: String,
    /// Column chunks: hot vectors and the columns searches read.
    pub chunk_share: u8,
    /// Query results; 0 turns the result cache off.
    pub result_share: u8,
    /// Lance's index cache (opened index partitions).
    pub index_share: u8,
    /// Rows the vector indexes do not cover yet, prepared for searches.
    pub fresh_share: u8,
    /// Rows acknowledged through the write-ahead log, not yet flushed.
    pub tail_share: u8,
    /// A cached chunk no search read for this long is dropped (`"5m"`; `"0"`: kept).
    pub vector_ttl: String,
    /// How long a cached query result lives (`"30s"`); a write to a table
    /// it read makes it unreachable at once.
    pub result_ttl: String,
}

impl Default for CacheConfig {
    fn default() -> Self {
        let shares = quiver_engine::memory::Shares::default();
        CacheConfig {
            memory: "2GiB".into(),
            chunk_share: shares.chunks,
            result_share: shares.results,
            index_share: shares.index,
            fresh_share: shares.fresh,
            tail_share: shares.tail,
            vector_ttl: "5m".into(),
            result_ttl: "30s".into(),
        }
    }
}

/// `[search]`: limits of the search path.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SearchConfig {
    /// The largest nearest-neighbour k a query may ask for (SQLSTATE 54000 above).
    pub max_k: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig {
            max_k: quiver_engine::engine::DEFAULT_MAX_K,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            data_dir: PathBuf::from("./quiver-data"),
            listen: "127.0.0.1:5433".into(),
            log_level: "info,lance=warn,lance_index::vector::hnsw=error".into(),
            log_min_duration_statement: "-1".into(),
            cache: CacheConfig::default(),
            search: SearchConfig::default(),
            storage: StorageConfig::default(),
            object_store: ObjectStoreConfig::default(),
            metrics: MetricsConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("invalid setting {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

/// A TOML string literal.
fn quoted(v: &str) -> String {
    toml::Value::String(v.to_string()).to_string()
}

impl Config {
    /// A complete config file: every key at its default, each with what it
    /// does (`quiver config --defaults`). Reading it back gives
    /// [`Config::default`].
    pub fn defaults_file() -> String {
        let d = Config::default();
        let (c, st, o, se, m) = (&d.cache, &d.storage, &d.object_store, &d.search, &d.metrics);
        let q = |v: &str| quoted(v);
        let data_dir = d.data_dir.to_string_lossy();
        format!(
            "\
# Quiver's configuration file (quiver serve --config FILE), every key at its
# default. Every key is optional; an unknown key is an error. Flags override
# the file: --data-dir, --listen, --cache-memory, --metrics-listen.
# Sizes take binary units (256MiB, 2GiB; 512MB = 512 MiB); durations a unit
# (500ms, 30s, 5m, 1h).

# The catalog and the tables: a local folder, or \"s3://bucket/prefix\" (then
# [object_store] says how it is reached and [storage] local_dir keeps what
# must stay local).
data_dir = {data_dir}
# Address and port of the PostgreSQL wire protocol.
listen = {listen}
# Log filter: error, warn, info, debug, trace, or per module
# (\"quiver_sql=debug,info\"); RUST_LOG, when set, takes precedence.
log_level = {log_level}
# Statements that run at least this long are logged with their text
# (milliseconds, or with a unit); \"-1\": none, \"0\": all. Sessions may SET it.
log_min_duration_statement = {slow}

[cache]
# One memory budget for everything cached, split by the shares below (percent;
# Lance's metadata cache gets the rest, at least 5 %).
memory = {memory}
# Column chunks: the hot vectors and the columns searches read.
chunk_share = {chunk_share}
# Results of read-only queries (0: no result cache).
result_share = {result_share}
# Lance's index cache (opened index partitions).
index_share = {index_share}
# Rows written after an index build that it does not cover yet, prepared for searches.
fresh_share = {fresh_share}
# Rows acknowledged through the write-ahead log, not yet flushed to Lance.
tail_share = {tail_share}
# A cached chunk no search read for this long is dropped (\"0\": kept).
vector_ttl = {vector_ttl}
# How long a cached result lives at most; a write to a table it read ends it at once.
result_ttl = {result_ttl}

[storage]
# How long superseded table versions are kept (versions a query reads always are).
version_retention = {version_retention}
# Acknowledge a statement only once it is on stable storage (false: faster, and
# acknowledged statements can be lost on power loss).
fsync = {fsync}
# How long rows acknowledged through the write-ahead log wait before a flush to Lance.
log_flush_interval = {log_flush_interval}
# Rows one step of ALTER TABLE ... SET (shards = M) moves, about.
reshard_step_rows = {reshard_step_rows}
# The cold tier's root, e.g. \"s3://bucket/quiver\"; empty: no cold tier.
cold_root = {cold_root}
# With data_dir on an object store: the local folder for write-ahead logs, hot
# tables, function modules and the SSD cache.
local_dir = {local_dir}
# The folder of the SSD cache of cold-tier data (empty: in the local folder).
ssd_cache_dir = {ssd_cache_dir}
# Bytes the SSD cache may keep (\"0\": no cache).
ssd_cache_size = {ssd_cache_size}
# The block the SSD cache fetches and keeps.
ssd_cache_block = {ssd_cache_block}

[object_store]
# The S3 endpoint, e.g. \"http://127.0.0.1:9000\"; empty: AWS's own.
endpoint = {endpoint}
region = {region}
# Credentials; empty: from the environment (AWS_ACCESS_KEY_ID, ...).
access_key_id = {access_key_id}
secret_access_key = {secret_access_key}
# Allow an http:// endpoint.
allow_http = {allow_http}
# How long one request may take.
timeout = {timeout}
# How long connecting may take.
connect_timeout = {connect_timeout}
# How often a failed request is tried again.
retries = {retries}
# How long a request is tried again at most, all tries together.
retry_timeout = {retry_timeout}

[search]
# The largest nearest-neighbour k a query may ask for (SQLSTATE 54000 above it).
max_k = {max_k}

[metrics]
# Address of /metrics (Prometheus), /healthz and /readyz; \"\": no listener.
listen = {metrics_listen}
# Shard series /metrics shows at most; a table past it is one series, shard=\"all\".
max_shard_series = {max_shard_series}
# Normalized statements quiver_stat_statements keeps at most.
max_statements = {max_statements}
",
            data_dir = q(&data_dir),
            listen = q(&d.listen),
            log_level = q(&d.log_level),
            slow = q(&d.log_min_duration_statement),
            memory = q(&c.memory),
            chunk_share = c.chunk_share,
            result_share = c.result_share,
            index_share = c.index_share,
            fresh_share = c.fresh_share,
            tail_share = c.tail_share,
            vector_ttl = q(&c.vector_ttl),
            result_ttl = q(&c.result_ttl),
            version_retention = q(&st.version_retention),
            fsync = st.fsync,
            log_flush_interval = q(&st.log_flush_interval),
            reshard_step_rows = st.reshard_step_rows,
            cold_root = q(&st.cold_root),
            local_dir = q(&st.local_dir),
            ssd_cache_dir = q(&st.ssd_cache_dir),
            ssd_cache_size = q(&st.ssd_cache_size),
            ssd_cache_block = q(&st.ssd_cache_block),
            endpoint = q(&o.endpoint),
            region = q(&o.region),
            access_key_id = q(&o.access_key_id),
            secret_access_key = q(&o.secret_access_key),
            allow_http = o.allow_http,
            timeout = q(&o.timeout),
            connect_timeout = q(&o.connect_timeout),
            retries = o.retries,
            retry_timeout = q(&o.retry_timeout),
            max_k = se.max_k,
            metrics_listen = q(&m.listen),
            max_shard_series = m.max_shard_series,
            max_statements = m.max_statements,
        )
    }

    pub fn from_toml(text: &str, path: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_string(),
            message: e.message().to_string(),
        })
    }

    /// The engine's options from `[cache]` and `[search]`.
    pub fn engine_options(&self) -> Result<EngineOptions, ConfigError> {
        let Some(bytes) = quiver_engine::memory::parse_bytes(&self.cache.memory) else {
            return Err(ConfigError::Invalid {
                key: "cache.memory",
                message: format!("'{}' is not a size (e.g. 256MiB, 2GiB)", self.cache.memory),
            });
        };
        let shares = Shares {
            chunks: self.cache.chunk_share,
            results: self.cache.result_share,
            index: self.cache.index_share,
            fresh: self.cache.fresh_share,
            tail: self.cache.tail_share,
        };
        let budget =
            MemoryBudget::with_shares(bytes, shares).map_err(|e| ConfigError::Invalid {
                key: "cache",
                message: e.message,
            })?;
        let vector_ttl = duration("cache.vector_ttl", &self.cache.vector_ttl, "5m, 90s, 0")?;
        let result_ttl = duration("cache.result_ttl", &self.cache.result_ttl, "30s, 1m")?;
        if result_ttl.is_zero() {
            return Err(ConfigError::Invalid {
                key: "cache.result_ttl",
                message: "must be above 0 (result_share = 0 turns the result cache off)".into(),
            });
        }
        if self.search.max_k == 0 {
            return Err(ConfigError::Invalid {
                key: "search.max_k",
                message: "must be at least 1".into(),
            });
        }
        let version_retention = duration(
            "storage.version_retention",
            &self.storage.version_retention,
            "1h, 30m, 45s, 0",
        )?;
        let log_flush_interval = duration(
            "storage.log_flush_interval",
            &self.storage.log_flush_interval,
            "1s, 500ms, 0",
        )?;
        if self.storage.reshard_step_rows == 0 {
            return Err(ConfigError::Invalid {
                key: "storage.reshard_step_rows",
                message: "must be at least 1".into(),
            });
        }
        let cold = self.cold_options()?;
        Ok(EngineOptions {
            cold,
            reshard_step_rows: self.storage.reshard_step_rows,
            budget,
            max_k: self.search.max_k,
            version_retention,
            fsync: self.storage.fsync,
            log_flush_interval,
            vector_ttl: (!vector_ttl.is_zero()).then_some(vector_ttl),
            result_ttl,
            catalog_on_store: self.data_url().is_some(),
        })
    }

    /// `data_dir` when it names an object store (`s3://bucket/prefix`).
    pub fn data_url(&self) -> Option<&str> {
        self.data_dir.to_str().filter(|d| d.contains("://"))
    }

    /// The local folder the server keeps its files in: the data directory,
    /// or `[storage] local_dir` when the data directory is an object store.
    pub fn local_dir(&self) -> PathBuf {
        match self.data_url() {
            Some(_) => PathBuf::from(&self.storage.local_dir),
            None => self.data_dir.clone(),
        }
    }

    /// Where the data is, for messages: the folder or the URL.
    pub fn data_location(&self) -> String {
        self.data_dir.display().to_string()
    }

    /// The cold tier from `[storage] cold_root` (or an object-store
    /// `data_dir`) and `[object_store]`.
    fn cold_options(&self) -> Result<Option<ColdOptions>, ConfigError> {
        let cold_root = self.storage.cold_root.trim();
        let (key, root) = match self.data_url() {
            None => ("storage.cold_root", cold_root),
            Some(url) if cold_root.is_empty() || cold_root == url => ("data_dir", url),
            Some(url) => {
                return Err(ConfigError::Invalid {
                    key: "storage.cold_root",
                    message: format!(
                        "the data directory {url} is on an object store and is the cold tier itself: leave cold_root out"
                    ),
                });
            }
        };
        if root.is_empty() {
            return Ok(None);
        }
        if !root.starts_with("s3://") || root.trim_end_matches('/').len() <= "s3://".len() {
            return Err(ConfigError::Invalid {
                key,
                message: format!("'{root}' is not an s3://bucket/prefix URL"),
            });
        }
        if self.data_url().is_some() && self.storage.local_dir.trim().is_empty() {
            return Err(ConfigError::Invalid {
                key: "storage.local_dir",
                message: "a data directory on an object store needs a local folder".into(),
            });
        }
        let size = |key: &'static str, value: &str| {
            quiver_engine::memory::parse_bytes(value).ok_or_else(|| ConfigError::Invalid {
                key,
                message: format!("'{value}' is not a size (e.g. 10GiB, 512MiB, 0)"),
            })
        };
        let capacity = size("storage.ssd_cache_size", &self.storage.ssd_cache_size)?;
        let block = size("storage.ssd_cache_block", &self.storage.ssd_cache_block)?;
        if block == 0 || block > 256 << 20 {
            return Err(ConfigError::Invalid {
                key: "storage.ssd_cache_block",
                message: "must be from 1 byte to 256MiB".into(),
            });
        }
        let dir = match self.storage.ssd_cache_dir.trim() {
            "" => self.local_dir().join("ssd-cache"),
            d => PathBuf::from(d),
        };
        let o = &self.object_store;
        let timeout = duration("object_store.timeout", &o.timeout, "30s, 2m")?;
        let connect = duration("object_store.connect_timeout", &o.connect_timeout, "5s")?;
        let retry = duration("object_store.retry_timeout", &o.retry_timeout, "30s")?;
        let mut options = std::collections::HashMap::new();
        let mut put = |k: &str, v: String| {
            if !v.is_empty() {
                options.insert(k.to_string(), v);
            }
        };
        put("aws_endpoint", o.endpoint.clone());
        put("aws_region", o.region.clone());
        put("aws_access_key_id", o.access_key_id.clone());
        put("aws_secret_access_key", o.secret_access_key.clone());
        put("allow_http", o.allow_http.to_string());
        put("timeout", format!("{}ms", timeout.as_millis()));
        put("connect_timeout", format!("{}ms", connect.as_millis()));
        put("client_max_retries", o.retries.to_string());
        put("download_retry_count", o.retries.to_string());
        put("client_retry_timeout", retry.as_secs().max(1).to_string());
        Ok(Some(ColdOptions {
            root: root.to_string(),
            storage_options: options,
            ssd: SsdOptions {
                dir,
                capacity,
                block,
            },
            beneath_cache: None,
        }))
    }

    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: p.clone(),
            source,
        })?;
        Self::from_toml(&text, &p)
    }
}

/// The duration a config key gives (`examples` in its error).
fn duration(
    key: &'static str,
    value: &str,
    examples: &str,
) -> Result<std::time::Duration, ConfigError> {
    quiver_engine::housekeeping::parse_duration(value).ok_or_else(|| ConfigError::Invalid {
        key,
        message: format!("'{value}' is not a duration (e.g. {examples})"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `quiver config --defaults` reads back as the defaults, and names every
    /// key the README's config table lists, and no other.
    #[test]
    fn the_defaults_file_is_complete() {
        let text = Config::defaults_file();
        let read = Config::from_toml(&text, "defaults").expect("the defaults file parses");
        assert_eq!(read, Config::default());
        let mut section = String::new();
        let mut keys = Vec::new();
        for line in text.lines().map(str::trim) {
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = format!("[{s}] ");
            } else if let Some((key, _)) = line.split_once(" = ")
                && !line.starts_with('#')
            {
                keys.push(format!("{section}{key}"));
            }
        }
        let readme = include_str!("../README.md");
        let table: Vec<&str> = readme
            .lines()
            .skip_while(|l| !l.starts_with("## Configuration file"))
            .skip(1)
            .take_while(|l| !l.starts_with("## "))
            .filter_map(|l| l.strip_prefix("| `")?.split('`').next())
            .collect();
        for key in &keys {
            // A row may name two keys: `[object_store] access_key_id`, `secret_access_key`.
            let named = table.iter().any(|t| t == key)
                || readme.contains(&format!("`{}`", key.rsplit(' ').next().unwrap_or(key)));
            assert!(named, "{key} is not in the README's config table");
        }
        for row in &table {
            assert!(
                keys.iter().any(|k| k == row),
                "README lists {row}, the file has no such key"
            );
        }
        assert!(keys.len() >= 30, "{keys:?}");
    }

    #[test]
    fn defaults_and_overrides() {
        let c = Config::from_toml("listen = \"127.0.0.1:6000\"", "t").expect("parse");
        assert_eq!(c.listen, "127.0.0.1:6000");
        assert_eq!(c.data_dir, PathBuf::from("./quiver-data"));
        let e = Config::from_toml("listn = \"x\"", "t").expect_err("unknown key");
        assert!(e.to_string().contains("unknown field"), "{e}");
    }

    #[test]
    fn cold_tier_keys() {
        let none = Config::default().engine_options().expect("defaults");
        assert!(none.cold.is_none());
        let c = Config::from_toml(
            "data_dir = \"/d\"\n[storage]\ncold_root = \"s3://b/p\"\nssd_cache_size = \"1GiB\"\n\
             [object_store]\nendpoint = \"http://127.0.0.1:9\"\nallow_http = true\nretries = 2\n\
             retry_timeout = \"7s\"\ntimeout = \"2s\"",
            "t",
        )
        .expect("parse");
        let cold = c.engine_options().expect("options").cold.expect("cold");
        assert_eq!(cold.root, "s3://b/p");
        assert_eq!(cold.ssd.capacity, 1 << 30);
        assert_eq!(cold.ssd.block, 1 << 20);
        assert_eq!(cold.ssd.dir, PathBuf::from("/d/ssd-cache"));
        let o = &cold.storage_options;
        assert_eq!(o["aws_endpoint"], "http://127.0.0.1:9");
        assert_eq!(o["allow_http"], "true");
        assert_eq!(o["client_max_retries"], "2");
        assert_eq!(o["client_retry_timeout"], "7");
        assert_eq!(o["timeout"], "2000ms");
        assert!(
            !o.contains_key("aws_access_key_id"),
            "empty: from the environment"
        );
        let bad = Config::from_toml("[storage]\ncold_root = \"/local\"", "t").expect("parse");
        assert!(bad.engine_options().is_err());
        let bad = Config::from_toml(
            "[storage]\ncold_root = \"s3://b\"\nssd_cache_block = \"0\"",
            "t",
        )
        .expect("parse");
        assert!(bad.engine_options().is_err());
    }

    #[test]
    fn data_dir_on_an_object_store() {
        let c = Config::from_toml(
            "data_dir = \"s3://b/p\"\n[storage]\nlocal_dir = \"/l\"\n\
             [object_store]\nendpoint = \"http://127.0.0.1:9\"\nallow_http = true",
            "t",
        )
        .expect("parse");
        assert_eq!(c.data_url(), Some("s3://b/p"));
        assert_eq!(c.local_dir(), PathBuf::from("/l"));
        let o = c.engine_options().expect("options");
        assert!(o.catalog_on_store);
        let cold = o.cold.expect("the data directory is the cold tier");
        assert_eq!(cold.root, "s3://b/p");
        assert_eq!(cold.ssd.dir, PathBuf::from("/l/ssd-cache"));
        // A local data directory keeps its catalog.
        let local = Config::default();
        assert_eq!(local.data_url(), None);
        assert_eq!(local.local_dir(), PathBuf::from("./quiver-data"));
        assert!(!local.engine_options().expect("defaults").catalog_on_store);
        for bad in [
            "data_dir = \"s3://b/p\"\n[storage]\ncold_root = \"s3://other\"",
            "data_dir = \"gs://b/p\"",
            "data_dir = \"s3://\"",
            "data_dir = \"s3://b/p\"\n[storage]\nlocal_dir = \"\"",
        ] {
            let c = Config::from_toml(bad, "t").expect("parse");
            assert!(c.engine_options().is_err(), "{bad}");
        }
    }

    #[test]
    fn cache_and_search_sections() {
        let c = Config::from_toml("[cache]\nmemory = \"256MiB\"\n[search]\nmax_k = 50", "t")
            .expect("parse");
        let o = c.engine_options().expect("options");
        assert_eq!(o.budget.total, 256 << 20);
        assert_eq!(o.max_k, 50);
        let d = Config::default().engine_options().expect("defaults");
        assert_eq!(d.budget.total, 2 << 30);
        assert_eq!(d.max_k, 10_000);
        assert_eq!(d.version_retention, std::time::Duration::from_secs(3600));
        assert_eq!(d.log_flush_interval, std::time::Duration::from_secs(1));
        let r = Config::from_toml("[storage]\nversion_retention = \"0\"", "t").expect("parse");
        assert!(
            r.engine_options()
                .expect("retention")
                .version_retention
                .is_zero()
        );
        let bad =
            Config::from_toml("[storage]\nversion_retention = \"later\"", "t").expect("parse");
        assert!(bad.engine_options().is_err());
        let bad = Config::from_toml("[cache]\nmemory = \"lots\"", "t").expect("parse");
        assert!(bad.engine_options().is_err());
        let small = Config::from_toml("[cache]\nmemory = \"1MiB\"", "t").expect("parse");
        assert!(small.engine_options().is_err());
        assert_eq!(d.budget.result_bytes(), (2u64 << 30) / 100 * 5);
        assert_eq!(d.result_ttl, std::time::Duration::from_secs(30));
        assert_eq!(d.vector_ttl, Some(std::time::Duration::from_secs(300)));
        let c = Config::from_toml(
            "[cache]\nresult_share = 0\nchunk_share = 50\nvector_ttl = \"0\"\nresult_ttl = \"2m\"",
            "t",
        )
        .expect("parse");
        let o = c.engine_options().expect("shares");
        assert_eq!(o.budget.result_bytes(), 0);
        assert_eq!(o.budget.chunk_bytes(), (2u64 << 30) / 100 * 50);
        assert_eq!(o.vector_ttl, None);
        assert_eq!(o.result_ttl, std::time::Duration::from_secs(120));
        let over = Config::from_toml("[cache]\nchunk_share = 70", "t").expect("parse");
        assert!(over.engine_options().is_err());
        let never = Config::from_toml("[cache]\nresult_ttl = \"0\"", "t").expect("parse");
        assert!(never.engine_options().is_err());
    }
}
