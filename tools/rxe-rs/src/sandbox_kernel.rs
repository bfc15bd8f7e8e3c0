//! Which kernel the sandbox boots: one with rdma_rxe among its modules,
//! found on this machine or downloaded from the distribution's packages
//! into a cache (unpacked, never installed).

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where kernel images and their modules are looked for. Fields are
/// directories so that the tests can point them at a fake tree.
pub struct Places {
    pub boot: PathBuf,
    pub modules: PathBuf,
    /// Kernels downloaded earlier: `<cache>/<version>/root/{boot,lib/modules}`.
    pub cache: PathBuf,
    /// The running kernel's release (uname -r).
    pub running: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum Choice {
    /// Boot this vmlinuz; the string says why it was chosen.
    Found(PathBuf, String),
    /// Nothing here has rdma_rxe: the distribution's package is needed.
    Download,
}

/// Whether `modules_dir` (a /lib/modules/<version>) has rdma_rxe, as a
/// module (modules.dep, or the file where the kernel tree puts it) or built
/// in (modules.builtin).
pub fn has_rxe(modules_dir: &Path) -> bool {
    let mentions = |name: &str| {
        fs::read_to_string(modules_dir.join(name)).is_ok_and(|t| t.lines().any(|l| l.split(':').next().unwrap_or("").contains("/rdma_rxe.ko")))
    };
    if mentions("modules.dep") || mentions("modules.builtin") {
        return true;
    }
    let dir = modules_dir.join("kernel/drivers/infiniband/sw/rxe");
    fs::read_dir(dir).is_ok_and(|d| d.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with("rdma_rxe.ko")))
}

/// Orders kernel releases the way `sort -V` would for the usual names
/// (6.1.0-57-amd64 < 6.12.95+deb12-amd64): runs of digits compare as numbers.
pub fn version_key(v: &str) -> Vec<(u64, String)> {
    let mut key = Vec::new();
    let mut rest = v;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            key.push((rest[..digits].parse().unwrap_or(u64::MAX), String::new()));
            rest = &rest[digits..];
        } else {
            let text = rest.len() - rest.trim_start_matches(|c: char| !c.is_ascii_digit()).len();
            key.push((0, rest[..text].to_string()));
            rest = &rest[text..];
        }
    }
    key
}

/// The releases of the `vmlinuz-<release>` images in `boot` whose modules
/// in `modules` have rdma_rxe, newest first.
fn usable_in(boot: &Path, modules: &Path) -> Vec<String> {
    let mut found: Vec<String> = fs::read_dir(boot)
        .map(|d| d.filter_map(|e| e.ok()).filter_map(|e| e.file_name().to_str()?.strip_prefix("vmlinuz-").map(str::to_string)).collect())
        .unwrap_or_default();
    found.retain(|r| boot.join(format!("vmlinuz-{r}")).is_file() && has_rxe(&modules.join(r)));
    found.sort_by_key(|r| std::cmp::Reverse(version_key(r)));
    found
}

/// The kernel to boot when none was named: the running one if its modules
/// have rdma_rxe, else the newest such in /boot, else the newest one
/// downloaded earlier, else a download.
pub fn choose(places: &Places) -> Choice {
    let running = places.boot.join(format!("vmlinuz-{}", places.running));
    if running.is_file() && has_rxe(&places.modules.join(&places.running)) {
        return Choice::Found(running, format!("the running kernel ({}) has rdma_rxe", places.running));
    }
    if let Some(r) = usable_in(&places.boot, &places.modules).first() {
        let why = format!("the running kernel ({}) has no rdma_rxe; {r} in {} has", places.running, places.boot.display());
        return Choice::Found(places.boot.join(format!("vmlinuz-{r}")), why);
    }
    let mut cached: Vec<(String, PathBuf)> = fs::read_dir(&places.cache)
        .map(|d| d.filter_map(|e| e.ok()).map(|e| e.path().join("root")).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .flat_map(|root| usable_in(&root.join("boot"), &root.join("lib/modules")).into_iter().map(move |r| (r, root.clone())))
        .collect();
    cached.sort_by_key(|(r, _)| std::cmp::Reverse(version_key(r)));
    if let Some((r, root)) = cached.into_iter().next() {
        let why = format!("no kernel with rdma_rxe in {}; {r} downloaded earlier into {}", places.boot.display(), places.cache.display());
        return Choice::Found(root.join(format!("boot/vmlinuz-{r}")), why);
    }
    Choice::Download
}

/// The cache of downloaded kernels: $XDG_CACHE_HOME/rxe-rs/kernels, else
/// ~/.cache/rxe-rs/kernels.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache"));
    base.join("rxe-rs/kernels")
}

