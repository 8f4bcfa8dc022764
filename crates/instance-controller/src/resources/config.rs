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
    fn refuses_invalid_toml() {
        assert!(matches!(
            render(Some("[server"), TIKV_OWNED),
            Err(Error::Parse(_))
        ));
    }
}
