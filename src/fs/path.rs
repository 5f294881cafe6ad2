//! Path URIs and the mapping from the client's path namespace to paths
//! relative to the workspace capability.
//!
//! Everything here is pure string work and never touches the disk: a URI is
//! parsed (PROTOCOL.md §9), its dot segments are removed lexically, and the
//! resulting absolute path is either inside the visible root (and becomes a
//! relative path that cap-std resolves under the root handle) or outside it.
//! Symlinks are not this module's business: cap-std refuses to follow one out
//! of the root when the relative path is opened.

use percent_encoding::{AsciiSet, CONTROLS, percent_decode_str, utf8_percent_encode};
use std::path::{Component, Path, PathBuf};

/// Why a URI was rejected. The messages are the reference server's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UriError {
    /// Not a URI at all (`/abs/path`, `~/p`, ``): -32602.
    #[error("invalid URI: relative URL without a base")]
    RelativeWithoutBase,
    /// A scheme other than `file`: -32602.
    #[error("unsupported path URI scheme `{0}`")]
    UnsupportedScheme(String),
    /// -32602.
    #[error("query parameters are not allowed in path URIs")]
    Query,
    /// -32602.
    #[error("fragments are not allowed in path URIs")]
    Fragment,
    /// A remote host or a Windows drive: -32600.
    #[error("'{0}' is invalid on 'linux'")]
    NotLocal(String),
    /// Percent-decoding produced bytes that are not UTF-8, or a NUL: -32602.
    #[error("invalid URI: path is not valid UTF-8 or contains NUL")]
    BadEncoding,
}

/// Parses a `file:` URI into a normalized absolute path (dot segments
/// removed lexically, no trailing slash).
pub fn parse_file_uri(uri: &str) -> Result<String, UriError> {
    let Some(colon) = uri.find(':') else {
        return Err(UriError::RelativeWithoutBase);
    };
    let scheme = &uri[..colon];
    let valid_scheme = !scheme.is_empty()
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !valid_scheme {
        return Err(UriError::RelativeWithoutBase);
    }
    if !scheme.eq_ignore_ascii_case("file") {
        return Err(UriError::UnsupportedScheme(scheme.to_ascii_lowercase()));
    }
    let rest = &uri[colon + 1..];
    if rest.contains('#') {
        return Err(UriError::Fragment);
    }
    if rest.contains('?') {
        return Err(UriError::Query);
    }
    let path = if let Some(after) = rest.strip_prefix("//") {
        let (host, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, "/"),
        };
        if !(host.is_empty() || host.eq_ignore_ascii_case("localhost")) {
            return Err(UriError::NotLocal(uri.to_owned()));
        }
        path
    } else if rest.starts_with('/') {
        rest
    } else {
        // `file:relative` has no absolute path.
        return Err(UriError::RelativeWithoutBase);
    };
    let decoded = percent_decode_str(path).decode_utf8().map_err(|_| UriError::BadEncoding)?;
    if decoded.contains('\0') {
        return Err(UriError::BadEncoding);
    }
    // A Windows drive letter (`/C:/x`) is meaningless here. Checked after
    // the dot segments are gone, so that `/x/../C:/y` is refused like
    // `/C:/y` and every path we accept survives `to_file_uri`.
    let path = normalize_absolute(&decoded);
    let bytes = path.as_bytes();
    if bytes.len() >= 3 && bytes[1].is_ascii_alphabetic() && bytes[2] == b':' {
        return Err(UriError::NotLocal(uri.to_owned()));
    }
    Ok(path)
}

/// `path` made absolute against the absolute directory `cwd`, lexically and
/// not normalized (the shell's and host commands' relative paths).
pub fn absolute(cwd: &str, path: &str) -> String {
    if path.starts_with('/') {
        path.to_owned()
    } else if cwd == "/" {
        format!("/{path}")
    } else {
        format!("{cwd}/{path}")
    }
}

