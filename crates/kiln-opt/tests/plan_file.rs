//! Plan files and the on-disk cache: round trip, golden bytes, cache keys, and the
//! corruption suite (every damaged, stale or mismatched entry is a miss with a reason, never
//! a panic, and the plan used is bit-identical to a fresh compile).

use kiln_ir::eval::Feeds;
use kiln_ir::random::Rng;
use kiln_ir::{DType, Graph};
use kiln_opt::cache::{compile_cached, CacheKey, CacheOutcome, Lookup, PlanCache};
use kiln_opt::codec::{self, CodecError};
use kiln_opt::interp::CpuBackend;
use kiln_opt::{compile, Backend, CompileOptions, HostTensor, Plan};
use std::path::PathBuf;
use std::sync::Arc;

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "kiln-test-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Three graphs with params, several kernels kinds and assignments.
fn graphs() -> Vec<(Graph, Feeds)> {
    let mut v: Vec<(Graph, Feeds)> = kiln_opt::testing::composite_graphs()
        .into_iter()
        .map(|(_, g, f)| (g, f))
        .take(2)
        .collect();
    v.push(kiln_opt::testing::random_graph(7, 30));
    v
}

/// Runs `plan` on a fresh CPU backend; returns outputs and updated params (bit exact).
fn run(plan: Plan, feeds: &Feeds) -> Vec<HostTensor> {
    let mut b = CpuBackend::new();
    for s in &plan.params {
        let t = &feeds[&s.name];
        b.write_param(
            &s.name,
            &HostTensor::f32(t.shape.clone(), t.data.iter().map(|&x| x as f32).collect()).unwrap(),
        )
        .unwrap();
    }
    let inputs: Vec<HostTensor> = plan
        .inputs
        .iter()
        .map(|s| {
            let t = &feeds[&s.name];
            HostTensor::f32(t.shape.clone(), t.data.iter().map(|&x| x as f32).collect()).unwrap()
        })
        .collect();
    let refs: Vec<&HostTensor> = inputs.iter().collect();
    let names: Vec<String> = plan.params.iter().map(|s| s.name.clone()).collect();
    let mut exe = b.load(Arc::new(plan)).unwrap();
    let mut out = exe.run(&refs).unwrap();
    out.extend(names.iter().map(|n| b.read_param(n).unwrap()));
    out
}

fn limits() -> kiln_opt::DeviceLimits {
    CpuBackend::new().limits()
}

#[test]
fn encode_decode_round_trip_is_identical_and_runs_bit_identically() {
    for (g, feeds) in graphs() {
        let plan = compile(&g, &CompileOptions::default(), &limits()).unwrap();
        let bytes = codec::encode(&plan, 42).unwrap();
        let back = codec::decode(&bytes, Some(42)).unwrap();
        assert_eq!(
            codec::encode(&back, 42).unwrap(),
            bytes,
            "re-encoding changes the bytes"
        );
        assert_eq!(run(back, &feeds), run(plan, &feeds));
    }
}

#[test]
fn compilation_is_deterministic_and_keys_explain_misses() {
    let (g, _) = kiln_opt::testing::random_graph(11, 30);
    let opts = CompileOptions::default();
    let a = codec::encode(&compile(&g, &opts, &limits()).unwrap(), 1).unwrap();
    let b = codec::encode(&compile(&g, &opts, &limits()).unwrap(), 1).unwrap();
    assert_eq!(a, b, "same graph, different plan bytes");
    let k1 = CacheKey::new(&g, &opts, &limits(), "cpu");
    assert_eq!(k1, CacheKey::new(&g, &opts, &limits(), "cpu"));
    let small = kiln_opt::DeviceLimits::default();
    assert_eq!(
        k1.explain_miss(&CacheKey::new(&g, &opts, &small, "cpu")),
        vec!["limits"]
    );
    assert_eq!(
        k1.explain_miss(&CacheKey::new(&g, &opts, &limits(), "gpu")),
        vec!["device"]
    );
    let (g2, _) = kiln_opt::testing::random_graph(12, 30);
    assert_eq!(
        k1.explain_miss(&CacheKey::new(&g2, &opts, &limits(), "cpu")),
        vec!["graph"]
    );
    let no_plan = CompileOptions {
        plan_memory: false,
        ..opts
    };
    assert_eq!(
        k1.explain_miss(&CacheKey::new(&g, &no_plan, &limits(), "cpu")),
        vec!["options"]
    );
}

