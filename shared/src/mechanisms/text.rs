//! Characters that change how text looks without being seen, refused or removed wherever user
//! text is shown to other people (upload filenames, post titles and bodies).
//!
//! One list, so a filename and a post title cannot disagree about what is invisible.

/// Format characters that change how text looks without being seen: bidi controls (which can
/// make `gpj.exe` read as `exe.jpg`, or reorder a title), zero-width characters, the BOM, the
/// soft hyphen.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}')
}

/// The first invisible character of `text` and its position (in characters), for an error
/// message that lets the writer find it.
pub fn first_invisible(text: &str) -> Option<(usize, char)> {
    text.chars().enumerate().find(|(_, c)| is_invisible(*c))
}

/// C0 (U+0000..U+001F), DEL and C1 (U+0080..U+009F) controls other than those `allowed`.
/// They show as nothing or as garbage, and each one costs 6 bytes once escaped in JSON
/// (`\u0001`) and 7 once that JSON is a string inside the function's response: refusing them
/// keeps what is stored printable and what is served a predictable size.
pub fn first_control(text: &str, allowed: &[char]) -> Option<(usize, char)> {
    text.chars().enumerate().find(|(_, c)| c.is_control() && !allowed.contains(c))
}

/// The first `max_chars` characters of `text` (cut at a character boundary), and whether
/// anything was cut.
pub fn clip(text: &str, max_chars: usize) -> (&str, bool) {
    match text.char_indices().nth(max_chars) {
        Some((at, _)) => (&text[..at], true),
        None => (text, false),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_c0_del_and_c1_are_found_except_the_allowed_ones() {
        for c in ['\u{0}', '\u{1}', '\r', '\u{1B}', '\u{7F}', '\u{80}', '\u{85}', '\u{9F}'] {
            assert_eq!(first_control(&format!("ab{c}"), &['\t', '\n']), Some((2, c)), "{:04X}", c as u32);
        }
        assert_eq!(first_control("a\tb\nc é 中 😀", &['\t', '\n']), None);
        assert_eq!(first_control("a\tb", &[]), Some((1, '\t')));
    }

    #[test]
    fn clip_cuts_at_character_boundaries() {
        assert_eq!(clip("héllo", 2), ("hé", true));
        assert_eq!(clip("😀😀", 1), ("😀", true));
        assert_eq!(clip("abc", 3), ("abc", false));
        assert_eq!(clip("", 0), ("", false));
    }

    #[test]
    fn bidi_and_zero_width_are_invisible_letters_are_not() {
        for c in ['\u{202E}', '\u{2066}', '\u{200B}', '\u{200D}', '\u{FEFF}', '\u{00AD}', '\u{061C}'] {
            assert!(is_invisible(c), "{:04X}", c as u32);
        }
        for c in ['a', 'é', 'ß', '中', ' ', '-', '\u{05D0}'] {
            assert!(!is_invisible(c), "{c}");
        }
        assert_eq!(first_invisible("ab\u{202E}c"), Some((2, '\u{202E}')));
        assert_eq!(first_invisible("plain"), None);
    }
}
