//! The model bundle: a directory of model files plus a `manifest.json` that records the
//! format version, a model version, the creation time, caller metadata, and each file's
//! relative path, size and SHA-256.
//!
//! [`BundleWriter`] writes files as they are added and the manifest last (via a temporary
//! file and a rename), so a directory without a manifest is an unfinished bundle.
//! [`Bundle::open`] verifies everything before handing out any byte: a missing, truncated,
//! altered or unlisted file, or an unknown format version, is refused with an error naming the
//! file. It does not know what the files mean; the caller names and decodes them.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The manifest's file name inside a bundle directory.
pub const MANIFEST: &str = "manifest.json";
/// The manifest format this version writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// Lower-case hex SHA-256 of `bytes` (for files and for data set hashes).
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    let mut s = String::with_capacity(64);
    for b in digest.iter() {
        s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        s.push(char::from(b"0123456789abcdef"[usize::from(b & 0xf)]));
    }
    s
}

/// What went wrong reading or writing a bundle; every variant names the file.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// An I/O error on a file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file listed in the manifest (or the manifest itself) does not exist.
    #[error("{path}: missing from the bundle")]
    Missing {
        /// The file.
        path: PathBuf,
    },
    /// A file's size differs from the manifest (truncated or appended to).
    #[error("{path}: size {found} bytes, manifest says {expected} (truncated or modified)")]
    Size {
        /// The file.
        path: PathBuf,
        /// Size recorded in the manifest.
        expected: u64,
        /// Size on disk.
        found: u64,
    },
    /// A file's SHA-256 differs from the manifest.
    #[error("{path}: SHA-256 {found}, manifest says {expected} (modified)")]
    Hash {
        /// The file.
        path: PathBuf,
        /// Hash recorded in the manifest.
        expected: String,
        /// Hash of the bytes on disk.
        found: String,
    },
    /// A file in the directory is not listed in the manifest.
    #[error("{path}: not listed in the manifest")]
    Unknown {
        /// The file.
        path: PathBuf,
    },
    /// The manifest has a format version this build cannot read.
    #[error("{path}: format version {found}, this build reads {supported}")]
    Version {
        /// The manifest.
        path: PathBuf,
        /// Version found.
        found: u32,
        /// Version supported.
        supported: u32,
    },
    /// The manifest is not valid JSON of the expected shape, or lists a bad path.
    #[error("{path}: invalid manifest: {reason}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A file name given to the writer or reader is not a safe relative path.
    #[error("{name:?}: invalid bundle file name: {reason}")]
    Name {
        /// The name.
        name: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The writer was given the same name twice.
    #[error("{name:?}: added twice")]
    Duplicate {
        /// The name.
        name: String,
    },
    /// `read` asked for a name the manifest does not list.
    #[error("{name:?}: not in this bundle")]
    NotInBundle {
        /// The name.
        name: String,
    },
    /// The target directory already holds files.
    #[error("{path}: directory is not empty")]
    NotEmpty {
        /// The directory.
        path: PathBuf,
    },
}

/// One file's entry in the manifest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Path relative to the bundle directory, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256.
    pub sha256: String,
}

/// The bundle's `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// Manifest format version ([`FORMAT_VERSION`]).
    pub format_version: u32,
    /// Model version: given to the writer, or derived from the files' hashes.
    pub model_version: String,
    /// Creation time, RFC 3339 UTC.
    pub created_at: String,
    /// Caller metadata: data description and hash, metrics, seed, config…
    pub metadata: serde_json::Value,
    /// Every file of the bundle except the manifest, sorted by path.
    pub files: Vec<FileEntry>,
}

/// Writes a bundle: `new(dir)`, `add_file` for each file, then `finish(metadata)`.
#[derive(Debug)]
pub struct BundleWriter {
    dir: PathBuf,
    files: Vec<FileEntry>,
    model_version: Option<String>,
    created_at: Option<String>,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Checks that `name` is a relative `/`-separated path of plain components.
fn check_name(name: &str) -> Result<(), BundleError> {
    let bad = |reason| {
        Err(BundleError::Name {
            name: name.to_string(),
            reason,
        })
    };
    if name.is_empty() {
        return bad("empty");
    }
    if name == MANIFEST {
        return bad("reserved for the manifest");
    }
    for part in name.split('/') {
        if part.is_empty() || part == "." || part == ".." {
            return bad("components must be non-empty and not . or ..");
        }
        if !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        {
            return bad("only ASCII letters, digits, '.', '_', '-' and '/' are allowed");
        }
    }
    Ok(())
}

impl BundleWriter {
    /// Starts a bundle in `dir`, creating it; refuses a directory that already holds files.
    pub fn new(dir: impl AsRef<Path>) -> Result<Self, BundleError> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        if fs::read_dir(&dir).map_err(io_err(&dir))?.next().is_some() {
            return Err(BundleError::NotEmpty { path: dir });
        }
        Ok(Self {
            dir,
            files: Vec::new(),
            model_version: None,
            created_at: None,
        })
    }

