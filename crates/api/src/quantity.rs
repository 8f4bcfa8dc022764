//! Sizes as Kubernetes quantities, the way people read them in `kubectl get`.

use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// `mib` mebibytes as a quantity in the largest binary unit that keeps it whole: `512Mi`,
/// `1536Mi`, `2Gi`, `3Ti`.
pub fn from_mib(mib: u64) -> Quantity {
    let (value, unit) = if mib > 0 && mib.is_multiple_of(1 << 20) {
        (mib >> 20, "Ti")
    } else if mib > 0 && mib.is_multiple_of(1 << 10) {
        (mib >> 10, "Gi")
    } else {
        (mib, "Mi")
    };
    Quantity(format!("{value}{unit}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_binary_units() {
        assert_eq!(from_mib(0).0, "0Mi");
        assert_eq!(from_mib(64).0, "64Mi");
        assert_eq!(from_mib(1536).0, "1536Mi");
        assert_eq!(from_mib(2048).0, "2Gi");
        assert_eq!(from_mib(3 << 20).0, "3Ti");
    }
}
