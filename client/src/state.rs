//! One caller's standing in one operation class, as a UI needs it, from
//! whichever the client has: a response (headers, and a refusal's body) or
//! the usage endpoint's report. Plain Rust with the clock passed in, so it
//! is tested natively; `js.rs` binds it to JavaScript.

use quota_core::copy::human_duration;
use quota_core::wire::{ClassUsage, HeaderReading, Refusal, UsageReport, WireState};
use serde_json::{json, Value};

/// Where a caller stands in one class.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaState {
    pub class: String,
    /// "Deep research" (from a refusal's body or the usage report).
    pub label: Option<String>,
    pub tier: Option<String>,
    pub scope: Option<String>,
    pub used: Option<u64>,
    pub limit: Option<u64>,
    pub soft_limit: Option<u64>,
    pub remaining: Option<u64>,
    pub state: WireState,
    /// The sentence of an admitted request past a level (warning, degraded,
    /// overage, queued).
    pub warning: Option<String>,
    /// What to tell the user now: the warning, or the refusal's sentence.
    pub message: Option<String>,
    /// When the window resets, Unix seconds (the server's clock).
    pub reset_at: Option<i64>,
    /// Seconds from the reading to the reset, as the server counted them.
    pub reset_after: Option<i64>,
    /// When the reading was taken, Unix milliseconds (the client's clock).
    /// `reset_after` counts from here, so a client clock that is off does
    /// not move the countdown.
    pub observed_ms: i64,
    pub upgrade_url: Option<String>,
    /// "Pro includes 100 a day: https://..." (usage report only).
    pub upgrade_text: Option<String>,
    pub pace_ahead: bool,
    /// "You've used 80% of ..." while ahead of pace (usage report only).
    pub pace_message: Option<String>,
    /// Units the request was charged (responses only).
    pub cost: Option<u64>,
    /// The cheaper model the request was served with (responses only).
    pub degraded_to: Option<String>,
    /// Units past the hard limit in this window.
    pub overage: Option<u64>,
    /// Grant units left (prepaid packs, approvals).
    pub grant: Option<u64>,
    /// The window's length in seconds (`RateLimit-Policy`'s `w`).
    pub window_seconds: Option<u64>,
    /// The window's name in the config: "day", "month", "5h".
    pub window: Option<String>,
}

impl QuotaState {
    /// The state a response reports: its headers, and its body when it is a
    /// refusal. `None` when the response carries nothing of the contract
    /// (the filter did not classify the request).
    pub fn from_response(h: HeaderReading, refusal: Option<Refusal>, observed_ms: i64) -> Option<QuotaState> {
        let refusal = refusal.unwrap_or_default();
        let q = refusal.quota.unwrap_or_default();
        let policy = h.policy.as_ref();
        let field = h.limit_field.as_ref();
        let class =
            h.class.or(q.class).or_else(|| policy.map(|p| p.name.clone())).or_else(|| field.map(|f| f.name.clone()))?;
        let limit = h.limit.or(q.limit).or(policy.map(|p| p.quota));
        let remaining = h.remaining.or(q.remaining).or(field.map(|f| f.remaining));
        let used = h.used.or(q.used).or_else(|| {
            let (limit, remaining) = (policy?.quota, field?.remaining);
            Some(limit.saturating_sub(remaining))
        });
        let reset_after = h
            .reset_after
            .or(q.reset_after)
            .or_else(|| field.and_then(|f| f.reset_after).and_then(|t| i64::try_from(t).ok()))
            .or(h.retry_after);
        let state =
            h.state.or(q.state).unwrap_or(if remaining == Some(0) { WireState::Blocked } else { WireState::Ok });
        let warning = h.warning;
        Some(QuotaState {
            class,
            label: q.label,
            tier: h.tier.or(q.tier),
            scope: h.scope.or(q.scope),
            used,
            limit,
            soft_limit: h.soft_limit.or(q.soft_limit),
            remaining,
            message: refusal.message.or_else(|| warning.clone()),
            warning,
            state,
            reset_at: h.reset.or(q.reset).or_else(|| Some(observed_ms.div_euclid(1000) + reset_after?)),
            reset_after,
            observed_ms,
            upgrade_url: h.upgrade.or_else(|| q.upgrade.and_then(|u| u.url)),
            upgrade_text: None,
            pace_ahead: h.pace_ahead,
            pace_message: None,
            cost: h.cost,
            degraded_to: h.degraded_to,
            overage: h.overage,
            grant: h.grant,
            window_seconds: policy.and_then(|p| p.window),
            window: q.window,
        })
    }

