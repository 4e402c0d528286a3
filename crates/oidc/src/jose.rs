//! JOSE: signing keys (RS256, ES256, EdDSA) named by their RFC 7638 thumbprint, compact JWS
//! signing and verification, public JWKs, and sealing of private keys at rest.

use std::fmt;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use openssl::hash::MessageDigest;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::sign::Signer;
use opentrusty_core::secret::MasterKey;
use ring::rand::{SecureRandom as _, SystemRandom};
use ring::signature::{self as sig, KeyPair as _};
use ring::{aead, digest, hkdf};
use serde::Deserialize;
use serde_json::{Map, Value};

/// One process-wide source for every nonce and ECDSA k (RSA blinding uses OpenSSL's own).
static RNG: LazyLock<SystemRandom> = LazyLock::new(SystemRandom::new);

/// Private RSA keys are refused above 4096 bits (as ring did before signing moved to OpenSSL),
/// so a stack buffer this size holds any signature we produce.
const MAX_SIGNING_SIGNATURE_LEN: usize = 512;

/// RSA private keys we sign with: 2048 to 4096 bits.
const RSA_SIGNING_BITS: std::ops::RangeInclusive<u32> = 2048..=4096;

/// ring verifies RSA signatures from keys of up to 8192 bits.
const MAX_VERIFY_SIGNATURE_LEN: usize = 1024;

/// Size of newly generated RSA keys: the smallest we accept, and what OIDC relying parties
/// universally support.
const RSA_GENERATED_BITS: u32 = 2048;

pub use opentrusty_core::signing::Algorithm;

/// OIDC at_hash / c_hash: left-most half of the hash of `value` (SHA-256 for RS256/ES256,
/// SHA-512 for EdDSA with Ed25519), base64url without padding.
pub fn half_hash(alg: Algorithm, value: &str) -> String {
    let hash = match alg {
        Algorithm::RS256 | Algorithm::ES256 => &digest::SHA256,
        Algorithm::EdDSA => &digest::SHA512,
    };
    let digest = digest::digest(hash, value.as_bytes());
    let bytes = digest.as_ref();
    URL_SAFE_NO_PAD.encode(&bytes[..bytes.len() / 2])
}

/// Why a JOSE operation failed. Messages never carry key material or token contents.
#[derive(Debug, thiserror::Error)]
pub enum JoseError {
    #[error("malformed JWS: {0}")]
    Malformed(&'static str),
    #[error("unsupported JWS algorithm")]
    UnsupportedAlgorithm,
    #[error("JWS header has no kid")]
    MissingKid,
    #[error("no key with the token's kid")]
    UnknownKey,
    #[error("JWS algorithm does not match the key's algorithm")]
    AlgorithmMismatch,
    #[error("JWS signature is invalid")]
    BadSignature,
    #[error("invalid key: {0}")]
    InvalidKey(&'static str),
    #[error("cryptographic operation failed")]
    Crypto,
    #[error("sealed key cannot be opened (wrong master key, wrong key id, or corrupted)")]
    Decrypt,
}

/// The public half of a key, kept in the form ring's verifiers take.
#[derive(Clone, PartialEq, Eq)]
enum PublicMaterial {
    /// Big-endian modulus and exponent without leading zero bytes, as JWKs carry them.
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// Uncompressed SEC1 point (0x04 || x || y).
    P256([u8; 65]),
    Ed25519([u8; 32]),
}

impl PublicMaterial {
    fn alg(&self) -> Algorithm {
        match self {
            PublicMaterial::Rsa { .. } => Algorithm::RS256,
            PublicMaterial::P256(_) => Algorithm::ES256,
            PublicMaterial::Ed25519(_) => Algorithm::EdDSA,
        }
    }

    /// RFC 7638: SHA-256 over the required members in lexicographic order with no whitespace.
    /// Base64url values never need JSON escaping, so the canonical form can be written directly.
    fn thumbprint(&self) -> String {
        let canonical = match self {
            PublicMaterial::Rsa { n, e } => format!(
                r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(e),
                URL_SAFE_NO_PAD.encode(n)
            ),
            PublicMaterial::P256(point) => {
                let (x, y) = p256_coordinates(point);
                format!(
                    r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                    URL_SAFE_NO_PAD.encode(x),
                    URL_SAFE_NO_PAD.encode(y)
                )
            }
            PublicMaterial::Ed25519(x) => format!(
                r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#,
                URL_SAFE_NO_PAD.encode(x)
            ),
        };
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, canonical.as_bytes()))
    }

    fn jwk(&self, kid: &str) -> Value {
        let alg = self.alg();
        let mut jwk = Map::new();
        let mut put = |name: &str, value: String| {
            jwk.insert(name.to_owned(), Value::String(value));
        };
        put("kid", kid.to_owned());
        put("alg", alg.as_str().to_owned());
        put("use", "sig".to_owned());
        match self {
            PublicMaterial::Rsa { n, e } => {
                put("kty", "RSA".to_owned());
                put("n", URL_SAFE_NO_PAD.encode(n));
                put("e", URL_SAFE_NO_PAD.encode(e));
            }
            PublicMaterial::P256(point) => {
                let (x, y) = p256_coordinates(point);
                put("kty", "EC".to_owned());
                put("crv", "P-256".to_owned());
                put("x", URL_SAFE_NO_PAD.encode(x));
                put("y", URL_SAFE_NO_PAD.encode(y));
            }
            PublicMaterial::Ed25519(x) => {
                put("kty", "OKP".to_owned());
                put("crv", "Ed25519".to_owned());
                put("x", URL_SAFE_NO_PAD.encode(x));
            }
        }
        Value::Object(jwk)
    }

