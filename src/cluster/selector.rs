//! Label selectors: apimachinery's `labels.Parse` grammar, its key/value validation and error messages, and
//! matching against [`Labels`]. Used by the API (`labelSelector=`) and by `--node-selector`, and read by the
//! [`Index`](super::Index) to answer equality selectors from its label index.
//!
//! Parsing happens once per request (or once at startup); [`LabelSelector::matches`] is then cheap and
//! allocation-free. This module must not know about HTTP, Status bodies or field selectors.

use super::Labels;

/// A selector string that apimachinery would reject, with its message (shown in a 400 `Status`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SelectorError(pub String);

/// A parsed label selector: every requirement must hold. The empty selector matches everything.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LabelSelector {
    requirements: Vec<Requirement>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Requirement {
    key: String,
    operator: Operator,
    /// Sorted, deduplicated values (a set, as apimachinery's `sets.String`).
    values: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Operator {
    Exists,
    DoesNotExist,
    Equals,
    DoubleEquals,
    NotEquals,
    In,
    NotIn,
    GreaterThan(i64),
    LessThan(i64),
}

/// Lexer tokens; `In`/`NotIn` read as identifiers wherever a value may appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token<'a> {
    End,
    OpenPar,
    ClosedPar,
    Comma,
    Bang,
    Equals,
    DoubleEquals,
    NotEquals,
    Greater,
    Less,
    In,
    NotIn,
    Identifier(&'a str),
}

/// Whether a requirement's key or its values are being read: `in`/`notin` are identifiers in value position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Context {
    KeyAndOperator,
    Values,
}

struct Parser<'a> {
    tokens: Vec<Token<'a>>,
    position: usize,
}

/// Maximum length of a label value and of a qualified name's name part.
const MAX_NAME_LEN: usize = 63;
/// Maximum length of a DNS-1123 subdomain (a label key's prefix).
const MAX_SUBDOMAIN_LEN: usize = 253;
const QUALIFIED_NAME_MSG: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with \
     an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is \
     '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')";
const SUBDOMAIN_MSG: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or \
     '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is \
     '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";
const LABEL_VALUE_MSG: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' \
     or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', \
     regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')";

// === impl LabelSelector ===

impl LabelSelector {
    /// Parses a selector as apimachinery's `labels.Parse` does (whitespace-separated tokens, `,` between
    /// requirements).
    ///
    /// # Errors
    /// [`SelectorError`] with apimachinery's message when the grammar or a key/value validation fails.
    pub fn parse(selector: &str) -> Result<Self, SelectorError> {
        let mut parser = Parser {
            tokens: lex(selector),
            position: 0,
        };
        let mut requirements = parser.parse()?;
        requirements.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(LabelSelector { requirements })
    }

    /// The selector has no requirement (matches everything).
    pub fn is_empty(&self) -> bool {
        self.requirements.is_empty()
    }

    /// Whether `labels` satisfy every requirement.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// For each `key=value`, `key==value` and `key in (values)` requirement, in key order: the key and the
    /// values (sorted, distinct, never empty) one of which every match must carry under that key. An index of
    /// objects by label pair can start from any of them (a match is then confirmed with
    /// [`LabelSelector::matches`]).
    pub fn required_values(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.requirements.iter().filter_map(|r| match r.operator {
            Operator::Equals | Operator::DoubleEquals | Operator::In if !r.values.is_empty() => {
                Some((r.key.as_str(), r.values.as_slice()))
            }
            _ => None,
        })
    }
}

// === impl Requirement ===

impl Requirement {
    fn matches(&self, labels: &Labels) -> bool {
        let value = labels.get(&self.key);
        let in_set = |v: &str| self.values.binary_search_by(|x| x.as_str().cmp(v)).is_ok();
        match self.operator {
            Operator::Exists => value.is_some(),
            Operator::DoesNotExist => value.is_none(),
            Operator::Equals | Operator::DoubleEquals | Operator::In => value.is_some_and(in_set),
            Operator::NotEquals | Operator::NotIn => !value.is_some_and(in_set),
            Operator::GreaterThan(bound) => value
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > bound),
            Operator::LessThan(bound) => value
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < bound),
        }
    }
}

// === impl Parser ===

fn is_whitespace(byte: u8) -> bool {
    matches!(byte, b' ' | b'\t' | b'\r' | b'\n')
}

