//! The per-tenant file-storage tree.
//!
//! Every tenant owns `<root>/tenants/<slug>/` with a fixed set of top-level folders
//! ([`FOLDERS`]). Everything a request names is resolved *inside* that tree or refused:
//! no `..`, no absolute paths, no drive prefixes, and no symlink that leads out of it.
//!
//! The API is synchronous (plain `std::fs`); async callers run it on a blocking thread.
//! The slug is trusted here: it was validated by the owner crate before it reached us,
//! but it is still checked to be a single normal path component.

use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

/// The folders every tenant tree starts with.
pub const FOLDERS: [&str; 5] = [
    "documents",
    "uploads",
    "medical-imaging",
    "practices",
    "backups",
];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("path is not allowed: {0}")]
    InvalidPath(String),
    #[error("path escapes the tenant tree: {0}")]
    Escapes(String),
    #[error("storage i/o error at {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl Error {
    fn io(path: &Path, source: io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// The storage root shared by all tenants.
#[derive(Debug, Clone)]
pub struct Storage {
    root: PathBuf,
}

impl Storage {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The tree of one tenant. Refuses a slug that is not one plain path component.
    pub fn tenant(&self, slug: &str) -> Result<TenantTree> {
        if !is_plain_component(slug) {
            return Err(Error::InvalidPath(slug.to_string()));
        }
        Ok(TenantTree {
            dir: self.root.join("tenants").join(slug),
        })
    }
}

/// One tenant's directory tree.
#[derive(Debug, Clone)]
pub struct TenantTree {
    dir: PathBuf,
}

impl TenantTree {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// Creates the tree and its folders. Idempotent: an existing tree is completed, not reset.
    pub fn create(&self) -> Result<()> {
        for folder in FOLDERS {
            let path = self.dir.join(folder);
            fs::create_dir_all(&path).map_err(|e| Error::io(&path, e))?;
        }
        Ok(())
    }

    /// Removes the whole tree. Idempotent: a missing tree is not an error.
    pub fn remove(&self) -> Result<()> {
        match fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(&self.dir, e)),
        }
    }

    /// Total size in bytes of the regular files in the tree. Symlinks are not followed
    /// (a link counts as nothing), so a link cannot make a tenant pay for someone else's
    /// files or make the walk leave the tree.
    pub fn size_bytes(&self) -> Result<u64> {
        fn walk(dir: &Path) -> Result<u64> {
            let mut total = 0;
            let entries = match fs::read_dir(dir) {
                Ok(entries) => entries,
                Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(Error::io(dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io(dir, e))?;
                let path = entry.path();
                let meta = fs::symlink_metadata(&path).map_err(|e| Error::io(&path, e))?;
                if meta.is_dir() {
                    total += walk(&path)?;
                } else if meta.is_file() {
                    total += meta.len();
                }
            }
            Ok(total)
        }
        walk(&self.dir)
    }

    /// Resolves a relative path (`uploads/scan.png`) to a path inside the tree.
    ///
    /// Refused: empty paths, absolute paths, `..`, `.` components, NUL bytes, backslashes,
    /// and any existing component that is a symlink (so nothing already on disk can lead
    /// the path out of the tree). The first component must be one of [`FOLDERS`].
    /// The target itself need not exist.
    pub fn resolve(&self, relative: &str) -> Result<PathBuf> {
        let refuse = || Error::InvalidPath(relative.to_string());
        if relative.is_empty() || relative.contains('\0') || relative.contains('\\') {
            return Err(refuse());
        }
        let rel = Path::new(relative);
        let mut parts = Vec::new();
        for component in rel.components() {
            match component {
                Component::Normal(part) => {
                    let part = part.to_str().ok_or_else(refuse)?;
                    parts.push(part);
                }
                _ => return Err(refuse()),
            }
        }
        match parts.first() {
            Some(first) if FOLDERS.contains(first) => {}
            _ => return Err(refuse()),
        }
        let mut path = self.dir.clone();
        for part in parts {
            path.push(part);
            match fs::symlink_metadata(&path) {
                Ok(meta) if meta.file_type().is_symlink() => {
                    return Err(Error::Escapes(relative.to_string()));
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        Ok(path)
    }
}

fn is_plain_component(s: &str) -> bool {
    let mut components = Path::new(s).components();
    matches!(components.next(), Some(Component::Normal(_)))
        && components.next().is_none()
        && !s.contains(['/', '\\', '\0'])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree() -> (tempfile::TempDir, TenantTree) {
        let dir = tempfile::tempdir().expect("tempdir");
        let tree = Storage::new(dir.path()).tenant("acme").expect("slug");
        (dir, tree)
    }

    #[test]
    fn create_makes_every_folder_and_is_idempotent() {
        let (_dir, tree) = tree();
        tree.create().expect("create");
        fs::write(tree.dir().join("documents/a.txt"), b"hello").expect("write");
        tree.create().expect("create again");
        for folder in FOLDERS {
            assert!(tree.dir().join(folder).is_dir(), "{folder} missing");
        }
        assert_eq!(tree.size_bytes().expect("size"), 5, "existing files kept");
    }

    #[test]
    fn size_counts_nested_files_and_ignores_symlinks() {
        let (dir, tree) = tree();
        tree.create().expect("create");
        fs::create_dir_all(tree.dir().join("uploads/x/y")).expect("mkdir");
        fs::write(tree.dir().join("uploads/x/y/b.bin"), vec![0u8; 1000]).expect("write");
        fs::write(tree.dir().join("backups/c.bin"), vec![0u8; 24]).expect("write");
        let outside = dir.path().join("big.bin");
        fs::write(&outside, vec![0u8; 5000]).expect("write");
        std::os::unix::fs::symlink(&outside, tree.dir().join("documents/link")).expect("link");
        assert_eq!(tree.size_bytes().expect("size"), 1024);
    }

    #[test]
    fn remove_deletes_the_tree_and_tolerates_absence() {
        let (_dir, tree) = tree();
        tree.create().expect("create");
        tree.remove().expect("remove");
        assert!(!tree.dir().exists());
        tree.remove().expect("remove again");
    }

    #[test]
    fn resolve_accepts_paths_inside_known_folders() {
        let (_dir, tree) = tree();
        tree.create().expect("create");
        let p = tree.resolve("uploads/2026/scan.png").expect("resolve");
        assert_eq!(p, tree.dir().join("uploads/2026/scan.png"));
    }

    #[test]
    fn resolve_refuses_traversal_and_absolute_paths() {
        let (_dir, tree) = tree();
        tree.create().expect("create");
        for bad in [
            "",
            "../x",
            "uploads/../../etc/passwd",
            "/etc/passwd",
            "./uploads/a",
            "uploads\\..\\a",
            "secret/a",
            "uploads/a\0b",
        ] {
            assert!(tree.resolve(bad).is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn resolve_refuses_symlinks_leading_out() {
        let (dir, tree) = tree();
        tree.create().expect("create");
        let outside = dir.path().join("outside");
        fs::create_dir(&outside).expect("mkdir");
        std::os::unix::fs::symlink(&outside, tree.dir().join("uploads/escape")).expect("link");
        assert!(matches!(
            tree.resolve("uploads/escape/file"),
            Err(Error::Escapes(_))
        ));
    }

    #[test]
    fn tenant_refuses_slugs_that_are_not_one_component() {
        let storage = Storage::new("/tmp/x");
        for bad in ["", "..", ".", "a/b", "/abs", "a\\b"] {
            assert!(storage.tenant(bad).is_err(), "{bad:?} was accepted");
        }
    }
}