    fn verify(&self, message: &[u8], signature: &[u8]) -> Result<(), JoseError> {
        let outcome = match self {
            PublicMaterial::Rsa { n, e } => sig::RsaPublicKeyComponents { n, e }.verify(
                &sig::RSA_PKCS1_2048_8192_SHA256,
                message,
                signature,
            ),
            PublicMaterial::P256(point) => {
                sig::UnparsedPublicKey::new(&sig::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
            }
            PublicMaterial::Ed25519(x) => {
                sig::UnparsedPublicKey::new(&sig::ED25519, x).verify(message, signature)
            }
        };
        outcome.map_err(|_| JoseError::BadSignature)
    }
}

fn p256_coordinates(point: &[u8; 65]) -> (&[u8], &[u8]) {
    (&point[1..33], &point[33..65])
}

fn trim_leading_zeros(bytes: &[u8]) -> &[u8] {
    let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
    &bytes[first..]
}

/// A public key to verify with, built from a JWK.
#[derive(Clone)]
pub struct VerifyingKey {
    kid: String,
    material: PublicMaterial,
}

/// Only the identity: the key bytes would swamp every log line that prints a key set.
impl fmt::Debug for VerifyingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyingKey")
            .field("kid", &self.kid)
            .field("alg", &self.alg())
            .finish_non_exhaustive()
    }
}

impl VerifyingKey {
    /// Accepts RSA (RS256, at least 2048 bits), EC P-256 (ES256) and OKP Ed25519 (EdDSA) JWKs.
    /// A JWK without `kid` is named by its RFC 7638 thumbprint, as ours are.
    pub fn from_jwk(jwk: &Value) -> Result<VerifyingKey, JoseError> {
        let jwk = jwk
            .as_object()
            .ok_or(JoseError::InvalidKey("JWK is not a JSON object"))?;
        // A private JWK in a key set is an operator mistake worth surfacing, not silently using.
        if jwk.contains_key("d") {
            return Err(JoseError::InvalidKey("JWK contains private key material"));
        }
        if jwk.get("use").is_some_and(|u| u.as_str() != Some("sig")) {
            return Err(JoseError::InvalidKey("JWK is not a signature key"));
        }
        let text = |name: &str| jwk.get(name).and_then(Value::as_str);
        let material = match text("kty") {
            Some("RSA") => {
                let n = jwk_bytes(jwk, "n")?;
                let e = jwk_bytes(jwk, "e")?;
                let n = trim_leading_zeros(&n);
                let e = trim_leading_zeros(&e);
                let n_bits = match n.first() {
                    Some(&top) => n.len() * 8 - top.leading_zeros() as usize,
                    None => 0,
                };
                if !(2048..=8192).contains(&n_bits) {
                    return Err(JoseError::InvalidKey(
                        "RSA modulus is not 2048 to 8192 bits",
                    ));
                }
                if e.is_empty() {
                    return Err(JoseError::InvalidKey("RSA exponent is zero"));
                }
                PublicMaterial::Rsa {
                    n: n.to_vec(),
                    e: e.to_vec(),
                }
            }
            Some("EC") => {
                if text("crv") != Some("P-256") {
                    return Err(JoseError::InvalidKey("EC curve is not P-256"));
                }
                let x: [u8; 32] = jwk_array(jwk, "x")?;
                let y: [u8; 32] = jwk_array(jwk, "y")?;
                let mut point = [0x04; 65];
                point[1..33].copy_from_slice(&x);
                point[33..].copy_from_slice(&y);
                PublicMaterial::P256(point)
            }
            Some("OKP") => {
                if text("crv") != Some("Ed25519") {
                    return Err(JoseError::InvalidKey("OKP curve is not Ed25519"));
                }
                PublicMaterial::Ed25519(jwk_array(jwk, "x")?)
            }
            _ => return Err(JoseError::InvalidKey("unsupported kty")),
        };
        if let Some(alg) = jwk.get("alg") {
            let alg = alg
                .as_str()
                .and_then(Algorithm::parse)
                .ok_or(JoseError::InvalidKey("unsupported alg"))?;
            if alg != material.alg() {
                return Err(JoseError::InvalidKey("alg does not fit the key type"));
            }
        }
        let kid = match jwk.get("kid") {
            None => material.thumbprint(),
            Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
            Some(_) => return Err(JoseError::InvalidKey("kid is not a non-empty string")),
        };
        Ok(VerifyingKey { kid, material })
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    pub fn alg(&self) -> Algorithm {
        self.material.alg()
    }
}

fn jwk_bytes(jwk: &Map<String, Value>, name: &str) -> Result<Vec<u8>, JoseError> {
    let text = jwk
        .get(name)
        .and_then(Value::as_str)
        .ok_or(JoseError::InvalidKey("JWK lacks a required member"))?;
    URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| JoseError::InvalidKey("JWK member is not base64url"))
}

fn jwk_array<const N: usize>(jwk: &Map<String, Value>, name: &str) -> Result<[u8; N], JoseError> {
    jwk_bytes(jwk, name)?
        .try_into()
        .map_err(|_| JoseError::InvalidKey("JWK coordinate has the wrong length"))
}

enum PrivateKey {
    /// RSA signs through OpenSSL: its RSA-2048 private operation is about twice as fast as
    /// ring's on x86-64 with AVX-512 (docs/benchmarks.md), and RS256 is the default algorithm.
    Rsa {
        key: PKey<Private>,
        modulus_len: usize,
    },
    P256(sig::EcdsaKeyPair),
    Ed25519(sig::Ed25519KeyPair),
}

/// A private signing key, parsed once so that signing does no key decoding.
pub struct SigningKey {
    private: PrivateKey,
    public: VerifyingKey,
    /// The protected header up to the optional `typ`, e.g. `{"alg":"ES256","kid":"…"`.
    header_prefix: String,
}

