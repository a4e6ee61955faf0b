//! A JSON file shared by any number of processes on one machine.

use super::{
    AdmitReply, AdmitRequest, GiveBack, LeaseReply, LeaseRequest, Store, StoreError, StoredState,
    SyncBatch,
};
use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};

/// A JSON file ([`StoredState`], version 2), safe for any number of processes and threads on
/// one path.
///
/// Every sync is one read-add-write under an OS lock (`File::lock`) on `<name>.lock`, a file
/// that is never renamed (a lock on the data file itself would protect nothing once a rename
/// replaced it). The new state goes to a uniquely named temporary file beside the target,
/// which is fsynced and renamed over it, so a crash leaves the old state or the new one, never
/// a mix, and a reader (who takes the same lock) never sees a file being written. A symlinked
/// path keeps pointing at its target: the target is what gets replaced.
///
/// A file that does not parse is moved aside as `<name>.corrupt-<ms>` (its bytes are kept,
/// never dropped), that sync fails with [`StoreError::Corrupt`], and the next one starts a fresh
/// file. A file that parses but has entries that do not (a total written as `40.0`) is
/// copied to `<name>.skipped-<ms>` before the first write that would drop them, with a `log`
/// warning naming them. A version 1 file is converted once, under the lock. A write keeps the
/// file's permissions and, where the process may set them, its owner and group.
#[derive(Debug, Clone)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store at `path` (the file need not exist yet; its folder must).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into() }
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored state now, read under the lock (empty if there is no file yet).
    ///
    /// Errors: [`StoreError::Io`]; [`StoreError::Corrupt`] if the file does not parse (it is
    /// left where it is: only a sync moves it aside).
    pub fn state(&self) -> Result<StoredState, StoreError> {
        let _lock = self.lock()?;
        match self.read()? {
            None => Ok(StoredState::new()),
            Some(text) => StoredState::from_json(&text),
        }
    }

    /// The file that is read and replaced: the end of the path's chain of symlinks (so every
    /// process, whichever link it was given, reads, locks and replaces the same file).
    fn target(&self) -> PathBuf {
        let mut path = self.path.clone();
        // A bound, as the OS has (a loop of links ends here, and the open then fails).
        for _ in 0..40 {
            match fs::read_link(&path) {
                Ok(target) if target.is_absolute() => path = target,
                Ok(target) => {
                    path = path
                        .parent()
                        .map_or(target.clone(), |dir| dir.join(&target))
                }
                Err(_) => break,
            }
        }
        path
    }

    fn beside(path: &Path, suffix: &str) -> PathBuf {
        let mut name = path.file_name().unwrap_or_default().to_os_string();
        name.push(suffix);
        path.with_file_name(name)
    }

    /// Takes the cross-process lock (beside the target, so links to one file share it);
    /// released when the returned file is dropped.
    fn lock(&self) -> Result<File, StoreError> {
        let path = Self::beside(&self.target(), ".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| io("opening", &path, e))?;
        file.lock().map_err(|e| io("locking", &path, e))?;
        Ok(file)
    }

    fn read(&self) -> Result<Option<String>, StoreError> {
        let target = self.target();
        match fs::read(&target) {
            Ok(bytes) => String::from_utf8(bytes)
                .map(Some)
                .map_err(|error| StoreError::Corrupt(format!("not UTF-8: {error}"))),
            Err(error) if error.kind() == ErrorKind::NotFound => Ok(None),
            Err(error) => Err(io("reading", &target, error)),
        }
    }

    /// A name beside the target that nothing has, not even a dangling link:
    /// `<name>.<kind>-<ms>[-n]`.
    fn free_name_beside(target: &Path, kind: &str) -> PathBuf {
        let ms = crate::clock::Clock::now_ms(&crate::clock::SystemClock);
        let mut aside = Self::beside(target, &format!(".{kind}-{ms}"));
        let mut n = 1;
        while fs::symlink_metadata(&aside).is_ok() {
            aside = Self::beside(target, &format!(".{kind}-{ms}-{n}"));
            n += 1;
        }
        aside
    }

    fn move_aside(&self) -> Result<PathBuf, StoreError> {
        let target = self.target();
        let aside = Self::free_name_beside(&target, "corrupt");
        fs::rename(&target, &aside).map_err(|e| io("moving aside", &target, e))?;
        Ok(aside)
    }

    /// Copies `text` (the file as it is) to a new `<name>.skipped-<ms>` before a write drops
    /// the entries that did not parse. The copy is created, never opened through a link
    /// someone planted under that name (`create_new`), and the caller removes it if the write
    /// fails (the file still holds the entries, and a retry copies again).
    fn copy_aside_skipped(&self, text: &str) -> Result<PathBuf, StoreError> {
        let target = self.target();
        let mut aside = Self::free_name_beside(&target, "skipped");
        let mut file = loop {
            match OpenOptions::new().write(true).create_new(true).open(&aside) {
                Ok(file) => break file,
                Err(error) if error.kind() == ErrorKind::AlreadyExists => {
                    aside = Self::free_name_beside(&target, "skipped");
                }
                Err(error) => return Err(io("copying aside to", &aside, error)),
            }
        };
        if let Err(error) = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
        {
            let _ = fs::remove_file(&aside);
            return Err(io("copying aside to", &aside, error));
        }
        Ok(aside)
    }

    fn log_skipped(&self, skipped: &[String], aside: &Path) {
        crate::observers::quietly(|| {
            log::warn!(
                "quota: {} had {} entr{} that did not parse ({}); the file as it was is kept \
                 as {}",
                self.path.display(),
                skipped.len(),
                if skipped.len() == 1 { "y" } else { "ies" },
                skipped.join("; "),
                aside.display()
            )
        });
    }

    fn write(&self, text: &str) -> Result<(), StoreError> {
        let target = self.target();
        // Unique per process and call: two writers never share a temporary file.
        let temp = Self::beside(
            &target,
            &format!(
                ".tmp-{}-{}",
                std::process::id(),
                super::InstanceId::random()
            ),
        );
        // The replacement keeps the file's permissions (a 0600 file stays 0600) and, where
        // this process may set them, its owner and group.
        let existing = fs::metadata(&target).ok();
        let written = File::create(&temp)
            .and_then(|mut file| {
                if let Some(existing) = &existing {
                    if keep_owner(&file, existing) {
                        file.set_permissions(existing.permissions())?;
                    }
                }
                file.write_all(text.as_bytes())?;
                file.sync_all()
            })
            .map_err(|e| io("writing", &temp, e))
            .and_then(|()| fs::rename(&temp, &target).map_err(|e| io("renaming onto", &target, e)));
        if written.is_err() {
            let _ = fs::remove_file(&temp);
        }
        written?;
        // Make the rename itself durable.
        if let Some(dir) = target.parent().filter(|d| !d.as_os_str().is_empty()) {
            if let Ok(dir) = File::open(dir) {
                let _ = dir.sync_all();
            }
        }
        Ok(())
    }
}

