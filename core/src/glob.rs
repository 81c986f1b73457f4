//! Path globs: `*` matches within one path segment, `**` across segments.

/// A compiled path glob.
///
/// Matching simulates the pattern's automaton with one bit per position in
/// the pattern (bit `j`: the path read so far matches the first `j` tokens),
/// so a match costs a few word operations per path byte, allocates nothing
/// for patterns of up to [`INLINE_TOKENS`] tokens, and stays
/// O(path × pattern) whatever the input.
#[derive(Clone)]
pub struct Glob {
    pattern: String,
    /// Number of tokens: bit `tokens` set after the last byte means a match.
    tokens: usize,
    /// Bit `j`: token `j` is `**` (any run of bytes).
    double_star: Vec<u64>,
    /// Bit `j`: token `j` is `*` (any run of bytes without '/') or `**`.
    any_star: Vec<u64>,
    /// The same masks one bit up: the positions just after each star.
    double_star_after: Vec<u64>,
    any_star_after: Vec<u64>,
    /// Rows as long as the masks; bit `j` of row `r`: token `j` is the byte
    /// whose row is `r`. Row 0 is all zeros, for bytes the pattern lacks.
    bytes: Vec<u64>,
    /// The row of each byte value.
    row: Box<[u16; 256]>,
}

/// Patterns with up to this many tokens match without allocating.
pub const INLINE_TOKENS: usize = INLINE_WORDS * 64 - 1;
const INLINE_WORDS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    Byte(u8),
    /// `*`: any run of bytes without '/'.
    Star,
    /// `**`: any run of bytes.
    DoubleStar,
}

impl Glob {
    pub fn new(pattern: &str) -> Result<Glob, String> {
        let tokens = tokenize(pattern)?;
        let words = (tokens.len() + 1).div_ceil(64);
        let mut glob = Glob {
            pattern: pattern.to_string(),
            tokens: tokens.len(),
            double_star: vec![0; words],
            any_star: vec![0; words],
            double_star_after: Vec::new(),
            any_star_after: Vec::new(),
            bytes: vec![0; words],
            row: Box::new([0; 256]),
        };
        for (j, token) in tokens.iter().enumerate() {
            match *token {
                Token::Star => set_bit(&mut glob.any_star, j),
                Token::DoubleStar => {
                    set_bit(&mut glob.any_star, j);
                    set_bit(&mut glob.double_star, j);
                }
                Token::Byte(b) => {
                    let mut row = glob.row[usize::from(b)];
                    if row == 0 {
                        // At most 256 distinct bytes, so at most 257 rows.
                        row = (glob.bytes.len() / words) as u16;
                        glob.row[usize::from(b)] = row;
                        glob.bytes.resize(glob.bytes.len() + words, 0);
                    }
                    let start = usize::from(row) * words;
                    set_bit(glob.bytes.get_mut(start..start + words).unwrap_or_default(), j);
                }
            }
        }
        glob.double_star_after = shifted_up(&glob.double_star);
        glob.any_star_after = shifted_up(&glob.any_star);
        Ok(glob)
    }

    /// Whether `path` matches. Runs in O(path × pattern) time and O(pattern)
    /// memory whatever the input, so a hostile path cannot blow up.
    pub fn matches(&self, path: &str) -> bool {
        let words = self.any_star.len();
        if words == 1 {
            return self.run_one_word(path.as_bytes());
        }
        if words <= INLINE_WORDS {
            let (mut state, mut next) = ([0u64; INLINE_WORDS], [0u64; INLINE_WORDS]);
            self.run(path.as_bytes(), &mut state[..words], &mut next[..words])
        } else {
            self.run(path.as_bytes(), &mut vec![0; words], &mut vec![0; words])
        }
    }

