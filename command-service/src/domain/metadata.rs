use super::Invalid;
use serde_json::{Map, Value};
use service_kit::problem::FieldCode;

/// Free-form metadata: a bounded JSON object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metadata(Map<String, Value>);

/// A metadata key, at any depth: 1 to 128 characters, no control characters.
/// The OpenAPI document states it as `propertyNames`.
pub const METADATA_KEY_PATTERN: &str = r"^[^\x00-\x1F\x7F-\x9F]{1,128}$";

/// A metadata string value: anything but U+0000, which Postgres' `jsonb`
/// cannot hold.
pub const METADATA_STRING_PATTERN: &str = r"^[^\x00]*$";

impl Metadata {
    pub const MAX_BYTES: usize = 16 * 1024;
    pub const MAX_DEPTH: usize = 8;
    pub const MAX_KEY_CHARS: usize = 128;

    pub fn parse(field: &str, raw: Map<String, Value>) -> Result<Self, Invalid> {
        let object = Value::Object(raw);
        if depth(&object) > Self::MAX_DEPTH {
            return Err(Invalid::new(
                field,
                FieldCode::MetadataTooDeep,
                format!("metadata nests at most {} levels", Self::MAX_DEPTH),
            ));
        }
        if let Some(key) = bad_key(&object) {
            return Err(Invalid::new(
                field,
                FieldCode::MetadataInvalidKey,
                format!(
                    "metadata keys are 1 to {} characters without control characters (got {key:?})",
                    Self::MAX_KEY_CHARS
                ),
            ));
        }
        if has_nul(&object) {
            return Err(Invalid::new(
                field,
                FieldCode::MetadataInvalidValue,
                "metadata strings may not contain U+0000 (NUL), which the store cannot hold",
            ));
        }
        // Serialising a Value cannot fail.
        let size = serde_json::to_vec(&object)
            .map(|v| v.len())
            .unwrap_or(usize::MAX);
        if size > Self::MAX_BYTES {
            return Err(Invalid::new(
                field,
                FieldCode::MetadataTooLarge,
                format!("metadata is limited to {} bytes of JSON", Self::MAX_BYTES),
            ));
        }
        match object {
            Value::Object(map) => Ok(Self(map)),
            _ => unreachable!("constructed as an object above"),
        }
    }

    pub fn into_inner(self) -> Map<String, Value> {
        self.0
    }
}

fn depth(value: &Value) -> usize {
    match value {
        Value::Object(map) => 1 + map.values().map(depth).max().unwrap_or(0),
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// Whether any string value holds U+0000: valid JSON, but Postgres' `jsonb`
/// refuses it, so it would fail the append (keys are checked by [`bad_key`]).
fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(text) => text.contains('\0'),
        Value::Object(map) => map.values().any(has_nul),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

fn bad_key(value: &Value) -> Option<String> {
    match value {
        Value::Object(map) => map.iter().find_map(|(key, inner)| {
            let ok = !key.is_empty()
                && key.chars().count() <= Metadata::MAX_KEY_CHARS
                && !key.chars().any(char::is_control);
            if ok {
                bad_key(inner)
            } else {
                Some(key.chars().take(40).collect())
            }
        }),
        Value::Array(items) => items.iter().find_map(bad_key),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn depth_size_and_keys_are_bounded() {
        assert!(Metadata::parse("metadata", object(json!({"a": {"b": [1, 2]}}))).is_ok());
        let deep = (0..9).fold(json!(1), |inner, _| json!({ "k": inner }));
        assert_eq!(
            Metadata::parse("metadata", object(deep)).unwrap_err().code,
            "metadata_too_deep"
        );
        let big = json!({ "k": "x".repeat(Metadata::MAX_BYTES) });
        assert_eq!(
            Metadata::parse("metadata", object(big)).unwrap_err().code,
            "metadata_too_large"
        );
        assert_eq!(
            Metadata::parse("metadata", object(json!({ "": 1 })))
                .unwrap_err()
                .code,
            "metadata_invalid_key"
        );
        for nul in [json!({ "a\u{0}": 1 }), json!({ "k": {"deeper\u{0}": 1} })] {
            assert_eq!(
                Metadata::parse("metadata", object(nul)).unwrap_err().code,
                "metadata_invalid_key"
            );
        }
        for nul in [
            json!({ "k": "a\u{0}b" }),
            json!({ "k": [1, {"j": ["\u{0}"]}] }),
        ] {
            assert_eq!(
                Metadata::parse("metadata", object(nul)).unwrap_err().code,
                "metadata_invalid_value"
            );
        }
        assert!(Metadata::parse("metadata", object(json!({ "k": "tab\tand\nnewline" }))).is_ok());
    }
}