/// Gives `file` the owner and group of `existing` where this process may (root may; an owner
/// may set a group it belongs to). Whether the file's mode may be kept: only with the group
/// kept, else a mode like 0660 would lock the group out of a file that now has this
/// process's group (the file keeps the process's default mode then, as before).
#[cfg(unix)]
fn keep_owner(file: &File, existing: &fs::Metadata) -> bool {
    use std::os::unix::fs::{fchown, MetadataExt};
    fchown(file, Some(existing.uid()), Some(existing.gid())).is_ok()
        || fchown(file, None, Some(existing.gid())).is_ok()
}

#[cfg(not(unix))]
fn keep_owner(_: &File, _: &fs::Metadata) -> bool {
    true
}

fn io(what: &str, path: &Path, error: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what} {}: {error}", path.display()))
}

impl FileStore {
    /// One read-change-write under the cross-process lock; written back only if `change`
    /// says it changed something (or the file was converted from version 1).
    fn with_state<T>(
        &self,
        change: impl FnOnce(&mut StoredState) -> (T, bool),
    ) -> Result<T, StoreError> {
        let _lock = self.lock()?;
        let text = self.read();
        let parsed = text
            .as_ref()
            .map_err(Clone::clone)
            .and_then(|text| text.as_deref().map(StoredState::from_json).transpose());
        let mut state = match parsed {
            Ok(state) => state.unwrap_or_default(),
            Err(StoreError::Corrupt(reason)) => {
                let aside = self.move_aside()?;
                return Err(StoreError::Corrupt(format!(
                    "{}: {reason}; moved aside to {}",
                    self.path.display(),
                    aside.display()
                )));
            }
            Err(other) => return Err(other),
        };
        let (answer, changed) = change(&mut state);
        if changed || state.converted() {
            let copy = match (state.skipped().is_empty(), &text) {
                (false, Ok(Some(text))) => Some(self.copy_aside_skipped(text)?),
                _ => None,
            };
            if let Err(error) = self.write(&state.to_json()) {
                if let Some(copy) = copy {
                    let _ = fs::remove_file(copy);
                }
                return Err(error);
            }
            if let Some(copy) = copy {
                self.log_skipped(state.skipped(), &copy);
            }
        }
        Ok(answer)
    }
}

/// All three admission modes, across processes: the file lock is the atomic step.
impl Store for FileStore {
    fn sync(&self, batch: &SyncBatch) -> Result<Vec<u64>, StoreError> {
        self.with_state(|state| (state.apply(batch), batch.changes()))
    }

    fn admit(&self, request: &AdmitRequest) -> Result<AdmitReply, StoreError> {
        request.check()?;
        self.with_state(|state| {
            let admission = state.admit(request);
            let admitted = matches!(admission, AdmitReply::Admitted { .. });
            (admission, admitted)
        })
    }

    fn lease(&self, request: &LeaseRequest) -> Result<LeaseReply, StoreError> {
        request.check()?;
        self.with_state(|state| {
            let reply = state.lease(request);
            // A grant of nothing changes nothing worth a write (a retry gets nothing again).
            let granted = reply.granted > 0;
            (reply, granted)
        })
    }

    fn give_back(&self, request: &GiveBack) -> Result<u64, StoreError> {
        request.check()?;
        self.with_state(|state| (state.give_back(request), true))
    }

    fn several_windows(&self) -> bool {
        true
    }
}
