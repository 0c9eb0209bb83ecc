//! Tool definitions and `tool_choice`, Anthropic → OpenAI (see the table in the parent module).

use serde_json::Value;

use super::json::{str_of, W};
use super::note;
use crate::translate::Refused;

/// A tool definition as a `function` tool.
pub(super) fn tool(t: &Value, w: &mut W, dropped: &mut Vec<&'static str>) -> Result<(), Refused> {
    if !matches!(str_of(t, "type"), None | Some("custom")) {
        return Err(Refused::Unsupported(
            "Anthropic server tools (web search, code execution, ...) have no OpenAI equivalent",
        ));
    }
    let name = str_of(t, "name").ok_or(Refused::NotJson)?;
    let schema = t.get("input_schema").filter(|v| v.is_object());
    let schema = schema.ok_or(Refused::NotJson)?;
    w.sep()
        .raw(r#"{"type":"function","function":{"name":"#)
        .str(name);
    if let Some(d) = str_of(t, "description") {
        w.raw(r#","description":"#).str(d);
    }
    w.raw(r#","parameters":"#).value(schema).raw("}}");
    if t.get("strict").is_some_and(|v| !v.is_null()) {
        note(dropped, "tools[].strict");
    }
    Ok(())
}

/// `tool_choice` (and `disable_parallel_tool_use`) into the request being written.
pub(super) fn tool_choice(choice: &Value, w: &mut W) -> Result<(), Refused> {
    let simple = match str_of(choice, "type") {
        Some("auto") => "auto",
        Some("any") => "required",
        Some("none") => "none",
        Some("tool") => "",
        _ => return Err(Refused::NotJson),
    };
    w.key("tool_choice");
    if simple.is_empty() {
        let name = str_of(choice, "name").ok_or(Refused::NotJson)?;
        w.raw(r#"{"type":"function","function":{"name":"#)
            .str(name)
            .raw("}}");
    } else {
        w.str(simple);
    }
    if choice
        .get("disable_parallel_tool_use")
        .and_then(Value::as_bool)
        == Some(true)
    {
        w.key("parallel_tool_calls").raw("false");
    }
    Ok(())
}