    /// One state per class of a usage report, in the report's order.
    pub fn from_usage(report: &UsageReport, observed_ms: i64) -> Vec<QuotaState> {
        report.classes.iter().map(|c| QuotaState::from_class_usage(report, c, observed_ms)).collect()
    }

    fn from_class_usage(report: &UsageReport, c: &ClassUsage, observed_ms: i64) -> QuotaState {
        let state =
            c.state.clone().unwrap_or(if c.included == Some(false) { WireState::NotIncluded } else { WireState::Ok });
        let upgrade = c.upgrade.clone().unwrap_or_default();
        let pace = c.pace.clone().unwrap_or_default();
        QuotaState {
            class: c.class.clone(),
            label: c.label.clone(),
            tier: report.tier.clone(),
            scope: c.scope.clone(),
            used: c.used,
            limit: c.limit,
            soft_limit: c.soft_limit,
            remaining: c.remaining,
            // The usage report's message is the refusal's while blocked.
            warning: c.message.clone().filter(|_| {
                matches!(state, WireState::Warning | WireState::Degraded | WireState::Overage | WireState::Queued)
            }),
            message: c.message.clone(),
            state,
            reset_at: c.reset,
            reset_after: c.reset_after,
            observed_ms,
            upgrade_url: upgrade.url,
            upgrade_text: upgrade.text,
            pace_ahead: pace.ahead,
            pace_message: pace.message.filter(|_| pace.ahead),
            cost: None,
            degraded_to: None,
            overage: c.over.filter(|&n| n > 0),
            grant: c.grant.filter(|&n| n > 0),
            window_seconds: None,
            window: c.window.clone(),
        }
    }

    /// How full the meter is, 0 to 1. A refusal without numbers is full; a
    /// class outside the plan is empty.
    pub fn fraction_used(&self) -> f64 {
        match (self.used, self.limit) {
            (Some(used), Some(limit)) if limit > 0 => (used as f64 / limit as f64).clamp(0.0, 1.0),
            _ if self.state == WireState::Blocked => 1.0,
            _ => 0.0,
        }
    }

    /// When the reset happens on the client's clock, Unix milliseconds.
    fn reset_deadline_ms(&self) -> Option<i64> {
        match self.reset_after {
            Some(after) => Some(self.observed_ms.saturating_add(after.saturating_mul(1000))),
            None => self.reset_at.map(|at| at.saturating_mul(1000)),
        }
    }

    /// Whole seconds from `now_ms` to the reset, rounded up (a reset is
    /// never announced early); 0 once it has passed.
    pub fn reset_after_at(&self, now_ms: i64) -> Option<i64> {
        let left_ms = self.reset_deadline_ms()?.saturating_sub(now_ms).max(0);
        Some((left_ms + 999) / 1000)
    }

    /// The time to the reset in words: "4 h 12 min", "45 s".
    pub fn reset_in_words_at(&self, now_ms: i64) -> Option<String> {
        self.reset_after_at(now_ms).map(human_duration)
    }

    /// Whether the window this reading belongs to has reset by `now_ms`: the
    /// numbers are stale, so read the usage endpoint again.
    pub fn has_reset_at(&self, now_ms: i64) -> bool {
        self.reset_deadline_ms().is_some_and(|at| at <= now_ms)
    }

