//! Host-key rotation in memory (OpenSSH `PROTOCOL` §2.5): the server
//! announces its keys in service after authentication and never before,
//! proves the ones it is asked about with signatures our client verifies,
//! refuses bad proof requests and keeps the connection; the first key of a
//! type signs key exchanges, and a retiring key signs only for clients that
//! can take no other.

#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use gitmouth_core::client::{ClientConfig, Event};
use gitmouth_core::connection::hostkeys::{
    HOSTKEYS, HOSTKEYS_PROVE, MAX_PROVE_REQUESTS, verify_proofs,
};
use gitmouth_core::server::{Output, ServerConfig};
use gitmouth_core::test_util::{Pair, ed25519, host_key, server_config};
use gitmouth_core::transport::TransportConfig;
use gitmouth_core::transport::disconnect::{CloseReason, DisconnectReason};
use gitmouth_core::transport::hostkey::{HostKey, HostKeyAlg, HostKeys};
use gitmouth_core::wire;
use gitmouth_tests::epoch;
use rand_core::SeedableRng;

/// A host key from the core's fixtures (`core/src/transport/testdata`).
fn fixture_host_key(name: &str) -> HostKey {
    let path = format!(
        "{}/../core/src/transport/testdata/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    HostKey::from_private_key_file(&std::fs::read(path).unwrap()).unwrap()
}

fn rsa() -> HostKey {
    fixture_host_key("rsa2048_pem")
}

/// A second ed25519 host key, other than `host_key()`.
fn new_ed25519() -> HostKey {
    HostKey::generate_ed25519(&mut rand_chacha::ChaCha20Rng::from_seed([9; 32]))
}

fn with_keys(
    in_service: Vec<HostKey>,
    retiring: Vec<HostKey>,
) -> (ServerConfig, ssh_key::PrivateKey) {
    let alice = ed25519(1, "alice");
    let mut config = server_config(&[&alice]);
    config.host_keys = HostKeys::new(in_service, retiring).unwrap();
    (config, alice)
}

fn client_accepting(algs: &[HostKeyAlg]) -> ClientConfig {
    ClientConfig {
        transport: Arc::new(TransportConfig::default()),
        host_key_algs: algs.to_vec(),
    }
}

fn blobs(keys: &[&HostKey]) -> Vec<Vec<u8>> {
    keys.iter().map(|k| k.public_blob()).collect()
}

fn session_id(pair: &Pair) -> Vec<u8> {
    pair.client.transport().session_id().unwrap().to_vec()
}

fn negotiated(pair: &Pair) -> HostKeyAlg {
    pair.client.transport().negotiated().unwrap().host_key
}

/// The reply to the last global request, with the proofs it carried.
fn prove(pair: &mut Pair, keys: &[Vec<u8>]) -> Option<Vec<u8>> {
    pair.client.prove_host_keys(keys);
    pair.drive();
    match pair.events.last() {
        Some(Event::GlobalReply(true)) => Some(pair.client.global_reply().to_vec()),
        Some(Event::GlobalReply(false)) => None,
        other => panic!("no reply to the proof request: {other:?}"),
    }
}

fn still_open(pair: &Pair) {
    assert!(
        !pair.server.transport().is_closed(),
        "{:?}",
        pair.server_close()
    );
}

#[test]
fn the_keys_in_service_are_announced_after_authentication_and_not_before() {
    let (old, new, retiring) = (host_key(), new_ed25519(), rsa());
    let expected = blobs(&[&old, &new]);
    let (config, alice) = with_keys(vec![old, new], vec![retiring]);
    let mallory = ed25519(2, "mallory");
    let mut pair = Pair::new(config, epoch());
    pair.handshake();
    pair.client.request_service("ssh-userauth");
    pair.drive();
    // A refused login is not a login: nothing is announced.
    pair.client.auth_publickey("git", &mallory);
    pair.drive();
    assert!(matches!(
        pair.events.last(),
        Some(Event::AuthFailure { .. })
    ));
    assert_eq!(pair.client.host_keys_announced(), None);
    pair.client.auth_publickey("git", &alice);
    pair.drive();
    assert!(pair.events.contains(&Event::AuthSuccess));
    // In service, in order; the retiring key is left out.
    assert_eq!(pair.client.host_keys_announced(), Some(expected.as_slice()));
    // Once per connection: a re-key announces nothing more.
    pair.client.rekey(pair.now);
    pair.drive();
    assert_eq!(pair.client.host_keys_announced(), Some(expected.as_slice()));
    still_open(&pair);
}

#[test]
fn proofs_verify_for_every_key_retiring_ones_included() {
    let (old, new, retiring) = (host_key(), new_ed25519(), rsa());
    let asked = blobs(&[&new, &retiring, &old]);
    let (config, alice) = with_keys(vec![old, new], vec![retiring]);
    let mut pair = Pair::new(config, epoch());
    pair.login(&alice);
    let proofs = prove(&mut pair, &asked).expect("proven");
    verify_proofs(&asked, &session_id(&pair), negotiated(&pair), &proofs).unwrap();
    // A proof is bound to its key and its session: swapped, they fail.
    let swapped = [asked[1].clone(), asked[0].clone(), asked[2].clone()];
    assert!(verify_proofs(&swapped, &session_id(&pair), negotiated(&pair), &proofs).is_err());
    assert!(verify_proofs(&asked, b"another session", negotiated(&pair), &proofs).is_err());
    // An empty request gets an empty answer, as from sshd.
    assert_eq!(prove(&mut pair, &[]), Some(Vec::new()));
    still_open(&pair);
}

#[test]
fn rsa_proofs_use_the_algorithm_openssh_expects() {
    // RSA negotiated: its proof uses that very algorithm.
    for alg in [HostKeyAlg::RsaSha2_256, HostKeyAlg::RsaSha2_512] {
        let key = rsa();
        let asked = blobs(&[&key]);
        let (config, alice) = with_keys(vec![host_key(), key], vec![]);
        let mut pair = Pair::with_client(config, client_accepting(&[alg]), 3, epoch());
        pair.login(&alice);
        assert_eq!(negotiated(&pair), alg);
        let proofs = prove(&mut pair, &asked).unwrap();
        verify_proofs(&asked, &session_id(&pair), alg, &proofs).unwrap();
        let name = wire::Parser::new(&proofs).string().unwrap();
        let name = wire::Parser::new(name).utf8().unwrap().to_owned();
        assert_eq!(name, alg.name());
    }
    // ed25519 negotiated: rsa-sha2-512 if the client lists it, else
    // rsa-sha2-256.
    for (listed, expected) in [
        (
            &[
                HostKeyAlg::Ed25519,
                HostKeyAlg::RsaSha2_256,
                HostKeyAlg::RsaSha2_512,
            ][..],
            "rsa-sha2-512",
        ),
        (
            &[HostKeyAlg::Ed25519, HostKeyAlg::RsaSha2_256][..],
            "rsa-sha2-256",
        ),
        (&[HostKeyAlg::Ed25519][..], "rsa-sha2-512"),
    ] {
        let key = rsa();
        let asked = blobs(&[&key]);
        let (config, alice) = with_keys(vec![host_key(), key], vec![]);
        let mut pair = Pair::with_client(config, client_accepting(listed), 3, epoch());
        pair.login(&alice);
        assert_eq!(negotiated(&pair), HostKeyAlg::Ed25519);
        let proofs = prove(&mut pair, &asked).unwrap();
        verify_proofs(&asked, &session_id(&pair), HostKeyAlg::Ed25519, &proofs).unwrap();
        let name = wire::Parser::new(&proofs).string().unwrap();
        assert_eq!(wire::Parser::new(name).utf8().unwrap(), expected);
    }
}

#[test]
fn bad_proof_requests_are_refused_and_the_connection_goes_on() {
    let (old, new) = (host_key(), new_ed25519());
    let ours = blobs(&[&old, &new]);
    let (config, alice) = with_keys(vec![old, new], vec![]);
    let mut pair = Pair::new(config, epoch());
    pair.login(&alice);
    let stranger = new_stranger();
    // A key that is not ours, alone or among ours.
    assert_eq!(prove(&mut pair, std::slice::from_ref(&stranger)), None);
    assert_eq!(
        prove(&mut pair, &[ours[0].clone(), stranger, ours[1].clone()]),
        None
    );
    // More keys than the server holds (one asked twice, then more).
    assert_eq!(
        prove(
            &mut pair,
            &[ours[0].clone(), ours[1].clone(), ours[0].clone()]
        ),
        None
    );
    // Malformed: a blob that runs past the end, or a byte too many.
    let mut truncated = Vec::new();
    wire::put_string(&mut truncated, &ours[0]);
    truncated.truncate(truncated.len() - 1);
    pair.client.global_request(HOSTKEYS_PROVE, true, &truncated);
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::GlobalReply(false)));
    still_open(&pair);
    // Four requests on a connection, counting the refused ones: the fifth is
    // refused even for a key of ours.
    assert_eq!(MAX_PROVE_REQUESTS, 4);
    assert_eq!(prove(&mut pair, &[ours[0].clone()]), None);
    still_open(&pair);
    // Without want-reply nothing is signed nor sent.
    let events = pair.events.len();
    let mut one = Vec::new();
    wire::put_string(&mut one, &ours[0]);
    pair.client.global_request(HOSTKEYS_PROVE, false, &one);
    pair.drive();
    assert_eq!(pair.events.len(), events);
    // The client announcing keys to the server is just an unknown request.
    pair.client.global_request(HOSTKEYS, true, &one);
    pair.drive();
    assert_eq!(pair.events.last(), Some(&Event::GlobalReply(false)));
    still_open(&pair);
}

