//! After admission: what the upstream's answer changes about a request's
//! charge. Two rules, applied at most once per request:
//!
//! - **Refunds** ([`crate::refund`]): the units go back when the upstream did
//!   not do the work: a refunded status or a request Envoy never forwarded
//!   (at the response head), or a stream that ended with no response head
//!   and never reached an upstream (at the end).
//! - **Reconciliation** ([`crate::metering`]): a token-metered class
//!   (`reconcile: true`) replaces its estimate with the usage the upstream
//!   reports, times the model's multiplier, read from a JSON body kept up to
//!   `max_body_bytes` or from server-sent events scanned as they pass. The
//!   response itself is never held back.
//!
//! No I/O here: the filter feeds a [`Charged`] the response's events (its
//! head, each body chunk, the stream's end) and carries out the
//! [`Correction`] an event returns. Every correction is bounded as
//! [`decide::bounded_delta`] bounds it, so Redis, shared data and the
//! approximate mode's sync all see the same delta.

use crate::config::{Config, Cost, ModelPrice, TokenCount};
use crate::cost;
use crate::decide;
use crate::engine::{self, Decision, Outcome};
use crate::ledger;
use crate::metering::{model_in, usage_in, SseScanner, TokenUsage};
use crate::redis::sync::SyncTarget;
use crate::store::{CounterStore, GiveUp};
use serde_json::Value;

/// The longest line of an event stream read for usage; a longer line is
/// skipped (with any usage it reports).
pub const MAX_EVENT_LINE: usize = 64 * 1024;

/// An admitted request's charge, as its response may still correct it.
#[derive(Debug)]
pub struct Charged {
    /// `None` once settled (refunded, or reconciled from the reported
    /// usage): a charge is corrected at most once.
    charge: Option<Charge>,
    /// A response head arrived (the upstream's, or Envoy's for it).
    answered: bool,
    /// A token-metered class reading the reported usage, until the body ends.
    metering: Option<Metering>,
    /// What the request costs on its binding counter as things stand: the
    /// charge, then 0 once refunded, or the reported usage once reconciled.
    settled: u64,
    /// The usage the upstream reported, once the body was read.
    reported: Option<TokenUsage>,
    /// The model the upstream's answer named, once the body was read.
    served_model: Option<String>,
}

#[derive(Debug)]
struct Charge {
    /// Every counter charged (a stacked cell's several): its key, its
    /// window's start and the most a correction may add to it (the rest of
    /// its limit's ceiling).
    charged: Vec<(String, i64, u64)>,
    cost: u64,
    counters: Counters,
}

#[derive(Debug)]
struct Metering {
    pricing: Pricing,
    body: Reading,
}

/// How reported tokens become what the counter holds.
#[derive(Debug)]
enum Pricing {
    /// Units: the tokens `count` names, times the model multiplier.
    Tokens { factor: f64, count: TokenCount },
    /// Money: each kind of token at the model's price (micro-units).
    Money(ModelPrice),
}

/// How the response body is read for its usage.
#[derive(Debug)]
enum Reading {
    /// A JSON document, kept whole while it fits `max_body_bytes`.
    Json(Vec<u8>),
    /// A JSON document past `max_body_bytes`: the estimate stands.
    TooLarge,
    /// A `text/event-stream`, scanned line by line.
    Events(SseScanner),
}

/// The counters a correction applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Counters {
    /// This Envoy's shared data, through the counter table, at once
    /// ([`Correction::apply`]); in the approximate mode the same delta is
    /// then noted for the sync to Redis.
    Local { sync: Option<SyncTarget> },
    /// Redis in its exact mode: queued as an `adjust`, sent from the root
    /// context so it outlives the stream.
    Redis,
}

/// One correction of a charge: `delta` units (negative: given back) on the
/// counter `key` if its window still starts at `window_start`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Correction {
    pub key: String,
    pub window_start: i64,
    /// Already bounded by `most` and the units bound; never 0.
    pub delta: i64,
    /// The most the correction may add (the store bounds it again).
    pub most: u64,
    pub counters: Counters,
}

impl Correction {
    /// Applies the correction to `store`, as the local counters hold it.
    pub fn apply<S: CounterStore + ?Sized>(&self, config: &Config, store: &S) -> Result<(), GiveUp> {
        engine::correct(config, &self.key, self.window_start, self.delta, self.most, store)
    }
}

