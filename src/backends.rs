//! The named metrics backends in force, each behind its own query cache (its own in-flight limit, health
//! and self-metrics, so one slow or failing backend marks only its own metrics unavailable), and which one
//! each metric reads.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::cache::QueryCache;
use crate::config::Routes;
use crate::source::MetricSource;

/// Backends by name; the first is the default.
pub struct Backends {
    caches: Vec<Arc<QueryCache>>,
    /// Catalogue metric → index into `caches`.
    routes: BTreeMap<String, usize>,
}

impl Backends {
    /// `caches` in order, the default first; `routes` must name only these backends.
    pub fn new(caches: Vec<Arc<QueryCache>>, routes: &Routes) -> Result<Self, String> {
        if caches.is_empty() {
            return Err("no metrics backend: pass --prometheus-url or set prometheus.url (or backends) in the config file".into());
        }
        let mut this = Self {
            caches,
            routes: BTreeMap::new(),
        };
        for (metric, backend) in &routes.metrics {
            let index = this.index(backend).ok_or_else(|| {
                format!("metrics.{metric}.backend: backend {backend:?} has no url")
            })?;
            this.routes.insert(metric.clone(), index);
        }
        Ok(this)
    }

    /// One backend: the one every metric reads.
    pub fn single(cache: Arc<QueryCache>) -> Self {
        Self {
            caches: vec![cache],
            routes: BTreeMap::new(),
        }
    }

    fn index(&self, name: &str) -> Option<usize> {
        self.caches.iter().position(|c| c.name() == name)
    }

    /// The default backend.
    pub fn default_backend(&self) -> &Arc<QueryCache> {
        &self.caches[0]
    }

    /// The backend named `name`, or the default one for `None`.
    pub fn named(&self, name: Option<&str>) -> Option<&Arc<QueryCache>> {
        match name {
            None => Some(self.default_backend()),
            Some(name) => self.index(name).map(|i| &self.caches[i]),
        }
    }

    /// The backend a catalogue metric reads.
    pub fn for_metric(&self, metric: &str) -> &Arc<QueryCache> {
        &self.caches[self.routes.get(metric).copied().unwrap_or(0)]
    }

    /// The source behind the backend named `name` (the default for `None`), for series discovery.
    pub fn source(&self, name: Option<&str>) -> Option<Arc<dyn MetricSource>> {
        self.named(name).map(|c| c.source())
    }

    /// Every backend, the default first.
    pub fn all(&self) -> &[Arc<QueryCache>] {
        &self.caches
    }

    /// Checks that every name in `names` is a backend here.
    pub fn check<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<(), String> {
        for name in names {
            if self.index(name).is_none() {
                let known: Vec<_> = self.caches.iter().map(|c| c.name()).collect();
                return Err(format!(
                    "no backend is named {name:?} (there are: {})",
                    known.join(", ")
                ));
            }
        }
        Ok(())
    }
}
