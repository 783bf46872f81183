//! The GRIP proxy entries: `grip_proxies`, the single-URL form `grip_url`
//! (django-grip's `GRIP_URL`), their keys and Fastly's defaults. The GRIP
//! layer (`crate::grip`) reads them; nothing here knows how they are used.

use percent_encoding::percent_decode_str;
use serde::Deserialize;

use super::secret::{Secret, redact_url};

/// Pushpin allows 20 subscriptions per connection; the user channel and
/// the lease channel take two.
pub(crate) const MAX_GRIP_CHANNELS: usize = 18;

/// Channels of a proxied stream that asks for presence, at most: each
/// takes a second subscription for its presence events.
pub(crate) const MAX_GRIP_PRESENCE_CHANNELS: usize = 9;

/// Fastly Fanout's public key for `Grip-Sig` (ES256), as Fastly publishes it.
pub(crate) const FASTLY_PUBLIC_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAECKo5A1ebyFcnmVV8SE5On+8G81Jy
BjSvcrx4VLetWCjuDAmppTo3xM/zz763COTCgHfp/6lPdCyYjjqc+GM7sw==
-----END PUBLIC KEY-----
";

/// One GRIP proxy: where to publish and how to check its `Grip-Sig`.
///
/// Built from `Rocket.toml`; in code, start from `Default` and set fields.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
#[non_exhaustive]
pub struct GripProxyConfig {
    /// The proxy's control endpoint, e.g. `http://127.0.0.1:5561`.
    pub control_uri: String,
    /// Issuer of the JWT that authenticates publishes (with `key`).
    pub control_iss: Option<String>,
    /// Publish credential: with `control_iss`, an HS256 key; alone, a bearer
    /// token (Fastly API token). `base64:` prefix for binary keys. Also
    /// verifies `Grip-Sig` when no `verify_key` is given.
    pub key: Option<Secret>,
    /// Required `iss` of `Grip-Sig` (Pushpin's `sig_iss`, default `pushpin`).
    pub verify_iss: Option<String>,
    /// Key that verifies `Grip-Sig`: an HS256 secret (Pushpin's `sig_key`,
    /// `base64:` allowed) or an ES256 public key in PEM.
    pub verify_key: Option<Secret>,
    /// How publishes authenticate, decided (and `key` decoded) once, when
    /// the configuration is checked.
    #[serde(skip)]
    pub(crate) publish_auth: PublishAuth,
}

/// How publishes to a proxy authenticate.
#[derive(Clone, Default, PartialEq, Eq)]
pub(crate) enum PublishAuth {
    /// No credential: a Pushpin that accepts any publish on its control
    /// port.
    #[default]
    None,
    /// `key` alone: a bearer token (Fastly's API token).
    Bearer(Secret),
    /// `control_iss` and `key`: an HS256 JWT signed with the decoded key.
    Jwt { iss: String, key: Vec<u8> },
}

/// Why a GRIP setting is refused; [`super::ConfigError`] names the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum GripSettingError {
    /// `grip_url` is not an http(s) URL (shown without credentials).
    NotHttp { url: String },
    /// A `grip_url` parameter whose value is not UTF-8.
    NotUtf8 { parameter: String },
    /// A `grip_url` parameter the library does not know.
    UnknownParameter { parameter: String },
    /// A proxy's `control_uri` is not an http(s) URL.
    ControlUriNotHttp { uri: String },
    /// A proxy with neither `verify_key` nor `key`.
    NoVerification { uri: String },
    /// `key` or `verify_key` does not decode.
    Key { name: &'static str, why: KeyError },
    /// `key` or `verify_key` is shorter than [`MIN_KEY_BYTES`].
    KeyTooShort { name: &'static str },
}

impl std::fmt::Display for GripSettingError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GripSettingError::NotHttp { url } => {
                write!(f, "{url:?} must be an http:// or https:// URL")
            }
            GripSettingError::NotUtf8 { parameter } => {
                write!(f, "the value of {parameter:?} is not UTF-8")
            }
            GripSettingError::UnknownParameter { parameter } => write!(
                f,
                "unknown parameter {parameter:?} (expected iss, key, verify-iss, verify-key)"
            ),
            GripSettingError::ControlUriNotHttp { uri } => {
                write!(f, "control_uri {uri:?} must be an http:// or https:// URL")
            }
            GripSettingError::NoVerification { uri } => write!(
                f,
                "{uri} has no way to verify Grip-Sig: set Pushpin's sig_key in pushpin.conf to a \
                 secret of at least {MIN_KEY_BYTES} bytes and verify_key to the same, or key; \
                 without it anyone could obtain GRIP instructions"
            ),
            GripSettingError::Key { name, why } => write!(f, "{name}: {why}"),
            GripSettingError::KeyTooShort { name } => write!(
                f,
                "{name} must be at least {MIN_KEY_BYTES} bytes long, as every other secret \
                 (Pushpin's default sig_key \"changeme\" is public: set sig_key in pushpin.conf \
                 to a secret and {name} to the same)"
            ),
        }
    }
}

