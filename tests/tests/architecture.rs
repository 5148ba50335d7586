//! The crate dependency invariants of docs/ARCHITECTURE.md, checked with `cargo metadata`.

use serde_json::Value;
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

/// Normal (non-dev, non-build) dependency edges by package name.
fn dependency_graph() -> HashMap<String, Vec<String>> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    // only the host's dependencies: other platforms' crates need not be downloaded
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into());
    let vv = std::process::Command::new(rustc)
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    let host = String::from_utf8_lossy(&vv.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc -vV names the host");
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--offline",
            "--filter-platform",
            &host,
        ])
        .current_dir(&root)
        .output()
        .expect("cargo metadata runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout).expect("metadata is JSON");
    let names: HashMap<String, String> = meta["packages"]
        .as_array()
        .expect("packages")
        .iter()
        .map(|p| {
            (
                p["id"].as_str().unwrap_or("").to_string(),
                p["name"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    let mut g = HashMap::new();
    for node in meta["resolve"]["nodes"].as_array().expect("resolve nodes") {
        let from = names[node["id"].as_str().unwrap_or("")].clone();
        let deps = node["deps"]
            .as_array()
            .expect("deps")
            .iter()
            .filter(|d| {
                d["dep_kinds"]
                    .as_array()
                    .is_some_and(|ks| ks.iter().any(|k| k["kind"].is_null()))
            })
            .map(|d| names[d["pkg"].as_str().unwrap_or("")].clone())
            .collect();
        g.insert(from, deps);
    }
    g
}

fn closure(g: &HashMap<String, Vec<String>>, root: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut stack = vec![root.to_string()];
    while let Some(p) = stack.pop() {
        for d in g.get(&p).into_iter().flatten() {
            if seen.insert(d.clone()) {
                stack.push(d.clone());
            }
        }
    }
    seen
}

#[test]
fn ir_opt_and_layers_never_depend_on_wgpu() {
    let g = dependency_graph();
    for krate in ["kiln-ir", "kiln-plan", "kiln-opt", "kiln-layers"] {
        let deps = closure(&g, krate);
        for banned in [
            "wgpu",
            "wgpu-core",
            "wgpu-hal",
            "naga",
            "pollster",
            "bytemuck",
            "kiln-wgpu",
        ] {
            assert!(
                !deps.contains(banned),
                "{krate} depends on {banned} (directly or transitively)"
            );
        }
    }
    let ir = closure(&g, "kiln-ir");
    for banned in ["kiln-opt", "kiln-layers", "petgraph", "bincode"] {
        assert!(!ir.contains(banned), "kiln-ir depends on {banned}");
    }
    let wgpu_deps = closure(&g, "kiln-wgpu");
    assert!(
        !wgpu_deps.contains("kiln-layers"),
        "kiln-wgpu must not know layers"
    );
    assert!(
        closure(&g, "kiln").contains("kiln-wgpu"),
        "the facade chooses the wgpu device"
    );
}

/// The crates that run plans.
const EXECUTORS: &[&str] = &["kiln-wgpu", "kiln-cpu"];

/// The plan contract sits between the compiler and the executors: executors depend on
/// `kiln-plan`, never on the compiler, and the contract depends on nothing of kiln but the
/// IR's scalar types.
#[test]
fn executors_depend_on_the_plan_contract_not_the_compiler() {
    let g = dependency_graph();
    let kiln = |deps: &BTreeSet<String>| -> BTreeSet<String> {
        deps.iter()
            .filter(|d| d.starts_with("kiln"))
            .cloned()
            .collect()
    };
    let plan = kiln(&closure(&g, "kiln-plan"));
    assert_eq!(
        plan,
        BTreeSet::from(["kiln-ir".to_string()]),
        "kiln-plan depends on kiln crates other than kiln-ir"
    );
    for executor in EXECUTORS {
        let deps = kiln(&closure(&g, executor));
        assert_eq!(
            deps,
            BTreeSet::from(["kiln-ir".to_string(), "kiln-plan".to_string()]),
            "{executor} must depend on the plan contract only"
        );
    }
    let opt = closure(&g, "kiln-opt");
    assert!(
        opt.contains("kiln-plan"),
        "the compiler produces kiln-plan plans"
    );
}

#[test]
fn layers_source_never_names_wgpu() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../crates/kiln-layers/src");
    // every file of the source tree (layers/, train/, data/ and the crate root)
    let mut files = vec![];
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).expect("kiln-layers/src exists") {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                files.push(path);
            }
        }
    }
    let mut checked = 0;
    for path in files {
        let text = std::fs::read_to_string(&path).expect("readable source");
        assert!(
            !text.to_lowercase().contains("wgpu"),
            "{} names wgpu",
            path.display()
        );
        checked += 1;
    }
    assert!(checked >= 5, "only {checked} files checked");
}