/// Identity only; ring's key pairs would not print secrets, but this keeps it certain.
impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .field("alg", &self.alg())
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// New random key; returns the key and its private PKCS#8 DER (to be encrypted and stored).
    pub fn generate(alg: Algorithm) -> Result<(SigningKey, Vec<u8>), JoseError> {
        let der = match alg {
            Algorithm::RS256 => generate_rsa_pkcs8()?,
            Algorithm::ES256 => {
                sig::EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &*RNG)
                    .map_err(|_| JoseError::Crypto)?
                    .as_ref()
                    .to_vec()
            }
            Algorithm::EdDSA => sig::Ed25519KeyPair::generate_pkcs8(&*RNG)
                .map_err(|_| JoseError::Crypto)?
                .as_ref()
                .to_vec(),
        };
        let key = Self::from_pkcs8(alg, &der)?;
        Ok((key, der))
    }

    /// Loads a key from PKCS#8 DER. The kid is the RFC 7638 JWK thumbprint (SHA-256, base64url)
    /// of the public key, so it is derived, not stored.
    pub fn from_pkcs8(alg: Algorithm, der: &[u8]) -> Result<SigningKey, JoseError> {
        let (private, material) =
            match alg {
                Algorithm::RS256 => {
                    let (key, material) = rsa_private_key(der)?;
                    let modulus_len = key.size();
                    (PrivateKey::Rsa { key, modulus_len }, material)
                }
                Algorithm::ES256 => {
                    let pair = sig::EcdsaKeyPair::from_pkcs8(
                        &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                        der,
                        &*RNG,
                    )
                    .map_err(|_| JoseError::InvalidKey("not a P-256 PKCS#8 key"))?;
                    let point =
                        pair.public_key().as_ref().try_into().map_err(|_| {
                            JoseError::InvalidKey("unexpected P-256 public key form")
                        })?;
                    (PrivateKey::P256(pair), PublicMaterial::P256(point))
                }
                Algorithm::EdDSA => {
                    // Also takes PKCS#8 v1 (seed only), which is what OpenSSL writes, so keys made
                    // elsewhere can be imported; v2 documents still get their public key checked.
                    let pair = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                        .map_err(|_| JoseError::InvalidKey("not an Ed25519 PKCS#8 key"))?;
                    let x =
                        pair.public_key().as_ref().try_into().map_err(|_| {
                            JoseError::InvalidKey("unexpected Ed25519 public key form")
                        })?;
                    (PrivateKey::Ed25519(pair), PublicMaterial::Ed25519(x))
                }
            };
        let kid = material.thumbprint();
        let header_prefix = format!(r#"{{"alg":"{}","kid":"{kid}""#, alg.as_str());
        Ok(SigningKey {
            private,
            public: VerifyingKey { kid, material },
            header_prefix,
        })
    }

    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    pub fn alg(&self) -> Algorithm {
        self.public.alg()
    }

    /// Public JWK: {"kty","kid","alg","use":"sig", ...} with n/e (RSA), crv "P-256" + x/y (EC),
    /// crv "Ed25519" + x (OKP).
    pub fn public_jwk(&self) -> Value {
        self.public.material.jwk(&self.public.kid)
    }

    pub fn verifying_key(&self) -> VerifyingKey {
        self.public.clone()
    }

    /// Compact JWS over the JSON serialisation of `claims`, protected header {"alg","kid","typ"}
    /// (typ only when Some, e.g. "at+jwt" or "JWT"). Claims must be a JSON object, as
    /// [`verify`] demands.
    pub fn sign(&self, typ: Option<&str>, claims: &Value) -> Result<String, JoseError> {
        if !claims.is_object() {
            return Err(JoseError::Malformed("claims are not a JSON object"));
        }
        let mut header = Vec::with_capacity(self.header_prefix.len() + 24);
        header.extend_from_slice(self.header_prefix.as_bytes());
        if let Some(typ) = typ {
            header.extend_from_slice(br#","typ":"#);
            serde_json::to_writer(&mut header, typ)
                .map_err(|_| JoseError::Malformed("typ cannot be serialised"))?;
        }
        header.push(b'}');
        let payload = serde_json::to_vec(claims)
            .map_err(|_| JoseError::Malformed("claims cannot be serialised"))?;

        let mut token = String::with_capacity(
            base64_len(header.len())
                + base64_len(payload.len())
                + base64_len(self.signature_len())
                + 2,
        );
        URL_SAFE_NO_PAD.encode_string(&header, &mut token);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let mut buffer = [0u8; MAX_SIGNING_SIGNATURE_LEN];
        let signature = self.sign_raw(token.as_bytes(), &mut buffer)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(signature, &mut token);
        Ok(token)
    }

    fn signature_len(&self) -> usize {
        match &self.private {
            PrivateKey::Rsa { modulus_len, .. } => *modulus_len,
            PrivateKey::P256(_) | PrivateKey::Ed25519(_) => 64,
        }
    }

    fn sign_raw<'b>(
        &self,
        message: &[u8],
        buffer: &'b mut [u8; MAX_SIGNING_SIGNATURE_LEN],
    ) -> Result<&'b [u8], JoseError> {
        match &self.private {
            PrivateKey::Rsa { key, modulus_len } => {
                let out = buffer.get_mut(..*modulus_len).ok_or(JoseError::Crypto)?;
                let mut signer =
                    Signer::new(MessageDigest::sha256(), key).map_err(|_| JoseError::Crypto)?;
                signer.update(message).map_err(|_| JoseError::Crypto)?;
                let written = signer.sign(out).map_err(|_| JoseError::Crypto)?;
                if written != *modulus_len {
                    return Err(JoseError::Crypto);
                }
                Ok(out)
            }
            PrivateKey::P256(pair) => {
                let signature = pair.sign(&*RNG, message).map_err(|_| JoseError::Crypto)?;
                copy_signature(buffer, signature.as_ref())
            }
            PrivateKey::Ed25519(pair) => copy_signature(buffer, pair.sign(message).as_ref()),
        }
    }
}

fn copy_signature<'b>(
    buffer: &'b mut [u8; MAX_SIGNING_SIGNATURE_LEN],
    signature: &[u8],
) -> Result<&'b [u8], JoseError> {
    let out = buffer.get_mut(..signature.len()).ok_or(JoseError::Crypto)?;
    out.copy_from_slice(signature);
    Ok(out)
}

/// Upper bound of the unpadded base64 length, for sizing buffers.
fn base64_len(bytes: usize) -> usize {
    bytes.div_ceil(3) * 4
}

