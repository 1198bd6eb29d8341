//! `packaging/` checked as far as this machine can: the Dockerfile with
//! hadolint (and every file it copies exists and passes .dockerignore),
//! the image's default config with `pgwarden check`, the systemd unit with
//! `systemd-analyze verify`, the Kubernetes manifests with yamllint and
//! kubernetes-validate (and the proxy.toml in each ConfigMap with `pgwarden
//! check`), and the Debian package installed and removed with dpkg
//! (scripts/deb_check.sh). No Docker engine runs here, so the image itself
//! is not built.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;

use harness::missing_dependency;

const BIN: &str = env!("CARGO_BIN_EXE_pgwarden");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// A linter from the venv scripts/deps.sh makes, or from PATH.
fn tool(name: &str) -> Option<PathBuf> {
    let venv = Path::new(ROOT).join("target/lintenv/bin").join(name);
    [venv, name.into()].into_iter().find(|t| {
        Command::new(t)
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

/// Runs a command: (success, stdout + stderr).
fn run(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().unwrap();
    let mut text = String::from_utf8_lossy(&out.stdout).into_owned();
    text.push_str(&String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

fn check_config(path: &Path, env: &[(&str, &str)]) {
    let mut cmd = Command::new(BIN);
    cmd.args(["check", "--config"]).arg(path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (ok, text) = run(&mut cmd);
    assert!(ok, "{}: {text}", path.display());
}

#[test]
fn dockerfile_lints_and_copies_files_that_exist() {
    let dockerfile = Path::new(ROOT).join("packaging/docker/Dockerfile");
    let text = std::fs::read_to_string(&dockerfile).unwrap();
    // Every COPY from the build context names files that exist and that
    // .dockerignore lets through (it allows only what it lists).
    let ignore = std::fs::read_to_string(Path::new(ROOT).join(".dockerignore")).unwrap();
    let allowed: Vec<&str> = ignore
        .lines()
        .filter_map(|l| l.strip_prefix('!'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    let mut copies = 0;
    for line in text.lines().filter(|l| l.starts_with("COPY ")) {
        if line.contains("--from=") {
            continue;
        }
        let words: Vec<&str> = line.split_whitespace().skip(1).collect();
        for src in &words[..words.len() - 1] {
            copies += 1;
            assert!(
                Path::new(ROOT).join(src).exists(),
                "COPY {src}: no such file"
            );
            let src = src.trim_end_matches('/');
            assert!(
                allowed
                    .iter()
                    .any(|a| src == *a || src.starts_with(&format!("{a}/"))),
                "COPY {src} is excluded by .dockerignore"
            );
        }
    }
    assert!(copies >= 5, "found the COPY lines");
    for needed in [
        "USER 65532",
        "EXPOSE 6432 6433",
        "HEALTHCHECK",
        "STOPSIGNAL SIGTERM",
        "/etc/pgwarden/proxy.toml",
    ] {
        assert!(text.contains(needed), "the Dockerfile has {needed}");
    }

    // The image's default config, with what `docker run -e` would give.
    let dir = tempfile::tempdir().unwrap();
    let userlist = dir.path().join("userlist.txt");
    std::fs::write(&userlist, "\"app\" \"app-password\"\n").unwrap();
    check_config(
        &Path::new(ROOT).join("packaging/docker/proxy.toml"),
        &[
            ("PGWARDEN_AUTH_FILE", userlist.to_str().unwrap()),
            ("PGWARDEN_PRIMARY", "127.0.0.1:5432"),
        ],
    );

    let Some(hadolint) = tool("hadolint") else {
        return missing_dependency("hadolint");
    };
    let (ok, text) = run(Command::new(hadolint).arg(&dockerfile));
    assert!(ok, "hadolint:\n{text}");
}

#[test]
fn systemd_unit_verifies() {
    let unit = Path::new(ROOT).join("packaging/systemd/pgwarden.service");
    let text = std::fs::read_to_string(&unit).unwrap();
    for needed in [
        "Type=notify",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "LimitNOFILE=65536",
        "User=pgwarden",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
    ] {
        assert!(text.contains(needed), "the unit has {needed}");
    }
    let Some(analyze) = tool("systemd-analyze") else {
        return missing_dependency("systemd-analyze");
    };
    // verify checks that ExecStart's binary exists: point it at this build.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("pgwarden.service");
    std::fs::write(&copy, text.replace("/usr/bin/pgwarden", BIN)).unwrap();
    let (ok, out) = run(Command::new(&analyze).arg("verify").arg(&copy));
    assert!(
        ok && out.trim().is_empty(),
        "systemd-analyze verify:\n{out}"
    );
    // The sandbox keeps the exposure score low ("OK" is under 4.0).
    let (ok, out) = run(Command::new(&analyze)
        .args(["security", "--offline=yes", "--threshold=30"])
        .arg(&copy));
    assert!(ok, "systemd-analyze security:\n{out}");
    let score = out
        .lines()
        .find_map(|l| l.split("exposure level for pgwarden.service: ").nth(1))
        .and_then(|s| s.split_whitespace().next())
        .and_then(|s| s.parse::<f64>().ok())
        .unwrap_or_else(|| panic!("{out}"));
    assert!(score < 4.0, "exposure {score}:\n{out}");
}

#[test]
fn kubernetes_manifests_validate() {
    let dir = Path::new(ROOT).join("packaging/kubernetes");
    let manifests: Vec<PathBuf> = ["sidecar.yaml", "deployment.yaml", "statefulset.yaml"]
        .iter()
        .map(|f| dir.join(f))
        .collect();
    let (Some(yamllint), Some(validate)) = (tool("yamllint"), tool("kubernetes-validate")) else {
        return missing_dependency("yamllint or kubernetes-validate");
    };
    let (ok, out) = run(Command::new(yamllint)
        .arg("-s")
        .arg("-c")
        .arg(dir.join(".yamllint"))
        .args(&manifests));
    assert!(ok, "yamllint:\n{out}");
    let (ok, out) = run(Command::new(&validate).arg("--strict").args(&manifests));
    assert!(ok && !out.contains("ERROR"), "kubernetes-validate:\n{out}");

    // The proxy.toml each ConfigMap holds passes `pgwarden check`, with the
    // userlist its Secret holds and the env its Deployment sets. yamllint's
    // venv has PyYAML to read them.
    let python = validate.with_file_name("python");
    let python = if python.exists() {
        python
    } else {
        "python3".into()
    };
    let tmp = tempfile::tempdir().unwrap();
    for manifest in &manifests {
        let script = r#"
import sys, yaml
docs = [d for d in yaml.safe_load_all(open(sys.argv[1])) if d]
out = sys.argv[2]
for d in docs:
    if d["kind"] == "ConfigMap":
        text = d["data"]["proxy.toml"]
        open(out + "/proxy.toml", "w").write(text.replace("/etc/pgwarden/secret/", out + "/"))
    if d["kind"] == "Secret":
        open(out + "/userlist.txt", "w").write(d["stringData"]["userlist.txt"])
"#;
        let (ok, out) = run(Command::new(&python)
            .args(["-c", script])
            .arg(manifest)
            .arg(tmp.path()));
        assert!(ok, "reading {}: {out}", manifest.display());
        check_config(
            &tmp.path().join("proxy.toml"),
            &[
                ("PGWARDEN_MONITOR_PASSWORD", "from-the-secret"),
                ("PEER_ID", "2"),
            ],
        );
    }
}

#[test]
fn debian_package_installs_and_removes() {
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } != 0 {
        return missing_dependency("root (dpkg -i)");
    }
    let has_cargo_deb = Command::new("cargo")
        .args(["deb", "--version"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_cargo_deb || tool("systemd-analyze").is_none() {
        return missing_dependency("cargo-deb or systemd-analyze");
    }
    let installed = Command::new("dpkg")
        .args(["-s", "pgwarden"])
        .output()
        .is_ok_and(|o| o.status.success());
    if installed {
        eprintln!("SKIPPED: a pgwarden package is installed on this machine; not touching it");
        return;
    }
    let (ok, out) = run(&mut Command::new(
        Path::new(ROOT).join("scripts/deb_check.sh"),
    ));
    assert!(ok && out.contains("deb check: OK"), "{out}");
}