impl std::error::Error for GripSettingError {}

/// Why a configured key does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyError {
    /// Empty.
    Empty,
    /// `base64:` followed by something else.
    BadBase64,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            KeyError::Empty => "must not be empty",
            KeyError::BadBase64 => "invalid base64 after \"base64:\"",
        })
    }
}

impl std::error::Error for KeyError {}

impl std::fmt::Debug for GripProxyConfig {
    /// The control URI without credentials; the keys are `***`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GripProxyConfig")
            .field("control_uri", &redact_url(&self.control_uri))
            .field("control_iss", &self.control_iss)
            .field("key", &self.key)
            .field("verify_iss", &self.verify_iss)
            .field("verify_key", &self.verify_key)
            .finish()
    }
}

/// Whether `url` is an absolute `http://` or `https://` URL.
fn is_http_url(url: &str) -> bool {
    url.starts_with("http://") || url.starts_with("https://")
}

/// Parses the single-URL form (`GRIP_URL`): the query parameters `iss`,
/// `key`, `verify-iss` and `verify-key` become the entry's fields.
pub(super) fn parse_grip_url(url: &str) -> Result<GripProxyConfig, GripSettingError> {
    let (base, query) = url.split_once('?').unwrap_or((url, ""));
    if !is_http_url(base) {
        return Err(GripSettingError::NotHttp {
            url: redact_url(url),
        });
    }
    let mut proxy = GripProxyConfig {
        control_uri: base.trim_end_matches('/').to_owned(),
        ..GripProxyConfig::default()
    };
    for pair in query.split('&').filter(|pair| !pair.is_empty()) {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        // `+` stays `+`: raw base64 keys contain it.
        let value = percent_decode_str(value)
            .decode_utf8()
            .map_err(|_| GripSettingError::NotUtf8 {
                parameter: name.to_owned(),
            })?
            .into_owned();
        match name {
            "iss" => proxy.control_iss = Some(value),
            "key" => proxy.key = Some(Secret::new(value)),
            "verify-iss" => proxy.verify_iss = Some(value),
            "verify-key" => proxy.verify_key = Some(Secret::new(value)),
            other => {
                return Err(GripSettingError::UnknownParameter {
                    parameter: other.to_owned(),
                });
            }
        }
    }
    Ok(proxy)
}

/// The shortest GRIP key accepted, in bytes (after `base64:` decoding), as
/// for every other secret.
pub(crate) const MIN_KEY_BYTES: usize = 16;

/// Validates an entry, fills Fastly's defaults and decides how publishes
/// authenticate.
pub(super) fn complete_proxy(proxy: &mut GripProxyConfig) -> Result<(), GripSettingError> {
    proxy.control_uri = proxy.control_uri.trim_end_matches('/').to_owned();
    if !is_http_url(&proxy.control_uri) {
        return Err(GripSettingError::ControlUriNotHttp {
            uri: proxy.control_uri.clone(),
        });
    }
    if let Some(service) = fastly_service(&proxy.control_uri) {
        proxy
            .verify_key
            .get_or_insert_with(|| Secret::new(FASTLY_PUBLIC_KEY));
        proxy
            .verify_iss
            .get_or_insert_with(|| format!("fastly:{service}"));
    }
    if proxy.verify_key.is_none() && proxy.key.is_none() {
        return Err(GripSettingError::NoVerification {
            uri: proxy.control_uri.clone(),
        });
    }
    let mut decoded_key = None;
    for (name, value) in [("key", &proxy.key), ("verify_key", &proxy.verify_key)] {
        if let Some(value) = value {
            let key =
                decode_key(value.expose()).map_err(|why| GripSettingError::Key { name, why })?;
            if key.len() < MIN_KEY_BYTES {
                return Err(GripSettingError::KeyTooShort { name });
            }
            if name == "key" {
                decoded_key = Some(key);
            }
        }
    }
    proxy.publish_auth = match (&proxy.control_iss, &proxy.key, decoded_key) {
        (Some(iss), Some(_), Some(key)) => PublishAuth::Jwt {
            iss: iss.clone(),
            key,
        },
        (None, Some(key), _) => PublishAuth::Bearer(key.clone()),
        _ => PublishAuth::None,
    };
    Ok(())
}

