//! Tool definitions and `tool_choice`, Anthropic → OpenAI (see the table in the parent module).

use serde_json::{Map, Value};

use super::{note, str_of};
use crate::translate::Refused;

/// A tool definition as a `function` tool.
pub(super) fn tool(t: &Value, dropped: &mut Vec<&'static str>) -> Result<Value, Refused> {
    if !matches!(str_of(t, "type"), None | Some("custom")) {
        return Err(Refused::Unsupported(
            "Anthropic server tools (web search, code execution, ...) have no OpenAI equivalent",
        ));
    }
    let name = t
        .get("name")
        .filter(|v| v.is_string())
        .ok_or(Refused::NotJson)?;
    let mut f = Map::new();
    f.insert("name".into(), name.clone());
    if let Some(d) = t.get("description").filter(|v| v.is_string()) {
        f.insert("description".into(), d.clone());
    }
    let schema = t.get("input_schema").filter(|v| v.is_object());
    f.insert(
        "parameters".into(),
        schema.cloned().ok_or(Refused::NotJson)?,
    );
    if t.get("strict").is_some_and(|v| !v.is_null()) {
        note(dropped, "tools[].strict");
    }
    let mut def = Map::new();
    def.insert("type".into(), Value::String("function".into()));
    def.insert("function".into(), Value::Object(f));
    Ok(Value::Object(def))
}

/// `tool_choice` (and `disable_parallel_tool_use`) into `out`.
pub(super) fn tool_choice(choice: &Value, out: &mut Map<String, Value>) -> Result<(), Refused> {
    let value = match str_of(choice, "type") {
        Some("auto") => Value::String("auto".into()),
        Some("any") => Value::String("required".into()),
        Some("none") => Value::String("none".into()),
        Some("tool") => {
            let name = choice.get("name").filter(|v| v.is_string());
            let mut f = Map::new();
            f.insert("name".into(), name.ok_or(Refused::NotJson)?.clone());
            let mut c = Map::new();
            c.insert("type".into(), Value::String("function".into()));
            c.insert("function".into(), Value::Object(f));
            Value::Object(c)
        }
        _ => return Err(Refused::NotJson),
    };
    out.insert("tool_choice".into(), value);
    if choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        == Some(true)
    {
        out.insert("parallel_tool_calls".into(), Value::Bool(false));
    }
    Ok(())
}