    /// Sets the model version (default: `sha256:` and the first 16 hex digits of a hash over
    /// every file's path and hash, so identical content gets the same version).
    pub fn model_version(mut self, version: impl Into<String>) -> Self {
        self.model_version = Some(version.into());
        self
    }

    /// Sets the creation time (RFC 3339); default: now. For reproducible bundles.
    pub fn created_at(mut self, rfc3339: impl Into<String>) -> Self {
        self.created_at = Some(rfc3339.into());
        self
    }

    /// Writes `bytes` to `name` (relative, `/`-separated; sub-directories are created).
    pub fn add_file(&mut self, name: &str, bytes: &[u8]) -> Result<(), BundleError> {
        check_name(name)?;
        if self.files.iter().any(|f| f.path == name) {
            return Err(BundleError::Duplicate {
                name: name.to_string(),
            });
        }
        let path = self.dir.join(name);
        if let Some(parent) = path.parent() {
            fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        fs::write(&path, bytes).map_err(io_err(&path))?;
        self.files.push(FileEntry {
            path: name.to_string(),
            size: bytes.len() as u64,
            sha256: sha256_hex(bytes),
        });
        Ok(())
    }

    /// Writes the manifest with `metadata` and returns it.
    pub fn finish(mut self, metadata: serde_json::Value) -> Result<Manifest, BundleError> {
        self.files.sort_by(|a, b| a.path.cmp(&b.path));
        let model_version = self.model_version.unwrap_or_else(|| {
            let listing: String = self
                .files
                .iter()
                .map(|f| format!("{}\t{}\n", f.path, f.sha256))
                .collect();
            format!("sha256:{}", &sha256_hex(listing.as_bytes())[..16])
        });
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            model_version,
            created_at: self.created_at.unwrap_or_else(now_rfc3339),
            metadata,
            files: self.files,
        };
        let path = self.dir.join(MANIFEST);
        let tmp = self.dir.join(".manifest.json.tmp");
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| BundleError::Manifest {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        fs::write(&tmp, json).map_err(io_err(&tmp))?;
        fs::rename(&tmp, &path).map_err(io_err(&path))?;
        Ok(manifest)
    }
}

/// An opened, verified bundle.
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
    manifest: Manifest,
}

impl Bundle {
    /// Opens the bundle in `dir` and verifies every listed file's size and SHA-256, and that
    /// the directory holds nothing else.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, BundleError> {
        let dir = dir.as_ref().to_path_buf();
        let mpath = dir.join(MANIFEST);
        let bytes = match fs::read(&mpath) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BundleError::Missing { path: mpath });
            }
            Err(e) => return Err(io_err(&mpath)(e)),
        };
        // Read the version first, so a future format is reported as such, not as bad JSON.
        #[derive(Deserialize)]
        struct Version {
            format_version: u32,
        }
        let bad = |reason: String| BundleError::Manifest {
            path: mpath.clone(),
            reason,
        };
        let version: Version = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        if version.format_version != FORMAT_VERSION {
            return Err(BundleError::Version {
                path: mpath,
                found: version.format_version,
                supported: FORMAT_VERSION,
            });
        }
        let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
        let mut listed = BTreeSet::new();
        for f in &manifest.files {
            check_name(&f.path).map_err(|e| bad(e.to_string()))?;
            if !listed.insert(f.path.clone()) {
                return Err(bad(format!("{:?} listed twice", f.path)));
            }
        }
        let bundle = Self { dir, manifest };
        for f in &bundle.manifest.files {
            bundle.verified_read(f)?;
        }
        // Anything on disk that the manifest does not list is refused.
        let mut stack = vec![bundle.dir.clone()];
        while let Some(d) = stack.pop() {
            for entry in fs::read_dir(&d).map_err(io_err(&d))? {
                let entry = entry.map_err(io_err(&d))?;
                let path = entry.path();
                let ty = entry.file_type().map_err(io_err(&path))?;
                if ty.is_dir() {
                    stack.push(path);
                    continue;
                }
                let rel = path
                    .strip_prefix(&bundle.dir)
                    .expect("walked from the bundle directory")
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect::<Vec<_>>()
                    .join("/");
                if rel != MANIFEST && !listed.contains(&rel) {
                    return Err(BundleError::Unknown { path });
                }
            }
        }
        Ok(bundle)
    }

    fn verified_read(&self, entry: &FileEntry) -> Result<Vec<u8>, BundleError> {
        let path = self.dir.join(&entry.path);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(BundleError::Missing { path });
            }
            Err(e) => return Err(io_err(&path)(e)),
        };
        if bytes.len() as u64 != entry.size {
            return Err(BundleError::Size {
                path,
                expected: entry.size,
                found: bytes.len() as u64,
            });
        }
        let found = sha256_hex(&bytes);
        if found != entry.sha256 {
            return Err(BundleError::Hash {
                path,
                expected: entry.sha256.clone(),
                found,
            });
        }
        Ok(bytes)
    }

    /// The bytes of file `name`, verified again against the manifest (the file may have
    /// changed since `open`).
    pub fn read(&self, name: &str) -> Result<Vec<u8>, BundleError> {
        let entry = self
            .manifest
            .files
            .iter()
            .find(|f| f.path == name)
            .ok_or_else(|| BundleError::NotInBundle {
                name: name.to_string(),
            })?;
        self.verified_read(entry)
    }

    /// The manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// The caller metadata.
    pub fn metadata(&self) -> &serde_json::Value {
        &self.manifest.metadata
    }

    /// The bundle directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Now as RFC 3339 UTC with second precision.