/// A busy answer replacing the upstream's: the filter's body goes out in
/// place of the upstream's first body chunk, and every later chunk is
/// dropped as it passes, so nothing of the upstream's body is held.
#[derive(Debug)]
pub struct Replacing {
    /// The answer's body, until it has replaced a chunk.
    pub(super) body: Option<Vec<u8>>,
    /// The upstream's status, for the log line of its body.
    pub(super) status: u16,
}

/// The longest start of an upstream's busy body the log line shows.
pub const LOGGED_BODY: usize = 256;

/// How a stream that ended before any response head left Envoy.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ended {
    /// Envoy's response flags ([`crate::refund::flags`]).
    pub response_flags: u64,
    /// Envoy connected the stream to an upstream host.
    pub upstream_connected: bool,
}

impl Charged {
    /// What the response may correct about `d`, admitted: `None` when it
    /// charged no counter. `request` is the request's JSON as forwarded
    /// (after any rewrite: a degraded model is metered at its own
    /// multiplier); `sync` is where the approximate mode syncs the counter.
    pub fn new(config: &Config, d: &Decision, request: Option<&Value>, sync: Option<SyncTarget>) -> Option<Charged> {
        let Outcome::Charged(c) = &d.outcome else { return None };
        let class = config.class(d.class)?;
        let pricing = match class.cost {
            Cost::Tokens { reconcile: true, count, .. } => {
                Some(Pricing::Tokens { factor: cost::model_factor(class, request), count })
            }
            // Priced as reserved: the forwarded request's model (after any
            // degrade), else the table's dearest.
            Cost::Priced { .. } => engine::price_for(config, request).map(Pricing::Money),
            _ => None,
        };
        let metering = pricing.map(|pricing| Metering { pricing, body: Reading::Json(Vec::new()) });
        let counters = match config.counters.exact_redis() {
            Some(_) => Counters::Redis,
            None => Counters::Local { sync },
        };
        let charged: Vec<(String, i64, u64)> = d
            .charged()
            .into_iter()
            .map(|(key, limit, start)| (key.to_string(), start, engine::correction_room_of(config, d, limit)))
            .collect();
        if charged.is_empty() {
            return None;
        }
        let charge = Charge { charged, cost: c.cost, counters };
        Some(Charged {
            charge: Some(charge),
            answered: false,
            metering,
            settled: c.cost,
            reported: None,
            served_model: None,
        })
    }

    /// What the request costs on its binding counter: its charge, after any
    /// refund or reconciliation so far.
    pub fn settled(&self) -> u64 {
        self.settled
    }

    /// The usage the upstream reported (a metered class, once its body ended).
    pub fn reported(&self) -> Option<&TokenUsage> {
        self.reported.as_ref()
    }

    /// The model the upstream's answer named (a metered class, once its body ended).
    pub fn served_model(&self) -> Option<&str> {
        self.served_model.as_deref()
    }

    /// Whether the response body is read: the filter hands over its chunks
    /// only then.
    pub fn reads_body(&self) -> bool {
        self.charge.is_some() && self.metering.is_some()
    }

    /// The response head arrived with `status` (`None`: unreadable), its
    /// `content_type` and Envoy's `response_flags`: a refund when the
    /// upstream did not do the work.
    pub fn response_head(
        &mut self,
        config: &Config,
        status: Option<u16>,
        content_type: Option<&[u8]>,
        response_flags: u64,
    ) -> Vec<Correction> {
        if self.charge.is_none() {
            return Vec::new();
        }
        self.answered = true;
        if config.refunds.after_response(status, response_flags) {
            return self.refund();
        }
        if let Some(m) = &mut self.metering {
            if content_type.is_some_and(|t| t.starts_with(b"text/event-stream")) {
                m.body = Reading::Events(SseScanner::new(MAX_EVENT_LINE));
            }
        }
        Vec::new()
    }

    /// A chunk of the response body (`end`: the last one): at the end, the
    /// estimate is replaced by the reported usage, if the upstream reported one.
    pub fn response_body(&mut self, config: &Config, chunk: &[u8], end: bool) -> Vec<Correction> {
        self.read_body(config, chunk, end).unwrap_or_default()
    }

