//! Stamps the binary with the git commit it was built from, for
//! `pgwarden --version` (what an operator pastes into a bug report).
//! `PGWARDEN_GIT_COMMIT` in the build's environment wins (a source tarball
//! or a package build outside git); without either it says `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=PGWARDEN_GIT_COMMIT");
    let commit = std::env::var("PGWARDEN_GIT_COMMIT")
        .ok()
        .filter(|c| !c.is_empty())
        .or_else(git_commit)
        .unwrap_or_else(|| "unknown".into());
    println!("cargo:rustc-env=PGWARDEN_GIT_COMMIT={commit}");
}

fn git_commit() -> Option<String> {
    let git = |args: &[&str]| {
        let out = Command::new("git").args(args).output().ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    // Rebuild when HEAD moves: HEAD itself, and the ref it points at. A
    // path that does not exist would make cargo rerun this on every build.
    if let Some(dir) = git(&["rev-parse", "--git-dir"]) {
        let mut watch = vec![format!("{dir}/HEAD"), format!("{dir}/packed-refs")];
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watch.push(format!("{dir}/{head_ref}"));
        }
        for path in watch.iter().filter(|p| std::path::Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
    git(&["rev-parse", "--short=12", "HEAD"])
}
