//! The `Authorization` header of a request, as bytes from outside, through
//! the bearer-token authenticator over the committed test JWKS. A panic, or
//! a header that authenticates although it was not signed by a committed
//! key, is a finding. Seeds: `fuzz/corpus/jwt/` (valid RS256 and ES256
//! tokens: libFuzzer's mutations start from real ones).
#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;
use std::sync::OnceLock;

// The same oracle the stable proptest run uses (which also signs tokens).
#[allow(dead_code)]
#[path = "../../crates/platform/tests/support/jwt_oracle.rs"]
mod jwt_oracle;

struct Fixture {
    runtime: tokio::runtime::Runtime,
    auth: salestrack_platform::auth::Authenticator,
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let keys = jwt_oracle::keys_dir(Path::new(env!("CARGO_MANIFEST_DIR")));
        let auth = runtime.block_on(jwt_oracle::authenticator(&keys));
        Fixture { runtime, auth }
    })
}

fuzz_target!(|bytes: &[u8]| {
    let f = fixture();
    // The seeds expired long ago: no input authenticates as anyone.
    f.runtime.block_on(jwt_oracle::check(&f.auth, bytes, &[]));
});