    fn read_body(&mut self, config: &Config, chunk: &[u8], end: bool) -> Option<Vec<Correction>> {
        self.charge.as_ref()?;
        let m = self.metering.as_mut()?;
        match &mut m.body {
            Reading::Events(scanner) => scanner.feed(chunk),
            Reading::Json(kept) if kept.len().saturating_add(chunk.len()) <= config.max_body_bytes => {
                kept.extend_from_slice(chunk)
            }
            Reading::Json(_) => m.body = Reading::TooLarge,
            Reading::TooLarge => {}
        }
        if !end {
            return None;
        }
        let m = self.metering.take()?;
        let (reported, model) = match m.body {
            Reading::Events(scanner) => (scanner.usage(), scanner.model().map(str::to_string)),
            Reading::TooLarge => (None, None),
            Reading::Json(kept) => match serde_json::from_slice::<Value>(&kept) {
                Ok(doc) => (usage_in(&doc), model_in(&doc).map(|m| ledger::bounded(m, ledger::MAX_MODEL_BYTES))),
                Err(_) => (None, None),
            },
        };
        self.reported = reported;
        self.served_model = model;
        // A usage that does not say which tokens were input and which output
        // (only a total) leaves an input or output count, or a price, at its
        // estimate.
        let actual = match m.pricing {
            Pricing::Tokens { factor, count } => {
                let tokens = match count {
                    TokenCount::All => reported?.tokens()?,
                    TokenCount::Input => reported?
                        .kinds()
                        .map(|k| k.input.saturating_add(k.cached_input).saturating_add(k.cache_write))?,
                    TokenCount::Output => reported?.kinds().map(|k| k.output.saturating_add(k.reasoning))?,
                };
                cost::scale(tokens, factor)
            }
            Pricing::Money(price) => price.cost(&reported?.kinds()?).max(1),
        };
        let charge = self.charge.take()?;
        let delta = i64::try_from(actual).unwrap_or(i64::MAX) - i64::try_from(charge.cost).unwrap_or(i64::MAX);
        // The binding counter's correction, bounded as it is applied.
        let most = charge.charged.first().map_or(0, |(_, _, most)| *most);
        let applied = decide::bounded_delta(delta, most);
        self.settled = charge.cost.saturating_add_signed(applied);
        Some(charge.corrections(delta))
    }

    /// The stream ended. With no response head, the charge goes back only
    /// if the request never reached an upstream (a client that leaves after
    /// that keeps its charge). `ended` is asked only then: each of its
    /// answers is a host read.
    pub fn stream_end(&mut self, config: &Config, ended: impl FnOnce() -> Ended) -> Vec<Correction> {
        if self.answered || self.charge.is_none() {
            return Vec::new();
        }
        let e = ended();
        if config.refunds.without_response(e.response_flags, e.upstream_connected) {
            return self.refund();
        }
        Vec::new()
    }

    /// The whole charge back, whatever `refunds` says (an upstream's busy
    /// answer): at most once, and never more than was charged.
    pub fn give_back(&mut self) -> Vec<Correction> {
        self.answered = true;
        self.refund()
    }

    /// The whole charge back: the upstream did not do the work.
    fn refund(&mut self) -> Vec<Correction> {
        self.metering = None;
        if self.charge.is_some() {
            self.settled = 0;
        }
        let Some(charge) = self.charge.take() else { return Vec::new() };
        let cost = i64::try_from(charge.cost).unwrap_or(i64::MAX);
        charge.corrections(-cost)
    }
}

