//! Rust names to Erlang atoms.

/// `name` in snake_case: an underscore goes before an upper-case letter that follows a
/// lower-case letter or a digit, and before the last capital of a run of capitals when a
/// lower-case letter follows it; then everything is lower-cased.
///
/// `Ping` → `ping`, `GetAll` → `get_all`, `HTTPRequest` → `http_request`, `Vec2D` → `vec2_d`.
pub(crate) fn snake_case(name: &str) -> String {
    let name = name.strip_prefix("r#").unwrap_or(name);
    let chars: Vec<char> = name.chars().collect();
    let mut out = String::with_capacity(name.len() + 4);
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            if let Some(&prev) = i.checked_sub(1).and_then(|p| chars.get(p)) {
                let next_is_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
                let boundary = prev.is_lowercase()
                    || prev.is_ascii_digit()
                    || (prev.is_uppercase() && next_is_lower);
                if boundary && !out.ends_with('_') {
                    out.push('_');
                }
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// A field's own name, without the `r#` of a raw identifier.
pub(crate) fn unraw(name: &str) -> &str {
    name.strip_prefix("r#").unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::snake_case;

    #[test]
    fn snake_case_rule() {
        for (rust, erlang) in [
            ("Ping", "ping"),
            ("GetAll", "get_all"),
            ("HTTPRequest", "http_request"),
            ("HttpRequest", "http_request"),
            ("ABC", "abc"),
            ("Vec2", "vec2"),
            ("Vec2D", "vec2_d"),
            ("Point3d", "point3d"),
            ("already_snake", "already_snake"),
            ("Snake_Case", "snake_case"),
            ("A", "a"),
            ("XMLHttpRequest", "xml_http_request"),
            ("r#Type", "type"),
        ] {
            assert_eq!(snake_case(rust), erlang, "{rust}");
        }
    }
}
