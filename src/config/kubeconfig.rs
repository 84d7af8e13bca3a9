//! The Prometheus Adapter's `--prometheus-auth-config` and `--prometheus-auth-incluster`: the TLS and
//! credentials of a kubeconfig's current context, or of the pod's ServiceAccount, used towards the metrics
//! backend (client-go's `clientcmd` and `rest.InClusterConfig`, which the Prometheus Adapter builds its backend
//! transport from). The kubeconfig's server address is not used: the backend's URL is.

use std::path::{Path, PathBuf};

use super::{BackendAuth, BackendTls, Material};

/// Where the kubelet mounts a pod's ServiceAccount token and the cluster's CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// The pod's ServiceAccount: its token (re-read as the kubelet rotates it) and the cluster's CA.
pub fn in_cluster() -> (BackendTls, BackendAuth) {
    let dir = Path::new(SERVICE_ACCOUNT_DIR);
    let tls = BackendTls {
        ca: Some(Material::File(dir.join("ca.crt"))),
        ..BackendTls::default()
    };
    let auth = BackendAuth::Bearer {
        token: Material::File(dir.join("token")),
    };
    (tls, auth)
}

/// The TLS and credentials of `path`'s current context.
pub fn from_file(path: &Path) -> Result<(BackendTls, BackendAuth), String> {
    let file = kube::config::Kubeconfig::read_from(path).map_err(|e| e.to_string())?;
    // client-go resolves relative paths against the kubeconfig's directory.
    let dir = path.parent().unwrap_or(Path::new("."));
    let resolve = |p: &str| Material::File(dir.join(PathBuf::from(p)));
    let context_name = file
        .current_context
        .as_deref()
        .ok_or("it has no current-context")?;
    let context = file
        .contexts
        .iter()
        .find(|c| c.name == context_name)
        .and_then(|c| c.context.as_ref())
        .ok_or_else(|| format!("its current-context {context_name:?} is not defined"))?;
    let cluster = file
        .clusters
        .iter()
        .find(|c| c.name == context.cluster)
        .and_then(|c| c.cluster.as_ref())
        .ok_or_else(|| format!("its cluster {:?} is not defined", context.cluster))?;
    let user = match &context.user {
        None => None,
        Some(name) => Some(
            file.auth_infos
                .iter()
                .find(|u| &u.name == name)
                .and_then(|u| u.auth_info.as_ref())
                .ok_or_else(|| format!("its user {name:?} is not defined"))?,
        ),
    };
    let inline = |field: &str, text: &str| {
        use base64::Engine;
        base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map(|bytes| Material::Inline(bytes.into()))
            .map_err(|_| format!("{field} is not base64"))
    };
    let mut tls = BackendTls {
        insecure_skip_verify: cluster.insecure_skip_tls_verify.unwrap_or(false),
        ..BackendTls::default()
    };
    tls.ca = match (
        &cluster.certificate_authority_data,
        &cluster.certificate_authority,
    ) {
        (Some(data), _) => Some(inline("certificate-authority-data", data)?),
        (None, Some(file)) => Some(resolve(file)),
        (None, None) => None,
    };
    let Some(user) = user else {
        return Ok((tls, BackendAuth::None));
    };
    use secrecy::ExposeSecret;
    if user.exec.is_some() || user.auth_provider.is_some() {
        return Err(
            "its user authenticates with an exec plugin or an auth provider, which the backend client does \
             not run: give a token, a token file, a client certificate or a user and password"
                .into(),
        );
    }
    tls.cert = match (&user.client_certificate_data, &user.client_certificate) {
        (Some(data), _) => Some(inline("client-certificate-data", data)?),
        (None, Some(file)) => Some(resolve(file)),
        (None, None) => None,
    };
    tls.key = match (&user.client_key_data, &user.client_key) {
        (Some(data), _) => Some(inline("client-key-data", data.expose_secret())?),
        (None, Some(file)) => Some(resolve(file)),
        (None, None) => None,
    };
    if tls.cert.is_some() != tls.key.is_some() {
        return Err(
            "its user has a client certificate without a key, or a key without a certificate"
                .into(),
        );
    }
    let auth = match (
        &user.token,
        &user.token_file,
        &user.username,
        &user.password,
    ) {
        (Some(token), _, _, _) => BackendAuth::Bearer {
            token: Material::Inline(token.expose_secret().as_bytes().into()),
        },
        (None, Some(file), _, _) => BackendAuth::Bearer {
            token: resolve(file),
        },
        (None, None, Some(username), Some(password)) => BackendAuth::Basic {
            username: username.clone(),
            password: Material::Inline(password.expose_secret().as_bytes().into()),
        },
        _ => BackendAuth::None,
    };
    Ok((tls, auth))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kubeconfig(dir: &Path, user: &str) -> PathBuf {
        let path = dir.join("prometheus.kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1
kind: Config
current-context: prometheus
contexts:
- name: prometheus
  context: {{cluster: monitoring, user: adapter}}
clusters:
- name: monitoring
  cluster: {{server: https://ignored.example, certificate-authority-data: {}}}
users:
- name: adapter
  user: {user}
",
                base64::Engine::encode(&base64::engine::general_purpose::STANDARD, "CA PEM")
            ),
        )
        .unwrap();
        path
    }

    #[test]
    fn inline_data_and_relative_files_of_the_current_context_are_used() {
        let dir = tempfile::tempdir().unwrap();
        let path = kubeconfig(
            dir.path(),
            "{client-certificate: certs/tls.crt, client-key: certs/tls.key, tokenFile: token}",
        );
        let (tls, auth) = from_file(&path).unwrap();
        assert_eq!(tls.ca, Some(Material::Inline(b"CA PEM"[..].into())));
        assert_eq!(
            tls.cert,
            Some(Material::File(dir.path().join("certs/tls.crt")))
        );
        assert_eq!(
            tls.key,
            Some(Material::File(dir.path().join("certs/tls.key")))
        );
        assert_eq!(
            auth,
            BackendAuth::Bearer {
                token: Material::File(dir.path().join("token"))
            }
        );
    }

    #[test]
    fn a_user_and_password_become_basic_auth() {
        let dir = tempfile::tempdir().unwrap();
        let path = kubeconfig(dir.path(), "{username: xroad, password: s3cret}");
        let (_, auth) = from_file(&path).unwrap();
        assert_eq!(
            auth,
            BackendAuth::Basic {
                username: "xroad".into(),
                password: Material::Inline(b"s3cret"[..].into())
            }
        );
    }

    #[test]
    fn an_exec_plugin_is_refused_with_what_to_give_instead() {
        let dir = tempfile::tempdir().unwrap();
        let path = kubeconfig(
            dir.path(),
            "{exec: {apiVersion: client.authentication.k8s.io/v1, command: aws}}",
        );
        assert!(from_file(&path).unwrap_err().contains("exec plugin"));
    }

    #[test]
    fn in_cluster_reads_the_service_account_token_and_ca() {
        let (tls, auth) = in_cluster();
        assert_eq!(
            tls.ca,
            Some(Material::File(
                "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt".into()
            ))
        );
        assert_eq!(
            auth,
            BackendAuth::Bearer {
                token: Material::File("/var/run/secrets/kubernetes.io/serviceaccount/token".into())
            }
        );
    }
}
