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

#[cfg(test)]
mod tests {
    use super::*;

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
