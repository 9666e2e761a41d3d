//! Opaque pagination cursors: the position of the last item a page returned,
//! as URL-safe base64 of JSON. Clients pass them back unchanged; the
//! encoding is not part of the API and may change.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest cursor accepted: far above any real one, far below a payload.
const MAX_LEN: usize = 512;

pub fn encode<T: Serialize>(position: &T) -> String {
    // Serialising a plain struct of timestamps, ids and numbers cannot fail.
    let json = serde_json::to_vec(position).unwrap_or_default();
    URL_SAFE_NO_PAD.encode(json)
}

/// `None` when the text is not a cursor of this kind.
pub fn decode<T: DeserializeOwned>(text: &str) -> Option<T> {
    if text.len() > MAX_LEN {
        return None;
    }
    let json = URL_SAFE_NO_PAD.decode(text).ok()?;
    serde_json::from_slice(&json).ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Position {
        at: i64,
        id: String,
    }

    #[test]
    fn a_cursor_round_trips_and_garbage_is_refused() {
        let position = Position {
            at: 42,
            id: "x".into(),
        };
        let text = encode(&position);
        assert_eq!(decode::<Position>(&text).unwrap(), position);
        assert!(decode::<Position>("not a cursor").is_none());
        assert!(decode::<Position>(&encode(&[1, 2])).is_none());
        assert!(decode::<Position>(&"A".repeat(MAX_LEN + 1)).is_none());
    }
}
