//! Session settings: `SET` / `SHOW` / `RESET`.
//!
//! Quiver's search knobs are `quiver.nprobes`, `quiver.ef`, `quiver.refine_factor`
//! and `quiver.shard_probes` (the shards of an ivf-sharded table a search reads);
//! pgvector's `hnsw.ef_search` and `ivfflat.probes` are accepted as aliases of
//! `quiver.ef` and `quiver.nprobes`. Ordinary Postgres settings that drivers set
//! at connect time are kept and shown but change nothing.

use std::collections::BTreeMap;

use quiver_engine::search::SearchKnobs;

use crate::error::Result;
use crate::sql_err;

/// Postgres settings clients commonly set or show, with their defaults.
const PG_SETTINGS: &[(&str, &str)] = &[
    ("application_name", ""),
    ("client_encoding", "UTF8"),
    ("client_min_messages", "notice"),
    ("datestyle", "ISO, MDY"),
    ("default_transaction_isolation", "read committed"),
    ("extra_float_digits", "1"),
    ("idle_in_transaction_session_timeout", "0"),
    ("integer_datetimes", "on"),
    ("intervalstyle", "postgres"),
    ("jit", "off"),
    ("lock_timeout", "0"),
    // Statements that ran at least this long are logged (ms; -1: none, 0: all).
    ("log_min_duration_statement", "-1"),
    ("max_identifier_length", "63"),
    ("max_parallel_workers_per_gather", "2"),
    // Quiver's: whether reads may be answered from the result cache.
    ("quiver.result_cache", "on"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", "16.0"),
    ("server_version_num", "160000"),
    ("standard_conforming_strings", "on"),
    ("statement_timeout", "0"),
    ("synchronous_commit", "on"),
    ("timezone", "UTC"),
    ("transaction_isolation", "read committed"),
    ("work_mem", "4MB"),
];

/// The canonical knob a name sets, if it is a search knob.
fn knob_name(name: &str) -> Option<&'static str> {
    match name {
        "quiver.nprobes" | "ivfflat.probes" => Some("quiver.nprobes"),
        "quiver.ef" | "hnsw.ef_search" => Some("quiver.ef"),
        "quiver.refine_factor" => Some("quiver.refine_factor"),
        "quiver.shard_probes" => Some("quiver.shard_probes"),
        _ => None,
    }
}

#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub knobs: SearchKnobs,
    values: BTreeMap<String, String>,
    /// Values the client's start-up message gave (`application_name`, …):
    /// the session's defaults, which RESET goes back to.
    startup: BTreeMap<String, String>,
}

fn positive(name: &str, value: &str, max: usize) -> Result<usize> {
    match value.trim().parse::<usize>() {
        Ok(n) if n >= 1 && n <= max => Ok(n),
        _ => sql_err!(
            InvalidParameterValue,
            "invalid value for parameter \"{name}\": \"{value}\" (an integer from 1 to {max})"
        ),
    }
}

impl Settings {
    pub fn set(&mut self, name: &str, value: &str) -> Result<()> {
        let name = name.to_ascii_lowercase();
        match knob_name(&name) {
            Some("quiver.nprobes") => self.knobs.nprobes = Some(positive(&name, value, 65_536)?),
            Some("quiver.ef") => self.knobs.ef = Some(positive(&name, value, 100_000)?),
            Some("quiver.shard_probes") => {
                let max = quiver_engine::ring::MAX_SHARDS as usize;
                self.knobs.shard_probes = Some(positive(&name, value, max)?)
            }
            Some(_) => self.knobs.refine_factor = Some(positive(&name, value, 1_000)? as u32),
            None if name == "quiver.result_cache" => {
                let on = match value.trim().to_ascii_lowercase().as_str() {
                    "on" | "true" | "yes" | "1" => "on",
                    "off" | "false" | "no" | "0" => "off",
                    _ => {
                        return sql_err!(
                            InvalidParameterValue,
                            "parameter \"{name}\" requires a Boolean value"
                        );
                    }
                };
                self.values.insert(name, on.to_string());
            }
            None => {
                let known = PG_SETTINGS.iter().any(|(n, _)| *n == name);
                let placeholder = name.contains('.') && !name.starts_with("quiver.");
                if !known && !placeholder {
                    return sql_err!(
                        UndefinedParameter,
                        "unrecognized configuration parameter \"{name}\""
                    );
                }
                self.values.insert(name, value.to_string());
            }
        }
        Ok(())
    }

