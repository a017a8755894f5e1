//! Identity (PROTOCOL.md section 1): a user is the `sub` of an HS256 JWT with
//! a required, enforced `exp`. There is no user registry.

use jsonwebtoken::{decode, encode, Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::model::UserId;

/// Longest user id accepted. User ids end up in keys, lists and logs, so an
/// unbounded `sub` would be a memory and log-flooding vector.
pub const MAX_USER_ID_CHARS: usize = 128;

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    #[error("missing token")]
    Missing,
    #[error("token expired")]
    Expired,
    #[error("invalid token")]
    Invalid,
    #[error("token subject is not a valid user id")]
    BadSubject,
}

/// Whom a valid token names, and until when it may be used: a WebSocket
/// opened with it is closed at its first frame after that (the gateway's
/// connection reader).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: UserId,
    /// The token's `exp`: seconds since the epoch, valid through that
    /// second.
    pub expires_at: u64,
}

/// Verifies and mints tokens with one shared secret. Its `Debug` never shows
/// the secret.
#[derive(Clone)]
pub struct Authenticator {
    decoding: DecodingKey,
    encoding: EncodingKey,
    validation: Validation,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Authenticator { secret: <redacted> }")
    }
}

impl Authenticator {
    pub fn new(secret: &[u8]) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        // "exp is required and enforced": no grace period beyond the instant.
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        // Identity is `sub` alone: a token minted with an audience for
        // other services is still this user's.
        validation.validate_aud = false;
        Authenticator {
            decoding: DecodingKey::from_secret(secret),
            encoding: EncodingKey::from_secret(secret),
            validation,
        }
    }

    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let data = decode::<Claims>(token, &self.decoding, &self.validation).map_err(|e| match e.kind() {
            jsonwebtoken::errors::ErrorKind::ExpiredSignature => AuthError::Expired,
            _ => AuthError::Invalid,
        })?;
        let sub = data.claims.sub;
        if !valid_user_id(&sub) {
            return Err(AuthError::BadSubject);
        }
        Ok(Identity { user: sub, expires_at: data.claims.exp })
    }

    /// A token for `user` valid until `exp` (seconds since the epoch).
    pub fn mint(&self, user: &str, exp: u64) -> String {
        let claims = Claims { sub: user.to_owned(), exp };
        // HS256 encoding of a two-field struct cannot fail.
        encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).unwrap_or_default()
    }
}

/// User ids are 1..=128 characters with no control characters and no comma,
/// and do not start or end with white space: the presence endpoint takes a
/// comma-separated list and trims its names, so such a user could not be
/// asked about (found by a hostile-client audit: `sub` " " was accepted).
pub fn valid_user_id(id: &str) -> bool {
    let chars = id.chars().count();
    (1..=MAX_USER_ID_CHARS).contains(&chars) && id.trim() == id && !id.chars().any(|c| c.is_control() || c == ',')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> u64 {
        (crate::clock::now_ms() / 1000) as u64
    }

    #[test]
    fn round_trip_and_rejections() {
        let auth = Authenticator::new(b"secret");
        let exp = now() + 60;
        let token = auth.mint("alice", exp);
        assert_eq!(auth.verify(&token), Ok(Identity { user: "alice".into(), expires_at: exp }));
        assert_eq!(auth.verify(&auth.mint("alice", now() - 1)), Err(AuthError::Expired));
        let other = Authenticator::new(b"other");
        assert_eq!(other.verify(&token), Err(AuthError::Invalid));
        assert_eq!(auth.verify("garbage"), Err(AuthError::Invalid));
        assert_eq!(auth.verify(&auth.mint("a,b", now() + 60)), Err(AuthError::BadSubject));
        for spaced in [" ", " bob", "bob\u{2003}"] {
            assert_eq!(auth.verify(&auth.mint(spaced, now() + 60)), Err(AuthError::BadSubject), "{spaced:?}");
        }
        assert!(auth.verify(&auth.mint("bob smith", now() + 60)).is_ok(), "white space inside is a name's");
        assert_eq!(auth.verify(&auth.mint("", now() + 60)), Err(AuthError::BadSubject));
    }

    /// PROTOCOL.md 1: `exp` is required, and the token is HS256.
    #[test]
    fn a_token_without_exp_or_of_another_algorithm_is_refused() {
        let auth = Authenticator::new(b"secret");
        let key = EncodingKey::from_secret(b"secret");
        let no_exp = encode(&Header::new(Algorithm::HS256), &serde_json::json!({"sub": "alice"}), &key).expect("jwt");
        assert_eq!(auth.verify(&no_exp), Err(AuthError::Invalid));
        let claims = serde_json::json!({"sub": "alice", "exp": now() + 60});
        let hs512 = encode(&Header::new(Algorithm::HS512), &claims, &key).expect("jwt");
        assert_eq!(auth.verify(&hs512), Err(AuthError::Invalid));
        let hs256 = encode(&Header::new(Algorithm::HS256), &claims, &key).expect("jwt");
        assert_eq!(auth.verify(&hs256).map(|id| id.user), Ok("alice".to_owned()), "the same claims, as HS256");
    }
}
