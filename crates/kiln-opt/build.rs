//! Hashes the compiler's own sources into `KILN_COMPILER_HASH`, part of every plan cache key:
//! any change to the compiler invalidates cached plans without a manual version bump.

use std::hash::{Hash, Hasher};
use std::path::Path;

fn visit(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                visit(&p, files);
            } else if p.extension().and_then(|x| x.to_str()) == Some("rs") {
                files.push(p);
            }
        }
    }
}

fn main() {
    // read when the script runs, not baked in when it is compiled: cargo reuses one compiled
    // build script for every checkout sharing a target directory (its hash is
    // workspace-relative), and a baked-in path would hash another checkout's sources
    let root_dir = std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_default();
    let root = root_dir.as_path();
    let mut files = vec![];
    visit(&root.join("src"), &mut files);
    visit(&root.join("../kiln-ir/src"), &mut files);
    visit(&root.join("../kiln-plan/src"), &mut files);
    files.sort();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for f in &files {
        println!("cargo:rerun-if-changed={}", f.display());
        if let Ok(bytes) = std::fs::read(f) {
            f.strip_prefix(root).unwrap_or(f).hash(&mut h);
            bytes.hash(&mut h);
        }
    }
    println!("cargo:rustc-env=KILN_COMPILER_HASH={:016x}", h.finish());
}
