//! A fake of the kube API for tests and benches, for what the real one cannot be made to do on cue: written
//! from the Kubernetes API conventions
//! (<https://github.com/kubernetes/community/blob/master/contributors/devel/sig-architecture/api-conventions.md>)
//! and the API concepts page (<https://kubernetes.io/docs/reference/using-api/api-concepts/>).
//!
//! - Objects of any resource live in one store with a cluster-wide revision, as etcd gives kube-apiserver;
//!   every write stamps `metadata.resourceVersion` and appends to the history.
//! - LIST pages with `limit`/`continue` and serves every page at the revision of the first; list items carry
//!   no `kind`/`apiVersion`, as the API's lists do.
//! - WATCH streams `ADDED`/`MODIFIED`/`DELETED` events after `resourceVersion`, a `BOOKMARK` now and then when
//!   asked (`allowWatchBookmarks`), and ends at `timeoutSeconds`. From a revision older than the compacted
//!   history it answers 200 with one `ERROR` event holding a `410 Expired` Status, as kube-apiserver does; a
//!   stale `continue` token gets a 410 response.
//! - Faults on cue: every call failing with 500, latency on one namespace's lists, open watches cut.
//! - TokenReview and SubjectAccessReview, answered from the users and rights a test sets.
//! - Every call is recorded (method, path, query, status, time).

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

/// One call the fake answered.
#[derive(Debug, Clone)]
pub struct Call {
    pub at: Instant,
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
}

impl Call {
    pub fn is_watch(&self) -> bool {
        self.query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1")
    }
}

/// (resource, namespace, name); namespace is empty for cluster-scoped kinds.
type Key = (String, String, String);

#[derive(Debug, Clone)]
struct Change {
    revision: u64,
    key: Key,
    kind: &'static str,
    object: Value,
}

#[derive(Default)]
pub struct KubeState {
    revision: u64,
    objects: BTreeMap<Key, Value>,
    history: Vec<Change>,
    /// Watches and continue tokens from before this revision get 410 Expired.
    oldest: u64,
    /// Every call answers 500 while set.
    pub failing: bool,
    /// Lists of a namespace (or of the cluster, for "") wait this long before answering.
    pub list_latency: HashMap<String, Duration>,
    /// Open watches end when this changes.
    watch_generation: u64,
    pub bookmark_interval: Option<Duration>,
    pub calls: Vec<Call>,
    /// Bearer token → TokenReview `status.user`.
    pub tokens: HashMap<String, Value>,
    /// (user, `resource/subresource` or non-resource path) pairs RBAC allows.
    pub allowed: Vec<(String, String)>,
    pub access_review_fails: bool,
    /// TokenReviews wait this long before answering, as from an overloaded kube-apiserver.
    pub token_review_latency: Option<Duration>,
    token_reviews_waiting: usize,
    /// The most TokenReviews that were waiting at once.
    pub most_token_reviews_waiting: usize,
    pub token_reviews: Vec<Value>,
    pub access_reviews: Vec<Value>,
}

impl KubeState {
    /// The objects of `resource` in `namespace` ("" for all) as they were at `revision`, by key.
    fn at(&self, resource: &str, namespace: &str, revision: u64) -> Vec<(&Key, &Value)> {
        if revision >= self.revision {
            // Now: the current objects, without replaying the history.
            return self
                .objects
                .iter()
                .filter(|(k, _)| k.0 == resource && (namespace.is_empty() || k.1 == namespace))
                .collect();
        }
        let mut objects: BTreeMap<&Key, &Value> = BTreeMap::new();
        for change in self.history.iter().take_while(|c| c.revision <= revision) {
            if change.key.0 != resource || (!namespace.is_empty() && change.key.1 != namespace) {
                continue;
            }
            if change.kind == "DELETED" {
                objects.remove(&change.key);
            } else {
                objects.insert(&change.key, &change.object);
            }
        }
        objects.into_iter().collect()
    }
}

#[derive(Clone)]
pub struct FakeKube {
    pub state: Arc<Mutex<KubeState>>,
    changes: tokio::sync::broadcast::Sender<()>,
    /// Where it listens (plain HTTP).
    pub url: String,
}

