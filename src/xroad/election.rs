//! One collector among the adapter's replicas: leadership through a `coordination.k8s.io/v1` Lease, which also
//! carries the collector's cursor, so that a new leader resumes exactly where the old one stopped.
//!
//! Guarantee: records are never lost across a handover, and are counted twice only when a leader dies between
//! counting a page and recording its cursor (at most one poll's worth). A leader that cannot renew stops
//! polling before its lease could expire, so two replicas never count at once.

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};

/// The annotation holding the collector's cursor (Unix seconds).
pub const CURSOR_ANNOTATION: &str = "xroad-metrics-adapter.x-road.global/opmonitor-cursor";

/// What an attempt to lead found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Leadership {
    /// This replica leads; the cursor the previous leader recorded, if any.
    Leader {
        /// The recorded cursor.
        cursor: Option<i64>,
    },
    /// Another replica leads.
    Follower {
        /// Its identity.
        holder: String,
    },
}

/// Why the Lease could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("lease {name}: {source}")]
pub struct ElectionError {
    name: String,
    #[source]
    source: kube::Error,
}

/// Leader election over one Lease.
pub struct LeaderElection {
    api: Api<Lease>,
    name: String,
    identity: String,
    lease_duration: Duration,
}

fn timestamp(seconds: i64) -> MicroTime {
    MicroTime(
        k8s_openapi::jiff::Timestamp::from_second(seconds)
            .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH),
    )
}

impl LeaderElection {
    /// Elects among holders of `namespace/name`, as `identity`, with leases of `lease_duration`.
    pub fn new(
        client: kube::Client,
        namespace: &str,
        name: &str,
        identity: &str,
        lease_duration: Duration,
    ) -> Self {
        Self {
            api: Api::namespaced(client, namespace),
            name: name.to_owned(),
            identity: identity.to_owned(),
            lease_duration,
        }
    }

    /// How long a lease lasts.
    pub fn lease_duration(&self) -> Duration {
        self.lease_duration
    }

    fn error(&self, source: kube::Error) -> ElectionError {
        ElectionError {
            name: self.name.clone(),
            source,
        }
    }

    /// Acquires or renews the lease at `now`, recording `cursor`; a write conflict means another replica won.
    pub async fn lead(&self, now: i64, cursor: Option<i64>) -> Result<Leadership, ElectionError> {
        let existing = self
            .api
            .get_opt(&self.name)
            .await
            .map_err(|e| self.error(e))?;
        let duration = self.lease_duration.as_secs() as i64;
        let mut lease = match existing {
            None => Lease {
                metadata: ObjectMeta {
                    name: Some(self.name.clone()),
                    ..Default::default()
                },
                spec: Some(LeaseSpec::default()),
            },
            Some(lease) => lease,
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let renewed = spec
            .renew_time
            .as_ref()
            .map_or(i64::MIN, |t| t.0.as_second());
        let held_by_other = !holder.is_empty() && holder != self.identity;
        let expired = renewed.saturating_add(i64::from(
            spec.lease_duration_seconds.unwrap_or(duration as i32),
        )) < now;
        if held_by_other && !expired {
            return Ok(Leadership::Follower { holder });
        }
        let recorded = lease
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(CURSOR_ANNOTATION))
            .and_then(|c| c.parse().ok());
        let spec = lease.spec.get_or_insert_with(Default::default);
        if holder != self.identity {
            spec.acquire_time = Some(timestamp(now));
            spec.lease_transitions =
                Some(spec.lease_transitions.unwrap_or(0) + i32::from(!holder.is_empty()));
        }
        spec.holder_identity = Some(self.identity.clone());
        spec.lease_duration_seconds = Some(duration as i32);
        spec.renew_time = Some(timestamp(now));
        if let Some(cursor) = cursor {
            lease
                .metadata
                .annotations
                .get_or_insert_with(Default::default)
                .insert(CURSOR_ANNOTATION.to_owned(), cursor.to_string());
        }
        let written = if lease.metadata.resource_version.is_some() {
            self.api
                .replace(&self.name, &PostParams::default(), &lease)
                .await
        } else {
            self.api.create(&PostParams::default(), &lease).await
        };
        match written {
            Ok(_) => Ok(Leadership::Leader { cursor: recorded }),
            Err(kube::Error::Api(status)) if status.code == 409 => Ok(Leadership::Follower {
                holder: "another replica (write conflict)".into(),
            }),
            Err(e) => Err(self.error(e)),
        }
    }
}