    /// The automaton over `path`, with `state` and `next` as long as the masks.
    fn run<'a>(&self, path: &[u8], mut state: &'a mut [u64], mut next: &'a mut [u64]) -> bool {
        let words = state.len();
        if let Some(first) = state.first_mut() {
            *first = 1;
        }
        self.enter_stars(state);
        for &b in path {
            let start = usize::from(self.row[usize::from(b)]) * words;
            let Some(bytes) = self.bytes.get(start..start + words) else { return false };
            // '/' ends a `*`: only `**` consume it.
            let (consumers, stays) = if b == b'/' {
                (&self.double_star, &self.double_star_after)
            } else {
                (&self.any_star, &self.any_star_after)
            };
            let mut carry = 0;
            let mut alive = 0;
            let masks = bytes.iter().zip(consumers).zip(stays);
            for ((n, &s), ((&byte, &consumer), &stay)) in next.iter_mut().zip(state.iter()).zip(masks) {
                // Bit j moves to j + 1 over a matching byte or into a star
                // that consumes b; the bit after a consuming star stays.
                let moved = s & (byte | consumer);
                *n = (moved << 1) | carry | (s & stay);
                carry = moved >> 63;
                alive |= *n;
            }
            if alive == 0 {
                return false;
            }
            self.enter_stars(next);
            std::mem::swap(&mut state, &mut next);
        }
        state.get(self.tokens / 64).is_some_and(|&w| (w >> (self.tokens % 64)) & 1 == 1)
    }

    /// [`Glob::run`] for patterns of up to 63 tokens (nearly all): the same
    /// steps on one word, without the loops over words.
    fn run_one_word(&self, path: &[u8]) -> bool {
        let first = |masks: &[u64]| masks.first().copied().unwrap_or(0);
        let (double_star, any_star) = (first(&self.double_star), first(&self.any_star));
        let (double_star_after, any_star_after) = (first(&self.double_star_after), first(&self.any_star_after));
        let enter_stars = |s: u64| s | ((s & any_star) << 1);
        let mut state = enter_stars(1);
        for &b in path {
            let byte = self.bytes.get(usize::from(self.row[usize::from(b)])).copied().unwrap_or(0);
            let (consumer, stay) =
                if b == b'/' { (double_star, double_star_after) } else { (any_star, any_star_after) };
            state = ((state & (byte | consumer)) << 1) | (state & stay);
            if state == 0 {
                return false;
            }
            state = enter_stars(state);
        }
        (state >> self.tokens) & 1 == 1
    }

    /// Stars match the empty run: a state before a star is also after it.
    /// Stars are never adjacent (`***` is refused), so one step is enough.
    fn enter_stars(&self, state: &mut [u64]) {
        let mut carry = 0;
        for (s, &stars) in state.iter_mut().zip(&self.any_star) {
            let entered = *s & stars;
            *s |= (entered << 1) | carry;
            carry = entered >> 63;
        }
    }
}

fn set_bit(mask: &mut [u64], j: usize) {
    if let Some(word) = mask.get_mut(j / 64) {
        *word |= 1 << (j % 64);
    }
}

/// `mask` one bit up (bit j to bit j + 1), across words.
fn shifted_up(mask: &[u64]) -> Vec<u64> {
    let mut carry = 0;
    mask.iter()
        .map(|&w| {
            let up = (w << 1) | carry;
            carry = w >> 63;
            up
        })
        .collect()
}

fn tokenize(pattern: &str) -> Result<Vec<Token>, String> {
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
    Ok(tokens)
}

impl PartialEq for Glob {
    fn eq(&self, other: &Glob) -> bool {
        self.pattern == other.pattern
    }
}

impl Eq for Glob {}

