//! Small helpers for the pages the server writes itself (landing page, status page,
//! redirects): escaping text for HTML and percent-encoding paths for URLs.

use std::fmt::Write;

/// Escapes `s` for HTML text and for double- or single-quoted attribute values.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes a decoded URL path so it can go back into a link or a `Location`:
/// everything but unreserved characters, `/` and a few harmless sub-delimiters.
pub fn encode_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    for &b in path.as_bytes() {
        let keep = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'/' | b'-' | b'.' | b'_' | b'~' | b'!' | b'$' | b'(' | b')' | b'*' | b'+' | b','
            )
            || matches!(b, b';' | b'=' | b':' | b'@');
        if keep {
            out.push(b as char);
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape("plain é"), "plain é");
    }

    #[test]
    fn encoding() {
        assert_eq!(encode_path("/a b/c.txt"), "/a%20b/c.txt");
        assert_eq!(encode_path("/q?x#y%"), "/q%3Fx%23y%25");
        assert_eq!(encode_path("/é"), "/%C3%A9");
        assert_eq!(encode_path("/<script>"), "/%3Cscript%3E");
    }
}
