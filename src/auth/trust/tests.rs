use super::*;
use axum::http::HeaderValue;

#[path = "../../../tests/support/pki.rs"]
#[allow(dead_code, unreachable_pub)]
mod pki;
use pki::Ca;

/// The ConfigMap kube-apiserver writes when the aggregation layer is configured (kubeadm's values).
fn configmap(client_ca: &Ca, front_proxy_ca: &Ca) -> BTreeMap<String, String> {
    [
        (keys::CLIENT_CA, client_ca.pem.clone()),
        (keys::REQUESTHEADER_CA, front_proxy_ca.pem.clone()),
        (keys::ALLOWED_NAMES, r#"["front-proxy-client"]"#.to_owned()),
        (keys::USERNAME_HEADERS, r#"["X-Remote-User"]"#.to_owned()),
        (keys::GROUP_HEADERS, r#"["X-Remote-Group"]"#.to_owned()),
        (keys::EXTRA_PREFIXES, r#"["X-Remote-Extra-"]"#.to_owned()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

struct Cluster {
    client_ca: Ca,
    front_proxy_ca: Ca,
    trust: Trust,
}

fn cluster() -> Cluster {
    let (client_ca, front_proxy_ca) = (Ca::new("kubernetes"), Ca::new("front-proxy-ca"));
    let trust = Trust::new(
        &configmap(&client_ca, &front_proxy_ca),
        &TrustOverrides::default(),
        1,
    )
    .unwrap();
    Cluster {
        client_ca,
        front_proxy_ca,
        trust,
    }
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut map = HeaderMap::new();
    for (name, value) in pairs {
        map.append(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    map
}

#[test]
fn the_front_proxy_certificate_with_an_allowed_cn_makes_headers_count() {
    let c = cluster();
    let proxy = c.front_proxy_ca.client("front-proxy-client", &[]);
    let identity = c.trust.identify(&[proxy.der()]);
    assert_eq!(
        identity,
        CertificateIdentity {
            front_proxy: true,
            user: None
        }
    );
    let user = c
        .trust
        .header_user(&headers(&[
            (
                "X-Remote-User",
                "system:serviceaccount:kube-system:horizontal-pod-autoscaler",
            ),
            ("X-Remote-Group", "system:serviceaccounts"),
            ("x-remote-group", "system:authenticated"),
            (
                "X-Remote-Extra-Authentication.kubernetes.io%2Fpod-Name",
                "hpa-0",
            ),
            ("X-Remote-Extra-Scopes", "a"),
            ("X-Remote-Extra-scopes", "b"),
        ]))
        .unwrap();
    assert_eq!(
        user.name,
        "system:serviceaccount:kube-system:horizontal-pod-autoscaler"
    );
    assert_eq!(
        user.groups,
        ["system:serviceaccounts", "system:authenticated"]
    );
    assert_eq!(
        user.extra,
        BTreeMap::from([
            (
                "authentication.kubernetes.io/pod-name".to_owned(),
                vec!["hpa-0".to_owned()]
            ),
            ("scopes".to_owned(), vec!["a".to_owned(), "b".to_owned()]),
        ])
    );
}

#[test]
fn a_disallowed_cn_or_another_ca_is_not_the_front_proxy() {
    let c = cluster();
    let wrong_cn = c.front_proxy_ca.client("someone-else", &[]);
    assert!(!c.trust.identify(&[wrong_cn.der()]).front_proxy);
    let other_ca = Ca::new("front-proxy-ca").client("front-proxy-client", &[]);
    assert_eq!(
        c.trust.identify(&[other_ca.der()]),
        CertificateIdentity::default()
    );
    // A client-CA user named like the proxy is a plain user, never the proxy.
    let impostor = c.client_ca.client("front-proxy-client", &[]);
    let identity = c.trust.identify(&[impostor.der()]);
    assert!(!identity.front_proxy);
    assert_eq!(identity.user.unwrap().name, "front-proxy-client");
}

#[test]
fn an_empty_allowed_names_list_allows_any_cn() {
    let c = cluster();
    let mut data = configmap(&c.client_ca, &c.front_proxy_ca);
    data.insert(keys::ALLOWED_NAMES.into(), "[]".into());
    let trust = Trust::new(&data, &TrustOverrides::default(), 2).unwrap();
    let any = c.front_proxy_ca.client("anything", &[]);
    assert!(trust.identify(&[any.der()]).front_proxy);
}

#[test]
fn a_client_certificate_names_its_user_by_cn_and_groups_by_o() {
    let c = cluster();
    let admin = c.client_ca.client("kubernetes-admin", &["system:masters"]);
    assert_eq!(
        c.trust.identify(&[admin.der()]).user,
        Some(UserInfo {
            name: "kubernetes-admin".into(),
            groups: vec!["system:masters".into()],
            ..UserInfo::default()
        })
    );
}

#[test]
fn only_client_auth_certificates_qualify() {
    let c = cluster();
    let server = c.client_ca.server(&["localhost"]);
    assert_eq!(
        c.trust.identify(&[server.der()]),
        CertificateIdentity::default()
    );
}

#[test]
fn without_a_username_header_the_requestheader_step_does_not_apply() {
    let c = cluster();
    assert_eq!(
        c.trust
            .header_user(&headers(&[("X-Remote-Group", "system:masters")])),
        None
    );
    assert_eq!(
        c.trust.header_user(&headers(&[("X-Remote-User", "")])),
        None
    );
}

#[test]
fn stripping_removes_every_front_proxy_header_and_nothing_else() {
    let c = cluster();
    let mut map = headers(&[
        ("X-Remote-User", "a"),
        ("X-Remote-Group", "b"),
        ("X-Remote-Extra-c", "d"),
        ("Accept", "application/json"),
    ]);
    c.trust.strip_headers(&mut map);
    assert_eq!(map.len(), 1);
    assert!(map.contains_key("accept"));
}

#[test]
fn flags_override_single_keys() {
    let c = cluster();
    let overrides = TrustOverrides {
        allowed_names: Some(vec!["aggregator".into()]),
        username_headers: Some(vec!["X-Proxy-User".into()]),
        ..TrustOverrides::default()
    };
    let trust = Trust::new(&configmap(&c.client_ca, &c.front_proxy_ca), &overrides, 3).unwrap();
    let aggregator = c.front_proxy_ca.client("aggregator", &[]);
    assert!(trust.identify(&[aggregator.der()]).front_proxy);
    let user = trust
        .header_user(&headers(&[
            ("X-Remote-User", "ignored"),
            ("X-Proxy-User", "alice"),
        ]))
        .unwrap();
    assert_eq!(user.name, "alice");
}

#[test]
fn unusable_values_name_their_key() {
    let c = cluster();
    let mut data = configmap(&c.client_ca, &c.front_proxy_ca);
    data.insert(keys::GROUP_HEADERS.into(), "X-Remote-Group".into());
    let err = Trust::new(&data, &TrustOverrides::default(), 4).unwrap_err();
    assert_eq!(err.key, keys::GROUP_HEADERS);
    let mut data = configmap(&c.client_ca, &c.front_proxy_ca);
    data.insert(
        keys::CLIENT_CA.into(),
        "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n".into(),
    );
    assert_eq!(
        Trust::new(&data, &TrustOverrides::default(), 5)
            .unwrap_err()
            .key,
        keys::CLIENT_CA
    );
}

#[test]
fn without_a_requestheader_ca_no_header_is_ever_trusted() {
    let c = cluster();
    let mut data = configmap(&c.client_ca, &c.front_proxy_ca);
    data.remove(keys::REQUESTHEADER_CA);
    let trust = Trust::new(&data, &TrustOverrides::default(), 6).unwrap();
    let proxy = c.front_proxy_ca.client("front-proxy-client", &[]);
    assert!(!trust.identify(&[proxy.der()]).front_proxy);
    assert_eq!(trust.header_user(&headers(&[("X-Remote-User", "x")])), None);
}

#[test]
fn a_multi_valued_subject_is_named_by_its_last_common_name_as_go_reads_it() {
    let c = cluster();
    let smuggled = c
        .front_proxy_ca
        .client_with_common_names(&["front-proxy-client", "evil"]);
    assert!(
        !c.trust.identify(&[smuggled.der()]).front_proxy,
        "/CN=front-proxy-client/CN=evil is `evil` to kube-apiserver, not an allowed name"
    );
    let proxy = c
        .front_proxy_ca
        .client_with_common_names(&["evil", "front-proxy-client"]);
    assert!(c.trust.identify(&[proxy.der()]).front_proxy);
    let user = c.client_ca.client_with_common_names(&["bob", "carol"]);
    assert_eq!(c.trust.identify(&[user.der()]).user.unwrap().name, "carol");
}

#[test]
fn front_proxy_headers_are_read_as_kube_apiserver_reads_them() {
    let c = cluster();
    let user = |pairs: &[(&str, &str)]| c.trust.header_user(&headers(pairs));
    assert_eq!(
        user(&[("X-Remote-User", ""), ("X-Remote-User", "mallory")]),
        None,
        "an empty first value is no user; the second value is never read"
    );
    let alice = user(&[
        ("X-Remote-User", "alice"),
        ("X-Remote-User", "mallory"),
        ("X-Remote-Group", ""),
        ("X-Remote-Group", "g"),
        ("X-Remote-Extra-%4A", "v"),
    ])
    .unwrap();
    assert_eq!(alice.name, "alice");
    assert_eq!(alice.groups, ["g"], "empty group values are dropped");
    assert_eq!(
        alice.extra.keys().collect::<Vec<_>>(),
        ["J"],
        "extra keys are lower-cased, then unescaped"
    );
}