/// A new RSA-2048 key as PKCS#8 DER, made by OpenSSL (ring cannot generate RSA keys).
fn generate_rsa_pkcs8() -> Result<Vec<u8>, JoseError> {
    let rsa = Rsa::generate(RSA_GENERATED_BITS).map_err(|_| JoseError::Crypto)?;
    let key = PKey::from_rsa(rsa).map_err(|_| JoseError::Crypto)?;
    key.private_key_to_pkcs8().map_err(|_| JoseError::Crypto)
}

/// Parses and checks an RSA private key (PKCS#8 DER, 2048–4096 bits, consistent components)
/// and returns it with its public half in JWK form.
fn rsa_private_key(der: &[u8]) -> Result<(PKey<Private>, PublicMaterial), JoseError> {
    const NOT_RSA: JoseError = JoseError::InvalidKey("not an RSA PKCS#8 key of 2048-4096 bits");
    let key = PKey::private_key_from_pkcs8(der).map_err(|_| NOT_RSA)?;
    let rsa = key.rsa().map_err(|_| NOT_RSA)?;
    if !RSA_SIGNING_BITS.contains(&key.bits()) || !rsa.check_key().unwrap_or(false) {
        return Err(NOT_RSA);
    }
    let material = PublicMaterial::Rsa {
        n: trim_leading_zeros(&rsa.n().to_vec()).to_vec(),
        e: trim_leading_zeros(&rsa.e().to_vec()).to_vec(),
    };
    Ok((key, material))
}

/// A JWS protected header, as far as this provider reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    pub alg: String,
    pub kid: Option<String>,
    pub typ: Option<String>,
}

/// Derived deserialisation refuses duplicate members, which RFC 7515 §5.2 lets us do and which
/// closes the door on parsers disagreeing about which `alg` counts.
#[derive(Deserialize)]
struct RawHeader {
    alg: String,
    kid: Option<String>,
    typ: Option<String>,
    crit: Option<serde::de::IgnoredAny>,
}

fn parse_header(encoded: &str) -> Result<Header, JoseError> {
    let json = URL_SAFE_NO_PAD
        .decode(encoded)
        .map_err(|_| JoseError::Malformed("header is not base64url"))?;
    let raw: RawHeader = serde_json::from_slice(&json)
        .map_err(|_| JoseError::Malformed("header is not a valid JSON object"))?;
    // We implement no extensions, so any listed as critical must make us refuse (RFC 7515 §4.1.11).
    if raw.crit.is_some() {
        return Err(JoseError::Malformed("header lists critical extensions"));
    }
    Ok(Header {
        alg: raw.alg,
        kid: raw.kid,
        typ: raw.typ,
    })
}

/// Parses the protected header without verifying anything.
pub fn decode_header(token: &str) -> Result<Header, JoseError> {
    let (header, _) = token
        .split_once('.')
        .ok_or(JoseError::Malformed("not a compact JWS"))?;
    parse_header(header)
}

/// Verifies a compact JWS: exactly three base64url parts, header alg must be one of ours and
/// equal to the selected key's alg ("none" and anything else refused), the key is chosen by kid
/// (a token without kid is refused), signature checked; returns (header, claims object). Does
/// NOT check exp/iss/aud — callers do. Claims that are not a JSON object are refused.
pub fn verify(token: &str, keys: &[VerifyingKey]) -> Result<(Header, Value), JoseError> {
    const NOT_THREE_PARTS: JoseError = JoseError::Malformed("not a compact JWS of three parts");
    let (signing_input, signature_b64) = token.rsplit_once('.').ok_or(NOT_THREE_PARTS)?;
    let (header_b64, payload_b64) = signing_input.split_once('.').ok_or(NOT_THREE_PARTS)?;
    if payload_b64.contains('.') {
        return Err(NOT_THREE_PARTS);
    }

    let header = parse_header(header_b64)?;
    let alg = Algorithm::parse(&header.alg).ok_or(JoseError::UnsupportedAlgorithm)?;
    let kid = header.kid.as_deref().ok_or(JoseError::MissingKid)?;
    let key = select_key(keys, kid, alg)?;

    // decode_slice wants room for its rounded-up length estimate, hence the slack.
    let mut signature = [0u8; MAX_VERIFY_SIGNATURE_LEN + 3];
    let signature_len = URL_SAFE_NO_PAD
        .decode_slice(signature_b64, &mut signature)
        .map_err(|_| JoseError::Malformed("signature is not base64url of a plausible length"))?;
    let payload = URL_SAFE_NO_PAD
        .decode(payload_b64)
        .map_err(|_| JoseError::Malformed("payload is not base64url"))?;
    key.material.verify(
        signing_input.as_bytes(),
        signature
            .get(..signature_len)
            .ok_or(JoseError::BadSignature)?,
    )?;

    // Parsed only once authenticated: attacker-chosen JSON never reaches the parser.
    let claims: Value = serde_json::from_slice(&payload)
        .map_err(|_| JoseError::Malformed("payload is not JSON"))?;
    if !claims.is_object() {
        return Err(JoseError::Malformed("claims are not a JSON object"));
    }
    Ok((header, claims))
}

/// The key named by `kid` whose algorithm is `alg`. Matching on both means a token can never
/// pick how a key is used, even if a key set reuses a kid across algorithms.
fn select_key<'k>(
    keys: &'k [VerifyingKey],
    kid: &str,
    alg: Algorithm,
) -> Result<&'k VerifyingKey, JoseError> {
    let mut kid_known = false;
    for key in keys.iter().filter(|key| key.kid == kid) {
        if key.alg() == alg {
            return Ok(key);
        }
        kid_known = true;
    }
    Err(if kid_known {
        JoseError::AlgorithmMismatch
    } else {
        JoseError::UnknownKey
    })
}

const SEAL_VERSION: u8 = 1;

/// A constant salt is enough: the master key is already uniformly random, and the salt and info
/// only keep this derived key apart from any other key taken from the same master (RFC 5869 §3.1).
const SEAL_SALT: &[u8] = b"opentrusty/oidc/jose/seal";
const SEAL_INFO: &[u8] = b"opentrusty signing-key encryption v1";
const SEAL_HEADER_LEN: usize = 1 + aead::NONCE_LEN;

