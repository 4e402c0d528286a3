//! The process's metrics, rendered in the Prometheus text format on the separate metrics
//! listener: requests per plane, route and status with latency histograms, and named counters
//! and gauges the planes update (token issuance by grant, login outcomes, hashing in flight).
//! One registry per process; no label ever carries user input beyond the matched route template.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, OnceLock};

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request label set: plane, method, route template, status.
type RequestKey = (&'static str, String, String, u16);
/// A counter's name and its labels, in order.
type CounterKey = (&'static str, Vec<(&'static str, String)>);

#[derive(Default)]
struct Registry {
    requests: Mutex<BTreeMap<RequestKey, Histogram>>,
    counters: Mutex<BTreeMap<CounterKey, u64>>,
    hashes_in_flight: AtomicI64,
}

fn registry() -> &'static Registry {
    static REGISTRY: OnceLock<Registry> = OnceLock::new();
    REGISTRY.get_or_init(Registry::default)
}

/// Records one answered request.
pub fn observe_request(plane: &'static str, method: &str, route: &str, status: u16, seconds: f64) {
    let Ok(mut map) = registry().requests.lock() else {
        return;
    };
    let h = map
        .entry((plane, method.to_owned(), route.to_owned(), status))
        .or_default();
    h.count += 1;
    h.sum += seconds;
    if let Some(i) = BUCKETS.iter().position(|b| seconds <= *b) {
        h.counts[i] += 1;
    }
}

/// Adds one to counter `name` with `labels` (fixed vocabularies only: grant types, outcomes).
pub fn count(name: &'static str, labels: &[(&'static str, &str)]) {
    let key = (
        name,
        labels
            .iter()
            .map(|(k, v)| (*k, (*v).to_owned()))
            .collect::<Vec<_>>(),
    );
    if let Ok(mut map) = registry().counters.lock() {
        *map.entry(key).or_default() += 1;
    }
}

/// Marks a password hash computation in flight until the guard drops.
pub fn hashing() -> HashingGuard {
    registry().hashes_in_flight.fetch_add(1, Ordering::Relaxed);
    HashingGuard(())
}

pub struct HashingGuard(());

impl Drop for HashingGuard {
    fn drop(&mut self) {
        registry().hashes_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// HELP texts of the counters the planes use.
fn help(name: &str) -> &'static str {
    match name {
        "opentrusty_tokens_issued_total" => "Token responses issued, by grant type",
        "opentrusty_logins_total" => "Sign-in attempts, by kind and outcome",
        _ => "Events counted by OpenTrusty",
    }
}

/// Escapes a label value for the text format.
fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition (format 0.0.4) of everything recorded, with `gauges` (name,
/// help, value) sampled by the caller (pool usage).
pub fn render(gauges: &[(&str, &str, f64)]) -> String {
    let mut out = String::new();
    let reg = registry();
    out.push_str("# HELP opentrusty_http_requests_total HTTP requests answered\n");
    out.push_str("# TYPE opentrusty_http_requests_total counter\n");
    let requests = reg.requests.lock().map(|m| {
        m.iter()
            .map(|(k, h)| (k.clone(), h.counts, h.count, h.sum))
            .collect::<Vec<_>>()
    });
    let requests = requests.unwrap_or_default();
    for ((plane, method, route, status), _, count, _) in &requests {
        let _ = writeln!(
            out,
            "opentrusty_http_requests_total{{plane=\"{plane}\",method=\"{}\",route=\"{}\",status=\"{status}\"}} {count}",
            escape(method),
            escape(route)
        );
    }
    out.push_str("# HELP opentrusty_http_request_duration_seconds Time to answer HTTP requests\n");
    out.push_str("# TYPE opentrusty_http_request_duration_seconds histogram\n");
    for ((plane, method, route, status), counts, count, sum) in &requests {
        let labels = format!(
            "plane=\"{plane}\",method=\"{}\",route=\"{}\",status=\"{status}\"",
            escape(method),
            escape(route)
        );
        let mut cumulative = 0;
        for (bound, n) in BUCKETS.iter().zip(counts) {
            cumulative += n;
            let _ = writeln!(
                out,
                "opentrusty_http_request_duration_seconds_bucket{{{labels},le=\"{bound}\"}} {cumulative}"
            );
        }
        let _ = writeln!(
            out,
            "opentrusty_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "opentrusty_http_request_duration_seconds_sum{{{labels}}} {sum}"
        );
        let _ = writeln!(
            out,
            "opentrusty_http_request_duration_seconds_count{{{labels}}} {count}"
        );
    }
    let counters = reg.counters.lock().map(|m| m.clone()).unwrap_or_default();
    let mut last = "";
    for ((name, labels), value) in &counters {
        if *name != last {
            let _ = writeln!(out, "# HELP {name} {}", help(name));
            let _ = writeln!(out, "# TYPE {name} counter");
            last = name;
        }
        let labels: Vec<String> = labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
            .collect();
        let _ = writeln!(out, "{name}{{{}}} {value}", labels.join(","));
    }
    let _ = writeln!(
        out,
        "# HELP opentrusty_password_hashes_in_flight Password hash computations running or queued\n\
         # TYPE opentrusty_password_hashes_in_flight gauge\n\
         opentrusty_password_hashes_in_flight {}",
        reg.hashes_in_flight.load(Ordering::Relaxed)
    );
    for (name, help, value) in gauges {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_requests_counters_and_gauges() {
        observe_request("auth", "GET", "/jwks.json", 200, 0.003);
        observe_request("auth", "GET", "/jwks.json", 200, 20.0);
        count(
            "opentrusty_tokens_issued_total",
            &[("grant", "client_credentials")],
        );
        let guard = hashing();
        let text = render(&[("opentrusty_db_pool_connections", "Open connections", 3.0)]);
        drop(guard);
        assert!(text.contains(
            "opentrusty_http_requests_total{plane=\"auth\",method=\"GET\",route=\"/jwks.json\",status=\"200\"} 2"
        ));
        assert!(text.contains("le=\"0.005\"} 1"));
        assert!(text.contains("le=\"+Inf\"} 2"));
        assert!(text.contains("opentrusty_tokens_issued_total{grant=\"client_credentials\"} 1"));
        assert!(text.contains("opentrusty_password_hashes_in_flight 1"));
        assert!(text.contains("opentrusty_db_pool_connections 3"));
    }
}