/// What a request path names.
struct Target {
    api_version: String,
    resource: String,
    namespace: String,
    name: Option<String>,
}

fn parse_path(path: &str) -> Option<Target> {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (api_version, rest) = match segments.as_slice() {
        ["api", "v1", rest @ ..] => ("v1".to_owned(), rest),
        ["apis", group, version, rest @ ..] => (format!("{group}/{version}"), rest),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
        rest => (String::new(), rest),
    };
    let (resource, name) = match rest {
        [resource] => (resource.to_string(), None),
        [resource, name] => (resource.to_string(), Some(name.to_string())),
        _ => return None,
    };
    Some(Target {
        api_version,
        resource,
        namespace,
        name,
    })
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    (
        StatusCode::from_u16(code).unwrap(),
        axum::Json(status_object(code, reason, message)),
    )
        .into_response()
}

fn status_object(code: u16, reason: &str, message: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": message, "reason": reason, "code": code})
}

/// The `Kind` of a resource's objects, for list kinds and bookmarks.
fn kind_of(resource: &str) -> String {
    match resource {
        "pods" => "Pod",
        "deployments" => "Deployment",
        "replicasets" => "ReplicaSet",
        "nodes" => "Node",
        "configmaps" => "ConfigMap",
        "leases" => "Lease",
        other => other,
    }
    .to_owned()
}

fn query_map(query: &str) -> HashMap<String, String> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// `metadata.name=x` field selectors, the only kind the adapter sends.
fn field_name(query: &HashMap<String, String>) -> Option<String> {
    query
        .get("fieldSelector")?
        .split(',')
        .find_map(|term| term.strip_prefix("metadata.name="))
        .map(str::to_owned)
}

fn name_of(object: &Value) -> &str {
    object["metadata"]["name"].as_str().unwrap_or_default()
}

impl FakeKube {
    pub async fn start() -> (Self, kube::Client) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let fake = FakeKube {
            state: Arc::new(Mutex::new(KubeState {
                revision: 1,
                bookmark_interval: Some(Duration::from_secs(1)),
                ..KubeState::default()
            })),
            changes: tokio::sync::broadcast::channel(1024).0,
            url: format!("http://{}", listener.local_addr().unwrap()),
        };
        let app = axum::Router::new()
            .fallback(answer)
            .with_state(fake.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        let client = fake.client();
        (fake, client)
    }

    /// A new client of this fake.
    pub fn client(&self) -> kube::Client {
        kube::Client::try_from(kube::Config::new(self.url.parse().unwrap())).unwrap()
    }

    /// A kubeconfig for this fake, as `--kubeconfig` and `--authentication-kubeconfig` take it.
    pub fn kubeconfig(&self, dir: &std::path::Path) -> std::path::PathBuf {
        let path = dir.join("fake-kube.kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster: {{server: {}}}\n\
                 users:\n- name: adapter\n  user: {{}}\ncontexts:\n- name: fake\n  context: {{cluster: fake, user: adapter}}\n\
                 current-context: fake\n",
                self.url
            ),
        )
        .unwrap();
        path
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, KubeState> {
        self.state.lock().unwrap()
    }

