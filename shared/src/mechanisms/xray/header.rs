//! The parts of an X-Ray trace header (`Root=1-…;Parent=…;Sampled=…;Lineage=…`) a subsegment needs.

/// Where a subsegment of the current invocation hangs in its trace: the trace id (the header's
/// `Root`) and the id of the segment it belongs to (the header's `Parent`, which Lambda sets to
/// the id of the function's segment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parent {
    /// `1-5759e988-bd862e3fe1be46a994272793`.
    pub trace_id: String,
    /// 16 hex digits.
    pub parent_id: String,
}

/// A parsed trace header. Keys are matched without regard to case, unknown keys are ignored.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TraceHeader<'a> {
    /// `Root`: the trace id.
    pub root: Option<&'a str>,
    /// `Parent`: the id of the calling segment.
    pub parent: Option<&'a str>,
    /// `Sampled`: `Some(true)` for `1`, `Some(false)` for `0`, `None` when absent or deferred (`?`).
    pub sampled: Option<bool>,
}

impl<'a> TraceHeader<'a> {
    /// Parses `header`; never fails (a missing or unreadable part is `None`).
    pub fn parse(header: &'a str) -> Self {
        let mut parsed = Self::default();
        for (key, value) in header.split(';').filter_map(|part| part.split_once('=')) {
            let (key, value) = (key.trim(), value.trim());
            if key.eq_ignore_ascii_case("Root") {
                parsed.root = Some(value);
            } else if key.eq_ignore_ascii_case("Parent") {
                parsed.parent = Some(value);
            } else if key.eq_ignore_ascii_case("Sampled") {
                parsed.sampled = match value {
                    "1" => Some(true),
                    "0" => Some(false),
                    _ => None,
                };
            }
        }
        parsed
    }

    /// Where a subsegment goes, when this trace is sampled (`Sampled=1`) and its `Root` and
    /// `Parent` are well formed; `None` otherwise (nothing is recorded then).
    pub fn sampled_parent(&self) -> Option<Parent> {
        if self.sampled != Some(true) {
            return None;
        }
        let (root, parent) = (self.root?, self.parent?);
        (is_trace_id(root) && is_hex(parent, 16))
            .then(|| Parent { trace_id: root.to_owned(), parent_id: parent.to_owned() })
    }
}

/// `1-` + 8 hex digits (the epoch seconds) + `-` + 24 hex digits.
fn is_trace_id(root: &str) -> bool {
    let mut parts = root.split('-');
    matches!(
        (parts.next(), parts.next(), parts.next(), parts.next()),
        (Some("1"), Some(time), Some(random), None) if is_hex(time, 8) && is_hex(random, 24)
    )
}

fn is_hex(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_hexdigit())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ROOT: &str = "1-5759e988-bd862e3fe1be46a994272793";

    #[test]
    fn lambdas_header_is_read_in_full() {
        let header = format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=1;Lineage=1:0a1b2c3d:0");
        let parsed = TraceHeader::parse(&header);
        assert_eq!(parsed, TraceHeader { root: Some(ROOT), parent: Some("53995c3f42cd8ad8"), sampled: Some(true) });
        let parent = parsed.sampled_parent().expect("sampled");
        assert_eq!(parent, Parent { trace_id: ROOT.to_owned(), parent_id: "53995c3f42cd8ad8".to_owned() });
    }

    #[test]
    fn keys_in_any_case_and_order_with_spaces() {
        let parsed =
            TraceHeader::parse(" sampled=1; parent=53995c3f42cd8ad8 ;ROOT=1-5759e988-bd862e3fe1be46a994272793");
        assert_eq!(parsed.sampled_parent().map(|p| p.parent_id).as_deref(), Some("53995c3f42cd8ad8"));
    }

    #[test]
    fn only_a_sampled_well_formed_trace_gets_subsegments() {
        for header in [
            format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=0"),
            format!("Root={ROOT};Parent=53995c3f42cd8ad8;Sampled=?"),
            format!("Root={ROOT};Parent=53995c3f42cd8ad8"),
            format!("Root={ROOT};Sampled=1"),
            "Parent=53995c3f42cd8ad8;Sampled=1".to_owned(),
            "Root=1-5759e988-bd862e3f;Parent=53995c3f42cd8ad8;Sampled=1".to_owned(),
            "Root=2-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".to_owned(),
            format!("Root={ROOT};Parent=53995c3f42cd8ad;Sampled=1"),
            format!("Root={ROOT};Parent=53995c3f42cd8adz;Sampled=1"),
            format!("Root={ROOT}-00;Parent=53995c3f42cd8ad8;Sampled=1"),
            String::new(),
            "garbage".to_owned(),
        ] {
            assert_eq!(TraceHeader::parse(&header).sampled_parent(), None, "{header}");
        }
    }
}