/// A `Key: value` field of /etc/os-release, unquoted.
pub fn os_release_field(text: &str, key: &str) -> Option<String> {
    text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).map(|v| v.trim().trim_matches('"').to_string())
}

/// The machine's Debian archive for `suite`: the URI and Signed-By keyring
/// of a deb822 stanza listing that suite, from the text of a .sources file.
pub fn debian_source(sources: &str, suite: &str) -> Option<(String, String)> {
    sources.split("\n\n").find_map(|stanza| {
        let field = |k: &str| stanza.lines().find_map(|l| l.strip_prefix(k)?.strip_prefix(':')).map(|v| v.trim().to_string());
        let suites = field("Suites")?;
        if !suites.split_whitespace().any(|s| s == suite) {
            return None;
        }
        let uri = field("URIs")?.split_whitespace().next()?.to_string();
        Some((uri, field("Signed-By")?))
    })
}

/// The versioned package a metapackage depends on, from `apt-cache depends`
/// output (`  Depends: linux-image-6.1.0-28-amd64`).
pub fn first_image_dependency(depends: &str) -> Option<String> {
    depends
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Depends:"))
        .map(|p| p.trim().trim_start_matches('<').trim_end_matches('>').to_string())
        .find(|p| p.starts_with("linux-image-"))
}

