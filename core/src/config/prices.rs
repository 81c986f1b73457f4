//! The price table: what a model's tokens and requests cost, in the
//! config's one currency, stored exactly as micro-units (see `money.rs`).
//!
//! ```json
//! "prices": {
//!   "currency": "USD",
//!   "models": {
//!     "gpt-4o": {"input": "2.50", "cached_input": "1.25", "output": "10.00"},
//!     "o3*": {"input": "2.00", "cached_input": "0.50", "output": "8.00", "reasoning": "8.00"}
//!   },
//!   "default": {"input": "5.00", "output": "15.00"}
//! }
//! ```

use super::error::{join, ConfigError};
use super::raw::{RawAmount, RawModelPrice, RawPrices};
use crate::money::{parse_amount, Currency};
use crate::units::{self, MAX_UNITS};

/// Tokens per million: token prices are per million tokens.
const TOKENS_PER_PRICE: u128 = 1_000_000;

/// The tokens a response reports, in the kinds priced apart (exclusive:
/// each token is priced once); read from the upstream's usage by
/// [`crate::metering`].
pub use crate::metering::TokenKinds;

/// A model's prices in micro-units: token prices per million tokens, with
/// the defaults already applied (`cached_input` and `cache_write` are
/// `input` when not written, `reasoning` is `output`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModelPrice {
    pub input: u64,
    pub cached_input: u64,
    pub cache_write: u64,
    pub output: u64,
    pub reasoning: u64,
    /// Each request, on top of its tokens; `None` when not priced.
    pub per_request: Option<u64>,
}

impl ModelPrice {
    /// What `tokens` cost, in micro-units: Σ tokens × price per million,
    /// summed exactly and divided by a million once, rounded **up** (a
    /// provider bills at least the exact price; the rounding adds less
    /// than one micro-unit to the whole request, not to each kind), plus
    /// `per_request`. At most [`MAX_UNITS`].
    pub fn cost(&self, tokens: &TokenKinds) -> u64 {
        self.priced([
            (tokens.input, self.input),
            (tokens.cached_input, self.cached_input),
            (tokens.cache_write, self.cache_write),
            (tokens.output, self.output),
            (tokens.reasoning, self.reasoning),
        ])
    }

    /// What to reserve at admission for a request of `input_tokens` that
    /// may answer with up to `max_output_tokens`, in micro-units, rounded
    /// as [`ModelPrice::cost`] is.
    ///
    /// The input is priced as plain input: reading it from the cache costs
    /// less, but writing it to the cache may cost more (`cache_write` above
    /// `input`), and then the settled cost can exceed the reservation. The
    /// output is priced at the higher of `output` and `reasoning`, so no
    /// mix of output and reasoning tokens within `max_output_tokens` costs
    /// more than reserved.
    pub fn estimate(&self, input_tokens: u64, max_output_tokens: u64) -> u64 {
        self.priced([(input_tokens, self.input), (max_output_tokens, self.output.max(self.reasoning))])
    }

    fn priced<const N: usize>(&self, lines: [(u64, u64); N]) -> u64 {
        let exact = lines
            .iter()
            .fold(0u128, |sum, (tokens, price)| sum.saturating_add(u128::from(*tokens) * u128::from(*price)));
        let tokens = u64::try_from(exact.div_ceil(TOKENS_PER_PRICE)).map_or(MAX_UNITS, units::bounded);
        units::add(tokens, self.per_request.unwrap_or(0))
    }
}

/// The checked price table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prices {
    currency: Currency,
    /// In lookup order: exact names, then prefixes (ending in `*`), longest first.
    models: Vec<(String, ModelPrice)>,
    default: Option<ModelPrice>,
}

impl Prices {
    /// The currency of every amount.
    pub fn currency(&self) -> &Currency {
        &self.currency
    }

    /// The priced models in the order [`Prices::price_of`] tries them.
    pub fn models(&self) -> &[(String, ModelPrice)] {
        &self.models
    }

