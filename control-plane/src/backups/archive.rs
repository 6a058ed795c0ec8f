//! A tenant's file tree as a tar archive: written for a backup, unpacked for a restore,
//! and swapped in folder by folder. The `backups` folder is never part of it (it holds
//! the backups themselves), and neither is anything but folders and regular files: a
//! symlink is not followed out of the tree when archiving, nor made when unpacking.
//! Synchronous; callers run it on a blocking thread.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// The tree's folders that a backup holds.
pub fn archived_folders() -> impl Iterator<Item = &'static str> {
    storage::FOLDERS.into_iter().filter(|f| *f != "backups")
}

fn io_error(path: &Path, e: io::Error) -> Error {
    Error::Internal(format!("backup i/o error at {}: {e}", path.display()))
}

/// Appends the archived folders of `tree` to `builder`, under `prefix` (empty for none).
/// A folder missing from the tree is archived empty.
pub fn append_tree<W: io::Write>(
    builder: &mut tar::Builder<W>,
    tree: &Path,
    prefix: &str,
) -> Result<()> {
    fn walk<W: io::Write>(b: &mut tar::Builder<W>, dir: &Path, name: &Path) -> Result<()> {
        let mut entries: Vec<_> = match fs::read_dir(dir) {
            Ok(entries) => entries
                .collect::<io::Result<Vec<_>>>()
                .map_err(|e| io_error(dir, e))?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io_error(dir, e)),
        };
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let meta = fs::symlink_metadata(&path).map_err(|e| io_error(&path, e))?;
            let entry_name = name.join(entry.file_name());
            if meta.is_dir() {
                b.append_dir(&entry_name, &path)
                    .map_err(|e| io_error(&path, e))?;
                walk(b, &path, &entry_name)?;
            } else if meta.is_file() && !is_partial_upload(&entry.file_name()) {
                let mut file = fs::File::open(&path).map_err(|e| io_error(&path, e))?;
                b.append_file(&entry_name, &mut file)
                    .map_err(|e| io_error(&path, e))?;
            }
        }
        Ok(())
    }
    for folder in archived_folders() {
        let name = Path::new(prefix).join(folder);
        let dir = tree.join(folder);
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_mtime(0);
        builder
            .append_data(&mut header, &name, io::empty())
            .map_err(|e| io_error(&dir, e))?;
        walk(builder, &dir, &name)?;
    }
    Ok(())
}

/// An upload still being written (`.<id>.part`): not a file of the tenant yet.
fn is_partial_upload(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with('.') && name.ends_with(".part")
}

/// Writes the archive of `tree` to `out`.
pub fn write_archive(tree: &Path, out: &Path) -> Result<()> {
    let file = fs::File::create(out).map_err(|e| io_error(out, e))?;
    let mut builder = tar::Builder::new(io::BufWriter::new(file));
    builder.follow_symlinks(false);
    append_tree(&mut builder, tree, "")?;
    let mut writer = builder.into_inner().map_err(|e| io_error(out, e))?;
    io::Write::flush(&mut writer).map_err(|e| io_error(out, e))?;
    writer.get_ref().sync_all().map_err(|e| io_error(out, e))?;
    Ok(())
}

/// Unpacks an archive into `dest` (made fresh). Only folders and regular files are
/// unpacked, and only inside `dest` (the tar crate refuses `..` and absolute paths).
pub fn unpack(archive: &Path, dest: &Path) -> Result<()> {
    remove_dir(dest)?;
    fs::create_dir_all(dest).map_err(|e| io_error(dest, e))?;
    let file = fs::File::open(archive).map_err(|e| io_error(archive, e))?;
    let mut archive_reader = tar::Archive::new(io::BufReader::new(file));
    archive_reader.set_preserve_permissions(false);
    archive_reader.set_overwrite(true);
    for entry in archive_reader.entries().map_err(|e| io_error(archive, e))? {
        let mut entry = entry.map_err(|e| io_error(archive, e))?;
        let kind = entry.header().entry_type();
        if !(kind.is_dir() || kind.is_file()) {
            continue;
        }
        entry.unpack_in(dest).map_err(|e| io_error(dest, e))?;
    }
    for folder in archived_folders() {
        let dir = dest.join(folder);
        fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    }
    Ok(())
}

