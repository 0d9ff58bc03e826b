//! Authentication and authorization through the runner, with real signed
//! tokens: the key pairs in `keys/` (test-only), a JWKS served on loopback by
//! the test, and the runner configured by `SALESTRACK_AUTH_*` settings alone.

use crate::common;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use common::{spawn_with, TestApp};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::StatusCode;
use salestrack_core::ids::{CartId, OrderId};
use salestrack_core::testing::order_body_for;
use salestrack_platform::{Backends, Settings};
use serde_json::{json, Value};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;

const ISSUER: &str = "https://idp.salestrack.test/";
const AUDIENCE: &str = "salestrack-api";

fn key_file(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/keys")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The committed JWKS with only the keys named.
fn key_set(kids: &[&str]) -> Value {
    let all: Value = serde_json::from_slice(&key_file("jwks.json")).expect("jwks");
    let keys: Vec<Value> = all["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .filter(|k| kids.contains(&k["kid"].as_str().unwrap_or("")))
        .cloned()
        .collect();
    json!({ "keys": keys })
}

/// A JWKS endpoint on loopback whose key set the test swaps (rotation),
/// counting the fetches.
struct Jwks {
    url: String,
    keys: Arc<Mutex<Value>>,
    fetches: Arc<AtomicUsize>,
    /// While set, a fetch hangs until the test lets it go (`release`).
    stalled: Arc<std::sync::atomic::AtomicBool>,
    release: Arc<tokio::sync::Notify>,
}

impl Jwks {
    async fn serve(kids: &[&str]) -> Jwks {
        let keys = Arc::new(Mutex::new(key_set(kids)));
        let fetches = Arc::new(AtomicUsize::new(0));
        let stalled = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let release = Arc::new(tokio::sync::Notify::new());
        let app = {
            let (keys, fetches) = (Arc::clone(&keys), Arc::clone(&fetches));
            let (stalled, release) = (Arc::clone(&stalled), Arc::clone(&release));
            axum::Router::new().route(
                "/.well-known/jwks.json",
                axum::routing::get(move || {
                    let body = keys.lock().expect("keys").clone();
                    let stall = stalled.load(Ordering::SeqCst).then(|| Arc::clone(&release));
                    fetches.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if let Some(release) = stall {
                            release.notified().await;
                        }
                        axum::Json(body)
                    }
                }),
            )
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let url = format!(
            "http://{}/.well-known/jwks.json",
            listener.local_addr().expect("addr")
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Jwks {
            url,
            keys,
            fetches,
            stalled,
            release,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

async fn runner(jwks: &Jwks, dir: &Path, min_refresh_s: u64) -> TestApp {
    runner_with(jwks, dir, min_refresh_s, |_| {}).await
}

/// [`runner`], its settings changed by `change` first.
async fn runner_with(
    jwks: &Jwks,
    dir: &Path,
    min_refresh_s: u64,
    change: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = Settings {
        data_dir: dir.into(),
        poll_wait_ms: 20,
        consistency: salestrack_platform::ConsistencySettings {
            wait_ms: 10_000,
            ..Default::default()
        },
        auth: salestrack_platform::AuthSettings {
            jwks_url: Some(jwks.url.clone()),
            issuer: Some(ISSUER.into()),
            audience: Some(AUDIENCE.into()),
            jwks_min_refresh_s: min_refresh_s,
            ..Default::default()
        },
        ..Settings::default()
    };
    change(&mut settings);
    let backends = Backends::connect(&settings).await.expect("backends");
    let app = spawn_with(settings, backends).await;
    // Serving means the keys were loaded: the runner loads them first.
    let deadline = Instant::now() + Duration::from_secs(30);
    while app
        .client
        .get(app.url("/health/live"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "the runner never served");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    app
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims of a valid token for `sub`.
fn claims(sub: &str, roles: &[&str]) -> Value {
    json!({
        "sub": sub, "iss": ISSUER, "aud": AUDIENCE,
        "iat": now(), "nbf": now() - 5, "exp": now() + 300,
        "roles": roles,
    })
}

/// A token signed with the committed key `kid` (RS256 for `rsa-*`, ES256
/// for `ec-*`).
fn signed(kid: &str, claims: &Value) -> String {
    let pem = key_file(&format!("{kid}.pem"));
    let (alg, key) = if kid.starts_with("ec") {
        (Algorithm::ES256, EncodingKey::from_ec_pem(&pem))
    } else {
        (Algorithm::RS256, EncodingKey::from_rsa_pem(&pem))
    };
    token(alg, kid, &key.expect("key"), claims)
}

/// A token whose header says `alg` and `kid`, signed with `key` whatever
/// they say: the forgeries below.
fn token(alg: Algorithm, kid: &str, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = Some(kid.into());
    jsonwebtoken::encode(&header, claims, key).expect("sign")
}

fn segment(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// `POST /orders` of a new line of `cart` for `user`, with `token` (if any).
async fn post_order(
    app: &TestApp,
    token: Option<&str>,
    cart: CartId,
    user: &str,
) -> (StatusCode, Value, reqwest::header::HeaderMap) {
    let mut body = order_body_for(cart, OrderId(Uuid::new_v4()), "Teapot");
    body["user_id"] = json!(user);
    let mut request = app.client.post(app.url("/orders")).json(&body);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let response = request.send().await.expect("post");
    let (status, headers) = (response.status(), response.headers().clone());
    (
        status,
        response.json().await.unwrap_or(Value::Null),
        headers,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bad_token_is_refused_before_any_route_runs() {
    let jwks = Jwks::serve(&["rsa-1", "ec-1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = runner(&jwks, dir.path(), 30).await;
    let cart = CartId(Uuid::new_v4());
    let valid = claims("alice", &[]);

    let (status, body, headers) = post_order(&app, None, cart, "alice").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert_eq!(body["error"], "unauthorized");
    assert_eq!(
        headers.get("www-authenticate").map(|v| v.as_bytes()),
        Some(&b"Bearer"[..])
    );

    for (what, token) in [
        ("RS256", signed("rsa-1", &valid)),
        ("ES256", signed("ec-1", &valid)),
    ] {
        let (status, body, _) = post_order(&app, Some(&token), cart, "alice").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{what}: {body}");
    }

    let with = |patch: Value| {
        let mut c = valid.clone();
        for (k, v) in patch.as_object().expect("object") {
            c[k] = v.clone();
        }
        c
    };
    let good = signed("rsa-1", &valid);
    let mut parts: Vec<&str> = good.split('.').collect();
    let forged_payload = segment(&with(json!({ "sub": "mallory" })));
    parts[1] = &forged_payload;
    let tampered = parts.join(".");
    let none = format!(
        "{}.{}.",
        segment(&json!({ "alg": "none", "typ": "JWT", "kid": "rsa-1" })),
        segment(&valid)
    );
    // HS256 "signed" with the RSA public key as the secret: the classic
    // algorithm confusion.
    let rsa = EncodingKey::from_rsa_pem(&key_file("rsa-1.pem")).expect("key");
    let confused = token(
        Algorithm::HS256,
        "rsa-1",
        &EncodingKey::from_secret(&key_file("rsa-1.pub.pem")),
        &valid,
    );
    let unknown = token(Algorithm::RS256, "rsa-9", &rsa, &valid);
    // ES256 header on the RSA key's kid: the key's type decides.
    let ec = EncodingKey::from_ec_pem(&key_file("ec-1.pem")).expect("key");
    let mismatched = token(Algorithm::ES256, "rsa-1", &ec, &valid);
    // PS256 is a sound algorithm, just not one salestrack accepts.
    let other_algorithm = token(Algorithm::PS256, "rsa-1", &rsa, &valid);
    let refused = [
        ("PS256", other_algorithm),
        (
            "expired",
            signed("rsa-1", &with(json!({ "exp": now() - 120 }))),
        ),
        (
            "not yet valid",
            signed("rsa-1", &with(json!({ "nbf": now() + 120 }))),
        ),
        (
            "wrong issuer",
            signed("rsa-1", &with(json!({ "iss": "https://evil.test/" }))),
        ),
        (
            "wrong audience",
            signed("rsa-1", &with(json!({ "aud": "someone-else" }))),
        ),
        ("no expiry", {
            let mut c = valid.clone();
            c.as_object_mut().expect("object").remove("exp");
            signed("rsa-1", &c)
        }),
        ("tampered payload", tampered),
        ("alg none", none),
        ("HS256 with the public key as secret", confused),
        ("unknown kid", unknown),
        ("algorithm not the key's", mismatched),
        ("not a JWT", "garbage".into()),
    ];
    for (what, token) in refused {
        let (status, body, headers) = post_order(&app, Some(&token), cart, "alice").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: {body}");
        let challenge = headers
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        assert!(
            challenge.starts_with("Bearer error=\"invalid_token\""),
            "{what}: {challenge}"
        );
        let (status, _) = app.get_as(&token, &format!("/carts/{cart}")).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}: reads too");
    }

    // The runner's own routes stay open: probes and scrapers have no token.
    // And the sales page's static files: they hold no data, and the page
    // sends its user's token with every API request it makes.
    for path in [
        "/health/live",
        "/health/ready",
        "/metrics",
        "/openapi.json",
        "/",
        "/app.js",
        "/app.css",
    ] {
        let status = app
            .client
            .get(app.url(path))
            .send()
            .await
            .expect("get")
            .status();
        assert_eq!(status, StatusCode::OK, "{path}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_key_is_fetched_when_a_token_names_it_at_a_bounded_rate() {
    let jwks = Jwks::serve(&["rsa-1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = runner(&jwks, dir.path(), 3).await;
    let started = Instant::now();
    let cart = CartId(Uuid::new_v4());
    let new_key = signed("rsa-2", &claims("alice", &[]));
    assert_eq!(jwks.fetches(), 1, "fetched once at start");

    // Unknown kid, many times within the refresh interval: at most one
    // more fetch (none if the interval has not passed yet), all refused.
    for _ in 0..20 {
        let (status, _, _) = post_order(&app, Some(&new_key), cart, "alice").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let burst = jwks.fetches();
    assert!(burst <= 2, "a burst of unknown kids fetched {burst} times");

    // The provider rotates; past the interval the next token with the new
    // kid fetches the set again and is accepted.
    *jwks.keys.lock().expect("keys") = key_set(&["rsa-1", "rsa-2"]);
    tokio::time::sleep(
        Duration::from_secs(3).saturating_sub(started.elapsed()) + Duration::from_millis(200),
    )
    .await;
    let (status, body, _) = post_order(&app, Some(&new_key), cart, "alice").await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let after = jwks.fetches();
    let (status, _, _) = post_order(&app, Some(&new_key), cart, "alice").await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert_eq!(jwks.fetches(), after, "a known kid fetches nothing");
    let old = signed("rsa-1", &claims("alice", &[]));
    let (status, _, _) = post_order(&app, Some(&old), cart, "alice").await;
    assert_eq!(status, StatusCode::ACCEPTED, "the old key still in the set");
    app.stop().await;
}

/// A token with a `kid` nobody knows (anyone can forge one) makes the
/// runner fetch the JWKS, and the JWKS server hangs: the fetch waits for
/// its timeout, but requests whose key is known are served meanwhile, all
/// of them before the forged one is even answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stalled_jwks_fetch_does_not_stall_requests_with_a_known_key() {
    let jwks = Jwks::serve(&["rsa-1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = runner(&jwks, dir.path(), 1).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    jwks.stalled.store(true, Ordering::SeqCst);
    let fetched = jwks.fetches();
    let forged = signed("rsa-1", &claims("mallory", &[]));
    // The same signature under a kid the set does not hold.
    let forged = {
        let mut parts: Vec<String> = forged.split('.').map(str::to_owned).collect();
        parts[0] = segment(&json!({"alg": "RS256", "typ": "JWT", "kid": "no-such-key"}));
        parts.join(".")
    };
    let waiting = {
        let (client, url) = (app.client.clone(), app.url("/carts"));
        tokio::spawn(async move {
            client
                .get(url)
                .bearer_auth(forged)
                .send()
                .await
                .map(|r| r.status())
        })
    };
    while jwks.fetches() == fetched {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // The fetch hangs now. Five requests with a known key, one by one.
    let alice = signed("rsa-1", &claims("alice", &[]));
    for _ in 0..5 {
        let (status, body) = app.get_as(&alice, "/carts").await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert!(
        !waiting.is_finished(),
        "the forged token was answered before the requests with a known key"
    );
    let answered = waiting.await.expect("task").expect("an answer");
    assert_eq!(answered, StatusCode::UNAUTHORIZED);
    jwks.release.notify_waiters();
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_never_sees_nor_changes_another_users_cart() {
    let jwks = Jwks::serve(&["rsa-1", "ec-1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = runner(&jwks, dir.path(), 30).await;
    let alice = signed("rsa-1", &claims("alice", &[]));
    let bob = signed("ec-1", &claims("bob", &[]));
    let admin = signed("rsa-1", &claims("carol", &["admin"]));

    // Alice's cart, visible to her.
    let cart = CartId(Uuid::new_v4());
    let order = OrderId(Uuid::new_v4());
    let mut body = order_body_for(cart, order, "Alice's teapot");
    body["user_id"] = json!("alice");
    let placed: Value = app
        .client
        .post(app.url("/orders"))
        .bearer_auth(&alice)
        .json(&body)
        .send()
        .await
        .expect("post")
        .json()
        .await
        .expect("json");
    let token = placed["consistency_token"].as_str().expect("token");
    let (status, detail) = app
        .get_as(&alice, &format!("/carts/{cart}?consistency_token={token}"))
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    assert_eq!(detail["items"].as_array().map(Vec::len), Some(1));
    let alice_command = placed["command_id"].as_str().expect("command id");
    let (status, _) = app
        .get_as(&alice, &format!("/commands/{alice_command}"))
        .await;
    assert_eq!(status, StatusCode::OK, "her own command");

    // Bob, route by route.
    let (status, body, _) = post_order(&app, Some(&bob), cart, "alice").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "placing as Alice: {body}");
    let (status, body, _) = post_order(&app, Some(&bob), cart, "bob").await;
    assert_eq!(
        status,
        StatusCode::ACCEPTED,
        "his own user id, her cart id: {body}"
    );
    let bobs_line = body["command_id"].as_str().expect("command id").to_owned();
    let cancel: Value = app
        .client
        .post(app.url(&format!("/orders/{order}/cancel")))
        .bearer_auth(&bob)
        .json(&json!({ "cart_id": cart, "reason": "mischief" }))
        .send()
        .await
        .expect("cancel")
        .json()
        .await
        .expect("json");
    let cancel_token = cancel["consistency_token"].as_str().expect("token");
    let cancel_id = cancel["command_id"].as_str().expect("id");
    let (status, outcome) = app
        .get_as(
            &bob,
            &format!("/commands/{cancel_id}?consistency_token={cancel_token}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{outcome}");
    assert_eq!(outcome["status"], "rejected", "{outcome}");
    assert_eq!(outcome["reason"]["code"], "order_not_found", "{outcome}");
    let (status, outcome) = app.get_as(&bob, &format!("/commands/{bobs_line}")).await;
    assert_eq!(
        (status, &outcome["reason"]["code"]),
        (StatusCode::OK, &json!("user_mismatch")),
        "his line in her cart: {outcome}"
    );

    for path in [
        format!("/carts/{cart}"),
        format!("/carts/{cart}/summary"),
        format!("/carts/{cart}?as_of_version=1"),
        format!("/carts/{cart}?as_of=2099-01-01T00:00:00Z"),
        format!("/carts/{cart}/history"),
        format!("/commands/{alice_command}"),
    ] {
        let (status, mine) = app.get_as(&alice, &path).await;
        assert_eq!(status, StatusCode::OK, "Alice, {path}: {mine}");
        let (status, body) = app.get_as(&bob, &path).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
        assert!(
            !body.to_string().contains("Alice's teapot"),
            "{path}: {body}"
        );
    }
    // The live stream: Alice's to her, nobody else's, never without a token.
    let live = format!("/carts/{cart}/live");
    let (status, body) = app.get_as(&bob, &live).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{live}: {body}");
    let anonymous = app.client.get(app.url(&live)).send().await.expect("get");
    assert_eq!(anonymous.status(), StatusCode::UNAUTHORIZED);
    let mut hers = app
        .client
        .get(app.url(&live))
        .bearer_auth(&alice)
        .send()
        .await
        .expect("get");
    assert_eq!(hers.status(), StatusCode::OK);
    let first = tokio::time::timeout(std::time::Duration::from_secs(10), hers.chunk())
        .await
        .expect("an event within 10 s")
        .expect("read")
        .expect("bytes");
    assert!(
        String::from_utf8_lossy(&first).contains("Alice's teapot"),
        "{first:?}"
    );
    drop(hers);
    for path in ["/carts?user_id=alice", "/carts", "/carts?q=teapot"] {
        let (status, body) = app.get_as(&bob, path).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        assert_eq!(body["carts"], json!([]), "{path}: {body}");
    }
    let (status, body) = app.get_as(&bob, "/reports/sales").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // Nor the dead-letter topic, which holds every user's records: not
    // listed, not redriven, without the admin role; nothing without a token.
    let (status, body) = app.get_as(&bob, "/admin/dead-letters").await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let redrive = |token: Option<String>| {
        let mut request = app
            .client
            .post(app.url("/admin/dead-letters/redrive"))
            .json(&json!({"all": true}));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        request.send()
    };
    let status = redrive(Some(bob.clone())).await.expect("redrive").status();
    assert_eq!(status, StatusCode::FORBIDDEN);
    let status = redrive(None).await.expect("redrive").status();
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, letters) = app.get_as(&admin, "/admin/dead-letters").await;
    assert_eq!(status, StatusCode::OK, "{letters}");

    // Nothing Bob did changed Alice's cart; an admin reads the report.
    let (_, after) = app.get_as(&alice, &format!("/carts/{cart}")).await;
    assert_eq!(after["items"], detail["items"], "{after}");
    let (status, mine) = app.get_as(&alice, "/carts").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(mine["carts"].as_array().map(Vec::len), Some(1), "{mine}");
    let (status, report) = app.get_as(&admin, "/reports/sales").await;
    assert_eq!(status, StatusCode::OK, "{report}");
    app.stop().await;
}

/// The status of the command a `202` named, once the read models hold it.
async fn decided(app: &TestApp, token: &str, accepted: &Value) -> Value {
    let id = accepted["command_id"].as_str().expect("command id");
    let consistency = accepted["consistency_token"].as_str().expect("token");
    let (status, outcome) = app
        .get_as(
            token,
            &format!("/commands/{id}?consistency_token={consistency}"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{accepted}: {outcome}");
    outcome
}

/// Issue 29: Bob, knowing Alice's cart and order ids, sent her checkout and
/// her line under his own user id. Their command ids were derived from the
/// cart and order alone, so his rejections were written over her statuses:
/// afterwards she got 404 for both of her commands, and he got them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alices_command_statuses_survive_bobs_requests_for_her_cart() {
    let jwks = Jwks::serve(&["rsa-1", "ec-1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = runner(&jwks, dir.path(), 30).await;
    let alice = signed("rsa-1", &claims("alice", &[]));
    let bob = signed("ec-1", &claims("bob", &[]));

    let cart = CartId(Uuid::new_v4());
    let order = OrderId(Uuid::new_v4());
    let mut line = order_body_for(cart, order, "Alice's teapot");
    line["user_id"] = json!("alice");
    let (status, placed) = app.post_as(&alice, "/orders", &line).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{placed}");
    let checkout_path = format!("/carts/{cart}/checkout");
    let (status, checkout) = app.post_as(&alice, &checkout_path, &json!({})).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{checkout}");
    let hers = [
        decided(&app, &alice, &placed).await,
        decided(&app, &alice, &checkout).await,
    ];
    for outcome in &hers {
        assert_eq!(outcome["status"], "applied", "{outcome}");
    }

    // Bob: her checkout, her line under his user id, and a cancel of it,
    // each decided (rejected) before Alice looks again.
    let mut his_line = line.clone();
    his_line["user_id"] = json!("bob");
    let mut his = Vec::new();
    for (path, body) in [
        (checkout_path.clone(), json!({})),
        ("/orders".to_owned(), his_line),
        (
            format!("/orders/{order}/cancel"),
            json!({"cart_id": cart, "reason": "mischief"}),
        ),
    ] {
        let (status, accepted) = app.post_as(&bob, &path, &body).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}: {accepted}");
        let outcome = decided(&app, &bob, &accepted).await;
        assert_eq!(outcome["status"], "rejected", "{path}: {outcome}");
        for mine in [&placed, &checkout] {
            assert_ne!(
                accepted["command_id"], mine["command_id"],
                "{path}: Bob's request took Alice's command id"
            );
        }
        his.push(accepted);
    }

    for (accepted, before) in [&placed, &checkout].into_iter().zip(&hers) {
        let id = accepted["command_id"].as_str().expect("id");
        let (status, now) = app.get_as(&alice, &format!("/commands/{id}")).await;
        assert_eq!(status, StatusCode::OK, "Alice's {id} after Bob: {now}");
        // The decision, not the cart's status it shows (the payment moves on).
        let decision = |o: &Value| {
            let mut o = o.clone();
            o.as_object_mut().expect("object").remove("cart_status");
            o
        };
        assert_eq!(decision(&now), decision(before), "Alice's {id} changed");
        let (status, body) = app.get_as(&bob, &format!("/commands/{id}")).await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "Bob reads Alice's {id}: {body}"
        );
    }
    let (_, detail) = app.get_as(&alice, &format!("/carts/{cart}")).await;
    assert_eq!(
        detail["items"].as_array().map(Vec::len),
        Some(1),
        "{detail}"
    );
    assert_eq!(detail["items"][0]["status"], "active", "{detail}");
    app.stop().await;
}

/// Issue 29: with authentication on over Elasticsearch, the consistency
/// wait checked the token with a realtime `_get` while the owner's read was
/// a search filtered by owner, which sees a write only once the index
/// refreshes: a read answered `Consistency: fresh` could miss the write.
/// Here the indices never refresh on their own (`refresh_interval: -1`) and
/// writes do not wait for a refresh, so only a realtime read sees them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owners_fresh_read_on_opensearch_holds_the_write() {
    use salestrack_elasticsearch::test_server::{unique_prefix, SearchTarget};
    use salestrack_platform::config::EsRefresh;
    use salestrack_test_engines::{Engine, EngineServer};
    let Some(server) = EngineServer::shared(Engine::OpenSearch) else {
        return;
    };
    let jwks = Jwks::serve(&["rsa-1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = runner_with(&jwks, dir.path(), 30, |s| {
        s.elasticsearch.url = SearchTarget::at("OpenSearch 2.19", &server.address()).url;
        s.elasticsearch.index_prefix = unique_prefix();
        s.elasticsearch.refresh = EsRefresh::False;
        s.elasticsearch.refresh_interval = Some("-1".into());
        s.elasticsearch.shards = Some(1);
        s.elasticsearch.replicas = Some(0);
    })
    .await;
    let alice = signed("rsa-1", &claims("alice", &[]));
    for i in 0..3 {
        let cart = CartId(Uuid::new_v4());
        let mut line = order_body_for(cart, OrderId(Uuid::new_v4()), "Alice's teapot");
        line["user_id"] = json!("alice");
        let (status, placed) = app.post_as(&alice, "/orders", &line).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{placed}");
        let token = placed["consistency_token"].as_str().expect("token");
        for path in [
            format!("/carts/{cart}?consistency_token={token}"),
            format!("/carts/{cart}/summary?consistency_token={token}"),
        ] {
            let (status, consistency, body) = app.read_as(&alice, &path).await;
            assert_eq!(
                (status, consistency.as_deref()),
                (StatusCode::OK, Some("fresh")),
                "line {i}, {path}: {body}"
            );
            assert_eq!(body["version"], 1, "line {i}, {path}: {body}");
        }
        let outcome = decided(&app, &alice, &placed).await;
        assert_eq!(outcome["status"], "applied", "line {i}: {outcome}");
    }
    app.stop().await;
}

/// Issue 29: a consistency token pairs a command with a cart id, and the
/// wait read that cart's version, whoever's it was: Bob, pairing his own
/// command with Alice's cart id, learned from `fresh` or `stale` whether
/// her cart exists and how far it got. The wait now reads the command's own
/// cart as the caller may see it: any cart id answers alike.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_paired_with_another_users_cart_tells_nothing_about_it() {
    use salestrack_core::token::ConsistencyToken;
    let jwks = Jwks::serve(&["rsa-1", "ec-1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = runner_with(&jwks, dir.path(), 30, |s| s.consistency.wait_ms = 1_000).await;
    let alice = signed("rsa-1", &claims("alice", &[]));
    let bob = signed("ec-1", &claims("bob", &[]));

    // Alice's cart, two lines long.
    let hers = CartId(Uuid::new_v4());
    let mut last = Value::Null;
    for _ in 0..2 {
        let mut line = order_body_for(hers, OrderId(Uuid::new_v4()), "Alice's teapot");
        line["user_id"] = json!("alice");
        let (status, placed) = app.post_as(&alice, "/orders", &line).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{placed}");
        last = placed;
    }
    decided(&app, &alice, &last).await;
    // Bob's own line, version 1 of a cart of his. Before, paired with her
    // cart his token was `fresh` (her cart is past version 1), with a cart
    // that does not exist `stale`.
    let his = CartId(Uuid::new_v4());
    let mut line = order_body_for(his, OrderId(Uuid::new_v4()), "Bob's kettle");
    line["user_id"] = json!("bob");
    let (status, placed) = app.post_as(&bob, "/orders", &line).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{placed}");
    decided(&app, &bob, &placed).await;
    let token = ConsistencyToken::decode(placed["consistency_token"].as_str().expect("token"))
        .expect("a token");

    let mut answers = Vec::new();
    for cart in [hers, CartId(Uuid::new_v4()), his] {
        let paired = ConsistencyToken {
            command_id: token.command_id,
            cart_id: cart,
        }
        .encode();
        let (status, consistency, _) = app
            .read_as(&bob, &format!("/carts/{his}?consistency_token={paired}"))
            .await;
        answers.push((status, consistency));
    }
    assert_eq!(
        answers,
        vec![(StatusCode::OK, Some("fresh".to_owned())); 3],
        "her cart, no cart, his cart"
    );
    app.stop().await;
}

/// Issue 29: the JWKS was fetched again only for an unknown `kid`, so a key
/// the provider withdrew stayed trusted for as long as the process ran.
/// Keys older than `SALESTRACK_AUTH_JWKS_MAX_AGE_S` are now fetched again
/// in the background when next used: a withdrawn key stops working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_withdrawn_key_stops_being_trusted_after_the_max_age() {
    let jwks = Jwks::serve(&["rsa-1", "ec-1"]).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let app = runner_with(&jwks, dir.path(), 30, |s| s.auth.jwks_max_age_s = 1).await;
    let bob = signed("ec-1", &claims("bob", &[]));
    let alice = signed("rsa-1", &claims("alice", &[]));
    let (status, body) = app.get_as(&bob, "/carts").await;
    assert_eq!(status, StatusCode::OK, "{body}");

    *jwks.keys.lock().expect("keys") = key_set(&["rsa-1"]);
    tokio::time::sleep(Duration::from_millis(1_200)).await;
    let deadline = Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let (status, body) = app.get_as(&bob, "/carts").await;
        if status == StatusCode::UNAUTHORIZED {
            break body;
        }
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(
            Instant::now() < deadline,
            "the withdrawn key is still trusted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(refused.to_string().contains("ec-1"), "{refused}");
    let (status, body) = app.get_as(&alice, "/carts").await;
    assert_eq!(status, StatusCode::OK, "a key still listed: {body}");
    app.stop().await;
}

/// Issue 29: a JWK's `use` and `alg` were ignored: a key published for
/// encryption, or for another algorithm, verified signatures. Such keys
/// are skipped now; a token signed with one names a key that is not there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_for_encryption_or_another_algorithm_verifies_nothing() {
    let jwks = Jwks::serve(&["rsa-1", "rsa-2", "ec-1"]).await;
    {
        let mut keys = jwks.keys.lock().expect("keys");
        for key in keys["keys"].as_array_mut().expect("keys") {
            match key["kid"].as_str() {
                Some("ec-1") => key["use"] = json!("enc"),
                Some("rsa-2") => key["alg"] = json!("RS512"),
                _ => {}
            }
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let app = runner(&jwks, dir.path(), 3_600).await;
    let (status, body) = app
        .get_as(&signed("rsa-1", &claims("alice", &[])), "/carts")
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    for kid in ["ec-1", "rsa-2"] {
        let (status, body) = app
            .get_as(&signed(kid, &claims("mallory", &[])), "/carts")
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{kid}: {body}");
    }
    app.stop().await;
}
