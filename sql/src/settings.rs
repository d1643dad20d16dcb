//! Session settings: `SET` / `SHOW` / `RESET`.
//!
//! Quiver's search knobs are `quiver.nprobes`, `quiver.ef`, `quiver.refine_factor`;
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
    ("intervalstyle", "postgres"),
    ("jit", "off"),
    ("lock_timeout", "0"),
    ("max_parallel_workers_per_gather", "2"),
    ("search_path", "\"$user\", public"),
    ("server_encoding", "UTF8"),
    ("server_version", "16.0"),
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
        _ => None,
    }
}

#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub knobs: SearchKnobs,
    values: BTreeMap<String, String>,
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
            Some(_) => self.knobs.refine_factor = Some(positive(&name, value, 1_000)? as u32),
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
            Some(_) => self.knobs.refine_factor = None,
            None => {
                self.values.remove(&name);
            }
        }
        Ok(())
    }

    pub fn reset_all(&mut self) {
        *self = Settings::default();
    }

    /// The value `SHOW name` prints.
    pub fn show(&self, name: &str) -> Result<String> {
        let name = name.to_ascii_lowercase();
        let knob = |v: Option<usize>| v.map_or_else(|| "default".to_string(), |n| n.to_string());
        match knob_name(&name) {
            Some("quiver.nprobes") => return Ok(knob(self.knobs.nprobes)),
            Some("quiver.ef") => return Ok(knob(self.knobs.ef)),
            Some(_) => return Ok(knob(self.knobs.refine_factor.map(|r| r as usize))),
            None => {}
        }
        if let Some(v) = self.values.get(&name) {
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
        for n in ["quiver.nprobes", "quiver.ef", "quiver.refine_factor"] {
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
        s.reset("hnsw.ef_search").expect("reset");
        assert_eq!(s.show("quiver.ef").expect("show"), "default");
    }
}
