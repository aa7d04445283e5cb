//! Lexical path helpers shared by the commands and the daemon lookup; no file-system access.

use std::path::{Component, Path, PathBuf};

/// `path` made absolute against `base` without touching the file system: `.` components go,
/// `..` and symlinks stay (resolving them lexically could point somewhere else).
#[must_use]
pub fn absolutize(base: &Path, path: &Path) -> PathBuf {
    base.join(path)
        .components()
        .filter(|c| *c != Component::CurDir)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absolute_paths() {
        let base = Path::new("/home/u/src");
        assert_eq!(
            absolutize(base, Path::new("app")),
            Path::new("/home/u/src/app")
        );
        assert_eq!(
            absolutize(base, Path::new("./a/./b/")),
            Path::new("/home/u/src/a/b")
        );
        assert_eq!(absolutize(base, Path::new("/srv/x")), Path::new("/srv/x"));
        assert_eq!(
            absolutize(base, Path::new("../x")),
            Path::new("/home/u/src/../x")
        );
        assert_eq!(absolutize(base, Path::new(".")), Path::new("/home/u/src"));
    }
}
