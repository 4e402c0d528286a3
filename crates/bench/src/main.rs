//! `opentrusty-bench`: what `bench/run.sh` needs besides the server and the load generator.
//! `seed` fills a migrated database with the benchmark tenant (users, clients, pre-issued codes
//! and refresh tokens); `floors` measures what no server can beat on this machine: the signing
//! rate of each algorithm and the Argon2id verify rate with the configured parameters.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine as _;
use opentrusty_core::audit::Origin;
use opentrusty_core::client::{NewClient, TokenEndpointAuthMethod, client_secret_digest};
use opentrusty_core::email::Email;
use opentrusty_core::secret::{random_token, token_digest};
use opentrusty_core::tenant::TenantName;
use opentrusty_core::user::NewUser;
use opentrusty_oidc::jose::{Algorithm, SigningKey};
use opentrusty_password::{HashParams, PasswordHasher, Verification, WorkingMemory};
use opentrusty_store::{NewAccessToken, NewAuthorizationCode, NewTokenFamily, Store};
use sha2::Digest as _;

/// The password of every seeded user and of the platform administrator.
const PASSWORD: &str = "bench password 0123456789";
/// The PKCE verifier of every pre-issued code.
const VERIFIER: &str = "bench-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";
const REDIRECT_URI: &str = "http://127.0.0.1:9/cb";

fn usage() -> ! {
    eprintln!(
        "usage:\n  opentrusty-bench seed <database-url> <out-dir> [users] [clients] [codes] [refresh]\n  \
         opentrusty-bench floors [seconds]\n\nArgon2id parameters come from \
         OPENTRUSTY_ARGON2_MEMORY_KIB, _ITERATIONS, _PARALLELISM (OWASP defaults otherwise)."
    );
    std::process::exit(2)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let rt = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match args.first().map(String::as_str) {
        Some("seed") if args.len() >= 3 => {
            let n = |i: usize, default: usize| {
                args.get(i)
                    .map(|v| v.parse().unwrap_or_else(|_| usage()))
                    .unwrap_or(default)
            };
            let plan = Plan {
                users: n(3, 10_000),
                clients: n(4, 100),
                codes: n(5, 60_000),
                refresh: n(6, 256),
            };
            rt.block_on(seed(&args[1], PathBuf::from(&args[2]), plan));
        }
        Some("floors") => {
            let secs = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(3);
            floors(Duration::from_secs(secs));
        }
        _ => usage(),
    }
}

fn hash_params() -> HashParams {
    let d = HashParams::default();
    let var = |name: &str, default: u32| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    HashParams {
        memory_kib: var("OPENTRUSTY_ARGON2_MEMORY_KIB", d.memory_kib),
        iterations: var("OPENTRUSTY_ARGON2_ITERATIONS", d.iterations),
        parallelism: var("OPENTRUSTY_ARGON2_PARALLELISM", d.parallelism),
    }
}

struct Plan {
    users: usize,
    clients: usize,
    codes: usize,
    refresh: usize,
}

/// Runs `count` store operations `parallel` at a time.
async fn in_parallel<F, Fut>(count: usize, parallel: usize, op: F)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..parallel {
        let (op, next) = (op.clone(), next.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= count {
                    break;
                }
                op(i).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("a seeding task");
    }
}