    /// Creates or replaces an object of `resource` (its namespace and name from its metadata), as a write
    /// through the API would, and tells the open watches.
    pub fn apply(&self, resource: &str, mut object: Value) {
        {
            let mut state = self.lock();
            state.revision += 1;
            let revision = state.revision;
            let namespace = object["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let key = (resource.to_owned(), namespace, name_of(&object).to_owned());
            let metadata = &mut object["metadata"];
            metadata["resourceVersion"] = json!(revision.to_string());
            if metadata.get("uid").is_none() {
                metadata["uid"] = json!(format!("uid-{revision}"));
            }
            let kind = if state.objects.contains_key(&key) {
                "MODIFIED"
            } else {
                "ADDED"
            };
            state.objects.insert(key.clone(), object.clone());
            state.history.push(Change {
                revision,
                key,
                kind,
                object,
            });
        }
        let _ = self.changes.send(());
    }

    /// Deletes an object, if it exists.
    pub fn delete(&self, resource: &str, namespace: &str, name: &str) {
        {
            let mut state = self.lock();
            let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
            let Some(mut object) = state.objects.remove(&key) else {
                return;
            };
            state.revision += 1;
            let revision = state.revision;
            object["metadata"]["resourceVersion"] = json!(revision.to_string());
            state.history.push(Change {
                revision,
                key,
                kind: "DELETED",
                object,
            });
        }
        let _ = self.changes.send(());
    }

    /// One object as stored now.
    pub fn object(&self, resource: &str, namespace: &str, name: &str) -> Option<Value> {
        let key = (resource.to_owned(), namespace.to_owned(), name.to_owned());
        self.lock().objects.get(&key).cloned()
    }

    /// Forgets the history up to now, as etcd compaction does: a watch or continue token from before gets
    /// 410 Expired and the client must list again.
    pub fn compact(&self) {
        let mut state = self.lock();
        state.oldest = state.revision + 1;
    }

    /// Ends every open watch, as a restarted API server or a dropped connection would.
    pub fn cut_watches(&self) {
        self.lock().watch_generation += 1;
        let _ = self.changes.send(());
    }

    /// Makes every call answer 500 (or stop doing so).
    pub fn set_failing(&self, failing: bool) {
        self.lock().failing = failing;
        if failing {
            self.cut_watches();
        }
    }

    /// Delays lists of `namespace` ("" for cluster-wide lists).
    pub fn set_list_latency(&self, namespace: &str, latency: Duration) {
        self.lock()
            .list_latency
            .insert(namespace.to_owned(), latency);
    }

    pub fn calls(&self) -> Vec<Call> {
        self.lock().calls.clone()
    }

    pub fn accept_token(&self, token: &str, user: Value) {
        self.lock().tokens.insert(token.to_owned(), user);
    }

    pub fn allow(&self, user: &str, what: &str) {
        self.lock().allowed.push((user.to_owned(), what.to_owned()));
    }

    pub fn token_reviews(&self) -> Vec<Value> {
        self.lock().token_reviews.clone()
    }

    pub fn access_reviews(&self) -> Vec<Value> {
        self.lock().access_reviews.clone()
    }

    fn record(&self, method: &Method, path: &str, query: &str, status: u16) {
        self.lock().calls.push(Call {
            at: Instant::now(),
            method: method.to_string(),
            path: path.to_owned(),
            query: query.to_owned(),
            status,
        });
    }
}

async fn answer(State(fake): State<FakeKube>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let query = request.uri().query().unwrap_or_default().to_owned();
    let body = axum::body::to_bytes(request.into_body(), 1 << 20)
        .await
        .unwrap_or_default();
    let response = route(&fake, &method, &path, &query, &body).await;
    fake.record(&method, &path, &query, response.status().as_u16());
    response
}

async fn route(fake: &FakeKube, method: &Method, path: &str, query: &str, body: &[u8]) -> Response {
    if fake.lock().failing {
        return status(500, "InternalError", "etcdserver: request timed out");
    }
    let review = || serde_json::from_slice::<Value>(body).unwrap_or_default();
    match (method, path) {
        (&Method::POST, "/apis/authentication.k8s.io/v1/tokenreviews") => {
            let latency = fake.lock().token_review_latency;
            if let Some(latency) = latency {
                {
                    let mut state = fake.lock();
                    state.token_reviews_waiting += 1;
                    state.most_token_reviews_waiting = state
                        .most_token_reviews_waiting
                        .max(state.token_reviews_waiting);
                }
                tokio::time::sleep(latency).await;
                fake.lock().token_reviews_waiting -= 1;
            }
            return token_review(fake, review());
        }
        (&Method::POST, "/apis/authorization.k8s.io/v1/subjectaccessreviews") => {
            return access_review(fake, review());
        }
        _ => {}
    }
    let Some(target) = parse_path(path) else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    if method != Method::GET {
        return status(405, "MethodNotAllowed", "the fake serves reads only");
    }
    let query = query_map(query);
    if let Some(name) = &target.name {
        let key = (
            target.resource.clone(),
            target.namespace.clone(),
            name.clone(),
        );
        return match fake.lock().objects.get(&key) {
            Some(object) => axum::Json(object.clone()).into_response(),
            None => status(
                404,
                "NotFound",
                &format!("{} \"{name}\" not found", target.resource),
            ),
        };
    }
    if query.get("watch").is_some_and(|w| w == "true" || w == "1") {
        return watch(fake, target, &query);
    }
    list(fake, target, &query).await
}

async fn list(fake: &FakeKube, target: Target, query: &HashMap<String, String>) -> Response {
    let latency = fake.lock().list_latency.get(&target.namespace).copied();
    if let Some(latency) = latency {
        tokio::time::sleep(latency).await;
    }
    let state = fake.lock();
    // A continue token is "<revision>/<last name>": every page is served at the first page's revision.
    let (revision, after) = match query.get("continue").and_then(|c| c.split_once('/')) {
        Some((revision, after)) => (revision.parse().unwrap_or(0), Some(after.to_owned())),
        None => (state.revision, None),
    };
    if after.is_some() && revision < state.oldest {
        return status(
            410,
            "Expired",
            "The provided continue parameter is too old to display a consistent list result. \
             You can start a new list without the continue parameter.",
        );
    }
    let only = field_name(query);
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .filter(|l| *l > 0)
        .unwrap_or(usize::MAX);
    let after = after.as_ref().and_then(|a| a.split_once('/'));
    let mut matching = state
        .at(&target.resource, &target.namespace, revision)
        .into_iter()
        .filter(|(key, _)| only.as_ref().is_none_or(|n| *n == key.2))
        .filter(|(key, _)| after.is_none_or(|after| (key.1.as_str(), key.2.as_str()) > after))
        .peekable();
    let mut items = Vec::new();
    let mut last = None;
    while let Some((key, object)) = matching.next_if(|_| items.len() < limit) {
        items.push(object.clone());
        last = Some(key);
    }
    let mut metadata = json!({"resourceVersion": revision.to_string()});
    if let (Some(last), Some(_)) = (last, matching.peek()) {
        metadata["continue"] = json!(format!("{revision}/{}/{}", last.1, last.2));
        metadata["remainingItemCount"] = json!(matching.count());
    }
    for item in &mut items {
        let object = item.as_object_mut().unwrap();
        object.remove("kind");
        object.remove("apiVersion");
    }
    axum::Json(json!({"apiVersion": target.api_version, "kind": format!("{}List", kind_of(&target.resource)),
                      "metadata": metadata, "items": items}))
    .into_response()
}

fn watch(fake: &FakeKube, target: Target, query: &HashMap<String, String>) -> Response {
    let from: u64 = query
        .get("resourceVersion")
        .and_then(|r| r.parse().ok())
        .unwrap_or(0);
    let bookmarks = query
        .get("allowWatchBookmarks")
        .is_some_and(|b| b == "true");
    let timeout = query
        .get("timeoutSeconds")
        .and_then(|t| t.parse().ok())
        .map_or(Duration::from_secs(1800), Duration::from_secs);
    let only = field_name(query);
    let (generation, oldest, bookmark_interval) = {
        let state = fake.lock();
        (
            state.watch_generation,
            state.oldest,
            state.bookmark_interval,
        )
    };
    let line = |event: Value| Ok::<_, std::io::Error>(format!("{event}\n"));
    if from < oldest {
        let expired = status_object(
            410,
            "Expired",
            &format!("too old resource version: {from} ({})", oldest - 1),
        );
        let body = Body::from_stream(futures::stream::iter([line(
            json!({"type": "ERROR", "object": expired}),
        )]));
        return ([("content-type", "application/json")], body).into_response();
    }
    let fake = fake.clone();
    let deadline = tokio::time::Instant::now() + timeout;
    let changes = fake.changes.subscribe();
    let kind = kind_of(&target.resource);
    let stream = futures::stream::unfold(
        (fake, changes, from),
        move |(fake, mut changes, mut sent)| {
            let target_resource = target.resource.clone();
            let namespace = target.namespace.clone();
            let api_version = target.api_version.clone();
            let kind = kind.clone();
            let only = only.clone();
            async move {
                loop {
                    let events: Vec<Value> = {
                        let state = fake.lock();
                        if state.watch_generation != generation || state.failing {
                            return None;
                        }
                        let pending: Vec<Value> = state
                            .history
                            .iter()
                            .filter(|c| c.revision > sent)
                            .filter(|c| c.key.0 == target_resource)
                            .filter(|c| namespace.is_empty() || c.key.1 == namespace)
                            .filter(|c| only.as_ref().is_none_or(|n| *n == c.key.2))
                            .map(|c| json!({"type": c.kind, "object": c.object}))
                            .collect();
                        sent = state.revision;
                        pending
                    };
                    if !events.is_empty() {
                        let text: String = events.iter().map(|e| format!("{e}\n")).collect();
                        return Some((Ok(text), (fake, changes, sent)));
                    }
                    let tick = bookmark_interval.filter(|_| bookmarks).unwrap_or(timeout);
                    tokio::select! {
                        _ = changes.recv() => {}
                        _ = tokio::time::sleep_until(deadline) => return None,
                        _ = tokio::time::sleep(tick), if bookmarks => {
                            let bookmark = json!({"type": "BOOKMARK", "object": {
                                "kind": kind, "apiVersion": api_version,
                                "metadata": {"resourceVersion": sent.to_string()}}});
                            return Some((line(bookmark), (fake, changes, sent)));
                        }
                    }
                }
            }
        },
    );
    (
        [("content-type", "application/json")],
        Body::from_stream(stream),
    )
        .into_response()
}

fn token_review(fake: &FakeKube, review: Value) -> Response {
    let mut state = fake.lock();
    state.token_reviews.push(review.clone());
    let token = review["spec"]["token"].as_str().unwrap_or_default();
    let status = match state.tokens.get(token) {
        Some(user) => {
            json!({"authenticated": true, "user": user, "audiences": ["https://kubernetes.default.svc"]})
        }
        None => json!({"authenticated": false}),
    };
    axum::Json(
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                      "metadata": {}, "spec": review["spec"], "status": status}),
    )
    .into_response()
}