fn sealing_key(master: &MasterKey) -> Result<aead::LessSafeKey, JoseError> {
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, SEAL_SALT).extract(master.as_bytes());
    let okm = prk
        .expand(&[SEAL_INFO], &aead::AES_256_GCM)
        .map_err(|_| JoseError::Crypto)?;
    Ok(aead::LessSafeKey::new(aead::UnboundKey::from(okm)))
}

/// Encrypts `plaintext` (a private key) for storage: key = HKDF-SHA256(master key bytes,
/// salt = fixed context, info = "opentrusty signing-key encryption v1"), AES-256-GCM with a
/// random 96-bit nonce, output = version byte 1 || nonce || ciphertext+tag. `aad` binds the
/// ciphertext to its row (the caller passes the kid).
///
/// Random nonces are safe here because an installation seals a handful of keys, far below the
/// 2^32 messages at which 96-bit random nonces start to risk repeating.
pub fn seal(master: &MasterKey, plaintext: &[u8], aad: &[u8]) -> Result<Vec<u8>, JoseError> {
    let key = sealing_key(master)?;
    let mut nonce = [0u8; aead::NONCE_LEN];
    RNG.fill(&mut nonce).map_err(|_| JoseError::Crypto)?;
    let tag_len = key.algorithm().tag_len();
    let mut sealed = Vec::with_capacity(SEAL_HEADER_LEN + plaintext.len() + tag_len);
    sealed.push(SEAL_VERSION);
    sealed.extend_from_slice(&nonce);
    sealed.extend_from_slice(plaintext);
    let tag = key
        .seal_in_place_separate_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(aad),
            &mut sealed[SEAL_HEADER_LEN..],
        )
        .map_err(|_| JoseError::Crypto)?;
    sealed.extend_from_slice(tag.as_ref());
    Ok(sealed)
}