/// Removes `.` and `..` segments and duplicate slashes lexically. `..` at the
/// root stays at the root, as the kernel does.
pub fn normalize_absolute(path: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            s => parts.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for p in &parts {
        out.push('/');
        out.push_str(p);
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

/// Characters escaped when we turn a path back into a URI: controls, space
/// and the characters that would end or confuse the path part of a URI.
const PATH_ESCAPES: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}');

/// `file://` + the absolute path, percent-encoded.
pub fn to_file_uri(abs_path: &str) -> String {
    format!("file://{}", utf8_percent_encode(abs_path, PATH_ESCAPES))
}

/// Where a workspace appears to clients and guests, and how client paths map
/// onto the capability.
#[derive(Debug, Clone)]
pub struct PathMap {
    /// The absolute path at which clients and guests see the workspace root,
    /// normalized (no trailing slash unless it is `/`).
    visible_root: String,
}

/// A client path after mapping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mapped {
    /// Inside the workspace: the path relative to the root (`.` for the root).
    Inside(PathBuf),
    /// Outside the workspace. Reads answer not-found, writes permission-denied.
    Outside,
}

impl PathMap {
    /// `visible_root` must be absolute.
    pub fn new(visible_root: &str) -> Self {
        Self { visible_root: normalize_absolute(visible_root) }
    }

    pub fn visible_root(&self) -> &str {
        &self.visible_root
    }

    /// Maps a normalized absolute path (from [`parse_file_uri`]).
    pub fn map(&self, abs: &str) -> Mapped {
        let abs = normalize_absolute(abs);
        let rest = if self.visible_root == "/" {
            Some(abs.trim_start_matches('/'))
        } else if abs == self.visible_root {
            Some("")
        } else {
            abs.strip_prefix(&self.visible_root).and_then(|r| r.strip_prefix('/'))
        };
        match rest {
            Some("") => Mapped::Inside(PathBuf::from(".")),
            Some(r) => Mapped::Inside(PathBuf::from(r)),
            None => Mapped::Outside,
        }
    }

