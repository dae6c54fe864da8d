//! The keys of access tokens: Ed25519 (EdDSA) key pairs chosen by `kid`, and the legacy
//! HS256 secret (ADR 0009).
//!
//! The command side signs with its current private key and still accepts tokens of the
//! previous one, so a key is rotated without logging anyone out; the other services hold
//! public keys only and cannot mint tokens. The `kid` of an Ed25519 key is derived from the
//! public key (base64url of the first 12 bytes of its SHA-256), so every service names a key
//! the same way without configuration. An HS256 secret, where still configured, signs only
//! when no Ed25519 key does, and verifies tokens without `kid`: deployments move from it to
//! Ed25519 keeping it as a verifier until the last HS256 token has expired.

use base64::Engine;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::config::Secret;

/// The `kid` given to tokens of the HS256 secret (they carry none when minted before keys).
pub const HS256_KID: &str = "hs256";

/// DER prefix of an Ed25519 `SubjectPublicKeyInfo` (RFC 8410): what precedes the 32 bytes.
const ED25519_SPKI_PREFIX: [u8; 12] = [
    0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00,
];

/// Signs tokens.
pub(super) struct Signer {
    pub kid: String,
    pub algorithm: Algorithm,
    pub key: EncodingKey,
}

/// Verifies the tokens of one key.
pub(super) struct Verifier {
    pub kid: String,
    pub algorithm: Algorithm,
    pub key: DecodingKey,
    /// The raw Ed25519 public key, published in the JWKS.
    pub public: Option<[u8; 32]>,
}

/// A key as read from a PEM file: a private key signs and verifies, a public key verifies.
pub(super) struct PemKey {
    pub signer: Option<Signer>,
    pub verifier: Verifier,
}

/// The `kid` of an Ed25519 public key.
pub fn ed25519_kid(public: &[u8; 32]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&Sha256::digest(public)[..12])
}

/// Reads an Ed25519 key from PEM: `PRIVATE KEY` (PKCS#8) or `PUBLIC KEY` (SPKI).
pub(super) fn ed25519_from_pem(text: &str) -> anyhow::Result<PemKey> {
    let pem = pem::parse(text.trim()).map_err(|e| anyhow::anyhow!("not a PEM key: {e}"))?;
    match pem.tag() {
        "PRIVATE KEY" => {
            let der = pem.contents();
            let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map_err(|e| anyhow::anyhow!("not an Ed25519 PKCS#8 private key: {e}"))?;
            let public: [u8; 32] = pair
                .public_key()
                .as_ref()
                .try_into()
                .map_err(|_| anyhow::anyhow!("an Ed25519 public key has 32 bytes"))?;
            let kid = ed25519_kid(&public);
            Ok(PemKey {
                signer: Some(Signer {
                    kid: kid.clone(),
                    algorithm: Algorithm::EdDSA,
                    key: EncodingKey::from_ed_der(der),
                }),
                verifier: ed25519_verifier(public),
            })
        }
        "PUBLIC KEY" => {
            let der = pem.contents();
            let public = der
                .strip_prefix(&ED25519_SPKI_PREFIX[..])
                .and_then(|key| <[u8; 32]>::try_from(key).ok())
                .ok_or_else(|| anyhow::anyhow!("not an Ed25519 public key"))?;
            Ok(PemKey {
                signer: None,
                verifier: ed25519_verifier(public),
            })
        }
        other => anyhow::bail!("a PEM `{other}` is not an Ed25519 key (PRIVATE KEY or PUBLIC KEY)"),
    }
}

fn ed25519_verifier(public: [u8; 32]) -> Verifier {
    Verifier {
        kid: ed25519_kid(&public),
        algorithm: Algorithm::EdDSA,
        key: DecodingKey::from_ed_der(&public),
        public: Some(public),
    }
}

/// The HS256 secret as signer and verifier.
pub(super) fn hs256(secret: &Secret) -> PemKey {
    PemKey {
        signer: Some(Signer {
            kid: HS256_KID.into(),
            algorithm: Algorithm::HS256,
            key: EncodingKey::from_secret(secret.expose()),
        }),
        verifier: Verifier {
            kid: HS256_KID.into(),
            algorithm: Algorithm::HS256,
            key: DecodingKey::from_secret(secret.expose()),
            public: None,
        },
    }
}

/// A new Ed25519 private key as PEM (PKCS#8), e.g. for `meetings serve`'s first start.
pub fn generate_ed25519_pem() -> String {
    let der = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new())
        .expect("BUG: the system's random source works");
    pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()))
}

/// The raw Ed25519 public key of a PEM key, private (PKCS#8) or public (SPKI).
pub fn ed25519_public(text: &str) -> anyhow::Result<[u8; 32]> {
    ed25519_from_pem(text)?
        .verifier
        .public
        .ok_or_else(|| anyhow::anyhow!("not an Ed25519 key"))
}

/// The public PEM (SPKI) of a private one: what the other services are given.
pub fn public_pem(private_pem: &str) -> anyhow::Result<String> {
    let key = ed25519_from_pem(private_pem)?;
    let public = key
        .verifier
        .public
        .ok_or_else(|| anyhow::anyhow!("not an Ed25519 key"))?;
    let mut der = ED25519_SPKI_PREFIX.to_vec();
    der.extend_from_slice(&public);
    Ok(pem::encode(&pem::Pem::new("PUBLIC KEY", der)))
}

/// One key of a JSON Web Key Set (RFC 7517, RFC 8037).
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct Jwk {
    /// Always `OKP`.
    pub kty: &'static str,
    /// Always `Ed25519`.
    pub crv: &'static str,
    /// Always `EdDSA`.
    pub alg: &'static str,
    /// Always `sig`.
    #[serde(rename = "use")]
    pub key_use: &'static str,
    pub kid: String,
    /// The public key, base64url without padding.
    pub x: String,
}

/// `GET /.well-known/jwks.json`.
#[derive(Debug, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct JwkSet {
    pub keys: Vec<Jwk>,
}

impl Verifier {
    pub(super) fn jwk(&self) -> Option<Jwk> {
        self.public.map(|public| Jwk {
            kty: "OKP",
            crv: "Ed25519",
            alg: "EdDSA",
            key_use: "sig",
            kid: self.kid.clone(),
            x: base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(public),
        })
    }
}