fn is_special(byte: u8) -> bool {
    matches!(byte, b'=' | b'!' | b'(' | b')' | b',' | b'>' | b'<')
}

fn lex(input: &str) -> Vec<Token<'_>> {
    let bytes = input.as_bytes();
    let mut tokens = Vec::with_capacity(bytes.len() / 2 + 2);
    let mut at = 0;
    loop {
        while at < bytes.len() && is_whitespace(bytes[at]) {
            at += 1;
        }
        let Some(&byte) = bytes.get(at) else {
            tokens.push(Token::End);
            return tokens;
        };
        let next = bytes.get(at + 1).copied();
        let (token, len) = match (byte, next) {
            (b'!', Some(b'=')) => (Token::NotEquals, 2),
            (b'=', Some(b'=')) => (Token::DoubleEquals, 2),
            (b'!', _) => (Token::Bang, 1),
            (b'=', _) => (Token::Equals, 1),
            (b'(', _) => (Token::OpenPar, 1),
            (b')', _) => (Token::ClosedPar, 1),
            (b',', _) => (Token::Comma, 1),
            (b'>', _) => (Token::Greater, 1),
            (b'<', _) => (Token::Less, 1),
            _ => {
                let len = bytes[at..]
                    .iter()
                    .position(|&b| is_special(b) || is_whitespace(b))
                    .unwrap_or(bytes.len() - at);
                // Token boundaries are ASCII bytes, so the slice is on char boundaries.
                let word = &input[at..at + len];
                let token = match word {
                    "in" => Token::In,
                    "notin" => Token::NotIn,
                    _ => Token::Identifier(word),
                };
                (token, len)
            }
        };
        tokens.push(token);
        at += len;
    }
}

impl<'a> Token<'a> {
    /// The literal apimachinery shows in messages (`''` at the end of the string).
    fn literal(self) -> &'a str {
        match self {
            Token::End => "",
            Token::OpenPar => "(",
            Token::ClosedPar => ")",
            Token::Comma => ",",
            Token::Bang => "!",
            Token::Equals => "=",
            Token::DoubleEquals => "==",
            Token::NotEquals => "!=",
            Token::Greater => ">",
            Token::Less => "<",
            Token::In => "in",
            Token::NotIn => "notin",
            Token::Identifier(word) => word,
        }
    }

    fn in_context(self, context: Context) -> Token<'a> {
        match (self, context) {
            (Token::In | Token::NotIn, Context::Values) => Token::Identifier(self.literal()),
            _ => self,
        }
    }
}

fn error(message: String) -> SelectorError {
    SelectorError(message)
}

