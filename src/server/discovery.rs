//! Discovery: the `APIGroupList`, `APIGroup` and `APIResourceList` documents kubectl, the aggregator and the
//! HPA read before they ask for a value; what they list follows the catalogue, the policies and the rules
//! in force.

use axum::response::Response;

use super::routes::Route;
use super::{AppState, Configured, json, policies::policy_metrics};
use crate::apis::{
    ApiGroup, ApiGroupList, ApiResource, ApiResourceList, CUSTOM_GROUP, EXTERNAL_GROUP,
    RESOURCE_GROUP,
};
use crate::catalog::DEPLOYMENTS;
use crate::error::ApiError;

/// The discovery document of `route`, or `None` when `route` asks for values.
pub(super) fn document(
    state: &AppState,
    configured: &Configured,
    route: &Route,
) -> Option<Result<Response, ApiError>> {
    Some(Ok(match route {
        Route::Groups => json(ApiGroupList::served()),
        Route::Group(CUSTOM_GROUP) => json(ApiGroup::custom().document()),
        Route::Group(EXTERNAL_GROUP) => json(ApiGroup::external().document()),
        Route::Group(_) => json(ApiGroup::resource().document()),
        Route::ResourceDiscovery => json(ApiResourceList::new(
            RESOURCE_GROUP,
            "v1beta1",
            vec![
                ApiResource::resource_metrics("nodes", "NodeMetrics", false),
                ApiResource::resource_metrics("pods", "PodMetrics", true),
            ],
        )),
        Route::CustomDiscovery(version) => json(ApiResourceList::new(
            CUSTOM_GROUP,
            version.as_str(),
            configured
                .catalog
                .custom_resources()
                .map(|(resource, metric, namespaced)| {
                    ApiResource::custom(resource, metric, namespaced)
                })
                .chain(
                    policy_metrics(configured).map(|m| ApiResource::custom(DEPLOYMENTS, m, true)),
                )
                .chain(rule_resources(state))
                .collect(),
        )),
        Route::ExternalDiscovery => json(ApiResourceList::new(
            EXTERNAL_GROUP,
            "v1beta1",
            configured
                .catalog
                .metrics()
                .iter()
                .map(|m| m.name.as_str())
                .chain(policy_metrics(configured))
                .map(ApiResource::external)
                .chain(rule_external_metrics(state))
                .collect(),
        )),
        Route::Custom(_)
        | Route::External { .. }
        | Route::PodMetrics { .. }
        | Route::NodeMetrics { .. } => return None,
    }))
}

/// The custom metrics the Prometheus Adapter rules found at the last relist.
fn rule_resources(state: &AppState) -> Vec<ApiResource> {
    state.rules.as_ref().map_or_else(Vec::new, |rules| {
        rules
            .registry()
            .custom_resources()
            .map(|(resource, metric, namespaced)| {
                ApiResource::custom(&resource.qualified(), metric, namespaced)
            })
            .collect()
    })
}

/// The external metrics the Prometheus Adapter rules found at the last relist.
fn rule_external_metrics(state: &AppState) -> Vec<ApiResource> {
    state.rules.as_ref().map_or_else(Vec::new, |rules| {
        rules
            .registry()
            .external_metrics()
            .map(ApiResource::external)
            .collect()
    })
}