    pub fn reset(&mut self, name: &str) -> Result<()> {
        let name = name.to_ascii_lowercase();
        match knob_name(&name) {
            Some("quiver.nprobes") => self.knobs.nprobes = None,
            Some("quiver.ef") => self.knobs.ef = None,
            Some("quiver.shard_probes") => self.knobs.shard_probes = None,
            Some(_) => self.knobs.refine_factor = None,
            None => {
                self.values.remove(&name);
            }
        }
        Ok(())
    }

    pub fn reset_all(&mut self) {
        *self = Settings {
            startup: std::mem::take(&mut self.startup),
            ..Settings::default()
        };
    }

    /// A setting the start-up message gave; ignored unless it is one of
    /// PostgreSQL's settings Quiver knows.
    pub fn set_startup(&mut self, name: &str, value: &str) {
        let name = name.to_ascii_lowercase();
        if PG_SETTINGS.iter().any(|(n, _)| *n == name) {
            self.startup.insert(name, value.to_string());
        }
    }

    /// The value `SHOW name` prints.
    pub fn show(&self, name: &str) -> Result<String> {
        let name = name.to_ascii_lowercase();
        let knob = |v: Option<usize>| v.map_or_else(|| "default".to_string(), |n| n.to_string());
        match knob_name(&name) {
            Some("quiver.nprobes") => return Ok(knob(self.knobs.nprobes)),
            Some("quiver.ef") => return Ok(knob(self.knobs.ef)),
            Some("quiver.shard_probes") => return Ok(self.knobs.shard_probes().to_string()),
            Some(_) => return Ok(knob(self.knobs.refine_factor.map(|r| r as usize))),
            None => {}
        }
        if let Some(v) = self.values.get(&name).or_else(|| self.startup.get(&name)) {
            return Ok(v.clone());
        }
        match PG_SETTINGS.iter().find(|(n, _)| *n == name) {
            Some((_, v)) => Ok(v.to_string()),
            None => sql_err!(
                UndefinedParameter,
                "unrecognized configuration parameter \"{name}\""
            ),
        }
    }