#[test]
fn golden_plan_bytes() {
    // A small fixed graph; its plan bytes are a fixture, so format changes are deliberate:
    // regenerate with KILN_BLESS=1 and bump PLAN_FORMAT_VERSION when the layout changes.
    let mut g = Graph::new();
    let x = g.input("x", [2, 3], DType::F32).unwrap();
    let w = g.param("w", [3, 2], DType::F32).unwrap();
    let y = g.matmul(x, w).unwrap();
    let s = g.softmax(y, 1).unwrap();
    g.output("s", s).unwrap();
    let plan = compile(
        &g,
        &CompileOptions::default(),
        &kiln_opt::DeviceLimits::default(),
    )
    .unwrap();
    let bytes = codec::encode(&plan, 0x1234).unwrap();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden_plan.kplan");
    if std::env::var("KILN_BLESS").is_ok() {
        std::fs::write(&path, &bytes).unwrap();
    }
    let golden = std::fs::read(&path)
        .expect("fixture tests/fixtures/golden_plan.kplan (KILN_BLESS=1 writes it)");
    assert_eq!(
        bytes, golden,
        "plan bytes changed: bump PLAN_FORMAT_VERSION and re-bless"
    );
    assert_eq!(
        codec::decode(&golden, Some(0x1234)).unwrap(),
        codec::decode(&bytes, None).unwrap()
    );
}

#[test]
fn a_body_claiming_huge_sizes_is_rejected_without_allocating() {
    let mut g = Graph::new();
    let x = g.input("x", [4], DType::F32).unwrap();
    let y = g.exp(x).unwrap();
    g.output("y", y).unwrap();
    let mut plan = compile(&g, &CompileOptions::default(), &limits()).unwrap();
    plan.buffers[0].len = 1 << 40;
    let bytes = codec::encode(&plan, 0).unwrap();
    assert!(matches!(
        codec::decode(&bytes, None),
        Err(CodecError::Invalid(_))
    ));
    // a hand-made body whose buffer vector claims 2^40 entries: bincode's limit rejects the
    // claim before allocating (format_version = 2, then the length as a u64 varint)
    let body = [0x02u8, 0xfd, 0, 0, 0, 0, 0, 1, 0, 0];
    let patched = rebuild_with_body(&bytes, &body);
    assert!(matches!(
        codec::decode(&patched, None),
        Err(CodecError::Decode(_))
    ));
}

/// The same header with another body (length and checksum recomputed).
fn rebuild_with_body(file: &[u8], body: &[u8]) -> Vec<u8> {
    use std::hash::Hasher as _;
    let (_, body_at) = codec::read_header(file).unwrap();
    let mut head = file[..body_at - 16].to_vec();
    head.extend_from_slice(&(body.len() as u64).to_le_bytes());
    let mut h = twox_hash::XxHash3_64::with_seed(0);
    h.write(&head);
    h.write(body);
    head.extend_from_slice(&h.finish().to_le_bytes());
    head.extend_from_slice(body);
    head
}

/// Writes `bytes` as the cache entry of `key`, then compiles through the cache: it must
/// miss with a reason, and the plan used must run bit-identically to a fresh compile.
fn expect_rejected(
    cache: &PlanCache,
    dir: &std::path::Path,
    key: &CacheKey,
    bytes: &[u8],
    g: &Graph,
    feeds: &Feeds,
    what: &str,
) {
    std::fs::write(dir.join(format!("{:032x}.kplan", key.digest)), bytes).unwrap();
    let (plan, outcome) =
        compile_cached(g, &CompileOptions::default(), &limits(), "cpu", cache).unwrap();
    match outcome {
        CacheOutcome::Miss(why) => assert!(!why.is_empty(), "{what}: empty reason"),
        other => panic!("{what}: expected a miss, got {other:?}"),
    }
    let fresh = compile(g, &CompileOptions::default(), &limits()).unwrap();
    assert_eq!(
        run(plan, feeds),
        run(fresh, feeds),
        "{what}: outputs differ from a fresh compile"
    );
    // the rewritten entry is good again
    assert!(
        matches!(cache.get(key), Lookup::Hit(_)),
        "{what}: entry not rewritten"
    );
}

