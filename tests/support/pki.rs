//! A throw-away PKI made with rcgen: the requestheader (front-proxy) CA, the client CA and the serving CA of
//! k8s.io/apiserver's delegated authentication and the authenticating-proxy docs, and leaf certificates signed by them. Shared by the unit
//! tests of `auth::trust` (through `#[path]`) and the integration tests.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

/// A certificate authority.
pub struct Ca {
    /// Its certificate, PEM.
    pub pem: String,
    issuer: Issuer<'static, KeyPair>,
}

/// A leaf certificate and its key, PEM.
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Ca {
    pub fn new(common_name: &str) -> Self {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let pem = params.self_signed(&key).unwrap().pem();
        Self {
            pem,
            issuer: Issuer::new(params, key),
        }
    }

    /// A client certificate (client-auth usage) with this CN and organizations.
    pub fn client(&self, common_name: &str, organizations: &[&str]) -> Leaf {
        self.leaf(
            vec![],
            common_name,
            organizations,
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    /// A client certificate whose subject holds several common names, in this order (`/CN=a/CN=b`).
    pub fn client_with_common_names(&self, common_names: &[&str]) -> Leaf {
        let (first, rest) = common_names.split_first().unwrap();
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, *first);
        for name in rest {
            // rcgen keeps one value per attribute type; the CN's OID spelled out adds another.
            params
                .distinguished_name
                .push(DnType::CustomDnType(vec![2, 5, 4, 3]), *name);
        }
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    /// A serving certificate for `names`.
    pub fn server(&self, names: &[&str]) -> Leaf {
        let names = names.iter().map(|n| n.to_string()).collect();
        self.leaf(names, "server", &[], ExtendedKeyUsagePurpose::ServerAuth)
    }

    pub fn leaf(
        &self,
        names: Vec<String>,
        common_name: &str,
        organizations: &[&str],
        usage: ExtendedKeyUsagePurpose,
    ) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let mut params = CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, common_name);
        for organization in organizations {
            params
                .distinguished_name
                .push(DnType::OrganizationName, *organization);
        }
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Leaf {
    /// The certificate as DER, for in-process checks.
    pub fn der(&self) -> rustls::pki_types::CertificateDer<'static> {
        use rustls::pki_types::pem::PemObject;
        rustls::pki_types::CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()
    }
}
