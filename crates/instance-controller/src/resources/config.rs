//! The component config file: the user's TOML, checked for keys the operator owns. Those keys
//! (names, addresses, data dir, PD endpoints) are passed as flags, which override the file; a
//! user config that sets them would silently not apply, so it is refused instead.

/// Keys (dotted paths) of the PD config the operator owns.
pub const PD_OWNED: &[&str] = &[
    "name",
    "data-dir",
    "client-urls",
    "peer-urls",
    "advertise-client-urls",
    "advertise-peer-urls",
    "initial-cluster",
    "initial-cluster-state",
    "join",
];

/// Keys (dotted paths) of the TiKV config the operator owns.
pub const TIKV_OWNED: &[&str] = &[
    "server.addr",
    "server.advertise-addr",
    "server.status-addr",
    "server.advertise-status-addr",
    "storage.data-dir",
    "pd.endpoints",
];

/// Keys of the PD config the operator owns with TLS on (it passes the files as flags).
pub const PD_TLS_OWNED: &[&str] = &[
    "security.cacert-path",
    "security.cert-path",
    "security.key-path",
];

/// Keys of the TiKV config the operator owns with TLS on (it writes them: [`with_security`]).
pub const TIKV_TLS_OWNED: &[&str] = &[
    "security.ca-path",
    "security.cert-path",
    "security.key-path",
];

/// A config the operator cannot use.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// Not valid TOML.
    #[error("config is not valid TOML: {0}")]
    Parse(String),
    /// Sets keys the operator owns.
    #[error("config sets keys the operator manages: {}; remove them (the operator sets them from the spec)", .0.join(", "))]
    OwnedKeys(Vec<String>),
}

/// Checks a user config and returns the file content to mount.
pub fn render(user: Option<&str>, owned: &[&str]) -> Result<String, Error> {
    let text = user.unwrap_or("");
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| Error::Parse(e.message().to_string()))?;
    let set: Vec<String> = owned
        .iter()
        .filter(|k| lookup(&table, k))
        .map(|k| k.to_string())
        .collect();
    if !set.is_empty() {
        return Err(Error::OwnedKeys(set));
    }
    Ok(text.to_string())
}

/// A checked config with TiKV's `[security]` files in `dir` (cert-manager's file names) added to
/// the user's `[security]` table, if any.
pub fn with_security(text: &str, dir: &str) -> Result<String, Error> {
    let mut table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| Error::Parse(e.message().to_string()))?;
    let security = table
        .entry("security")
        .or_insert_with(|| toml::Value::Table(toml::Table::new()));
    let toml::Value::Table(security) = security else {
        return Err(Error::OwnedKeys(vec!["security".into()]));
    };
    for (key, file) in [
        ("ca-path", tls::CA),
        ("cert-path", tls::CERT),
        ("key-path", tls::KEY),
    ] {
        security.insert(key.into(), format!("{dir}/{file}").into());
    }
    toml::to_string(&table).map_err(|e| Error::Parse(e.to_string()))
}

fn lookup(table: &toml::Table, dotted: &str) -> bool {
    let mut parts = dotted.split('.').peekable();
    let mut current = table;
    while let Some(part) = parts.next() {
        match current.get(part) {
            Some(toml::Value::Table(t)) if parts.peek().is_some() => current = t,
            Some(_) => return parts.peek().is_none(),
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_user_settings_and_keeps_them_verbatim() {
        let cfg = "[storage]\nreserve-space = \"0MB\"\n[raftstore]\ncapacity = \"10GB\"\n";
        assert_eq!(render(Some(cfg), TIKV_OWNED).unwrap(), cfg);
        assert_eq!(render(None, PD_OWNED).unwrap(), "");
    }

    #[test]
    fn refuses_owned_keys_and_names_them() {
        let cfg = "[server]\naddr = \"0.0.0.0:20160\"\n[pd]\nendpoints = [\"x\"]\n[storage]\nreserve-space = \"0MB\"";
        assert_eq!(
            render(Some(cfg), TIKV_OWNED),
            Err(Error::OwnedKeys(vec![
                "server.addr".into(),
                "pd.endpoints".into()
            ]))
        );
        assert_eq!(
            render(Some("data-dir = \"/x\""), PD_OWNED),
            Err(Error::OwnedKeys(vec!["data-dir".into()]))
        );
        // A same-named key in another table is the user's.
        assert!(render(Some("[log]\nname = \"x\""), PD_OWNED).is_ok());
    }

    #[test]
    fn security_is_added_to_the_users_table() {
        let cfg = "[security]\nredact-info-log = true\n[storage]\nreserve-space = \"0MB\"\n";
        let out: toml::Table = with_security(cfg, "/var/lib/tikv-tls")
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(out["security"]["redact-info-log"].as_bool(), Some(true));
        assert_eq!(
            out["security"]["cert-path"].as_str(),
            Some("/var/lib/tikv-tls/tls.crt")
        );
        assert_eq!(
            out["security"]["ca-path"].as_str(),
            Some("/var/lib/tikv-tls/ca.crt")
        );
        assert_eq!(out["storage"]["reserve-space"].as_str(), Some("0MB"));
        assert!(with_security("security = 1", "/d").is_err());
        // With TLS the files are the operator's.
        assert_eq!(
            render(Some("[security]\nca-path = \"/x\""), TIKV_TLS_OWNED),
            Err(Error::OwnedKeys(vec!["security.ca-path".into()]))
        );
    }

    #[test]
    fn refuses_invalid_toml() {
        assert!(matches!(
            render(Some("[server"), TIKV_OWNED),
            Err(Error::Parse(_))
        ));
    }
}
