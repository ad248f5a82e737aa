//! TLS for the `postgres` capability, with libpq's `sslmode` meanings: `disable` (never),
//! `prefer` (the default: TLS when the server offers it), `require` (TLS, certificate not
//! checked, as libpq does), and `verify-ca`/`verify-full` (certificate and host name
//! checked against `sslrootcert`, or the system's roots when none is named; both are
//! checked as strictly as `verify-full`). tokio-postgres knows only the first three, so
//! the URL's `sslmode` and `sslrootcert` are taken out here before it parses the rest.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

/// How a connection uses TLS, from the URL's `sslmode` and `sslrootcert`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsChoice {
    pub mode: SslMode,
    /// Check the server's certificate and name (verify-ca, verify-full).
    pub verify: bool,
    pub root_cert: Option<String>,
}

/// Splits the TLS parameters off a URL: the URL tokio-postgres parses, and the choice.
pub fn split_url(url: &str) -> Result<(String, TlsChoice), String> {
    let mut choice = TlsChoice {
        mode: SslMode::Prefer,
        verify: false,
        root_cert: None,
    };
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), choice));
    };
    let mut kept = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "sslmode" => {
                (choice.mode, choice.verify) = match value {
                    "disable" => (SslMode::Disable, false),
                    "allow" | "prefer" => (SslMode::Prefer, false),
                    "require" => (SslMode::Require, false),
                    "verify-ca" | "verify-full" => (SslMode::Require, true),
                    other => {
                        return Err(format!(
                            "sslmode `{other}` is not one of disable, prefer, require, verify-ca, verify-full"
                        ));
                    }
                }
            }
            "sslrootcert" => choice.root_cert = Some(percent_decode(value)),
            _ => kept.push(pair),
        }
    }
    let url = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((url, choice))
}

/// The connector for a choice. Errors name the root certificate file.
pub fn connector(choice: &TlsChoice) -> Result<MakeRustlsConnect, String> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?;
    let config = if choice.verify {
        let mut roots = RootCertStore::empty();
        match &choice.root_cert {
            Some(path) => {
                let pem = std::fs::read(path).map_err(|e| format!("sslrootcert {path}: {e}"))?;
                let certs = rustls::pki_types::pem::PemObject::pem_slice_iter(&pem)
                    .collect::<Result<Vec<CertificateDer<'static>>, _>>()
                    .map_err(|e| format!("sslrootcert {path}: not PEM certificates ({e})"))?;
                let (added, _) = roots.add_parsable_certificates(certs);
                if added == 0 {
                    return Err(format!("sslrootcert {path} holds no usable certificate"));
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                roots.add_parsable_certificates(found.certs);
            }
        }
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly(provider)))
            .with_no_client_auth()
    };
    Ok(MakeRustlsConnect::new(config))
}

/// libpq's `require`: the channel is encrypted and its handshake signed by the key of the
/// certificate presented, but whose certificate it is goes unchecked.
#[derive(Debug)]
struct EncryptOnly(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn percent_decode(s: &str) -> String {
    let mut out = Vec::with_capacity(s.len());
    let bytes = s.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(v) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(v);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ssl_parameters_are_taken_out_of_the_url() {
        let (url, choice) = split_url(
            "postgres://u@h/db?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        )
        .unwrap();
        assert_eq!(url, "postgres://u@h/db?application_name=x");
        assert_eq!(choice.mode, SslMode::Require);
        assert!(choice.verify);
        assert_eq!(choice.root_cert.as_deref(), Some("/etc/ca.pem"));

        let (url, choice) = split_url("postgres://u@h/db").unwrap();
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(choice.mode, SslMode::Prefer);
        assert!(!choice.verify);

        let (url, choice) = split_url("postgres://u@h/db?sslmode=disable").unwrap();
        assert_eq!(url, "postgres://u@h/db");
        assert_eq!(choice.mode, SslMode::Disable);

        assert!(split_url("postgres://u@h/db?sslmode=sometimes").is_err());
    }

    #[test]
    fn every_choice_builds_a_connector() {
        for verify in [false, true] {
            let choice = TlsChoice {
                mode: SslMode::Require,
                verify,
                root_cert: None,
            };
            assert!(connector(&choice).is_ok());
        }
        let missing = TlsChoice {
            mode: SslMode::Require,
            verify: true,
            root_cert: Some("/nonexistent/ca.pem".into()),
        };
        match connector(&missing) {
            Err(e) => assert!(e.contains("/nonexistent/ca.pem"), "{e}"),
            Ok(_) => panic!("a missing sslrootcert was accepted"),
        }
    }
}
