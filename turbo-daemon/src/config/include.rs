//! `include:` of a `turbo.yml`: the other files whose apps belong to it (`conf.d/*.yml`).
//!
//! A pattern is a path relative to the including file's directory (or absolute) whose last
//! component may hold `*` and `?`; the directories before it are taken literally. The files it
//! matches are read in name order; a pattern without wildcards must name an existing file, one
//! with wildcards may match none (an empty `conf.d/`). Only the main file includes: an included
//! file with `include:` is refused, so there are no cycles. The files are read with the caller's
//! access rights (the whole check runs as the caller) and bounded like an `env_file`. Nothing
//! here validates apps: `read` in `mod.rs` does, each file with its own name and positions.

use std::path::{Path, PathBuf};

use super::{Problem, files::read_env_file};
use crate::spec::glob_match;

/// One included file.
#[derive(Debug)]
pub(super) struct Included {
    /// Its path, as messages name it.
    pub origin: String,
    /// Its directory: where its relative paths resolve.
    pub base_dir: PathBuf,
    /// Its text.
    pub content: String,
}

/// The files `patterns` name, in order, each once, and a problem (at `include[i]`) for each
/// pattern that cannot be followed.
pub(super) fn files(patterns: &[String], base_dir: &Path) -> (Vec<Included>, Vec<Problem>) {
    let mut out: Vec<Included> = Vec::new();
    let mut problems = Vec::new();
    for (i, pattern) in patterns.iter().enumerate() {
        let at = format!("include[{i}]");
        let full = base_dir.join(pattern);
        let (Some(dir), Some(name)) = (full.parent(), full.file_name().and_then(|n| n.to_str()))
        else {
            problems.push(
                Problem::new(at, format!("include '{pattern}' names no file"))
                    .hint("name files like conf.d/*.yml"),
            );
            continue;
        };
        let paths: Vec<PathBuf> = if name.contains(['*', '?']) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                problems.push(
                    Problem::new(
                        at,
                        format!(
                            "include '{pattern}': cannot read the directory {}",
                            dir.display()
                        ),
                    )
                    .hint("create it, or fix the pattern"),
                );
                continue;
            };
            let mut found: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                        !n.starts_with('.') && glob_match(name.as_bytes(), n.as_bytes())
                    })
                })
                .collect();
            found.sort();
            found
        } else {
            vec![full.clone()]
        };
        for path in paths {
            if out.iter().any(|f| Path::new(&f.origin) == path) {
                continue;
            }
            match read_env_file(&path) {
                Ok(content) => out.push(Included {
                    origin: path.display().to_string(),
                    base_dir: path.parent().unwrap_or(dir).to_path_buf(),
                    content,
                }),
                Err(e) => problems.push(
                    Problem::new(
                        at.clone(),
                        format!("include '{pattern}': cannot read {}: {e}", path.display()),
                    )
                    .hint("fix the path, or the file's permissions"),
                ),
            }
        }
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_files_in_name_order_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("conf.d");
        std::fs::create_dir(&conf).expect("conf.d");
        for name in ["b.yml", "a.yml", "notes.txt", ".hidden.yml"] {
            std::fs::write(conf.join(name), "apps: []\n").expect("write");
        }
        let (found, problems) = files(&["conf.d/*.yml".into(), "conf.d/a.yml".into()], dir.path());
        assert!(problems.is_empty(), "{problems:?}");
        let names: Vec<&str> = found
            .iter()
            .map(|f| f.origin.rsplit('/').next().expect("name"))
            .collect();
        assert_eq!(names, ["a.yml", "b.yml"]);
        assert_eq!(found[0].base_dir, conf);

        let (none, problems) = files(&["empty.d/*.yml".into(), "missing.yml".into()], dir.path());
        assert!(none.is_empty());
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["include[0]", "include[1]"]);
        assert!(
            problems[1].message.contains("missing.yml"),
            "{:?}",
            problems[1]
        );
    }
}
