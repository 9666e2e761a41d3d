//! The request schemas' limits, built from the very patterns and lengths the
//! domain checks (`crate::domain`, `event_schema::tag`), so the OpenAPI
//! document promises what the service does: a request its schema allows is
//! never refused for its shape, and one it refuses never gets in.

use crate::domain::{
    CONTENT_PATTERN, Content, METADATA_KEY_PATTERN, METADATA_STRING_PATTERN, Metadata,
    TITLE_PATTERN, TagSet, Title,
};
use utoipa::Modify;
use utoipa::openapi::schema::{AdditionalProperties, ArrayBuilder, SchemaType};
use utoipa::openapi::{ObjectBuilder, OneOfBuilder, OpenApi, Ref, RefOr, Schema, Type};

fn text(pattern: &str, max_chars: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(1))
        .max_length(Some(max_chars))
        .pattern(Some(pattern))
}

pub fn content() -> ObjectBuilder {
    text(CONTENT_PATTERN, Content::MAX_CHARS).description(Some(
        "1 to 65,536 characters, not blank, no control characters but tab and newlines; stored in NFC",
    ))
}

pub fn title() -> ObjectBuilder {
    text(TITLE_PATTERN, Title::MAX_CHARS).description(Some(
        "One line of 1 to 200 characters, not blank; stored trimmed",
    ))
}

/// A title that `null` clears.
pub fn nullable_title() -> ObjectBuilder {
    title().schema_type(SchemaType::from_iter([Type::String, Type::Null]))
}

pub fn tags() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(event_schema::tag::TAG_PATTERN)),
        )
        .max_items(Some(TagSet::MAX_TAGS))
        .description(Some(
            "At most 32 (duplicates included), each 1 to 64 letters, digits and `- _ : / .`; \
             stored trimmed, NFKC-normalised and lowercased, duplicates collapsed",
        ))
}

/// A metadata object. Its values are `MetadataValue2`: the components
/// `MetadataValue<n>` ([`MetadataLevels`]) spell out the nesting limit, one
/// level each, so a value nested deeper than the service takes breaks the
/// schema too.
pub fn metadata() -> ObjectBuilder {
    metadata_object(2).description(Some(format!(
        "A JSON object of at most {} bytes serialised, nesting at most {} levels deep \
         (objects and arrays, this one included); keys 1 to 128 characters without control \
         characters, strings without U+0000",
        Metadata::MAX_BYTES,
        Metadata::MAX_DEPTH
    )))
}

fn level(n: usize) -> RefOr<Schema> {
    Ref::from_schema_name(format!("MetadataValue{n}")).into()
}

/// An object whose values are at nesting level `children`.
fn metadata_object(children: usize) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::Object)
        .property_names(Some(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(METADATA_KEY_PATTERN)),
        ))
        .additional_properties(Some(AdditionalProperties::RefOr(level(children))))
}

/// A value at nesting level `n` (the metadata object is level 1): a scalar,
/// or while `n` is within the limit, an array or object of level `n + 1`.
fn metadata_value(n: usize) -> Schema {
    let mut value = OneOfBuilder::new()
        .item(ObjectBuilder::new().schema_type(Type::Null))
        .item(ObjectBuilder::new().schema_type(Type::Boolean))
        // Finite, as JSON numbers are; the bounds keep a literal like 1e400,
        // which no f64 can hold, out of what the schema allows.
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(f64::MIN))
                .maximum(Some(f64::MAX)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(METADATA_STRING_PATTERN)),
        );
    if n <= Metadata::MAX_DEPTH {
        value = value
            .item(ArrayBuilder::new().items(level(n + 1)))
            .item(metadata_object(n + 1));
    }
    value.into()
}

/// Adds the components `MetadataValue2` to `MetadataValue9` that
/// [`metadata`] refers to.
#[derive(Debug)]
pub struct MetadataLevels;

impl Modify for MetadataLevels {
    fn modify(&self, openapi: &mut OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        for n in 2..=Metadata::MAX_DEPTH + 1 {
            components
                .schemas
                .insert(format!("MetadataValue{n}"), metadata_value(n).into());
        }
    }
}

/// Sets `minProperties: 1` on the named component: utoipa-gen 5.5 writes
/// `#[schema(min_properties = …)]` out as `maxProperties`.
#[derive(Debug)]
pub struct AtLeastOneField(pub &'static str);

impl Modify for AtLeastOneField {
    fn modify(&self, openapi: &mut OpenApi) {
        let schema = openapi
            .components
            .as_mut()
            .and_then(|c| c.schemas.get_mut(self.0));
        if let Some(RefOr::T(Schema::Object(object))) = schema {
            object.min_properties = Some(1);
        }
    }
}
