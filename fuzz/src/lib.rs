//! A bounded mutation fuzzer that runs on stable inside `cargo test`: the
//! seed corpus (`fuzz/corpus/NAME/`, kept in the repo) is replayed first,
//! then inputs mutated from it (bit flips, byte and token insertions,
//! deletions, repeats, splices) until `FUZZ_SECONDS` (default 20) have
//! passed. Each input runs on a worker thread under a deadline: a panic or
//! an input over its deadline fails the test, and the input is saved to
//! `fuzz/artifacts/NAME/` to be added to the corpus once fixed.
//! `FUZZ_SEED` repeats a run (the seed is printed).

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Largest input tried (the targets' own limits are far below real sizes).
const MAX_INPUT: usize = 64 * 1024;

/// What to fuzz: a name (its corpus folder) and tokens the target's format
/// is made of, inserted as wholes so mutations reach past the first check.
pub struct Target {
    pub name: &'static str,
    pub dictionary: &'static [&'static str],
    /// How long one input may take before it counts as a hang.
    pub per_input: Duration,
}

/// Replays the corpus, then fuzzes for the configured time; panics (fails
/// the test) on the first input that panics or hangs.
pub fn fuzz(target: &Target, run: impl Fn(&[u8]) + Send + 'static) {
    let corpus = read_corpus(&corpus_dir(target.name));
    assert!(
        !corpus.is_empty(),
        "{}: the seed corpus is empty",
        corpus_dir(target.name).display()
    );
    let seconds: u64 = std::env::var("FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_nanos() as u64
        });
    eprintln!(
        "fuzz {}: {} corpus inputs, then {seconds} s of mutations (FUZZ_SEED={seed})",
        target.name,
        corpus.len()
    );
    let worker = Worker::start(run);
    for input in &corpus {
        worker.check(target, input);
    }
    let mut rng = Rng(seed | 1);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let mut tried = 0u64;
    while Instant::now() < deadline {
        let mut input = corpus[rng.below(corpus.len())].clone();
        for _ in 0..=rng.below(4) {
            mutate(&mut input, &corpus, target.dictionary, &mut rng);
        }
        input.truncate(MAX_INPUT);
        worker.check(target, &input);
        tried += 1;
    }
    eprintln!(
        "fuzz {}: {tried} mutated inputs, no panic, no hang",
        target.name
    );
}

/// The target on its own thread, so a hang can be told from slowness.
struct Worker {
    inputs: mpsc::Sender<Vec<u8>>,
    results: mpsc::Receiver<Result<(), String>>,
}

impl Worker {
    fn start(run: impl Fn(&[u8]) + Send + 'static) -> Worker {
        let (inputs, rx) = mpsc::channel::<Vec<u8>>();
        let (tx, results) = mpsc::channel();
        std::thread::spawn(move || {
            for input in rx {
                let outcome = catch_unwind(AssertUnwindSafe(|| run(&input))).map_err(|p| {
                    p.downcast_ref::<String>()
                        .cloned()
                        .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_else(|| "a panic".into())
                });
                if tx.send(outcome).is_err() {
                    return;
                }
            }
        });
        Worker { inputs, results }
    }

    fn check(&self, target: &Target, input: &[u8]) {
        self.inputs.send(input.to_vec()).expect("the worker runs");
        match self.results.recv_timeout(target.per_input) {
            Ok(Ok(())) => {}
            Ok(Err(why)) => fail(target, input, &format!("panicked: {why}")),
            Err(_) => fail(
                target,
                input,
                &format!("took longer than {:?} (a hang?)", target.per_input),
            ),
        }
    }
}

fn fail(target: &Target, input: &[u8], what: &str) -> ! {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("artifacts")
        .join(target.name);
    let _ = std::fs::create_dir_all(&dir);
    let path = dir.join(format!("{:016x}", fnv(input)));
    let _ = std::fs::write(&path, input);
    panic!(
        "fuzz {}: an input {what}; saved to {} ({} bytes: {:?})",
        target.name,
        path.display(),
        input.len(),
        String::from_utf8_lossy(&input[..input.len().min(200)])
    );
}

fn corpus_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("corpus")
        .join(name)
}

fn read_corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.sort();
    files.iter().filter_map(|f| std::fs::read(f).ok()).collect()
}

fn mutate(input: &mut Vec<u8>, corpus: &[Vec<u8>], dictionary: &[&str], rng: &mut Rng) {
    let at = |rng: &mut Rng, input: &Vec<u8>| rng.below(input.len() + 1);
    match rng.below(8) {
        0 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] ^= 1 << rng.below(8);
        }
        1 if !input.is_empty() => {
            let i = rng.below(input.len());
            input[i] = rng.next() as u8;
        }
        2 => {
            let i = at(rng, input);
            let bytes: Vec<u8> = (0..=rng.below(8)).map(|_| rng.next() as u8).collect();
            input.splice(i..i, bytes);
        }
        3 if !input.is_empty() => {
            let i = rng.below(input.len());
            let n = rng.below((input.len() - i).min(64) + 1);
            input.drain(i..i + n);
        }
        4 if !input.is_empty() => {
            // A run repeated: deep nesting, long strings, many items.
            let i = rng.below(input.len());
            let n = 1 + rng.below((input.len() - i).min(32));
            let chunk = input[i..i + n].to_vec();
            let times = 1 + rng.below(64);
            for _ in 0..times {
                input.splice(i..i, chunk.iter().copied());
            }
        }
        5 if !dictionary.is_empty() => {
            let i = at(rng, input);
            let token = dictionary[rng.below(dictionary.len())].as_bytes();
            input.splice(i..i, token.iter().copied());
        }
        6 => {
            // The head of one input with the tail of another.
            let other = &corpus[rng.below(corpus.len())];
            let i = at(rng, input);
            let j = rng.below(other.len() + 1);
            input.truncate(i);
            input.extend_from_slice(&other[j..]);
        }
        _ => {
            let i = at(rng, input);
            input.truncate(i);
        }
    }
}

/// xorshift64*: enough randomness for mutations, no dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mutations_stay_bounded_and_vary() {
        let corpus = vec![b"{\"a\":[1,2]}".to_vec(), b"x".to_vec()];
        let mut rng = Rng(7);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..500 {
            let mut input = corpus[0].clone();
            mutate(&mut input, &corpus, &["null"], &mut rng);
            assert!(input.len() < 4096);
            seen.insert(input);
        }
        assert!(seen.len() > 100, "only {} distinct inputs", seen.len());
    }

    #[test]
    #[should_panic(expected = "took longer than")]
    fn a_hang_fails() {
        let target = Target {
            name: "selftest",
            dictionary: &[],
            per_input: Duration::from_millis(50),
        };
        let worker = Worker::start(|_| std::thread::sleep(Duration::from_secs(2)));
        worker.check(&target, b"x");
    }

    #[test]
    #[should_panic(expected = "panicked: boom")]
    fn a_panic_fails() {
        let target = Target {
            name: "selftest",
            dictionary: &[],
            per_input: Duration::from_secs(5),
        };
        let worker = Worker::start(|_| panic!("boom"));
        worker.check(&target, b"x");
    }
}