fn now_rfc3339() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    rfc3339_from_unix(secs)
}

/// Formats Unix seconds as `YYYY-MM-DDTHH:MM:SSZ`.
fn rfc3339_from_unix(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write_bundle(dir: &Path) -> Manifest {
        let mut w = BundleWriter::new(dir).unwrap();
        w.add_file("gbdt/cpu.json", b"{\"trees\": []}").unwrap();
        w.add_file("meta.json", b"meta bytes").unwrap();
        w.finish(json!({"seed": 7, "data_sha256": sha256_hex(b"data")}))
            .unwrap()
    }

    fn err_of(dir: &Path) -> String {
        Bundle::open(dir).unwrap_err().to_string()
    }

    #[test]
    fn round_trip_and_helpers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("bundle");
        let m = write_bundle(&dir);
        let b = Bundle::open(&dir).unwrap();
        assert_eq!(b.manifest(), &m);
        assert_eq!(b.read("meta.json").unwrap(), b"meta bytes");
        assert_eq!(b.read("gbdt/cpu.json").unwrap(), b"{\"trees\": []}");
        assert_eq!(b.metadata()["seed"], 7);
        assert!(m.model_version.starts_with("sha256:"));
        assert!(matches!(
            b.read("nope"),
            Err(BundleError::NotInBundle { .. })
        ));
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(rfc3339_from_unix(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_from_unix(1_709_210_096), "2024-02-29T12:34:56Z");
        // Writer refusals.
        assert!(BundleWriter::new(&dir).is_err());
        let mut w = BundleWriter::new(tmp.path().join("other")).unwrap();
        assert!(w.add_file("../escape", b"x").is_err());
        assert!(w.add_file("manifest.json", b"x").is_err());
        w.add_file("a", b"x").unwrap();
        assert!(matches!(
            w.add_file("a", b"y"),
            Err(BundleError::Duplicate { .. })
        ));
    }

    #[test]
    fn tampered_truncated_missing_unknown_and_bad_version_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let fresh = |name: &str| {
            let dir = tmp.path().join(name);
            write_bundle(&dir);
            dir
        };

        let dir = fresh("tamper");
        fs::write(dir.join("meta.json"), b"meta bytez").unwrap();
        let e = err_of(&dir);
        assert!(e.contains("meta.json") && e.contains("SHA-256"), "{e}");

        let dir = fresh("truncate");
        fs::write(dir.join("gbdt/cpu.json"), b"{\"tr").unwrap();
        let e = err_of(&dir);
        assert!(e.contains("cpu.json") && e.contains("truncated"), "{e}");

        let dir = fresh("missing");
        fs::remove_file(dir.join("meta.json")).unwrap();
        let e = err_of(&dir);
        assert!(e.contains("meta.json") && e.contains("missing"), "{e}");

        let dir = fresh("unknown");
        fs::write(dir.join("gbdt/extra.bin"), b"?").unwrap();
        let e = err_of(&dir);
        assert!(e.contains("extra.bin") && e.contains("not listed"), "{e}");

        let dir = fresh("version");
        let mpath = dir.join(MANIFEST);
        let mut m: serde_json::Value = serde_json::from_slice(&fs::read(&mpath).unwrap()).unwrap();
        m["format_version"] = json!(2);
        fs::write(&mpath, serde_json::to_vec(&m).unwrap()).unwrap();
        let e = err_of(&dir);
        assert!(
            e.contains("manifest.json") && e.contains("format version 2"),
            "{e}"
        );

        let dir = fresh("no-manifest");
        fs::remove_file(dir.join(MANIFEST)).unwrap();
        let e = err_of(&dir);
        assert!(e.contains("manifest.json") && e.contains("missing"), "{e}");

        // A file changed after open is caught by read.
        let dir = fresh("late");
        let b = Bundle::open(&dir).unwrap();
        fs::write(dir.join("meta.json"), b"META BYTES").unwrap();
        assert!(matches!(b.read("meta.json"), Err(BundleError::Hash { .. })));
    }
}
