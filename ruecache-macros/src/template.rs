//! The key template, parsed at compile time into the literal pieces between its id slots.
//!
//! The rules are those of `ruecache::KeyTemplate::parse`, checked against it by a unit test:
//! `{id}` is the id, `{{` and `}}` are literal braces, `<<<id>>>` is `{{{id}}}` (the id in a Redis
//! Cluster hash tag); a template needs at least one `{id}`, no other placeholder and no lone brace.

/// The literal pieces around the id slots: `"widgets:{{{id}}}"` is `["widgets:{", "}"]`.
pub(crate) fn parse(template: &str) -> Result<Vec<String>, String> {
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut rest = template;
    while let Some(c) = rest.chars().next() {
        if let Some(after) = rest.strip_prefix("<<<id>>>") {
            current.push('{');
            parts.push(std::mem::take(&mut current));
            current.push('}');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("{{") {
            current.push('{');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("}}") {
            current.push('}');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("{id}") {
            parts.push(std::mem::take(&mut current));
            rest = after;
        } else if c == '{' {
            return Err(match rest[1..].find('}') {
                Some(end) => format!(
                    "unknown placeholder `{}`, the only placeholder is `{{id}}`; write `{{{{` for a literal `{{`",
                    &rest[..end + 2]
                ),
                None => "unclosed `{`, write `{{` for a literal `{`".to_owned(),
            });
        } else if c == '}' {
            return Err("unmatched `}`, write `}}` for a literal `}`".to_owned());
        } else {
            current.push(c);
            rest = &rest[c.len_utf8()..];
        }
    }
    if parts.is_empty() {
        return Err(
            "no `{id}` placeholder, so every id would share one key; write `{id}` where the id goes, \
             or `<<<id>>>` to put it in a Redis Cluster hash tag"
                .to_owned(),
        );
    }
    parts.push(current);
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Templates both parsers must accept (with these parts) or reject.
    const TABLE: &[(&str, Option<&[&str]>)] = &[
        ("widgets:{{{id}}}", Some(&["widgets:{", "}"])),
        ("widgets:<<<id>>>", Some(&["widgets:{", "}"])),
        ("widgets:{id}", Some(&["widgets:", ""])),
        ("{id}", Some(&["", ""])),
        ("a{id}b{id}c", Some(&["a", "b", "c"])),
        ("{{literal}}:{id}", Some(&["{literal}:", ""])),
        ("<<<id>>>:<<<id>>>", Some(&["{", "}:{", "}"])),
        ("<<id>>:{id}", Some(&["<<id>>:", ""])),
        ("<<<id>>:{id}", Some(&["<<<id>>:", ""])),
        ("ünïcödé:{id}:ß", Some(&["ünïcödé:", ":ß"])),
        ("{{{{id}}}}", None),
        ("widgets", None),
        ("", None),
        ("{{id}}", None),
        ("<<<ID>>>", None),
        ("w:{name}", None),
        ("w:{Id}", None),
        ("w:{ id }", None),
        ("w:{}", None),
        ("w:{id", None),
        ("w:{", None),
        ("w:}{id}", None),
        ("w:{id}}", None),
        ("w:{id}{", None),
    ];

    #[test]
    fn parses_the_table() {
        for &(template, expected) in TABLE {
            let parsed = parse(template);
            match expected {
                Some(parts) => assert_eq!(
                    parsed,
                    Ok(parts.iter().map(|p| p.to_string()).collect()),
                    "{template}"
                ),
                None => assert!(parsed.is_err(), "{template} should be rejected"),
            }
        }
    }

    #[test]
    fn agrees_with_the_runtime_parser() {
        // The runtime renders the id between the parts, so splitting a rendered key on a marker id
        // gives back its parts.
        const MARKER: &str = "\u{1}";
        for &(template, _) in TABLE {
            let ours = parse(template);
            let theirs = ruecache::KeyTemplate::parse(template).map(|t| {
                let key = t.render(&MARKER).expect("renders");
                key.split(MARKER).map(str::to_owned).collect::<Vec<_>>()
            });
            match (&ours, &theirs) {
                (Ok(a), Ok(b)) => assert_eq!(a, b, "{template}"),
                (Err(_), Err(_)) => {}
                _ => panic!("{template}: the macro says {ours:?}, the runtime says {theirs:?}"),
            }
        }
    }

    #[test]
    fn errors_say_what_is_wrong() {
        for (template, reason) in [
            ("widgets", "no `{id}` placeholder"),
            ("w:{name}", "unknown placeholder `{name}`"),
            ("w:{id", "unclosed `{`"),
            ("w:}{id}", "unmatched `}`"),
        ] {
            let err = parse(template).expect_err(template);
            assert!(err.contains(reason), "{template}: {err}");
        }
    }
}
