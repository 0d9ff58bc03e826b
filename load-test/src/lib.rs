//! Load generation for salestrack: the goose scenarios shared by the load
//! test (`salestrack-loadtest`) and the benchmark (`salestrack-bench`).
//!
//! Talks to a runner over HTTP only; never reaches into its stores except to
//! check, after an in-process run, that no accepted command was lost.

pub mod jvm_profile;
pub mod personal_cost;
pub mod scenario;

use std::net::IpAddr;

/// Refuses any target but loopback: load never leaves this machine.
pub fn ensure_loopback(host: &str) -> anyhow::Result<()> {
    let authority = host.split("://").nth(1).unwrap_or(host);
    let name = authority.split('/').next().unwrap_or_default();
    let name = match name.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => name.rsplit_once(':').map_or(name, |(h, _)| h),
    };
    let loopback = name == "localhost" || name.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
    if !loopback {
        anyhow::bail!("refusing to load {host}: only loopback hosts (127.0.0.0/8, ::1, localhost) may be targeted");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::ensure_loopback;

    #[test]
    fn only_loopback_hosts_may_be_loaded() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:80/",
            "127.0.0.2",
        ] {
            assert!(ensure_loopback(ok).is_ok(), "{ok}");
        }
        for refused in [
            "http://10.0.0.1:8080",
            "https://example.com",
            "http://192.168.1.5",
            "http://[2001:db8::1]:80",
        ] {
            assert!(ensure_loopback(refused).is_err(), "{refused}");
        }
    }
}
