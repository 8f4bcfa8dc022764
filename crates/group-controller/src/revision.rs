//! Template revisions: a group's template hashes to a revision name; instances carry the revision
//! they were built from, so "outdated" is a label comparison.

/// FNV-1a, 64 bit: stable across Rust versions and platforms (std's hasher is not).
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf29ce484222325;
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100000001b3);
    }
    h
}

/// Revision name of a template: `<group>-<10 hex digits>`. The template is serialised with
/// sorted keys (serde_json's default map), so equal templates always give equal names.
/// `collision_count` changes the name when a stored revision with this name holds another template.
pub fn revision_name(group: &str, template: &serde_json::Value, collision_count: i32) -> String {
    let mut bytes = serde_json::to_vec(template).unwrap_or_default();
    bytes.extend_from_slice(&collision_count.to_le_bytes());
    format!("{group}-{:010x}", fnv1a(&bytes) & 0xff_ffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn equal_templates_equal_names_any_key_order() {
        let a: serde_json::Value =
            serde_json::from_str(r#"{"spec":{"version":"v8.5.0","image":"pingcap/tikv"}}"#)
                .unwrap();
        let b: serde_json::Value =
            serde_json::from_str(r#"{"spec":{"image":"pingcap/tikv","version":"v8.5.0"}}"#)
                .unwrap();
        assert_eq!(revision_name("g", &a, 0), revision_name("g", &b, 0));
        assert_eq!(revision_name("g", &a, 0).len(), "g-".len() + 10);
    }

    #[test]
    fn any_change_or_collision_gives_a_new_name() {
        let a = json!({"spec": {"version": "v8.5.0"}});
        let b = json!({"spec": {"version": "v8.5.1"}});
        assert_ne!(revision_name("g", &a, 0), revision_name("g", &b, 0));
        assert_ne!(revision_name("g", &a, 0), revision_name("g", &a, 1));
    }
}
