//! Gauges computed at scrape time from the objects in a controller's cache (the way
//! kube-state-metrics works): each scrape reads the current objects, so a deleted object's
//! series disappear with it and nothing has to be kept in step. What each object contributes is
//! a pure function of the object ([`Sample`]s); this module only encodes them.

use std::collections::BTreeMap;
use std::sync::Arc;

use kube::runtime::reflector::Store;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::gauge::ConstGauge;

/// A gauge family: its name (without the `tikv_operator_` prefix) and help.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GaugeDesc {
    /// Name, e.g. `abnormal_instance`.
    pub name: &'static str,
    /// Help text.
    pub help: &'static str,
}

/// One sample of a gauge.
#[derive(Clone, Debug, PartialEq)]
pub struct Sample {
    /// The family's name, one of the collector's [`GaugeDesc`]s.
    pub name: &'static str,
    /// Labels, in the order they are written.
    pub labels: Vec<(&'static str, String)>,
    /// Value.
    pub value: f64,
}

impl Sample {
    /// A sample of `name` with `labels` and `value`.
    pub fn new(name: &'static str, labels: Vec<(&'static str, String)>, value: f64) -> Self {
        Self {
            name,
            labels,
            value,
        }
    }
}

type Source = Box<dyn Fn() -> Vec<Sample> + Send + Sync>;

/// A collector of gauge families over several sources (e.g. the PD and the TiKV caches, which
/// share families: one family must be written once).
pub struct StateCollector {
    gauges: &'static [GaugeDesc],
    sources: Vec<Source>,
}

impl std::fmt::Debug for StateCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateCollector")
            .field("gauges", &self.gauges)
            .field("sources", &self.sources.len())
            .finish()
    }
}

impl StateCollector {
    /// A collector of the `gauges` families, without sources yet.
    pub fn new(gauges: &'static [GaugeDesc]) -> Self {
        Self {
            gauges,
            sources: Vec::new(),
        }
    }

    /// Adds the objects of `store`, each giving its samples through `samples`.
    pub fn with_store<K>(mut self, store: Store<K>, samples: fn(&K) -> Vec<Sample>) -> Self
    where
        K: kube::Resource<DynamicType = ()> + Clone + Send + Sync + 'static,
    {
        self.sources.push(Box::new(move || {
            store
                .state()
                .iter()
                .flat_map(|o: &Arc<K>| samples(o))
                .collect()
        }));
        self
    }

    /// Every sample of every source, grouped by family name (samples of unknown families are
    /// dropped: a family is declared before it is used).
    fn grouped(&self) -> BTreeMap<&'static str, Vec<Sample>> {
        let mut by_name: BTreeMap<&'static str, Vec<Sample>> = BTreeMap::new();
        for sample in self.sources.iter().flat_map(|s| s()) {
            if self.gauges.iter().any(|g| g.name == sample.name) {
                by_name.entry(sample.name).or_default().push(sample);
            }
        }
        by_name
    }
}

impl Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let mut by_name = self.grouped();
        for g in self.gauges {
            let Some(samples) = by_name.remove(g.name) else {
                continue;
            };
            let gauge = ConstGauge::new(0.0);
            let mut family =
                encoder.encode_descriptor(g.name, g.help, None, gauge.metric_type())?;
            for s in samples {
                let labels: Vec<(&str, &str)> =
                    s.labels.iter().map(|(k, v)| (*k, v.as_str())).collect();
                ConstGauge::new(s.value).encode(family.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use k8s_openapi::api::core::v1::ConfigMap;
    use kube::runtime::reflector;
    use kube::runtime::watcher::Event;

    const GAUGES: &[GaugeDesc] = &[GaugeDesc {
        name: "config_keys",
        help: "Keys of a ConfigMap",
    }];

    fn keys(cm: &ConfigMap) -> Vec<Sample> {
        vec![Sample::new(
            "config_keys",
            vec![
                (
                    "namespace",
                    cm.metadata.namespace.clone().unwrap_or_default(),
                ),
                ("name", cm.metadata.name.clone().unwrap_or_default()),
            ],
            cm.data.as_ref().map_or(0, |d| d.len()) as f64,
        )]
    }

    fn cm(name: &str, n: usize) -> ConfigMap {
        ConfigMap {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                namespace: Some("ns".into()),
                ..Default::default()
            },
            data: Some((0..n).map(|i| (format!("k{i}"), String::new())).collect()),
            ..Default::default()
        }
    }

    #[test]
    fn each_scrape_reads_the_objects_the_cache_holds_now() {
        let (store, mut writer) = reflector::store::<ConfigMap>();
        let metrics = Metrics::new();
        metrics.register_collector(StateCollector::new(GAUGES).with_store(store, keys));
        // Nothing cached: no family at all.
        assert!(!metrics.encode().contains("config_keys"));
        writer.apply_watcher_event(&Event::Apply(cm("a", 2)));
        writer.apply_watcher_event(&Event::Apply(cm("b", 1)));
        let text = metrics.encode();
        assert!(
            text.contains("# TYPE tikv_operator_config_keys gauge"),
            "{text}"
        );
        assert!(
            text.contains(r#"tikv_operator_config_keys{namespace="ns",name="a"} 2.0"#),
            "{text}"
        );
        assert!(text.contains(r#"tikv_operator_config_keys{namespace="ns",name="b"} 1.0"#));
        // A deleted object's series go with it.
        writer.apply_watcher_event(&Event::Delete(cm("a", 2)));
        let text = metrics.encode();
        assert!(!text.contains(r#"name="a""#), "{text}");
        assert_eq!(text.matches("# TYPE tikv_operator_config_keys").count(), 1);
    }
}
