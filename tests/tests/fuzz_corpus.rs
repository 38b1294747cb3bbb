//! Replays the committed fuzz corpus (`fuzz/corpus/<target>/*`) through the
//! fuzz targets' bodies, on stable and without libFuzzer, so that every
//! crash the fuzzer ever found (its reproducer is committed into the corpus)
//! stays fixed and every interesting input keeps being exercised.
//!
//! The bodies live in `fuzz/bodies` (package `gitmouth-fuzz-bodies`), the
//! same functions the libFuzzer targets in `fuzz/fuzz_targets/` call.
#![allow(clippy::unwrap_used)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use gitmouth_core::transport::packet::PacketReader;
use gitmouth_fuzz_bodies::{TARGETS, run_session, seeds, session_stages};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

/// The files of one target's corpus, sorted so failures read the same on
/// every run.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = fuzz_dir().join("corpus").join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

#[test]
fn every_committed_input_replays_without_a_panic() {
    let mut failures = Vec::new();
    let mut total = 0;
    for (target, body) in TARGETS {
        let files = corpus(target);
        assert!(!files.is_empty(), "no corpus committed for {target}");
        for path in files {
            let data = std::fs::read(&path).unwrap();
            total += 1;
            // Keep going after a failure so one run lists every failing
            // input; the panic message itself is printed by the hook.
            if catch_unwind(AssertUnwindSafe(|| body(&data))).is_err() {
                failures.push(path.display().to_string());
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {total} corpus inputs fail:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_corpus_directory_is_a_target_with_a_binary() {
    let names: Vec<&str> = TARGETS.iter().map(|(name, _)| *name).collect();
    for entry in std::fs::read_dir(fuzz_dir().join("corpus")).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        assert!(
            names.contains(&name.as_str()),
            "fuzz/corpus/{name} belongs to no target"
        );
    }
    for name in names {
        let target = fuzz_dir().join("fuzz_targets").join(format!("{name}.rs"));
        let source = std::fs::read_to_string(&target)
            .unwrap_or_else(|e| panic!("{}: {e}", target.display()));
        assert!(
            source.contains(&format!("gitmouth_fuzz_bodies::{name}(")),
            "{} calls another body",
            target.display()
        );
    }
}

#[test]
fn generated_seeds_pass_and_client_streams_get_through_the_key_exchange() {
    for seed in seeds::all() {
        let (_, body) = TARGETS
            .iter()
            .find(|(name, _)| *name == seed.target)
            .unwrap();
        body(&seed.bytes);
        if seed.target == "server_session" && seed.name.starts_with("client-") {
            // The recorded client authenticated its packets under the keys
            // it agreed with the fuzzing server: replayed, nothing fails.
            let run = run_session(&seed.bytes, false);
            assert!(!run.closed, "{}: the server closed the session", seed.name);
        }
        if seed.target == "server_session" && seed.name.starts_with("git-") {
            // The recorded git commands run to their end: the control
            // stream authenticates the client, runs git or reaches the
            // dyno, relays its output and reports its exit.
            let (stages, channel) = session_stages(&seed.bytes);
            assert!(
                stages.authenticated
                    && channel
                    && stages.exec
                    && stages.backend
                    && stages.relay
                    && stages.exit,
                "{}: {stages:?}, channel open: {channel}",
                seed.name
            );
        }
    }
}

/// The message numbers of the plaintext packets a server sent after its
/// version line, up to and including its NEWKEYS.
fn plaintext_messages(sent: &[u8]) -> Vec<u8> {
    let line_end = sent.iter().position(|&b| b == b'\n').unwrap();
    let mut reader = PacketReader::new();
    reader.feed(&sent[line_end + 1..]);
    let mut numbers = Vec::new();
    while let Ok(Some(packet)) = reader.next_packet() {
        numbers.push(reader.payload(&packet)[0]);
        if numbers.last() == Some(&21) {
            break;
        }
    }
    numbers
}

/// The captures of a real OpenSSH client (`fuzz/tools/capture_openssh.py`)
/// carry its key share: replayed, the server completes the key exchange
/// with it.
#[test]
fn openssh_captures_complete_the_key_exchange() {
    let captures: Vec<PathBuf> = corpus("server_session")
        .into_iter()
        .filter(|path| {
            path.file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("capture-openssh-")
        })
        .collect();
    assert!(!captures.is_empty());
    for path in captures {
        let run = run_session(&std::fs::read(&path).unwrap(), false);
        assert!(
            !run.closed,
            "{}: the server closed the session",
            path.display()
        );
        // KEXINIT, KEX_ECDH_REPLY, NEWKEYS.
        assert_eq!(
            plaintext_messages(&run.sent),
            [20, 31, 21],
            "{}",
            path.display()
        );
    }
}

/// The committed `seed-*` files are what the generator makes today. The
/// recorded client streams only get past the key exchange while the
/// server's bytes are unchanged; when this fails, regenerate with
/// `cargo run --manifest-path fuzz/bodies/Cargo.toml --example write_seeds`
/// (from the repository root) and commit the result.
#[test]
fn committed_seeds_are_current() {
    let mut stale = Vec::new();
    for seed in seeds::all() {
        let path = fuzz_dir()
            .join("corpus")
            .join(seed.target)
            .join(format!("seed-{}", seed.name));
        if std::fs::read(&path).ok().as_deref() != Some(seed.bytes.as_slice()) {
            stale.push(path.display().to_string());
        }
    }
    assert!(
        stale.is_empty(),
        "stale or missing seeds (run `cargo run --manifest-path fuzz/bodies/Cargo.toml --example write_seeds`):\n{}",
        stale.join("\n")
    );
}