impl<'a> Parser<'a> {
    fn lookahead(&self, context: Context) -> Token<'a> {
        self.tokens
            .get(self.position)
            .copied()
            .unwrap_or(Token::End)
            .in_context(context)
    }

    fn consume(&mut self, context: Context) -> Token<'a> {
        let token = self.lookahead(context);
        if self.position < self.tokens.len() {
            self.position += 1;
        }
        token
    }

    fn parse(&mut self) -> Result<Vec<Requirement>, SelectorError> {
        let mut requirements = Vec::new();
        loop {
            match self.lookahead(Context::Values) {
                Token::Identifier(_) | Token::Bang => {
                    let requirement = self
                        .parse_requirement()
                        .map_err(|e| error(format!("unable to parse requirement: {}", e.0)))?;
                    requirements.push(requirement);
                    match self.consume(Context::Values) {
                        Token::End => return Ok(requirements),
                        Token::Comma => {
                            let next = self.lookahead(Context::Values);
                            if !matches!(next, Token::Identifier(_) | Token::Bang) {
                                return Err(error(format!(
                                    "found '{}', expected: identifier after ','",
                                    next.literal()
                                )));
                            }
                        }
                        other => {
                            return Err(error(format!(
                                "found '{}', expected: ',' or 'end of string'",
                                other.literal()
                            )));
                        }
                    }
                }
                Token::End => return Ok(requirements),
                other => {
                    return Err(error(format!(
                        "found '{}', expected: !, identifier, or 'end of string'",
                        other.literal()
                    )));
                }
            }
        }
    }

    fn parse_requirement(&mut self) -> Result<Requirement, SelectorError> {
        let mut token = self.consume(Context::Values);
        let negated = token == Token::Bang;
        if negated {
            token = self.consume(Context::Values);
        }
        let Token::Identifier(key) = token else {
            return Err(error(format!(
                "found '{}', expected: identifier",
                token.literal()
            )));
        };
        if let Some(message) = qualified_name_errors(key) {
            return Err(error(format!(
                "key: Invalid value: {}: {message}",
                go_quote(key)
            )));
        }
        let key = key.to_owned();
        if negated {
            return Ok(Requirement {
                key,
                operator: Operator::DoesNotExist,
                values: Vec::new(),
            });
        }
        if matches!(self.lookahead(Context::Values), Token::End | Token::Comma) {
            return Ok(Requirement {
                key,
                operator: Operator::Exists,
                values: Vec::new(),
            });
        }
        let operator = match self.consume(Context::KeyAndOperator) {
            Token::In => Operator::In,
            Token::NotIn => Operator::NotIn,
            Token::Equals => Operator::Equals,
            Token::DoubleEquals => Operator::DoubleEquals,
            Token::NotEquals => Operator::NotEquals,
            Token::Greater => Operator::GreaterThan(0),
            Token::Less => Operator::LessThan(0),
            other => {
                return Err(error(format!(
                    "found '{}', expected: '=', '!=', '==', 'in', notin'",
                    other.literal()
                )));
            }
        };
        let mut values = match operator {
            Operator::In | Operator::NotIn => self.parse_values()?,
            _ => vec![self.parse_exact_value()?],
        };
        values.sort();
        values.dedup();
        new_requirement(key, operator, values)
    }

    fn parse_values(&mut self) -> Result<Vec<String>, SelectorError> {
        let open = self.consume(Context::Values);
        if open != Token::OpenPar {
            return Err(error(format!("found '{}' expected: '('", open.literal())));
        }
        match self.lookahead(Context::Values) {
            first @ (Token::Identifier(_) | Token::Comma) => {
                let values = self.parse_identifiers_list()?;
                if self.consume(Context::Values) != Token::ClosedPar {
                    // apimachinery reports the token seen before the list here.
                    return Err(error(format!("found '{}', expected: ')'", first.literal())));
                }
                Ok(values)
            }
            Token::ClosedPar => {
                self.consume(Context::Values);
                Ok(vec![String::new()])
            }
            other => Err(error(format!(
                "found '{}', expected: ',', ')' or identifier",
                other.literal()
            ))),
        }
    }

    fn parse_identifiers_list(&mut self) -> Result<Vec<String>, SelectorError> {
        let mut values: Vec<String> = Vec::new();
        loop {
            match self.consume(Context::Values) {
                Token::Identifier(value) => {
                    values.push(value.to_owned());
                    match self.lookahead(Context::Values) {
                        Token::Comma => continue,
                        Token::ClosedPar => return Ok(values),
                        other => {
                            return Err(error(format!(
                                "found '{}', expected: ',' or ')'",
                                other.literal()
                            )));
                        }
                    }
                }
                Token::Comma => {
                    if values.is_empty() {
                        values.push(String::new());
                    }
                    match self.lookahead(Context::Values) {
                        Token::ClosedPar => {
                            values.push(String::new());
                            return Ok(values);
                        }
                        Token::Comma => {
                            self.consume(Context::Values);
                            values.push(String::new());
                        }
                        _ => {}
                    }
                }
                other => {
                    return Err(error(format!(
                        "found '{}', expected: ',', or identifier",
                        other.literal()
                    )));
                }
            }
        }
    }

    fn parse_exact_value(&mut self) -> Result<String, SelectorError> {
        if matches!(self.lookahead(Context::Values), Token::End | Token::Comma) {
            return Ok(String::new());
        }
        match self.consume(Context::Values) {
            Token::Identifier(value) => Ok(value.to_owned()),
            other => Err(error(format!(
                "found '{}', expected: identifier",
                other.literal()
            ))),
        }
    }
}