/// The blob of an ed25519 key the server does not hold.
fn new_stranger() -> Vec<u8> {
    HostKey::generate_ed25519(&mut rand_chacha::ChaCha20Rng::from_seed([77; 32])).public_blob()
}

#[test]
fn a_proof_request_before_authentication_ends_the_connection() {
    let key = host_key();
    let ours = blobs(&[&key]);
    let (config, _alice) = with_keys(vec![key], vec![]);
    let mut pair = Pair::new(config, epoch());
    pair.handshake();
    pair.client.request_service("ssh-userauth");
    pair.drive();
    pair.client.prove_host_keys(&ours);
    pair.drive();
    match pair.server_close() {
        Some(Output::Close(CloseReason::Sent {
            reason: DisconnectReason::ProtocolError,
            description,
        })) => assert!(
            description.contains("before authentication"),
            "{description}"
        ),
        other => panic!("not disconnected: {other:?}"),
    }
    assert!(!pair.events.contains(&Event::GlobalReply(true)));
    assert_eq!(pair.client.host_keys_announced(), None);
}

#[test]
fn the_first_key_of_a_type_signs_and_a_retiring_key_only_for_its_own_clients() {
    // Two ed25519 keys in service: the first signs.
    let (old, new) = (host_key(), new_ed25519());
    let old_blob = old.public_blob();
    let (config, alice) = with_keys(vec![old, new], vec![]);
    let mut pair = Pair::new(config, epoch());
    pair.login(&alice);
    assert_eq!(
        pair.client.transport().peer_host_key(),
        Some(old_blob.as_slice())
    );
    // The old key retiring behind the new one: the new one signs.
    let (old, new) = (host_key(), new_ed25519());
    let new_blob = new.public_blob();
    let (config, alice) = with_keys(vec![new], vec![old]);
    let mut pair = Pair::new(config, epoch());
    pair.login(&alice);
    assert_eq!(
        pair.client.transport().peer_host_key(),
        Some(new_blob.as_slice())
    );
    assert_eq!(pair.client.host_keys_announced(), Some(&[new_blob][..]));
    // A retiring RSA key beside ed25519: a client that takes only RSA still
    // gets in, signed by the retiring key, and is told of ed25519 only.
    let (ed, retiring) = (host_key(), rsa());
    let (ed_blob, rsa_blob) = (ed.public_blob(), retiring.public_blob());
    for algs in [&[HostKeyAlg::RsaSha2_512][..], &[HostKeyAlg::RsaSha2_256]] {
        let (config, alice) = with_keys(vec![host_key()], vec![rsa()]);
        let mut pair = Pair::with_client(config, client_accepting(algs), 3, epoch());
        pair.login(&alice);
        assert_eq!(
            pair.client.transport().peer_host_key(),
            Some(rsa_blob.as_slice())
        );
        assert_eq!(
            pair.client.host_keys_announced(),
            Some(&[ed_blob.clone()][..])
        );
    }
    drop((ed, retiring));
}
