//! Shared queues (`proxy_register_shared_queue` and friends), following
//! proxy-wasm-cpp-host's `SharedQueue`: a queue is named by (vm_id, name); its
//! token is never 0; registering again keeps the data and moves the
//! `on_queue_ready` notification to the new registrant; enqueueing notifies the
//! registrant's VM, which the host delivers after the current guest call.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use crate::status::Status;
use crate::sync::lock;

/// Which VM and context asked to hear about a queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct QueueOwner {
    pub vm: u32,
    pub context_id: u32,
}

#[derive(Default)]
struct Queue {
    items: VecDeque<Vec<u8>>,
    owner: Option<QueueOwner>,
}

#[derive(Default)]
struct Inner {
    tokens: HashMap<(String, String), u32>,
    queues: HashMap<u32, Queue>,
    next_token: u32,
}

#[derive(Default)]
pub struct SharedQueues {
    inner: Mutex<Inner>,
}

impl SharedQueues {
    pub(crate) fn register(&self, vm_id: &str, name: &str, owner: QueueOwner) -> u32 {
        let mut inner = lock(&self.inner);
        let key = (vm_id.to_string(), name.to_string());
        let token = match inner.tokens.get(&key) {
            Some(token) => *token,
            None => {
                let token = loop {
                    inner.next_token = inner.next_token.wrapping_add(1);
                    let candidate = inner.next_token;
                    if candidate != 0 && !inner.queues.contains_key(&candidate) {
                        break candidate;
                    }
                };
                inner.tokens.insert(key, token);
                token
            }
        };
        inner.queues.entry(token).or_default().owner = Some(owner);
        token
    }

    /// The queue's token, or `None` (the ABI's 0 / `NotFound`).
    pub fn resolve(&self, vm_id: &str, name: &str) -> Option<u32> {
        lock(&self.inner).tokens.get(&(vm_id.to_string(), name.to_string())).copied()
    }

    pub(crate) fn enqueue(&self, token: u32, value: &[u8]) -> Result<Option<QueueOwner>, Status> {
        let mut inner = lock(&self.inner);
        let queue = inner.queues.get_mut(&token).ok_or(Status::NotFound)?;
        queue.items.push_back(value.to_vec());
        Ok(queue.owner)
    }

    pub(crate) fn dequeue(&self, token: u32) -> Result<Vec<u8>, Status> {
        let mut inner = lock(&self.inner);
        let queue = inner.queues.get_mut(&token).ok_or(Status::NotFound)?;
        queue.items.pop_front().ok_or(Status::Empty)
    }

    /// How many items wait in the queue named (vm_id, name), for assertions.
    pub fn len(&self, vm_id: &str, name: &str) -> usize {
        let inner = lock(&self.inner);
        inner
            .tokens
            .get(&(vm_id.to_string(), name.to_string()))
            .and_then(|t| inner.queues.get(t))
            .map_or(0, |q| q.items.len())
    }

    pub fn is_empty(&self, vm_id: &str, name: &str) -> bool {
        self.len(vm_id, name) == 0
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    const OWNER: QueueOwner = QueueOwner { vm: 0, context_id: 1 };

    #[test]
    fn registering_twice_keeps_the_token_and_the_items() {
        let queues = SharedQueues::default();
        let token = queues.register("", "q", OWNER);
        assert_ne!(token, 0);
        queues.enqueue(token, b"a").unwrap();
        let other = QueueOwner { vm: 1, context_id: 7 };
        assert_eq!(queues.register("", "q", other), token);
        assert_eq!(queues.enqueue(token, b"b").unwrap(), Some(other));
        assert_eq!(queues.dequeue(token).unwrap(), b"a");
        assert_eq!(queues.dequeue(token).unwrap(), b"b");
        assert_eq!(queues.dequeue(token), Err(Status::Empty));
    }

    #[test]
    fn unknown_queues_are_not_found() {
        let queues = SharedQueues::default();
        assert_eq!(queues.resolve("", "q"), None);
        assert_eq!(queues.enqueue(42, b"x"), Err(Status::NotFound));
        assert_eq!(queues.dequeue(42), Err(Status::NotFound));
        queues.register("vm-a", "q", OWNER);
        assert_eq!(queues.resolve("vm-b", "q"), None);
    }
}