/// apimachinery's `NewRequirement` validation for a parsed binary requirement; errors are aggregated as
/// `field.ErrorList.ToAggregate()` prints them.
fn new_requirement(
    key: String,
    operator: Operator,
    values: Vec<String>,
) -> Result<Requirement, SelectorError> {
    let mut errors = Vec::new();
    let mut operator = operator;
    if let Operator::GreaterThan(_) | Operator::LessThan(_) = operator {
        match values.first().map(|v| v.parse::<i64>()) {
            Some(Ok(bound)) => {
                operator = match operator {
                    Operator::GreaterThan(_) => Operator::GreaterThan(bound),
                    _ => Operator::LessThan(bound),
                };
            }
            _ => errors.push(format!(
                "values[0]: Invalid value: {}: for 'Gt', 'Lt' operators, the value must be an integer",
                go_quote(values.first().map_or("", String::as_str))
            )),
        }
    }
    for (i, value) in values.iter().enumerate() {
        if let Some(message) = label_value_errors(value) {
            errors.push(format!(
                "values[{i}][{key}]: Invalid value: {}: {message}",
                go_quote(value)
            ));
        }
    }
    match errors.len() {
        0 => Ok(Requirement {
            key,
            operator,
            values,
        }),
        1 => Err(error(errors.remove(0))),
        _ => Err(error(format!("[{}]", errors.join(", ")))),
    }
}

/// Go's `%q` for the ASCII strings selectors contain.
fn go_quote(value: &str) -> String {
    format!("{value:?}")
}

/// `([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]`, anchored.
fn is_qualified_name_part(name: &str) -> bool {
    let bytes = name.as_bytes();
    match (bytes.first(), bytes.last()) {
        (Some(first), Some(last)) => {
            first.is_ascii_alphanumeric()
                && last.is_ascii_alphanumeric()
                && bytes
                    .iter()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        }
        _ => false,
    }
}

/// A lowercase RFC 1123 subdomain: dot-separated labels of `[a-z0-9]([-a-z0-9]*[a-z0-9])?`.
fn is_dns_subdomain(value: &str) -> bool {
    value.split('.').all(|label| {
        let bytes = label.as_bytes();
        match (bytes.first(), bytes.last()) {
            (Some(first), Some(last)) => {
                let alnum = |b: &u8| b.is_ascii_lowercase() || b.is_ascii_digit();
                alnum(first) && alnum(last) && bytes.iter().all(|b| alnum(b) || *b == b'-')
            }
            _ => false,
        }
    })
}

/// apimachinery's `IsQualifiedName` messages joined with `; `, or `None` when the key is valid.
fn qualified_name_errors(key: &str) -> Option<String> {
    let mut errors: Vec<String> = Vec::new();
    let mut parts = key.split('/');
    let (prefix, name) = match (parts.next(), parts.next(), parts.next()) {
        (Some(name), None, _) => (None, name),
        (Some(prefix), Some(name), None) => (Some(prefix), name),
        _ => {
            return Some(format!(
                "a qualified name {QUALIFIED_NAME_MSG} with an optional DNS subdomain prefix and '/' (e.g. \
                 'example.com/MyName')"
            ));
        }
    };
    if let Some(prefix) = prefix {
        if prefix.is_empty() {
            errors.push("prefix part must be non-empty".to_owned());
        } else {
            if prefix.len() > MAX_SUBDOMAIN_LEN {
                errors.push(format!(
                    "prefix part must be no more than {MAX_SUBDOMAIN_LEN} characters"
                ));
            }
            if !is_dns_subdomain(prefix) {
                errors.push(format!("prefix part {SUBDOMAIN_MSG}"));
            }
        }
    }
    if name.is_empty() {
        errors.push("name part must be non-empty".to_owned());
    } else if name.len() > MAX_NAME_LEN {
        errors.push(format!(
            "name part must be no more than {MAX_NAME_LEN} characters"
        ));
    }
    if !is_qualified_name_part(name) {
        errors.push(format!("name part {QUALIFIED_NAME_MSG}"));
    }
    (!errors.is_empty()).then(|| errors.join("; "))
}

/// apimachinery's `IsValidLabelValue` messages joined with `; `, or `None` when the value is valid.
fn label_value_errors(value: &str) -> Option<String> {
    let mut errors = Vec::new();
    if value.len() > MAX_NAME_LEN {
        errors.push(format!("must be no more than {MAX_NAME_LEN} characters"));
    }
    if !value.is_empty() && !is_qualified_name_part(value) {
        errors.push(LABEL_VALUE_MSG.to_owned());
    }
    (!errors.is_empty()).then(|| errors.join("; "))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)] // Tests fail loudly on unexpected values.
mod tests;