    /// The prices of a model no entry names.
    pub fn default_price(&self) -> Option<&ModelPrice> {
        self.default.as_ref()
    }

    /// The dearest of the table's prices (the highest of input, output and
    /// reasoning per token): what a request of a model nobody priced is
    /// reserved and settled at.
    pub fn dearest(&self) -> Option<&ModelPrice> {
        let rate = |p: &&ModelPrice| p.input.max(p.output).max(p.reasoning).max(p.cache_write);
        self.models.iter().map(|(_, p)| p).chain(self.default.as_ref()).max_by_key(rate)
    }

    /// The prices of `model` (the request's `model`; `None` when it names
    /// none): its exact name, else the longest prefix entry (`"o3*"`) it
    /// starts with, else `default`; `None` when nothing prices it. The
    /// same rule as a class's model multipliers (`costs.rs`), so a model
    /// is matched alike by both.
    pub fn price_of(&self, model: Option<&str>) -> Option<&ModelPrice> {
        model
            .and_then(|model| self.models.iter().find(|(name, _)| names_model(name, model)))
            .map(|(_, price)| price)
            .or(self.default.as_ref())
    }
}

/// Whether a table entry (a price, a cost multiplier) names `model`:
/// exactly, or as a prefix ending in `*`.
pub fn names_model(name: &str, model: &str) -> bool {
    match name.strip_suffix('*') {
        Some(prefix) => model.starts_with(prefix),
        None => model == name,
    }
}

pub(super) fn check_amount(path: &str, raw: &RawAmount) -> Result<u64, ConfigError> {
    let checked = match raw {
        RawAmount::Text(text) => parse_amount(text),
        RawAmount::Whole(n) => match n.checked_mul(crate::money::MICROS_PER_UNIT) {
            Some(micros) if micros <= MAX_UNITS => Ok(micros),
            _ => Err(format!("{n} is more than the largest amount, 9007199254.740991")),
        },
        RawAmount::Negative(n) => Err(format!("{n} is negative: an amount is 0 or more")),
        RawAmount::Float(f) => Err(format!(
            "{f:?} is a JSON number with a fraction or an exponent, read as a float that may not be the amount \
             written: write it as a string, e.g. \"2.50\""
        )),
    };
    checked.map_err(|reason| ConfigError::new(path, reason))
}

fn check_model_price(path: &str, raw: &RawModelPrice) -> Result<ModelPrice, ConfigError> {
    let amount =
        |field: &str, raw: &Option<RawAmount>| raw.as_ref().map(|a| check_amount(&join(path, field), a)).transpose();
    let input = amount("input", &raw.input)?;
    let cached_input = amount("cached_input", &raw.cached_input)?;
    let cache_write = amount("cache_write", &raw.cache_write)?;
    let output = amount("output", &raw.output)?;
    let reasoning = amount("reasoning", &raw.reasoning)?;
    let per_request = amount("per_request", &raw.per_request)?;
    let prices_tokens = [input, cached_input, cache_write, output, reasoning].iter().any(Option::is_some);
    if !prices_tokens {
        return match per_request {
            // Priced by the request alone: its tokens are free.
            Some(_) => Ok(ModelPrice { per_request, ..ModelPrice::default() }),
            None => Err(ConfigError::new(
                path,
                "prices nothing: set \"input\" and \"output\" (per million tokens), or \"per_request\"",
            )),
        };
    }
    let input =
        input.ok_or_else(|| ConfigError::new(join(path, "input"), "missing: the price of a million input tokens"))?;
    let output = output
        .ok_or_else(|| ConfigError::new(join(path, "output"), "missing: the price of a million output tokens"))?;
    Ok(ModelPrice {
        input,
        cached_input: cached_input.unwrap_or(input),
        cache_write: cache_write.unwrap_or(input),
        output,
        reasoning: reasoning.unwrap_or(output),
        per_request,
    })
}