    /// Everything, as a JSON object with the JavaScript names.
    pub fn to_json(&self, now_ms: i64) -> Value {
        json!({
            "class": self.class,
            "label": self.label,
            "tier": self.tier,
            "scope": self.scope,
            "used": self.used,
            "limit": self.limit,
            "softLimit": self.soft_limit,
            "remaining": self.remaining,
            "fractionUsed": self.fraction_used(),
            "state": self.state.as_str(),
            "warning": self.warning,
            "message": self.message,
            "resetAt": self.reset_at.map(quota_core::calendar::rfc3339),
            "resetAfterSeconds": self.reset_after_at(now_ms),
            "resetInWords": self.reset_in_words_at(now_ms),
            "upgradeUrl": self.upgrade_url,
            "upgradeText": self.upgrade_text,
            "pace": if self.pace_ahead { Some("ahead") } else { None },
            "paceMessage": self.pace_message,
            "cost": self.cost,
            "degradedTo": self.degraded_to,
            "overage": self.overage,
            "grant": self.grant,
            "windowSeconds": self.window_seconds,
            "window": self.window,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quota_core::wire::{read_headers, read_refusal, read_usage};

    const T0: i64 = 1_795_348_800_000;

    fn from(headers: &[(&str, &str)], body: Option<&str>) -> Option<QuotaState> {
        QuotaState::from_response(read_headers(headers.iter().copied()), body.and_then(read_refusal), T0)
    }

    const WARNING: &str = "You have 1 draft left for today. They reset in 12 h.";

    fn warning_response() -> QuotaState {
        from(
            &[
                ("x-quota-class", "drafts"),
                ("x-quota-tier", "free"),
                ("x-quota-used", "9"),
                ("x-quota-limit", "10"),
                ("x-quota-soft-limit", "5"),
                ("x-quota-remaining", "1"),
                ("x-quota-reset", "2026-11-23T00:00:00Z"),
                ("x-quota-reset-after", "43200"),
                ("x-quota-state", "warning"),
                ("x-quota-warning", WARNING),
                ("x-quota-upgrade", "https://example.com/up"),
                ("x-quota-cost", "1"),
                ("ratelimit-policy", "\"drafts\";q=10;w=86400"),
                ("ratelimit", "\"drafts\";r=1;t=43200"),
            ],
            None,
        )
        .unwrap()
    }

    #[test]
    fn a_warning_response_gives_the_meter_and_the_sentence() {
        let s = warning_response();
        assert_eq!(s.class, "drafts");
        assert_eq!((s.used, s.limit, s.soft_limit, s.remaining), (Some(9), Some(10), Some(5), Some(1)));
        assert_eq!(s.fraction_used(), 0.9);
        assert_eq!(s.state, WireState::Warning);
        assert_eq!(s.warning.as_deref(), Some(WARNING));
        assert_eq!(s.message.as_deref(), Some(WARNING));
        assert_eq!(s.upgrade_url.as_deref(), Some("https://example.com/up"));
        assert_eq!(s.window_seconds, Some(86_400));
        assert_eq!(s.cost, Some(1));
    }

    #[test]
    fn the_countdown_runs_on_the_client_clock_from_the_reading() {
        let s = warning_response();
        assert_eq!(s.reset_after_at(T0), Some(43_200));
        assert_eq!(s.reset_after_at(T0 + 1), Some(43_200));
        assert_eq!(s.reset_after_at(T0 + 1_000), Some(43_199));
        assert_eq!(s.reset_in_words_at(T0).as_deref(), Some("12 h"));
        assert_eq!(s.reset_in_words_at(T0 + (43_200 - 250) * 1000).as_deref(), Some("5 min"));
        assert_eq!(s.reset_in_words_at(T0 + 43_199_500).as_deref(), Some("1 s"));
        assert!(!s.has_reset_at(T0 + 43_199_999));
        assert!(s.has_reset_at(T0 + 43_200_000));
        assert_eq!(s.reset_after_at(T0 + 50_000_000), Some(0));
    }

    #[test]
    fn a_block_takes_its_sentence_from_the_body() {
        let body = r#"{"error":{"message":"You've used your 10 drafts for today.","type":"quota_exceeded","code":"quota_exceeded",
            "quota":{"class":"drafts","label":"Drafts","tier":"free","state":"blocked","used":10,"limit":10,"remaining":0,
                     "window":"day","reset":"2026-11-23T00:00:00Z","reset_after":43200,
                     "upgrade":{"tier":"pro","label":"Pro","limit":100,"url":"https://example.com/up"}}}}"#;
        let s = from(
            &[
                ("x-quota-class", "drafts"),
                ("x-quota-used", "10"),
                ("x-quota-limit", "10"),
                ("x-quota-remaining", "0"),
                ("x-quota-state", "blocked"),
                ("retry-after", "43200"),
            ],
            Some(body),
        )
        .unwrap();
        assert_eq!(s.state, WireState::Blocked);
        assert_eq!(s.fraction_used(), 1.0);
        assert_eq!(s.warning, None);
        assert_eq!(s.message.as_deref(), Some("You've used your 10 drafts for today."));
        assert_eq!(s.label.as_deref(), Some("Drafts"));
        assert_eq!(s.upgrade_url.as_deref(), Some("https://example.com/up"));
        assert_eq!(s.window.as_deref(), Some("day"));
        assert_eq!(s.reset_at, Some(T0 / 1000 + 43_200));
    }

    #[test]
    fn the_ietf_fields_alone_are_enough_for_a_meter() {
        let s = from(&[("RateLimit-Policy", "\"summaries\";q=5;w=60"), ("RateLimit", "\"summaries\";r=0;t=30")], None)
            .unwrap();
        assert_eq!(s.class, "summaries");
        assert_eq!((s.used, s.limit, s.remaining), (Some(5), Some(5), Some(0)));
        assert_eq!(s.state, WireState::Blocked);
        assert_eq!(s.reset_at, Some(T0 / 1000 + 30));
        assert_eq!(s.reset_in_words_at(T0).as_deref(), Some("30 s"));
    }

    #[test]
    fn an_unclassified_response_has_no_state() {
        assert_eq!(from(&[("content-type", "application/json")], Some("{}")), None);
    }

    #[test]
    fn the_usage_report_gives_one_state_per_class() {
        let report = read_usage(
            r#"{"user":"dana","tier":"free","now":"2026-11-22T12:00:00Z","classes":[
              {"class":"deep_research","label":"Deep research","included":false,"state":"not_included",
               "upgrade":{"tier":"pro","limit":3,"url":"https://example.com/up","text":"Pro includes 3 a day: https://example.com/up"}},
              {"class":"drafts","label":"Drafts","included":true,"scope":"user","window":"day","used":6,"limit":10,
               "soft_limit":5,"remaining":4,"fraction_used":0.6,"state":"warning","message":"You've used 6 of your 10 drafts for today.",
               "reset":"2026-11-23T00:00:00Z","reset_after":43200,"pace":null,"upgrade":null},
              {"class":"batch_records","included":true,"used":9,"limit":10,"remaining":1,"state":"warning","message":"9 of 10",
               "reset":"2026-12-01T00:00:00Z","reset_after":734400,
               "pace":{"ahead":true,"used_share":0.9,"elapsed_share":0.1,"exhausted_at":null,"message":"You've used 90%."}}
            ]}"#,
        )
        .unwrap();
        let states = QuotaState::from_usage(&report, T0);
        assert_eq!(states.len(), 3);
        let research = &states[0];
        assert_eq!(research.state, WireState::NotIncluded);
        assert_eq!(research.fraction_used(), 0.0);
        assert_eq!(research.tier.as_deref(), Some("free"));
        assert_eq!(research.upgrade_text.as_deref(), Some("Pro includes 3 a day: https://example.com/up"));
        assert_eq!(research.reset_after_at(T0), None);
        let drafts = &states[1];
        assert_eq!(drafts.fraction_used(), 0.6);
        assert_eq!(drafts.warning.as_deref(), Some("You've used 6 of your 10 drafts for today."));
        assert_eq!(drafts.reset_in_words_at(T0).as_deref(), Some("12 h"));
        let batch = &states[2];
        assert!(batch.pace_ahead);
        assert_eq!(batch.pace_message.as_deref(), Some("You've used 90%."));
        assert_eq!(batch.reset_in_words_at(T0).as_deref(), Some("8 days 12 h"));
    }

    #[test]
    fn json_uses_the_javascript_names() {
        let v = warning_response().to_json(T0 + 60_000);
        assert_eq!(v["softLimit"], 5);
        assert_eq!(v["fractionUsed"], 0.9);
        assert_eq!(v["resetAt"], "2026-11-23T00:00:00Z");
        assert_eq!(v["resetAfterSeconds"], 43_140);
        assert_eq!(v["resetInWords"], "11 h 59 min");
        assert_eq!(v["pace"], Value::Null);
        assert_eq!(v["state"], "warning");
    }

    #[test]
    fn past_the_hard_limit_the_meter_is_full_and_the_sentence_still_shows() {
        let s = from(
            &[
                ("x-quota-class", "drafts"),
                ("x-quota-used", "2100"),
                ("x-quota-limit", "2000"),
                ("x-quota-state", "overage"),
                ("x-quota-overage", "100"),
                ("x-quota-warning", "You're 100 drafts past your 2000 drafts for today."),
            ],
            None,
        )
        .unwrap();
        assert_eq!(s.fraction_used(), 1.0);
        assert_eq!(s.state, WireState::Overage);
        assert_eq!(s.overage, Some(100));
        assert_eq!(s.warning.as_deref(), Some("You're 100 drafts past your 2000 drafts for today."));
        let degraded =
            from(&[("x-quota-class", "drafts"), ("x-quota-state", "degraded"), ("x-quota-degraded-to", "small")], None)
                .unwrap();
        assert_eq!((degraded.state, degraded.degraded_to.as_deref()), (WireState::Degraded, Some("small")));
    }
}
