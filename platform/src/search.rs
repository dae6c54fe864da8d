//! Directory search words: what `GET /v1/users?q=` matches, the same for the projector that
//! writes them (`rm_users.search_words`) and the query that looks them up. A word matches when
//! a query word is its start, whatever the case and accents ("zoe" finds "Zoë", "lovelace"
//! finds "Ada Lovelace"); the email address is one word, so its start matches too.

use unicode_normalization::char::is_combining_mark;
use unicode_normalization::UnicodeNormalization;

/// Longest prefix indexed (`meetings_word_prefixes` in the migration); longer query words are
/// looked up by their first this many characters and then checked whole.
pub const INDEXED_PREFIX: usize = 24;

/// Most words of a query used (the rest of a long query is ignored).
pub const MAX_QUERY_WORDS: usize = 8;

/// `text` lower-cased and without accents: compatibility decomposition, combining marks
/// dropped, and the letters that do not decompose spelled as their usual Latin fallback.
pub fn fold(text: &str) -> String {
    let mut folded = String::with_capacity(text.len());
    for c in text.nfkd().filter(|c| !is_combining_mark(*c)) {
        match c {
            'ß' | 'ẞ' => folded.push_str("ss"),
            'æ' | 'Æ' => folded.push_str("ae"),
            'œ' | 'Œ' => folded.push_str("oe"),
            'ø' | 'Ø' => folded.push('o'),
            'ł' | 'Ł' => folded.push('l'),
            'đ' | 'Đ' | 'ð' | 'Ð' => folded.push('d'),
            'þ' | 'Þ' => folded.push_str("th"),
            'ı' => folded.push('i'),
            c => folded.extend(c.to_lowercase()),
        }
    }
    folded
}

/// The words of a name: folded, split at everything that is not a letter or a digit.
pub fn name_words(text: &str) -> Vec<String> {
    fold(text)
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `rm_users.search_words`: the name's words and the folded email, space-separated.
pub fn user_words(display_name: &str, email: &str) -> String {
    let mut words = name_words(display_name);
    words.push(fold(email).replace(char::is_whitespace, ""));
    words.join(" ")
}

/// The directory's index entries of `words` ([`user_words`]): every start of every word up to
/// [`INDEXED_PREFIX`] characters, and every whole word; distinct, sorted. What the migration's
/// `meetings_word_prefixes` makes on PostgreSQL; the SQLite backend writes these.
pub fn prefixes(words: &str) -> Vec<String> {
    let mut prefixes = std::collections::BTreeSet::new();
    for word in words.split(' ').filter(|w| !w.is_empty()) {
        for (n, (i, c)) in word.char_indices().enumerate() {
            if n == INDEXED_PREFIX {
                break;
            }
            prefixes.insert(word[..i + c.len_utf8()].to_owned());
        }
        prefixes.insert(word.to_owned());
    }
    prefixes.into_iter().collect()
}

/// What a query looks up: the starts of words (each a prefix of some word of the user), at
/// most [`MAX_QUERY_WORDS`], and the whole query folded, as a start of the email address.
#[derive(Debug, PartialEq, Eq)]
pub struct Query {
    pub words: Vec<String>,
    pub email: String,
}

impl Query {
    pub fn new(q: &str) -> Self {
        let mut words: Vec<String> = Vec::new();
        for word in name_words(q) {
            if !words.contains(&word) && words.len() < MAX_QUERY_WORDS {
                words.push(word);
            }
        }
        Self {
            words,
            email: fold(q.trim()),
        }
    }

    /// The words as the index has them: cut to [`INDEXED_PREFIX`] characters.
    pub fn indexed(&self) -> Vec<String> {
        self.words
            .iter()
            .map(|w| w.chars().take(INDEXED_PREFIX).collect())
            .collect()
    }

    /// The words longer than the index's prefixes, to check whole.
    pub fn long(&self) -> Vec<String> {
        self.words
            .iter()
            .filter(|w| w.chars().count() > INDEXED_PREFIX)
            .cloned()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_are_every_start_up_to_the_indexed_length_and_every_whole_word() {
        assert_eq!(
            prefixes("zoë ab zoe@x.io"),
            [
                "a", "ab", "z", "zo", "zoe", "zoe@", "zoe@x", "zoe@x.", "zoe@x.i", "zoe@x.io",
                "zoë"
            ]
        );
        let long = "a".repeat(30);
        let indexed = prefixes(&long);
        assert_eq!(
            indexed.len(),
            INDEXED_PREFIX + 1,
            "24 starts and the whole word"
        );
        assert!(indexed.contains(&long));
        assert!(prefixes("").is_empty());
    }

    #[test]
    fn accents_and_case_fold_away() {
        assert_eq!(fold("Zoë"), "zoe");
        assert_eq!(fold("ÅNGSTRÖM"), "angstrom");
        assert_eq!(fold("Łukasz Żółć"), "lukasz zolc");
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("Søren Ærø"), "soren aero");
        assert_eq!(fold("ﬁnn"), "finn", "compatibility ligatures decompose");
        assert_eq!(fold("Ἀθηνᾶ"), "αθηνα", "other scripts lose their marks too");
    }

    #[test]
    fn names_split_into_words_and_the_email_stays_whole() {
        assert_eq!(
            user_words("Jean-Luc  Picard (Ops)", "JL.Picard@Example.com"),
            "jean luc picard ops jl.picard@example.com"
        );
        assert_eq!(user_words("Zoë", "zoe@x.io"), "zoe zoe@x.io");
    }

    #[test]
    fn queries_look_up_word_starts_and_the_email_start() {
        let query = Query::new("  Love ADA  ");
        assert_eq!(query.words, ["love", "ada"]);
        assert_eq!(query.email, "love ada");
        assert_eq!(Query::new("ada.love@ex").words, ["ada", "love", "ex"]);
        assert_eq!(Query::new("@@").words, Vec::<String>::new());
        assert_eq!(Query::new("a a a").words, ["a"]);
        let many = Query::new("a b c d e f g h i j");
        assert_eq!(many.words.len(), MAX_QUERY_WORDS);
        let long = Query::new("Wolfeschlegelsteinhausenbergerdorff");
        assert_eq!(long.indexed(), ["wolfeschlegelsteinhausen"]);
        assert_eq!(long.long(), ["wolfeschlegelsteinhausenbergerdorff"]);
    }
}