/// Puts the folders unpacked in `staging` in the place of the tree's, moving the tree's
/// own to `aside`. Each folder is two renames; repeated after a crash at any point, it
/// finishes the job (a folder still in `staging` is not swapped yet).
pub fn swap_in(tree: &Path, staging: &Path, aside: &Path) -> Result<()> {
    fs::create_dir_all(aside).map_err(|e| io_error(aside, e))?;
    fs::create_dir_all(tree).map_err(|e| io_error(tree, e))?;
    for folder in archived_folders() {
        let new = staging.join(folder);
        if !new.exists() {
            continue;
        }
        let current = tree.join(folder);
        let old = aside.join(folder);
        if current.exists() && !old.exists() {
            fs::rename(&current, &old).map_err(|e| io_error(&current, e))?;
        } else if current.exists() {
            // The tree's folder is aside already and this one was made since (by a
            // request that slipped in before maintenance): the restored folder wins.
            remove_dir(&current)?;
        }
        fs::rename(&new, &current).map_err(|e| io_error(&new, e))?;
    }
    Ok(())
}

/// Removes a directory and everything in it; a missing one is fine.
pub fn remove_dir(dir: &Path) -> Result<()> {
    match fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_error(dir, e)),
    }
}

/// The staging and aside folders of a restore into the tree at `tree`: siblings of the
/// tree (so renames stay on one file system), named so no slug can take them.
pub fn restore_dirs(tree: &Path, restore_id: uuid::Uuid) -> (PathBuf, PathBuf) {
    let parent = tree.parent().unwrap_or(tree);
    let slug = tree
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let short = &restore_id.simple().to_string()[..8];
    (
        parent.join(format!(".{slug}.restore-{short}")),
        parent.join(format!(".{slug}.pre-restore-{short}")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn archive_round_trip_skips_backups_and_symlinks_and_swap_resumes() {
        let dir = tempfile::tempdir().unwrap();
        let tree = dir.path().join("acme");
        for f in storage::FOLDERS {
            fs::create_dir_all(tree.join(f)).unwrap();
        }
        fs::create_dir_all(tree.join("uploads/a/b")).unwrap();
        fs::write(tree.join("uploads/a/b/x.txt"), b"hello").unwrap();
        fs::write(tree.join("documents/d.pdf"), b"pdf").unwrap();
        fs::write(tree.join("backups/old.dump"), b"not archived").unwrap();
        fs::write(tree.join("uploads/.0f3a.part"), b"half an upload").unwrap();
        std::os::unix::fs::symlink("/etc/passwd", tree.join("documents/link")).unwrap();

        let out = dir.path().join("files.tar");
        write_archive(&tree, &out).unwrap();
        let staging = dir.path().join("staging");
        unpack(&out, &staging).unwrap();
        assert_eq!(
            fs::read(staging.join("uploads/a/b/x.txt")).unwrap(),
            b"hello"
        );
        assert_eq!(fs::read(staging.join("documents/d.pdf")).unwrap(), b"pdf");
        assert!(!staging.join("backups").exists());
        assert!(!staging.join("documents/link").exists());
        assert!(!staging.join("uploads/.0f3a.part").exists());

        // The tree changes after the backup; a swap interrupted after one folder resumes.
        fs::write(tree.join("documents/new.txt"), b"after").unwrap();
        let aside = dir.path().join("aside");
        fs::create_dir_all(&aside).unwrap();
        fs::rename(tree.join("documents"), aside.join("documents")).unwrap();
        swap_in(&tree, &staging, &aside).unwrap();
        assert_eq!(fs::read(tree.join("documents/d.pdf")).unwrap(), b"pdf");
        assert!(!tree.join("documents/new.txt").exists());
        assert_eq!(fs::read(tree.join("uploads/a/b/x.txt")).unwrap(), b"hello");
        assert_eq!(
            fs::read(tree.join("backups/old.dump")).unwrap(),
            b"not archived"
        );
        // Repeating a finished swap changes nothing.
        swap_in(&tree, &staging, &aside).unwrap();
        assert_eq!(fs::read(tree.join("documents/d.pdf")).unwrap(), b"pdf");
    }
}