    /// Every setting for `SHOW ALL`.
    pub fn all(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for n in [
            "quiver.nprobes",
            "quiver.ef",
            "quiver.refine_factor",
            "quiver.shard_probes",
        ] {
            out.push((n.to_string(), self.show(n).unwrap_or_default()));
        }
        for (n, _) in PG_SETTINGS {
            out.push((n.to_string(), self.show(n).unwrap_or_default()));
        }
        for (n, v) in &self.values {
            if !PG_SETTINGS.iter().any(|(p, _)| p == n) {
                out.push((n.clone(), v.clone()));
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pgvector_knobs_map_to_quiver_knobs() {
        let mut s = Settings::default();
        s.set("hnsw.ef_search", "40").expect("set");
        s.set("ivfflat.probes", "7").expect("set");
        assert_eq!(s.knobs.ef, Some(40));
        assert_eq!(s.show("quiver.nprobes").expect("show"), "7");
        assert!(s.set("quiver.ef", "0").is_err());
        assert!(s.set("quiver.bogus", "1").is_err());
        assert!(s.set("no_such_setting", "1").is_err());
        s.set("myapp.flag", "on").expect("placeholder");
        s.set("quiver.result_cache", "false").expect("bool");
        assert_eq!(s.show("quiver.result_cache").expect("show"), "off");
        assert!(s.set("quiver.result_cache", "sometimes").is_err());
        s.reset("hnsw.ef_search").expect("reset");
        assert_eq!(s.show("quiver.ef").expect("show"), "default");
    }
}

/// A session's settings, shared with the functions that read and set them
/// (`current_setting`, `set_config`) and with `vector_search` (its knobs).
#[derive(Debug, Default)]
pub struct SessionSettings {
    settings: std::sync::Mutex<Settings>,
    /// The search knobs, as the last change left them.
    pub knobs: std::sync::Arc<std::sync::Mutex<SearchKnobs>>,
    /// Counts changes (generic plans are made per generation).
    pub generation: std::sync::atomic::AtomicU64,
}

impl SessionSettings {
    /// Runs `f` on the settings (counted as a change) and publishes the knobs.
    pub fn with<T>(&self, f: impl FnOnce(&mut Settings) -> Result<T>) -> Result<T> {
        let mut s = match self.settings.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        self.generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let out = f(&mut s)?;
        let knobs = s.knobs.clone();
        match self.knobs.lock() {
            Ok(mut k) => *k = knobs,
            Err(p) => *p.into_inner() = knobs,
        }
        Ok(out)
    }

    /// Every setting with its value (`SHOW ALL`, `pg_settings`).
    pub fn all(&self) -> Vec<(String, String)> {
        match self.settings.lock() {
            Ok(g) => g.all(),
            Err(p) => p.into_inner().all(),
        }
    }

    /// One setting's value, without counting a change.
    pub fn show(&self, name: &str) -> Result<String> {
        let s = match self.settings.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        s.show(name)
    }

    /// `quiver.result_cache`: whether reads may be answered from the cache.
    pub fn result_cache(&self) -> bool {
        self.show("quiver.result_cache").is_ok_and(|v| v == "on")
    }

    /// The settings that can change what a query returns, as one text (a
    /// part of the result cache's key): every setting but those that only
    /// concern the client's connection or how values are sent.
    pub fn result_key(&self) -> String {
        const IRRELEVANT: &[&str] = &[
            "application_name",
            "client_encoding",
            "client_min_messages",
            "extra_float_digits",
            "idle_in_transaction_session_timeout",
            "lock_timeout",
            "statement_timeout",
            "quiver.result_cache",
        ];
        let mut out = String::new();
        for (n, v) in self.all() {
            if !IRRELEVANT.contains(&n.as_str()) {
                out.push_str(&n);
                out.push('=');
                out.push_str(&v);
                out.push('\n');
            }
        }
        out
    }

    /// `statement_timeout`: none when 0 or unreadable.
    pub fn statement_timeout(&self) -> Option<std::time::Duration> {
        let ms = duration_ms(&self.show("statement_timeout").ok()?)?;
        (ms > 0.0).then(|| std::time::Duration::from_secs_f64(ms / 1e3))
    }

    /// `log_min_duration_statement`: statements that ran at least this
    /// long are logged; none when negative (-1, the default) or unreadable.
    pub fn log_min_duration(&self) -> Option<std::time::Duration> {
        let ms = duration_ms(&self.show("log_min_duration_statement").ok()?)?;
        (ms >= 0.0).then(|| std::time::Duration::from_secs_f64(ms / 1e3))
    }
}

/// A duration setting in milliseconds, as PostgreSQL reads it: a number
/// of milliseconds, or with a unit (`us`, `ms`, `s`, `min`, `h`); `None`
/// when unreadable.
pub fn duration_ms(value: &str) -> Option<f64> {
    let v = value.trim().trim_matches('\'').to_ascii_lowercase();
    let split = v
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || c == '.' || (i == 0 && c == '-')))
        .map_or(v.len(), |(i, _)| i);
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().ok()?;
    let ms = match unit.trim() {
        "" | "ms" => n,
        "s" => n * 1e3,
        "min" => n * 60e3,
        "h" => n * 3_600e3,
        "us" => n / 1e3,
        _ => return None,
    };
    ms.is_finite().then_some(ms)
}
