//! What every stream of one configuration shares with the root context
//! that loaded it.

use crate::remote::Remote;
use crate::report::Reporter;
use quota_core::config::Config;
use quota_core::usage_limit::UsageLimiter;
use std::cell::RefCell;
use std::rc::Rc;

/// What every stream of this configuration shares.
#[derive(Clone)]
pub struct Shared {
    pub config: Rc<Config>,
    pub reporter: Rc<Reporter>,
    /// Corrections for the Redis store, sent from here.
    pub remote: Rc<Remote>,
    /// This worker's budgets for usage-endpoint reads.
    pub usage_reads: Rc<RefCell<UsageLimiter>>,
}