fn run(cmd: &mut Command, what: &str) -> Result<String, String> {
    let out = cmd.output().map_err(|e| format!("cannot run {what}: {e}"))?;
    if !out.status.success() {
        return Err(format!("{what} failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim()));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Downloads Debian's current kernel (linux-image-amd64's dependency) with a
/// private apt configuration under the cache (the machine's apt lists,
/// cache and dpkg state are not touched: nothing is installed), unpacks it
/// with dpkg-deb -x under `<cache>/<package>/root` and writes its modules.dep
/// with depmod -b. Returns the vmlinuz.
pub fn download(cache: &Path, log: &dyn Fn(&str)) -> Result<PathBuf, String> {
    let os = fs::read_to_string("/etc/os-release").unwrap_or_default();
    let (id, codename) = (os_release_field(&os, "ID").unwrap_or_default(), os_release_field(&os, "VERSION_CODENAME").unwrap_or_default());
    if id != "debian" || codename.is_empty() {
        return Err(format!(
            "no kernel with rdma_rxe on this machine, and downloading one is done for Debian only (this is {}): give --kernel <vmlinuz>",
            if id.is_empty() { "an unknown distribution".into() } else { id }
        ));
    }
    for tool in ["apt-get", "apt-cache", "dpkg-deb", "depmod"] {
        if which(tool).is_none() {
            return Err(format!("no kernel with rdma_rxe on this machine, and {tool} (needed to download Debian's) is missing"));
        }
    }
    let sources: String = fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| d.filter_map(|e| e.ok()).filter(|e| e.path().extension().is_some_and(|x| x == "sources")).filter_map(|e| fs::read_to_string(e.path()).ok()).collect::<Vec<_>>().join("\n\n"))
        .unwrap_or_default();
    let (uri, key) = debian_source(&sources, &codename)
        .unwrap_or_else(|| ("http://deb.debian.org/debian".into(), "/usr/share/keyrings/debian-archive-keyring.gpg".into()));
    let apt = cache.join("apt");
    for d in ["lists/partial", "cache/archives/partial", "state", "apt.conf.d", "debs"] {
        fs::create_dir_all(apt.join(d)).map_err(|e| format!("{}: {e}", apt.join(d).display()))?;
    }
    let write = |name: &str, text: String| fs::write(apt.join(name), text).map_err(|e| format!("{}: {e}", apt.join(name).display()));
    write("status", String::new())?;
    write("apt.conf", format!("Dir::Etc::main \"/dev/null\";\nDir::Etc::parts \"{}\";\n", apt.join("apt.conf.d").display()))?;
    write("sources.list", format!("deb [signed-by={key}] {uri} {codename} main\ndeb [signed-by={key}] {uri} {codename}-updates main\n"))?;
    let p = |s: &str| apt.join(s).display().to_string();
    let mut opts: Vec<String> = vec![
        format!("Dir::State::Lists={}", p("lists")),
        format!("Dir::Cache={}", p("cache")),
        format!("Dir::Etc::SourceList={}", p("sources.list")),
        "Dir::Etc::SourceParts=/dev/null".into(),
        format!("Dir::State={}", p("state")),
        format!("Dir::State::status={}", p("status")),
        "Dir::Etc::Preferences=/dev/null".into(),
        "Dir::Etc::PreferencesParts=/dev/null".into(),
        "Acquire::Languages=none".into(),
        "Acquire::GzipIndexes=true".into(),
        "Dir::Cache::pkgcache=".into(),
        "Dir::Cache::srcpkgcache=".into(),
    ];
    // apt's download sandbox user (_apt) may not reach a cache under $HOME.
    // SAFETY: getuid has no preconditions.
    if unsafe { libc::getuid() } == 0 {
        opts.push("APT::Sandbox::User=root".into());
    }
    let apt_cmd = |tool: &str| {
        let mut c = Command::new(tool);
        c.env("APT_CONFIG", apt.join("apt.conf"));
        for o in &opts {
            c.arg("-o").arg(o);
        }
        c.arg("-q");
        c
    };
    log(&format!("downloading Debian {codename}'s kernel from {uri} (private apt configuration in {})", apt.display()));
    run(apt_cmd("apt-get").arg("update"), "apt-get update")?;
    let depends = run(apt_cmd("apt-cache").args(["depends", "linux-image-amd64"]), "apt-cache depends linux-image-amd64")?;
    let pkg = first_image_dependency(&depends).ok_or_else(|| format!("linux-image-amd64 names no linux-image-* package: {}", depends.trim()))?;
    let debs = apt.join("debs");
    run(apt_cmd("apt-get").current_dir(&debs).args(["download", &pkg]), &format!("apt-get download {pkg}"))?;
    let deb = fs::read_dir(&debs)
        .map_err(|e| format!("{}: {e}", debs.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|f| f.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with(&format!("{pkg}_")) && n.ends_with(".deb")))
        .ok_or_else(|| format!("apt-get download {pkg} left no .deb in {}", debs.display()))?;
    let root = cache.join(&pkg).join("root");
    let _ = fs::remove_dir_all(&root);
    fs::create_dir_all(&root).map_err(|e| format!("{}: {e}", root.display()))?;
    run(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root), "dpkg-deb -x")?;
    // Merged /usr: packages shipping usr/lib/modules get lib -> usr/lib, so
    // that depmod -b and virtme-ng (which walks up from the vmlinuz to a
    // directory holding lib/modules) find the modules.
    if !root.join("lib").exists() && root.join("usr/lib/modules").is_dir() {
        std::os::unix::fs::symlink("usr/lib", root.join("lib")).map_err(|e| format!("{}: {e}", root.join("lib").display()))?;
    }
    let release = fs::read_dir(root.join("lib/modules"))
        .map_err(|e| format!("{pkg} has no lib/modules: {e}"))?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().into_string().ok())
        .next()
        .ok_or_else(|| format!("{pkg} has no kernel version in lib/modules"))?;
    run(Command::new("depmod").arg("-b").arg(&root).arg(&release), "depmod -b")?;
    let _ = fs::remove_file(&deb);
    let vmlinuz = root.join(format!("boot/vmlinuz-{release}"));
    if !vmlinuz.is_file() || !has_rxe(&root.join("lib/modules").join(&release)) {
        return Err(format!("{pkg} unpacked in {} has no boot/vmlinuz-{release} with rdma_rxe among its modules", root.display()));
    }
    log(&format!("unpacked {pkg} in {}", root.display()));
    Ok(vmlinuz)
}

/// The full path of `tool` on PATH.
pub fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(tool)).find(|p| p.is_file()))
}