/// `https://api.fastly.com/service/<id>` → `<id>`.
fn fastly_service(control_uri: &str) -> Option<&str> {
    let rest = control_uri.strip_prefix("https://api.fastly.com/service/")?;
    let service = rest.split('/').next()?;
    (!service.is_empty()).then_some(service)
}

/// A key as configured: `base64:<data>` for binary secrets, otherwise the
/// UTF-8 bytes of the string.
pub(crate) fn decode_key(value: &str) -> Result<Vec<u8>, KeyError> {
    match value.strip_prefix("base64:") {
        Some(encoded) => base64_decode(encoded).ok_or(KeyError::BadBase64),
        None if value.is_empty() => Err(KeyError::Empty),
        None => Ok(value.as_bytes().to_vec()),
    }
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    fn value(byte: u8) -> Option<u32> {
        Some(match byte {
            b'A'..=b'Z' => byte - b'A',
            b'a'..=b'z' => byte - b'a' + 26,
            b'0'..=b'9' => byte - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    }
    let digits: Vec<u8> = text
        .bytes()
        .filter(|b| *b != b'=' && !b.is_ascii_whitespace())
        .collect();
    if digits.is_empty() || digits.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(digits.len() * 3 / 4);
    for chunk in digits.chunks(4) {
        let mut acc = 0_u32;
        for (index, byte) in chunk.iter().enumerate() {
            acc |= value(*byte)? << (18 - 6 * index);
        }
        let bytes = acc.to_be_bytes();
        out.extend_from_slice(&bytes[1..chunk.len()]);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grip_url_parameters_become_fields() {
        let proxy = parse_grip_url(
            "http://127.0.0.1:5561/?verify-iss=pushpin&verify-key=base64:c2VjcmV0&iss=me&key=k+y",
        )
        .expect("valid");
        assert_eq!(proxy.control_uri, "http://127.0.0.1:5561");
        assert_eq!(proxy.verify_iss.as_deref(), Some("pushpin"));
        assert_eq!(
            decode_key(proxy.verify_key.as_ref().expect("key").expose()),
            Ok(b"secret".to_vec())
        );
        assert_eq!(proxy.control_iss.as_deref(), Some("me"));
        assert_eq!(proxy.key.as_ref().map(Secret::expose), Some("k+y"));
        assert!(parse_grip_url("ftp://x").is_err());
        assert!(parse_grip_url("http://x?color=red").is_err());
    }

    #[test]
    fn fastly_entries_get_fastlys_key_and_issuer() {
        let mut proxy =
            parse_grip_url("https://api.fastly.com/service/SID123?key=fastly-api-token-0123456789")
                .expect("valid");
        complete_proxy(&mut proxy).expect("complete");
        assert_eq!(proxy.verify_iss.as_deref(), Some("fastly:SID123"));
        assert_eq!(
            proxy.verify_key.as_ref().map(Secret::expose),
            Some(FASTLY_PUBLIC_KEY)
        );
    }

    #[test]
    fn an_entry_that_cannot_verify_grip_sig_is_refused() {
        let mut proxy = parse_grip_url("http://127.0.0.1:5561").expect("valid");
        let why = complete_proxy(&mut proxy).expect_err("unverifiable");
        assert!(why.to_string().contains("sig_key"), "{why}");
    }

    #[test]
    fn short_keys_and_pushpins_public_default_are_refused() {
        for url in [
            "http://127.0.0.1:5561?verify-iss=pushpin&verify-key=changeme",
            "http://127.0.0.1:5561?iss=me&key=short-key",
            "http://127.0.0.1:5561?verify-key=base64:c2VjcmV0",
        ] {
            let mut proxy = parse_grip_url(url).expect("parses");
            let why = complete_proxy(&mut proxy).expect_err("too short");
            assert!(why.to_string().contains("at least 16 bytes"), "{why}");
        }
        let mut proxy =
            parse_grip_url("http://127.0.0.1:5561?verify-key=sixteen-bytes-ok").expect("parses");
        complete_proxy(&mut proxy).expect("16 bytes");
    }

    #[test]
    fn base64_decodes_standard_and_url_safe() {
        assert_eq!(base64_decode("c2VjcmV0"), Some(b"secret".to_vec()));
        assert_eq!(base64_decode("aGk="), Some(b"hi".to_vec()));
        assert_eq!(base64_decode("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(base64_decode("a"), None);
        assert_eq!(base64_decode("!!!!"), None);
    }
}
