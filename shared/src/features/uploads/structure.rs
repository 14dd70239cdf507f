//! Whole-file structure checks of avatar images, against polyglots.
//!
//! A signature check reads the first bytes only, so a file that starts with a PNG header and
//! goes on as HTML, a ZIP or a script passes it, and a browser or a tool that sniffs the rest
//! may treat it as that. These checks walk the container format from the first byte to the
//! last and accept the file only when it is exactly one well-formed container with nothing
//! after its end marker: PNG chunks from `IHDR` to `IEND`, JPEG segments from SOI through the
//! scan to EOI, WebP's RIFF chunks to the length RIFF declares. They do not decode pixels.

/// Why a file is not one well-formed image of its declared type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum NotAnImage {
    /// The first bytes are not the type's signature.
    #[error("the file does not start with the {0} signature")]
    Signature(&'static str),
    /// The container is cut short or a length points past the end.
    #[error("the {0} structure is truncated or malformed at byte {1}")]
    Malformed(&'static str, usize),
    /// Bytes follow the format's end marker (a polyglot, or an appended payload).
    #[error("{1} bytes follow the end of the {0} image")]
    TrailingData(&'static str, usize),
}

/// Checks that `bytes` is exactly one `mime` image. `None` for a type these checks do not know.
pub fn check_image(mime: &str, bytes: &[u8]) -> Option<Result<(), NotAnImage>> {
    Some(match mime {
        "image/png" => png(bytes),
        "image/jpeg" => jpeg(bytes),
        "image/webp" => webp(bytes),
        _ => return None,
    })
}

fn be32(b: &[u8], at: usize) -> Option<usize> {
    b.get(at..at + 4).map(|s| u32::from_be_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

fn le32(b: &[u8], at: usize) -> Option<usize> {
    b.get(at..at + 4).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
}

/// Signature, `IHDR` (13 bytes) first, chunks of 4-letter types, `IEND` (empty) last and at
/// the very end of the file.
fn png(b: &[u8]) -> Result<(), NotAnImage> {
    const PNG: &str = "PNG";
    if !b.starts_with(&[0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A]) {
        return Err(NotAnImage::Signature(PNG));
    }
    let mut at = 8;
    let mut first = true;
    loop {
        let length = be32(b, at).ok_or(NotAnImage::Malformed(PNG, at))?;
        let kind = b.get(at + 4..at + 8).ok_or(NotAnImage::Malformed(PNG, at))?;
        if !kind.iter().all(u8::is_ascii_alphabetic) || (first && (kind != b"IHDR" || length != 13)) {
            return Err(NotAnImage::Malformed(PNG, at));
        }
        // length, type, data, CRC
        let end = at.checked_add(12 + length).filter(|end| *end <= b.len()).ok_or(NotAnImage::Malformed(PNG, at))?;
        if kind == b"IEND" {
            if length != 0 {
                return Err(NotAnImage::Malformed(PNG, at));
            }
            return if end == b.len() { Ok(()) } else { Err(NotAnImage::TrailingData(PNG, b.len() - end)) };
        }
        first = false;
        at = end;
    }
}

/// SOI, marker segments with their lengths up to the first SOS, entropy-coded data, EOI as the
/// last two bytes of the file.
fn jpeg(b: &[u8]) -> Result<(), NotAnImage> {
    const JPEG: &str = "JPEG";
    if !b.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Err(NotAnImage::Signature(JPEG));
    }
    let mut at = 2;
    loop {
        if b.get(at) != Some(&0xFF) {
            return Err(NotAnImage::Malformed(JPEG, at));
        }
        let marker = *b.get(at + 1).ok_or(NotAnImage::Malformed(JPEG, at))?;
        match marker {
            // Fill bytes before a marker.
            0xFF => at += 1,
            // Standalone markers (TEM, RSTn) carry no length; SOI or EOI here is malformed.
            0x01 | 0xD0..=0xD7 => at += 2,
            0x00 | 0xD8 | 0xD9 => return Err(NotAnImage::Malformed(JPEG, at)),
            _ => {
                let length = b
                    .get(at + 2..at + 4)
                    .map(|s| usize::from(u16::from_be_bytes([s[0], s[1]])))
                    .filter(|l| *l >= 2)
                    .ok_or(NotAnImage::Malformed(JPEG, at))?;
                let end = at + 2 + length;
                if end > b.len() {
                    return Err(NotAnImage::Malformed(JPEG, at));
                }
                at = end;
                if marker == 0xDA {
                    break;
                }
            }
        }
    }
    // After the (first) scan header: entropy-coded data, more segments and scans, then EOI.
    // The first EOI marker (`FF D9`) ends the image: it must be the file's last two bytes.
    let eoi = b[at..].windows(2).position(|w| w == [0xFF, 0xD9]).map(|p| at + p + 2);
    match eoi {
        Some(end) if end == b.len() => Ok(()),
        Some(end) => Err(NotAnImage::TrailingData(JPEG, b.len() - end)),
        None => Err(NotAnImage::Malformed(JPEG, b.len())),
    }
}

/// `RIFF`, a size equal to the rest of the file, `WEBP`, then chunks (even-padded) that end
/// exactly where RIFF says; the first is `VP8 `, `VP8L` or `VP8X`.
fn webp(b: &[u8]) -> Result<(), NotAnImage> {
    const WEBP: &str = "WebP";
    if b.len() < 12 || &b[..4] != b"RIFF" || &b[8..12] != b"WEBP" {
        return Err(NotAnImage::Signature(WEBP));
    }
    let riff_end = le32(b, 4).map(|size| size + 8).ok_or(NotAnImage::Malformed(WEBP, 4))?;
    if riff_end > b.len() || riff_end < 20 {
        return Err(NotAnImage::Malformed(WEBP, 4));
    }
    if riff_end < b.len() {
        return Err(NotAnImage::TrailingData(WEBP, b.len() - riff_end));
    }
    if !matches!(&b[12..16], b"VP8 " | b"VP8L" | b"VP8X") {
        return Err(NotAnImage::Malformed(WEBP, 12));
    }
    let mut at = 12;
    while at < riff_end {
        let size = le32(b, at + 4).ok_or(NotAnImage::Malformed(WEBP, at))?;
        let end = at
            .checked_add(8 + size + size % 2)
            .filter(|end| *end <= riff_end)
            .ok_or(NotAnImage::Malformed(WEBP, at))?;
        at = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png_chunk(kind: &[u8; 4], data: &[u8]) -> Vec<u8> {
        let mut c = (data.len() as u32).to_be_bytes().to_vec();
        c.extend_from_slice(kind);
        c.extend_from_slice(data);
        c.extend_from_slice(&[0; 4]);
        c
    }

    pub(crate) fn tiny_png() -> Vec<u8> {
        let mut f = vec![0x89, b'P', b'N', b'G', 0x0D, 0x0A, 0x1A, 0x0A];
        f.extend(png_chunk(b"IHDR", &[0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0]));
        f.extend(png_chunk(b"IDAT", &[0x78, 0x9C, 0x63, 0, 0, 0, 2, 0, 1]));
        f.extend(png_chunk(b"IEND", &[]));
        f
    }

    fn tiny_jpeg() -> Vec<u8> {
        let mut f = vec![0xFF, 0xD8, 0xFF, 0xE0, 0, 16];
        f.extend_from_slice(b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
        f.extend_from_slice(&[0xFF, 0xDA, 0, 8, 1, 1, 0, 0, 0x3F, 0]);
        f.extend_from_slice(&[0x12, 0xFF, 0x00, 0x34, 0xFF, 0xD9]);
        f
    }

    fn tiny_webp() -> Vec<u8> {
        let data = [0u8; 13];
        let mut chunk = b"VP8L".to_vec();
        chunk.extend((data.len() as u32).to_le_bytes());
        chunk.extend(data);
        chunk.push(0); // pad to even
        let mut f = b"RIFF".to_vec();
        f.extend(((4 + chunk.len()) as u32).to_le_bytes());
        f.extend_from_slice(b"WEBP");
        f.extend(chunk);
        f
    }

    #[test]
    fn well_formed_images_pass() {
        assert_eq!(check_image("image/png", &tiny_png()), Some(Ok(())));
        assert_eq!(check_image("image/jpeg", &tiny_jpeg()), Some(Ok(())));
        assert_eq!(check_image("image/webp", &tiny_webp()), Some(Ok(())));
        assert_eq!(check_image("image/gif", b"GIF89a"), None);
    }

    #[test]
    fn a_png_header_in_front_of_something_else_is_refused() {
        let html = b"<html><script>alert(1)</script></html>";
        let mut header_then_html = tiny_png()[..8].to_vec();
        header_then_html.extend_from_slice(html);
        assert!(matches!(png(&header_then_html), Err(NotAnImage::Malformed("PNG", 8))));
        let mut appended = tiny_png();
        appended.extend_from_slice(html);
        assert_eq!(png(&appended), Err(NotAnImage::TrailingData("PNG", html.len())));
        let mut zip_after = tiny_png();
        zip_after.extend_from_slice(b"PK\x03\x04rest of a zip");
        assert!(matches!(png(&zip_after), Err(NotAnImage::TrailingData("PNG", _))));
        let no_end = tiny_png()[..tiny_png().len() - 12].to_vec();
        assert!(matches!(png(&no_end), Err(NotAnImage::Malformed("PNG", _))));
        let mut huge_length = tiny_png();
        huge_length[8..12].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(png(&huge_length).is_err(), "a length past the end is refused, not an overflow");
    }

    #[test]
    fn jpeg_and_webp_polyglots_are_refused() {
        let mut jpeg = tiny_jpeg();
        jpeg.extend_from_slice(b"<?php system($_GET['c']); ?>");
        assert!(matches!(check_image("image/jpeg", &jpeg), Some(Err(NotAnImage::TrailingData("JPEG", 28)))));
        let mut header_only = tiny_jpeg()[..3].to_vec();
        header_only.extend_from_slice(b"<svg onload=alert(1)>");
        assert!(check_image("image/jpeg", &header_only).unwrap().is_err());
        let mut webp = tiny_webp();
        webp.extend_from_slice(b"trailing");
        assert_eq!(check_image("image/webp", &webp), Some(Err(NotAnImage::TrailingData("WebP", 8))));
        let mut header_then_text = b"RIFF\x20\0\0\0WEBP".to_vec();
        header_then_text.extend_from_slice(b"not chunks at all, but text");
        assert!(check_image("image/webp", &header_then_text).unwrap().is_err());
    }

    #[test]
    fn wrong_signatures_are_named() {
        assert_eq!(png(b"GIF89a"), Err(NotAnImage::Signature("PNG")));
        assert_eq!(jpeg(b"\x89PNG"), Err(NotAnImage::Signature("JPEG")));
        assert_eq!(webp(b"RIFF"), Err(NotAnImage::Signature("WebP")));
    }
}