fn access_review(fake: &FakeKube, review: Value) -> Response {
    let mut state = fake.lock();
    state.access_reviews.push(review["spec"].clone());
    if state.access_review_fails {
        return status(500, "InternalError", "etcdserver: request timed out");
    }
    let spec = &review["spec"];
    let user = spec["user"].as_str().unwrap_or_default();
    let what = match (&spec["resourceAttributes"], &spec["nonResourceAttributes"]) {
        (Value::Object(r), _) => format!(
            "{}/{}",
            r["resource"].as_str().unwrap_or_default(),
            r.get("subresource")
                .and_then(Value::as_str)
                .unwrap_or_default()
        ),
        (_, n) => n["path"].as_str().unwrap_or_default().to_owned(),
    };
    let allowed = state.allowed.iter().any(|(u, w)| u == user && *w == what);
    axum::Json(
        json!({"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                      "metadata": {}, "spec": spec, "status": {"allowed": allowed}}),
    )
    .into_response()
}

/// Named objects of the Sidecar layout, in the shapes the API serves.
pub mod objects {
    use serde_json::{Value, json};

    pub const SECONDARY: &str = "security-server-sidecar-secondary";
    pub const REPLICA_SET: &str = "security-server-sidecar-secondary-7d9f8";

    /// A Secondary pod: Running and Ready at `ip`, owned by the Secondary ReplicaSet.
    pub fn secondary_pod(namespace: &str, name: &str, ip: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": namespace,
                            "creationTimestamp": "2026-01-01T00:00:00Z",
                            "labels": {"run": SECONDARY},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                                                 "name": REPLICA_SET, "uid": "rs", "controller": true}]},
               "spec": {"containers": [{"name": "security-server", "image": "niis/xroad-security-server-sidecar:7.6.2"}]},
               "status": {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}],
                          "conditions": [{"type": "Ready", "status": "True",
                                          "lastTransitionTime": "2026-01-01T00:00:30Z"}],
                          "containerStatuses": [{"name": "security-server", "ready": true, "restartCount": 0,
                                                 "image": "niis/xroad-security-server-sidecar:7.6.2", "imageID": "",
                                                 "state": {"running": {"startedAt": "2026-01-01T00:00:10Z"}}}]}})
    }

    /// `pod` with its container crash-looping from now on, as the kubelet reports it.
    pub fn crash_looping(mut pod: Value) -> Value {
        let status = &mut pod["status"];
        status["conditions"][0]["status"] = json!("False");
        // Whole seconds, as kube-apiserver writes times.
        let now = k8s_openapi::jiff::Timestamp::now().as_second();
        status["conditions"][0]["lastTransitionTime"] = json!(
            k8s_openapi::jiff::Timestamp::from_second(now)
                .unwrap()
                .to_string()
        );
        status["containerStatuses"][0]["ready"] = json!(false);
        status["containerStatuses"][0]["restartCount"] = json!(5);
        status["containerStatuses"][0]["state"] = json!({"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting failed container"}});
        pod
    }

    /// The Secondary Deployment with `replicas`.
    pub fn secondary_deployment(namespace: &str, replicas: u32) -> Value {
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": SECONDARY, "namespace": namespace},
               "spec": {"replicas": replicas, "selector": {"matchLabels": {"run": SECONDARY}},
                        "template": {"metadata": {"labels": {"run": SECONDARY}},
                                     "spec": {"containers": [{"name": "security-server", "image": "niis/xroad-security-server-sidecar:7.6.2"}]}}}})
    }
}

