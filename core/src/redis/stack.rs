//! A request's charge in Redis's exact mode, read back: the call that makes
//! it and what the filter makes of the script's answer. A one-limit cell is
//! one `charge` of one counter; a stacked cell (a member's cap inside a
//! team's pool, a five-hour window inside a weekly one) is one
//! `charge_stack` of all its counters: they share one hash tag (the widest
//! scope's id, see [`engine::stacked_key`]), so one atomic script call
//! reaches them all in one Redis Cluster slot, decides every counter as
//! `charge` would, and writes all of them or none.
//!
//! The script answers each counter's record before and after. The filter
//! decides again from the "before" records with the same pure
//! [`decide::decide`] the local store runs, counter by counter in the
//! ticket's order (narrowest first), up to the first that refuses: the
//! charges [`crate::stack::charge_all`] would make in shared data, and the
//! binding limit named as [`engine::decision_of_stack`] names it there. It
//! then checks every "after" record against its own: a difference is a
//! [`Mismatch`], noted as for a single charge.
//!
//! A stacked charge whose answer is not used is cancelled counter by
//! counter: [`Command::cancel`] on each key with the charge's id gives back
//! what the charge took there, once, and a cancel that reaches Redis first
//! makes the whole stacked charge charge nothing.
//!
//! A stack with an `admin_cap` limit carries the member's cap key too
//! ([`Command::with_member_cap`]; the workspace's slot, as the counters):
//! the script reads the cap, decides the capped counter against the limits
//! [`crate::member_cap::apply`] leaves, and answers the cap's record, so
//! the filter decides again with the same `apply`, as shared data does.

use super::{Command, StackAnswer};
use crate::config::{Cell, Config, Limits};
use crate::counter::Counter;
use crate::decide::{self, Charge, Usage};
use crate::engine::{self, Decision, Ticket};
use crate::store::GiveUp;
use crate::window::Alignment;

/// The script wrote another record than the core decided on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub key: String,
    /// What the script answered it left.
    pub script: Option<Counter>,
    /// What the core decided it should hold.
    pub core: Option<Counter>,
}

/// A charge's answer, settled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settled {
    pub decision: Decision,
    /// Every counter whose "after" record is not the core's.
    pub mismatches: Vec<Mismatch>,
}

/// A stacked charge decided again from each counter's record before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recomputed {
    /// Each counter's charge, in order, up to the first that refused; the
    /// counters after it are not decided (as [`crate::stack::Stacked`]).
    pub charges: Vec<Charge>,
    /// Every counter admitted the request: each is charged.
    pub admitted: bool,
    /// Each counter's record as the script must leave it: charged when every
    /// counter admitted, else as it was.
    pub after: Vec<Option<Counter>>,
    /// Each counter as the decision reports it: after the charge when
    /// admitted, else as it stands (nothing was charged).
    pub usages: Vec<Usage>,
}

impl Recomputed {
    /// The counter that refused the request.
    pub fn refused_by(&self) -> Option<usize> {
        (!self.admitted).then(|| self.charges.len().saturating_sub(1))
    }
}

/// Decides a stacked charge of `cost` units at `now` (Unix seconds) on each
/// counter's record `before` it and its limits, all or none: what the
/// script decides in Redis, and what [`crate::stack::charge_all`] decides in
/// shared data.
pub fn recompute(
    counters: &[(Option<Counter>, &Limits)],
    cost: u64,
    confirmed: bool,
    now: i64,
    align: Alignment,
) -> Recomputed {
    let mut charges = Vec::with_capacity(counters.len());
    let mut writes = Vec::with_capacity(counters.len());
    for (before, limits) in counters {
        let (write, charge) = decide::decide(*before, limits, cost, confirmed, now, align);
        charges.push(charge);
        writes.push(write);
        if !charge.admitted {
            break;
        }
    }
    let admitted = !counters.is_empty() && charges.iter().all(|c| c.admitted) && charges.len() == counters.len();
    let mut after = Vec::with_capacity(counters.len());
    let mut usages = Vec::with_capacity(counters.len());
    for (n, (before, limits)) in counters.iter().enumerate() {
        match (charges.get(n), writes.get(n)) {
            (Some(charge), Some(write)) if admitted => {
                after.push(write.or(*before));
                usages.push(charge.usage);
            }
            _ => {
                after.push(*before);
                usages.push(decide::view(*before, limits, now, align));
            }
        }
    }
    Recomputed { charges, admitted, after, usages }
}

