//! Token verification: the full strict check against the verified-token cache.
//!
//! `cargo bench --bench tokens`
// Test code may panic on what it set up, and its helpers are `pub` for the test files.
#![allow(clippy::unwrap_used, clippy::expect_used, unreachable_pub)]

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use jsonwebtoken::Algorithm;
use wxgate::tokens::{self, Claims, Key, KeySet, Material, Policy};
use wxgate::Secret;
use wxgate::{ConnMemo, VerifiedTokens};

const SECRET: &str = "bench-secret-0123456789abcdef-0123456789";

fn claims() -> Claims {
    let now = tokens::now_unix();
    Claims {
        iss: "wxgate".into(),
        aud: "bench".into(),
        sub: "oBench0123456789abcdefghijkl".into(),
        iat: now,
        nbf: Some(now),
        exp: now + 3600,
        jti: Some(tokens::random_id(12)),
        sid: Some(tokens::random_id(16)),
        appid: Some("wx0123456789abcdef".into()),
        unionid: None,
        ext: None,
        phone: None,
    }
}

fn key_sets() -> Vec<(&'static str, KeySet)> {
    let hmac = |alg| {
        KeySet::new(vec![Key::new(
            "k1".into(),
            alg,
            Material::Hmac(Secret::new(SECRET)),
        )
        .expect("key")])
    };
    let asymmetric = |alg| {
        let generated = tokens::keygen::generate(alg).expect("keygen");
        let material = Material::PrivatePem(generated.private);
        KeySet::new(vec![Key::new("k1".into(), alg, material).expect("key")])
    };
    vec![
        ("HS256", hmac(Algorithm::HS256)),
        ("RS256", asymmetric(Algorithm::RS256)),
        ("ES256", asymmetric(Algorithm::ES256)),
        ("EdDSA", asymmetric(Algorithm::EdDSA)),
    ]
}

fn verification(c: &mut Criterion) {
    let policy = Policy {
        issuer: "wxgate",
        audience: "bench",
        leeway_secs: 60,
    };
    let mut group = c.benchmark_group("verify");
    for (name, keys) in key_sets() {
        let token = tokens::mint(&keys, &claims()).expect("mint");
        let now = tokens::now_unix();
        group.bench_with_input(BenchmarkId::new("uncached", name), &token, |b, t| {
            b.iter(|| tokens::verify(&keys, &policy, t, now).expect("valid"))
        });
        let cache = VerifiedTokens::new();
        group.bench_with_input(BenchmarkId::new("cached", name), &token, |b, t| {
            b.iter(|| cache.verify(&keys, &policy, t, None).expect("valid"))
        });
        // The same token again on one client connection: the connection's memo answers.
        let memo = ConnMemo::default();
        group.bench_with_input(BenchmarkId::new("same_connection", name), &token, |b, t| {
            b.iter(|| cache.verify(&keys, &policy, t, Some(&memo)).expect("valid"))
        });
    }
    group.finish();
}

criterion_group!(benches, verification);
criterion_main!(benches);
