//! Files mpprof writes (profiles, flame graphs, exports, reports): written
//! beside their destination and renamed into place, so a crash or an error
//! half-way never leaves half a file where a whole one was expected.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use mpprof_profile::Profile;

/// Write `path` through `f`, whole or not at all.
pub fn write_atomically(path: &Path, f: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    if let Some(d) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".partial");
    let tmp = PathBuf::from(tmp_name);
    let result = (|| {
        let file = std::fs::File::create(&tmp)
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        let mut w = std::io::BufWriter::new(file);
        f(&mut w)?;
        w.flush()
            .with_context(|| format!("cannot write {}", tmp.display()))?;
        Ok(())
    })();
    match result {
        Ok(()) => {
            std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))
        }
        Err(e) => {
            let _ = std::fs::remove_file(&tmp);
            Err(e)
        }
    }
}

/// A profile as JSON.
pub fn write_profile(profile: &Profile, path: &Path) -> Result<()> {
    write_atomically(path, |w| Ok(profile.to_json_writer(w)?))
}

/// A flame graph SVG of `profile`.
pub fn write_flamegraph(
    profile: &Profile,
    path: &Path,
    weight: reports::flamegraph::Weight,
    icicle: bool,
    lines: bool,
) -> Result<()> {
    write_atomically(path, |w| {
        reports::flamegraph::write_svg(
            profile,
            &reports::flamegraph::FlameOptions {
                weight,
                icicle,
                title: None,
                lines,
            },
            w,
        )?;
        Ok(())
    })
}

/// A saved profile, with its path in the error.
pub fn load_profile(path: &Path) -> Result<Profile> {
    Profile::from_json_file(path)
        .with_context(|| format!("cannot load the profile {}", path.display()))
}

/// The profile file in the working directory, named after the script.
pub fn default_profile_path(script: &Path) -> PathBuf {
    let stem = script
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "profile".into());
    PathBuf::from(format!("{stem}.mpprof.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_leaves_neither_file_nor_leftover() {
        let dir = std::env::temp_dir().join(format!("mpprof-output-{}", std::process::id()));
        let path = dir.join("out.svg");
        let err = write_atomically(&path, |w| {
            w.write_all(b"half")?;
            anyhow::bail!("renderer failed")
        })
        .unwrap_err();
        assert!(err.to_string().contains("renderer failed"));
        assert!(!path.exists());
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
        write_atomically(&path, |w| Ok(w.write_all(b"whole")?)).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"whole");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
