//! Certificates in Secrets of cert-manager's layout (`tls.crt`, `tls.key`, `ca.crt`), as the
//! controllers read them: pure checks of a Secret as read, at a given time, whose messages name
//! the Secret (for a condition and an Event).

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::jiff::Timestamp;

/// The three files of a Secret in cert-manager's layout.
pub fn material(secret: &Secret) -> Result<tls::Material, tls::Problem> {
    let data = secret.data.as_ref();
    tls::Material::from_secret(|k| data?.get(k).map(|b| b.0.as_slice()))
}

/// `now` as rustls wants it.
pub fn unix_time(now: Timestamp) -> rustls_pki_types::UnixTime {
    let secs = now.as_second().max(0) as u64;
    rustls_pki_types::UnixTime::since_unix_epoch(std::time::Duration::from_secs(secs))
}

/// Checks the Secret `ns/name` (as read; `None`: it does not exist) for `usage` at `now`: its
/// files, or what is wrong, as `TLS Secret <ns>/<name> <problem>`.
pub fn usable(
    namespace: &str,
    name: &str,
    secret: Option<&Secret>,
    usage: &tls::Usage,
    now: Timestamp,
) -> Result<tls::Material, String> {
    let problem = |p: &dyn std::fmt::Display| format!("TLS Secret {namespace}/{name} {p}");
    let secret = secret.ok_or_else(|| problem(&"does not exist"))?;
    let material = self::material(secret).map_err(|p| problem(&p))?;
    tls::check(&material, usage, unix_time(now)).map_err(|p| problem(&p))?;
    Ok(material)
}
