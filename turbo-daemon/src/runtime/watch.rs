//! Watch mode's file watcher: inotify watches on an app's watched directories, minus the
//! ignored ones.
//!
//! notify's recursive mode would put a watch on every directory below a root, `node_modules`
//! and `.git` included (tens of thousands in a JavaScript project), so the tree is walked here
//! and each directory that is not ignored gets its own non-recursive watch; a directory created
//! later is added when its creation is reported. Idle, this costs the kernel's watches and one
//! blocked notify thread per watching app: no polling. Events are filtered on notify's thread
//! with [`WatchSpec::ignores`] and only changes that count reach the loop. Nothing here decides
//! about restarts: the supervisor debounces.
//!
//! A tree is walked on a thread of its own, never on the loop (issue 15: `watch: [/root]` stalled
//! the loop 4.4 s over 19,412 directories), with the file-system rights of the user the app
//! runs as, and at most [`MAX_WATCHED`] directories are watched per app.

use std::path::{Path, PathBuf};

use notify::{
    Event, EventKind, RecursiveMode, Watcher,
    event::{CreateKind, ModifyKind},
};

use crate::spec::WatchSpec;

/// The most directories one app's watch mode watches: far beyond a project tree with its
/// dependencies ignored, far below the default `fs.inotify.max_user_watches`.
pub const MAX_WATCHED: usize = 8192;

/// A change that counts: the new directories among the changed paths (to be watched too).
#[derive(Debug, Default)]
pub struct Change {
    /// Directories that were created.
    pub new_dirs: Vec<PathBuf>,
}

/// The watches of one app; dropping it removes them and ends notify's thread.
pub struct AppWatcher {
    watcher: notify::INotifyWatcher,
    spec: WatchSpec,
    skip: Vec<PathBuf>,
    /// Directories watched.
    watched: usize,
}

impl std::fmt::Debug for AppWatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppWatcher")
            .field("paths", &self.spec.paths)
            .field("watched", &self.watched)
            .finish_non_exhaustive()
    }
}

impl AppWatcher {
    /// Watches `spec.paths` (skipping what it ignores and everything under `skip`);
    /// `on_change` runs on notify's thread for every change that counts.
    ///
    /// # Errors
    /// When inotify cannot be set up or a watched root cannot be watched (missing, no
    /// permission, out of inotify watches).
    pub fn start(
        spec: &WatchSpec,
        skip: Vec<PathBuf>,
        on_change: impl Fn(Change) + Send + 'static,
    ) -> notify::Result<Self> {
        let filter_spec = spec.clone();
        let filter_skip = skip.clone();
        let handler = move |res: notify::Result<Event>| {
            let Ok(ev) = res else { return };
            if matches!(ev.kind, EventKind::Access(_)) {
                return; // reads and closes change nothing
            }
            let counted: Vec<&PathBuf> = ev
                .paths
                .iter()
                .filter(|p| !filter_spec.ignores(p, &filter_skip))
                .collect();
            if counted.is_empty() {
                return;
            }
            let dir_created = matches!(
                ev.kind,
                EventKind::Create(CreateKind::Folder | CreateKind::Any)
                    | EventKind::Modify(ModifyKind::Name(_))
            );
            let new_dirs = if dir_created {
                counted
                    .into_iter()
                    .filter(|p| p.is_dir())
                    .cloned()
                    .collect()
            } else {
                Vec::new()
            };
            on_change(Change { new_dirs });
        };
        let watcher = notify::INotifyWatcher::new(handler, notify::Config::default())?;
        let mut this = Self {
            watcher,
            spec: spec.clone(),
            skip,
            watched: 0,
        };
        for root in spec.paths.clone() {
            if root.is_dir() {
                this.add_tree(&root)?;
            } else {
                this.watcher.watch(&root, RecursiveMode::NonRecursive)?;
                this.watched += 1;
            }
        }
        Ok(this)
    }

    /// Watches `dir` and every directory below it that is not ignored.
    ///
    /// # Errors
    /// When `dir` itself cannot be watched (those below are skipped with a warning: they may
    /// have gone already, or be unreadable).
    pub fn add_tree(&mut self, dir: &Path) -> notify::Result<()> {
        if self.watched >= MAX_WATCHED {
            return Ok(());
        }
        self.watcher.watch(dir, RecursiveMode::NonRecursive)?;
        self.watched += 1;
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            let Ok(entries) = std::fs::read_dir(&d) else {
                continue;
            };
            for entry in entries.flatten() {
                // no symlinks followed: a link to `/` must not make us watch the machine
                if !entry.file_type().is_ok_and(|t| t.is_dir()) {
                    continue;
                }
                let path = entry.path();
                if self.spec.ignores(&path, &self.skip) {
                    continue;
                }
                if self.watched >= MAX_WATCHED {
                    tracing::warn!(
                        "watch mode: more than {MAX_WATCHED} directories under {}; the rest is \
                         not watched (add them to `ignore_watch` or watch fewer paths)",
                        dir.display()
                    );
                    return Ok(());
                }
                match self.watcher.watch(&path, RecursiveMode::NonRecursive) {
                    Ok(()) => {
                        self.watched += 1;
                        stack.push(path);
                    }
                    Err(e) => tracing::warn!("cannot watch {}: {e}", path.display()),
                }
            }
        }
        Ok(())
    }

    /// What it watches.
    #[must_use]
    pub const fn spec(&self) -> &WatchSpec {
        &self.spec
    }

    /// Directories (and files) watched now.
    #[must_use]
    pub const fn watched(&self) -> usize {
        self.watched
    }
}
