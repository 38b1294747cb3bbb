//! Target `kexinit`: parsing a peer's SSH_MSG_KEXINIT and negotiating
//! against our own offer (RFC 4253 §7.1), with the peer as client and as
//! server.
//!
//! Besides "no panic", the body checks that every negotiated algorithm is
//! listed by both sides under its exact name, that a MAC is chosen exactly
//! when the cipher is not an AEAD, and that a marker name (`ext-info-c`,
//! `kex-strict-*`) is never chosen.

use std::sync::OnceLock;

use gitmouth_core::transport::hostkey::HostKeyAlg;
use gitmouth_core::transport::negotiate::{KexInit, Negotiated, Offer, STRICT_S, negotiate};
use gitmouth_core::wire::NameList;

/// Our server's first KEXINIT payload with every algorithm we implement.
pub(crate) fn our_kexinit() -> &'static [u8] {
    static OURS: OnceLock<Vec<u8>> = OnceLock::new();
    OURS.get_or_init(|| {
        let mut out = Vec::new();
        Offer::all(HostKeyAlg::ALL.to_vec()).write_kexinit(&mut out, [0x42; 16], &[STRICT_S]);
        out
    })
}

/// The body of the `kexinit` target.
pub fn kexinit(data: &[u8]) {
    let Ok(theirs) = KexInit::parse(data) else {
        return;
    };
    for list in [
        theirs.kex,
        theirs.host_key,
        theirs.enc_c2s,
        theirs.enc_s2c,
        theirs.mac_c2s,
        theirs.mac_s2c,
        theirs.comp_c2s,
        theirs.comp_s2c,
    ] {
        for name in list.iter() {
            assert!(
                !name.is_empty() && !name.contains(','),
                "name {name:?} in {list:?}"
            );
        }
    }
    let Ok(ours) = KexInit::parse(our_kexinit()) else {
        panic!("our own KEXINIT does not parse");
    };
    for (client, server) in [(&theirs, &ours), (&ours, &theirs)] {
        let result = negotiate(client, server);
        assert_eq!(
            result,
            negotiate(client, server),
            "negotiation is not deterministic"
        );
        if let Ok(n) = result {
            check(&n, client, server);
        }
    }
}

fn check(n: &Negotiated, client: &KexInit<'_>, server: &KexInit<'_>) {
    let both = |name: &str, c: NameList<'_>, s: NameList<'_>| {
        assert!(
            c.contains(name) && s.contains(name),
            "{name} chosen, not offered by both"
        );
    };
    both(n.kex.name(), client.kex, server.kex);
    assert!(!n.kex.name().starts_with("kex-strict-") && !n.kex.name().starts_with("ext-info-"));
    both(n.host_key.name(), client.host_key, server.host_key);
    let directions = [
        (
            n.c2s,
            client.enc_c2s,
            server.enc_c2s,
            client.mac_c2s,
            server.mac_c2s,
        ),
        (
            n.s2c,
            client.enc_s2c,
            server.enc_s2c,
            client.mac_s2c,
            server.mac_s2c,
        ),
    ];
    for ((cipher, mac), c_enc, s_enc, c_mac, s_mac) in directions {
        both(cipher.name(), c_enc, s_enc);
        assert_eq!(
            mac.is_none(),
            cipher.is_aead(),
            "MAC {mac:?} with {cipher:?}"
        );
        if let Some(mac) = mac {
            both(mac.name(), c_mac, s_mac);
        }
    }
    both("none", client.comp_c2s, server.comp_c2s);
    both("none", client.comp_s2c, server.comp_s2c);
    if n.ignore_guess {
        assert!(client.first_kex_packet_follows || server.first_kex_packet_follows);
    }
}
