//! What callers are told: the messages people read (templates at every
//! level) and the standard response headers.

use super::error::{join, ConfigError};
use super::fields::check_text;
use super::raw::{RawCopy, RawResponseHeaders};
use crate::template::Template;

/// The messages people read, each overridable by a template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Message {
    Warning,
    Blocked,
    NotIncluded,
    Confirm,
    Pace,
    MissingIdentity,
    InvalidCredentials,
    UnknownTier,
    Unavailable,
    Degraded,
    Overage,
    Queued,
    /// A pooled class asked for without a workspace id.
    WorkspaceRequired,
    /// A request larger than the cell could ever admit (413).
    TooLarge,
    /// The 413 for a body larger than `max_body_bytes`.
    BodyTooLarge,
    /// The 400 for a body the filter cannot read.
    UnreadableBody,
    /// An upstream's own capacity refusal, rewritten (see `busy.rs`).
    UpstreamBusy,
}

/// Templates set at one level (global, class, tier or cell); the most
/// specific level that sets a message wins.
#[derive(Debug, Clone, Default)]
pub struct CopySet {
    templates: Vec<(Message, Template)>,
}

impl CopySet {
    pub fn get(&self, message: Message) -> Option<&Template> {
        self.templates.iter().find(|(m, _)| *m == message).map(|(_, t)| t)
    }
}

pub(super) fn check_copy(path: &str, raw: Option<&RawCopy>) -> Result<CopySet, ConfigError> {
    let Some(raw) = raw else {
        return Ok(CopySet::default());
    };
    let fields = [
        ("warning", Message::Warning, &raw.warning),
        ("blocked", Message::Blocked, &raw.blocked),
        ("not_included", Message::NotIncluded, &raw.not_included),
        ("confirm", Message::Confirm, &raw.confirm),
        ("pace", Message::Pace, &raw.pace),
        ("missing_identity", Message::MissingIdentity, &raw.missing_identity),
        ("invalid_credentials", Message::InvalidCredentials, &raw.invalid_credentials),
        ("unknown_tier", Message::UnknownTier, &raw.unknown_tier),
        ("unavailable", Message::Unavailable, &raw.unavailable),
        ("degraded", Message::Degraded, &raw.degraded),
        ("overage", Message::Overage, &raw.overage),
        ("queued", Message::Queued, &raw.queued),
        ("workspace_required", Message::WorkspaceRequired, &raw.workspace_required),
        ("too_large", Message::TooLarge, &raw.too_large),
        ("body_too_large", Message::BodyTooLarge, &raw.body_too_large),
        ("unreadable_body", Message::UnreadableBody, &raw.unreadable_body),
        ("upstream_busy", Message::UpstreamBusy, &raw.upstream_busy),
    ];
    let mut templates = Vec::new();
    for (name, message, text) in fields {
        let Some(text) = text else { continue };
        let at = join(path, name);
        check_text(&at, &Some(text.clone()))?;
        templates.push((message, Template::parse(text).map_err(|reason| ConfigError::new(at, reason))?));
    }
    Ok(CopySet { templates })
}

#[derive(Debug, Clone, Copy)]
pub struct ResponseHeaders {
    pub ratelimit: bool,
    pub quota: bool,
    /// OpenAI-style `x-ratelimit-*` headers (off by default).
    pub openai_ratelimit: bool,
}

pub(super) fn check_response_headers(raw: Option<&RawResponseHeaders>) -> ResponseHeaders {
    ResponseHeaders {
        ratelimit: raw.and_then(|h| h.ratelimit).unwrap_or(true),
        quota: raw.and_then(|h| h.quota).unwrap_or(true),
        openai_ratelimit: raw.and_then(|h| h.openai_ratelimit).unwrap_or(false),
    }
}