async fn seed(url: &str, out: PathBuf, plan: Plan) {
    let store = Store::connect(url, &Default::default())
        .await
        .expect("connect to the benchmark database");
    let origin = Origin::system();
    let started = Instant::now();
    let hash = PasswordHasher::new(hash_params())
        .expect("valid Argon2id parameters")
        .hash(PASSWORD);
    store
        .bootstrap_platform_admin(
            &Email::parse("admin@bench.example").unwrap(),
            &hash,
            &origin,
        )
        .await
        .expect("bootstrap the platform administrator");
    let tenant = store
        .create_tenant(&TenantName::parse("bench").unwrap(), Some("Bench"), &origin)
        .await
        .expect("create the tenant")
        .id;

    let mut cc = NewClient::new(
        tenant,
        "bench-cc",
        "client credentials",
        TokenEndpointAuthMethod::ClientSecretBasic,
        Some(client_secret_digest("bench-cc-secret")),
    );
    cc.grant_types = vec![opentrusty_core::client::GrantType::ClientCredentials];
    cc.allowed_scopes = vec!["api".into()];
    store.create_client(&cc, &origin).await.expect("bench-cc");
    // Web applications with RS256 and with ES256 ID tokens: each code exchange and refresh signs
    // an ID token besides the access token.
    let mut webs = Vec::new();
    for (client_id, alg, suffix) in [
        ("bench-web", Algorithm::RS256, ""),
        ("bench-web-es256", Algorithm::ES256, "-es256"),
    ] {
        let mut web = NewClient::new(
            tenant,
            client_id,
            "web application",
            TokenEndpointAuthMethod::ClientSecretBasic,
            Some(client_secret_digest("bench-web-secret")),
        );
        web.redirect_uris = vec![REDIRECT_URI.into()];
        web.first_party = true;
        web.id_token_signed_response_alg = alg;
        let web = store
            .create_client(&web, &origin)
            .await
            .expect("a web client");
        webs.push((web.id, suffix));
    }
    for i in 3..plan.clients {
        let mut c = NewClient::new(
            tenant,
            &format!("bench-client-{i:03}"),
            &format!("application {i}"),
            TokenEndpointAuthMethod::ClientSecretBasic,
            Some(client_secret_digest(&format!("bench-client-secret-{i}"))),
        );
        c.redirect_uris = vec![format!("https://app{i}.bench.example/cb")];
        store.create_client(&c, &origin).await.expect("a client");
    }

    let shared = Arc::new((store.clone(), hash));
    let users = Arc::new(std::sync::Mutex::new(vec![None; plan.users]));
    {
        let (shared, users) = (shared.clone(), users.clone());
        in_parallel(plan.users, 8, move |i| {
            let (shared, users) = (shared.clone(), users.clone());
            async move {
                let (store, hash) = &*shared;
                let email = format!("bench-{i:05}@bench.example");
                let user = store
                    .create_user(
                        &NewUser::new(Some(tenant), &email, Some("Bench"), None).unwrap(),
                        Some(hash),
                        &Origin::system(),
                    )
                    .await
                    .expect("a user");
                users.lock().unwrap()[i] = Some(user.id);
            }
        })
        .await;
    }
    let user = users.lock().unwrap()[0].expect("the first user");
    let seeded_users = Instant::now();

    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(VERIFIER.as_bytes()));
    std::fs::create_dir_all(&out).expect("the output directory");
    let write = |name: String, lines: &[String]| {
        let mut f = std::fs::File::create(out.join(name)).expect("an output file");
        for l in lines {
            writeln!(f, "{l}").expect("write");
        }
    };
    for (web, suffix) in webs {
        let codes: Vec<String> = (0..plan.codes).map(|_| random_token()).collect();
        let codes = Arc::new(codes);
        {
            let (store, codes, challenge) = (store.clone(), codes.clone(), challenge.clone());
            in_parallel(plan.codes, 8, move |i| {
                let (store, codes, challenge) = (store.clone(), codes.clone(), challenge.clone());
                async move {
                    let now = opentrusty_core::now();
                    store
                        .issue_authorization_code(
                            &NewAuthorizationCode {
                                code_digest: token_digest(&codes[i]),
                                tenant_id: tenant,
                                client_id: web,
                                user_id: user,
                                session_id: None,
                                redirect_uri: REDIRECT_URI.into(),
                                scope: "openid offline_access".into(),
                                nonce: None,
                                code_challenge: Some(challenge),
                                code_challenge_method: Some(
                                    opentrusty_core::pkce::PkceMethod::S256,
                                ),
                                auth_time: now,
                                expires_at: now + time::Duration::hours(2),
                                redirect_uri_given: true,
                            },
                            &Origin::system(),
                        )
                        .await
                        .expect("a code");
                }
            })
            .await;
        }
        let mut refresh = Vec::new();
        for _ in 0..plan.refresh {
            let token = random_token();
            let now = opentrusty_core::now();
            store
                .issue_tokens(
                    &NewAccessToken {
                        jti: uuid::Uuid::now_v7(),
                        token_digest: Some(token_digest(&random_token())),
                        tenant_id: tenant,
                        client_id: web,
                        user_id: Some(user),
                        scope: "openid offline_access".into(),
                        expires_at: now + time::Duration::hours(1),
                    },
                    Some(&NewTokenFamily {
                        tenant_id: tenant,
                        client_id: web,
                        user_id: Some(user),
                        session_id: None,
                        scope: "openid offline_access".into(),
                        auth_time: Some(now),
                        expires_at: now + time::Duration::days(1),
                        refresh_digest: Some(token_digest(&token)),
                        offline: true,
                    }),
                    &origin,
                )
                .await
                .expect("a refresh token");
            refresh.push(token);
        }
        write(format!("codes{suffix}.txt"), &codes);
        write(format!("refresh{suffix}.txt"), &refresh);
    }
    store.close().await;

    write(
        "seed.env".into(),
        &[
            format!("TENANT_ID={tenant}"),
            format!("BENCH_PASSWORD='{PASSWORD}'"),
            format!("BENCH_VERIFIER={VERIFIER}"),
            format!("BENCH_CHALLENGE={challenge}"),
            format!("BENCH_REDIRECT_URI={REDIRECT_URI}"),
            format!("BENCH_USERS={}", plan.users),
        ],
    );
    eprintln!(
        "seeded {} users in {:.1} s, {} clients, {} codes and {} refresh tokens per web client in {:.1} s",
        plan.users,
        (seeded_users - started).as_secs_f64(),
        plan.clients,
        plan.codes,
        plan.refresh,
        started.elapsed().as_secs_f64()
    );
}

