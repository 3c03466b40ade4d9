//! The summary item as a file: the line `{"Item":{…}}` that `--format dynamodb-json` writes
//! (DynamoDB JSON, as DynamoDB's "Import from S3" reads it), read back.

use std::collections::BTreeMap;

use pcaplab_core::AttrValue;

/// An item's attributes by name.
pub type Map = BTreeMap<String, AttrValue>;

/// One attribute value of DynamoDB JSON (`{"S":"…"}`, `{"N":"1"}`, `{"M":{…}}`, …).
fn from_json(v: &serde_json::Value) -> Option<AttrValue> {
    let obj = v.as_object()?;
    let (tag, v) = obj.iter().next()?;
    Some(match tag.as_str() {
        "S" => AttrValue::S(v.as_str()?.to_owned()),
        "N" => AttrValue::N(v.as_str()?.to_owned()),
        "BOOL" => AttrValue::Bool(v.as_bool()?),
        "NULL" => AttrValue::Null,
        "L" => AttrValue::L(v.as_array()?.iter().filter_map(from_json).collect()),
        "M" => AttrValue::M(json_map(v)?),
        _ => return None,
    })
}

fn json_map(v: &serde_json::Value) -> Option<Map> {
    Some(
        v.as_object()?
            .iter()
            .filter_map(|(k, v)| Some((k.clone(), from_json(v)?)))
            .collect(),
    )
}

/// An item file: one line `{"Item":{…}}`, as `--format dynamodb-json` writes it.
pub fn parse(bytes: &[u8]) -> Result<Map, String> {
    let v: serde_json::Value = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    v.get("Item")
        .and_then(json_map)
        .ok_or_else(|| "not a DynamoDB JSON item ({\"Item\":{…}})".into())
}