/// Each counter of `ticket` (its key) with its limits in `stack` (the
/// cell's, or as a member cap leaves them), in the ticket's order: its one
/// counter, or a stacked cell's every counter. `None` when the config has
/// no such cell or limit.
fn counters_of<'s>(config: &'s Config, stack: &'s [Limits], ticket: &Ticket) -> Option<Vec<(String, &'s Limits)>> {
    if ticket.stack.is_empty() {
        return Some(vec![(ticket.key.clone(), engine::limits_of(config, ticket)?)]);
    }
    ticket.stack.iter().map(|(i, _, key)| Some((key.clone(), stack.get(*i)?))).collect()
}

/// The cell `ticket` is charged in: its limits, as the config has them.
fn cell_of<'c>(config: &'c Config, ticket: &Ticket) -> &'c [Limits] {
    config.cell(ticket.tier, ticket.class).map_or(&[][..], Cell::limits)
}

/// The member cap a stacked `ticket`'s charge applies: the cap's key, the
/// position in the charge of the counter it caps, and the most it may be.
fn member_cap_of<'t>(stack: &[Limits], ticket: &'t Ticket) -> Option<(&'t str, usize, u64)> {
    let key = ticket.member_cap.as_deref().filter(|_| !ticket.stack.is_empty())?;
    let position = ticket.stack.iter().position(|(i, _, _)| stack.get(*i).is_some_and(|l| l.admin_cap))?;
    Some((key, position, crate::member_cap::ceiling(stack).unwrap_or(crate::units::MAX_UNITS)))
}

/// Every counter `ticket` charges: the keys a cancel of its charge goes to.
pub fn keys(ticket: &Ticket) -> Vec<&str> {
    if ticket.stack.is_empty() {
        vec![ticket.key.as_str()]
    } else {
        ticket.stack.iter().map(|(_, _, key)| key.as_str()).collect()
    }
}

/// The call that charges `ticket` in Redis as charge `id`: a `charge` of
/// its counter, or a `charge_stack` of a stacked cell's counters. `None`
/// when the config has no such cell or limit.
pub fn command(config: &Config, ticket: &Ticket, id: &str) -> Option<Command> {
    let stack = cell_of(config, ticket);
    let counters = counters_of(config, stack, ticket)?;
    let (now, cost, confirmed, align) = (ticket.now(), ticket.cost, ticket.confirmed, ticket.alignment);
    match counters.as_slice() {
        [(key, limits)] if ticket.stack.is_empty() => {
            Some(Command::charge(key.clone(), limits, cost, confirmed, now, align, id))
        }
        [] => None,
        many => {
            let command = Command::charge_stack(many, cost, confirmed, now, align, id);
            Some(match member_cap_of(stack, ticket) {
                Some((key, counter, ceiling)) => command.with_member_cap(key.to_string(), counter, ceiling),
                None => command,
            })
        }
    }
}