/// A cluster of the size users run, in the shapes `kubectl get -o json` prints (managed fields, specs and
/// statuses as the kubelet and controllers write them), for scale tests and benches.
pub mod cluster {
    use serde_json::{Value, json};

    /// Pods per Deployment, and per Node.
    pub const PODS_PER_DEPLOYMENT: usize = 10;
    pub const PODS_PER_NODE: usize = 40;

    fn managed_fields(manager: &str) -> Value {
        json!([{"manager": manager, "operation": "Update", "apiVersion": "v1", "time": "2026-01-01T00:00:00Z",
                "fieldsType": "FieldsV1", "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}},
                "f:ownerReferences": {".": {}, "k:{\"uid\":\"rs\"}": {}}}, "f:spec": {"f:containers": {"k:{\"name\":\"app\"}": {
                ".": {}, "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:ports": {}, "f:resources": {}}}}}},
              {"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "time": "2026-01-01T00:00:30Z",
               "fieldsType": "FieldsV1", "subresource": "status", "fieldsV1": {"f:status": {"f:conditions": {},
               "f:containerStatuses": {}, "f:hostIP": {}, "f:phase": {}, "f:podIP": {}, "f:podIPs": {}, "f:startTime": {}}}}])
    }

    /// Pod `i` of the cluster: namespace `ns-<i/1000>`, Deployment `app-<i/10>`.
    pub fn pod(i: usize) -> Value {
        let deployment = format!("app-{:04}", i / PODS_PER_DEPLOYMENT);
        let ip = format!("10.{}.{}.{}", 64 + i / 65536, (i / 256) % 256, i % 256);
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": format!("{deployment}-7d9f8c6b5-{i:05}"), "namespace": format!("ns-{:02}", i / 1000),
                            "uid": format!("00000000-0000-0000-0000-{i:012}"), "resourceVersion": "12345",
                            "creationTimestamp": "2026-01-01T00:00:00Z", "generateName": format!("{deployment}-7d9f8c6b5-"),
                            "labels": {"app": deployment, "pod-template-hash": "7d9f8c6b5"},
                            "annotations": {"kubectl.kubernetes.io/restartedAt": "2026-01-01T00:00:00Z"},
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": format!("{deployment}-7d9f8c6b5"),
                                                 "uid": "rs", "controller": true, "blockOwnerDeletion": true}],
                            "managedFields": managed_fields("kube-controller-manager")},
               "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.2.3", "imagePullPolicy": "IfNotPresent",
                                        "ports": [{"containerPort": 8080, "protocol": "TCP"}],
                                        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
                                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"}, "periodSeconds": 10},
                                        "volumeMounts": [{"name": "kube-api-access", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
                                        "terminationMessagePath": "/dev/termination-log", "terminationMessagePolicy": "File"}],
                        "nodeName": format!("node-{:03}", i / PODS_PER_NODE), "restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                        "serviceAccountName": "default", "schedulerName": "default-scheduler", "priority": 0,
                        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                                        {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
                        "volumes": [{"name": "kube-api-access", "projected": {"defaultMode": 420, "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}]},
               "status": {"phase": "Running", "hostIP": "192.168.0.10", "podIP": ip, "podIPs": [{"ip": ip}], "qosClass": "Burstable",
                          "startTime": "2026-01-01T00:00:05Z",
                          "conditions": [{"type": "Initialized", "status": "True", "lastTransitionTime": "2026-01-01T00:00:05Z"},
                                         {"type": "Ready", "status": "True", "lastTransitionTime": "2026-01-01T00:00:30Z"},
                                         {"type": "ContainersReady", "status": "True", "lastTransitionTime": "2026-01-01T00:00:30Z"},
                                         {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-01-01T00:00:00Z"}],
                          "containerStatuses": [{"name": "app", "ready": true, "started": true, "restartCount": 0,
                                                 "image": "registry.example.com/app:1.2.3",
                                                 "imageID": "registry.example.com/app@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                                                 "containerID": format!("containerd://{i:064}"),
                                                 "state": {"running": {"startedAt": "2026-01-01T00:00:10Z"}}}]}})
    }

    pub fn deployment(d: usize) -> Value {
        let name = format!("app-{d:04}");
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
               "metadata": {"name": name, "namespace": format!("ns-{:02}", d * PODS_PER_DEPLOYMENT / 1000), "uid": format!("d-{d}")},
               "spec": {"replicas": PODS_PER_DEPLOYMENT, "selector": {"matchLabels": {"app": name}},
                        "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "app", "image": "registry.example.com/app:1.2.3"}]}}}})
    }

    pub fn replica_set(d: usize) -> Value {
        let name = format!("app-{d:04}");
        json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
               "metadata": {"name": format!("{name}-7d9f8c6b5"), "namespace": format!("ns-{:02}", d * PODS_PER_DEPLOYMENT / 1000),
                            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": name, "uid": format!("d-{d}"), "controller": true}]},
               "spec": {"replicas": PODS_PER_DEPLOYMENT, "selector": {"matchLabels": {"app": name, "pod-template-hash": "7d9f8c6b5"}},
                        "template": {"metadata": {"labels": {"app": name, "pod-template-hash": "7d9f8c6b5"}}}}})
    }

    pub fn node(n: usize) -> Value {
        json!({"apiVersion": "v1", "kind": "Node",
               "metadata": {"name": format!("node-{n:03}"), "labels": {"kubernetes.io/hostname": format!("node-{n:03}")}},
               "status": {"addresses": [{"type": "InternalIP", "address": format!("192.168.{}.{}", n / 256, n % 256)},
                                        {"type": "Hostname", "address": format!("node-{n:03}")}]}})
    }

    /// `kubectl get nodes,deploy,rs,pods -A -o json` of a cluster of `pods` pods.
    pub fn snapshot(pods: usize) -> Value {
        let deployments = pods.div_ceil(PODS_PER_DEPLOYMENT);
        let mut items: Vec<Value> = (0..pods.div_ceil(PODS_PER_NODE)).map(node).collect();
        items.extend((0..deployments).map(deployment));
        items.extend((0..deployments).map(replica_set));
        items.extend((0..pods).map(pod));
        json!({"apiVersion": "v1", "items": items, "kind": "List", "metadata": {"resourceVersion": ""}})
    }
}