    /// The visible absolute path of a path relative to the root, as cap-std
    /// returns from `canonicalize`. Returns `None` for anything that is not a
    /// plain relative path (cap-std never produces one, but we do not trust
    /// that blindly: this is what `fs/canonicalize` reveals).
    pub fn to_visible(&self, rel: &Path) -> Option<String> {
        let mut out =
            if self.visible_root == "/" { String::new() } else { self.visible_root.clone() };
        for comp in rel.components() {
            match comp {
                Component::CurDir => {}
                Component::Normal(s) => {
                    out.push('/');
                    out.push_str(s.to_str()?);
                }
                Component::ParentDir | Component::RootDir | Component::Prefix(_) => return None,
            }
        }
        if out.is_empty() {
            out.push('/');
        }
        Some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    #[test]
    fn accepted_uri_forms() {
        let ok = |u: &str| parse_file_uri(u).expect(u);
        assert_eq!(ok("file:///home/dev/p"), "/home/dev/p");
        assert_eq!(ok("file:///home/dev/p/"), "/home/dev/p");
        assert_eq!(ok("file://localhost/home/dev/p"), "/home/dev/p");
        assert_eq!(ok("file:/home/dev/p"), "/home/dev/p");
        assert_eq!(ok("FILE:///home/dev/p"), "/home/dev/p");
        assert_eq!(ok("file:///home/dev/a%20b"), "/home/dev/a b");
        assert_eq!(ok("file:///home/dev/a b"), "/home/dev/a b");
        assert_eq!(ok("file:///home/dev/p/../q"), "/home/dev/q");
        assert_eq!(ok("file:///home/dev/p/./q"), "/home/dev/p/q");
        assert_eq!(ok("file:///~"), "/~");
        assert_eq!(ok("file:///../../etc"), "/etc");
        assert_eq!(ok("file://"), "/");
    }

    #[test]
    fn rejected_uri_forms() {
        use UriError::*;
        let err = |u: &str| parse_file_uri(u).expect_err(u);
        assert_eq!(err("/home/dev/p"), RelativeWithoutBase);
        assert_eq!(err("home/dev/p"), RelativeWithoutBase);
        assert_eq!(err("~/p"), RelativeWithoutBase);
        assert_eq!(err(""), RelativeWithoutBase);
        assert_eq!(err("http://x/p"), UnsupportedScheme("http".into()));
        assert_eq!(err("file:///p?x=1"), Query);
        assert_eq!(err("file:///p#f"), Fragment);
        assert_eq!(err("file://host/p"), NotLocal("file://host/p".into()));
        assert_eq!(err("file:///C:/x"), NotLocal("file:///C:/x".into()));
        // Found by `fuzz/` (path_map): a drive letter that appears once the
        // dot segments are removed.
        assert_eq!(
            err("file:///../../e://localh.tcpasswd"),
            NotLocal("file:///../../e://localh.tcpasswd".into())
        );
        assert_eq!(err("file:///x/../C:/y"), NotLocal("file:///x/../C:/y".into()));
        assert_eq!(err("file:////C:/y"), NotLocal("file:////C:/y".into()));
        assert_eq!(err("file:///a%00b"), BadEncoding);
        assert_eq!(err("file:///a%ffb"), BadEncoding);
        assert_eq!(err("file:relative"), RelativeWithoutBase);
    }

    #[test]
    fn percent_encoded_dot_segments_are_still_removed() {
        // `%2e%2e` decodes to `..` and must not survive as a path segment.
        assert_eq!(parse_file_uri("file:///w/%2e%2e/etc/passwd").expect("parses"), "/etc/passwd");
        assert_eq!(parse_file_uri("file:///w/a%2f..%2f..%2fx").expect("parses"), "/x");
    }

    #[test]
    fn mapping_inside_and_outside() {
        let m = PathMap::new("/home/dev/project/");
        assert_eq!(m.visible_root(), "/home/dev/project");
        assert_eq!(m.map("/home/dev/project"), Mapped::Inside(".".into()));
        assert_eq!(m.map("/home/dev/project/src/a.rs"), Mapped::Inside("src/a.rs".into()));
        assert_eq!(m.map("/home/dev/project/src/../b"), Mapped::Inside("b".into()));
        assert_eq!(m.map("/home/dev/project/../project2/x"), Mapped::Outside);
        assert_eq!(m.map("/home/dev/project2"), Mapped::Outside);
        assert_eq!(m.map("/home/dev/projectx/a"), Mapped::Outside);
        assert_eq!(m.map("/home/dev"), Mapped::Outside);
        assert_eq!(m.map("/"), Mapped::Outside);
        assert_eq!(m.map("/etc/passwd"), Mapped::Outside);
    }

    #[test]
    fn root_at_slash_maps_everything_inside() {
        let m = PathMap::new("/");
        assert_eq!(m.map("/"), Mapped::Inside(".".into()));
        assert_eq!(m.map("/etc/passwd"), Mapped::Inside("etc/passwd".into()));
        assert_eq!(m.to_visible(Path::new("etc/passwd")).as_deref(), Some("/etc/passwd"));
        assert_eq!(m.to_visible(Path::new(".")).as_deref(), Some("/"));
    }

    #[test]
    fn to_visible_refuses_escaping_relatives() {
        let m = PathMap::new("/workspace");
        assert_eq!(m.to_visible(Path::new("src/x")).as_deref(), Some("/workspace/src/x"));
        assert_eq!(m.to_visible(Path::new(".")).as_deref(), Some("/workspace"));
        assert_eq!(m.to_visible(Path::new("../etc")), None);
        assert_eq!(m.to_visible(Path::new("/etc")), None);
    }

    #[test]
    fn uris_round_trip() {
        for p in ["/home/dev/a b", "/x/100%", "/q?/h#", "/ünï"] {
            assert_eq!(parse_file_uri(&to_file_uri(p)).expect(p), p);
        }
    }
}