impl std::fmt::Debug for Glob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Glob").field(&self.pattern).finish()
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
        assert!(Glob::new("****").is_err());
    }

    #[test]
    fn several_stars_in_one_segment_backtrack() {
        assert!(g("/v1/*a*b").matches("/v1/xaybab"));
        assert!(g("/v1/*a*b").matches("/v1/ab"));
        assert!(!g("/v1/*a*b").matches("/v1/xayba"));
        assert!(g("/*-*-*").matches("/a-b-c-d"));
        assert!(!g("/*-*-*").matches("/a-b/c-d"));
    }

    #[test]
    fn stars_at_either_end() {
        assert!(g("*").matches(""));
        assert!(g("*").matches("drafts"));
        assert!(!g("*").matches("/drafts"));
        assert!(g("**").matches(""));
        assert!(g("**").matches("/a/b/c"));
        assert!(g("*/drafts").matches("/drafts"));
        assert!(g("*/drafts").matches("v1/drafts"));
        assert!(!g("*/drafts").matches("v1/x/drafts"));
        assert!(g("**/drafts").matches("v1/x/drafts"));
        assert!(g("/v1/*").matches("/v1/abc"));
        assert!(g("/v1/**").matches("/v1/"));
    }

    #[test]
    fn double_star_needs_the_slashes_around_it() {
        // `**` is a run of bytes, not "any number of segments": the slashes
        // written around it must be in the path.
        assert!(!g("/v1/**/drafts").matches("/v1/drafts"));
        assert!(g("/v1/**/drafts").matches("/v1//drafts"));
        assert!(g("/v1/**drafts").matches("/v1/drafts"));
        assert!(g("/v1/**drafts").matches("/v1/a/b-drafts"));
    }

    #[test]
    fn star_then_double_star_later_in_the_path() {
        // A `**` before a `*` must be able to cover what the `*` cannot.
        assert!(g("**a*b").matches("a/ab"));
        assert!(g("/**/p*/drafts").matches("/v1/projects/p1/x/p2/drafts"));
        assert!(!g("/**/p*/drafts").matches("/v1/projects/q1/drafts"));
    }

    #[test]
    fn empty_pattern_and_empty_path() {
        assert!(g("").matches(""));
        assert!(!g("").matches("/"));
        assert!(!g("/").matches(""));
        assert!(!g("/v1/*").matches(""));
    }

    #[test]
    fn non_ascii_bytes_match_literally() {
        assert!(g("/files/*/café").matches("/files/x/café"));
        assert!(!g("/files/*/café").matches("/files/x/cafe"));
        // `*` runs over the bytes of a multi-byte character like any others.
        assert!(g("/files/*").matches("/files/日本語"));
        assert!(g("/*é").matches("/é"));
        assert!(!g("/*é").matches("/e\u{301}"));
    }

    #[test]
    fn long_patterns_span_several_words() {
        // Past the inline state, and with tokens on both sides of each word edge.
        for len in [62, 63, 64, 65, 127, 128, 200, INLINE_TOKENS, INLINE_TOKENS + 1, 600] {
            let literal: String = (0..len).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            assert!(g(&literal).matches(&literal), "{len}");
            assert!(!g(&literal).matches(&literal[..len - 1]), "{len}");
            let starred = format!("{}*{}**", &literal[..len / 2], &literal[len / 2..]);
            let path = format!("{}xyz{}/tail", &literal[..len / 2], &literal[len / 2..]);
            assert!(g(&starred).matches(&path), "{len}");
            assert!(!g(&starred).matches(&path.replacen("xyz", "x/z", 1)), "{len}");
        }
    }

    /// The matcher this one replaced: the same automaton, one `bool` per
    /// position and a new table per path byte. The tests compare against it.
    fn reference(pattern: &str, path: &str) -> bool {
        let tokens = tokenize(pattern).unwrap();
        let n = tokens.len();
        let star = |j: usize| matches!(tokens[j], Token::Star | Token::DoubleStar);
        let mut can = vec![false; n + 1];
        can[0] = true;
        for j in 0..n {
            can[j + 1] = can[j] && star(j);
        }
        for &b in path.as_bytes() {
            let mut next = vec![false; n + 1];
            for j in 0..n {
                next[j + 1] = match tokens[j] {
                    Token::Byte(t) => can[j] && t == b,
                    Token::Star => b != b'/' && (can[j + 1] || can[j]),
                    Token::DoubleStar => can[j + 1] || can[j],
                } || (star(j) && next[j]);
            }
            can = next;
        }
        can[n]
    }

    #[test]
    fn agrees_with_the_reference_on_every_short_pattern_and_path() {
        // Every pattern of up to 5 symbols over {a, /, *} (refusing `***`)
        // against every path of up to 5 bytes over {a, b, /}.
        fn strings(alphabet: &[char], max: usize) -> Vec<String> {
            let mut all = vec![String::new()];
            let mut last = vec![String::new()];
            for _ in 0..max {
                last = last.iter().flat_map(|s| alphabet.iter().map(move |c| format!("{s}{c}"))).collect();
                all.extend(last.iter().cloned());
            }
            all
        }
        let paths = strings(&['a', 'b', '/'], 5);
        let mut compared = 0;
        for pattern in strings(&['a', '/', '*'], 5) {
            let Ok(glob) = Glob::new(&pattern) else {
                assert!(pattern.contains("***"), "{pattern}");
                continue;
            };
            for path in &paths {
                assert_eq!(glob.matches(path), reference(&pattern, path), "{pattern:?} on {path:?}");
                assert_eq!(general(&glob, path), reference(&pattern, path), "{pattern:?} on {path:?}");
                compared += 1;
            }
        }
        assert!(compared > 100_000);
    }

    #[test]
    fn agrees_with_the_reference_on_pseudo_random_long_inputs() {
        // xorshift: deterministic, no dependency.
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..300 {
            let pattern_len = 1 + next(150) as usize;
            let mut pattern = String::new();
            while pattern.len() < pattern_len {
                match next(10) {
                    0 if !pattern.ends_with('*') => pattern.push('*'),
                    1 if !pattern.ends_with('*') => pattern.push_str("**"),
                    2 | 3 => pattern.push('/'),
                    _ => pattern.push(char::from(b'a' + next(2) as u8)),
                }
            }
            let glob = g(&pattern);
            for _ in 0..5 {
                let path_len = next(200) as usize;
                let path: String = (0..path_len)
                    .map(|_| match next(4) {
                        0 => '/',
                        1 => 'b',
                        _ => 'a',
                    })
                    .collect();
                assert_eq!(glob.matches(&path), reference(&pattern, &path), "{pattern:?} on {path:?}");
                assert_eq!(general(&glob, &path), reference(&pattern, &path), "{pattern:?} on {path:?}");
            }
        }
    }

    /// The automaton over as many words as the pattern needs, as patterns of
    /// 64 tokens or more run (`matches` runs shorter ones on one word).
    fn general(glob: &Glob, path: &str) -> bool {
        let words = glob.any_star.len();
        glob.run(path.as_bytes(), &mut vec![0; words], &mut vec![0; words])
    }

    #[test]
    fn patterns_either_side_of_one_word_match_alike() {
        // 63 tokens run on one word, 64 on two.
        for (tokens, words) in [(62, 1), (63, 1), (64, 2)] {
            let pattern = format!("/{}*", "a".repeat(tokens - 2));
            let glob = g(&pattern);
            assert_eq!((glob.tokens, glob.any_star.len()), (tokens, words), "{pattern}");
            for path in [pattern.replace('*', ""), pattern.replace('*', "xyz"), pattern.replace("a*", "*"), "/a".into()]
            {
                assert_eq!(glob.matches(&path), reference(&pattern, &path), "{pattern:?} on {path:?}");
                assert_eq!(general(&glob, &path), reference(&pattern, &path), "{pattern:?} on {path:?}");
            }
            assert!(glob.matches(&pattern.replace('*', "")));
            assert!(!glob.matches(&pattern.replace("a*", "")));
        }
    }
}
