//! Path globs: `*` matches within one path segment, `**` across segments.

/// A compiled path glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    tokens: Vec<Token>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Byte(u8),
    /// `*`: any run of bytes without '/'.
    Star,
    /// `**`: any run of bytes.
    DoubleStar,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        let bytes = pattern.as_bytes();
        let mut tokens = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while let Some(&b) = bytes.get(i) {
            if b == b'*' {
                if bytes.get(i + 1) == Some(&b'*') {
                    if bytes.get(i + 2) == Some(&b'*') {
                        return Err(format!("\"{pattern}\": use '*' or '**', not three stars"));
                    }
                    tokens.push(Token::DoubleStar);
                    i += 2;
                } else {
                    tokens.push(Token::Star);
                    i += 1;
                }
            } else {
                tokens.push(Token::Byte(b));
                i += 1;
            }
        }
        Ok(Glob { tokens })
    }

    /// Whether `path` matches. Runs in O(path × pattern) time and O(pattern)
    /// memory whatever the input, so a hostile path cannot blow up.
    pub fn matches(&self, path: &str) -> bool {
        let n = self.tokens.len();
        // can[j]: the first i bytes of the path match the first j tokens.
        let mut can = vec![false; n + 1];
        can[0] = true;
        for j in 0..n {
            can[j + 1] = can[j] && matches!(self.tokens[j], Token::Star | Token::DoubleStar);
        }
        for &b in path.as_bytes() {
            let mut next = vec![false; n + 1];
            for j in 0..n {
                next[j + 1] = match self.tokens[j] {
                    Token::Byte(t) => can[j] && t == b,
                    // Stay in the star (consume b) or have entered it at this byte.
                    Token::Star => b != b'/' && (can[j + 1] || can[j]),
                    Token::DoubleStar => can[j + 1] || can[j],
                } || (matches!(self.tokens[j], Token::Star | Token::DoubleStar) && next[j]);
            }
            can = next;
        }
        can[n]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(p: &str) -> Glob {
        Glob::new(p).unwrap()
    }

    #[test]
    fn single_star_stays_in_one_segment() {
        assert!(g("/v1/*/drafts").matches("/v1/acme/drafts"));
        assert!(!g("/v1/*/drafts").matches("/v1/acme/x/drafts"));
        assert!(g("/v1/*").matches("/v1/"));
        assert!(!g("/v1/*").matches("/v1/a/b"));
    }

    #[test]
    fn double_star_crosses_segments() {
        assert!(g("/v1/**/drafts").matches("/v1/a/b/c/drafts"));
        assert!(g("/v1/**").matches("/v1/a/b"));
        assert!(g("/**").matches("/"));
        assert!(!g("/v1/**/drafts").matches("/v2/a/drafts"));
    }

    #[test]
    fn literal_patterns_match_exactly() {
        assert!(g("/v1/chat/completions").matches("/v1/chat/completions"));
        assert!(!g("/v1/chat/completions").matches("/v1/chat/completions/"));
    }

    #[test]
    fn hostile_paths_stay_linear() {
        let pattern = g("/*a*a*a*a*a*a*a*a*b");
        let path = format!("/{}", "a".repeat(5000));
        assert!(!pattern.matches(&path));
    }

    #[test]
    fn rejects_triple_star() {
        assert!(Glob::new("/v1/***").is_err());
    }
}