#[test]
fn corruption_suite() {
    for (gi, (g, feeds)) in graphs().into_iter().enumerate() {
        let dir = temp_dir(&format!("corrupt{gi}"));
        let cache = PlanCache::at(&dir, 1 << 30);
        let key = CacheKey::new(&g, &CompileOptions::default(), &limits(), "cpu");
        let (_, first) =
            compile_cached(&g, &CompileOptions::default(), &limits(), "cpu", &cache).unwrap();
        assert!(matches!(first, CacheOutcome::Miss(_)));
        let (_, second) =
            compile_cached(&g, &CompileOptions::default(), &limits(), "cpu", &cache).unwrap();
        assert_eq!(second, CacheOutcome::Hit);
        let good = std::fs::read(dir.join(format!("{:032x}.kplan", key.digest))).unwrap();
        let n = good.len();
        for cut in [0, 1, 7, n / 2, n - 1] {
            expect_rejected(
                &cache,
                &dir,
                &key,
                &good[..cut],
                &g,
                &feeds,
                &format!("truncated to {cut}"),
            );
        }
        let mut rng = Rng::new(gi as u64);
        for i in 0..64 {
            let mut b = good.clone();
            // the first flips hit the header, the rest anywhere
            let at = if i < 16 {
                rng.below(48.min(n))
            } else {
                rng.below(n)
            };
            b[at] ^= 1 << rng.below(8);
            expect_rejected(
                &cache,
                &dir,
                &key,
                &b,
                &g,
                &feeds,
                &format!("bit flip at {at}"),
            );
        }
        let random: Vec<u8> = (0..n).map(|_| rng.below(256) as u8).collect();
        expect_rejected(&cache, &dir, &key, &random, &g, &feeds, "random bytes");
        let mut magic = good.clone();
        magic[0] = b'X';
        expect_rejected(&cache, &dir, &key, &magic, &g, &feeds, "wrong magic");
        let mut version = good.clone();
        version[8] = version[8].wrapping_add(1);
        expect_rejected(
            &cache,
            &dir,
            &key,
            &version,
            &g,
            &feeds,
            "format version + 1",
        );
        let mut stale = good.clone();
        stale[13] = b'9'; // first character of the kiln version
        expect_rejected(&cache, &dir, &key, &stale, &g, &feeds, "stale kiln version");
        // a plan compiled for another device, stored under this key
        let other = compile(
            &g,
            &CompileOptions::default(),
            &kiln_opt::DeviceLimits::default(),
        )
        .unwrap();
        let other_key = CacheKey::new(
            &g,
            &CompileOptions::default(),
            &kiln_opt::DeviceLimits::default(),
            "gpu",
        );
        let foreign = codec::encode(&other, other_key.digest).unwrap();
        expect_rejected(
            &cache,
            &dir,
            &key,
            &foreign,
            &g,
            &feeds,
            "different adapter fingerprint",
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}

#[test]
fn an_unwritable_cache_is_a_miss_not_an_error() {
    // A path that cannot be a directory (a file is in the way): works even as root, where
    // permission bits do not stop writes.
    let base = temp_dir("unwritable");
    let blocked = base.join("not-a-dir");
    std::fs::write(&blocked, b"file").unwrap();
    let cache = PlanCache::at(blocked.join("plans"), 1 << 20);
    let (g, feeds) = kiln_opt::testing::random_graph(3, 20);
    for _ in 0..2 {
        let (plan, outcome) =
            compile_cached(&g, &CompileOptions::default(), &limits(), "cpu", &cache).unwrap();
        assert!(matches!(outcome, CacheOutcome::Miss(_)));
        let fresh = compile(&g, &CompileOptions::default(), &limits()).unwrap();
        assert_eq!(run(plan, &feeds), run(fresh, &feeds));
    }
    let _ = std::fs::remove_dir_all(&base);
}

#[test]
fn concurrent_writers_never_expose_a_torn_file() {
    let dir = temp_dir("concurrent");
    let (g, _) = kiln_opt::testing::random_graph(5, 30);
    let key = CacheKey::new(&g, &CompileOptions::default(), &limits(), "cpu");
    let plan = compile(&g, &CompileOptions::default(), &limits()).unwrap();
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                let cache = PlanCache::at(&dir, 1 << 30);
                for _ in 0..32 {
                    cache.put(&key, &plan).unwrap();
                }
            });
        }
        s.spawn(|| {
            let cache = PlanCache::at(&dir, 1 << 30);
            for _ in 0..64 {
                match cache.get(&key) {
                    Lookup::Hit(p) => assert_eq!(
                        codec::encode(&p, 0).unwrap(),
                        codec::encode(&plan, 0).unwrap()
                    ),
                    Lookup::Miss(why) => {
                        assert!(why.starts_with("not cached"), "torn or bad entry: {why}")
                    }
                }
            }
        });
    });
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_cache_evicts_least_recently_used_entries_above_its_cap() {
    let dir = temp_dir("lru");
    let opts = CompileOptions::default();
    let plans: Vec<(CacheKey, Plan)> = (0..6)
        .map(|s| {
            let (g, _) = kiln_opt::testing::random_graph(100 + s, 30);
            (
                CacheKey::new(&g, &opts, &limits(), "cpu"),
                compile(&g, &opts, &limits()).unwrap(),
            )
        })
        .collect();
    let size = codec::encode(&plans[0].1, 0).unwrap().len() as u64;
    let cache = PlanCache::at(&dir, size * 3);
    for (k, p) in &plans {
        cache.put(k, p).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let total: u64 = cache.list().iter().map(|e| e.bytes).sum();
    assert!(
        total <= size * 4,
        "cache holds {total} bytes, cap {}",
        size * 3
    );
    assert!(
        matches!(cache.get(&plans[5].0), Lookup::Hit(_)),
        "the newest entry was evicted"
    );
    assert!(
        matches!(cache.get(&plans[0].0), Lookup::Miss(_)),
        "the oldest entry survived"
    );
    assert_eq!(cache.verify().iter().filter(|(_, r)| r.is_err()).count(), 0);
    assert!(cache.clear() >= 1);
    assert!(cache.list().is_empty());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn decode_corpus_replays_without_panics() {
    // the seed corpus of the cargo-fuzz target `fuzz/fuzz_targets/plan_decode.rs`, plus
    // seeded mutations of each entry (what a fuzzer would try first)
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/decode_corpus");
    let mut entries: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("tests/fixtures/decode_corpus exists")
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    entries.push(
        std::fs::read(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden_plan.kplan"),
        )
        .unwrap(),
    );
    assert!(entries.len() >= 3);
    let mut rng = Rng::new(99);
    let mut decoded = 0;
    for e in &entries {
        decoded += usize::from(codec::decode(e, None).is_ok());
        for _ in 0..300 {
            let mut m = e.clone();
            match rng.below(3) {
                0 if !m.is_empty() => {
                    let i = rng.below(m.len());
                    m[i] = rng.below(256) as u8;
                }
                1 => m.truncate(rng.below(m.len() + 1)),
                _ => m.extend((0..rng.below(16)).map(|_| rng.below(256) as u8)),
            }
            if let Ok(p) = codec::decode(&m, None) {
                kiln_opt::validate::structure(&p).unwrap();
            }
        }
    }
    assert!(decoded >= 1, "no corpus entry decodes");
}

#[test]
fn a_fifo_cache_entry_is_rejected_not_waited_on() {
    let dir = temp_dir("fifo");
    let cache = PlanCache::at(&dir, 1 << 30);
    let (g, _) = graphs().remove(0);
    let key = CacheKey::new(&g, &CompileOptions::default(), &limits(), "cpu");
    std::fs::create_dir_all(&dir).unwrap();
    let entry = dir.join(format!("{:032x}.kplan", key.digest));
    let made = std::process::Command::new("mkfifo").arg(&entry).status();
    if !made.is_ok_and(|s| s.success()) {
        eprintln!("skipping: no mkfifo");
        return;
    }
    // opening a FIFO for reading blocks until a writer comes: the lookup must not open it
    match cache.get(&key) {
        Lookup::Miss(why) => assert!(why.contains("not a regular file"), "{why}"),
        Lookup::Hit(_) => panic!("a FIFO was a hit"),
    }
    let (_, outcome) =
        compile_cached(&g, &CompileOptions::default(), &limits(), "cpu", &cache).unwrap();
    assert!(matches!(outcome, CacheOutcome::Miss(_)), "{outcome:?}");
    // the FIFO was replaced by a real entry, which now hits
    assert!(std::fs::metadata(&entry).unwrap().is_file());
    assert!(matches!(cache.get(&key), Lookup::Hit(_)));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn plan_files_are_read_with_bounded_work() {
    let dir = temp_dir("bounded");
    std::fs::create_dir_all(&dir).unwrap();
    assert!(matches!(
        codec::read_file(std::path::Path::new("/dev/zero")),
        Err(CodecError::Io(m)) if m.contains("not a regular file")
    ));
    // a huge file with a bad magic: rejected after 8 bytes
    let big = dir.join("big.kplan");
    std::fs::File::create(&big)
        .unwrap()
        .set_len(4 << 30)
        .unwrap();
    assert_eq!(codec::read_file(&big), Err(CodecError::BadMagic));
    // a huge file with the right magic: rejected on its length, before reading the body
    std::fs::write(&big, codec::MAGIC).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&big)
        .unwrap()
        .set_len(codec::MAX_FILE_BYTES + 1)
        .unwrap();
    assert!(matches!(
        codec::read_file(&big),
        Err(CodecError::Length { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}