impl Charge {
    /// `delta` on every counter charged, each bounded by its own room.
    fn corrections(self, delta: i64) -> Vec<Correction> {
        let counters = self.counters;
        self.charged
            .into_iter()
            .filter_map(|(key, window_start, most)| {
                let delta = decide::bounded_delta(delta, most);
                (delta != 0).then(|| Correction { key, window_start, delta, most, counters: counters.clone() })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClassId;
    use crate::counter::Counter;
    use crate::engine::charge;
    use crate::identity::identify;
    use crate::refund::flags::{DOWNSTREAM_REMOTE_RESET, UPSTREAM_CONNECTION_FAILURE};
    use crate::request::NoProperties;
    use crate::store::MemoryStore;
    use crate::testing::head;
    use crate::units::MAX_UNITS;
    use serde_json::json;
    use std::cell::Cell;

    const NOON_MS: i64 = 1_795_348_800_000;

    /// The one correction a one-limit cell's event returns, if any.
    trait One {
        fn one(self) -> Option<Correction>;
    }

    impl One for Vec<Correction> {
        fn one(self) -> Option<Correction> {
            assert!(self.len() <= 1, "{self:?}");
            self.into_iter().next()
        }
    }

    /// "chat" meters tokens (reconciled, "big" models count twice) within
    /// `chat_hard` a day; "files" costs 3 within 10 a day. `extra` adds
    /// top-level fields (`refunds`, `max_body_bytes`, `counters`).
    fn config(chat_hard: u64, extra: &str) -> Config {
        let doc = format!(
            r#"{{
                "identity": {{"user": [{{"header": "x-user-id"}}], "default_tier": "free"}},
                "classes": [
                    {{"name": "chat", "match": [{{"path": {{"exact": "/chat"}}}}],
                      "cost": {{"tokens": {{"default_max_tokens": 100}}, "models": {{"big*": 2}}}}}},
                    {{"name": "files", "match": [{{"path": {{"exact": "/files"}}}}], "cost": {{"fixed": 3}}}}
                ],
                "tiers": {{"free": {{"limits": {{
                    "chat": {{"hard": {chat_hard}, "window": "day", "at_hard": "block"}},
                    "files": {{"hard": 10, "window": "day"}}
                }}}}}}
                {extra}
            }}"#
        );
        Config::from_json(doc.as_bytes()).unwrap()
    }

    const CHAT: ClassId = ClassId(0);
    const FILES: ClassId = ClassId(1);

    /// Charges one request of `class` (its JSON `body` costs what the core
    /// estimates) to alice's counter in `store`.
    fn admit(config: &Config, class: ClassId, body: Option<&Value>, store: &MemoryStore) -> (Decision, Charged) {
        let alice = identify(config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        let cost = engine::request_cost(config, class, cost::Body { bytes: None, json: body, prompt_chars: 0 });
        let d = charge(config, &alice, class, cost, false, NOON_MS, &config.counters.table(store, NOON_MS));
        assert!(d.admitted(), "{d:?}");
        let charged = Charged::new(config, &d, body, None).unwrap();
        (d, charged)
    }

    fn used(config: &Config, store: &MemoryStore, key: &str) -> u64 {
        let table = config.counters.table(store, NOON_MS);
        table.get(key).unwrap().and_then(|(bytes, _)| Counter::decode(&bytes)).map_or(0, |c| c.used)
    }

    /// A chat request the core estimates at 2 + 50 = 52 tokens (times the model's multiplier).
    fn chat(model: &str) -> Value {
        json!({"model": model, "messages": [{"role": "user", "content": "12345678"}], "max_tokens": 50})
    }

    fn ended(response_flags: u64, upstream_connected: bool) -> impl FnOnce() -> Ended {
        move || Ended { response_flags, upstream_connected }
    }

    #[test]
    fn a_listed_status_gives_the_whole_charge_back() {
        let config = config(1000, r#", "refunds": {"statuses": [503]}"#);
        let store = MemoryStore::new();
        let (d, mut charged) = admit(&config, FILES, None, &store);
        let key = d.key.clone().unwrap();
        assert_eq!(used(&config, &store, &key), 3);
        let Outcome::Charged(c) = &d.outcome else { panic!("{d:?}") };
        let refund = charged.response_head(&config, Some(503), Some(b"application/json"), 0).one().unwrap();
        assert_eq!(
            refund,
            Correction {
                key: key.clone(),
                window_start: c.usage.window.start,
                delta: -3,
                most: 7,
                counters: Counters::Local { sync: None },
            }
        );
        refund.apply(&config, &config.counters.table(&store, NOON_MS)).unwrap();
        assert_eq!(used(&config, &store, &key), 0);
        // Once: nothing is left to correct.
        assert_eq!(charged.response_body(&config, b"{}", true).one(), None);
        assert_eq!(charged.stream_end(&config, ended(UPSTREAM_CONNECTION_FAILURE, false)).one(), None);
    }

    #[test]
    fn an_unlisted_status_or_a_success_keeps_the_charge() {
        let config = config(1000, r#", "refunds": {"statuses": [503]}"#);
        for status in [Some(200), Some(500), Some(404), None] {
            let store = MemoryStore::new();
            let (_, mut charged) = admit(&config, FILES, None, &store);
            assert_eq!(charged.response_head(&config, status, None, 0).one(), None, "{status:?}");
            assert_eq!(charged.response_body(&config, b"", true).one(), None);
            // The upstream answered: the end asks the host nothing.
            assert_eq!(charged.stream_end(&config, || panic!("asked how the stream ended")).one(), None);
        }
    }

    #[test]
    fn a_request_envoy_never_forwarded_is_refunded_whatever_the_status() {
        let config = config(1000, r#", "refunds": {"statuses": []}"#);
        let store = MemoryStore::new();
        let (_, mut charged) = admit(&config, FILES, None, &store);
        let refund = charged.response_head(&config, Some(503), None, UPSTREAM_CONNECTION_FAILURE).one();
        assert_eq!(refund.map(|r| r.delta), Some(-3));
    }

    #[test]
    fn a_client_that_leaves_after_forwarding_keeps_its_charge() {
        let config = config(1000, "");
        let store = MemoryStore::new();
        let (_, mut charged) = admit(&config, FILES, None, &store);
        let asked = Cell::new(false);
        let correction = charged
            .stream_end(&config, || {
                asked.set(true);
                Ended { response_flags: DOWNSTREAM_REMOTE_RESET, upstream_connected: true }
            })
            .one();
        assert_eq!(correction, None);
        assert!(asked.get());
    }

    #[test]
    fn a_request_that_never_reached_an_upstream_is_refunded_at_the_end() {
        let config = config(1000, "");
        let store = MemoryStore::new();
        let (d, mut charged) = admit(&config, FILES, None, &store);
        let refund = charged.stream_end(&config, ended(DOWNSTREAM_REMOTE_RESET, false)).one().unwrap();
        assert_eq!((refund.key.as_str(), refund.delta), (d.key.as_deref().unwrap(), -3));
        let (_, mut failed) = admit(&config, FILES, None, &store);
        let refund = failed.stream_end(&config, ended(UPSTREAM_CONNECTION_FAILURE, true)).one().unwrap();
        assert_eq!(refund.delta, -3);
    }

    #[test]
    fn reported_json_usage_replaces_the_estimate() {
        let config = config(1000, "");
        let store = MemoryStore::new();
        let (d, mut charged) = admit(&config, CHAT, Some(&chat("small")), &store);
        let key = d.key.clone().unwrap();
        assert_eq!(used(&config, &store, &key), 52);
        assert!(charged.reads_body());
        assert_eq!(charged.response_head(&config, Some(200), Some(b"application/json"), 0).one(), None);
        let body = json!({"choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 15, "total_tokens": 20}});
        let body = body.to_string();
        let (first, rest) = body.as_bytes().split_at(17);
        assert_eq!(charged.response_body(&config, first, false).one(), None);
        // Fewer tokens than estimated: a negative delta.
        let correction = charged.response_body(&config, rest, true).one().unwrap();
        assert_eq!((correction.delta, correction.most), (20 - 52, 1000 - 52));
        correction.apply(&config, &config.counters.table(&store, NOON_MS)).unwrap();
        assert_eq!(used(&config, &store, &key), 20);
        assert!(!charged.reads_body());
        assert_eq!(charged.stream_end(&config, ended(0, false)).one(), None);
    }

    #[test]
    fn streamed_usage_is_read_across_chunks() {
        let config = config(1000, "");
        let stream = concat!(
            "data: {\"choices\":[{\"delta\":{\"content\":\"Hi\"}}],\"usage\":null}\n\n",
            "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":40,\"total_tokens\":70}}\n\n",
            "data: [DONE]\n\n"
        );
        for split in [1, 5, 64, stream.len()] {
            let store = MemoryStore::new();
            let (_, mut charged) = admit(&config, CHAT, Some(&chat("small")), &store);
            charged.response_head(&config, Some(200), Some(b"text/event-stream; charset=utf-8"), 0).one();
            let chunks: Vec<&[u8]> = stream.as_bytes().chunks(split).collect();
            let mut corrections = Vec::new();
            for (i, chunk) in chunks.iter().enumerate() {
                corrections.extend(charged.response_body(&config, chunk, i + 1 == chunks.len()).one());
            }
            let deltas: Vec<i64> = corrections.iter().map(|c| c.delta).collect();
            assert_eq!(deltas, vec![70 - 52], "chunks of {split}");
        }
    }

    #[test]
    fn a_streamed_responses_call_settles_to_the_usage_of_its_completed_event() {
        // A Responses API stream reports usage only in `response.completed`:
        // once read, a long answer is charged what it used, not the estimate.
        let config = config(100_000, "");
        let stream = concat!(
            "event: response.created\n",
            "data: {\"type\":\"response.created\",\"response\":{\"object\":\"response\",\"usage\":null}}\n\n",
            "event: response.output_text.delta\n",
            "data: {\"type\":\"response.output_text.delta\",\"delta\":\"Hi\"}\n\n",
            "event: response.completed\n",
            "data: {\"type\":\"response.completed\",\"response\":{\"object\":\"response\",\"usage\":",
            "{\"input_tokens\":30,\"input_tokens_details\":{\"cached_tokens\":0},\"output_tokens\":9000,",
            "\"output_tokens_details\":{\"reasoning_tokens\":0},\"total_tokens\":9030}}}\n\n"
        );
        let store = MemoryStore::new();
        let (_, mut charged) = admit(&config, CHAT, Some(&chat("small")), &store);
        charged.response_head(&config, Some(200), Some(b"text/event-stream"), 0).one();
        let correction = charged.response_body(&config, stream.as_bytes(), true).one();
        assert_eq!(correction.map(|c| c.delta), Some(9030 - 52));
    }

    #[test]
    fn an_event_stream_read_as_json_reports_nothing() {
        // Without the content type, the stream is not scanned for events.
        let config = config(1000, "");
        let store = MemoryStore::new();
        let (_, mut charged) = admit(&config, CHAT, Some(&chat("small")), &store);
        charged.response_head(&config, Some(200), Some(b"application/json"), 0).one();
        let stream = "data: {\"usage\":{\"total_tokens\":70}}\n\n";
        assert_eq!(charged.response_body(&config, stream.as_bytes(), true).one(), None);
    }

    #[test]
    fn a_json_body_over_the_cap_keeps_the_estimate() {
        let config = config(1000, r#", "max_body_bytes": 64"#);
        let body = json!({"usage": {"total_tokens": 20}, "pad": "x".repeat(40)}).to_string();
        assert!(body.len() > 64);
        let store = MemoryStore::new();
        let (_, mut charged) = admit(&config, CHAT, Some(&chat("small")), &store);
        charged.response_head(&config, Some(200), None, 0).one();
        let (first, rest) = body.as_bytes().split_at(40);
        assert_eq!(charged.response_body(&config, first, false).one(), None);
        assert_eq!(charged.response_body(&config, rest, true).one(), None);
        // The same usage within the cap is read.
        let (_, mut small) = admit(&config, CHAT, Some(&chat("small")), &store);
        small.response_head(&config, Some(200), None, 0).one();
        let fits = json!({"usage": {"total_tokens": 20}}).to_string();
        assert_eq!(small.response_body(&config, fits.as_bytes(), true).one().map(|c| c.delta), Some(20 - 52));
    }

    #[test]
    fn the_model_multiplier_scales_the_reported_tokens() {
        let config = config(1000, "");
        let store = MemoryStore::new();
        let (d, mut charged) = admit(&config, CHAT, Some(&chat("big-1")), &store);
        assert_eq!(used(&config, &store, d.key.as_deref().unwrap()), 2 * 52);
        charged.response_head(&config, Some(200), None, 0).one();
        let body = json!({"usage": {"input_tokens": 10, "output_tokens": 21}}).to_string();
        let correction = charged.response_body(&config, body.as_bytes(), true).one().unwrap();
        assert_eq!(correction.delta, 2 * 31 - 2 * 52);
    }

    #[test]
    fn input_or_output_counts_settle_to_their_own_kinds() {
        // `all` keeps its rule: the upstream's total, else input + output as
        // reported (Anthropic's cache tokens are not in its input_tokens).
        for (count, expected) in [("input", Some(40 + 900 + 60)), ("output", Some(21 + 9)), ("all", Some(40 + 30))] {
            let doc = format!(
                r#"{{"identity": {{"user": [{{"header": "x-user-id"}}], "default_tier": "free"}},
                    "classes": [{{"name": "chat", "cost": {{"tokens": {{"default_max_tokens": 100, "count": "{count}"}}}}}}],
                    "tiers": {{"free": {{"limits": {{"chat": {{"hard": 100000, "window": "day"}}}}}}}}}}"#
            );
            let config = Config::from_json(doc.as_bytes()).unwrap();
            let store = MemoryStore::new();
            let (d, mut charged) = admit(&config, CHAT, Some(&chat("m")), &store);
            let Outcome::Charged(c) = &d.outcome else { panic!("{d:?}") };
            charged.response_head(&config, Some(200), None, 0).one();
            // Anthropic-shaped: 40 plain input, 900 read from and 60 written
            // to the cache; 30 output of which 9 thinking.
            let body = json!({"usage": {"input_tokens": 40, "cache_read_input_tokens": 900,
                "cache_creation_input_tokens": 60, "output_tokens": 30,
                "output_tokens_details": {"thinking_tokens": 9}}});
            let correction = charged.response_body(&config, body.to_string().as_bytes(), true).one();
            let settled = correction.map_or(c.cost as i64, |k| c.cost as i64 + k.delta);
            assert_eq!(Some(settled as u64), expected, "{count}");
        }
    }

    #[test]
    fn a_usage_with_only_a_total_leaves_an_output_count_at_its_estimate() {
        let doc = r#"{"identity": {"user": [{"header": "x-user-id"}], "default_tier": "free"},
            "classes": [{"name": "chat", "cost": {"tokens": {"default_max_tokens": 100, "count": "output"}}}],
            "tiers": {"free": {"limits": {"chat": {"hard": 100000, "window": "day"}}}}}"#;
        let config = Config::from_json(doc.as_bytes()).unwrap();
        let store = MemoryStore::new();
        let (d, mut charged) = admit(&config, CHAT, Some(&chat("m")), &store);
        let Outcome::Charged(c) = &d.outcome else { panic!("{d:?}") };
        // The completion budget the request asked for.
        assert_eq!(c.cost, 50);
        charged.response_head(&config, Some(200), None, 0).one();
        let body = json!({"usage": {"total_tokens": 5000}}).to_string();
        assert_eq!(charged.response_body(&config, body.as_bytes(), true).one(), None);
    }

    #[test]
    fn a_correction_adds_at_most_the_rest_of_the_ceiling() {
        let config = config(100, "");
        let store = MemoryStore::new();
        let (d, mut charged) = admit(&config, CHAT, Some(&chat("small")), &store);
        charged.response_head(&config, Some(200), None, 0).one();
        let body = json!({"usage": {"total_tokens": 5000}}).to_string();
        let correction = charged.response_body(&config, body.as_bytes(), true).one().unwrap();
        assert_eq!((correction.delta, correction.most), (48, 48));
        correction.apply(&config, &config.counters.table(&store, NOON_MS)).unwrap();
        assert_eq!(used(&config, &store, d.key.as_deref().unwrap()), 100);
    }

    #[test]
    fn a_correction_saturates_at_the_units_bound() {
        let config = config(MAX_UNITS, "");
        let store = MemoryStore::new();
        let (d, mut charged) = admit(&config, CHAT, Some(&chat("big-1")), &store);
        charged.response_head(&config, Some(200), None, 0).one();
        let body = format!(r#"{{"usage": {{"input_tokens": {}, "output_tokens": 1}}}}"#, u64::MAX);
        let correction = charged.response_body(&config, body.as_bytes(), true).one().unwrap();
        let estimate = 2 * 52;
        assert_eq!(correction.delta, i64::try_from(MAX_UNITS - estimate).unwrap());
        assert_eq!(correction.most, MAX_UNITS - estimate);
        correction.apply(&config, &config.counters.table(&store, NOON_MS)).unwrap();
        assert_eq!(used(&config, &store, d.key.as_deref().unwrap()), MAX_UNITS);
    }

    #[test]
    fn a_usage_equal_to_the_estimate_or_none_at_all_corrects_nothing() {
        let config = config(1000, "");
        let store = MemoryStore::new();
        let (_, mut exact) = admit(&config, CHAT, Some(&chat("small")), &store);
        exact.response_head(&config, Some(200), None, 0).one();
        assert_eq!(exact.response_body(&config, br#"{"usage": {"total_tokens": 52}}"#, true).one(), None);
        let (_, mut silent) = admit(&config, CHAT, Some(&chat("small")), &store);
        silent.response_head(&config, Some(200), Some(b"text/event-stream"), 0).one();
        assert_eq!(silent.response_body(&config, b"data: {\"choices\":[]}\n\ndata: [DONE]\n\n", true).one(), None);
    }

    #[test]
    fn a_class_not_metered_by_tokens_reads_no_body() {
        let config = config(1000, "");
        let store = MemoryStore::new();
        let (_, mut charged) = admit(&config, FILES, None, &store);
        assert!(!charged.reads_body());
        charged.response_head(&config, Some(200), Some(b"text/event-stream"), 0).one();
        assert_eq!(charged.response_body(&config, b"data: {\"usage\":{\"total_tokens\":70}}\n\n", true).one(), None);
    }

    #[test]
    fn a_request_charged_nothing_has_nothing_to_correct() {
        let config = config(1000, "");
        let alice = identify(&config, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        let store = MemoryStore::new();
        // Refused at the hard limit: charged no units, so none to give
        // back, and no room to add any.
        let refused = charge(&config, &alice, FILES, 11, false, NOON_MS, &config.counters.table(&store, NOON_MS));
        assert!(!refused.admitted());
        assert!(Charged::new(&config, &refused, None, None).is_none());
        // No counter at all: nothing for the response to correct.
        let not_included = Decision { outcome: Outcome::NotIncluded, key: None, ..refused };
        assert!(Charged::new(&config, &not_included, None, None).is_none());
    }

    #[test]
    fn corrections_of_the_exact_redis_store_go_to_redis_and_approximate_ones_sync() {
        let exact = config(1000, r#", "counters": {"store": "redis", "redis": {"cluster": "redis"}}"#);
        let store = MemoryStore::new();
        let d = {
            let alice = identify(&exact, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
            charge(&exact, &alice, FILES, 3, false, NOON_MS, &store)
        };
        let mut charged = Charged::new(&exact, &d, None, None).unwrap();
        let refund = charged.response_head(&exact, Some(500), None, 0).one().unwrap();
        assert_eq!((refund.counters, refund.delta), (Counters::Redis, -3));

        let approximate =
            config(1000, r#", "counters": {"store": "redis", "redis": {"cluster": "redis", "mode": "approximate"}}"#);
        let alice = identify(&approximate, &head(&[("x-user-id", "alice")]), &NoProperties).unwrap();
        let d = charge(&approximate, &alice, FILES, 3, false, NOON_MS, &approximate.counters.table(&store, NOON_MS));
        let sync = SyncTarget::of(&approximate, &d, &alice);
        assert!(sync.is_some());
        let mut charged = Charged::new(&approximate, &d, None, sync.clone()).unwrap();
        let refund = charged.response_head(&approximate, Some(500), None, 0).one().unwrap();
        assert_eq!((refund.counters, refund.delta), (Counters::Local { sync }, -3));
    }

    /// Whatever order and content the response's events come in (a head or
    /// none, any status and flags, usage split anywhere, junk, a stream cut
    /// short), a charge is corrected at most once, never by more than its
    /// ceiling allows, and never below what it charged: the counter ends
    /// between 0 and the cell's ceiling.
    #[test]
    fn random_event_sequences_correct_a_charge_at_most_once_and_within_its_bounds() {
        let config = config(1000, r#", "max_body_bytes": 96"#);
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        let mut next = |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        let usage_json = r#"{"usage":{"prompt_tokens":7,"completion_tokens":900,"total_tokens":907}}"#;
        let usage_sse = "data: {\"choices\":[]}\n\ndata: {\"usage\":{\"total_tokens\":3}}\n\ndata: [DONE]\n\n";
        let pieces: [&[u8]; 5] = [usage_json.as_bytes(), usage_sse.as_bytes(), b"", b"\xff\x00junk", &[b'x'; 200]];
        let flags = [0, DOWNSTREAM_REMOTE_RESET, UPSTREAM_CONNECTION_FAILURE];
        let (mut up, mut down) = (0, 0);
        for case in 0..3_000 {
            let store = MemoryStore::new();
            let model = if next(2) == 0 { "small" } else { "big-1" };
            let (d, mut charged) = admit(&config, CHAT, Some(&chat(model)), &store);
            let key = d.key.clone().unwrap();
            let charged_cost = used(&config, &store, &key);
            let mut corrections = Vec::new();
            for _ in 0..next(8) {
                let correction = match next(4) {
                    0 => {
                        let status = [None, Some(200), Some(429), Some(503)][next(4) as usize];
                        let content_type: Option<&[u8]> =
                            [None, Some(&b"application/json"[..]), Some(&b"text/event-stream"[..])][next(3) as usize];
                        charged.response_head(&config, status, content_type, flags[next(3) as usize]).one()
                    }
                    1 | 2 => {
                        let piece = pieces[next(5) as usize];
                        let at = next(piece.len() as u64 + 1) as usize;
                        let first = charged.response_body(&config, &piece[..at], false).one();
                        first.or_else(|| charged.response_body(&config, &piece[at..], next(2) == 0).one())
                    }
                    _ => {
                        let (f, connected) = (flags[next(3) as usize], next(2) == 0);
                        charged
                            .stream_end(&config, move || Ended { response_flags: f, upstream_connected: connected })
                            .one()
                    }
                };
                corrections.extend(correction);
            }
            assert!(corrections.len() <= 1, "case {case}: {corrections:?}");
            for c in &corrections {
                assert!(c.delta != 0 && c.delta <= i64::try_from(c.most).unwrap(), "case {case}: {c:?}");
                assert!(c.delta >= -i64::try_from(charged_cost).unwrap(), "case {case}: {c:?}");
                c.apply(&config, &config.counters.table(&store, NOON_MS)).unwrap();
                if c.delta > 0 {
                    up += 1;
                } else {
                    down += 1;
                }
            }
            assert!(used(&config, &store, &key) <= 1000, "case {case}");
        }
        // The sequences reach both kinds of correction often: the bounds were tested.
        assert!(up > 100 && down > 100, "{up} up, {down} down");
    }
}
