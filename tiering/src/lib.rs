//! quiver-tiering: where table data lives.
//!
//! Today every table is a Lance dataset in a local folder under the data
//! directory; [`StorageRoot`] turns a table's folder name into the URI Lance
//! opens. Object-store roots (S3, memory), the local-SSD cache of remote files
//! and the hot/cold placement policy belong here as they arrive; the engine
//! only ever asks this crate for URIs.

use std::path::{Path, PathBuf};

/// The root under which table datasets are stored.
#[derive(Debug, Clone)]
pub struct StorageRoot {
    tables_dir: PathBuf,
}

impl StorageRoot {
    /// A root in a local folder: datasets go to `<data_dir>/tables/`.
    pub fn local(data_dir: &Path) -> std::io::Result<StorageRoot> {
        let tables_dir = data_dir.join("tables");
        std::fs::create_dir_all(&tables_dir)?;
        let tables_dir = tables_dir.canonicalize()?;
        Ok(StorageRoot { tables_dir })
    }

    /// The URI of the dataset stored in folder `dir`.
    pub fn dataset_uri(&self, dir: &str) -> String {
        self.tables_dir.join(dir).to_string_lossy().into_owned()
    }

    /// The dataset folders under this root (`*.lance`), by folder name.
    pub fn dataset_dirs(&self) -> std::io::Result<Vec<String>> {
        let mut dirs = Vec::new();
        for entry in std::fs::read_dir(&self.tables_dir)? {
            let entry = entry?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".lance") && entry.file_type()?.is_dir() {
                dirs.push(name);
            }
        }
        dirs.sort();
        Ok(dirs)
    }

    /// Removes a dropped table's files. A failure leaves unreachable files
    /// behind, never a broken table, so callers may log and go on.
    pub fn remove_dataset(&self, dir: &str) -> std::io::Result<()> {
        let path = self.tables_dir.join(dir);
        match std::fs::remove_dir_all(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_root_makes_uris_under_tables() {
        let dir = std::env::temp_dir().join(format!("quiver-tiering-{}", std::process::id()));
        let root = StorageRoot::local(&dir).expect("root");
        assert!(
            root.dataset_uri("docs-1.lance")
                .ends_with("tables/docs-1.lance")
        );
        root.remove_dataset("missing.lance")
            .expect("missing is fine");
        std::fs::create_dir_all(dir.join("tables/b-2.lance")).expect("mkdir");
        std::fs::create_dir_all(dir.join("tables/a-1.lance")).expect("mkdir");
        std::fs::write(dir.join("tables/notes.txt"), b"x").expect("write");
        assert_eq!(
            root.dataset_dirs().expect("list"),
            ["a-1.lance", "b-2.lance"]
        );
        std::fs::remove_dir_all(dir).expect("cleanup");
    }
}