/// A model name of the table: a request's `model` exactly, or a prefix
/// ending in its only `*`.
fn check_model_name(path: &str, name: &str) -> Result<(), ConfigError> {
    let reason = if name.is_empty() {
        "a model name is empty"
    } else if name == "*" {
        "matches every model: price those with \"default\""
    } else if name.trim_end_matches('*').contains('*') || name.ends_with("**") {
        "'*' may only end a name, once, as a prefix: e.g. \"o3*\""
    } else {
        return Ok(());
    };
    Err(ConfigError::new(path, reason))
}

/// Checks `prices`; every error names its path (`prices.models.gpt-4o.input`).
pub(super) fn check_prices(raw: Option<&RawPrices>) -> Result<Option<Prices>, ConfigError> {
    let Some(raw) = raw else { return Ok(None) };
    let currency = Currency::from_code(&raw.currency).map_err(|reason| ConfigError::new("prices.currency", reason))?;
    let mut models = Vec::new();
    for (name, entry) in raw.models.iter().flatten() {
        let path = format!("prices.models.{name}");
        check_model_name(&path, name)?;
        models.push((name.clone(), check_model_price(&path, entry)?));
    }
    let default = raw.default.as_ref().map(|d| check_model_price("prices.default", d)).transpose()?;
    if models.is_empty() && default.is_none() {
        return Err(ConfigError::new("prices", "must set \"models\" or \"default\": it prices no model"));
    }
    // The order of `costs.rs`: exact names before prefixes, longer prefixes
    // first, so the most specific entry wins.
    models.sort_by_key(|(n, _)| (n.ends_with('*'), std::cmp::Reverse(n.len())));
    Ok(Some(Prices { currency, models, default }))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MILLION: u64 = 1_000_000;

    fn prices(json: serde_json::Value) -> Prices {
        let raw: RawPrices = super::super::read::from_json(&json.to_string()).unwrap();
        check_prices(Some(&raw)).unwrap().unwrap()
    }

    fn table() -> Prices {
        prices(serde_json::json!({
            "currency": "USD",
            "models": {
                "gpt-4o": {"input": "2.50", "cached_input": "1.25", "output": "10.00"},
                "gpt-4o*": {"input": "3", "output": "12"},
                "gpt-4o-mini*": {"input": "0.15", "cached_input": "0.075", "output": "0.60"},
                "o3*": {"input": "2.00", "cached_input": "0.50", "output": "8.00", "reasoning": "8.00"},
                "o3-mini": {"input": "1.10", "output": "4.40"},
                "claude-sonnet-4*": {"input": "3.00", "cache_write": "3.75", "cached_input": "0.30", "output": "15.00"},
                "dall-e-3": {"per_request": "0.04"}
            },
            "default": {"input": "5.00", "output": "15.00"}
        }))
    }

    fn input_price(p: Option<&ModelPrice>) -> Option<u64> {
        p.map(|p| p.input)
    }

    #[test]
    fn exact_names_win_then_the_longest_prefix_then_the_default() {
        let t = table();
        assert_eq!(input_price(t.price_of(Some("gpt-4o"))), Some(2_500_000));
        assert_eq!(input_price(t.price_of(Some("gpt-4o-2024-08-06"))), Some(3_000_000));
        assert_eq!(input_price(t.price_of(Some("gpt-4o-mini"))), Some(150_000));
        assert_eq!(input_price(t.price_of(Some("gpt-4o-mini-2024-07-18"))), Some(150_000));
        assert_eq!(input_price(t.price_of(Some("o3-mini"))), Some(1_100_000));
        assert_eq!(input_price(t.price_of(Some("o3-mini-high"))), Some(2_000_000));
        assert_eq!(input_price(t.price_of(Some("o3"))), Some(2_000_000));
        assert_eq!(input_price(t.price_of(Some("claude-sonnet-4-5"))), Some(3_000_000));
        assert_eq!(input_price(t.price_of(Some("llama-3"))), Some(5_000_000));
        assert_eq!(input_price(t.price_of(Some(""))), Some(5_000_000));
        assert_eq!(input_price(t.price_of(None)), Some(5_000_000));
        // Case matters, as it does for the multipliers.
        assert_eq!(input_price(t.price_of(Some("GPT-4o"))), Some(5_000_000));
        let names: Vec<&str> = t.models().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["dall-e-3", "o3-mini", "gpt-4o", "claude-sonnet-4*", "gpt-4o-mini*", "gpt-4o*", "o3*"]);
    }

    #[test]
    fn without_a_default_an_unknown_model_is_not_priced() {
        let t = prices(serde_json::json!({"currency": "EUR", "models": {"m*": {"input": 1, "output": 2}}}));
        assert_eq!(t.price_of(Some("other")), None);
        assert_eq!(t.price_of(None), None);
        assert_eq!(input_price(t.price_of(Some("m"))), Some(MILLION));
        assert_eq!(t.currency().code(), "EUR");
        assert_eq!(t.default_price(), None);
    }

    #[test]
    fn unwritten_prices_default_to_their_kin() {
        let t = table();
        let sonnet = t.price_of(Some("claude-sonnet-4")).unwrap();
        assert_eq!(
            *sonnet,
            ModelPrice {
                input: 3_000_000,
                cached_input: 300_000,
                cache_write: 3_750_000,
                output: 15_000_000,
                reasoning: 15_000_000,
                per_request: None
            }
        );
        let gpt = t.price_of(Some("gpt-4o")).unwrap();
        assert_eq!((gpt.cached_input, gpt.cache_write, gpt.reasoning), (1_250_000, 2_500_000, 10_000_000));
        let images = t.price_of(Some("dall-e-3")).unwrap();
        assert_eq!(*images, ModelPrice { per_request: Some(40_000), ..ModelPrice::default() });
    }

    #[test]
    fn costs_are_summed_exactly_and_rounded_up_once() {
        let t = table();
        let gpt = t.price_of(Some("gpt-4o")).unwrap();
        // 1 token at $2.50 a million is 2.5 micro-dollars: billed 3.
        assert_eq!(gpt.cost(&TokenKinds { input: 1, ..TokenKinds::default() }), 3);
        assert_eq!(gpt.cost(&TokenKinds { input: MILLION, ..TokenKinds::default() }), 2_500_000);
        assert_eq!(gpt.cost(&TokenKinds { input: 2, ..TokenKinds::default() }), 5);
        assert_eq!(gpt.cost(&TokenKinds::default()), 0);
        // Rounded once for the request, not per kind: 2.5 + 1.25 + 10 = 13.75 → 14 (not 3 + 2 + 10).
        let one_each = TokenKinds { input: 1, cached_input: 1, cache_write: 0, output: 1, reasoning: 0 };
        assert_eq!(gpt.cost(&one_each), 14);
        // A mini request: 1200 input, 800 cached, 350 output.
        let mini = t.price_of(Some("gpt-4o-mini")).unwrap();
        let used = TokenKinds { input: 1_200, cached_input: 800, output: 350, ..TokenKinds::default() };
        // 1200 × 0.15 + 800 × 0.075 + 350 × 0.60 = 180 + 60 + 210 = 450 micro-dollars, exactly.
        assert_eq!(mini.cost(&used), 450);
        let sonnet = t.price_of(Some("claude-sonnet-4")).unwrap();
        let cached = TokenKinds { input: 10, cached_input: 1_000, cache_write: 2_000, output: 100, reasoning: 0 };
        // 30 + 300 + 7500 + 1500.
        assert_eq!(sonnet.cost(&cached), 9_330);
        let o3 = t.price_of(Some("o3")).unwrap();
        let thought = TokenKinds { input: 100, output: 100, reasoning: 1_000, ..TokenKinds::default() };
        assert_eq!(o3.cost(&thought), 200 + 800 + 8_000);
    }

    #[test]
    fn a_request_price_is_added_to_the_tokens() {
        let t = prices(serde_json::json!({
            "currency": "USD",
            "default": {"input": "1", "output": "2", "per_request": "0.01"}
        }));
        let p = t.price_of(Some("anything")).unwrap();
        assert_eq!(p.cost(&TokenKinds::default()), 10_000);
        assert_eq!(p.cost(&TokenKinds { input: 1, ..TokenKinds::default() }), 10_001);
        assert_eq!(p.estimate(0, 0), 10_000);
        let images = table();
        let images = images.price_of(Some("dall-e-3")).unwrap();
        assert_eq!(images.cost(&TokenKinds { input: 50, output: 10, ..TokenKinds::default() }), 40_000);
    }

    #[test]
    fn costs_stay_within_the_unit_bound() {
        let max = ModelPrice {
            input: MAX_UNITS,
            cached_input: MAX_UNITS,
            cache_write: u64::MAX,
            output: u64::MAX,
            reasoning: u64::MAX,
            per_request: Some(u64::MAX),
        };
        let all = TokenKinds {
            input: u64::MAX,
            cached_input: u64::MAX,
            cache_write: u64::MAX,
            output: u64::MAX,
            reasoning: u64::MAX,
        };
        assert_eq!(max.cost(&all), MAX_UNITS);
        assert_eq!(max.estimate(u64::MAX, u64::MAX), MAX_UNITS);
        let dear = ModelPrice { input: MAX_UNITS, ..ModelPrice::default() };
        assert_eq!(dear.cost(&TokenKinds { input: MILLION, ..TokenKinds::default() }), MAX_UNITS);
        assert_eq!(dear.cost(&TokenKinds { input: MILLION + 1, ..TokenKinds::default() }), MAX_UNITS);
        assert_eq!(
            dear.cost(&TokenKinds { input: MILLION - 1, ..TokenKinds::default() }),
            MAX_UNITS - MAX_UNITS / MILLION
        );
    }

    #[test]
    fn an_estimate_reserves_output_at_the_dearer_of_output_and_reasoning() {
        let t = table();
        let gpt = t.price_of(Some("gpt-4o")).unwrap();
        // 1000 × 2.50 + 500 × 10.
        assert_eq!(gpt.estimate(1_000, 500), 7_500);
        assert_eq!(gpt.estimate(1, 0), 3);
        assert_eq!(gpt.estimate(0, 0), 0);
        let thinker = ModelPrice { input: 1_000_000, output: 4_000_000, reasoning: 6_000_000, ..ModelPrice::default() };
        assert_eq!(thinker.estimate(10, 100), 10 + 600);
        // Whatever the split of the 100 output tokens, the cost is within the reservation.
        for reasoning in 0..=100 {
            let used = TokenKinds { input: 10, output: 100 - reasoning, reasoning, ..TokenKinds::default() };
            assert!(thinker.cost(&used) <= thinker.estimate(10, 100));
        }
        let cheap_thoughts = ModelPrice { reasoning: 1, ..thinker };
        assert_eq!(cheap_thoughts.estimate(10, 100), 10 + 400);
    }

    #[test]
    fn model_names_end_in_one_star_at_most() {
        for name in ["", "*", "a*b", "**", "o3**", "*o3"] {
            let mut raw = serde_json::json!({"currency": "USD", "models": {}});
            raw["models"][name] = serde_json::json!({"input": 1, "output": 1});
            let raw: RawPrices = super::super::read::from_json(&raw.to_string()).unwrap();
            let e = check_prices(Some(&raw)).unwrap_err();
            assert_eq!(e.path, format!("prices.models.{name}"), "{name}: {e}");
        }
        assert_eq!(check_model_name("p", "*").unwrap_err().reason, "matches every model: price those with \"default\"");
        assert_eq!(
            check_model_name("p", "a*b").unwrap_err().reason,
            "'*' may only end a name, once, as a prefix: e.g. \"o3*\""
        );
        assert!(check_model_name("p", "o3*").is_ok());
        assert!(check_model_name("p", "gpt-4.1").is_ok());
    }
}