/// Reverses [`seal`]; any mismatch (master key, aad, version, length, content) is `Decrypt`.
pub fn open(master: &MasterKey, sealed: &[u8], aad: &[u8]) -> Result<Vec<u8>, JoseError> {
    let (&version, rest) = sealed.split_first().ok_or(JoseError::Decrypt)?;
    if version != SEAL_VERSION {
        return Err(JoseError::Decrypt);
    }
    let (nonce, ciphertext) = rest
        .split_first_chunk::<{ aead::NONCE_LEN }>()
        .ok_or(JoseError::Decrypt)?;
    let key = sealing_key(master)?;
    if ciphertext.len() < key.algorithm().tag_len() {
        return Err(JoseError::Decrypt);
    }
    let mut buffer = ciphertext.to_vec();
    let plaintext_len = key
        .open_in_place(
            aead::Nonce::assume_unique_for_key(*nonce),
            aead::Aad::from(aad),
            &mut buffer,
        )
        .map_err(|_| JoseError::Decrypt)?
        .len();
    buffer.truncate(plaintext_len);
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// RSA key generation is the slow part of these tests; one key serves them all.
    static RSA: LazyLock<(SigningKey, Vec<u8>)> =
        LazyLock::new(|| SigningKey::generate(Algorithm::RS256).unwrap());

    fn es256() -> SigningKey {
        SigningKey::generate(Algorithm::ES256).unwrap().0
    }

    fn eddsa() -> SigningKey {
        SigningKey::generate(Algorithm::EdDSA).unwrap().0
    }

    fn for_each_key(test: impl Fn(&SigningKey)) {
        test(&RSA.0);
        test(&es256());
        test(&eddsa());
    }

    fn b64(bytes: impl AsRef<[u8]>) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A token with an arbitrary header and payload, validly signed by `signer`.
    fn forge(signer: &SigningKey, header: &[u8], payload: &[u8]) -> String {
        let mut token = format!("{}.{}", b64(header), b64(payload));
        let mut buffer = [0u8; MAX_SIGNING_SIGNATURE_LEN];
        let signature = signer.sign_raw(token.as_bytes(), &mut buffer).unwrap();
        token.push('.');
        token.push_str(&b64(signature));
        token
    }

    fn claims() -> Value {
        json!({"iss": "https://id.example", "sub": "u1", "aud": "c1", "exp": 2_000_000_000u64})
    }

    fn parts(token: &str) -> Vec<String> {
        token.split('.').map(str::to_owned).collect()
    }

    #[test]
    fn algorithm_names_round_trip() {
        for alg in Algorithm::ALL {
            assert_eq!(Algorithm::parse(alg.as_str()), Some(alg));
            assert_eq!(alg.to_string(), alg.as_str());
        }
        for other in ["none", "rs256", "HS256", "PS256", "ES384", "Ed25519", ""] {
            assert_eq!(Algorithm::parse(other), None);
        }
    }

    #[test]
    fn sign_verify_round_trip_each_algorithm() {
        for_each_key(|key| {
            let token = key.sign(Some("at+jwt"), &claims()).unwrap();
            assert_eq!(token.split('.').count(), 3);
            let (header, verified) = verify(&token, &[key.verifying_key()]).unwrap();
            assert_eq!(verified, claims());
            assert_eq!(
                header,
                Header {
                    alg: key.alg().as_str().to_owned(),
                    kid: Some(key.kid().to_owned()),
                    typ: Some("at+jwt".to_owned()),
                }
            );
            assert_eq!(decode_header(&token).unwrap(), header);

            let token = key.sign(None, &claims()).unwrap();
            let (header, _) = verify(&token, &[key.verifying_key()]).unwrap();
            assert_eq!(header.typ, None);
        });
    }

    #[test]
    fn verify_picks_the_key_by_kid_among_several() {
        let (es, ed) = (es256(), eddsa());
        let keys = [
            RSA.0.verifying_key(),
            es.verifying_key(),
            ed.verifying_key(),
        ];
        for key in [&RSA.0, &es, &ed] {
            let token = key.sign(Some("JWT"), &claims()).unwrap();
            assert!(verify(&token, &keys).is_ok());
        }
    }

    #[test]
    fn typ_is_json_escaped() {
        let key = eddsa();
        let typ = "odd\"typ\\";
        let token = key.sign(Some(typ), &claims()).unwrap();
        let (header, _) = verify(&token, &[key.verifying_key()]).unwrap();
        assert_eq!(header.typ.as_deref(), Some(typ));
    }

    #[test]
    fn sign_refuses_non_object_claims() {
        let key = eddsa();
        assert!(matches!(
            key.sign(None, &json!([1, 2])),
            Err(JoseError::Malformed(_))
        ));
    }

    #[test]
    fn rsa_keys_outside_2048_to_4096_bits_or_of_another_type_are_refused() {
        let pkcs8 = |bits| {
            PKey::from_rsa(Rsa::generate(bits).unwrap())
                .unwrap()
                .private_key_to_pkcs8()
                .unwrap()
        };
        for bits in [1024, 1536] {
            assert!(matches!(
                SigningKey::from_pkcs8(Algorithm::RS256, &pkcs8(bits)),
                Err(JoseError::InvalidKey(_))
            ));
        }
        let (_, p256) = SigningKey::generate(Algorithm::ES256).unwrap();
        assert!(matches!(
            SigningKey::from_pkcs8(Algorithm::RS256, &p256),
            Err(JoseError::InvalidKey(_))
        ));
        assert!(SigningKey::from_pkcs8(Algorithm::RS256, b"not DER").is_err());
        // The upper bound is inclusive, and a 4096-bit signature verifies with ring.
        let big = SigningKey::from_pkcs8(Algorithm::RS256, &pkcs8(4096)).unwrap();
        let token = big.sign(Some("JWT"), &claims()).unwrap();
        assert!(verify(&token, &[big.verifying_key()]).is_ok());
    }

    #[test]
    fn verify_refuses_tampered_payload() {
        for_each_key(|key| {
            let token = key.sign(None, &claims()).unwrap();
            let p = parts(&token);
            let forged = b64(br#"{"iss":"https://id.example","sub":"admin"}"#);
            let tampered = format!("{}.{forged}.{}", p[0], p[2]);
            assert!(matches!(
                verify(&tampered, &[key.verifying_key()]),
                Err(JoseError::BadSignature)
            ));
        });
    }

    #[test]
    fn verify_refuses_tampered_signature() {
        for_each_key(|key| {
            let token = key.sign(None, &claims()).unwrap();
            let p = parts(&token);
            let mut signature = URL_SAFE_NO_PAD.decode(&p[2]).unwrap();
            signature[0] ^= 1;
            let tampered = format!("{}.{}.{}", p[0], p[1], b64(&signature));
            assert!(matches!(
                verify(&tampered, &[key.verifying_key()]),
                Err(JoseError::BadSignature)
            ));
            let truncated = format!("{}.{}.{}", p[0], p[1], b64(&signature[..10]));
            assert!(verify(&truncated, &[key.verifying_key()]).is_err());
            let empty = format!("{}.{}.", p[0], p[1]);
            assert!(verify(&empty, &[key.verifying_key()]).is_err());
        });
    }

    #[test]
    fn verify_refuses_unknown_kid_and_missing_kid() {
        let key = es256();
        let other = es256();
        let token = key.sign(None, &claims()).unwrap();
        assert!(matches!(
            verify(&token, &[other.verifying_key()]),
            Err(JoseError::UnknownKey)
        ));
        assert!(matches!(verify(&token, &[]), Err(JoseError::UnknownKey)));

        let no_kid = forge(&key, br#"{"alg":"ES256"}"#, claims().to_string().as_bytes());
        assert!(matches!(
            verify(&no_kid, &[key.verifying_key()]),
            Err(JoseError::MissingKid)
        ));
    }

    #[test]
    fn verify_refuses_a_key_whose_material_differs_from_its_kid() {
        // Same kid, different key: the signature must still be checked against the listed key.
        let key = es256();
        let impostor = es256();
        let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, key.kid());
        let token = forge(
            &impostor,
            header.as_bytes(),
            claims().to_string().as_bytes(),
        );
        assert!(matches!(
            verify(&token, &[key.verifying_key()]),
            Err(JoseError::BadSignature)
        ));
    }

    #[test]
    fn verify_refuses_alg_none_and_foreign_algorithms() {
        let key = es256();
        let payload = b64(claims().to_string());
        for alg in [
            "none", "None", "NONE", "HS256", "RS512", "PS256", "ES384", "",
        ] {
            let header = b64(format!(r#"{{"alg":"{alg}","kid":"{}"}}"#, key.kid()));
            for token in [
                format!("{header}.{payload}."),
                format!("{header}.{payload}.{}", b64([7u8; 64])),
            ] {
                assert!(matches!(
                    verify(&token, &[key.verifying_key()]),
                    Err(JoseError::UnsupportedAlgorithm)
                ));
            }
        }
        let header = b64(format!(r#"{{"kid":"{}"}}"#, key.kid()));
        let token = format!("{header}.{payload}.{}", b64([7u8; 64]));
        assert!(matches!(
            verify(&token, &[key.verifying_key()]),
            Err(JoseError::Malformed(_))
        ));
    }

    #[test]
    fn verify_refuses_header_alg_differing_from_key_alg() {
        let es = es256();
        let claims = claims().to_string();
        // RS256 header naming the ES256 key, validly signed with the RSA key.
        let header = format!(r#"{{"alg":"RS256","kid":"{}"}}"#, es.kid());
        let token = forge(&RSA.0, header.as_bytes(), claims.as_bytes());
        let keys = [es.verifying_key(), RSA.0.verifying_key()];
        assert!(matches!(
            verify(&token, &keys),
            Err(JoseError::AlgorithmMismatch)
        ));
        // And the other way round, with EdDSA too.
        let ed = eddsa();
        let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, ed.kid());
        let token = forge(&es, header.as_bytes(), claims.as_bytes());
        assert!(matches!(
            verify(&token, &[ed.verifying_key(), es.verifying_key()]),
            Err(JoseError::AlgorithmMismatch)
        ));
    }

    #[test]
    fn verify_refuses_wrong_part_counts() {
        let key = eddsa();
        let token = key.sign(None, &claims()).unwrap();
        let p = parts(&token);
        let keys = [key.verifying_key()];
        for bad in [
            String::new(),
            ".".to_owned(),
            "..".to_owned(),
            "...".to_owned(),
            p[0].clone(),
            format!("{}.{}", p[0], p[1]),
            format!("{}.{}.{}.{}", p[0], p[1], p[2], p[2]),
            format!("{}.{}.{}.", p[0], p[1], p[2]),
            format!("{}.{}.{}.{}.{}", p[0], p[1], p[2], p[2], p[2]),
        ] {
            assert!(
                matches!(verify(&bad, &keys), Err(JoseError::Malformed(_))),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn verify_refuses_garbage_base64() {
        let key = eddsa();
        let token = key.sign(None, &claims()).unwrap();
        let p = parts(&token);
        let keys = [key.verifying_key()];
        for bad in [
            format!("!!!.{}.{}", p[1], p[2]),
            format!("{}=.{}.{}", p[0], p[1], p[2]),
            format!("{}.{}*.{}", p[0], p[1], p[2]),
            format!("{}.{}.{}==", p[0], p[1], p[2]),
            format!("{}.{}.+{}", p[0], p[1], &p[2][1..]),
            format!("{}.{}.{}", p[0], p[1], "A".repeat(5000)),
            format!("{}.{}.{}", b64("not json"), p[1], p[2]),
            format!("{}.{}.{}", b64("[1]"), p[1], p[2]),
        ] {
            assert!(verify(&bad, &keys).is_err(), "{bad:?} accepted");
        }
        assert!(decode_header("!!!.x.y").is_err());
        assert!(decode_header("no-dot").is_err());
    }

    #[test]
    fn verify_refuses_non_object_claims() {
        let key = es256();
        let header = format!(r#"{{"alg":"ES256","kid":"{}"}}"#, key.kid());
        for payload in [
            &b"[1,2]"[..],
            b"\"sub\"",
            b"42",
            b"null",
            b"true",
            b"not json",
            b"",
        ] {
            let token = forge(&key, header.as_bytes(), payload);
            assert!(
                matches!(
                    verify(&token, &[key.verifying_key()]),
                    Err(JoseError::Malformed(_))
                ),
                "{payload:?} accepted"
            );
        }
    }

    #[test]
    fn verify_refuses_crit_and_duplicate_header_members() {
        let key = es256();
        let claims = claims().to_string();
        let crit = format!(
            r#"{{"alg":"ES256","kid":"{}","crit":["exp"],"exp":1}}"#,
            key.kid()
        );
        let duplicate = format!(r#"{{"alg":"ES256","alg":"none","kid":"{}"}}"#, key.kid());
        for header in [crit, duplicate] {
            let token = forge(&key, header.as_bytes(), claims.as_bytes());
            assert!(matches!(
                verify(&token, &[key.verifying_key()]),
                Err(JoseError::Malformed(_))
            ));
        }
    }

    #[test]
    fn pkcs8_round_trip_keeps_kid_and_jwk() {
        let check = |key: &SigningKey, der: &[u8]| {
            let loaded = SigningKey::from_pkcs8(key.alg(), der).unwrap();
            assert_eq!(loaded.kid(), key.kid());
            assert_eq!(loaded.public_jwk(), key.public_jwk());
            let token = loaded.sign(None, &claims()).unwrap();
            assert!(verify(&token, &[key.verifying_key()]).is_ok());
        };
        check(&RSA.0, &RSA.1);
        for alg in [Algorithm::ES256, Algorithm::EdDSA] {
            let (key, der) = SigningKey::generate(alg).unwrap();
            check(&key, &der);
        }
    }

    #[test]
    fn from_pkcs8_refuses_wrong_algorithm_and_garbage() {
        let (_, ec_der) = SigningKey::generate(Algorithm::ES256).unwrap();
        let (_, ed_der) = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let wrong: [(Algorithm, &[u8]); 6] = [
            (Algorithm::RS256, &ec_der),
            (Algorithm::ES256, &ed_der),
            (Algorithm::EdDSA, &ec_der),
            (Algorithm::EdDSA, &RSA.1),
            (Algorithm::ES256, &RSA.1[..RSA.1.len() / 2]),
            (Algorithm::RS256, b"garbage"),
        ];
        for (alg, der) in wrong {
            assert!(matches!(
                SigningKey::from_pkcs8(alg, der),
                Err(JoseError::InvalidKey(_))
            ));
        }
    }

    #[test]
    fn public_jwk_shape_per_algorithm() {
        let jwk = RSA.0.public_jwk();
        assert_eq!(jwk["kty"], "RSA");
        assert_eq!(jwk["alg"], "RS256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], RSA.0.kid());
        assert_eq!(jwk["e"], "AQAB");
        let n = URL_SAFE_NO_PAD.decode(jwk["n"].as_str().unwrap()).unwrap();
        assert_eq!(n.len(), 256);
        assert!(n[0] & 0x80 != 0);

        let key = es256();
        let jwk = key.public_jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);
        assert_eq!(jwk["y"].as_str().unwrap().len(), 43);

        let key = eddsa();
        let jwk = key.public_jwk();
        assert_eq!(jwk["kty"], "OKP");
        assert_eq!(jwk["alg"], "EdDSA");
        assert_eq!(jwk["crv"], "Ed25519");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["x"].as_str().unwrap().len(), 43);

        for_each_key(|key| {
            let jwk = key.public_jwk();
            assert!(jwk.get("d").is_none());
            let from_jwk = VerifyingKey::from_jwk(&jwk).unwrap();
            assert_eq!(from_jwk.kid(), key.kid());
            assert_eq!(from_jwk.alg(), key.alg());
            let token = key.sign(None, &claims()).unwrap();
            assert!(verify(&token, &[from_jwk]).is_ok());
        });
    }

    #[test]
    fn kid_is_the_stable_distinct_thumbprint() {
        for_each_key(|key| {
            assert_eq!(key.kid().len(), 43);
            let mut jwk = key.public_jwk();
            jwk.as_object_mut().unwrap().remove("kid");
            // Without a kid, a JWK is named by its thumbprint: the same name we gave it.
            assert_eq!(VerifyingKey::from_jwk(&jwk).unwrap().kid(), key.kid());
        });
        let kids = [es256(), es256(), eddsa(), eddsa()].map(|key| key.kid().to_owned());
        let mut unique = kids.to_vec();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), kids.len());
        assert!(!kids.contains(&RSA.0.kid().to_owned()));
    }

    #[test]
    fn thumbprint_matches_rfc7638_example() {
        let jwk = json!({
            "kty": "RSA",
            "n": "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw",
            "e": "AQAB",
            "alg": "RS256",
        });
        let key = VerifyingKey::from_jwk(&jwk).unwrap();
        assert_eq!(key.kid(), "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
        assert_eq!(key.alg(), Algorithm::RS256);
    }

    #[test]
    fn from_jwk_refuses_unusable_keys() {
        let ec = es256().public_jwk();
        let ed = eddsa().public_jwk();
        let rsa = RSA.0.public_jwk();
        let with = |jwk: &Value, name: &str, value: Value| {
            let mut jwk = jwk.clone();
            jwk[name] = value;
            jwk
        };
        let without = |jwk: &Value, name: &str| {
            let mut jwk = jwk.clone();
            jwk.as_object_mut().unwrap().remove(name);
            jwk
        };
        let short_n = b64([0xffu8; 128]);
        for bad in [
            json!("not an object"),
            json!({}),
            with(&ec, "kty", json!("oct")),
            with(&ec, "crv", json!("P-384")),
            with(&ec, "x", json!(b64([1u8; 31]))),
            with(&ec, "y", json!("***")),
            without(&ec, "y"),
            with(&ec, "alg", json!("RS256")),
            with(&ec, "alg", json!("none")),
            with(&ec, "use", json!("enc")),
            with(&ec, "d", json!(b64([1u8; 32]))),
            with(&ec, "kid", json!(7)),
            with(&ec, "kid", json!("")),
            with(&ed, "crv", json!("X25519")),
            with(&ed, "x", json!(b64([1u8; 33]))),
            with(&rsa, "n", json!(short_n)),
            with(&rsa, "e", json!("AA")),
            with(&rsa, "alg", json!("PS256")),
            without(&rsa, "n"),
        ] {
            assert!(
                matches!(VerifyingKey::from_jwk(&bad), Err(JoseError::InvalidKey(_))),
                "{bad} accepted"
            );
        }
        // alg and use are optional members.
        let bare = without(&without(&ec, "alg"), "use");
        assert_eq!(
            VerifyingKey::from_jwk(&bare).unwrap().alg(),
            Algorithm::ES256
        );
    }

    #[test]
    fn seal_open_round_trip_and_refusals() {
        let master = MasterKey::generate();
        let plaintext = b"-----private key bytes-----";
        let sealed = seal(&master, plaintext, b"kid-1").unwrap();
        assert_eq!(sealed[0], 1);
        assert_eq!(sealed.len(), 1 + 12 + plaintext.len() + 16);
        assert_eq!(open(&master, &sealed, b"kid-1").unwrap(), plaintext);
        assert_ne!(seal(&master, plaintext, b"kid-1").unwrap(), sealed);
        assert_eq!(
            open(&master, &seal(&master, b"", b"").unwrap(), b"").unwrap(),
            b""
        );

        let other = MasterKey::generate();
        assert!(matches!(
            open(&other, &sealed, b"kid-1"),
            Err(JoseError::Decrypt)
        ));
        assert!(matches!(
            open(&master, &sealed, b"kid-2"),
            Err(JoseError::Decrypt)
        ));
        for i in 0..sealed.len() {
            let mut tampered = sealed.clone();
            tampered[i] ^= 0x01;
            assert!(open(&master, &tampered, b"kid-1").is_err(), "byte {i}");
        }
        for len in 0..sealed.len() {
            assert!(
                open(&master, &sealed[..len], b"kid-1").is_err(),
                "length {len}"
            );
        }
        let mut extended = sealed.clone();
        extended.push(0);
        assert!(open(&master, &extended, b"kid-1").is_err());
    }

    #[test]
    fn sealed_signing_key_survives_storage() {
        let master = MasterKey::generate();
        let (key, der) = SigningKey::generate(Algorithm::EdDSA).unwrap();
        let sealed = seal(&master, &der, key.kid().as_bytes()).unwrap();
        let opened = open(&master, &sealed, key.kid().as_bytes()).unwrap();
        let loaded = SigningKey::from_pkcs8(Algorithm::EdDSA, &opened).unwrap();
        assert_eq!(loaded.kid(), key.kid());
    }

    #[test]
    fn half_hash_known_answer() {
        // OpenID Connect Core 1.0, appendix A.3.
        let access_token = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";
        assert_eq!(
            half_hash(Algorithm::RS256, access_token),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        assert_eq!(
            half_hash(Algorithm::ES256, access_token),
            "77QmUPtjPfzWtF2AnpK9RQ"
        );
        let eddsa = half_hash(Algorithm::EdDSA, access_token);
        assert_eq!(eddsa.len(), 43);
        assert!(!eddsa.starts_with("77QmUPtjPfzWtF2AnpK9RQ"));
    }

    #[test]
    fn debug_shows_no_key_material() {
        let check = |key: &SigningKey, der: &[u8]| {
            let debug = format!("{key:?}");
            assert_eq!(
                debug,
                format!(
                    "SigningKey {{ kid: {:?}, alg: {:?}, .. }}",
                    key.kid(),
                    key.alg()
                )
            );
            // No window of the private document, in any common rendering, may appear.
            for window in der.windows(8) {
                let hex: String = window.iter().map(|b| format!("{b:02x}")).collect();
                assert!(!debug.contains(&hex));
                assert!(!debug.contains(&b64(window)));
                assert!(!debug.contains(&format!("{window:?}")[1..20]));
            }
            assert!(!format!("{:?}", key.verifying_key()).contains(&b64(der)));
        };
        check(&RSA.0, &RSA.1);
        let (key, der) = SigningKey::generate(Algorithm::EdDSA).unwrap();
        check(&key, &der);
    }
}