/// Runs an operation made by `make` on each of `threads` threads for `secs` (each thread gets
/// its own, with its own state); operations per second, all threads together.
fn rate<W: FnMut() + Send + 'static>(threads: usize, secs: Duration, make: impl Fn() -> W) -> f64 {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (mut work, stop, done) = (make(), stop.clone(), done.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    work();
                    done.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    std::thread::sleep(secs);
    stop.store(true, Ordering::Relaxed);
    for h in handles {
        h.join().expect("a floor thread");
    }
    done.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

fn floors(secs: Duration) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // Claims the size of a client_credentials access token.
    let claims = serde_json::json!({
        "iss": "http://127.0.0.1:18080", "sub": "0192c3a4-5b6c-7d8e-9f00-112233445566",
        "aud": "bench-cc", "client_id": "bench-cc", "scope": "api",
        "iat": 1_790_000_000, "exp": 1_790_003_600, "jti": "0192c3a4-5b6c-7d8e-9f00-aabbccddeeff"
    });
    for alg in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
        let (key, _) = SigningKey::generate(alg).expect("a key");
        let key = Arc::new(key);
        let sign = || {
            let (key, claims) = (key.clone(), claims.clone());
            move || {
                key.sign(Some("at+jwt"), &claims).expect("a signature");
            }
        };
        let one = rate(1, secs, sign);
        let all = rate(cores, secs, sign);
        println!("sign {alg} {one:.0} {all:.0}");
    }
    let params = hash_params();
    let hasher = PasswordHasher::new(params).expect("valid Argon2id parameters");
    let phc = hasher.hash(PASSWORD);
    // Each thread verifies in its own working memory, as each hashing worker of the server does.
    let verify = || {
        let (hasher, phc) = (hasher.clone(), phc.clone());
        let mut memory = WorkingMemory::default();
        move || {
            let ok = hasher.verify_in(PASSWORD, &phc, &mut memory);
            assert!(matches!(ok, Verification::Match { .. }));
        }
    };
    let one = rate(1, secs, verify);
    let all = rate(cores, secs, verify);
    println!(
        "argon2id m={} t={} p={} {one:.1} {all:.1}",
        params.memory_kib, params.iterations, params.parallelism
    );
}
