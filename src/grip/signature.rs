//! `Grip-Sig`: proof that a request came through a configured proxy.
//!
//! Pushpin signs every request it forwards with a JWT (HS256 with its
//! `sig_key`, `iss` = `sig_iss`); Fastly Fanout signs with ES256. Only a
//! token that verifies against a configured key, with the configured issuer
//! and an unexpired `exp`, makes a request "proxied". Anything else,
//! including a forged or expired header, is served in direct mode, so a
//! client can never obtain GRIP instructions by sending the header itself.

use jsonwebtoken::{Algorithm, DecodingKey, Validation};

use crate::config::{ConfigError, GripProxyConfig, Secret, decode_key};

/// Seconds of clock skew tolerated on `exp`.
const LEEWAY_SECS: u64 = 5;

struct Key {
    key: DecodingKey,
    validation: Validation,
}

/// Checks `Grip-Sig` against every configured proxy.
pub(crate) struct Verifier {
    keys: Vec<Key>,
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("keys", &self.keys.len())
            .finish()
    }
}

impl Verifier {
    /// One key per proxy: `verify_key`, or else the symmetric `key`.
    pub(crate) fn new(proxies: &[GripProxyConfig]) -> Result<Verifier, ConfigError> {
        let mut keys = Vec::new();
        for (index, proxy) in proxies.iter().enumerate() {
            let bad = |why: String| ConfigError::new(format!("grip_proxies[{index}]"), why);
            let configured = proxy
                .verify_key
                .as_ref()
                .or(proxy.key.as_ref())
                .map(Secret::expose)
                .ok_or_else(|| bad("no key to verify Grip-Sig".into()))?;
            let (key, algorithm) = if configured.contains("-----BEGIN") {
                let key = DecodingKey::from_ec_pem(configured.as_bytes())
                    .map_err(|e| bad(format!("verify_key is not an EC public key: {e}")))?;
                (key, Algorithm::ES256)
            } else {
                (
                    DecodingKey::from_secret(
                        &decode_key(configured).map_err(|why| bad(why.to_string()))?,
                    ),
                    Algorithm::HS256,
                )
            };
            let mut validation = Validation::new(algorithm);
            validation.set_required_spec_claims(&["exp"]);
            validation.leeway = LEEWAY_SECS;
            validation.validate_aud = false;
            if let Some(iss) = &proxy.verify_iss {
                validation.set_issuer(&[iss]);
            }
            keys.push(Key { key, validation });
        }
        Ok(Verifier { keys })
    }

    /// Which configured proxy (its index) `grip_sig`, the header's value,
    /// verifies against; the first, when proxies share a key.
    pub(crate) fn proxy(&self, grip_sig: Option<&str>) -> Option<usize> {
        let token = grip_sig.map(str::trim).filter(|token| !token.is_empty())?;
        self.keys.iter().position(|key| {
            jsonwebtoken::decode::<serde_json::Value>(token, &key.key, &key.validation).is_ok()
        })
    }

    #[cfg(test)]
    fn verifies(&self, grip_sig: Option<&str>) -> bool {
        self.proxy(grip_sig).is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{EncodingKey, Header};

    fn pushpin(key: &str) -> GripProxyConfig {
        GripProxyConfig {
            control_uri: "http://127.0.0.1:5561".into(),
            verify_iss: Some("pushpin".into()),
            verify_key: Some(key.into()),
            ..GripProxyConfig::default()
        }
    }

    fn token(iss: &str, key: &[u8], valid_secs: i64) -> String {
        let exp = jsonwebtoken::get_current_timestamp() as i64 + valid_secs;
        jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &serde_json::json!({ "iss": iss, "exp": exp }),
            &EncodingKey::from_secret(key),
        )
        .expect("token")
    }

    #[test]
    fn only_valid_unexpired_tokens_from_the_right_issuer_verify() {
        let verifier = Verifier::new(&[pushpin("pushpin-sig-key-0123456789")]).expect("verifier");
        assert!(verifier.verifies(Some(&token("pushpin", b"pushpin-sig-key-0123456789", 3600))));
        assert!(!verifier.verifies(Some(&token("pushpin", b"wrong", 3600))));
        assert!(!verifier.verifies(Some(&token("other", b"pushpin-sig-key-0123456789", 3600))));
        assert!(!verifier.verifies(Some(&token("pushpin", b"pushpin-sig-key-0123456789", -60))));
        assert!(!verifier.verifies(Some("forged.by.client")));
        assert!(!verifier.verifies(None));
    }

    #[test]
    fn base64_keys_and_fastlys_es256_key_load() {
        let verifier = Verifier::new(&[pushpin("base64:c2VjcmV0")]).expect("verifier");
        assert!(verifier.verifies(Some(&token("pushpin", b"secret", 60))));
        let fastly = GripProxyConfig {
            control_uri: "https://api.fastly.com/service/x".into(),
            verify_key: Some(crate::config::FASTLY_PUBLIC_KEY.into()),
            verify_iss: Some("fastly:x".into()),
            ..GripProxyConfig::default()
        };
        let verifier = Verifier::new(&[fastly]).expect("the Fastly key parses");
        assert!(!verifier.verifies(Some(&token("fastly:x", b"not-es256", 60))));
    }
}
