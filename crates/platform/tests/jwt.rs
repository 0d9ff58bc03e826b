//! Bearer tokens from outside, fuzzed on stable (proptest): random headers,
//! and valid tokens mutated byte by byte, cut, spliced with another token's
//! segments or re-headed with another algorithm. The oracle
//! (`support/jwt_oracle.rs`) is the cargo-fuzz target's too.

#[path = "support/jwt_oracle.rs"]
mod oracle;

// The decoders' byte mutations (crates/core/tests/support/mutate.rs).
#[path = "../../core/tests/support/mutate.rs"]
mod mutate_bytes;
use mutate_bytes::{byte_mutation, ByteMutation};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use proptest::prelude::*;
use salestrack_platform::auth::{Authenticator, Principal};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    auth: Authenticator,
    /// Valid tokens and whom they name.
    tokens: Vec<(String, Principal)>,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let keys: PathBuf = oracle::keys_dir(Path::new(env!("CARGO_MANIFEST_DIR")));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let auth = runtime.block_on(oracle::authenticator(&keys));
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let tokens = [("rsa-1", "alice", &["admin"][..]), ("ec-1", "bob", &[][..])]
            .into_iter()
            .map(|(kid, sub, roles)| {
                let token = oracle::signed(&keys, kid, sub, roles, now);
                let principal = Principal {
                    sub: sub.into(),
                    roles: roles.iter().map(|r| r.to_string()).collect(),
                };
                (token, principal)
            })
            .collect();
        Fixture {
            runtime,
            auth,
            tokens,
        }
    })
}

fn check(header: &[u8], from: &[&Principal]) {
    let f = fixture();
    f.runtime.block_on(oracle::check(&f.auth, header, from));
}

#[test]
fn the_valid_tokens_authenticate() {
    let f = fixture();
    for (token, principal) in &f.tokens {
        let header = format!("Bearer {token}");
        let got = f.runtime.block_on(f.auth.authenticate(Some(&header)));
        assert_eq!(got.as_ref(), Ok(principal), "{token}");
    }
}

/// The cargo-fuzz seeds are real tokens, signed by the committed keys, and
/// expired: the fuzzer starts from the signature checks, and no mutation
/// of a seed may authenticate.
#[test]
fn the_fuzz_seeds_are_signed_and_expired() {
    let f = fixture();
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus/jwt");
    let mut seen = 0;
    for entry in std::fs::read_dir(&seeds).expect("fuzz/corpus/jwt") {
        let path = entry.expect("a seed").path();
        let header = std::fs::read_to_string(&path).expect("text");
        let got = f.runtime.block_on(f.auth.authenticate(Some(&header)));
        assert_eq!(
            got,
            Err(salestrack_platform::auth::AuthError::Invalid(
                "ExpiredSignature".into()
            )),
            "{}",
            path.display()
        );
        seen += 1;
    }
    assert!(seen >= 3, "only {seen} seeds");
}

#[derive(Debug, Clone)]
enum Mutation {
    Bytes(ByteMutation),
    /// Segment `n` (header, claims, signature) from the other token.
    Splice(usize),
    /// A new header with this algorithm and the same `kid`.
    Rehead(&'static str),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        byte_mutation(vec![
            &b"."[..],
            b"=",
            b" ",
            b"\x00",
            b"eyJ",
            b"..",
            b"\xff\xfe"
        ])
        .prop_map(Mutation::Bytes),
        (0usize..3).prop_map(Mutation::Splice),
        prop::sample::select(vec!["none", "HS256", "RS512", "ES384", "PS256", "EdDSA"])
            .prop_map(Mutation::Rehead),
    ]
}

fn mutate(token: &str, other: &str, mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = token.as_bytes().to_vec();
    for m in mutations {
        match m {
            Mutation::Bytes(m) => m.apply(&mut bytes),
            Mutation::Splice(n) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let mut mine: Vec<&str> = text.split('.').collect();
                let theirs: Vec<&str> = other.split('.').collect();
                if let (Some(slot), Some(segment)) = (mine.get_mut(*n), theirs.get(*n)) {
                    *slot = segment;
                }
                bytes = mine.join(".").into_bytes();
            }
            Mutation::Rehead(alg) => {
                let text = String::from_utf8_lossy(&bytes).into_owned();
                let rest = text.split_once('.').map_or("", |(_, rest)| rest);
                let header = URL_SAFE_NO_PAD
                    .encode(format!(r#"{{"alg":"{alg}","typ":"JWT","kid":"rsa-1"}}"#));
                bytes = format!("{header}.{rest}").into_bytes();
            }
        }
    }
    bytes
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]

    #[test]
    fn any_header_is_missing_or_invalid(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        check(&bytes, &[]);
        let mut bearer = b"Bearer ".to_vec();
        bearer.extend_from_slice(&bytes);
        check(&bearer, &[]);
    }

    #[test]
    fn a_mutated_token_is_invalid_or_still_its_signers(
        which in 0usize..2,
        mutations in prop::collection::vec(mutation(), 1..4),
    ) {
        let f = fixture();
        let (token, principal) = &f.tokens[which];
        let (other, theirs) = &f.tokens[1 - which];
        let mut header = b"Bearer ".to_vec();
        header.extend(mutate(token, other, &mutations));
        check(&header, &[principal, theirs]);
    }
}