/// The decision on `ticket` from the script's answer (a record before and
/// after for each of its counters, in order, and the member cap it
/// applied), or from why no answer came: the fail policy then applies, as
/// in [`engine::settle`]. A member cap replaces the capped limit as
/// [`crate::member_cap::apply`] has it, as in shared data.
pub fn settle(config: &Config, ticket: Ticket, answered: Result<StackAnswer, GiveUp>) -> Settled {
    let unavailable = |ticket: Ticket, reason: GiveUp| Settled {
        decision: engine::settle(config, ticket, Err(reason)).0,
        mismatches: Vec::new(),
    };
    let (answers, cap) = match answered {
        Ok(StackAnswer { counters, cap }) => (counters, cap),
        Err(reason) => return unavailable(ticket, reason),
    };
    let cell = cell_of(config, &ticket);
    let stack = crate::member_cap::apply(cell, cap.filter(|_| member_cap_of(cell, &ticket).is_some()));
    let Some(counters) = counters_of(config, &stack, &ticket) else {
        return unavailable(ticket, GiveUp::Unavailable("no cell for this tier and class".into()));
    };
    if answers.len() != counters.len() {
        let why = format!("the script answered {} counters for a charge of {}", answers.len(), counters.len());
        return unavailable(ticket, GiveUp::Unavailable(why));
    }
    if ticket.stack.is_empty() {
        let Some(answer) = answers.first().copied() else {
            return unavailable(ticket, GiveUp::Unavailable("an answer without records".into()));
        };
        let key = ticket.key.clone();
        let (decision, write) = engine::settle(config, ticket, Ok(answer.before));
        let core = write.or(answer.before);
        let mismatches =
            if answer.after == core { Vec::new() } else { vec![Mismatch { key, script: answer.after, core }] };
        return Settled { decision, mismatches };
    }
    let records: Vec<(Option<Counter>, &Limits)> =
        answers.iter().zip(&counters).map(|(answer, (_, limits))| (answer.before, *limits)).collect();
    let r = recompute(&records, ticket.cost, ticket.confirmed, ticket.now(), ticket.alignment);
    let mismatches = answers
        .iter()
        .zip(&counters)
        .zip(&r.after)
        .filter(|((answer, _), core)| answer.after != **core)
        .map(|((answer, (key, _)), core)| Mismatch { key: key.clone(), script: answer.after, core: *core })
        .collect();
    Settled { decision: engine::decision_of_stack(ticket, &r.charges, &r.usages), mismatches }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ClassId;
    use crate::engine::{prepare, Outcome, Prepared};
    use crate::identity::{identify, ScopeKind};
    use crate::redis::{hash_tag, marker, Answer};
    use crate::request::NoProperties;
    use crate::testing::head;

    const NOON_MS: i64 = 1_795_348_800_000;

    /// Drafts: an organisation's pool of 500, a workspace's of 300 and 50
    /// per member a day; chats: 3 every 5 hours and 5 a week per user;
    /// notes: 10 a day (one limit). Counters in Redis.
    fn config() -> Config {
        let doc = r#"{
            "identity": {"user": [{"header": "x-user-id"}], "workspace": [{"header": "x-workspace-id"}],
                         "organisation": [{"header": "x-org-id"}], "missing_workspace": "user", "default_tier": "team"},
            "classes": [{"name": "drafts"}, {"name": "chats"}, {"name": "notes"}],
            "tiers": {"team": {"limits": {
                "drafts": [
                    {"scope": "organisation", "hard": 500, "window": "day"},
                    {"scope": "workspace", "hard": 300, "window": "day"},
                    {"scope": "user", "hard": 50, "window": "day"}
                ],
                "chats": [{"hard": 3, "window": "5h"}, {"hard": 5, "window": "week"}],
                "notes": {"hard": 10, "window": "day"}
            }}},
            "counters": {"store": "redis", "redis": {"cluster": "redis", "key_prefix": "q:"}}
        }"#;
        Config::from_json(doc.as_bytes()).unwrap()
    }

    fn ticket(config: &Config, headers: &[(&str, &str)], class: usize, cost: u64) -> Ticket {
        let caller = identify(config, &head(headers), &NoProperties).unwrap();
        match prepare(config, &caller, ClassId(class), cost, false, NOON_MS) {
            Prepared::Charge(t) => t,
            other => panic!("{other:?}"),
        }
    }

    fn stack_limits(config: &Config, class: usize) -> &[Limits] {
        config.cell(config.identity.default_tier, ClassId(class)).map(Cell::limits).unwrap()
    }

    #[test]
    fn the_counters_of_one_stack_and_their_markers_share_one_hash_tag() {
        let config = config();
        // Ids with the characters a hash tag is cut at.
        let ids = ["ann", "a}b", "{x}", "b{", "}", "z:y"];
        let mut stacks = 0;
        for user in ids {
            for workspace in [None, Some("acme"), Some("w}1"), Some("{w")] {
                for org in [None, Some("globex"), Some("o}{")] {
                    let mut headers = vec![("x-user-id", user)];
                    headers.extend(workspace.map(|w| ("x-workspace-id", w)));
                    headers.extend(org.map(|o| ("x-org-id", o)));
                    for class in [0, 1] {
                        let t = ticket(&config, &headers, class, 1);
                        assert_eq!(t.stack.len(), stack_limits(&config, class).len(), "{t:?}");
                        let command = command(&config, &t, "0123456789ab.7").unwrap();
                        assert_eq!(command.op(), "charge_stack");
                        assert_eq!(command.keys.len(), 2 * t.stack.len());
                        let tag = hash_tag(&t.stack[0].2);
                        assert_ne!(tag, t.stack[0].2, "a tag, not the whole key");
                        // The widest scope's id names the slot.
                        let widest = match (class, org, workspace) {
                            (1, ..) => 'u',
                            (_, Some(_), _) => 'o',
                            (_, None, Some(_)) => 'w',
                            _ => 'u',
                        };
                        assert!(tag.starts_with(widest), "{tag} for {headers:?}");
                        for key in &command.keys {
                            assert_eq!(hash_tag(key), tag, "{key} in {:?}", command.keys);
                        }
                        for (_, _, key) in &t.stack {
                            assert_eq!(hash_tag(&marker(key, "0123456789ab.7")), tag);
                        }
                        stacks += 1;
                    }
                }
            }
        }
        assert_eq!(stacks, ids.len() * 4 * 3 * 2);
        // A one-limit cell keeps its single charge.
        let t = ticket(&config, &[("x-user-id", "ann")], 2, 1);
        assert!(t.stack.is_empty());
        let command = command(&config, &t, "i.1").unwrap();
        assert_eq!((command.op(), command.keys.len()), ("charge", 2));
    }

    #[test]
    fn a_stacked_charge_lays_out_each_counters_limits_in_turn() {
        let config = config();
        let t = ticket(&config, &[("x-user-id", "ann")], 1, 2);
        let command = command(&config, &t, "i.9").unwrap();
        let limits = stack_limits(&config, 1);
        assert_eq!(command.id(), Some("i.9"));
        assert_eq!(command.key(), t.stack[0].2);
        // Each limit's parameters are what a single charge of it carries.
        let mut expected = vec!["charge_stack".to_string()];
        for (n, (i, _, key)) in t.stack.iter().enumerate() {
            let single = Command::charge(key.clone(), &limits[*i], 2, false, t.now(), t.alignment, "i.9");
            if n == 0 {
                expected.extend(single.args[1..4].iter().cloned());
            }
            expected.extend(single.args[4..].iter().cloned());
            assert_eq!(command.keys[2 * n..2 * n + 2], single.keys[..]);
        }
        assert_eq!(command.args, expected);
    }

    /// The script's answer for each counter: `after` where given, else as before.
    fn answers(before: &[Option<Counter>], after: &[Option<Counter>]) -> StackAnswer {
        before.iter().zip(after).map(|(b, a)| Answer { before: *b, after: *a }).collect::<Vec<_>>().into()
    }

    #[test]
    fn an_answer_admits_every_counter_or_refuses_them_all() {
        let config = config();
        let members = [("x-user-id", "ann"), ("x-workspace-id", "acme"), ("x-org-id", "globex")];
        let t = ticket(&config, &members, 0, 2);
        let limits = stack_limits(&config, 0);
        let (now, align) = (t.now(), t.alignment);
        let limit = |n: usize| &limits[t.stack[n].0];
        // The workspace's pool has 1 unit left (299 of 300).
        let before = vec![
            None,
            decide::decide(None, limit(1), 299, false, now, align).0,
            decide::decide(None, limit(2), 299, false, now, align).0,
        ];
        let refused = settle(&config, t.clone(), Ok(answers(&before, &before)));
        assert!(refused.mismatches.is_empty(), "{refused:?}");
        let d = &refused.decision;
        assert!(!d.admitted());
        assert_eq!((d.limit, d.scope), (t.stack[1].0, ScopeKind::Workspace));
        assert!(d.charged().is_empty());
        // The member's counter, though it admitted, is reported as it stands.
        let member = d.others.iter().find(|h| h.scope == ScopeKind::User).unwrap();
        assert_eq!(member.usage.used, 0);
        // The script charging all the same is a mismatch on each counter it wrote.
        let wrote: Vec<Option<Counter>> =
            (0..3).map(|n| decide::decide(before[n], limit(n), 2, false, now, align).0).collect();
        let wrong = settle(&config, t.clone(), Ok(answers(&before, &wrote)));
        assert_eq!(wrong.decision, refused.decision);
        assert_eq!(wrong.mismatches.len(), 3);
        assert_eq!(wrong.mismatches[0], Mismatch { key: t.stack[0].2.clone(), script: wrote[0], core: None });

        // A cost of 1 fits: every counter charged, the tightest binds.
        let t = ticket(&config, &members, 0, 1);
        let after: Vec<Option<Counter>> =
            (0..3).map(|n| decide::decide(before[n], limit(n), 1, false, now, align).0).collect();
        let admitted = settle(&config, t.clone(), Ok(answers(&before, &after)));
        assert!(admitted.mismatches.is_empty(), "{admitted:?}");
        let d = &admitted.decision;
        assert!(d.admitted());
        assert_eq!((d.limit, d.scope), (t.stack[1].0, ScopeKind::Workspace));
        let Outcome::Charged(c) = &d.outcome else { panic!("{d:?}") };
        assert_eq!((c.cost, c.usage.used, c.usage.remaining()), (1, 300, 0));
        let charged: Vec<&str> = d.charged().iter().map(|(key, _, _)| *key).collect();
        assert_eq!(charged.len(), 3);
        for (_, _, key) in &t.stack {
            assert!(charged.contains(&key.as_str()), "{key} in {charged:?}");
        }
        // The script refusing what the core admits is noted too.
        let disagree = settle(&config, t, Ok(answers(&before, &before)));
        assert!(disagree.decision.admitted());
        assert_eq!(disagree.mismatches.len(), 3);
    }

    #[test]
    fn an_answer_that_cannot_be_settled_applies_the_fail_policy() {
        let config = config();
        let t = ticket(&config, &[("x-user-id", "ann")], 1, 1);
        let lost = settle(&config, t.clone(), Err(GiveUp::Unavailable("timeout".into())));
        assert!(
            matches!(&lost.decision.outcome, Outcome::Unavailable { reason: GiveUp::Unavailable(w), .. } if w == "timeout")
        );
        assert_eq!(lost.decision.key.as_deref(), Some(t.stack[0].2.as_str()));
        let short = settle(&config, t, Ok(answers(&[None], &[None])));
        assert!(
            matches!(&short.decision.outcome, Outcome::Unavailable { reason: GiveUp::Unavailable(w), .. } if w.contains("1 counters for a charge of 2")),
            "{short:?}"
        );
    }

    #[test]
    fn a_single_charge_settles_as_before() {
        let config = config();
        let t = ticket(&config, &[("x-user-id", "ann")], 2, 3);
        let limits = &stack_limits(&config, 2)[0];
        let write = decide::decide(None, limits, 3, false, t.now(), t.alignment).0;
        let ok = settle(&config, t.clone(), Ok(answers(&[None], &[write])));
        assert!(ok.decision.admitted() && ok.mismatches.is_empty());
        assert_eq!(ok.decision, engine::settle(&config, t.clone(), Ok(None)).0);
        let wrong = settle(&config, t.clone(), Ok(answers(&[None], &[None])));
        assert_eq!(wrong.mismatches, vec![Mismatch { key: t.key.clone(), script: None, core: write }]);
        assert_eq!(keys(&t), vec![t.key.as_str()]);
    }
}
